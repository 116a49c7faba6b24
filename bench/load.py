"""Load generator: many simulated pilots and users against a real ``pilotwms serve``.

Usage::

    python bench/load.py                                   # 1,000 pilots, 60 s, SQLite
    python bench/load.py --start-mariadb --processes 2     # the same on a private MariaDB
    python bench/load.py --pilots 100 --users 4 --duration 20 --beats 2 --heartbeat 2

One asyncio process plays every client over raw HTTPS/1.1 (keep-alive, one connection per
client, real TLS against the instance's CA): **pilots** authenticate with a pilot token as the
site director gives them and do what ``pilot.agent`` and ``pilot.wrapper`` do for each job:
``requestJob`` (Matcher) -> ``setJobStatus`` Running/"Job Initialization" ->
``setJobParameters`` -> ``setJobStatus`` ""/"Application" -> ``sendHeartBeat`` ``--beats``
times, every ``--heartbeat`` seconds (+-20 %) -> ``setJobStatus`` ""/"Application Finished
Successfully" -> Done/"Execution Complete", all with the match's ``JobToken``; after a "no
match" a pilot sleeps ``--poll`` s times its consecutive misses (at most 30 s), as the JobAgent
backs off. **Users** (X509 proxies of two groups whose ``JobShare`` are ``--shares``) submit
parametric bulks of ``--bulk`` jobs and confirm them while their group has fewer than
``--backlog`` unmatched jobs, monitor their jobs (``getJobsStatus``) otherwise, and kill one
job in ``--kill-every`` submitted.

The server is ``pilotwms serve --processes K`` on 127.0.0.1 (a fresh ``pilotwms init``
instance) over SQLite, a private MariaDB (``--start-mariadb``) or ``--mysql-url`` (an admin URL:
a fresh database is made and dropped). After ``--duration`` s the users stop, the pilots finish
their jobs and drain the queues (bounded by ``--drain``), then the database is checked.
Printed: calls/s and p50/p95/p99 latency per method over the load window, matches/s and
heartbeats/s, errors (every HTTP status other than 200, every error reply other than "no
match", every transport error: target 0), double matches (the client's view and the logging
rows: target 0), jobs Done, the matched share per group, server CPU and RSS (supervisor and
workers, from /proc), MariaDB's CPU, the client's CPU, the database size and load averages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the repository root, not bench/ (whose monitoring.py would hide the monitoring package)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bench.load_server import GROUPS, check_database, prepare, proc_stat, serve, tree  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from core.security.tokens import TokenIssuer  # noqa: E402

MATCHER = "WorkloadManagement/Matcher"
STATE = "WorkloadManagement/JobStateUpdate"
MANAGER = "WorkloadManagement/JobManager"
MONITOR = "WorkloadManagement/JobMonitoring"
NO_MATCH, JOB_NOT_ACTIVE = 1510, 1505
SITE = "LCG.Load.test"
RESOURCE = {"Site": SITE, "GridCE": "ce.load.test", "CPUTime": 86400, "Platform": "EL9",
            "NumberOfProcessors": 1, "MaxRAM": 4000}


@dataclass
class LoadOptions:
    pilots: int = 1000
    users: int = 20
    duration: float = 60.0
    processes: int = 2
    beats: int = 3
    heartbeat: float = 5.0
    poll: float = 2.0
    bulk: int = 100
    backlog: int = 0  # per group; 0: one job per pilot
    kill_every: int = 200
    shares: tuple[int, int] = (70, 30)
    ramp: float = 10.0  # pilots start spread over this many seconds
    drain: float = 120.0
    database: str | None = None  # a SQLAlchemy URL; None: SQLite in the work directory


class RefusedError(Exception):
    """An error reply (``OK: false``)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class CallFailedError(Exception):
    """No usable reply: a transport error or an HTTP status other than 200 (counted)."""


