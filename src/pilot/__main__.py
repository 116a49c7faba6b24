"""The pilot's command line: check the node, register, run the job agent, send the log.

Runs with the Python standard library only (3.9+); ``python -m pilot.build pilot.pyz`` packs it
into one file.

Example::

    python3 pilot.pyz --url https://wms.example.org:8443 --token-file token \\
        --ca-dir /etc/grid-security/certificates --site LCG.X.org --ce ce.x.org \\
        --workdir /scratch/pilot --heartbeat 60
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from typing import Any

from pilot.agent import PILOTS, Agent, AgentOptions
from pilot.benchmark import DEFAULT_SCALE, db12
from pilot.node import check_node
from pilot.rpc import RpcClient, RpcError
from pilot.wrapper import WrapperOptions

log = logging.getLogger("pilot")


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord,  # noqa: N802 - logging's name
                   datefmt: str | None = None) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pilot", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--url", action="append", required=True,
        help="server base URL (repeat or comma-separate for failover)")
    add("--token-file", help="bearer token file (re-read when it changes)")
    add("--proxy", help="X509 proxy file (certificate and key)")
    add("--ca-dir", help="hashed CA directory")
    add("--ca-file", help="CA bundle file")
    add("--site", default="ANY")
    add("--ce", default="")
    add("--queue", default="")
    add("--pilot-reference", default=os.environ.get("PILOTWMS_PILOT_REFERENCE", ""))
    add("--workdir", default=".")
    add("--drain-file", default="", help="stop matching when it exists "
        "(default <workdir>/.drain)")
    add("--max-failed-matches", type=int, default=10)
    add("--poll", type=float, default=10.0, help="sleep after the first failed match (s)")
    add("--max-sleep", type=float, default=300.0)
    add("--heartbeat", type=float, default=60.0, help="heartbeat period (s)")
    add("--watchdog-check", type=float, default=5.0, help="watchdog sampling period (s)")
    add("--cpu-limit-factor", type=float, default=1.2,
        help="kill a payload past CPUTime * factor * processors CPU seconds")
    add("--max-wall", type=float, help="queue wall-clock limit per job (s)")
    add("--max-time", type=int, help="pilot lifetime cap (s); else from the batch system")
    add("--min-time", type=int, default=0, help="stop matching below this time left (s)")
    add("--processors", type=int, help="processors to use (default: all available)")
    add("--max-ram", type=int, help="memory to offer (MB)")
    add("--platform")
    add("--gpus", type=int, help="GPUs to offer (default: nvidia-smi, else the batch "
        "system's allocation)")
    add("--gpu-model", default="", help="model of allocated GPUs the node cannot name")
    add("--tag", action="append", default=[])
    add("--required-tag", action="append", default=[])
    add("--owner-group", default="", help="only take jobs of this group")
    add("--whole-node", action="store_true", help="offer the whole node to WholeNode jobs")
    add("--cpu-normalization-factor", type=float, default=0.0,
        help="the node's HS23 per core as the site publishes it (default: measure DB12)")
    add("--benchmark-scale", type=float, default=DEFAULT_SCALE,
        help="fraction of a DB12 iteration to run (0: no benchmark)")
    add("--max-sandbox-mib", type=float, default=10.0)
    add("--keep-jobdirs", action="store_true")
    add("--timeout", type=float, default=120.0, help="RPC timeout (s)")
    add("--retries", type=int, default=5, help="RPC retries on connection errors")
    add("--outage-tolerance", type=float, default=900.0,
        help="seconds a job's reports are retried while the server cannot be reached")
    add("--stop-grace", type=float, default=8.0,
        help="after SIGTERM, seconds left for the last reports before the pilot exits")
    add("--log-file", default="", help="default <workdir>/pilot.log")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    memory = io.StringIO()
    formatter = _UTCFormatter("%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr), logging.StreamHandler(memory),
        logging.FileHandler(args.log_file or os.path.join(workdir, "pilot.log"))]
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("signal %d: killing payloads", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    urls = [u for item in args.url for u in item.split(",") if u]
    rpc = RpcClient(urls, token_file=args.token_file, proxy=args.proxy, ca_dir=args.ca_dir,
                    ca_file=args.ca_file, timeout=args.timeout, retries=args.retries,
                    stop=stop, stop_grace=args.stop_grace)
    node = check_node(workdir, max_time=args.max_time, processors=args.processors,
                      max_ram_mb=args.max_ram, platform_name=args.platform,
                      gpu_count=args.gpus, gpu_model=args.gpu_model)
    log.info("node: %s", node.as_dict())
    factor = args.cpu_normalization_factor
    if not factor and args.benchmark_scale > 0:
        score = db12(min(1.0, args.benchmark_scale))
        factor = float(score["NORM"])
        log.info("DB12 benchmark: %s", score)
    wrapper = WrapperOptions(
        workdir=workdir, heartbeat=args.heartbeat, check=args.watchdog_check,
        cpu_limit_factor=args.cpu_limit_factor, max_wall=args.max_wall,
        max_sandbox_mib=args.max_sandbox_mib, keep_jobdirs=args.keep_jobdirs, stop=stop,
        cpu_normalization=factor, log=log.info, outage=args.outage_tolerance)
    options = AgentOptions(
        site=args.site, ce=args.ce, queue=args.queue, pilot_reference=args.pilot_reference,
        workdir=workdir, drain_file=args.drain_file, max_failed=args.max_failed_matches,
        poll=args.poll, max_sleep=args.max_sleep, min_time=args.min_time,
        whole_node=args.whole_node, owner_group=args.owner_group, tags=args.tag,
        required_tags=args.required_tag, wrapper=wrapper)
    agent = Agent(rpc, options, node)
    agent.register()
    try:
        count = agent.run()
    finally:
        log.info("pilot %s ends: %s", options.pilot_reference, agent.stop_reason or "error")
        send_log(rpc, options.pilot_reference, memory.getvalue())
    log.info("ran %d job(s): %s", count, agent.results)
    return 0


def send_log(rpc: RpcClient, reference: str, text: str) -> None:
    """Best effort ``PilotManager.storePilotOutput(reference, text)`` (last 1 MB)."""
    try:
        rpc.call(PILOTS, "storePilotOutput", reference, text[-1024 * 1024:])
    except RpcError as exc:
        log.warning("storePilotOutput failed (HTTP %s): %s", exc.status, exc)


if __name__ == "__main__":
    sys.exit(main())
