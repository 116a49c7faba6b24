"""Call an HTTPS (Tornado-style) service with the real DIRAC 9 client and print what DIRAC got.

Runs inside the DIRAC client venv built by ``scripts/install-dirac-client.sh`` (NOT pilotwms's
venv)::

    dirac_call.py --url https://127.0.0.1:PORT/System/Service --proxy PROXY --ca-dir CADIR \\
        --method NAME [--args JSON_LIST] [--workdir DIR] [--vo VO]
    dirac_call.py --url https://127.0.0.1:PORT --proxy PROXY --ca-dir CADIR --wms-submit JDL_FILE
    dirac_call.py --url https://127.0.0.1:PORT ... --wms-status 1,2,3
    dirac_call.py --url https://127.0.0.1:PORT ... --wms-kill 1[,2]
    dirac_call.py ... (--wms-* | --method NAME) --resolve-only   # print the URLs DIRAC resolved
    dirac_call.py --url ... --cfg dirac.cfg --script checks.py [--script-args JSON]

The harness builds a throw-away DIRAC root (``<workdir>/root/etc/dirac.cfg``) with no
configuration server, no tokens, no gateways, the CA directory and -- for the ``--wms-*`` modes --
``/Systems/WorkloadManagement/URLs/<Service>`` pointing at ``--url``'s scheme://host:port. With
``--cfg FILE`` (e.g. the output of ``pilotwms dirac-config``) that file is the ``dirac.cfg``.

``--script FILE`` runs FILE inside the initialised DIRAC (several checks in one DIRAC process:
DIRAC is slow to start) with ``ARGS`` (``--script-args``, JSON) in its globals; the script sets
``RESULT``, printed as the ``Value`` of an S_OK.

Output: exactly one JSON line on stdout, the S_OK/S_ERROR dict returned by DIRAC, serialised with
DIRAC's own ``JEncode.encode``. DIRAC's logging goes to stderr. Exit status 0 whenever DIRAC
returned a result dict (OK or not), 1 on harness errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

# Services configured for the --wms-* modes (DIRAC 9: /Systems/<System>/URLs/<Service>).
WMS_SERVICES = ("JobManager", "JobMonitoring", "SandboxStore")

# Environment variables that would make DIRAC look elsewhere for configuration or credentials.
_SCRUB_ENV = (
    "DIRACSYSCONFIG",
    "GRID_PROXY_FILE",  # takes precedence over X509_USER_PROXY in Locations.getProxyLocation
    "DIRAC_USE_ACCESS_TOKEN",
    "DIRAC_X509_HOST_CERT",
    "DIRAC_X509_HOST_KEY",
    "BEARER_TOKEN",
    "BEARER_TOKEN_FILE",
    "DIRACX_CREDENTIALS_PATH",
    # requests (trust_env) lets these REPLACE DIRAC's session.verify = <CA dir>: the server's CA
    # would then not be trusted ("self-signed certificate in certificate chain").
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class HarnessError(Exception):
    """A problem of the harness itself (bad arguments, DIRAC not importable, ...)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="https://host:port[/System/Service]")
    p.add_argument("--proxy", required=True, help="X509 proxy file (cert, key, chain)")
    p.add_argument("--ca-dir", required=True, help="hashed CA directory (X509_CERT_DIR)")
    p.add_argument("--workdir", help="where to build the DIRAC root (default: temporary, removed)")
    p.add_argument("--vo", help="/DIRAC/VirtualOrganization (sent as clientVO; default 'unknown')")
    p.add_argument("--debug", action="store_true", help="DIRAC log level DEBUG (on stderr)")
    p.add_argument(
        "--resolve-only",
        action="store_true",
        help="do not call: print the service URL(s) DIRAC's clients resolved",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--method", help="remote method to call on --url")
    mode.add_argument("--wms-submit", metavar="JDL_FILE", help="WMSClient().submitJob(JDL_FILE)")
    mode.add_argument(
        "--wms-status",
        metavar="JOBIDS",
        help="JobMonitoringClient().getJobsStatus([ids]); comma-separated",
    )
    mode.add_argument("--wms-kill", metavar="JOBIDS", help="WMSClient().killJob(id or [ids])")
    mode.add_argument(
        "--ts-calls",
        metavar="JSON",
        help='TransformationClient(url=--url) calls in order: [["method", [args], {kw}], ...]',
    )
    mode.add_argument("--script", metavar="FILE", help="run FILE in DIRAC; it sets RESULT")
    p.add_argument("--script-args", default="null", help="JSON given to --script as ARGS")
    p.add_argument("--cfg", help="use this dirac.cfg instead of the generated minimal one")
    p.add_argument("--args", default="[]", help="JSON list of positional arguments (--method)")
    ns = p.parse_args(argv)
    try:
        ns.rpc_args = json.loads(ns.args)
    except json.JSONDecodeError as exc:
        p.error(f"--args is not JSON: {exc}")
    if not isinstance(ns.rpc_args, list):
        p.error("--args must be a JSON list")
    parsed = urllib.parse.urlsplit(ns.url)
    if parsed.scheme != "https" or not parsed.hostname:
        p.error("--url must be https://host:port[/System/Service]")
    if (ns.method or ns.ts_calls) and len([s for s in parsed.path.split("/") if s]) != 2:
        p.error("--method needs --url https://host:port/<System>/<Service>")
    ns.base_url = f"{parsed.scheme}://{parsed.netloc}"
    ns.host = parsed.hostname
    for opt in ("proxy", "ca_dir"):
        path = Path(getattr(ns, opt)).resolve()
        if not path.exists():
            p.error(f"--{opt.replace('_', '-')} {path} does not exist")
        setattr(ns, opt, str(path))
    return ns


def _job_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise HarnessError(f"bad job id list {text!r}") from exc
    if not ids:
        raise HarnessError("empty job id list")
    return ids


def dirac_cfg(ns: argparse.Namespace) -> str:
    """The minimal local configuration: no CS servers, no tokens, our CAs and WMS URLs."""
    urls = "\n".join(
        f"        {svc} = {ns.base_url}/WorkloadManagement/{svc}" for svc in WMS_SERVICES
    )
    vo = f"  VirtualOrganization = {ns.vo}\n" if ns.vo else ""
    return (
        "DIRAC\n{\n"
        f"{vo}"
        "  Configuration\n  {\n    # no Servers: DIRAC runs 'without remote configuration'\n  }\n"
        "  Security\n  {\n"
        "    UseServerCertificate = no\n"
        "    UseTokens = no\n"
        "    SkipCAChecks = no\n"
        f"    CALocation = {ns.ca_dir}\n"
        "  }\n"
        "}\n"
        "LocalSite\n{\n  Site = DIRAC.Client.local\n}\n"
        "Systems\n{\n  WorkloadManagement\n  {\n    URLs\n    {\n"
        f"{urls}\n"
        "    }\n  }\n}\n"
    )


def prepare_environment(ns: argparse.Namespace, workdir: Path) -> None:
    """Create the DIRAC root and set the environment; must run before ``import DIRAC``."""
    root = workdir / "root"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    cfg = Path(ns.cfg).read_text() if getattr(ns, "cfg", None) else dirac_cfg(ns)
    (root / "etc" / "dirac.cfg").write_text(cfg)
    home = workdir / "home"  # isolates from a user's ~/.dirac.cfg and ~/.dirac/ state
    home.mkdir(exist_ok=True)
    for var in _SCRUB_ENV:
        os.environ.pop(var, None)
    os.environ.update(
        {
            # DIRAC otherwise takes sys.base_prefix (the base interpreter, not the venv) as root.
            "DIRAC_ROOT_PATH": str(root),
            "HOME": str(home),
            "X509_USER_PROXY": ns.proxy,
            "X509_CERT_DIR": ns.ca_dir,
            "DIRAC_USE_ACCESS_TOKEN": "false",
        }
    )
    # DIRAC's requests.Session trusts the environment: never send 127.0.0.1 through a web proxy.
    for var in ("NO_PROXY", "no_proxy"):
        current = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(current + [ns.host, "127.0.0.1", "localhost"])


def init_dirac(debug: bool) -> None:
    """Import DIRAC and initialise it from the local cfg only (never contacts a CS)."""
    try:
        import DIRAC
        from DIRAC import gLogger
    except ImportError as exc:
        raise HarnessError(f"cannot import DIRAC with {sys.executable}: {exc}") from exc
    DIRAC.initialize(require_auth=False)  # loads $DIRAC_ROOT_PATH/etc/dirac.cfg, no CS sync
    gLogger.setLevel("DEBUG" if debug else "WARN")


def _resolved(client: Any) -> dict[str, str]:
    """Ask a DIRAC Client which RPC class and URL its own selection logic picked."""
    rpc = client._getRPC()
    return {"class": type(rpc).__name__, "url": str(getattr(rpc, "serviceURL", None))}


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Do the DIRAC call for the selected mode; returns DIRAC's S_OK/S_ERROR dict."""
    from DIRAC import S_OK
    from DIRAC.ConfigurationSystem.Client.PathFinder import getServiceURL
    from DIRAC.Core.Base.Client import Client

    if ns.script:
        import runpy

        scope = runpy.run_path(ns.script, init_globals={"ARGS": json.loads(ns.script_args)})
        if "RESULT" not in scope:
            raise HarnessError(f"{ns.script} did not set RESULT")
        return S_OK(scope["RESULT"])
    if ns.method:
        client = Client(url=ns.url)
        if ns.resolve_only:
            return S_OK({ns.url: _resolved(client)})
        # The same path as every DIRAC client class: Client -> RPCClientSelector -> TornadoClient.
        return client.executeRPC(*ns.rpc_args, call=ns.method)

    if ns.ts_calls:
        return _ts_calls(ns)

    from DIRAC.WorkloadManagementSystem.Client.JobManagerClient import JobManagerClient
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient
    from DIRAC.WorkloadManagementSystem.Client.WMSClient import WMSClient

    if ns.resolve_only:
        value: dict[str, Any] = {
            f"WorkloadManagement/{svc}": getServiceURL(f"WorkloadManagement/{svc}")
            for svc in WMS_SERVICES
        }
        value["JobManagerClient"] = _resolved(JobManagerClient())
        value["JobMonitoringClient"] = _resolved(JobMonitoringClient())
        return S_OK(value)
    if ns.wms_submit:
        jdl = Path(ns.wms_submit)
        if not jdl.is_file():
            raise HarnessError(f"JDL file {jdl} not found")
        # WMSClient.submitJob reads the file itself when given an existing path.
        return WMSClient().submitJob(str(jdl.resolve()))
    if ns.wms_status:
        return JobMonitoringClient().getJobsStatus(_job_ids(ns.wms_status))
    ids = _job_ids(ns.wms_kill)
    return WMSClient().killJob(ids[0] if len(ids) == 1 else ids)


def _ts_calls(ns: argparse.Namespace) -> dict[str, Any]:
    """Run TransformationClient methods in order; S_OK(list of their S_OK/S_ERROR)."""
    from DIRAC import S_OK
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    try:
        calls = json.loads(ns.ts_calls)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"--ts-calls is not JSON: {exc}") from exc
    client = TransformationClient(url=ns.url)
    results = []
    for method, args, *rest in calls:
        kwargs = rest[0] if rest else {}
        results.append(getattr(client, method)(*args, **kwargs))
    return S_OK(results)


def encode_result(result: Any) -> str:
    """Serialise with DIRAC's JEncode (datetime/bytes hooks); str() anything it cannot."""
    from DIRAC.Core.Utilities.JEncode import encode

    try:
        return encode(result)
    except (TypeError, ValueError):
        return json.dumps(result, default=str)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    ns = parse_args(argv)
    # Everything DIRAC (or anything else) writes to fd 1 goes to stderr; the result line goes to
    # the saved real stdout.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    tmp = None
    if ns.workdir:
        workdir = Path(ns.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="dirac-call-")
        workdir = Path(tmp)
    try:
        prepare_environment(ns, workdir)
        init_dirac(ns.debug)
        result = run(ns)
        if not isinstance(result, dict) or "OK" not in result:
            raise HarnessError(f"DIRAC returned a non S_OK/S_ERROR value: {result!r}")
        line = encode_result(result)
    except HarnessError as exc:
        print(f"dirac_call: ERROR: {exc}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - any other failure is a harness failure, show it
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    os.write(real_stdout, (line + "\n").encode())
    os.close(real_stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
