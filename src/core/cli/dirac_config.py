"""``pilotwms dirac-config``: a ready ``dirac.cfg`` that points the real DIRAC client at us.

What it holds (DIRAC 9 layout, no setups):

* ``/DIRAC``: the VO (the instance's only VO, or ``--vo``), no ``Configuration/Servers`` (the
  client runs "without remote configuration", everything it needs is in this file),
  ``Security``: ``UseServerCertificate = no``, ``UseTokens = no``, ``CALocation``;
* ``/Systems/<System>/URLs/<Service>``: every service this instance serves (``Server.Services``,
  else every installed one), at its ``URLs`` when configured, else the server's URL;
* ``/Resources/StorageElements``: the sandbox store's SE (``ProductionSandboxSE``, DIRAC's
  ``DIP`` plugin over https on ``/WorkloadManagement/SandboxStore``: what
  ``dirac-wms-job-get-output`` downloads through) and every SE of the configuration (HTTPS ->
  ``GFAL2_HTTPS`` on our storage service's file route, XROOT -> ``GFAL2_XROOT``, File ->
  ``File``); their access flags are served by ``ResourceStatus/ResourceStatus``;
* ``/Resources/FileCatalogs/FileCatalog`` (the master, read-write) and
  ``/Operations/Defaults/Services/Catalogs/CatalogList``;
* ``/Resources/Sites``: sites, their CEs and close SEs; ``/Registry``: VOs, groups with their
  users and properties, users with their DNs (what a DIRAC CS shows every client: DIRAC trusts
  a proxy's group only for a DN it finds there).

Use it (the gotchas: DIRAC's root defaults to the *base* Python's prefix, not the venv's; and
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace ``CALocation`` in DIRAC's HTTPS client)::

    mkdir -p ~/pilotwms-dirac/etc
    pilotwms dirac-config --out ~/pilotwms-dirac/etc/dirac.cfg
    export DIRAC_ROOT_PATH=~/pilotwms-dirac
    unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
    dirac-wms-job-submit job.jdl

Example::

    >>> from core.config.schema import Config
    >>> cfg = Config.model_validate({"Server": {"Host": "wms.example.org", "Port": 8443,
    ...     "CADir": "/etc/grid-security/certificates"},
    ...     "Registry": {"VOs": {"demo": {}}}})
    >>> text = dirac_cfg(cfg, ["WorkloadManagement/JobManager"])
    >>> "JobManager = https://wms.example.org:8443/WorkloadManagement/JobManager" in text
    True
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.config.schema import Config, SEProtocolConfig
from core.exceptions import ConfigError

#: the SandboxStore's default SE name (wms.logic.sandboxes.DEFAULT_SE_NAME; core never
#: imports a system)
DEFAULT_SANDBOX_SE = "ProductionSandboxSE"
CATALOG = "FileCatalog"

Tree = dict[str, Any]


def _quote(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    text = str(value)
    if "\n" in text:
        raise ConfigError(f"a DIRAC option value cannot span lines: {text!r}")
    return text


def render(tree: Tree, indent: int = 0) -> str:
    """DIRAC's CFG text of a nested dict (sections are dicts, options anything else).

    >>> print(render({"DIRAC": {"VirtualOrganization": "demo", "Security": {"A": ["x", "y"]}}}))
    DIRAC
    {
      VirtualOrganization = demo
      Security
      {
        A = x, y
      }
    }
    <BLANKLINE>
    """
    pad = "  " * indent
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out.append(f"{pad}{key}\n{pad}{{\n{render(value, indent + 1)}{pad}}}\n")
        else:
            out.append(f"{pad}{key} = {_quote(value)}\n")
    return "".join(out)


def base_url(config: Config, url: str | None = None) -> str:
    """The server's public https URL (``url`` when given)."""
    if url:
        return url.rstrip("/")
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - we only name the host, never bind
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{config.server.port}"


def _protocol(name: str, proto: SEProtocolConfig, base: str) -> tuple[str, Tree]:
    """(DIRAC plugin name, protocol section) of one of our SE protocols."""
    if proto.plugin == "HTTPS":
        return "GFAL2_HTTPS", {"Host": proto.host, "Port": proto.port or 443,
                               "Protocol": "https", "Access": "remote",
                               "Path": f"/DataManagement/StorageElement/file/{name}"}
    if proto.plugin == "XROOT":
        return "GFAL2_XROOT", {"Host": proto.host, "Port": proto.port or 1094,
                               "Protocol": "root", "Access": "remote", "Path": proto.path}
    return "File", {"Protocol": "file", "Access": "local", "Path": proto.path, "Host": ""}


