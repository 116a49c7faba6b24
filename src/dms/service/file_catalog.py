"""``DataManagement/FileCatalog``: DIRAC's file catalog service (FileCatalogHandler's names).

Bulk methods take one LFN, a list or a dict keyed by LFN and answer DIRAC's
``{"Successful": {lfn: value}, "Failed": {lfn: reason}}``:

* namespace: ``addFile({lfn: {PFN, Size, SE, GUID, Checksum, ChecksumType}})``,
  ``addReplica({lfn: {SE, PFN}})``, ``removeFile``, ``removeReplica({lfn: {SE}})``,
  ``getReplicas(lfns, allStatus)``, ``setReplicaStatus({lfn: {SE, Status}})``,
  ``exists``, ``isFile``, ``isDirectory``,
  ``getFileMetadata``, ``getDirectoryMetadata``, ``listDirectory(lfns, verbose)``,
  ``createDirectory``, ``removeDirectory``, ``getDirectoryReplicas``,
  ``getDirectorySize(lfns, longOutput)``, ``changePathOwner/Group/Mode({path: v}, recursive)``;
* metadata: ``addMetadataField(name, type[, "-d"|"-f"])`` and ``deleteMetadataField``
  (administrators), ``getMetadataFields``, ``setMetadata(path, {field: value})``,
  ``setMetadataBulk({path: {field: value}})``, ``removeMetadata({path: [fields]})``,
  ``getDirectoryUserMetadata(path)``, ``getFileUserMetadata(path)``,
  ``findFilesByMetadata(query, path)``, ``findDirectoriesByMetadata(query, path)``,
  ``getReplicasByMetadata(query, path, allStatus)``;
* datasets: ``addDataset({path: query})``, ``removeDataset``, ``getDatasets``,
  ``getDatasetFiles``, ``freezeDataset``, ``releaseDataset``;
* ancestry: ``addFileAncestors({lfn: {"Ancestors": [...]}})``,
  ``getFileAncestors(lfns, depths)``, ``getFileDescendents(lfns, depths)``;
* usage: ``getStorageUsage(path)`` -> ``{SE: {Size, Files}}``, ``getCatalogCounters()``.

Rights: every method needs an authenticated caller; what it may touch is decided per path by
:mod:`dms.logic.rights`. Administrators: groups with ``FileCatalogManagement`` (option
``AdminProperties``) and trusted hosts. Options (``Systems.DataManagement.Services.FileCatalog
.Options``): ``DefaultDirMode``, ``DefaultFileMode`` (octal), ``AdminProperties``,
``ChangeJournalDays`` (how long the change journal keeps its entries, default 7; readers
that fall further behind are caught up by their own reconciliation).

Example (a client; see tests/dms/service/test_file_catalog.py)::

    from dms.catalog_client import FileCatalogClient
    fc = FileCatalogClient(rpc_client)
    fc.add_file({"/demo/user/a/alice/f1": {"Size": 3, "SE": "DISK", "GUID": "...",
                                            "Checksum": "0a0b0c0d"}})
    fc.get_replicas(["/demo/user/a/alice/f1"]).successful   # {lfn: {"DISK": ""}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import write_transaction
from core.exceptions import InvalidArgumentError
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from dms.bulk import BulkResult
from dms.db import changes, tables
from dms.db import metadata as meta_db
from dms.logic import access, ancestry, datasets, directories, metadata, namespace
from dms.logic import replicas as replica_ops
from dms.logic.namespace import as_list
from dms.logic.rights import CatalogSettings, Requester

SYSTEM = "DataManagement"
Bulk = list | dict | str


def requester_of(ident: Identity, settings: CatalogSettings, ctx: ServerContext) -> Requester:
    """The catalog's view of a caller."""
    user = ident.username or ident.dn or "anonymous"
    groups = frozenset(name for name, group in ctx.config.registry.groups.items()
                       if ident.username in group.users)
    admin = bool(settings.admin_properties & ident.properties) or (
        ident.is_host and "TrustedHost" in ident.properties)
    return Requester(user, ident.group or "", ident.vo, admin, groups)


def catalog_settings(ctx: ServerContext) -> CatalogSettings:
    """The catalog's settings from ``Systems.DataManagement.Services.FileCatalog.Options``."""
    registry = ctx.config.registry
    vo_groups = {vo: (conf.default_group or registry.default_group or vo)
                 for vo, conf in registry.vos.items()}
    try:
        return CatalogSettings.from_options(
            ctx.config.service_config(SYSTEM, "FileCatalog").options, vo_groups)
    except ValueError as exc:
        raise InvalidArgumentError(f"FileCatalog options: {exc}") from None


