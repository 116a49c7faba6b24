"""Configuration of storage elements: ``Resources.StorageElements.<SE>``.

The models live in :mod:`core.config.schema` (``SEProtocolConfig``, ``StorageElementConfig``:
core validates the whole file and never imports a system); this module documents them.

YAML::

    Resources:
      StorageElements:
        DEMO-DISK:                       # pilotwms's own HTTPS storage service
          Protocols:
            - {Plugin: HTTPS, Host: se.example.org, Port: 8443, Path: /srv/pilotwms/se/disk}
        DEMO-XRD:                        # an xrootd server
          Protocols:
            - {Plugin: XROOT, Host: xrd.example.org, Port: 1094, Path: /data}
        SITE-SHARED:                     # a file system mounted on the worker nodes
          Protocols:
            - {Plugin: File, Path: /shared/pilotwms}
          WriteAccess: false
      Sites:
        LCG.Demo.org: {SEs: [DEMO-DISK, SITE-SHARED]}

Example::

    >>> se = StorageElementConfig.model_validate(
    ...     {"Protocols": [{"Plugin": "File", "Path": "/tmp/se/"}], "WriteAccess": False})
    >>> se.protocols[0].plugin, se.protocols[0].path, se.write_access, se.read_access
    ('File', '/tmp/se', False, True)
"""

from __future__ import annotations

from core.config.schema import SEProtocolConfig, StorageElementConfig

__all__ = ["SEProtocolConfig", "StorageElementConfig"]
