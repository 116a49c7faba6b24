"""Typed sections of the configuration file.

YAML keys are written the DIRAC/DiracX way (``Registry``, ``DefaultGroup``, ``JobShare``); the
Python attributes are their snake_case twins (``cfg.registry.default_group``). Unknown keys are
errors, so a typo never silently disables a setting.

Example::

    >>> from core.config.schema import Config
    >>> cfg = Config.model_validate({
    ...     "Registry": {
    ...         "VOs": {"demo": {"DefaultGroup": "demo_user"}},
    ...         "Users": {"alice": {"DNs": ["/O=pilotwms/OU=Users/CN=alice"]}},
    ...         "Groups": {"demo_user": {"VO": "demo", "Users": ["alice"],
    ...                                  "Properties": ["NormalUser"]}},
    ...     }
    ... })
    >>> cfg.registry.groups["demo_user"].properties
    ['NormalUser']
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from core.config.base import Section
from core.config.monitoring import MonitoringConfig
from core.config.transformations import TransformationsConfig
from core.exceptions import ConfigError

#: properties DIRAC knows; others are allowed (sites define their own) but these are documented
KNOWN_PROPERTIES = frozenset(
    {
        "NormalUser",
        "GenericPilot",
        "JobAdministrator",
        "Operator",
        "TrustedHost",
        "ServiceAdministrator",
        "CSAdministrator",
        "FileCatalogManagement",
        "ProductionManagement",
        "ProductionSharing",  # DIRAC: change what the group authored (transformations)
        "ProductionUser",  # DIRAC: create and change one's own transformations
        "ProxyManagement",
        "LimitedDelegation",
        "PrivateLimitedDelegation",
        "FullDelegation",
        "JobSharing",
        "SiteManager",
        "AlarmsManagement",
        "Monitoring",  # reads /metrics and every monitoring record (docs/monitoring.md)
        "EventManager",
    }
)


# -- Registry --------------------------------------------------------------------------------


class VOConfig(Section):
    default_group: str | None = None
    description: str = ""


class TokenSubject(Section):
    issuer: str
    subject: str


class UserConfig(Section):
    dns: list[str] = Field(default_factory=list)
    token_subjects: list[TokenSubject] = Field(default_factory=list)
    email: str | None = None


class GroupConfig(Section):
    vo: str
    users: list[str] = Field(default_factory=list)
    properties: list[str] = Field(default_factory=list)
    job_share: int = Field(default=1000, ge=0)


class HostConfig(Section):
    dn: str
    properties: list[str] = Field(default_factory=lambda: ["TrustedHost"])


class RegistryConfig(Section):
    default_group: str | None = None
    vos: dict[str, VOConfig] = Field(default_factory=dict)
    users: dict[str, UserConfig] = Field(default_factory=dict)
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    hosts: dict[str, HostConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RegistryConfig:
        for gname, group in self.groups.items():
            if group.vo not in self.vos:
                raise ValueError(f"Groups.{gname}.VO: unknown VO {group.vo!r}")
            for user in group.users:
                if user not in self.users:
                    raise ValueError(f"Groups.{gname}.Users: unknown user {user!r}")
        for vname, vo in self.vos.items():
            if vo.default_group is not None:
                default = self.groups.get(vo.default_group)
                if default is None or default.vo != vname:
                    raise ValueError(
                        f"VOs.{vname}.DefaultGroup: {vo.default_group!r} is not a group of {vname}"
                    )
        if self.default_group is not None and self.default_group not in self.groups:
            raise ValueError(f"DefaultGroup: unknown group {self.default_group!r}")
        seen: dict[str, str] = {}
        for uname, uconf in self.users.items():
            for dn in uconf.dns:
                if dn in seen:
                    raise ValueError(f"Users.{uname}.DNs: {dn!r} already belongs to {seen[dn]}")
                seen[dn] = uname
        return self


# -- Systems -----------------------------------------------------------------------------------


class ServiceConfig(Section):
    #: method -> rights (one rule or a list of rules, any of which grants access); key "Default"
    authorization: dict[str, str | list[str]] = Field(default_factory=dict)
    #: where clients find the service; empty means the instance's own server URL
    urls: list[str] = Field(default_factory=list)
    #: service-specific options, validated by the service itself (DIRAC keeps them here too)
    options: dict[str, Any] = Field(default_factory=dict)


class SystemConfig(Section):
    #: SQLAlchemy URL; the environment variable PILOTWMS_DB_<SYSTEM> overrides it
    database: str | None = None
    services: dict[str, ServiceConfig] = Field(default_factory=dict)


# -- Server ------------------------------------------------------------------------------------


class CRLConfig(Section):
    """Certificate revocation lists (``<hash>.r0`` in the CA directory, see core.security.crl)."""

    #: an expired (or not yet valid) CRL: "refuse" the CA's certificates, or "warn" and use it
    expired_policy: Literal["refuse", "warn"] = "refuse"
    #: how often the CA directory is looked at for new or changed CRL files (seconds)
    reload_seconds: float = Field(default=10.0, ge=0)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    host_cert: Path | None = None
    host_key: Path | None = None
    ca_dir: Path | None = None
    #: worker processes sharing the port (0 = one per CPU)
    processes: int = Field(default=1, ge=0)
    #: threads running blocking service code (DB, disk) off the IOLoop
    executor_threads: int = Field(default=16, ge=1)
    #: calls one process serves at once (running or waiting for a thread or a commit); more
    #: are refused with HTTP 503 and Retry-After, which clients follow (0: no limit)
    max_calls_in_flight: int = Field(default=2000, ge=0)
    #: "System/Service" names to host; empty means every service the installation provides
    services: list[str] = Field(default_factory=list)
    #: addresses or networks of TLS-terminating balancers whose X-SSL-CERT header is trusted
    trusted_balancers: list[str] = Field(default_factory=list)
    #: largest request body accepted, in bytes
    max_body_size: int = Field(default=100 * 1024 * 1024, ge=1024)
    crls: CRLConfig = Field(default_factory=CRLConfig, alias="CRLs")
    #: at start-up, how long to wait for unreachable databases (s) before giving up
    database_wait_seconds: float = Field(default=300.0, ge=0)

    @field_validator("trusted_balancers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc
        return value


# -- Auth (tokens) -------------------------------------------------------------------------------


class IssuerConfig(Section):
    """An OpenID Connect / OAuth2 issuer whose access tokens services accept."""

    issuer: str
    vo: str
    #: JWKS as a file (JSON) or inline; one of them is required
    jwks_file: Path | None = None
    jwks: dict[str, Any] | None = None
    #: expected "aud"; when unset the audience is not checked
    audience: str | None = None
    #: claim carrying the groups (WLCG profile: "wlcg.groups"; many IdPs: "groups")
    groups_claim: str = "wlcg.groups"
    #: claim value -> pilotwms group, e.g. {"/demo/pilots": "demo_pilot"}
    group_map: dict[str, str] = Field(default_factory=dict)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])

    @model_validator(mode="after")
    def _keys(self) -> IssuerConfig:
        if self.jwks_file is None and self.jwks is None:
            raise ValueError(f"issuer {self.issuer}: JWKSFile or JWKS is required")
        return self


class SigningConfig(Section):
    """pilotwms's own token issuer (``pilotwms token issue``, pilot tokens)."""

    issuer: str
    #: private JWK (JSON) used to sign; its public half is published to the services
    key_file: Path
    audience: str = "pilotwms"
    lifetime: int = Field(default=3600, ge=60)


