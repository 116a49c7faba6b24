"""Tests of DIRAC's parametric job expansion."""

from __future__ import annotations

import pytest

from core.exceptions import InvalidJDLError
from wms.logic.jdl import JDL, Expr, parse_jdl
from wms.logic.parametric import (
    expand_parametric,
    is_parametric,
    parameter_vectors,
    substitute_job_id,
)


def expand(text: str, max_jobs: int = 10000) -> list[JDL]:
    return expand_parametric(parse_jdl(text), max_jobs)


def test_dirac_example_start_step_factor() -> None:
    children = expand(
        'Executable = "run"; Arguments = "%s"; Parameters = 3; ParameterStart = 1;'
        "ParameterStep = 1; ParameterFactor = 2;"
    )
    assert [c["Arguments"] for c in children] == ["1", "3", "7"]
    assert [c["Parameter"] for c in children] == [1, 3, 7]
    assert [c["ParameterNumber"] for c in children] == [0, 1, 2]
    for child in children:
        assert not any(name.startswith("Parameters") for name in child)
        assert "ParameterStart" not in child and "ParameterStep" not in child
        assert "ParameterFactor" not in child
        assert child["Executable"] == "run"


def test_dirac_defaults_give_a_constant_sequence() -> None:
    assert [c["Parameter"] for c in expand("Parameters = 3")] == [1, 1, 1]
    assert [c["Parameter"] for c in expand("Parameters = 3; ParameterStep = 5")] == [1, 6, 11]
    assert [c["Parameter"] for c in expand('Parameters = "2"; ParameterStart = "4"')] == [4, 4]


def test_list_values_keep_their_types() -> None:
    children = expand('Parameters = {"a", 2, 1.5, true, word}; Arguments = "x=%s"')
    assert [c["Parameter"] for c in children] == ["a", 2, 1.5, True, "word"]
    assert isinstance(children[4]["Parameter"], Expr)
    assert type(children[3]["Parameter"]) is bool
    assert [c["Arguments"] for c in children] == ["x=a", "x=2", "x=1.5", "x=true", "x=word"]


def test_index_is_zero_padded_to_the_width_of_the_last_index() -> None:
    children = expand('Parameters = 11; JobName = "job_%n"; Out = { "f_%n.txt" }')
    assert children[0]["JobName"] == "job_00"
    assert children[10]["JobName"] == "job_10"
    assert children[3]["Out"] == ["f_03.txt"]
    assert expand('Parameters = 1; JobName = "j%n"')[0]["JobName"] == "j0"
    assert expand('Parameters = 10; JobName = "j%n"')[9]["JobName"] == "j9"
    assert expand('Parameters = 101; JobName = "j%n"')[7]["JobName"] == "j007"


def test_named_sequences() -> None:
    children = expand(
        'Parameters.File = {"a.txt", "b.txt"}; ParameterStart.Seed = 10; ParameterStep.seed = 5;'
        'Arguments = "--in %(file)s --seed %(Seed)s"; InputSandbox = { "%(File)s", "x" };'
    )
    assert [c["Arguments"] for c in children] == [
        "--in a.txt --seed 10",
        "--in b.txt --seed 15",
    ]
    assert children[1]["InputSandbox"] == ["b.txt", "x"]
    assert children[1]["Parameter.File"] == "b.txt"
    assert children[1]["Parameter.Seed"] == 15
    assert "Parameter" not in children[0]
    assert set(children[0]) == {"Arguments", "InputSandbox", "Parameter.File", "Parameter.Seed",
                                "ParameterNumber"}  # fmt: skip


def test_named_and_unnamed_together() -> None:
    children = expand('Parameters = {"x", "y"}; Parameters.B = {1, 2}; Arguments = "%s-%(B)s"')
    assert [c["Arguments"] for c in children] == ["x-1", "y-2"]
    assert children[0]["Parameter"] == "x"
    assert children[0]["Parameter.B"] == 1


def test_named_count() -> None:
    children = expand("Parameters.N = 2; ParameterStart.N = 3; A = %(n)s")
    assert [c["A"] for c in children] == [3, 3]


