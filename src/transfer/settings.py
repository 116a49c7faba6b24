"""The transfer system's settings, validated from the server configuration.

They live in the service options (``Systems.Transfer.Services.<Svc>.Options``, free-form in
the core schema and checked here, as DIRAC keeps them)::

    Systems:
      Transfer:
        Services:
          TransferManager:
            Options:
              SpoolDir: /var/lib/pilotwms/spool     # local uploads and -get results
              SpoolReserveMiB: 64                   # kept free: a submission that would eat
                                                    # into it is refused
              SecretKeyFile: /etc/pilotwms/transfer-secret.keys
              SMTP: {Host: smtp.example.org, Port: 587, TLS: starttls,
                     From: pilotwms@example.org, User: pilotwms, PasswordFile: /etc/...}
              MaxParallel: 4                        # transfers one agent runs at once
          DataPush:
            Options:
              MaxPerSourceHost: 4                   # concurrent retrievals per source host
              SourceHostLimits: {ecmwf-a: 8}        # per-host overrides
              MoverDeadAfterSeconds: 30             # silent movers lose their work
              MaxAttempts: 5
              RetryDelaySeconds: 60
              DefaultDestination: "DISK:/demo/push"

Example::

    >>> from core.config.schema import Config
    >>> s = TransferSettings.from_config(Config.model_validate({"Systems": {"Transfer": {
    ...     "Services": {"DataPush": {"Options": {"MaxPerSourceHost": 2}}}}}}))
    >>> s.push.max_per_source_host, s.manager.default_retry_count
    (2, 144)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from core.config.schema import Config, Section
from core.exceptions import ConfigError

SYSTEM = "Transfer"


class SMTPSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    #: "none", "starttls" (STARTTLS on the plain port) or "ssl" (TLS from the start, 465)
    tls: Literal["none", "starttls", "ssl"] = Field(default="none", alias="TLS")
    user: str | None = None
    #: a file holding the SMTP password (never in the YAML itself)
    password_file: Path | None = None
    #: sender address
    from_: str = Field(default="pilotwms@localhost", alias="From")
    #: seconds
    timeout: float = Field(default=30.0, gt=0)


class ManagerSettings(Section):
    spool_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir())
                            / "pilotwms-spool")
    spool_reserve_mib: int = Field(default=64, ge=0, alias="SpoolReserveMiB")
    #: largest file accepted in the spool (0: only the disk limits)
    max_spool_file_mib: int = Field(default=0, ge=0, alias="MaxSpoolFileMiB")
    #: Fernet keys, one per line, newest first (created when missing)
    secret_key_file: Path | None = None
    smtp: SMTPSettings | None = Field(default=None, alias="SMTP")
    #: ectrans's defaults for asynchronous transfers
    default_retry_count: int = Field(default=144, ge=0)
    default_retry_frequency: int = Field(default=600, ge=1)
    #: transfers one agent runs at the same time
    max_parallel: int = Field(default=4, ge=1)
    #: seconds to connect to a remote host
    connect_timeout: float = Field(default=30.0, gt=0)
    #: an Assigned transfer not saved for this long belonged to a dead agent
    stale_minutes: float = Field(default=30.0, gt=0)
    #: finished transfers (and their spooled files) are removed after this many days
    keep_days: float = Field(default=7.0, ge=0)

    def key_file(self) -> Path:
        return self.secret_key_file or self.spool_dir.parent / "transfer-secret.keys"


class PushSettings(Section):
    max_per_source_host: int = Field(default=4, ge=1)
    source_host_limits: dict[str, int] = Field(default_factory=dict)
    mover_dead_after_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    retry_delay_seconds: float = Field(default=60.0, ge=0)
    #: "SE:/path" where a push without --dest goes
    default_destination: str | None = None
    #: "SE:/path" where files forwarded to an association are kept meanwhile
    staging: str | None = None
    #: seconds a sync push ticket stays valid before the upload starts
    ticket_seconds: float = Field(default=600.0, gt=0)

    def source_limit(self, host: str) -> int:
        return self.source_host_limits.get(host, self.max_per_source_host)


class TransferSettings(Section):
    manager: ManagerSettings = Field(default_factory=ManagerSettings)
    push: PushSettings = Field(default_factory=PushSettings)

    @classmethod
    def from_config(cls, config: Config) -> TransferSettings:
        try:
            return cls(
                manager=ManagerSettings.model_validate(
                    config.service_config(SYSTEM, "TransferManager").options),
                push=PushSettings.model_validate(
                    config.service_config(SYSTEM, "DataPush").options))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigError(f"Systems.{SYSTEM}.Services options: {problems}") from None
