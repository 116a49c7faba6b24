"""Where a ``put`` transfer's bytes come from, made into a local file for the protocols.

* ``spool:<ticket>``: the file the user uploaded (already local);
* ``lfn:/vo/...``: a catalog file, fetched from its best replica with the request
  management's data manager acting as the transfer's owner (the catalog's rights apply;
  the copy is verified against the catalog's adler32);
* ``job:<id>:<file>``: a file of the job's output sandbox (the owner's jobs only);
* ``se:<SE>:<lfn>`` (internal: data push files forwarded to an association): the staged
  copy on a storage element, read with the host certificate.

The fetched copy lives in the spool (``<spool>/<owner>/src-<transfer id>``) until the
transfer is final, so retries do not fetch again.

Example::

    path, checksum = local_source(row, spool, {"lfn": fetch_lfn, "job": fetch_job})
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.exceptions import NotFoundError, PilotWMSError
from dms.storage.base import adler32_file
from transfer.db.transfers import TransferRow
from transfer.errors import RemotePermanentError, RemoteUnavailableError
from transfer.logic.spool import Spool

Fetch = Callable[[TransferRow, Path], None]


def cached_path(spool: Spool, row: TransferRow) -> Path:
    return spool.user_dir(row.owner) / f"src-{row.transfer_id}"


def local_source(row: TransferRow, spool: Spool, fetchers: dict[str, Fetch]
                 ) -> tuple[Path, str | None]:
    """(local file, its expected adler32) for a ``put`` transfer; ``fetchers`` by source
    kind (``lfn``, ``job``, ``se``) make the local copy of the others."""
    if row.source_kind == "spool":
        if not row.spool_path or not Path(row.spool_path).exists():
            raise RemotePermanentError("the spooled file is gone")
        return Path(row.spool_path), row.checksum
    path = cached_path(spool, row)
    if not path.exists():
        fetch = fetchers.get(row.source_kind)
        if fetch is None:
            raise RemotePermanentError(f"{row.source_kind} sources are not available here")
        part = path.with_name(path.name + ".fetch")
        try:
            fetch(row, part)
        except NotFoundError as exc:
            part.unlink(missing_ok=True)
            raise RemotePermanentError(f"source {row.source}: {exc.message}") from None
        except PilotWMSError as exc:
            part.unlink(missing_ok=True)
            raise RemoteUnavailableError(f"source {row.source}: {exc.message}") from None
        part.replace(path)
    return path, adler32_file(path).checksum


def job_output_member(wms_engine: Engine, store_base: Path, owner: str, job_id: int,
                      name: str, dest: Path) -> None:
    """Extract ``name`` from the output sandbox of job ``job_id`` (owned by ``owner``)."""
    from wms.db.sandboxes import sandboxes_of_entity
    from wms.db.tables import jobs
    from wms.logic.sandboxes import StoreSettings, local_path, open_stored

    with wms_engine.connect() as conn:
        job_owner = conn.execute(sa.select(jobs.c.owner).where(
            jobs.c.job_id == job_id)).scalar()
        if job_owner is None or job_owner != owner:
            raise NotFoundError(f"no job {job_id} of {owner}")
        found = [rec for kind, rec in sandboxes_of_entity(conn, f"Job:{job_id}")
                 if kind == "Output"]
    if not found:
        raise NotFoundError(f"job {job_id} has no output sandbox (yet)")
    settings = StoreSettings(base_path=store_base)
    for rec in reversed(found):
        with open_stored(local_path(settings, rec.pfn)) as stream, \
                tarfile.open(fileobj=stream, mode="r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.rsplit("/", 1)[-1] == name:
                    data = tar.extractfile(member)
                    assert data is not None  # noqa: S101 - a regular file
                    with open(dest, "wb") as out:
                        for block in iter(lambda d=data: d.read(1 << 20), b""):  # type: ignore[misc]
                            out.write(block)
                    return
    raise NotFoundError(f"{name} is not in the output sandbox of job {job_id}")