def test_different_lengths_are_refused() -> None:
    with pytest.raises(InvalidJDLError, match="^Different length of parameter vectors"):
        expand('Parameters = {"a", "b"}; Parameters.X = {1, 2, 3}')
    with pytest.raises(InvalidJDLError, match="^Different length of parameter vectors"):
        expand("Parameters = 3; Parameters.X = {1, 2}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Parameters = 0", "Illegal number of job parameters 0"),
        ("Parameters = {}", "Illegal number of job parameters 0"),
        ("Parameters = -2", "Illegal number of job parameters -2"),
        ('Parameters = "abc"', "Inconsistent parametric job description: Parameters=abc"),
        ('Parameters = 2; ParameterStep = "x"', "Illegal value for ParameterStep JDL field: x"),
        ("Parameters = 2; ParameterFactor = true", "Illegal value for ParameterFactor JDL field"),
        ("Parameters = {[A = 1]}", "a parameter value cannot be a record"),
        ('Parameters = 2; A = "%(nope)s"', "attribute 'A': unknown parameter sequence 'nope'"),
        (
            "Parameters = 100; ParameterStart = 2; ParameterFactor = 10",
            "parameter sequence 'Parameters' leaves the 64-bit range at index 19",
        ),
        (
            "Parameters = 400; ParameterStart = 2.0; ParameterFactor = 10",
            "parameter sequence 'Parameters' overflows at index 308",
        ),
        (
            'Parameters = {{"a"}, {"b"}}; A = "x %s"',
            "attribute 'A': a list parameter value cannot be put into a string",
        ),
        ('Parameters = {{"a"}, {"b"}}; A = "%s"', "a list parameter value cannot be put"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidJDLError) as info:
        expand(text)
    assert message in str(info.value)


def test_too_many_jobs_names_the_limit() -> None:
    assert len(expand("Parameters = 5", max_jobs=5)) == 5
    with pytest.raises(InvalidJDLError, match="more than the limit of 5"):
        expand("Parameters = 6", max_jobs=5)
    with pytest.raises(InvalidJDLError, match="10001 jobs, more than the limit of 10000"):
        expand("Parameters = 10001")


def test_float_sequences_have_sensible_text() -> None:
    children = expand('Parameters = 4; ParameterStart = 0.0; ParameterStep = 0.1; A = "v%s"')
    assert [c["Parameter"] for c in children] == [0.0, 0.1, 0.2, 0.3]
    assert [c["A"] for c in children] == ["v0.0", "v0.1", "v0.2", "v0.3"]
    children = expand("Parameters = 2; ParameterStart = 1; ParameterFactor = 1.5; A = %s")
    assert [c["A"] for c in children] == [1.0, 1.5]
    assert [type(c["A"]) for c in children] == [float, float]
    assert [c["B"] for c in expand('Parameters = 1; ParameterStart = 1e20; B = "x%s"')] == [
        "x1e+20"
    ]


def test_a_bare_placeholder_takes_the_value_and_its_type() -> None:
    children = expand(
        'Parameters = {2, 4}; NumberOfProcessors = %s; Quoted = "%s"; Text = "n=%s"; N = %n'
    )
    assert [c["NumberOfProcessors"] for c in children] == [2, 4]
    assert [type(c["NumberOfProcessors"]) for c in children] == [int, int]
    assert [c["Quoted"] for c in children] == ["2", "4"]
    assert children[1]["Text"] == "n=4"
    assert children[1]["N"] == "1"
    assert parse_jdl(children[1].to_text()) == children[1]


def test_a_list_value_is_spliced_into_a_list() -> None:
    children = expand(
        'Parameters = {{"LFN:/vo/a", "LFN:/vo/b"}, {"LFN:/vo/c"}}; InputData = {%s};'
        'Other = %s; Keep = {"x", %s, "y"}'
    )
    assert children[0]["InputData"] == ["LFN:/vo/a", "LFN:/vo/b"]
    assert children[1]["InputData"] == ["LFN:/vo/c"]
    assert children[1]["Other"] == ["LFN:/vo/c"]
    assert children[0]["Keep"] == ["x", "LFN:/vo/a", "LFN:/vo/b", "y"]
    assert children[0]["Parameter"] == ["LFN:/vo/a", "LFN:/vo/b"]


