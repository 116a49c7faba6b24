"""The configuration's sections one by one: defaults, aliases, the rules each validator
enforces (with the key named in the error), the environment's database overrides, and what
the helpers of :class:`Config` answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.loader import load_config, parse_config
from core.config.schema import Config, StalledJobsConfig
from core.exceptions import ConfigError


def test_defaults_of_every_section() -> None:
    cfg = parse_config({}, environ={})
    assert (cfg.server.host, cfg.server.port, cfg.server.processes) == ("127.0.0.1", 8443, 1)
    assert cfg.server.executor_threads == 16 and cfg.server.max_body_size == 100 * 1024 * 1024
    assert cfg.server.database_wait_seconds == 300.0
    ops = cfg.operations
    assert (ops.max_parametric_jobs, ops.max_rescheduling, ops.max_input_data) == (10_000, 3,
                                                                                    500)
    assert ops.reschedule_delays == [60, 180, 300, 600] and ops.max_sandbox_size_mib == 10
    assert (ops.stalled_jobs.stalled_after_minutes, ops.stalled_jobs.fail_after_minutes,
            ops.stalled_jobs.reschedule_stalled) == (10.0, 20.0, False)
    assert ops.pilot.user == "pilot" and ops.pilot.heartbeat == 60.0
    assert ops.push_mode.cpu_limit_factor == 1.2 and ops.push_mode.staging_dir is None
    assert cfg.resources.sites == {} and cfg.resources.storage_elements == {}
    with pytest.raises(ConfigError, match="no database for WorkloadManagement"):
        cfg.database_url("WorkloadManagement")
    assert cfg.service_config("WorkloadManagement", "JobManager").authorization == {}


def test_database_overrides_apply_to_configured_systems_only() -> None:
    data = {"Database": "sqlite:///all.db",
            "Systems": {"WorkloadManagement": {}, "DataManagement": {"Database": "sqlite:///d"}}}
    cfg = parse_config(data, environ={"PILOTWMS_DB_DATAMANAGEMENT": "sqlite:///env-d",
                                      "PILOTWMS_DB_AUTH": "sqlite:///ignored",
                                      "PILOTWMS_DB_WORKLOADMANAGEMENT": ""})
    assert cfg.database_url("DataManagement") == "sqlite:///env-d"
    assert cfg.database_url("WorkloadManagement") == "sqlite:///all.db"  # empty: not set
    assert "Auth" not in cfg.systems  # a system this config does not run gets no section
    # the input mapping is not changed by the overrides
    assert data["Systems"]["DataManagement"] == {"Database": "sqlite:///d"}  # type: ignore[index]


def test_relative_paths_follow_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "config.yaml"
    path.write_text("Server: {HostCert: certs/host.pem, HostKey: /abs/key.pem, CADir: ca}\n"
                    "Operations: {PushMode: {StagingDir: push}}\n")
    monkeypatch.setenv("PILOTWMS_CONFIG", str(path))
    cfg = load_config()  # from $PILOTWMS_CONFIG
    base = path.parent.resolve()
    assert cfg.server.host_cert == base / "certs/host.pem"
    assert cfg.server.host_key == Path("/abs/key.pem")
    assert cfg.server.ca_dir == base / "ca"
    assert cfg.operations.push_mode.staging_dir == base / "push"
    # an empty file is an empty configuration
    path.write_text("")
    assert load_config(path, environ={}).server.port == 8443


@pytest.mark.parametrize(("data", "message"), [
    ({"Server": {"Processes": -1}}, "Server.Processes"),
    ({"Server": {"ExecutorThreads": 0}}, "Server.ExecutorThreads"),
    ({"Server": {"MaxBodySize": 10}}, "Server.MaxBodySize"),
    ({"Server": {"DatabaseWaitSeconds": -1}}, "Server.DatabaseWaitSeconds"),
    ({"Registry": {"DefaultGroup": "nobody"}}, "DefaultGroup: unknown group 'nobody'"),
    ({"Registry": {"VOs": {"a": {"DefaultGroup": "g"}, "b": {}},
                   "Groups": {"g": {"VO": "b"}}}}, "VOs.a.DefaultGroup: 'g' is not a group of a"),
    ({"Operations": {"RescheduleDelays": []}}, "Operations.RescheduleDelays"),
    ({"Operations": {"MaxRescheduling": -1}}, "Operations.MaxRescheduling"),
    ({"Operations": {"StalledJobs": {"StalledAfterMinutes": 0}}},
     "StalledJobs.StalledAfterMinutes"),
    ({"Operations": {"StalledJobs": {"RemoveFinalAfterDays": -1}}},
     "StalledJobs.RemoveFinalAfterDays"),
    ({"Operations": {"Pilot": {"TokenLifetime": 60}}}, "Pilot.TokenLifetime"),
    ({"Operations": {"Pilot": {"MaxFailedMatches": 0}}}, "Pilot.MaxFailedMatches"),
    ({"Operations": {"PushMode": {"CPULimitFactor": 0}}}, "PushMode.CPULimitFactor"),
    ({"Resources": {"StorageElements": {"SE": {"Protocols": []}}}},
     "StorageElements.SE.Protocols"),
    ({"Resources": {"StorageElements": {"SE": {"Protocols": [
        {"Plugin": "HTTPS", "Path": "/data"}]}}}}, "plugin HTTPS needs a Host"),
    ({"Resources": {"StorageElements": {"SE": {"Protocols": [
        {"Plugin": "File", "Path": "relative/dir"}]}}}}, "Path must be absolute"),
    ({"Resources": {"StorageElements": {"SE": {"Protocols": [
        {"Plugin": "SRM", "Path": "/x"}]}}}}, "Plugin"),
    ({"Resources": {"StorageElements": {"SE": {"Protocols": [
        {"Plugin": "XROOT", "Host": "h", "Port": 0, "Path": "/x"}]}}}}, "Port"),
    ({"Systems": {"WorkloadManagement": {"Databse": "x"}}}, "Databse: Extra inputs"),
])
def test_each_rule_names_its_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(data, source="c.yaml", environ={})
    assert message in str(refused.value), str(refused.value)
    assert str(refused.value).startswith("c.yaml: ")


def test_storage_elements_and_services() -> None:
    cfg = parse_config({
        "Resources": {"StorageElements": {"DISK": {
            "VOs": ["demo"], "WriteAccess": False,
            "Protocols": [{"Plugin": "HTTPS", "Host": "se.example.org", "Port": 8443,
                           "Path": "/data/", "MaxFileSizeMiB": 5},
                          {"Plugin": "File", "Path": "/"}]}}},
        "Systems": {"WorkloadManagement": {"Services": {"SandboxStore": {
            "URLs": ["https://a:8443"], "Options": {"MaxSizeMiB": 3}}}}},
    }, environ={})
    se = cfg.resources.storage_elements["DISK"]
    assert se.vos == ["demo"] and not se.write_access and se.read_access and se.remove_access
    https, local = se.protocols
    assert (https.path, https.max_file_size_mib, https.port) == ("/data", 5, 8443)
    assert local.path == "/" and local.host == ""
    service = cfg.service_config("WorkloadManagement", "SandboxStore")
    assert service.urls == ["https://a:8443"] and service.options == {"MaxSizeMiB": 3}
    assert cfg.service_config("WorkloadManagement", "Other").options == {}
    assert cfg.service_config("Nope", "Other").urls == []


def test_sections_are_frozen_and_copies_validate() -> None:
    cfg = Config.model_validate({"Operations": {"StalledJobs": {"FailAfterMinutes": 5}}})
    with pytest.raises(ValueError, match="frozen"):
        cfg.operations.stalled_jobs.fail_after_minutes = 1  # type: ignore[misc]
    again = Config.model_validate(cfg.model_dump(by_alias=True, exclude_none=True))
    assert again == cfg
    assert StalledJobsConfig.model_validate({"StalledAfterMinutes": 0.5}).stalled_after_minutes \
        == 0.5
