"""A data mover's configuration (``pilotwms mover --config mover.yaml``).

Example file::

    Name: mover-1                       # unique among the movers of a server
    URLs: [https://server.example.org:8443]
    CADir: /etc/grid-security/certificates
    HostCert: /etc/grid-security/hostcert.pem   # a TrustedHost of the server's registry
    HostKey: /etc/grid-security/hostkey.pem
    Capacity: 8                         # retrievals and receptions at once
    WorkDir: /var/tmp/pilotwms-mover    # files in transit
    Listen: {Host: 0.0.0.0, Port: 8444} # synchronous pushes (omit: this mover takes none)
    PublicURL: https://mover1.example.org:8444   # what clients are told (default: Listen)
    HeartbeatSeconds: 5
    PollSeconds: 2
    SourceHosts:                        # how to reach the source hosts of async pushes
      src-a: {Host: 10.0.0.5, Port: 22, KeyFile: /etc/pilotwms/mover_ed25519,
              KnownHosts: /etc/pilotwms/known_hosts}
      web-1: {Protocol: https, BaseURL: "https://web-1.example.org/data"}
    DefaultKeyFile: /etc/pilotwms/mover_ed25519     # for hosts not listed (port 22)
    DefaultKnownHosts: /etc/ssh/ssh_known_hosts

Relative paths are relative to the file.

Example::

    >>> cfg = MoverConfig.model_validate({"Name": "m1", "URLs": ["https://h:8443"]})
    >>> cfg.capacity, cfg.source("src-a").port
    (4, 22)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from core.config.schema import Section
from core.exceptions import ConfigError


class ListenConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


class SourceHostConfig(Section):
    protocol: Literal["sftp", "https"] = "sftp"
    host: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    key_file: Path | None = None
    known_hosts: Path | None = None
    #: https: the URL the file's path is appended to
    base_url: str | None = Field(default=None, alias="BaseURL")


class MoverConfig(Section):
    name: str
    urls: list[str] = Field(min_length=1)
    ca_dir: Path | None = None
    host_cert: Path | None = None
    host_key: Path | None = None
    capacity: int = Field(default=4, ge=1, le=1000)
    work_dir: Path = Path("/var/tmp/pilotwms-mover")  # noqa: S108 - the documented default
    listen: ListenConfig | None = None
    public_url: str | None = Field(default=None, alias="PublicURL")
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    poll_seconds: float = Field(default=2.0, gt=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    source_hosts: dict[str, SourceHostConfig] = Field(default_factory=dict)
    default_key_file: Path | None = None
    default_known_hosts: Path | None = None

    def source(self, name: str) -> SourceHostConfig:
        """How to reach source host ``name`` (the defaults when it is not listed)."""
        found = self.source_hosts.get(name)
        if found is None:
            found = SourceHostConfig(host=name, key_file=self.default_key_file,
                                     known_hosts=self.default_known_hosts)
        return found


def load_mover_config(path: Path) -> MoverConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the mover configuration {path}: {exc.strerror}") \
            from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return MoverConfig.model_validate(data or {},
                                          context={"base_dir": Path(path).parent.resolve()})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
