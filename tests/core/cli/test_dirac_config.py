"""``pilotwms dirac-config``: what the DIRAC client configuration holds (DIRAC reading it and
working with it is tested in tests/interop/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.cli.dirac_config import dirac_cfg, render, served_services
from core.cli.instance import Instance
from core.config.loader import load_config
from core.config.schema import Config


def test_sections_for_every_kind_of_se_and_service_urls() -> None:
    config = Config.model_validate({
        "Server": {"Host": "wms.example.org", "Port": 9443, "CADir": "/etc/ca"},
        "Registry": {"VOs": {"vo1": {}, "vo2": {}},
                     "Users": {"u": {"DNs": ["/CN=u", "/CN=u2"]}},
                     "Groups": {"g": {"VO": "vo1", "Users": ["u"]}}},
        "Systems": {"WorkloadManagement": {"Services": {"JobManager": {
            "URLs": ["https://a:1/WorkloadManagement/JobManager",
                     "https://b:1/WorkloadManagement/JobManager"]}}}},
        "Resources": {"StorageElements": {
            "X": {"Protocols": [{"Plugin": "XROOT", "Host": "xrd", "Path": "/data"}],
                  "VOs": ["vo1"]},
            "F": {"Protocols": [{"Plugin": "File", "Path": "/shared"},
                                {"Plugin": "HTTPS", "Host": "h", "Port": 8443}]}}}})
    text = dirac_cfg(config, ["WorkloadManagement/JobManager",
                              "WorkloadManagement/SandboxStore"], vo="vo2")
    assert "VirtualOrganization = vo2" in text
    assert ("JobManager = https://a:1/WorkloadManagement/JobManager, "
            "https://b:1/WorkloadManagement/JobManager") in text
    assert "SandboxStore = https://wms.example.org:9443/WorkloadManagement/SandboxStore" in text
    assert "FileCatalogs" not in text  # the catalog is not served here
    for fragment in ("PluginName = GFAL2_XROOT", "Protocol = root", "Port = 1094",
                     "VO = vo1", "PluginName = File", "Path = /shared",
                     "Path = /DataManagement/StorageElement/file/F",
                     "AccessProtocols = file, https", "DN = /CN=u, /CN=u2",
                     "PluginName = DIP", "Path = /WorkloadManagement/SandboxStore",
                     "CALocation = /etc/ca", "UseServerCertificate = no"):
        assert fragment in text, fragment
    assert "  Configuration\n  {\n  }\n" in text  # no Servers: no CS
    assert render({"A": {"B": True}}) == "A\n{\n  B = True\n}\n"


def test_command_writes_the_file(instance: Instance, tmp_path: Path) -> None:
    out = tmp_path / "etc" / "dirac.cfg"
    done = subprocess.run([sys.executable, "-m", "core.cli.admin", "dirac-config", "--config",
                           str(instance.config), "--out", str(out), "--url",
                           "https://public.example.org:443"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "FileCatalog = https://public.example.org:443/DataManagement/FileCatalog" in text
    assert "ResourceStatus = https://public.example.org:443/ResourceStatus/ResourceStatus" in text
    assert "CatalogList = FileCatalog" in text
    config = load_config(instance.config, environ={})
    assert instance.dirac_cfg.read_text() == dirac_cfg(config, served_services(config))
