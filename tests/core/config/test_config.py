"""Configuration loading: typed values, relative paths, environment, and errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.loader import load_config, parse_config
from core.exceptions import ConfigError

GOOD = """
Database: sqlite:///x.db
Server: {Port: 9443, HostCert: host/cert.pem, TrustedBalancers: [10.0.0.0/8]}
Registry:
  VOs: {demo: {DefaultGroup: demo_user}}
  Users: {alice: {DNs: [/O=x/CN=alice]}}
  Groups: {demo_user: {VO: demo, Users: [alice], Properties: [NormalUser]}}
Systems:
  WorkloadManagement:
    Database: sqlite:///wms.db
    Services: {JobManager: {Authorization: {Default: authenticated, removeJob: JobAdministrator}}}
"""


def test_good_config_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    cfg = load_config(path, environ={})
    assert cfg.server.port == 9443
    assert cfg.server.host_cert == tmp_path.resolve() / "host/cert.pem"
    assert cfg.registry.groups["demo_user"].job_share == 1000
    assert cfg.database_url("WorkloadManagement") == "sqlite:///wms.db"
    assert cfg.database_url("DataManagement") == "sqlite:///x.db"
    auth = cfg.service_config("WorkloadManagement", "JobManager").authorization
    assert auth["removeJob"] == "JobAdministrator"


def test_environment_overrides_databases(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    cfg = load_config(path, environ={
        "PILOTWMS_DB": "mysql+pymysql://u:p@h/all",
        "PILOTWMS_DB_WORKLOADMANAGEMENT": "mysql+pymysql://u:p@h/wms",
    })
    assert cfg.database_url("WorkloadManagement") == "mysql+pymysql://u:p@h/wms"
    assert cfg.database_url("Other") == "mysql+pymysql://u:p@h/all"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Server": {"Port": "eighty"}}, "Server.Port: Input should be a valid integer"),
        ({"Server": {"Port": 70000}}, "Server.Port: Input should be less than or equal"),
        ({"Servr": {}}, "Servr: Extra inputs are not permitted"),
        ({"Registry": {"Groups": {"g": {"VO": "nope"}}}}, "Groups.g.VO: unknown VO 'nope'"),
        ({"Registry": {"VOs": {"v": {}}, "Groups": {"g": {"VO": "v", "Users": ["ghost"]}}}},
         "Groups.g.Users: unknown user 'ghost'"),
        ({"Registry": {"VOs": {"v": {"DefaultGroup": "g"}}}}, "VOs.v.DefaultGroup"),
        ({"Registry": {"Users": {"a": {"DNs": ["/CN=x"]}, "b": {"DNs": ["/CN=x"]}}}},
         "already belongs to a"),
        ({"Server": {"TrustedBalancers": ["not-an-ip"]}}, "not an IP address"),
        ({"Auth": {"Issuers": [{"Issuer": "https://idp", "VO": "v"}]}},
         "JWKSFile or JWKS is required"),
        ({"Operations": {"MaxParametricJobs": 0}}, "Operations.MaxParametricJobs"),
        ([1, 2], "the top level must be a mapping"),
    ],
)
def test_errors_name_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config(data, source="cfg.yaml", environ={})  # type: ignore[arg-type]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("Server:\n  Port: [1,\n")
    with pytest.raises(ConfigError, match=r"config.yaml: line \d+, column \d+: not valid YAML"):
        load_config(path, environ={})


def test_missing_file_and_no_env() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/config.yaml", environ={})
    with pytest.raises(ConfigError, match="PILOTWMS_CONFIG is not set"):
        load_config(None, environ={})


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = parse_config({}, environ={})
    with pytest.raises(ValueError, match="frozen"):
        cfg.server.port = 1  # type: ignore[misc]


def test_resources_sites_ces_queues() -> None:
    cfg = parse_config({"Resources": {"Sites": {"Demo.Local.site": {
        "SEs": ["DemoSE"],
        "CEs": {"localhost": {"CEType": "Local", "Settings": {"WorkDir": "/tmp/pilots"},
                              "Queues": {"default": {"MaxCPUTime": 3600, "MaxRAM": 2048,
                                                     "NumberOfProcessors": 4,
                                                     "Tags": ["GPU"]}}}}}}}}, environ={})
    site = cfg.resources.sites["Demo.Local.site"]
    queue = site.ces["localhost"].queues["default"]
    assert site.ses == ["DemoSE"] and site.ces["localhost"].ce_type == "Local"
    assert (queue.max_cpu_time, queue.max_ram, queue.number_of_processors) == (3600, 2048, 4)
    assert queue.max_waiting_pilots == 10 and queue.tags == ["GPU"]
    with pytest.raises(ConfigError, match="Queues.default.MaxCPUTime"):
        parse_config({"Resources": {"Sites": {"S": {"CEs": {"c": {
            "CEType": "Local", "Queues": {"default": {"MaxCPUTime": 1}}}}}}}}, environ={})