def test_placeholders_reach_into_nested_records_and_exprs() -> None:
    children = expand(
        'Parameters = {"A", "B"}; Rec = [ Inner = "in_%s"; Deep = { [ X = "%n" ] } ];'
        'Requirements = other.Site == "%s"'
    )
    record = children[1]["Rec"]
    assert isinstance(record, JDL)
    assert record["Inner"] == "in_B"
    assert record["Deep"] == [JDL({"X": "1"})]
    assert children[1]["Requirements"] == 'other.Site == "B"'
    assert isinstance(children[1]["Requirements"], Expr)


def test_job_id_and_percent_are_left_for_substitution() -> None:
    children = expand('Parameters = {"50%", "a%j"}; Arguments = "%s %j 100%% %%s %x"')
    assert children[0]["Arguments"] == "50%% %j 100%% %%s %x"
    assert children[1]["Arguments"] == "a%%j %j 100%% %%s %x"
    done = [substitute_job_id(child, 1000 + i) for i, child in enumerate(children)]
    assert done[0]["Arguments"] == "50% 1000 100% %s %x"
    assert done[1]["Arguments"] == "a%j 1001 100% %s %x"
    assert done[1]["Parameter"] == "a%j"
    assert children[0]["Arguments"] == "50%% %j 100%% %%s %x"  # the argument is not changed


def test_substitute_job_id_on_text_and_nested_values() -> None:
    assert substitute_job_id('[ A = "%j-%%"; B = { "x%j" } ]', 7) == '[ A = "7-%"; B = { "x7" } ]'
    jdl = JDL({"L": ["%j", 3], "R": JDL({"E": Expr("x == %j")}), "N": 1})
    done = substitute_job_id(jdl, 9)
    assert done == JDL({"L": ["9", 3], "R": JDL({"E": "x == 9"}), "N": 1})
    assert isinstance(done["R"]["E"], Expr)  # type: ignore[index]


def test_percent_s_without_an_unnamed_sequence_is_left_alone() -> None:
    children = expand('Parameters.A = {1, 2}; Arguments = "date +%s %(A)s"')
    assert children[1]["Arguments"] == "date +%s 2"


def test_non_parametric_jdls_are_returned_as_they_are() -> None:
    jdl = parse_jdl('Executable = "x"; Arguments = "%s %n %j"; ParameterStart = 3')
    assert expand_parametric(jdl) == [jdl]
    assert expand_parametric(jdl)[0] is jdl
    assert not is_parametric(jdl)
    assert parameter_vectors(jdl) == {}
    assert is_parametric(parse_jdl("parameters = 2"))
    assert is_parametric(parse_jdl("Parameters.x = {1}"))
    assert not is_parametric(parse_jdl("ParametersX = 2"))


def test_old_parameter_attributes_are_replaced() -> None:
    children = expand("Parameters = 2; Parameter = 99; ParameterNumber = 99")
    assert [c["Parameter"] for c in children] == [1, 1]
    assert [c["ParameterNumber"] for c in children] == [0, 1]


def test_children_do_not_share_mutable_values() -> None:
    children = expand('Parameters = 2; L = {"a"}; R = [ M = {"b"} ]; T = {"%n"}')
    children[0]["L"].append("z")  # type: ignore[union-attr]
    children[0]["R"]["M"].append("z")  # type: ignore[index,union-attr]
    assert children[1]["L"] == ["a"]
    assert children[1]["R"] == JDL({"M": ["b"]})


def test_children_round_trip_through_text() -> None:
    for child in expand('Parameters = {"a b", 3}; Arguments = "%s"; Out = {"%n", "%s"}'):
        assert parse_jdl(child.to_text()) == child


def test_ten_thousand_children_quickly() -> None:
    jdl = parse_jdl(
        """[
        Executable = "analysis.sh";
        Arguments = "--seed %s --index %n --out out_%n.root";
        JobName = "scan_%n";
        InputSandbox = { "analysis.sh", "config.yaml" };
        OutputSandbox = { "std.out", "std.err", "out_%n.root" };
        CPUTime = 3600;
        Site = { "LCG.CERN.cern", "LCG.CNAF.it" };
        Parameters = 10000;
        ParameterStart = 1000;
        ParameterStep = 7;
    ]"""
    )
    children = expand_parametric(jdl)
    assert len(children) == 10000
    assert children[9999]["Arguments"] == "--seed 70993 --index 9999 --out out_9999.root"
    assert children[42]["OutputSandbox"] == ["std.out", "std.err", "out_0042.root"]
