"""The authorisation matrix (issue 16), generated from the registered methods and their
declared rights, over real HTTPS with real certificates, proxies and tokens.

1. :func:`test_rights_matrix`: every method of every installed service (``pilotwms.services``
   entry points: services added later are covered without a change here) is called by every
   kind of caller of tests/security/conftest.py. The expected outcome is computed from the
   method's effective rules and what the *configuration* grants each caller (not from the
   server's own rights code): refused calls must be HTTP 401 with a DIRAC error and change
   nothing (database rows and state files compared before and after, the calls carrying
   plausible arguments aimed at alice's objects); allowed calls must pass the rights check.
2. The data-level checks the rights rules cannot express: cross-user reads, kills, reports,
   sandbox and storage element downloads, a job token used on another job, a limited proxy
   submitting.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

from core.rpc.service import MethodSpec
from core.security.rights import Rule, parse_rules
from tests.security.conftest import SE, Who, World
from tests.support.fullserver import every_service

RIGHTS_REFUSALS = ("needs credentials of a registered user", "may not call")
BUILT_INS = {"ping", "echo", "whoami"}
METHODS = [(cls.path(), wire, spec) for cls in every_service()
           for wire, spec in sorted(cls.methods().items())
           if wire not in BUILT_INS or cls.path() == "Framework/Registry"]


def effective_rules(world: World, path: str, wire: str, spec: MethodSpec) -> tuple[Rule, ...]:
    """Code defaults overridden by ``Authorization.<method>`` then ``.Default`` (config)."""
    system, name = path.split("/")
    auth = world.cfg.service_config(system, name).authorization
    override = auth.get(wire, auth.get("Default") if wire not in ("ping", "echo") else None)
    return parse_rules(override) if override is not None else spec.rights


def expected_allowed(who: Who, rules: tuple[Rule, ...]) -> bool:
    """From the configuration's grants: an invalid token is refused even for open methods
    (the server cannot tell who sent it), anonymous callers reach open methods only."""
    if who.properties is None:
        return who.name == "anonymous" and any(r.kind == "all" for r in rules)
    for rule in rules:
        if rule.kind in ("all", "authenticated"):
            return True
        if rule.kind == "property" and rule.value in who.properties:
            return True
        if rule.kind == "group" and rule.value == who.group:
            return True
        if rule.kind == "vo" and rule.value == who.vo:
            return True
    return False


def plausible(world: World, spec: MethodSpec) -> list[Any]:
    """Arguments of the right types aimed at alice's objects, so that a refused call that ran
    anyway would change something."""
    args: list[Any] = []
    for param in spec.params:
        if param.variadic or (not param.required and param.nullable):
            break
        name, kinds = param.name.lower(), param.accepted
        if str in kinds and any(k in name for k in ("lfn", "path", "dir")):
            args.append(world.public_lfn)
        elif str in kinds and any(k in name for k in ("url", "file", "sb", "sandbox")):
            args.append(world.job_sandbox)
        elif str in kinds and name.startswith("se"):
            args.append(SE)
        elif str in kinds and "group" in name:
            args.append("demo_user")
        elif str in kinds and ("user" in name or "owner" in name):
            args.append("alice")
        elif int in kinds:
            args.append(world.job)
        elif str in kinds:
            args.append(str(world.job))
        elif list in kinds:
            args.append([world.job])
        elif dict in kinds:
            args.append({world.public_lfn: {"SE": SE, "PFN": world.public_lfn, "Size": 1,
                                            "Status": "Killed", "Mode": 0o777}})
        else:
            args.append(world.job)
    return args


def test_rights_matrix(world: World) -> None:
    denied: list[tuple[str, str, MethodSpec, Who]] = []
    allowed: list[tuple[str, str, MethodSpec, Who]] = []
    for path, wire, spec in METHODS:
        rules = effective_rules(world, path, wire, spec)
        for who in world.callers.values():
            (allowed if expected_allowed(who, rules) else denied).append((path, wire, spec, who))
    assert denied and allowed

    before = world.state()
    for path, wire, spec, who in denied:
        reply = who.post(world, path, wire, *plausible(world, spec))
        what = f"{who.name} {path}.{wire}"
        assert reply.status_code == 401, (what, reply.status_code, reply.text[:300])
        body = reply.json()
        assert body["OK"] is False and body["Errno"] in (1, 13), (what, body)
        assert body["ExceptionClass"] in ("NotAuthenticatedError", "NotAuthorizedError"), body
    after = world.state()
    assert after == before, ("a refused call changed the database or the files",
                             sorted(after - before)[:10], sorted(before - after)[:10])

    outcomes: collections.Counter[str] = collections.Counter()
    for path, wire, _spec, who in allowed:
        reply = who.post(world, path, wire)   # no arguments: the rights check is what counts
        what = f"{who.name} {path}.{wire}"
        assert reply.status_code != 500, (what, reply.text[:300])
        body = reply.json()
        if reply.status_code == 401:
            assert not any(m in body["Message"] for m in RIGHTS_REFUSALS), (what, body)
        outcomes["ran" if body.get("OK") else "refused by the method itself"] += 1
    print(f"\nrights matrix: {len(METHODS)} methods x {len(world.callers)} callers: "
          f"{len(denied)} refused with 401 and no side effect, {len(allowed)} allowed "
          f"({dict(outcomes)})")


# -- data-level checks -------------------------------------------------------------------------

OTHERS = ["bob (same group)", "carol (other group)", "dave (other VO)",
          "job token (other job)"]
NOBODY = ["anonymous", "expired token", "revoked token"]


def status_of(world: World, job: int) -> str:
    reply = world.callers["admin"].post(world, "WorkloadManagement/JobMonitoring",
                                        "getJobsStatus", [job]).json()
    return str(reply["Value"][str(job)]["Status"])


@pytest.mark.parametrize("method, extra", [
    ("getJobsStatus", None), ("getJobSummary", None), ("getJobJDL", False),
    ("getJobLoggingInfo", None), ("getJobParameters", None), ("getJobsSummary", None),
    ("getJobAttributes", None), ("getJobHeartBeatData", None)])
def test_cross_user_job_reads_are_denied(world: World, method: str, extra: Any) -> None:
    job = world.job
    arg: Any = [job] if method in ("getJobsStatus", "getJobsSummary") else job
    args = [arg] if extra is None else [arg, extra]
    for name in OTHERS + NOBODY:
        reply = world.callers[name].post(world, "WorkloadManagement/JobMonitoring", method,
                                         *args)
        assert reply.status_code in (200, 401), (name, method, reply.text)
        body = reply.json()
        leaked = body.get("OK") and body.get("Value") not in ({}, [], None, "")
        assert not leaked, (name, method, body)
        assert world.job_sandbox not in reply.text and "/bin/echo" not in reply.text
    for name in ("alice", "admin", "limited proxy (alice)"):
        body = world.callers[name].post(world, "WorkloadManagement/JobMonitoring", method,
                                        *args).json()
        assert body["OK"], (name, method, body)
        if method not in ("getJobHeartBeatData", "getJobParameters"):  # none sent yet
            assert body["Value"] not in ({}, []), (name, method, body)


@pytest.mark.parametrize("method", ["killJob", "deleteJob", "rescheduleJob"])
def test_cross_user_kills_are_denied(world: World, method: str) -> None:
    for name in [*OTHERS, "pilot", *NOBODY]:
        reply = world.callers[name].post(world, "WorkloadManagement/JobManager", method,
                                         world.job)
        body = reply.json()
        assert body["OK"] is False or world.job in body.get("NonauthorizedJobIDs", []), \
            (name, method, body)
        assert status_of(world, world.job) == "Waiting", (name, method)


def test_reports_on_another_users_job_are_denied(world: World) -> None:
    for name in [*OTHERS, *NOBODY]:
        for method, args in (("setJobStatus", ("Running", "Hacked", "x")),
                             ("setJobParameter", ("Hacked", "yes")),
                             ("sendHeartBeat", ({}, {}))):
            reply = world.callers[name].post(world, "WorkloadManagement/JobStateUpdate",
                                             method, world.job, *args)
            assert reply.json()["OK"] is False, (name, method, reply.text)
    assert status_of(world, world.job) == "Waiting"
    params = world.callers["admin"].post(world, "WorkloadManagement/JobMonitoring",
                                         "getJobParameters", world.job).json()
    assert "Hacked" not in str(params)


def test_cross_user_sandbox_downloads_are_denied(world: World) -> None:
    for name in [*OTHERS, *NOBODY]:
        reply = world.callers[name].post(world, "WorkloadManagement/SandboxStore",
                                         "streamToClient", world.job_sandbox, raw=True)
        assert reply.status_code == 401, (name, reply.status_code, reply.content[:200])
        assert reply.json()["OK"] is False
    for name in ("alice", "admin", "pilot", "host"):
        reply = world.callers[name].post(world, "WorkloadManagement/SandboxStore",
                                         "streamToClient", world.job_sandbox, raw=True)
        assert reply.headers["Content-Type"] == "application/octet-stream", (name, reply.text)
    # the job's own credential reads its job's sandbox, not another job's
    own = world.callers["job token (other job)"].post(
        world, "WorkloadManagement/SandboxStore", "streamToClient", world.other_sandbox,
        raw=True)
    assert own.headers["Content-Type"] == "application/octet-stream", own.text


def _se_get(world: World, who: Who, lfn: str) -> int:
    kwargs = who.kwargs()
    reply = who.session.get(f"{world.server.url}/DataManagement/StorageElement/file/{SE}{lfn}",
                            timeout=60, verify=world.verify, **kwargs)
    return reply.status_code


def test_cross_user_se_downloads_are_denied(world: World) -> None:
    """A private file (mode 600 in the catalog) is read by its owner (and her job's
    credential), trusted hosts and catalog managers only; a public one by its VO."""
    private, public = world.private_lfn, world.public_lfn
    for name in ["bob (same group)", "carol (other group)", "dave (other VO)", "pilot",
                 "admin", *NOBODY]:
        assert _se_get(world, world.callers[name], private) == 401, name
        info = world.callers[name].post(world, "DataManagement/StorageElement",
                                        "getFileInfo", SE, [private]).json()
        assert not info.get("OK") or private in info["Value"]["Failed"], (name, info)
    for name in ("alice", "job token (other job)", "host"):
        assert _se_get(world, world.callers[name], private) == 200, name
    for name in ("bob (same group)", "carol (other group)", "alice"):
        assert _se_get(world, world.callers[name], public) == 200, name
    for name in ("dave (other VO)", *NOBODY):
        assert _se_get(world, world.callers[name], public) == 401, name


def test_limited_proxy_cannot_submit(world: World) -> None:
    """DIRAC's JobManager: "Can't submit using a limited proxy"."""
    reply = world.callers["limited proxy (alice)"].post(
        world, "WorkloadManagement/JobManager", "submitJob", '[ Executable = "/bin/true"; ]')
    body = reply.json()
    assert body["OK"] is False and body["Errno"] == 1503, body
    assert "limited proxy" in body["Message"]