def _wire(result: BulkResult) -> dict[str, Any]:
    return result.to_wire()


def _paths(lfns: Bulk) -> list[str]:
    return as_list(lfns)


def _mapping(lfns: Bulk, default: Any = None) -> Mapping[str, Any]:
    if isinstance(lfns, dict):
        return lfns
    return {lfn: default for lfn in as_list(lfns)}


class FileCatalogService(Service):
    system = SYSTEM
    name = "FileCatalog"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.settings = catalog_settings(ctx)

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    #: seconds between prunings of the change journal
    PRUNE_PERIOD = 3600.0

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.PRUNE_PERIOD, self._prune_journal)]

    def _prune_journal(self) -> None:
        options = self.ctx.config.service_config(SYSTEM, self.name).options
        days = float(options.get("ChangeJournalDays", 7))
        with write_transaction(self.engine) as conn:
            changes.prune(conn, older_than=timedelta(days=days))

    def req(self, call: Call) -> Requester:
        return requester_of(call.identity, self.settings, self.ctx)

    # -- namespace ------------------------------------------------------------------------------

    @rpc_method("isOK")
    def is_ok(self, call: Call) -> None:
        """S_OK when the catalog's database answers."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    @rpc_method("getPathPermissions")
    def get_path_permissions(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(access.path_permissions(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("hasAccess")
    def has_access(self, call: Call, paths: Bulk, op_type: Bulk) -> dict[str, Any]:
        if isinstance(paths, str) and not isinstance(op_type, str):  # DIRAC < v6r15 order
            paths, op_type = op_type, paths
        if not isinstance(op_type, str):
            raise InvalidArgumentError("hasAccess(paths, opType): opType is a method name")
        return _wire(access.has_access(self.engine, self.req(call), _paths(paths), op_type))

    @rpc_method("getLFNForGUID")
    def get_lfn_for_guid(self, call: Call, guids: Bulk) -> dict[str, Any]:
        return _wire(access.lfns_for_guids(self.engine, self.req(call), _paths(guids)))

    @rpc_method("getFileDetails")
    def get_file_details(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(access.file_details(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("getReplicaStatus")
    def get_replica_status(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(access.replica_status(self.engine, self.req(call), _mapping(lfns)))

    @rpc_method("setFileStatus")
    def set_file_status(self, call: Call, lfns: dict) -> dict[str, Any]:
        return _wire(access.set_file_status(self.engine, self.req(call), lfns))

    @rpc_method("getDirectoryDump")
    def get_directory_dump(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(access.directory_dump(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("findFilesByMetadataDetailed")
    def find_files_by_metadata_detailed(self, call: Call, query: dict,
                                        path: str = "/") -> dict[str, Any]:
        req = self.req(call)
        found = metadata.find_files(self.engine, req, query, path)
        return _wire(access.file_details(self.engine, req, found)) if found else {}

    @rpc_method("addFile")
    def add_file(self, call: Call, lfns: dict) -> dict[str, Any]:
        return _wire(namespace.add_files(self.engine, self.settings, self.req(call), lfns))

    @rpc_method("addReplica")
    def add_replica(self, call: Call, lfns: dict) -> dict[str, Any]:
        return _wire(replica_ops.add_replicas(self.engine, self.req(call), lfns))

    @rpc_method("removeFile")
    def remove_file(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.remove_files(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("removeReplica")
    def remove_replica(self, call: Call, lfns: dict) -> dict[str, Any]:
        return _wire(replica_ops.remove_replicas(self.engine, self.req(call), lfns))

    @rpc_method("setReplicaStatus")
    def set_replica_status(self, call: Call, lfns: dict) -> dict[str, Any]:
        return _wire(replica_ops.set_replica_status(self.engine, self.req(call), lfns))

    @rpc_method("getReplicas")
    def get_replicas(self, call: Call, lfns: Bulk, all_status: bool = False) -> dict[str, Any]:
        return _wire(replica_ops.get_replicas(self.engine, self.req(call), _paths(lfns),
                                            all_status))

    @rpc_method("exists")
    def exists(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.exists(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("isFile")
    def is_file(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.is_file(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("isDirectory")
    def is_directory(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.is_directory(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("getFileMetadata")
    def get_file_metadata(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.get_file_metadata(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("getFileSize")
    def get_file_size(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        result = namespace.get_file_metadata(self.engine, self.req(call), _paths(lfns))
        result.successful = {k: v["Size"] for k, v in result.successful.items()}
        return _wire(result)

    @rpc_method("getDirectoryMetadata")
    def get_directory_metadata(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(directories.get_directory_metadata(self.engine, self.req(call),
                                                      _paths(lfns)))

    @rpc_method("listDirectory")
    def list_directory(self, call: Call, lfns: Bulk, verbose: bool = False) -> dict[str, Any]:
        return _wire(directories.list_directory(self.engine, self.req(call), _paths(lfns),
                                              verbose))

    @rpc_method("createDirectory")
    def create_directory(self, call: Call, lfns: Bulk) -> dict[str, Any]:
        return _wire(namespace.create_directories(self.engine, self.settings, self.req(call),
                                                  _paths(lfns)))

    @rpc_method("removeDirectory")
    def remove_directory(self, call: Call, lfns: Bulk, recursive: bool = False
                         ) -> dict[str, Any]:
        if recursive:
            raise InvalidArgumentError("recursive removal: remove the files, then the "
                                       "directories deepest first")
        return _wire(namespace.remove_directories(self.engine, self.req(call), _paths(lfns)))

    @rpc_method("getDirectoryReplicas")
    def get_directory_replicas(self, call: Call, lfns: Bulk, all_status: bool = False
                               ) -> dict[str, Any]:
        return _wire(directories.get_directory_replicas(self.engine, self.req(call),
                                                      _paths(lfns), all_status))

    @rpc_method("getDirectorySize")
    def get_directory_size(self, call: Call, lfns: Bulk, long_output: bool = False,
                           from_files: bool = False, recursive_sum: bool = True
                           ) -> dict[str, Any]:
        return _wire(directories.get_directory_size(self.engine, self.req(call), _paths(lfns),
                                                  long_output, recursive_sum))

    @rpc_method("getStorageUsage")
    def get_storage_usage(self, call: Call, path: str = "/") -> dict[str, Any]:
        return directories.storage_usage(self.engine, self.req(call), path)

    @rpc_method("getCatalogCounters")
    def get_catalog_counters(self, call: Call) -> dict[str, int]:
        with self.engine.connect() as conn:
            def count(table: sa.Table) -> int:
                return int(conn.execute(sa.select(sa.func.count()).select_from(table))
                           .scalar_one())
            return {"Files": count(tables.files), "Directories": count(tables.directories),
                    "Replicas": count(tables.replicas)}

    @rpc_method("changePathOwner")
    def change_path_owner(self, call: Call, lfns: dict, recursive: bool = False
                          ) -> dict[str, Any]:
        return _wire(directories.change_path(self.engine, self.req(call), "owner", lfns,
                                           recursive))

    @rpc_method("changePathGroup")
    def change_path_group(self, call: Call, lfns: dict, recursive: bool = False
                          ) -> dict[str, Any]:
        return _wire(directories.change_path(self.engine, self.req(call), "group", lfns,
                                           recursive))

    @rpc_method("changePathMode")
    def change_path_mode(self, call: Call, lfns: dict, recursive: bool = False
                         ) -> dict[str, Any]:
        return _wire(directories.change_path(self.engine, self.req(call), "mode", lfns,
                                           recursive))

    # -- metadata -----------------------------------------------------------------------------

    @rpc_method("addMetadataField")
    def add_metadata_field(self, call: Call, name: str, kind: str, meta_type: str = "-d"
                           ) -> str:
        new = metadata.add_field(self.engine, self.req(call), name, kind)
        return f"Added new metadata: {name}" if new else f"Metadata {name} already defined"

    @rpc_method("deleteMetadataField")
    def delete_metadata_field(self, call: Call, name: str) -> None:
        metadata.delete_field(self.engine, self.req(call), name)

    @rpc_method("getMetadataFields")
    def get_metadata_fields(self, call: Call) -> dict[str, dict[str, str]]:
        """DIRAC's two dicts; here every field can be set on directories and on files."""
        kinds = {n: meta_db.dirac_type(k) for n, k in metadata.get_fields(self.engine).items()}
        return {"DirectoryMetaFields": kinds, "FileMetaFields": dict(kinds)}

    @rpc_method("setMetadata")
    def set_metadata(self, call: Call, path: str, values: dict) -> None:
        metadata.set_metadata(self.engine, self.req(call), path, values)

    @rpc_method("setMetadataBulk")
    def set_metadata_bulk(self, call: Call, values: dict) -> dict[str, Any]:
        result = BulkResult()
        for path, vals in values.items():
            try:
                metadata.set_metadata(self.engine, self.req(call), path, vals)
                result.ok(path)
            except (InvalidArgumentError, LookupError, PermissionError) as exc:
                result.fail(path, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad path must not fail the rest
                result.fail(path, getattr(exc, "message", str(exc)))
        return _wire(result)

    @rpc_method("removeMetadata")
    def remove_metadata(self, call: Call, targets: dict) -> dict[str, Any]:
        return _wire(metadata.remove_metadata(self.engine, self.req(call), targets))

    @rpc_method("getDirectoryUserMetadata")
    def get_directory_user_metadata(self, call: Call, path: str) -> dict[str, Any]:
        return metadata.get_user_metadata(self.engine, self.req(call), path)

    @rpc_method("getFileUserMetadata")
    def get_file_user_metadata(self, call: Call, path: str) -> dict[str, Any]:
        return metadata.get_user_metadata(self.engine, self.req(call), path)

    @rpc_method("findFilesByMetadata")
    def find_files_by_metadata(self, call: Call, query: dict, path: str = "/") -> list[str]:
        return metadata.find_files(self.engine, self.req(call), query, path)

    @rpc_method("findDirectoriesByMetadata")
    def find_directories_by_metadata(self, call: Call, query: dict, path: str = "/"
                                     ) -> list[str]:
        return metadata.find_directories(self.engine, self.req(call), query, path)

    @rpc_method("getReplicasByMetadata")
    def get_replicas_by_metadata(self, call: Call, query: dict, path: str = "/",
                                 all_status: bool = False) -> dict[str, Any]:
        req = self.req(call)
        lfns = metadata.find_files(self.engine, req, query, path)
        return _wire(replica_ops.get_replicas(self.engine, req, lfns, all_status))

    # -- datasets -----------------------------------------------------------------------------

    @rpc_method("addDataset")
    def add_dataset(self, call: Call, entries: dict) -> dict[str, Any]:
        return _wire(datasets.add_datasets(self.engine, self.settings, self.req(call),
                                           entries))

    @rpc_method("removeDataset")
    def remove_dataset(self, call: Call, names: Bulk) -> dict[str, Any]:
        return _wire(datasets.remove_datasets(self.engine, self.req(call), _paths(names)))

    @rpc_method("getDatasets")
    def get_datasets(self, call: Call, names: Bulk) -> dict[str, Any]:
        return _wire(datasets.get_datasets(self.engine, self.req(call), _paths(names)))

    @rpc_method("getDatasetFiles")
    def get_dataset_files(self, call: Call, names: Bulk) -> dict[str, Any]:
        return _wire(datasets.get_dataset_files(self.engine, self.req(call), _paths(names)))

    @rpc_method("freezeDataset")
    def freeze_dataset(self, call: Call, names: Bulk) -> dict[str, Any]:
        return _wire(datasets.freeze_datasets(self.engine, self.req(call), _paths(names)))

    @rpc_method("releaseDataset")
    def release_dataset(self, call: Call, names: Bulk) -> dict[str, Any]:
        return _wire(datasets.release_datasets(self.engine, self.req(call), _paths(names)))

    # -- ancestry -----------------------------------------------------------------------------

    @rpc_method("addFileAncestors")
    def add_file_ancestors(self, call: Call, entries: dict) -> dict[str, Any]:
        return _wire(ancestry.add_ancestors(self.engine, self.req(call), entries))

    @rpc_method("getFileAncestors")
    def get_file_ancestors(self, call: Call, lfns: Bulk,
                           depths: list[int] | int | None = None
                           ) -> dict[str, Any]:
        return _wire(ancestry.get_ancestors(self.engine, self.req(call), _paths(lfns),
                                            depths))

    @rpc_method("getFileDescendents")
    def get_file_descendents(self, call: Call, lfns: Bulk,
                             depths: list[int] | int | None = None
                             ) -> dict[str, Any]:
        return _wire(ancestry.get_descendants(self.engine, self.req(call), _paths(lfns),
                                              depths))
