"""Prometheus metrics: a 2-process ``pilotwms serve`` scraped and parsed with
prometheus_client's own parser, access rules, and an agent's ``/metrics``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core.agent import Agent
from core.cli.instance import Instance
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.metrics import metrics
from wms.db.schema import WMS_SCHEMA

PILOTWMS = [sys.executable, "-m", "core.cli.admin"]
TOKEN = "scrape-secret-for-tests"


@dataclass
class Served:
    url: str
    inst: Instance


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def served2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("metrics")
    directory = base / "inst"
    subprocess.run([*PILOTWMS, "init", str(directory), "--port", "0"], check=True,
                   capture_output=True, timeout=120)
    config = directory / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["Monitoring"] = {"Metrics": {"Authorization": ["Operator"]}, "RunInServer": False}
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen([*PILOTWMS, "serve", "--config", str(config), "--port", "0",
                             "--processes", "2", "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "PILOTWMS_METRICS_TOKEN": TOKEN})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "pilotwms serving" in line, proc.stderr.read() if proc.stderr else line
    try:
        yield Served(line.split(" at ")[1].split()[0], Instance(directory))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def scrape(served: Served, **kwargs: object) -> requests.Response:
    return requests.get(f"{served.url}/metrics", verify=str(served.inst.ca_dir), timeout=30,
                        **kwargs)  # type: ignore[arg-type]


def test_two_processes_give_one_consistent_view(served2: Served) -> None:
    pids = set()
    for _ in range(30):  # a new connection each time: the kernel spreads them over workers
        reply = requests.post(f"{served2.url}/Framework/Registry", data={"method": "ping"},
                              verify=str(served2.inst.ca_dir), timeout=30)
        assert reply.json()["OK"]
        pids.add(reply.json()["Value"]["pid"])
    for _ in range(3):
        reply = requests.post(f"{served2.url}/Framework/Registry",
                              data={"method": "no-such-method"},
                              verify=str(served2.inst.ca_dir), timeout=30)
        assert reply.status_code == 501
    assert len(pids) == 2, "both workers should have answered"
    token = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(6):  # whichever worker answers the scrape, it sees both
        reply = scrape(served2, headers=token)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.text
        requests_total = samples(text, "pilotwms_rpc_requests_total")
        ping = (("method", "ping"), ("service", "Framework/Registry"), ("status", "200"))
        unknown = (("method", "unknown"), ("service", "Framework/Registry"),
                   ("status", "501"))
        assert requests_total[ping] == 30.0
        assert requests_total[unknown] == 3.0
        counts = samples(text, "pilotwms_rpc_request_duration_seconds_count")
        assert counts[(("method", "ping"), ("service", "Framework/Registry"))] == 30.0
        buckets = samples(text, "pilotwms_rpc_request_duration_seconds_bucket")
        inf = (("le", "+Inf"), ("method", "ping"), ("service", "Framework/Registry"))
        assert buckets[inf] == 30.0
        # requests being served, summed over the live workers: the scrape itself
        assert samples(text, "pilotwms_rpc_in_flight") == {(): 1.0}
        # the cached database gauges are there too
        assert samples(text, "pilotwms_task_queue_jobs") == {(): 0.0}
        assert samples(text, "pilotwms_accounting_outbox_rows") == {(): 0.0}


def test_metrics_need_the_property_or_the_token(served2: Served, tmp_path: Path) -> None:
    assert scrape(served2).status_code == 401  # anonymous: off by default
    assert scrape(served2, headers={"Authorization": "Bearer wrong"}).status_code == 401
    alice = served2.inst.user_cert("alice")
    refused = scrape(served2, cert=(str(alice[0]), str(alice[1])))
    assert refused.status_code == 401 and "may not read /metrics" in refused.text
    admin = served2.inst.user_cert("admin")
    proxy = tmp_path / "admin-proxy"
    subprocess.run([*PILOTWMS, "proxy", "init", "--cert", str(admin[0]), "--key",
                    str(admin[1]), "-g", "demo_admin", "--out", str(proxy)], check=True,
                   capture_output=True, timeout=60)
    allowed = scrape(served2, cert=str(proxy))  # demo_admin has Operator
    assert allowed.status_code == 200 and "pilotwms_rpc_requests_total" in allowed.text


class Sleepy(Agent):
    name = "SleepyTestAgent"

    def run_once(self) -> bool:
        time.sleep(0.01)
        return True


def test_an_agent_serves_its_cycles(config: Config) -> None:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Monitoring"] = {"Metrics": {"AgentPort": 0}}
    cfg = Config.model_validate(data)
    assert cfg.database
    init_schema(make_engine(cfg.database), WMS_SCHEMA)
    agent = Sleepy(cfg, period=0.05)
    before = metrics().agent_cycles.labels("SleepyTestAgent", "ok")._value.get()
    thread = threading.Thread(target=agent.run, daemon=True)
    os.environ["PILOTWMS_METRICS_TOKEN"] = TOKEN
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while agent.metrics_server is None and time.monotonic() < deadline:
            time.sleep(0.02)
        port = agent.metrics_server.server_port
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=10).status_code == 401
        while True:
            text = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=10).text
            done = samples(text, "pilotwms_agent_cycles_total").get(
                (("agent", "SleepyTestAgent"), ("result", "ok")), 0.0)
            if done >= before + 3:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        last = samples(text, "pilotwms_agent_last_cycle_timestamp_seconds")
        assert abs(last[(("agent", "SleepyTestAgent"),)] - time.time()) < 60
        assert samples(text, "pilotwms_task_queue_jobs") == {(): 0.0}  # its database
    finally:
        os.environ.pop("PILOTWMS_METRICS_TOKEN", None)
        agent.stop()
        thread.join(30)


def test_pilotwms_agent_serves_metrics_on_its_port(served2: Served) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = served2.inst.directory / "config.yaml"
    proc = subprocess.Popen([*PILOTWMS, "agent", "WMSHistoryAgent", "--config", str(config),
                             "--metrics-port", str(port), "--period", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PILOTWMS_METRICS_TOKEN": TOKEN})
    try:
        deadline = time.monotonic() + 60
        cycles = 0.0
        while cycles < 1:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no agent cycle seen"
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5,
                                    headers={"Authorization": f"Bearer {TOKEN}"}).text
            except requests.ConnectionError:
                time.sleep(0.2)
                continue
            cycles = samples(text, "pilotwms_agent_cycles_total").get(
                (("agent", "WMSHistoryAgent"), ("result", "ok")), 0.0)
            time.sleep(0.2)
        assert samples(text, "pilotwms_jobs") == {}  # no jobs in this instance yet
        assert samples(text, "pilotwms_task_queue_jobs") == {(): 0.0}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