class IdPConfig(Section):
    """The external OpenID Connect provider where one VO's users sign in (login server)."""

    issuer: str
    client_id: str = Field(alias="ClientID")
    client_secret: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "groups"])
    #: claim of the ID token (or userinfo) listing the user's IdP groups/roles
    groups_claim: str = "groups"
    #: IdP group -> pilotwms group; a group named here also needs the IdP to assert it
    group_rules: dict[str, str] = Field(default_factory=dict)


class OAuthClientConfig(Section):
    """A client of the login server: public (PKCE, no secret) unless ``Secret`` is set."""

    #: exact redirect URIs; loopback URIs (http://127.0.0.1:<any port>/...) are always allowed
    redirect_uris: list[str] = Field(default_factory=list, alias="RedirectURIs")
    secret: str | None = None


class AuthServerConfig(Section):
    """pilotwms's OAuth2 authorization server (``Framework/Auth``, see docs/login.md)."""

    #: seconds
    access_token_lifetime: int = Field(default=1200, ge=60)
    refresh_token_lifetime: int = Field(default=7 * 86_400, ge=300)
    device_code_lifetime: int = Field(default=600, ge=30)
    poll_interval: int = Field(default=5, ge=0)
    #: how stale the per-process revocation list may get before it is re-read (seconds)
    revocation_cache_seconds: float = Field(default=5.0, ge=0)
    #: tokens minted from delegated credentials (seconds) and delegations themselves (days)
    delegated_token_lifetime: int = Field(default=900, ge=60)
    delegation_days: float = Field(default=1.0, gt=0)
    delegation_max_days: float = Field(default=30.0, gt=0)
    #: client_id -> client; "pilotwms-cli" (public) is always known
    clients: dict[str, OAuthClientConfig] = Field(default_factory=dict)
    #: VO -> its identity provider
    idps: dict[str, IdPConfig] = Field(default_factory=dict, alias="IdPs")


