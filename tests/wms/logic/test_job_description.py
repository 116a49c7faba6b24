"""Tests of job description validation and of the processed JDL."""

from __future__ import annotations

import dataclasses

import pytest

from core.exceptions import InvalidJDLError
from wms.logic.jdl import JDL, Expr, parse_jdl
from wms.logic.job_description import (
    JobDescription,
    JobLimits,
    describe_job,
    processed_jdl,
)
from wms.logic.parametric import expand_parametric


def describe(text: str, limits: JobLimits | None = None) -> JobDescription:
    return describe_job(
        parse_jdl(text), owner="alice", owner_group="vo_user", vo="vo", limits=limits or JobLimits()
    )


def test_defaults() -> None:
    desc = describe('Executable = "run.sh"')
    assert desc == JobDescription(
        owner="alice", owner_group="vo_user", vo="vo", executable="run.sh"
    )
    assert desc.std_output == "std.out"
    assert desc.std_error == "std.err"
    assert desc.job_name == "Name"
    assert desc.job_type == "User"
    assert desc.priority == 1
    assert desc.log_level == "INFO"
    assert desc.cpu_time == 86400
    assert desc.site_summary == "ANY"
    assert desc.requirement_tags == []
    assert len(desc.extra) == 0


def test_all_standard_attributes_case_insensitively() -> None:
    desc = describe(
        """
        executable = "run.sh"; arguments = "-v 3"; stdoutput = "out.txt"; StdError = "err.txt";
        InputSandbox = {"run.sh", "LFN:/vo/user/a/lib.tgz", "run.sh"}; OutputSandbox = "out.txt";
        InputData = {"LFN:/vo/d/1", "/vo/d/2"}; OutputData = {"res.root"}; OutputSE = "SE-USER";
        OutputPath = "/vo/user/a/out"; JobName = "my job"; JobGroup = 42; JobType = "Test";
        Priority = 7; LogLevel = "debug"; CPUTime = "3600"; Site = {"A", "B"};
        GridCE = "ce.example.org"; Platform = "x86_64-el9"; Tags = {"GPU"};
        MaxRAM = 4096; ExecutionEnvironment = {"A=1", "B=x=y"}; WholeNode = "yes";
        """
    )
    assert desc.executable == "run.sh"
    assert desc.arguments == "-v 3"
    assert (desc.std_output, desc.std_error) == ("out.txt", "err.txt")
    assert desc.input_sandbox == ["run.sh", "LFN:/vo/user/a/lib.tgz"]
    assert desc.output_sandbox == ["out.txt"]
    assert desc.input_data == ["LFN:/vo/d/1", "LFN:/vo/d/2"]
    assert desc.output_data == ["res.root"]
    assert desc.output_se == ["SE-USER"]
    assert desc.output_path == "/vo/user/a/out"
    assert (desc.job_name, desc.job_group, desc.job_type) == ("my job", "42", "Test")
    assert (desc.priority, desc.log_level, desc.cpu_time) == (7, "DEBUG", 3600)
    assert desc.sites == ["A", "B"]
    assert desc.site_summary == "Multiple"
    assert desc.grid_ces == ["ce.example.org"]
    assert desc.platforms == ["x86_64-el9"]
    assert desc.tags == ["GPU"]
    assert desc.max_ram == 4096
    assert desc.whole_node is True
    assert desc.execution_environment == {"A": "1", "B": "x=y"}
    assert desc.requirement_tags == ["WholeNode", "MultiProcessor", "4GB", "GPU"]


@pytest.mark.parametrize(
    ("attribute", "claimed", "message"),
    [
        ("Owner", "bob", "Wrong Owner in JDL"),
        ("OwnerGroup", "vo_admin", "Wrong Owner Group in JDL"),
        ("VirtualOrganization", "other", "Wrong Virtual Organization in JDL"),
    ],
)
def test_claims_of_another_identity_are_refused(attribute: str, claimed: str, message: str) -> None:
    with pytest.raises(InvalidJDLError, match=f"^{message}: {attribute} is '{claimed}'"):
        describe(f'Executable = "x"; {attribute} = "{claimed}"')


