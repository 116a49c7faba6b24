"""Input and output data of a job, moved by the wrapper itself (standard library only).

Input data (JDL ``InputData``): the catalog gives each LFN's replicas (``{SE: URL}``) and
checksum; replicas at the pilot's site come first. With the default policy the files are
downloaded into the job directory (adler32 checked, another replica tried on any failure);
with ``InputDataPolicy`` naming "Protocol" (DIRAC's ``InputDataByProtocol``) nothing is copied
and the payload reads the URLs from ``pilotwms_input_data.json``
(``{"<lfn>": "<url>"}``) and ``$PILOTWMS_INPUT_DATA``.

Output data (``OutputData``, ``OutputSE``, ``OutputPath``): each file is uploaded to the first
``OutputSE`` that takes it (default: the writable SEs of the pilot's site) and registered in
the catalog with its size, adler32 and a GUID. When every wanted SE fails, the file goes to a
failover SE (any other writable SE, the site's first) and a request is recorded
(``RequestManagement/ReqManager``) to replicate it to the wanted SE and remove the failover
copy; a registration that fails becomes a ``RegisterFile`` request. A file is only reported
lost when no SE at all took it.

Transfer protocols: ``https://`` (pilotwms's storage service: GET, and PUT with the
``X-Checksum-Adler32`` header), ``root://`` (``xrdcp`` on the node), ``file://``.

Example::

    mover = DataMover(rpc, site="LCG.Demo.org", workdir="/scratch/job/12", log=print)
    urls = mover.fetch_inputs(["/demo/user/a/alice/in.dat"], download=True)
    done = mover.store_outputs({"/demo/user/a/alice/12/out.dat": "/scratch/job/12/out.dat"},
                               ses=["DEMO-DISK"])
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from pilot.rpc import RpcClient, RpcError

CATALOG = "DataManagement/FileCatalog"
STORAGE = "DataManagement/StorageElement"
REQUESTS = "RequestManagement/ReqManager"
CHUNK = 1024 * 1024
URLS_FILE = "pilotwms_input_data.json"


class DataError(Exception):
    """A data step that could not be completed."""


def adler32_of(path: str) -> str:
    """The file's adler32 as 8 lowercase hex digits (DIRAC's form)."""
    value = 1
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            value = zlib.adler32(block, value)
    return f"{value & 0xFFFFFFFF:08x}"


def same_checksum(one: str | None, two: str | None) -> bool:
    """adler32 values compare as numbers (some catalogs drop leading zeros)."""
    try:
        return int(str(one), 16) == int(str(two), 16)
    except ValueError:
        return False


def _bulk(reply: Any, lfns: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    if not isinstance(reply, dict):
        raise DataError(f"unexpected catalog reply: {reply!r}")
    ok = dict(reply.get("Successful") or {})
    failed = {k: str(v) for k, v in (reply.get("Failed") or {}).items()}
    for lfn in lfns:
        if lfn not in ok and lfn not in failed:
            failed[lfn] = "no answer"
    return ok, failed


@dataclass
class OutputResult:
    """Where each output went: ``{lfn: SE}``, those on a failover SE, and the lost ones."""

    stored: dict[str, str] = field(default_factory=dict)
    failover: dict[str, str] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)


class DataMover:
    def __init__(self, rpc: RpcClient, *, site: str, workdir: str,
                 log: Callable[[str], None] = print, timeout: float = 300.0) -> None:
        self.rpc = rpc
        self.site = site
        self.workdir = workdir
        self.log = log
        self.timeout = timeout
        self._config: dict[str, Any] | None = None

    # -- configuration ----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """``{"StorageElements": {...}, "Sites": {site: [SE]}}`` from the storage service."""
        if self._config is None:
            reply = self.rpc.call(STORAGE, "getStorageElements")
            if not isinstance(reply, dict):
                raise DataError("the storage service sent no configuration")
            self._config = reply
        return self._config

    def site_ses(self) -> list[str]:
        return list((self.config().get("Sites") or {}).get(self.site) or [])

    def writable_ses(self) -> list[str]:
        ses = self.config().get("StorageElements") or {}
        return [name for name, conf in ses.items() if conf.get("WriteAccess", True)]

    def url_for(self, se: str, lfn: str) -> str:
        """The URL of ``lfn`` on ``se`` through its first protocol this pilot can use."""
        conf = (self.config().get("StorageElements") or {}).get(se)
        if not conf:
            raise DataError(f"unknown storage element {se}")
        rel = lfn.strip("/")
        for proto in conf.get("Protocols") or []:
            plugin = str(proto.get("Plugin", ""))
            host, port = proto.get("Host", ""), proto.get("Port")
            netloc = f"{host}:{port}" if port else str(host)
            path = str(proto.get("Path", "/")).rstrip("/")
            if plugin == "HTTPS":
                return (f"https://{netloc}/{STORAGE}/file/{urllib.parse.quote(se)}/"
                        f"{urllib.parse.quote(rel)}")
            if plugin == "XROOT" and shutil.which("xrdcp"):
                return f"root://{netloc}/{path}/{rel}"
            if plugin == "File" and os.path.isdir(path or "/"):
                return "file://" + urllib.parse.quote(f"{path}/{rel}")
        raise DataError(f"no protocol of {se} is usable from this node")

    # -- input -------------------------------------------------------------------------------

    def fetch_inputs(self, lfns: list[str], *, download: bool = True) -> dict[str, str]:
        """Resolve (and by default download) the input files; ``{lfn: local path or URL}``.
        Raises :class:`DataError` naming the files that could not be had."""
        lfns = list(dict.fromkeys(lfns))
        replicas, failed = _bulk(self.rpc.call(CATALOG, "getReplicas", lfns), lfns)
        meta, meta_failed = _bulk(self.rpc.call(CATALOG, "getFileMetadata", lfns), lfns)
        failed.update({k: v for k, v in meta_failed.items() if k not in failed})
        local = set(self.site_ses())
        result: dict[str, str] = {}
        for lfn in lfns:
            if lfn in failed:
                continue
            choices = sorted((replicas.get(lfn) or {}).items(),
                             key=lambda item: item[0] not in local)
            if not choices:
                failed[lfn] = "no replica"
                continue
            if not download:
                result[lfn] = str(choices[0][1])
                continue
            dest = os.path.join(self.workdir, os.path.basename(lfn))
            errors = []
            for se, url in choices:
                try:
                    self._get(str(url), dest)
                    checksum = adler32_of(dest)
                    wanted = (meta.get(lfn) or {}).get("Checksum")
                    if wanted and not same_checksum(wanted, checksum):
                        raise DataError(f"checksum {checksum} != catalog's {wanted}")
                    result[lfn] = dest
                    self.log(f"input {lfn} from {se}: {os.path.getsize(dest)} bytes")
                    break
                except (DataError, OSError, http.client.HTTPException) as exc:
                    errors.append(f"{se}: {exc}")
                    if os.path.exists(dest):
                        os.unlink(dest)
            else:
                failed[lfn] = "; ".join(errors)
        if failed:
            raise DataError("; ".join(f"{lfn}: {why}" for lfn, why in sorted(failed.items())))
        if not download:
            with open(os.path.join(self.workdir, URLS_FILE), "w", encoding="utf-8") as out:
                json.dump(result, out, indent=1)
        return result

    def _get(self, url: str, dest: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=self.rpc.context)
            try:
                conn.request("GET", parts.path, headers=self.rpc.auth_headers())
                response = conn.getresponse()
                if response.status != 200:
                    raise DataError(f"HTTP {response.status}: {response.read(300)!r}")
                with open(dest, "wb") as out:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
            finally:
                conn.close()
        elif parts.scheme == "root":
            self._xrdcp(url, dest)
        elif parts.scheme == "file":
            shutil.copyfile(urllib.parse.unquote(parts.path), dest)
        else:
            raise DataError(f"unsupported URL {url}")

    def _xrdcp(self, source: str, dest: str) -> None:
        env = dict(os.environ, XRD_CONNECTIONRETRY="1", XRD_CONNECTIONWINDOW="5",
                   XRD_REQUESTTIMEOUT="60")
        proc = subprocess.run(["xrdcp", "-f", "-s", source, dest],  # noqa: S603,S607
                              capture_output=True, text=True, env=env, timeout=self.timeout,
                              check=False)
        if proc.returncode != 0:
            raise DataError(f"xrdcp: {proc.stderr.strip()[-300:]}")

    # -- output ------------------------------------------------------------------------------

    def store_outputs(self, files: dict[str, str], *, ses: list[str],
                      job_id: int | None = None) -> OutputResult:
        """Upload and register ``{lfn: local path}`` (see the module docstring).

        An LFN already in the catalog is never overwritten: with the same adler32 (a job run
        again) it counts as stored where it is, else it is lost with the reason."""
        wanted = list(dict.fromkeys(ses or [s for s in self.site_ses()
                                            if s in self.writable_ses()]))
        if not wanted:
            raise DataError("no output SE given and none writable at this site")
        site = self.site_ses()
        others = [s for s in self.writable_ses() if s not in wanted]
        failover = sorted(others, key=lambda s: s not in site)
        lfns = list(files)
        try:
            known, _unknown = _bulk(self.rpc.call(CATALOG, "getFileMetadata", lfns), lfns)
        except RpcError as exc:  # the catalog is down: uploads go on, registration is retried
            self.log(f"outputs: cannot ask the catalog ({exc})")
            known = {}
        result = OutputResult()
        for lfn, path in files.items():
            size, checksum = os.path.getsize(path), adler32_of(path)
            if lfn in known:
                there = known[lfn] if isinstance(known[lfn], dict) else {}
                if same_checksum(there.get("Checksum"), checksum):
                    result.stored[lfn] = "(already registered)"
                else:
                    result.lost[lfn] = "already registered with another content"
                continue
            guid = str(uuid.uuid4()).upper()
            errors = []
            for index, se in enumerate(wanted + failover):
                try:
                    url = self.url_for(se, lfn)
                    if url.startswith("https://"):  # a refusal comes with its reason
                        self.rpc.call(STORAGE, "checkUpload", se, lfn, size)
                    self._put(url, path, size, checksum)
                except (DataError, RpcError, OSError, http.client.HTTPException) as exc:
                    errors.append(f"{se}: {exc}")
                    self.log(f"output {lfn}: {se} refused it: {exc}")
                    continue
                entry = {"PFN": url, "Size": size, "SE": se, "GUID": guid,
                         "Checksum": checksum, "ChecksumType": "Adler32"}
                operations = self._register(lfn, entry)
                if index < len(wanted):
                    result.stored[lfn] = se
                else:
                    result.failover[lfn] = se
                    operations += [
                        {"Type": "ReplicateAndRegister", "TargetSE": wanted[0],
                         "SourceSE": se, "Files": [{"LFN": lfn}]},
                        {"Type": "RemoveReplica", "TargetSE": se, "Files": [{"LFN": lfn}]}]
                if operations:  # one request: its operations run in this order
                    self._request(job_id, operations, result)
                self.log(f"output {lfn}: on {se} ({size} bytes, adler32 {checksum})")
                break
            else:
                result.lost[lfn] = "; ".join(errors)
        return result

    def _register(self, lfn: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Register the new file; the request operation that will, when that fails now."""
        try:
            _ok, failed = _bulk(self.rpc.call(CATALOG, "addFile", {lfn: entry}), [lfn])
            reason = failed.get(lfn)
        except RpcError as exc:
            reason = str(exc)
        if not reason:
            return []
        self.log(f"output {lfn}: registration failed ({reason}); a request will retry it")
        return [{"Type": "RegisterFile", "TargetSE": entry["SE"],
                 "Files": [{"LFN": lfn, **entry}]}]

    def _request(self, job_id: int | None, operations: list[dict[str, Any]],
                 result: OutputResult) -> None:
        request: dict[str, Any] = {"RequestName": f"job{job_id}-{uuid.uuid4().hex[:8]}",
                                   "Operations": operations}
        if job_id is not None:
            request["JobID"] = job_id
        result.requests.append(self.rpc.call(REQUESTS, "putRequest", request))

    def _put(self, url: str, path: str, size: int, checksum: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=self.rpc.context)
            headers = dict(self.rpc.auth_headers(), **{
                "Content-Length": str(size), "X-Checksum-Adler32": checksum,
                "Content-Type": "application/octet-stream"})
            try:
                with open(path, "rb") as body:
                    conn.request("PUT", parts.path, body=body, headers=headers)
                    response = conn.getresponse()
                    text = response.read(2000)
                if response.status != 200:
                    raise DataError(f"HTTP {response.status}: {text[:300]!r}")
                reply = json.loads(text or b"{}")
                if isinstance(reply, dict) and reply.get("OK") is False:
                    raise DataError(str(reply.get("Message")))
            finally:
                conn.close()
        elif parts.scheme == "root":
            self._xrdcp(path, url)
        elif parts.scheme == "file":
            target = urllib.parse.unquote(parts.path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
            if not same_checksum(adler32_of(target), checksum):
                raise DataError(f"checksum mismatch after copying to {target}")
        else:
            raise DataError(f"unsupported URL {url}")


def strip_lfn(entry: str) -> str:
    """``LFN:/demo/f`` -> ``/demo/f``; anything else unchanged.

    >>> strip_lfn("lfn:/demo/f"), strip_lfn("out.dat")
    ('/demo/f', 'out.dat')
    """
    return entry[4:] if entry[:4].upper() == "LFN:" else entry


def output_lfn(entry: str, *, vo: str, owner: str, job_id: int, output_path: str = "") -> str:
    """DIRAC's user output LFN: ``LFN:/abs`` as given, else
    ``/<vo>/user/<o>/<owner>/<OutputPath>/<name>`` (``OutputPath`` absolute: used as is), else
    ``/<vo>/user/<o>/<owner>/<job // 1000>/<job>/<name>``.

    >>> output_lfn("out.dat", vo="demo", owner="alice", job_id=12345)
    '/demo/user/a/alice/12/12345/out.dat'
    >>> output_lfn("out.dat", vo="demo", owner="alice", job_id=1, output_path="run1")
    '/demo/user/a/alice/run1/out.dat'
    """
    if strip_lfn(entry) != entry:
        return strip_lfn(entry)
    name = os.path.basename(entry)
    home = f"/{vo}/user/{owner[0]}/{owner}"
    if output_path:
        base = output_path if output_path.startswith(f"/{vo}/") else \
            f"{home}/{output_path.strip('/')}"
        return f"{base.rstrip('/')}/{name}"
    return f"{home}/{job_id // 1000}/{job_id}/{name}"