class Connection:
    """One kept-alive HTTPS/1.1 connection to the server (reopened after an error)."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port, self.context = port, context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 5)
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                pass
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.context, server_hostname="127.0.0.1")
        assert self.reader is not None
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: "
            f"application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n{head}\r\n"
            .encode() + body)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in fields:
            data = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.read()
            await self.close()
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, data


@dataclass
class Figures:
    """What the clients saw; latencies in seconds per method."""

    latency: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    no_match: int = 0
    matched: Counter[int] = field(default_factory=Counter)
    matched_by_group: Counter[str] = field(default_factory=Counter)
    done: set[int] = field(default_factory=set)
    killed: set[int] = field(default_factory=set)
    killed_running: int = 0
    submitted: dict[int, str] = field(default_factory=dict)  # job -> group
    heartbeats: int = 0


class LoadRun:
    """One run: the clients' coroutines and their figures."""

    def __init__(self, opts: LoadOptions, port: int, ca_dir: Path, pilot_token: str,
                 users: list[tuple[Path, str]]) -> None:
        self.opts, self.port = opts, port
        self.pilot_context = ssl.create_default_context(capath=str(ca_dir))
        self.users = users
        self.ca_dir = ca_dir
        self.pilot_token = pilot_token
        self.fig = Figures()
        self.backlog: Counter[str] = Counter()
        self.stop_users = asyncio.Event()
        self.draining = False
        self.window: tuple[float, float] = (0.0, 0.0)
        self.at_stop: dict[str, Any] = {}

    async def call(self, conn: Connection, service: str, method: str, *args: Any,
                   token: str | None = None) -> Any:
        body = urllib.parse.urlencode({"method": method, "args": json.dumps(list(args))})
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        began = time.perf_counter()
        try:
            status, data = await asyncio.wait_for(
                conn.post(f"/{service}", body.encode(), headers), 120)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, ValueError, IndexError) as exc:
            await conn.close()
            self.fig.errors[f"{method}: {type(exc).__name__}"] += 1
            raise CallFailedError(method) from exc
        self.fig.latency[method].append(time.perf_counter() - began)
        if status != 200:
            self.fig.errors[f"{method}: HTTP {status} {data[:80]!r}"] += 1
            raise CallFailedError(method)
        reply = json.loads(data)
        if not reply.get("OK"):
            raise RefusedError(int(reply.get("Errno") or 0), str(reply.get("Message")))
        return reply.get("Value")

    # -- pilots -------------------------------------------------------------------------

    async def pilot(self, index: int) -> None:
        await asyncio.sleep(self.opts.ramp * index / max(1, self.opts.pilots))
        conn = Connection(self.port, self.pilot_context)
        resource = dict(RESOURCE, PilotReference=f"load://pilot/{index}")
        misses = 0
        try:
            while True:
                try:
                    match = await self.call(conn, MATCHER, "requestJob", resource,
                                            token=self.pilot_token)
                except RefusedError as exc:
                    if exc.errno != NO_MATCH:
                        self.fig.errors[f"requestJob: {exc}"[:120]] += 1
                    self.fig.no_match += 1
                    if self.draining:
                        return
                    misses += 1
                    await asyncio.sleep(min(30.0, self.opts.poll * misses)
                                        * random.uniform(0.5, 1.5))
                    continue
                except CallFailedError:
                    await asyncio.sleep(1.0)
                    continue
                misses = 0
                job = int(match["JobID"])
                self.fig.matched[job] += 1
                group = self.fig.submitted.get(job) or str(match.get("Group") or "?")
                self.fig.matched_by_group[group] += 1
                self.backlog[group] -= 1
                await self.run_job(conn, job, str(match.get("JobToken") or self.pilot_token))
        finally:
            await conn.close()

    async def run_job(self, conn: Connection, job: int, token: str) -> None:
        """What the job wrapper reports for a job that runs ``beats`` heartbeats long."""
        source = "JobWrapper"
        try:
            await self.call(conn, STATE, "setJobStatus", job, "Running", "Job Initialization",
                            source, token=token)
            await self.call(conn, STATE, "setJobParameters", job,
                            [["NumberOfProcessors", "1"], ["CPUNormalizationFactor", "1"],
                             ["JobWrapperPID", str(1000 + job % 30000)]], token=token)
            await self.call(conn, STATE, "setJobStatus", job, "", "Application", source,
                            token=token)
            for beat in range(self.opts.beats):
                await asyncio.sleep(self.opts.heartbeat * random.uniform(0.8, 1.2))
                dynamic = {"CPUConsumed": 10.0 * (beat + 1), "RSS": 200_000, "Vsize": 400_000,
                           "WallClockTime": self.opts.heartbeat * (beat + 1),
                           "AvailableDiskSpace": 50_000, "LoadAverage": 1.0}
                commands = await self.call(conn, STATE, "sendHeartBeat", job, dynamic, {},
                                           token=token)
                self.fig.heartbeats += 1
                if isinstance(commands, dict) and "Kill" in commands:
                    self.fig.killed_running += 1
                    return
            await self.call(conn, STATE, "setJobStatus", job, "",
                            "Application Finished Successfully", source, token=token)
            await self.call(conn, STATE, "setJobStatus", job, "Done", "Execution Complete",
                            source, token=token)
            self.fig.done.add(job)
        except RefusedError as exc:
            if exc.errno == JOB_NOT_ACTIVE and job in self.fig.killed:
                self.fig.killed_running += 1  # its owner killed it meanwhile
            else:
                self.fig.errors[f"job {job}: {exc}"[:120]] += 1
        except CallFailedError:
            pass  # counted; the job stays as it is and the check below finds it

    # -- users ----------------------------------------------------------------------------

    async def user(self, index: int, proxy: Path, group: str) -> None:
        context = ssl.create_default_context(capath=str(self.ca_dir))
        context.load_cert_chain(str(proxy))
        conn = Connection(self.port, context)
        jdl = (f'[Executable = "/bin/true"; JobName = "load_{index}_%n"; CPUTime = 600; '
               f'Parameters = {self.opts.bulk}; ParameterStart = 1; ParameterStep = 1;]')
        mine: list[int] = []
        submitted = 0
        try:
            while not self.stop_users.is_set():
                try:
                    if self.backlog[group] < self.opts.backlog:
                        self.backlog[group] += self.opts.bulk  # reserved before the call
                        try:
                            ids = [int(x) for x in await self.call(conn, MANAGER, "submitJob",
                                                                   jdl)]
                            await self.call(conn, MANAGER, "confirmBulkSubmission", ids)
                        except (RefusedError, CallFailedError):
                            self.backlog[group] -= self.opts.bulk
                            raise
                        for job in ids:
                            self.fig.submitted[job] = group
                        mine = ids
                        submitted += len(ids)
                        if self.opts.kill_every and submitted >= self.opts.kill_every:
                            submitted -= self.opts.kill_every
                            victim = random.choice(ids)
                            self.fig.killed.add(victim)
                            await self.call(conn, MANAGER, "killJob", [victim])
                            if victim not in self.fig.matched:
                                self.backlog[group] -= 1
                    elif mine:
                        await self.call(conn, MONITOR, "getJobsStatus", mine[:100])
                except RefusedError as exc:
                    self.fig.errors[f"user: {exc}"[:120]] += 1
                except CallFailedError:
                    pass
                try:
                    await asyncio.wait_for(self.stop_users.wait(), random.uniform(0.5, 1.5))
                except asyncio.TimeoutError:
                    pass
        finally:
            await conn.close()

    async def run(self, probe: Any) -> None:
        """Everything, with ``probe()`` (server resources) read at the window's edges."""
        if not self.opts.backlog:
            self.opts.backlog = max(self.opts.bulk, self.opts.pilots)
        users = [asyncio.create_task(self.user(i, proxy, group))
                 for i, (proxy, group) in enumerate(self.users)]
        await asyncio.sleep(1.0)  # a first backlog before the pilots come
        pilots = [asyncio.create_task(self.pilot(i)) for i in range(self.opts.pilots)]
        began, start_probe = time.perf_counter(), probe()
        await asyncio.sleep(self.opts.duration)
        self.window = (began, time.perf_counter())
        self.at_stop = {"probe": probe(), "start_probe": start_probe,
                        "counts": {m: len(v) for m, v in self.fig.latency.items()},
                        "matches": sum(self.fig.matched.values()),
                        "heartbeats": self.fig.heartbeats,
                        "by_group": dict(self.fig.matched_by_group)}
        self.stop_users.set()
        await asyncio.gather(*users)
        self.draining = True
        _, pending = await asyncio.wait(pilots, timeout=self.opts.drain)
        for task in pending:
            task.cancel()
        self.at_stop["unfinished_pilots"] = len(pending)
        await asyncio.gather(*pending, return_exceptions=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Report:
    run: LoadRun
    db: dict[str, Any]
    client_cpu: float
    load: tuple[tuple[float, ...], tuple[float, ...]]
    label: str

    @property
    def errors(self) -> int:
        return sum(self.run.fig.errors.values())

    @property
    def double_matches(self) -> int:
        client = sum(1 for n in self.run.fig.matched.values() if n > 1)
        return client + len(self.db["matched_twice"])

    def not_done(self) -> dict[int, str]:
        """Jobs that did not end as they should: matched and not Done (unless killed),
        submitted and not matched (unless killed)."""
        fig, final = self.run.fig, self.db["final"]
        wrong = {j: final.get(j, "missing") for j in fig.matched
                 if final.get(j) != "Done" and j not in fig.killed}
        wrong.update({j: final.get(j, "missing") for j in fig.submitted
                      if j not in fig.matched and j not in fig.killed})
        wrong.update({j: final.get(j, "missing") for j in fig.killed
                      if final.get(j) not in ("Killed", "Done")})
        return wrong

    def share(self) -> float:
        by_group = self.run.at_stop["by_group"]
        total = sum(by_group.get(g, 0) for g in GROUPS)
        return by_group.get(GROUPS[0], 0) / total if total else 0.0

    def lines(self) -> list[str]:
        run, stop = self.run, self.run.at_stop
        opts, wall = run.opts, run.window[1] - run.window[0]
        (cpu0, _), (cpu1, rss) = stop["start_probe"]["server"], stop["probe"]["server"]
        out = [f"{self.label}: {opts.pilots} pilots, {opts.users} users, {opts.processes} "
               f"server processes, {wall:.0f} s window (+ drain); load average "
               f"{self.load[0][0]:.1f} before, {self.load[1][0]:.1f} after"]
        calls = sum(stop["counts"].values())
        out.append(f"  {calls} calls = {calls / wall:.0f}/s; {stop['matches'] / wall:.1f} "
                   f"matches/s; {stop['heartbeats'] / wall:.1f} heartbeats/s; "
                   f"{run.fig.no_match} no-match replies")
        out.append(f"  {'method':24s} {'calls':>7s} {'/s':>7s} {'p50 ms':>8s} {'p95 ms':>8s}"
                   f" {'p99 ms':>8s}")
        for method, count in sorted(stop["counts"].items(), key=lambda x: -x[1]):
            lat = run.fig.latency[method][:count]
            out.append(f"  {method:24s} {count:7d} {count / wall:7.1f} "
                       + " ".join(f"{percentile(lat, q) * 1000:8.1f}"
                                  for q in (0.5, 0.95, 0.99)))
        statuses = dict(self.db["statuses"])
        out.append(f"  errors {self.errors} {dict(run.fig.errors) or ''}; double matches "
                   f"{self.double_matches}; jobs {statuses}; not as expected "
                   f"{len(self.not_done())}; killed {len(run.fig.killed)} "
                   f"({run.fig.killed_running} while running); pilots cut at drain "
                   f"{stop['unfinished_pilots']}")
        out.append(f"  matched {stop['by_group']} in the window: {GROUPS[0]} "
                   f"{self.share() * 100:.1f} % (share {opts.shares[0]}/{sum(opts.shares)})")
        out.append(f"  server CPU {cpu1 - cpu0:.0f} s = {(cpu1 - cpu0) / wall * 100:.0f} % of "
                   f"one core, RSS {rss / 1024:.0f} MB (all processes); client CPU "
                   f"{self.client_cpu:.0f} s; database {self.db['size_mb']:.1f} MB")
        if "mariadb" in stop["probe"]:
            used = stop["probe"]["mariadb"][0] - stop["start_probe"]["mariadb"][0]
            out.append(f"  MariaDB CPU {used:.0f} s = {used / wall * 100:.0f} % of one core")
        return out


def run_load(opts: LoadOptions, base: Path, *, label: str = "load",
             mariadb_pid: int | None = None) -> Report:
    """Prepare an instance in ``base``, serve it, run the clients, check, stop the server."""
    from tests.support.mariadb import free_port

    config_path, config, users = prepare(base, users=opts.users, shares=opts.shares,
                                         processes=opts.processes, database=opts.database)
    assert config.auth.signing is not None
    token = TokenIssuer(config.auth.signing).issue("pilot", group="demo_pilot", vo="demo",
                                                   lifetime=24 * 3600)
    port = free_port()
    server = serve(config_path, port, opts.processes, base / "serve.log",
                   config.server.ca_dir or base)

    def probe() -> dict[str, Any]:
        found = [proc_stat(p) for p in tree(server.pid)]
        result: dict[str, Any] = {"server": (sum(f[0] for f in found),
                                             sum(f[1] for f in found))}
        if mariadb_pid:
            result["mariadb"] = proc_stat(mariadb_pid)[:2]
        return result

    try:
        run = LoadRun(opts, port, config.server.ca_dir or base, token, users)
        load0, cpu0 = os.getloadavg(), time.process_time()
        asyncio.run(run.run(probe))
        cpu, load1 = time.process_time() - cpu0, os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return Report(run, check_database(str(config.database)), cpu, (load0, load1), label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = LoadOptions()
    for name in ("pilots", "users", "processes", "beats", "bulk", "backlog", "kill_every"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(defaults, name))
    for name in ("duration", "heartbeat", "poll", "ramp", "drain"):
        parser.add_argument(f"--{name}", type=float, default=getattr(defaults, name))
    parser.add_argument("--shares", default="70,30", help="JobShare of the two groups")
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--start-mariadb", action="store_true",
                        help="start a private MariaDB (tests.support.mariadb)")
    parser.add_argument("--start-galera", action="store_true",
                        help="start a 3-node Galera cluster (tests.support.galera); the server "
                             "writes to node 1 with the others as failover hosts")
    parser.add_argument("--buffer-pool", default="256M")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    a, b = (int(x) for x in args.shares.split(","))
    opts = LoadOptions(**{k: v for k, v in vars(args).items() if hasattr(defaults, k)
                          and k != "shares"}, shares=(a, b))
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        label, pid = "SQLite", None
        admin = args.mysql_url
        if args.start_mariadb and not admin:
            from tests.support.mariadb import MariaDBServer

            mariadb = MariaDBServer(buffer_pool=args.buffer_pool)
            mariadb.start()
            stack.callback(mariadb.stop)
            admin = mariadb.admin_url
            pid = int((mariadb.base / "mariadbd.pid").read_text())
        if args.start_galera:
            from tests.support.galera import GaleraCluster

            cluster = stack.enter_context(GaleraCluster())
            opts.database, label = cluster.url(0, failover=True), "Galera (3 nodes)"
        elif admin:
            from tests.support.mariadb import fresh_database

            opts.database = stack.enter_context(fresh_database(admin))
            label = "MariaDB"
        report = run_load(opts, base, label=label, mariadb_pid=pid)
        print("\n".join(report.lines()))
        if report.errors or report.double_matches or report.not_done():
            print(f"  NOT AS EXPECTED: {list(report.not_done().items())[:10]}")
            sys.exit(1)


if __name__ == "__main__":
    main()