def test_matching_claims_and_server_attributes_are_accepted_and_dropped() -> None:
    desc = describe(
        'Executable = "x"; Owner = "alice"; OwnerGroup = "vo_user"; VirtualOrganization = "vo";'
        'OwnerDN = "/DC=org/CN=alice"; JobID = 12; JobRequirements = [ CPUTime = 5 ];'
        'Requirements = other.Memory > 5; InputDataModule = "Mod"; MyThing = {1, 2};'
    )
    assert list(desc.extra) == ["Requirements", "InputDataModule", "MyThing"]
    assert isinstance(desc.extra["Requirements"], Expr)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Arguments = "x"', "attribute 'Executable' is mandatory"),
        ('Executable = "  "', "attribute 'Executable' is mandatory"),
        ('Executable = {"a", "b"}', "attribute 'Executable' must be a string"),
        ('Executable = "x"; JobType = "Admin"', "JobType 'Admin' is not allowed (allowed: User,"),
        ('Executable = "x"; Priority = "high"', "attribute 'Priority' must be an integer"),
        ('Executable = "x"; CPUTime = 1.5', "attribute 'CPUTime' must be an integer"),
        ('Executable = "x"; LogLevel = "LOUD"', "LogLevel: 'LOUD' is not one of DEBUG"),
        ('Executable = "x"; InputData = "LFN:/vo//d"', "InputData: 'LFN:/vo//d' contains '//'"),
        ('Executable = "x"; InputData = "d/1"', "InputData: files must start with 'LFN:/'"),
        ('Executable = "x"; InputData = "/other/d"', "'LFN:/other/d' is not under LFN:/vo/"),
        ('Executable = "x"; InputSandbox = "LFN:rel"', "InputSandbox: LFN entries must start"),
        ('Executable = "x"; NumberOfProcessors = 0', "'NumberOfProcessors' must be between 1"),
        ('Executable = "x"; NumberOfProcessors = 1025', "between 1 and 1024, got 1025"),
        ('Executable = "x"; MaxNumberOfProcessors = 2000', "'MaxNumberOfProcessors' must be"),
        (
            'Executable = "x"; MinNumberOfProcessors = 4; MaxNumberOfProcessors = 2',
            "MaxNumberOfProcessors (2) must not be less than MinNumberOfProcessors (4)",
        ),
        (
            'Executable = "x"; NumberOfProcessors = 8; MaxNumberOfProcessors = 4',
            "NumberOfProcessors (8) is outside",
        ),
        ('Executable = "x"; MaxRAM = 0', "attribute 'MaxRAM' must be between 1"),
        ('Executable = "x"; ExecutionEnvironment = "NOEQUALS"', "ExecutionEnvironment: entries"),
        ('Executable = "x"; ExecutionEnvironment = "1A=2"', "must be 'NAME=value', got '1A=2'"),
        ('Executable = "x"; WholeNode = "maybe"', "attribute 'WholeNode' must be true or false"),
        ('Executable = "x"; Site = "A"; BannedSites = "A"', "every requested site is also in"),
        ('Executable = "x"; Parameters = 3', "a parametric JDL must be expanded"),
        ('Executable = "x"; JobGroup = "' + "g" * 33 + '"', "'JobGroup' is longer than 32"),
        ('Executable = "x"; JobName = "' + "n" * 129 + '"', "'JobName' is longer than 128"),
        ('Executable = "x"; Site = "' + "s" * 101 + '"', "is longer than 100 characters"),
    ],
)
def test_errors_name_the_attribute(text: str, message: str) -> None:
    with pytest.raises(InvalidJDLError) as info:
        describe(text)
    assert message in str(info.value)
    assert info.value.errno == 1501


