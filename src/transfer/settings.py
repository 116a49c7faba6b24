"""The transfer system's settings, validated from the server configuration.

They live in the service options (``Systems.Transfer.Services.<Svc>.Options``, free-form in
the core schema and checked here, as DIRAC keeps them)::

    Systems:
      Transfer:
        Services:
          TransferManager:
            Options:
              SpoolDir: /var/lib/pilotwms/spool     # local uploads and -get results
                                                    # (default: beside an SQLite DB file)
              SpoolReserveMiB: 64                   # kept free: a submission that would eat
                                                    # into it is refused
              SecretKeyFile: /etc/pilotwms/transfer-secret.keys   # (same default)
              SMTP: {Host: smtp.example.org, Port: 587, TLS: starttls,
                     From: pilotwms@example.org, User: pilotwms, PasswordFile: /etc/...}
              MaxParallel: 4                        # transfers one agent runs at once
          DataPush:
            Options:
              MaxPerSourceHost: 4                   # concurrent retrievals per source host
              MaxPerMover: 0                        # per mover (0: the mover's Capacity)
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

from pathlib import Path
from typing import Literal

import sqlalchemy as sa
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
    #: default: ``transfer-spool`` beside an SQLite database file (else required)
    spool_dir: Path | None = None
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

    def spool(self) -> Path:
        if self.spool_dir is None:
            raise ConfigError("Systems.Transfer.Services.TransferManager.Options.SpoolDir is "
                              "required unless the database is an SQLite file")
        return self.spool_dir

    def key_file(self) -> Path:
        if self.secret_key_file is None:
            raise ConfigError("Systems.Transfer.Services.TransferManager.Options."
                              "SecretKeyFile is required unless the database is an SQLite "
                              "file")
        return self.secret_key_file


class PushSettings(Section):
    max_per_source_host: int = Field(default=4, ge=1)
    #: concurrent retrievals per mover at most (0: each mover's own Capacity)
    max_per_mover: int = Field(default=0, ge=0)
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
        options = dict(config.service_config(SYSTEM, "TransferManager").options)
        try:  # beside an SQLite database file, as the sandbox store does
            url = sa.engine.make_url(config.database_url(SYSTEM))
            if url.get_backend_name() == "sqlite" and url.database not in (None, "",
                                                                            ":memory:"):
                here = Path(str(url.database)).resolve().parent
                options.setdefault("SpoolDir", str(here / "transfer-spool"))
                options.setdefault("SecretKeyFile", str(here / "transfer-secret.keys"))
        except (ConfigError, sa.exc.ArgumentError):
            pass
        try:
            return cls(
                manager=ManagerSettings.model_validate(options),
                push=PushSettings.model_validate(
                    config.service_config(SYSTEM, "DataPush").options))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigError(f"Systems.{SYSTEM}.Services options: {problems}") from None
