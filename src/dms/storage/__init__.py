"""Storage elements: named, configured storage reached through protocol plugins.

* :mod:`dms.storage.base`: the plugin interface, errors, adler32 helpers;
* plugins: :mod:`dms.storage.https` (pilotwms's own disk SE service), :mod:`dms.storage.xrootd`
  (an xrootd server), :mod:`dms.storage.local` (a local or mounted file system);
* :class:`StorageElement` adds the SE's access flags and VO restriction and tries its
  protocols in order (the next one when one is unreachable);
* :class:`StorageElements` is the set of configured SEs and the site -> SEs map, made from the
  server configuration (:meth:`StorageElements.from_config`) or, on the client side, from
  ``DataManagement/StorageElement.getStorageElements`` (:meth:`StorageElements.from_wire`).

Example::

    >>> ses = StorageElements.from_wire({
    ...     "StorageElements": {"SHARED": {"Protocols": [{"Plugin": "File", "Path": "/tmp/x"}],
    ...                                    "WriteAccess": False}},
    ...     "Sites": {"LCG.Demo.org": ["SHARED"]}})
    >>> ses["SHARED"].plugins[0].name, ses.site_ses("LCG.Demo.org")
    ('File', ['SHARED'])
    >>> ses["SHARED"].put("/demo/f", "somefile")
    Traceback (most recent call last):
    ...
    dms.storage.base.StorageAccessError: SHARED: write access is disabled
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.config.schema import Config, SEProtocolConfig, StorageElementConfig
from core.exceptions import NotFoundError
from core.rpc.client import Credentials
from dms.storage.base import (
    Entry,
    FileInfo,
    Progress,
    StorageAccessError,
    StoragePlugin,
    StorageUnavailableError,
)
from dms.storage.https import HTTPSStorage
from dms.storage.local import LocalStorage
from dms.storage.xrootd import XRootDStorage

T = TypeVar("T")


def make_plugin(se_name: str, proto: SEProtocolConfig, *, credentials: Credentials | None,
                ca_dir: str | Path | None) -> StoragePlugin:
    if proto.plugin == "HTTPS":
        return HTTPSStorage(se_name, proto.host, proto.port, credentials=credentials,
                            ca_dir=ca_dir)
    if proto.plugin == "XROOT":
        return XRootDStorage(se_name, proto.host, proto.port, proto.path)
    return LocalStorage(se_name, proto.path)


class StorageElement:
    """An SE: access flags, VO restriction, and its plugins tried in order."""

    def __init__(self, name: str, config: StorageElementConfig,
                 plugins: list[StoragePlugin]) -> None:
        self.name = name
        self.config = config
        self.plugins = plugins

    def _access(self, flag: bool, what: str) -> None:
        if not flag:
            raise StorageAccessError(f"{self.name}: {what} access is disabled")

    def _try(self, action: Callable[[StoragePlugin], T]) -> T:
        last: StorageUnavailableError | None = None
        for plugin in self.plugins:
            try:
                return action(plugin)
            except StorageUnavailableError as exc:
                last = exc
        assert last is not None  # noqa: S101 - at least one plugin (config min_length=1)
        raise last

    def _vo(self, path: str) -> None:
        vo = path.strip("/").split("/")[0]
        if self.config.vos and vo not in self.config.vos:
            raise StorageAccessError(f"{self.name} does not take files of VO {vo!r}")

    def put(self, path: str, source: str | Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        self._access(self.config.write_access, "write")
        self._vo(path)
        return self._try(lambda p: p.put(path, Path(source), checksum=checksum,
                                         progress=progress))

    def get(self, path: str, dest: str | Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        self._access(self.config.read_access, "read")
        return self._try(lambda p: p.get(path, Path(dest), checksum=checksum,
                                         progress=progress))

    def remove(self, path: str) -> bool:
        self._access(self.config.remove_access, "remove")
        return self._try(lambda p: p.remove(path))

    def stat(self, path: str) -> FileInfo:
        self._access(self.config.read_access, "read")
        return self._try(lambda p: p.stat(path))

    def exists(self, path: str) -> bool:
        self._access(self.config.read_access, "read")
        return self._try(lambda p: p.exists(path))

    def size(self, path: str) -> int:
        return self.stat(path).size

    def checksum(self, path: str) -> str:
        return self.stat(path).checksum

    def list(self, path: str) -> list[Entry]:
        self._access(self.config.read_access, "read")
        return self._try(lambda p: p.list(path))

    def url(self, path: str) -> str:
        """The URL a job reads ``path`` with (first protocol)."""
        return self.plugins[0].url(path)


class StorageElements(Mapping[str, StorageElement]):
    """The configured SEs by name, and which SEs are close to which site."""

    def __init__(self, ses: Mapping[str, StorageElementConfig],
                 sites: Mapping[str, list[str]], *, credentials: Credentials | None = None,
                 ca_dir: str | Path | None = None) -> None:
        self.configs = dict(ses)
        self.sites = {k: list(v) for k, v in sites.items()}
        self.credentials = credentials
        self.ca_dir = ca_dir
        self._made: dict[str, StorageElement] = {}

    @classmethod
    def from_config(cls, config: Config, *, credentials: Credentials | None = None,
                    ca_dir: str | Path | None = None) -> StorageElements:
        res = config.resources
        return cls(res.storage_elements, {n: s.ses for n, s in res.sites.items()},
                   credentials=credentials, ca_dir=ca_dir)

    @classmethod
    def from_wire(cls, value: Mapping[str, Any], *, credentials: Credentials | None = None,
                  ca_dir: str | Path | None = None) -> StorageElements:
        ses = {name: StorageElementConfig.model_validate(conf)
               for name, conf in (value.get("StorageElements") or {}).items()}
        return cls(ses, value.get("Sites") or {}, credentials=credentials, ca_dir=ca_dir)

    def __getitem__(self, name: str) -> StorageElement:
        if name not in self._made:
            conf = self.configs.get(name)
            if conf is None:
                raise NotFoundError(f"unknown storage element {name!r}")
            plugins = [make_plugin(name, p, credentials=self.credentials, ca_dir=self.ca_dir)
                       for p in conf.protocols]
            self._made[name] = StorageElement(name, conf, plugins)
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def site_ses(self, site: str | None) -> list[str]:
        return list(self.sites.get(site or "", []))

    def sites_of(self, se: str) -> list[str]:
        return sorted(site for site, names in self.sites.items() if se in names)