def test_cpu_time_and_priority_are_clamped_as_dirac_does_or_refused() -> None:
    desc = describe('Executable = "x"; CPUTime = 1000000; Priority = 20')
    assert (desc.cpu_time, desc.priority) == (500000, 10)
    desc = describe('Executable = "x"; CPUTime = 5; Priority = -3')
    assert (desc.cpu_time, desc.priority) == (100, 0)
    strict = JobLimits(clamp=False)
    with pytest.raises(InvalidJDLError, match="'CPUTime' must be between 100 and 500000, got 5"):
        describe('Executable = "x"; CPUTime = 5', strict)
    with pytest.raises(InvalidJDLError, match="'Priority' must be between 0 and 10, got 11"):
        describe('Executable = "x"; Priority = 11', strict)
    assert describe('Executable = "x"; CPUTime = 500000', strict).cpu_time == 500000


def test_configurable_limits() -> None:
    limits = JobLimits(
        allowed_job_types=("User", "MCSimulation"),
        default_cpu_time=3600,
        default_priority=3,
        max_processors=8,
        lfn_vo_prefix=False,
        max_input_data=2,
    )
    desc = describe('Executable = "x"; JobType = "MCSimulation"; InputData = "/any/f"', limits)
    assert (desc.job_type, desc.cpu_time, desc.priority) == ("MCSimulation", 3600, 3)
    assert desc.input_data == ["LFN:/any/f"]
    with pytest.raises(InvalidJDLError, match="between 1 and 8"):
        describe('Executable = "x"; NumberOfProcessors = 9', limits)
    with pytest.raises(InvalidJDLError, match="JobType 'Test' is not allowed"):
        describe('Executable = "x"; JobType = "Test"', limits)


def test_input_data_normalisation_and_limit() -> None:
    desc = describe('Executable = "x"; InputData = {" /vo/a ", "lfn:/vo/b", "LFN:/vo/a", ""}')
    assert desc.input_data == ["LFN:/vo/a", "LFN:/vo/b"]
    files = ", ".join(f'"/vo/f{i}"' for i in range(500))
    assert len(describe(f'Executable = "x"; InputData = {{{files}}}').input_data) == 500
    files += ', "/vo/one_more"'
    with pytest.raises(
        InvalidJDLError,
        match=r"^Number of Input Data Files \(501\) greater than current limit: 500$",
    ):
        describe(f'Executable = "x"; InputData = {{{files}}}')


def test_sites_banned_sites_and_the_jobs_table_site() -> None:
    assert describe('Executable = "x"; Site = "ANY"').sites == []
    assert describe('Executable = "x"; Site = {"any", ""}').site_summary == "ANY"
    desc = describe('Executable = "x"; Site = "LCG.A.org"')
    assert (desc.sites, desc.site_summary) == (["LCG.A.org"], "LCG.A.org")
    desc = describe('Executable = "x"; Site = "A, B ,C"; BannedSites = {"B"}')
    assert (desc.sites, desc.banned_sites, desc.site_summary) == (["A", "C"], [], "Multiple")
    desc = describe('Executable = "x"; BannedSites = "B, D"')
    assert (desc.sites, desc.banned_sites) == ([], ["B", "D"])
    assert describe('Executable = "x"; BannedSite = "E"').banned_sites == ["E"]
    assert describe('Executable = "x"; Platform = "ANY"').platforms == []
    assert describe('Executable = "x"; Tags = "a, b"; Tag = {"c", "a"}').tags == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("attributes", "tags"),
    [
        ("", []),
        ("NumberOfProcessors = 1;", []),
        ("NumberOfProcessors = 4;", ["4Processors", "MultiProcessor"]),
        ("MinNumberOfProcessors = 1;", ["MultiProcessor"]),
        ("MinNumberOfProcessors = 1; MaxNumberOfProcessors = 1;", []),
        (
            "MinNumberOfProcessors = 2; MaxNumberOfProcessors = 8;",
            ["2Processors", "MultiProcessor"],
        ),
        ("MaxNumberOfProcessors = 8;", ["MultiProcessor"]),
        ("WholeNode = true;", ["WholeNode", "MultiProcessor"]),
        ('Tags = "WholeNode";', ["WholeNode", "MultiProcessor"]),
        ("MaxRAM = 500;", ["1GB"]),
        ("MaxRAM = 2048;", ["2GB"]),
        ("MaxRAM = 2049;", ["3GB"]),
        (
            'NumberOfProcessors = 2; MaxRAM = 1024; Tags = {"GPU", "MultiProcessor"};',
            ["2Processors", "MultiProcessor", "1GB", "GPU"],
        ),
    ],
)
def test_requirement_tags_are_derived_as_dirac_does(attributes: str, tags: list[str]) -> None:
    assert describe(f'Executable = "x"; {attributes}').requirement_tags == tags