class AuthConfig(Section):
    signing: SigningConfig | None = None
    issuers: list[IssuerConfig] = Field(default_factory=list)
    server: AuthServerConfig | None = None


# -- Resources: sites, computing elements, queues --------------------------------------------------


class QueueConfig(Section):
    """A batch queue (Slurm partition, HTCondor pool, ...) of a CE, as pilots see it."""

    #: CPU seconds a pilot may use (what it offers jobs as CPUTime)
    max_cpu_time: int = Field(default=86_400, ge=60)
    #: wall-clock seconds a pilot may run (0: unlimited)
    max_wall_time: int = Field(default=0, ge=0)
    number_of_processors: int = Field(default=1, ge=1)
    #: MB per pilot (0: unknown)
    max_ram: int = Field(default=0, ge=0)
    tags: list[str] = Field(default_factory=list)
    required_tags: list[str] = Field(default_factory=list)
    platform: str | None = None
    #: pilots get whole nodes (and offer WholeNode jobs all of it)
    whole_node: bool = False
    #: GPUs per pilot, and their model (docs/queues.md)
    number_of_gpus: int = Field(default=0, ge=0, le=64, alias="NumberOfGPUs")
    gpu_model: str | None = Field(default=None, alias="GPUModel", max_length=64)
    max_waiting_pilots: int = Field(default=10, ge=0)
    max_total_pilots: int = Field(default=100, ge=0)
    #: pilots submitted per cycle at most
    max_pilots_to_submit: int = Field(default=20, ge=0)


class CEConfig(Section):
    """A computing element: ``CEType`` names the plugin (Local, SSH, Slurm, HTCondor, ARC,
    Cloud); ``Settings`` are checked by the plugin itself."""

    ce_type: str = Field(alias="CEType")
    settings: dict[str, Any] = Field(default_factory=dict)
    #: push mode: no pilots; the PushJobAgent matches jobs for the site and ships them to the
    #: CE's Slurm (docs/computing-elements.md)
    push_mode: bool = False
    queues: dict[str, QueueConfig] = Field(default_factory=dict)


class SiteConfig(Section):
    ces: dict[str, CEConfig] = Field(default_factory=dict, alias="CEs")
    #: storage elements close to the site (used by data-driven scheduling)
    ses: list[str] = Field(default_factory=list, alias="SEs")


class SEProtocolConfig(Section):
    """One way to reach a storage element (see docs/storage.md and ``dms.storage``).

    ``Path`` is where the SE's files live: for ``HTTPS`` the directory on the server hosting
    ``DataManagement/StorageElement``, for ``XROOT`` the path on the xrootd server, for ``File``
    the local mount point; LFN ``/vo/f`` is stored at ``<Path>/vo/f``.
    """

    plugin: Literal["HTTPS", "XROOT", "File"]
    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = "/"
    #: HTTPS only: largest file the server accepts, in MiB (0: no limit)
    max_file_size_mib: int = Field(default=0, ge=0, alias="MaxFileSizeMiB")

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or "\0" in value:
            raise ValueError(f"Path must be absolute: {value!r}")
        return value.rstrip("/") or "/"

    @model_validator(mode="after")
    def _needs_host(self) -> SEProtocolConfig:
        if self.plugin in ("HTTPS", "XROOT") and not self.host:
            raise ValueError(f"plugin {self.plugin} needs a Host")
        return self


class StorageElementConfig(Section):
    """A storage element: its protocol plugins (tried in order) and access flags."""

    protocols: list[SEProtocolConfig] = Field(min_length=1)
    read_access: bool = True
    write_access: bool = True
    remove_access: bool = True
    #: VOs whose files may be stored here (empty: any VO)
    vos: list[str] = Field(default_factory=list, alias="VOs")
    description: str = ""


class ResourcesConfig(Section):
    sites: dict[str, SiteConfig] = Field(default_factory=dict)
    #: storage elements by name (dms.storage)
    storage_elements: dict[str, StorageElementConfig] = Field(default_factory=dict)


# -- Operations ----------------------------------------------------------------------------------


