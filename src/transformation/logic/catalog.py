"""The transformation system's view of the file catalog: read directly from the catalog's
database (as the WMS optimiser does), in bulk, with every right.

Calls flow one way: the TS reads the DMS tables and its change journal; the DMS knows
nothing of transformations.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from dms.db.schema import DMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, DMS_SCHEMA)
    >>> CatalogView(engine).file_ids(["/demo/nope"])
    {}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from dms.db import catalog as cat_db
from dms.db import changes
from dms.db import metadata as meta_db
from dms.logic import namespace
from dms.logic.metadata import query_ids
from dms.logic.rights import CatalogSettings, Requester
from dms.paths import normalise_lfn

#: the TS reads and acts in the catalog as an administrator (the service account)
CATALOG_ADMIN = Requester("Transformation", "", admin=True)


class CatalogView:
    """Reads of the catalog; LFNs read are remembered (up to :attr:`CACHE` of them) for the
    view's life: make a new view per agent cycle."""

    CACHE = 2_000_000

    def __init__(self, engine: Engine, settings: CatalogSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or CatalogSettings()
        self._lfns: dict[int, str] = {}
        self._dirs: dict[int, str] = {}

    def fields(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return meta_db.fields(conn)

    def file_ids(self, lfns: Iterable[str]) -> dict[str, int]:
        """LFN (as given) -> catalog file ID, for the registered files among ``lfns``."""
        wanted: dict[str, str] = {}
        for lfn in lfns:
            try:
                wanted[normalise_lfn(lfn)] = lfn
            except (TypeError, ValueError):
                continue
        with self.engine.connect() as conn:
            res = namespace.resolve(conn, wanted, cat_db.IDS)
        return {wanted[p]: row.file_id for p, row in res.files.items() if p in wanted}

    def lfns(self, file_ids: Iterable[int]) -> dict[int, str]:
        """file_id -> LFN for the files that exist."""
        wanted = list(file_ids)
        missing = [f for f in wanted if f not in self._lfns]
        if missing:
            with self.engine.connect() as conn:
                found = cat_db.lfns_of(conn, missing)
            if len(self._lfns) + len(found) > self.CACHE:
                self._lfns.clear()
            self._lfns.update(found)
            known = self._lfns
            return {f: known[f] if f in known else found[f] for f in wanted
                    if f in known or f in found}
        return {f: self._lfns[f] for f in wanted}

    def remember_lfns(self, names: Mapping[int, tuple[int, str]]) -> None:
        """Remember the LFNs of files whose directory and name are known (``{file_id:
        (dir_id, name)}``, read with their facts): a later :meth:`lfns` of them reads
        nothing. One read of the directories' paths not yet known."""
        if not names:
            return
        todo = {d for d, _name in names.values() if d not in self._dirs}
        if todo:
            with self.engine.connect() as conn:
                self._dirs.update(cat_db.dir_paths(conn, todo))
        if len(self._lfns) + len(names) > self.CACHE:
            self._lfns.clear()
        paths = self._dirs
        self._lfns.update((f, paths[d] + "/" + name) for f, (d, name) in names.items()
                          if d in paths)

    def facts(self, file_ids: Iterable[int], fields: Iterable[str] = (), *,
              ses: bool = False, columns: Iterable[str] | None = None
              ) -> dict[int, changes.FileFacts]:
        with self.engine.connect() as conn:
            return changes.file_facts(conn, list(file_ids), fields, ses=ses, columns=columns)

    def dir_id(self, path: str) -> int | None:
        with self.engine.connect() as conn:
            row = cat_db.get_dirs(conn, [path]).get(path)
        return None if row is None else int(row.dir_id)

    def query(self, query: Mapping[str, Any]) -> set[int]:
        """The IDs of every file matching ``query`` now (the full SQL evaluation)."""
        with self.engine.connect() as conn:
            select = query_ids(conn, query, "/")
            if select is None:
                return set()
            return {row[0] for row in conn.execute(select)}


def catalog_settings(config: Any) -> CatalogSettings:
    """The FileCatalog's settings, as its service builds them."""
    registry = config.registry
    vo_groups = {vo: (conf.default_group or registry.default_group or vo)
                 for vo, conf in registry.vos.items()}
    options = config.service_config("DataManagement", "FileCatalog").options
    return CatalogSettings.from_options(options, vo_groups)


def ensure_output_dir(view: CatalogView, path: str, owner: str, group: str,
                      metadata: Mapping[str, Any]) -> None:
    """Make ``path`` (and its parents) as the service account, give it to ``owner``, and set
    ``metadata`` on it (so every output below inherits it). Idempotent."""
    from dms.logic import directories
    from dms.logic import metadata as meta_logic

    if view.dir_id(path) is None:
        result = namespace.create_directories(view.engine, view.settings, CATALOG_ADMIN,
                                              [path])
        if result.failed:
            raise RuntimeError(f"cannot create {path}: {result.failed[path]}")
        directories.change_path(view.engine, CATALOG_ADMIN, "owner", {path: owner})
        directories.change_path(view.engine, CATALOG_ADMIN, "group", {path: group})
    if metadata:
        current = meta_logic.get_user_metadata(view.engine, CATALOG_ADMIN, path)
        todo = {k: v for k, v in metadata.items() if current.get(k) != v}
        if todo:
            meta_logic.set_metadata(view.engine, CATALOG_ADMIN, path, todo)
