"""What the transfer commands (dput, dget, drm, drepl) share: the data manager built from the
client configuration, the default SE, and a progress bar shown only on a terminal.

* the SEs come from the server (``DataManagement/StorageElement.getStorageElements``) and are
  reached with the user's own credentials (certificate, proxy or token);
* the site (for "closest replica first") is ``$PILOTWMS_SITE`` (``$DIRACSITE`` also works);
* the default SE of dput/drepl is ``$PILOTWMS_DEFAULT_SE``, else COMDIRAC's default
  ``DIRAC-USER``.

Example::

    >>> import io
    >>> out = io.StringIO()
    >>> bar = ProgressBar("f.bin", 2 * 1024 * 1024, out, force=True, clock=iter([0, 1, 2]).__next__)
    >>> bar(1024 * 1024); bar(2 * 1024 * 1024); bar.close()
    >>> out.getvalue().split("\\r")[-1]
    'f.bin [##############################] 100%   2.0/2.0 MiB   1.0 MiB/s\\n'
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from core.client_config import find_credentials, load_client_config, make_client
from dms.catalog_client import FileCatalogClient
from dms.logic.data_manager import DataManager
from dms.storage import StorageElements

MiB = 1024 * 1024
WIDTH = 30


def default_se() -> str:
    return os.environ.get("PILOTWMS_DEFAULT_SE") or "DIRAC-USER"


def data_manager() -> DataManager:
    cfg = load_client_config()
    credentials = find_credentials(cfg)
    catalog = FileCatalogClient(make_client("DataManagement/FileCatalog", cfg, credentials))
    with make_client("DataManagement/StorageElement", cfg, credentials) as rpc:
        ses = StorageElements.from_wire(rpc.call("getStorageElements"),
                                        credentials=credentials, ca_dir=cfg.ca_dir)
    site = os.environ.get("PILOTWMS_SITE") or os.environ.get("DIRACSITE")
    return DataManager(catalog, ses, site=site)


class ProgressBar:
    """``name [#####.....]  45%  1.2/2.7 MiB  5.1 MiB/s`` redrawn in place on ``stream``
    (stderr by default), only when it is a terminal (or ``force``)."""

    def __init__(self, name: str, total: int, stream: TextIO | None = None, *,
                 force: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.clock = clock
        self.start = clock()
        self.shown = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * WIDTH)
        elapsed = max(self.clock() - self.start, 1e-6)
        self.stream.write(
            f"\r{self.name} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} "
            f"{done / MiB:5.1f}/{self.total / MiB:.1f} MiB {done / MiB / elapsed:5.1f} MiB/s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\n")
            self.stream.flush()
