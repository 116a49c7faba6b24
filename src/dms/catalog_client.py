"""The typed Python client of ``DataManagement/FileCatalog``.

Methods are snake_case versions of the wire methods. Bulk methods take one LFN, a list of them,
or (for the ones that need values) a dict keyed by LFN, and return a :class:`~dms.bulk.BulkResult`
(``successful`` / ``failed`` maps); large bulks are sent in chunks of :data:`CHUNK` and merged.
Single-value methods return the value or raise the server's exception class.

Example::

    from core.rpc.client import Credentials, RPCClient
    rpc = RPCClient("DataManagement/FileCatalog", urls=["https://127.0.0.1:8443"],
                    credentials=Credentials(cert="usercert.pem", key="userkey.pem"),
                    ca_dir="ca/certificates")
    fc = FileCatalogClient(rpc)                      # or FileCatalogClient.from_config()
    fc.add_file({"/demo/user/a/alice/f1": {"PFN": "", "Size": 3, "SE": "DISK-SE",
                                            "GUID": "6A3C...", "Checksum": "0a0b0c0d"}})
    fc.get_replicas("/demo/user/a/alice/f1").successful  # {lfn: {"DISK-SE": ""}}
    fc.find_files_by_metadata({"run": {">": 3}, "kind": ["raw", "reco"]}, "/demo")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.client_config import ClientConfig, make_client
from core.rpc.client import Credentials, RPCClient
from dms.bulk import BulkResult

SERVICE = "DataManagement/FileCatalog"
CHUNK = 10_000

Paths = str | Iterable[str]


def _items(lfns: Paths) -> list[str]:
    return [lfns] if isinstance(lfns, str) else list(lfns)


class FileCatalogClient:
    """Client of the file catalog over an :class:`~core.rpc.client.RPCClient`."""

    def __init__(self, rpc: RPCClient) -> None:
        self.rpc = rpc

    @classmethod
    def from_config(cls, cfg: ClientConfig | None = None,
                    credentials: Credentials | None = None) -> FileCatalogClient:
        """A client for the configured servers and credentials ($PILOTWMS_CLIENT_CONFIG)."""
        return cls(make_client(SERVICE, cfg, credentials))

    def close(self) -> None:
        self.rpc.close()

    def __enter__(self) -> FileCatalogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _bulk(self, method: str, lfns: Paths | Mapping[str, Any], *extra: Any) -> BulkResult:
        merged = BulkResult()
        if isinstance(lfns, Mapping):
            keys = list(lfns)
            for start in range(0, len(keys), CHUNK) or [0]:
                part = {k: lfns[k] for k in keys[start:start + CHUNK]}
                self._merge(merged, self.rpc.call(method, part, *extra))
        else:
            items = _items(lfns)
            for start in range(0, len(items), CHUNK) or [0]:
                self._merge(merged, self.rpc.call(method, items[start:start + CHUNK], *extra))
        return merged

    @staticmethod
    def _merge(into: BulkResult, reply: Any) -> None:
        part = BulkResult.from_wire(reply)
        into.successful.update(part.successful)
        into.failed.update(part.failed)

    # -- namespace ------------------------------------------------------------------------------

    def add_file(self, files: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        """``{lfn: {"PFN", "Size", "SE", "GUID", "Checksum", "ChecksumType"}}``."""
        return self._bulk("addFile", files)

    def add_replica(self, replicas: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        """``{lfn: {"SE": name, "PFN": url}}``."""
        return self._bulk("addReplica", replicas)

    def remove_file(self, lfns: Paths) -> BulkResult:
        return self._bulk("removeFile", lfns)

    def remove_replica(self, replicas: Mapping[str, Mapping[str, Any] | str]) -> BulkResult:
        """``{lfn: {"SE": name}}`` (or ``{lfn: name}``)."""
        return self._bulk("removeReplica", replicas)

    def get_replicas(self, lfns: Paths, all_status: bool = False) -> BulkResult:
        """successful: ``{lfn: {SE: PFN}}``; only ``AprioriGood`` replicas unless
        ``all_status`` (DIRAC's default)."""
        return self._bulk("getReplicas", lfns, all_status)

    def set_replica_status(self, statuses: Mapping[str, Mapping[str, str]]) -> BulkResult:
        """``{lfn: {"SE": name, "Status": "AprioriGood"|"Trash"|"Problematic"|...}}``."""
        return self._bulk("setReplicaStatus", statuses)

    def get_file_size(self, lfns: Paths) -> BulkResult:
        return self._bulk("getFileSize", lfns)

    def exists(self, lfns: Paths) -> BulkResult:
        return self._bulk("exists", lfns)

    def is_file(self, lfns: Paths) -> BulkResult:
        return self._bulk("isFile", lfns)

    def is_directory(self, lfns: Paths) -> BulkResult:
        return self._bulk("isDirectory", lfns)

    def get_file_metadata(self, lfns: Paths) -> BulkResult:
        """successful: ``{lfn: {Size, Checksum, ChecksumType, GUID, Owner, OwnerGroup, Mode,
        CreationDate, ModificationDate, Status, FileID}}``."""
        return self._bulk("getFileMetadata", lfns)

    def get_directory_metadata(self, paths: Paths) -> BulkResult:
        return self._bulk("getDirectoryMetadata", paths)

    def list_directory(self, paths: Paths, verbose: bool = False) -> BulkResult:
        """successful: ``{dir: {"Files": {lfn: {"MetaData": ...}}, "SubDirs": {...},
        "Links": {}, "Datasets": {...}}}``."""
        return self._bulk("listDirectory", paths, verbose)

    def create_directory(self, paths: Paths) -> BulkResult:
        return self._bulk("createDirectory", paths)

    def remove_directory(self, paths: Paths) -> BulkResult:
        return self._bulk("removeDirectory", paths)

    def get_directory_size(self, paths: Paths, long_output: bool = False,
                           recursive: bool = True) -> BulkResult:
        """successful: ``{dir: {LogicalSize, LogicalFiles, LogicalDirectories[,
        PhysicalSize: {SE: {Size, Files}, TotalSize, TotalFiles}]}}``."""
        return self._bulk("getDirectorySize", paths, long_output, False, recursive)

    def get_directory_replicas(self, paths: Paths, all_status: bool = False) -> BulkResult:
        return self._bulk("getDirectoryReplicas", paths, all_status)

    def get_storage_usage(self, path: str = "/") -> dict[str, dict[str, int]]:
        """``{SE: {"Size": bytes, "Files": n}}`` of the replicas under ``path``."""
        return dict(self.rpc.call("getStorageUsage", path))

    def change_path_owner(self, owners: Mapping[str, str], recursive: bool = False
                          ) -> BulkResult:
        return self._bulk("changePathOwner", owners, recursive)

    def change_path_group(self, groups: Mapping[str, str], recursive: bool = False
                          ) -> BulkResult:
        return self._bulk("changePathGroup", groups, recursive)

    def change_path_mode(self, modes: Mapping[str, int], recursive: bool = False
                         ) -> BulkResult:
        return self._bulk("changePathMode", modes, recursive)

    # -- metadata -------------------------------------------------------------------------------

    def add_metadata_field(self, name: str, kind: str) -> str:
        """``kind``: int, float, string or date (administrators only)."""
        return str(self.rpc.call("addMetadataField", name, kind, "-d"))

    def delete_metadata_field(self, name: str) -> None:
        self.rpc.call("deleteMetadataField", name)

    def get_metadata_fields(self) -> dict[str, str]:
        """``{name: DIRAC type}`` (INT, FLOAT, VARCHAR(128), DATETIME)."""
        return dict(self.rpc.call("getMetadataFields")["DirectoryMetaFields"])

    def set_metadata(self, path: str, values: Mapping[str, Any]) -> None:
        self.rpc.call("setMetadata", path, dict(values))

    def set_metadata_bulk(self, values: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        return self._bulk("setMetadataBulk", values)

    def remove_metadata(self, targets: Mapping[str, Iterable[str] | str]) -> BulkResult:
        return self._bulk("removeMetadata", {k: v if isinstance(v, str) else list(v)
                                             for k, v in targets.items()})

    def get_user_metadata(self, path: str) -> dict[str, Any]:
        """The effective metadata of a directory or file (own and inherited)."""
        return dict(self.rpc.call("getFileUserMetadata", path))

    def find_files_by_metadata(self, query: Mapping[str, Any], path: str = "/") -> list[str]:
        return list(self.rpc.call("findFilesByMetadata", dict(query), path))

    def find_directories_by_metadata(self, query: Mapping[str, Any], path: str = "/"
                                     ) -> list[str]:
        return list(self.rpc.call("findDirectoriesByMetadata", dict(query), path))

    # -- datasets -------------------------------------------------------------------------------

    def add_dataset(self, datasets: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        """``{dataset path: metadata query}``."""
        return self._bulk("addDataset", datasets)

    def remove_dataset(self, names: Paths) -> BulkResult:
        return self._bulk("removeDataset", names)

    def get_datasets(self, names: Paths) -> BulkResult:
        return self._bulk("getDatasets", names)

    def get_dataset_files(self, names: Paths) -> BulkResult:
        return self._bulk("getDatasetFiles", names)

    def freeze_dataset(self, names: Paths) -> BulkResult:
        return self._bulk("freezeDataset", names)

    def release_dataset(self, names: Paths) -> BulkResult:
        return self._bulk("releaseDataset", names)

    # -- ancestry -------------------------------------------------------------------------------

    def add_file_ancestors(self, ancestors: Mapping[str, Iterable[str]]) -> BulkResult:
        """``{lfn: [ancestor lfn, ...]}``."""
        return self._bulk("addFileAncestors", {k: {"Ancestors": list(v)}
                                               for k, v in ancestors.items()})

    def get_file_ancestors(self, lfns: Paths, depths: Iterable[int] = ()) -> BulkResult:
        """successful: ``{lfn: {ancestor: depth}}``."""
        return self._bulk("getFileAncestors", lfns, list(depths))

    def get_file_descendents(self, lfns: Paths, depths: Iterable[int] = ()) -> BulkResult:
        return self._bulk("getFileDescendents", lfns, list(depths))