def test_processed_jdl() -> None:
    desc = describe(
        'executable = "run.sh"; Arguments = "a"; Site = "S1"; BannedSites = {}; Platform = {"p1",'
        '"p2"}; NumberOfProcessors = 2; InputData = "/vo/f"; Requirements = other.X > 1;'
        'OwnerDN = "/CN=alice"; JobGroup = "grp"; ExecutionEnvironment = "K=V"'
    )
    jdl = processed_jdl(desc, 321)
    assert jdl["JobID"] == 321
    assert (jdl["Owner"], jdl["OwnerGroup"], jdl["VirtualOrganization"]) == (
        "alice",
        "vo_user",
        "vo",
    )
    assert "OwnerDN" not in jdl
    assert list(jdl).count("Executable") == 1
    assert jdl.name_of("executable") == "Executable"
    assert jdl["Site"] == "S1"
    assert jdl["Platform"] == ["p1", "p2"]
    assert jdl["InputData"] == ["LFN:/vo/f"]
    assert jdl["Requirements"] == "other.X > 1"
    assert (jdl["StdOutput"], jdl["CPUTime"], jdl["Priority"]) == ("std.out", 86400, 1)
    assert jdl["ExecutionEnvironment"] == ["K=V"]
    assert "BannedSites" not in jdl
    requirements = jdl["JobRequirements"]
    assert requirements == JDL(
        {
            "Owner": "alice",
            "OwnerGroup": "vo_user",
            "VirtualOrganization": "vo",
            "UserPriority": 1,
            "CPUTime": 86400,
            "JobTypes": ["User"],
            "Sites": ["S1"],
            "Platforms": ["p1", "p2"],
            "Tags": ["2Processors", "MultiProcessor"],
            "NumberOfProcessors": 2,
        }
    )
    assert parse_jdl(jdl.to_text()) == jdl


def test_a_processed_jdl_can_be_submitted_again() -> None:
    desc = describe(
        'Executable = "run.sh"; Arguments = "a b"; Site = {"S1", "S2"}; GridCE = "ce";'
        'BannedSites = "S3"; MinNumberOfProcessors = 2; MaxRAM = 3000; WholeNode = true;'
        'InputSandbox = {"x"}; OutputSandbox = {"y"}; OutputSE = {"SE1", "SE2"}; Tags = "t";'
        'Custom = [ A = 1 ]; LogLevel = "warning"'
    )
    again = describe_job(
        parse_jdl(processed_jdl(desc, 5).to_text()),
        owner="alice",
        owner_group="vo_user",
        vo="vo",
    )
    assert again == desc
    assert dataclasses.asdict(again) == dataclasses.asdict(desc)


def test_parametric_children_are_described() -> None:
    children = expand_parametric(
        parse_jdl(
            'Executable = "x"; Parameters = {1, 2}; Arguments = "%s"; NumberOfProcessors = %s'
        )
    )
    descriptions = [
        describe_job(child, owner="alice", owner_group="vo_user", vo="vo") for child in children
    ]
    assert [d.arguments for d in descriptions] == ["1", "2"]
    assert [d.number_of_processors for d in descriptions] == [1, 2]
    assert descriptions[1].extra == JDL({"Parameter": 2, "ParameterNumber": 1})
