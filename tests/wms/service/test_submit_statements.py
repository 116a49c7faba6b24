"""A single submission's statements (issue 17, server CPU per ``submitJob``): the job is
stored and optimised to Waiting in one transaction, its task-queue membership is inserted
without a DELETE first (a job stored in this transaction cannot be in a queue:
``tq_jobs.job_id`` references it; jobs released from Standby keep the DELETE), and its
Received record goes into the optimiser's logging INSERT (one instead of two)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from tests.wms.logic.test_bulk_statements import Statements

from core.config.schema import Config
from core.db import init_schema
from core.rpc.context import ServerContext
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tq_tables import tq_jobs
from wms.logic.submission import SubmitResult, Submitter, submit
from wms.service.common import SYSTEM, limits_from, optimise_new

ALICE = Submitter("alice", "demo_user", "demo")


@pytest.fixture
def ctx(config: Config) -> Iterator[ServerContext]:
    context = ServerContext(config)
    init_schema(context.engine(SYSTEM), WMS_SCHEMA)
    yield context
    context.close()


@pytest.mark.parametrize("stored_here", [True, False])
def test_a_new_job_enters_its_queue_without_a_delete(ctx: ServerContext,
                                                      stored_here: bool) -> None:
    engine = ctx.engine(SYSTEM)

    def stored(conn: Connection, result: SubmitResult, now: datetime) -> None:
        optimise_new(ctx, conn, result.descriptions, now, stored_here=stored_here)

    submit(engine, '[Executable = "/bin/true";]', ALICE, limits_from(ctx.config),
           on_stored=stored)  # the queue exists from now on
    with Statements(engine) as stmts:
        job_id = submit(engine, '[Executable = "/bin/true";]', ALICE,
                        limits_from(ctx.config), on_stored=stored).job_ids[0]
    deletes = [s for s, _n in stmts.starting("DELETE") if "tq_jobs" in s]
    assert len(deletes) == (0 if stored_here else 1)
    with engine.connect() as conn:
        assert jobs_db.status_of(conn, [job_id])[job_id].status == "Waiting"
        assert conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)
                            .where(tq_jobs.c.job_id == job_id)).scalar_one() == 1


def _history(engine: sa.engine.Engine, job_id: int) -> list[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        return [(s, m, a, src) for s, m, a, _t, src in jobs_db.logging_of(conn, job_id)]


@pytest.mark.parametrize("defer", [True, False])
def test_one_logging_insert_for_received_checking_and_waiting(ctx: ServerContext,
                                                              defer: bool) -> None:
    """As ``submitJob`` does: the Received record is written with the optimiser's Checking
    and Waiting ones, in one INSERT; the history is the same as with two."""
    engine = ctx.engine(SYSTEM)

    def stored(conn: Connection, result: SubmitResult, now: datetime) -> None:
        optimise_new(ctx, conn, result.descriptions, now, stored_here=True,
                     logged=result.logging)

    submit(engine, '[Executable = "/bin/true";]', ALICE, limits_from(ctx.config),
           on_stored=stored)
    with Statements(engine) as stmts:
        job_id = submit(engine, '[Executable = "/bin/true";]', ALICE, limits_from(ctx.config),
                        on_stored=stored, defer_logging=defer).job_ids[0]
    inserts = [s for s, _n in stmts.starting("INSERT") if "job_logging" in s]
    assert len(inserts) == (1 if defer else 2)
    # BEGIN; INSERT jobs, job_jdls; UPDATE jobs; INSERT job_logging (x2 unless deferred);
    # SELECT task queue; INSERT tq_jobs (was 9 with the second logging INSERT and the DELETE)
    assert len(stmts.seen) == (7 if defer else 8)
    assert _history(engine, job_id) == [
        ("Received", "Job accepted", "Unknown", "JobManager"),
        ("Checking", "Job accepted", "Unknown", "Optimizer"),
        ("Waiting", "Pilot Agent Submission", "Unknown", "Optimizer")]


def test_deferred_records_come_first_when_jobs_fail_or_nobody_writes_them(
        ctx: ServerContext) -> None:
    """A job refused by the optimiser: Received, then Failed (one INSERT). A caller that
    does not pass the records on: they are written after its ``on_stored``."""
    from wms.logic import input_data, optimizer
    from wms.service.common import enqueue_new

    engine = ctx.engine(SYSTEM)

    def refusing(conn: Connection, result: SubmitResult, now: datetime) -> None:
        optimizer.optimise_new(
            conn, result.descriptions, enqueue=enqueue_new, now=now, logged=result.logging,
            check_input_data=lambda wanted: {j: input_data.InputDataVerdict(
                reason=input_data.NOT_AVAILABLE) for j in wanted})

    jdl = '[Executable = "/bin/true"; InputData = "/demo/f1";]'
    refused = submit(engine, jdl, ALICE, limits_from(ctx.config), on_stored=refusing,
                     defer_logging=True).job_ids[0]
    assert _history(engine, refused) == [
        ("Received", "Job accepted", "Unknown", "JobManager"),
        ("Failed", input_data.NOT_AVAILABLE, "Unknown", "Optimizer")]
    untouched = submit(engine, jdl, ALICE, limits_from(ctx.config),
                       on_stored=lambda conn, result, now: None, defer_logging=True).job_ids[0]
    assert _history(engine, untouched) == [("Received", "Job accepted", "Unknown", "JobManager")]
