"""The monitoring agents as ``pilotwms agent`` runs them (one cycle each)."""

from __future__ import annotations

from datetime import timedelta

from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow
from core.security.identity import Identity
from monitoring.agents.accounting import AccountingAgent
from monitoring.agents.history import WMSHistoryAgent
from monitoring.db.sql import SQLBackend
from monitoring.types import TYPES
from wms.db import outbox
from wms.db.schema import WMS_SCHEMA
from wms.logic import state_update
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit

ADMIN = Identity(auth_method="x509", username="admin", group="demo_admin", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"JobAdministrator"}))


def test_accounting_and_history_agents(config: Config) -> None:
    assert config.database
    engine = make_engine(config.database)
    init_schema(engine, WMS_SCHEMA)
    jobs = submit(engine, '[Executable = "ls"; Parameters = 3;]', Submitter("al", "g", "v"),
                  DEFAULT_LIMITS).job_ids
    for job in jobs[:2]:
        state_update.set_status(engine, ADMIN, job, "Killed", source="test", force=True)
    with engine.connect() as conn:
        assert outbox.count(conn) == 2

    AccountingAgent(config).run(once=True)
    with engine.connect() as conn:
        assert outbox.count(conn) == 0
    backend = SQLBackend(engine)
    records = backend.get(TYPES["Job"], [str(j) for j in jobs])
    assert sorted(records) == sorted(str(j) for j in jobs[:2])
    assert {r["FinalMajorStatus"] for r in records.values()} == {"Killed"}

    history = WMSHistoryAgent(config)
    assert history.period == max(10.0, config.monitoring.history_period / 5)
    history.run(once=True)
    now = utcnow()
    snapshot = backend.records(TYPES["WMSHistory"], now - timedelta(hours=1),
                               now + timedelta(minutes=1))
    counts: dict[str, float] = {}
    for doc in snapshot:
        counts[doc["Status"]] = counts.get(doc["Status"], 0) + doc["Jobs"]
    assert counts == {"Killed": 2.0, "Submitting": 1.0}  # parametric: awaiting confirmation
