"""Client side of the sandbox store: pack, upload, download, unpack.

* :func:`upload_sandbox` packs files and directories (by their base names, as DIRAC does) into
  a ``.tar.bz2`` temp file, hashes it (md5, DIRAC's key) and uploads it: small archives with
  DIRAC's ``streamFromClient`` RPC, larger ones with the streaming ``PUT .../upload/<name>``
  route so that neither side holds the archive in memory. Uploads are content-addressed, hence
  idempotent: the PUT fails over to the next server on any connection error.
* :func:`download_sandbox` fetches an archive raw (``rawContent``) and unpacks it safely: no
  absolute names, no ``..``, no links leading outside, no devices (Python's ``data`` filter
  plus our own checks, which give clearer errors).

Example::

    from core.rpc.client import Credentials, RPCClient
    client = RPCClient("WorkloadManagement/SandboxStore", urls=["https://127.0.0.1:8443"],
                       credentials=Credentials(cert="usercert.pem", key="userkey.pem"),
                       ca_dir="ca/certificates")
    url = upload_sandbox(client, ["job.sh"])        # 'SB:ProductionSandboxSE|/SandBox/...'
    download_sandbox(client, url, "out")            # [PosixPath('out/job.sh')]
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

import requests

from core.exceptions import InvalidArgumentError, PilotWMSError, ServiceUnavailableError
from core.rpc.client import RPCClient, error_from_reply
from core.rpc.jencode import decode

#: archives up to this size go through streamFromClient (base64 in a form), larger ones PUT
STREAM_THRESHOLD = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@contextmanager
def packed(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str, int]]:
    """A temp ``.tar.bz2`` of ``paths``: yields (file, md5, size); removed afterwards."""
    sources = [Path(p) for p in paths]
    if not sources:
        raise InvalidArgumentError("no files to put in the sandbox")
    for src in sources:
        if not src.exists():
            raise InvalidArgumentError(f"{src} does not exist")
    fd, name = tempfile.mkstemp(prefix="pilotwms-sb-", suffix=".tar.bz2")
    archive = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:bz2") as tar:
            for src in sources:
                tar.add(src, arcname=src.resolve().name)
        md5 = hashlib.md5(usedforsecurity=False)
        with archive.open("rb") as stream:
            for block in iter(lambda: stream.read(_CHUNK), b""):
                md5.update(block)
        yield archive, md5.hexdigest(), archive.stat().st_size
    finally:
        archive.unlink(missing_ok=True)


def upload_sandbox(rpc_client: RPCClient, paths: Iterable[str | os.PathLike[str]], *,
                   stream_threshold: int = STREAM_THRESHOLD) -> str:
    """Pack and upload ``paths``; returns the sandbox URL ``SB:<SE>|<path>``."""
    with packed(paths) as (archive, md5, size):
        name = f"{md5}.tar.bz2"
        if size <= stream_threshold:
            url = rpc_client.call("streamFromClient", [name, {}], "", size,
                                  archive.read_bytes())
        else:
            url = put_archive(rpc_client, archive, name, size)
    if not isinstance(url, str) or not url.startswith("SB:"):
        raise PilotWMSError(f"the sandbox store answered {url!r}, not a sandbox URL")
    return url


def _verify(rpc_client: RPCClient) -> Any:
    # RPCClient keeps its CA setting per request (not on the session); see the report
    return rpc_client.verify


def put_archive(rpc_client: RPCClient, archive: Path, name: str, size: int) -> str:
    """Stream ``archive`` with ``PUT <service>/upload/<name>``; returns the sandbox URL."""
    errors: list[str] = []
    for base in rpc_client.urls:
        with archive.open("rb") as body:
            try:
                response = rpc_client.session.put(
                    f"{base}/upload/{name}", data=body, timeout=rpc_client.timeout,
                    verify=_verify(rpc_client),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(size)})
            except requests.exceptions.RequestException as exc:
                errors.append(f"{base}: {type(exc).__name__}")
                continue  # content-addressed: repeating an upload is harmless
        if response.status_code in (404, 502, 503, 504):
            errors.append(f"{base}: HTTP {response.status_code}")
            continue
        try:
            reply = decode(response.content)
        except PilotWMSError:
            reply = None
        if not isinstance(reply, dict) or "OK" not in reply:
            raise PilotWMSError(f"HTTP {response.status_code}: {response.text[:200]}")
        if not reply["OK"]:
            raise error_from_reply(reply)
        return str(reply["Value"])
    raise ServiceUnavailableError("sandbox upload: no server answered: " + "; ".join(errors))


# -- download ---------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise InvalidArgumentError(f"unsafe path in sandbox: {member.name!r}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise InvalidArgumentError(f"unsupported member type in sandbox: {member.name!r}")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        base = dest / name.parent if member.issym() else dest
        resolved = Path(os.path.normpath(base / target))
        if target.is_absolute() or not resolved.is_relative_to(dest):
            raise InvalidArgumentError(
                f"link in sandbox points outside: {member.name!r} -> {member.linkname!r}")


def unpack(archive: Path | IO[bytes], dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Safely extract a sandbox archive into ``dest_dir``; returns the top-level entries."""
    dest = Path(dest_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    opened = (tarfile.open(archive, mode="r:*") if isinstance(archive, Path)
              else tarfile.open(fileobj=archive, mode="r:*"))
    with opened as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, dest)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.11.4 (Debian 12 has 3.11.2): the checks above, and no special bits
            for member in members:  # or foreign owners
                member.mode &= 0o777
                member.uid, member.gid, member.uname, member.gname = (
                    os.getuid(), os.getgid(), "", "")
            tar.extractall(dest, members=members)  # noqa: S202 - members checked above
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    return sorted(dest / top for top in tops)


def download_sandbox(rpc_client: RPCClient, sb_url: str,
                     dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Fetch the sandbox ``sb_url`` and unpack it into ``dest_dir``; returns what came out."""
    data = rpc_client.call_raw("streamToClient", sb_url, "")
    with tempfile.TemporaryFile() as tmp:
        tmp.write(data)
        del data
        tmp.seek(0)
        try:
            return unpack(tmp, dest_dir)
        except tarfile.TarError as exc:
            raise InvalidArgumentError(f"sandbox {sb_url} is not a valid archive: {exc}") \
                from None
