"""Component monitoring: server processes and agents report requests, cycles and errors."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import requests

from core.agent import Agent
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.service.registry import RegistryService
from monitoring.components import ComponentSink
from monitoring.db.base import Aggregation
from monitoring.db.sql import SQLBackend
from monitoring.db.tables import MONITORING_SCHEMA
from monitoring.types import TYPES
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

COMPONENT = TYPES["ComponentMonitoring"]
ALL_TIME = (datetime(2020, 1, 1, tzinfo=timezone.utc),
            datetime.now(timezone.utc) + timedelta(days=1))


def with_period(config: Config, **monitoring: object) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Monitoring"] = {"ComponentPeriod": 0.3, **monitoring}
    made = Config.model_validate(data)
    assert made.database
    init_schema(make_engine(made.database), MONITORING_SCHEMA)
    return made


def totals(config: Config, group: str = "Component") -> dict[str, dict[str, float]]:
    assert config.database
    backend = SQLBackend(make_engine(config.database))
    rows = backend.aggregate(COMPONENT, Aggregation(*ALL_TIME, group_by=(group,),
                                                    sums=("Requests", "Errors", "Cycles")))
    return {r.keys[0]: r.sums for r in rows}


def wait(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_a_server_process_reports_its_requests(config: Config, creds: Creds) -> None:
    cfg = with_period(config)
    with ThreadedServer(cfg, [RegistryService]) as server:
        for _ in range(5):
            reply = requests.post(f"{server.url}/Framework/Registry",
                                  data={"method": "ping"}, verify=str(creds.ca_dir),
                                  timeout=30)
            assert reply.json()["OK"]
        seen = wait(lambda: (t := totals(cfg)).get("Framework/Registry", {}).get(
            "Requests", 0) >= 5 and t)
    assert seen["Framework/Registry"]["Requests"] == 5.0
    assert seen["Framework/Registry"]["Errors"] == 0.0


class Failing(Agent):
    name = "HalfFailingTestAgent"
    cycles = 0

    def run_once(self) -> bool:
        self.cycles += 1
        if self.cycles % 2:
            raise RuntimeError("odd cycle")
        return True


def test_an_agent_reports_cycles_and_errors(config: Config) -> None:
    cfg = with_period(config)
    agent = Failing(cfg, period=0.02)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        seen = wait(lambda: (t := totals(cfg)).get(agent.name, {}).get("Cycles", 0) >= 4
                    and t)
    finally:
        agent.stop()
        thread.join(30)
    assert 0 < seen[agent.name]["Errors"] < seen[agent.name]["Cycles"]


def test_records_wait_in_a_bounded_queue_while_the_backend_is_down(config: Config) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = with_period(config, Backend="OpenSearch", QueueSize=3,
                      OpenSearch={"Hosts": [dead], "Timeout": 1})
    sink = ComponentSink(cfg)
    now = int(time.time())
    for i in range(5):
        sink([{"Component": "X", "ComponentType": "agent", "Host": "h", "Instance": "1",
               "timestamp": now + i, "Cycles": 1}])
    assert len(sink.queue) == 3 and sink.dropped == 2 and sink.written == 0
    assert sink.backoff.failures == 1  # one attempt, then it waits