class JobSchedulingConfig(Section):
    """Matching limits, DIRAC's ``JobScheduling`` section.

    ``RunningLimit: {<Site>: {<Attribute>: {<Value>: N}}}`` caps running jobs of a site with
    that attribute value (e.g. ``{LCG.CERN.cern: {JobType: {MCSimulation: 500}}}``);
    ``MatchingDelay`` has the same shape and gives seconds between two matches.
    """

    running_limit: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)
    matching_delay: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)
    #: refuse at submission a job that no configured queue could ever run (docs/queues.md);
    #: a job with ``WaitForResources = true`` is kept Waiting anyway
    refuse_impossible_jobs: bool = True


class StalledJobsConfig(Section):
    """When silent jobs are declared stalled, failed or rescheduled, and when old jobs go.

    Minutes, not DIRAC's hours: pilots send heartbeats every minute or so.
    """

    #: Running without a heartbeat for this long -> Stalled
    stalled_after_minutes: float = Field(default=10.0, gt=0)
    #: Stalled without a heartbeat for this long -> Failed (or Rescheduled, see below)
    fail_after_minutes: float = Field(default=20.0, gt=0)
    #: reschedule stalled jobs instead of failing them (up to MaxRescheduling)
    reschedule_stalled: bool = False
    #: Matched for this long without starting -> Rescheduled
    matched_timeout_minutes: float = Field(default=15.0, gt=0)
    #: jobs in a final state are removed after this many days (0: never)
    remove_final_after_days: float = Field(default=30.0, ge=0)


class PilotConfig(Section):
    """How the site director makes pilots: their identity, where they call, their options."""

    #: registry user and group the pilot tokens are issued for (a GenericPilot group)
    user: str = "pilot"
    group: str | None = None
    #: server URLs the pilots call (default: this server's own URL)
    urls: list[str] = Field(default_factory=list)
    token_lifetime: int = Field(default=2 * 86_400, ge=600)
    python: str = "python3"
    max_failed_matches: int = Field(default=10, ge=1)
    poll: float = Field(default=10.0, gt=0)
    heartbeat: float = Field(default=60.0, gt=0)
    #: a queue whose submissions fail is left alone for this long
    failing_queue_backoff_minutes: float = Field(default=10.0, ge=0)


class PushModeConfig(Section):
    """Options of the PushJobAgent (push mode, docs/computing-elements.md)."""

    #: seconds between heartbeats sent on behalf of each pushed job
    heartbeat: float = Field(default=60.0, gt=0)
    #: the agent's local directory for inputs and outputs in transit (default: a temp dir)
    staging_dir: Path | None = None
    #: the Python 3 (>= 3.9) on the worker nodes that runs the batch wrapper
    python: str = "python3"
    #: the job's CPUTime times this is its CPU limit (DIRAC's 20% margin)
    cpu_limit_factor: float = Field(default=1.2, gt=0, alias="CPULimitFactor")


class OperationsConfig(Section):
    job_scheduling: JobSchedulingConfig = Field(default_factory=JobSchedulingConfig)
    pilot: PilotConfig = Field(default_factory=PilotConfig)
    stalled_jobs: StalledJobsConfig = Field(default_factory=StalledJobsConfig)
    push_mode: PushModeConfig = Field(default_factory=PushModeConfig)
    max_parametric_jobs: int = Field(default=10_000, ge=1)
    max_rescheduling: int = Field(default=3, ge=0)
    #: seconds a rescheduled job waits before it is matched again, by attempt (last repeats)
    reschedule_delays: list[int] = Field(default_factory=lambda: [60, 180, 300, 600],
                                         min_length=1)
    max_input_data: int = Field(default=500, ge=1)
    max_sandbox_size_mib: int = Field(default=10, ge=1)
    transformations: TransformationsConfig = Field(default_factory=TransformationsConfig)


class Config(Section):
    """The whole configuration file."""

    #: default database of every system without its own (env PILOTWMS_DB overrides)
    database: str | None = None
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    systems: dict[str, SystemConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    operations: OperationsConfig = Field(default_factory=OperationsConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    def database_url(self, system: str) -> str:
        """``Systems.<system>.Database``, else the top-level ``Database``."""
        sysconf = self.systems.get(system)
        url = (sysconf.database if sysconf else None) or self.database
        if not url:
            raise ConfigError(
                f"no database for {system}: set Database or Systems.{system}.Database"
            )
        return url

    def service_config(self, system: str, service: str) -> ServiceConfig:
        """The section of ``system/service``, or an empty one."""
        sysconf = self.systems.get(system)
        if sysconf is None:
            return ServiceConfig()
        return sysconf.services.get(service, ServiceConfig())