def dirac_cfg(config: Config, services: Iterable[str], *, url: str | None = None,
              vo: str | None = None) -> str:
    """The dirac.cfg text for ``services`` ("System/Service" names) of this instance."""
    base = base_url(config, url)
    vos = sorted(config.registry.vos)
    vo = vo or (vos[0] if len(vos) == 1 else None)
    ca_dir = config.server.ca_dir or Path("/etc/grid-security/certificates")
    dirac: Tree = {}
    if vo:
        dirac["VirtualOrganization"] = vo
    dirac["Configuration"] = {}
    dirac["Security"] = {"UseServerCertificate": "no", "UseTokens": "no",
                         "SkipCAChecks": "no", "CALocation": str(Path(ca_dir).resolve())}
    systems: Tree = {}
    served = sorted(set(services))
    for name in served:
        system, service = name.split("/", 1)
        urls = config.service_config(system, service).urls
        target = ", ".join(urls) if urls else f"{base}/{system}/{service}"
        systems.setdefault(system, {"URLs": {}})["URLs"][service] = target
    ses: Tree = {}
    sandbox = config.service_config("WorkloadManagement", "SandboxStore").options
    sandbox_se = str(sandbox.get("SEName", DEFAULT_SANDBOX_SE))
    if "WorkloadManagement/SandboxStore" in served:
        host, _, port = base.removeprefix("https://").rpartition(":")
        ses[sandbox_se] = {"BackendType": "DISET", "Description": "pilotwms sandbox store",
                           "AccessProtocols": "https", "WriteProtocols": "https",
                           "DIP": {"PluginName": "DIP", "Protocol": "https", "Host": host,
                                   "Port": port, "Path": "/WorkloadManagement/SandboxStore",
                                   "Access": "remote"}}
    for name, se in config.resources.storage_elements.items():
        section: Tree = {"BackendType": "pilotwms"}
        if se.description:
            section["Description"] = se.description
        if se.vos:
            section["VO"] = se.vos
        protocols = list(dict.fromkeys(_protocol(name, p, base)[1]["Protocol"]
                                       for p in se.protocols))
        section["AccessProtocols"] = protocols
        section["WriteProtocols"] = protocols
        for proto in se.protocols:
            plugin, options = _protocol(name, proto, base)
            options["PluginName"] = plugin
            key, n = plugin, 1
            while key in section:
                n += 1
                key = f"{plugin}{n}"
            section[key] = options
        ses[name] = section
    resources: Tree = {}
    if "DataManagement/FileCatalog" in served:
        resources["FileCatalogs"] = {CATALOG: {
            "CatalogType": "FileCatalog", "AccessType": "Read-Write", "Status": "Active",
            "Master": "True", "CatalogURL": "DataManagement/FileCatalog"}}
    resources["StorageElements"] = ses
    sites: Tree = {}
    for site, conf in config.resources.sites.items():
        grid = site.split(".")[0]
        entry: Tree = {"Name": site}
        if conf.ces:
            entry["CE"] = sorted(conf.ces)
            entry["CEs"] = {ce: {"CEType": c.ce_type, "Queues": {
                queue: {"maxCPUTime": q.max_cpu_time // 60, "SI00": 1000}
                for queue, q in c.queues.items()}} for ce, c in conf.ces.items()}
        if conf.ses:
            entry["SE"] = conf.ses
        sites.setdefault(grid, {})[site] = entry
    if sites:
        resources["Sites"] = sites
    registry: Tree = {}
    if config.registry.default_group:
        registry["DefaultGroup"] = config.registry.default_group
    registry["VO"] = {name: {"DefaultGroup": v.default_group}
                      if v.default_group else {} for name, v in config.registry.vos.items()}
    registry["Groups"] = {name: {"VO": g.vo, "Users": g.users, "Properties": g.properties}
                          for name, g in config.registry.groups.items()}
    # DIRAC's client only trusts a proxy's group (getProxyInfo's "group", "username") for a
    # DN it finds here; a DIRAC CS shows the same entries to every client
    registry["Users"] = {name: {"DN": u.dns} for name, u in config.registry.users.items()
                         if u.dns}
    # no Accounting/Monitoring service here: an empty backend list makes DIRAC's clients send
    # no data-operation records (else every download tries, fails and logs it)
    operations: Tree = {"Defaults": {"MonitoringBackends": {"Default": ""}}}
    if "DataManagement/FileCatalog" in served:
        operations["Defaults"]["Services"] = {"Catalogs": {"CatalogList": CATALOG}}
    tree: Tree = {"DIRAC": dirac, "LocalSite": {"Site": "DIRAC.Client.local"},
                  "Systems": systems, "Resources": resources, "Registry": registry,
                  "Operations": operations}
    header = (
        f"# DIRAC client configuration for the pilotwms instance at {base}\n"
        "# (made by `pilotwms dirac-config`; see docs/interop-dirac.md \"For DIRAC users\").\n"
        "# Use it:   mkdir -p ~/pilotwms-dirac/etc && cp THIS ~/pilotwms-dirac/etc/dirac.cfg\n"
        "#           export DIRAC_ROOT_PATH=~/pilotwms-dirac   (else DIRAC reads the base\n"
        "#           Python's <prefix>/etc/dirac.cfg, not the venv's)\n"
        "#           unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE   (they replace CALocation)\n"
        "#           export X509_USER_PROXY=<your proxy>\n"
        "# No Configuration/Servers: the client runs without remote configuration.\n")
    return header + render(tree)


def served_services(config: Config) -> list[str]:
    """The "System/Service" names this instance serves (``Server.Services`` or all)."""
    from core.rpc.runner import select_services

    return [f"{cls.system}/{cls.name}" for cls in select_services(config)]


def write_dirac_cfg(config: Config, out: Path | None, *, url: str | None = None,
                    vo: str | None = None) -> str:
    """Make the text and write it to ``out`` (when given); returns the text."""
    text = dirac_cfg(config, served_services(config), url=url, vo=vo)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return text


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dirac-config", help="write a dirac.cfg for the real DIRAC client")
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path, help="file to write (default: standard output)")
    p.add_argument("--url", help="the server's public URL (default https://Server.Host:Port)")
    p.add_argument("--vo", help="the VO of the client (default: the only VO)")


def cmd_dirac_config(ns: argparse.Namespace, config: Config) -> int:
    text = write_dirac_cfg(config, ns.out, url=ns.url, vo=ns.vo)
    if ns.out is None:
        print(text, end="")
    else:
        print(f"{ns.out}: DIRAC client configuration for {base_url(config, ns.url)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - via pilotwms
    from core.config.loader import load_config

    p = argparse.ArgumentParser(prog="pilotwms")
    add_parser(p.add_subparsers(dest="command", required=True))
    ns = p.parse_args(argv)
    return cmd_dirac_config(ns, load_config(ns.config))
