"""A single submission's statements (issue 17, server CPU per ``submitJob``): the job is
stored and optimised to Waiting in one transaction, and its task-queue membership is
inserted without a DELETE first (a job stored in this transaction cannot be in a queue:
``tq_jobs.job_id`` references it). Jobs released from Standby keep the DELETE."""

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
