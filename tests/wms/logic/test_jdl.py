"""Tests of the JDL value model, parser and writer."""

from __future__ import annotations

import random
import re

import pytest

from core.exceptions import InvalidJDLError
from wms.logic import _jdl_parse
from wms.logic.jdl import JDL, Expr, JDLValue, format_jdl, format_value, parse_jdl

# -- helpers ------------------------------------------------------------------------------------


def typed(value: object) -> object:
    """A comparable form that tells bool from int, float from int and Expr from str."""
    if isinstance(value, JDL):
        return ("jdl", sorted((name, typed(value[name])) for name in value))
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    return (type(value).__name__, value)


def assert_same(left: JDL, right: JDL) -> None:
    assert left == right
    assert typed(left) == typed(right)


# -- parsing ------------------------------------------------------------------------------------


def test_parse_scalars_lists_and_records() -> None:
    jdl = parse_jdl(
        """[
        Executable = "dirac-jobexec";
        Arguments = "a; b \\"quoted\\" c";
        CPUTime = 86400;
        Ratio = 0.25;
        Big = 1e5;
        Negative = -3;
        Flag = TRUE;
        Off = false;
        Requirements = other.Site == "X;Y" && member("a", other.Tags);
        Sites = { "A", "B", };
        Bare = {LCG.CERN.cern,LCG.CNAF.it};
        Empty = {};
        Nested = [ Inner = 1; List = { [ Deep = "x" ], { 1, 2 } } ];
        Last = "no semicolon"
    ]"""
    )
    assert jdl["Executable"] == "dirac-jobexec"
    assert jdl["Arguments"] == 'a; b "quoted" c'
    assert typed(jdl["CPUTime"]) == ("int", 86400)
    assert typed(jdl["Ratio"]) == ("float", 0.25)
    assert typed(jdl["Big"]) == ("float", 100000.0)
    assert jdl["Negative"] == -3
    assert typed(jdl["Flag"]) == ("bool", True)
    assert typed(jdl["Off"]) == ("bool", False)
    assert typed(jdl["Requirements"]) == (
        "Expr",
        'other.Site == "X;Y" && member("a", other.Tags)',
    )
    assert jdl["Sites"] == ["A", "B"]
    assert typed(jdl["Bare"]) == ("list", [("Expr", "LCG.CERN.cern"), ("Expr", "LCG.CNAF.it")])
    assert jdl["Empty"] == []
    nested = jdl["Nested"]
    assert isinstance(nested, JDL)
    assert nested["Inner"] == 1
    assert nested["List"] == [JDL({"Deep": "x"}), [1, 2]]
    assert jdl["Last"] == "no semicolon"
    assert list(jdl)[:2] == ["Executable", "Arguments"]


def test_outer_brackets_are_optional_and_comments_are_dropped() -> None:
    text = """
    # a comment line
    // another one
    Executable = "echo"; # trailing comment
    /* a block
       comment */ Arguments = "# not a comment // nor this";
    Priority = 5 // comment after a bare value
    ;
    """
    jdl = parse_jdl(text)
    assert dict(jdl.items()) == {
        "Executable": "echo",
        "Arguments": "# not a comment // nor this",
        "Priority": 5,
    }
    assert parse_jdl("[" + text + "]") == jdl


def test_empty_texts() -> None:
    assert len(parse_jdl("")) == 0
    assert len(parse_jdl("[]")) == 0
    assert len(parse_jdl("  [ ; ; ]  ")) == 0


def test_leading_zero_numbers_stay_words() -> None:
    jdl = parse_jdl("JobGroup = 00042; Zero = 0; Float = 007.5")
    assert typed(jdl["JobGroup"]) == ("Expr", "00042")
    assert jdl.get_str("JobGroup") == "00042"
    assert jdl.get_int("JobGroup") == 42
    assert typed(jdl["Zero"]) == ("int", 0)
    assert typed(jdl["Float"]) == ("float", 7.5)


def test_huge_numbers_stay_words() -> None:
    jdl = parse_jdl("Big = " + "9" * 5000 + "; Inf = 1e999; Long = " + "1" * 300)
    assert typed(jdl["Big"]) == ("Expr", "9" * 5000)
    assert typed(jdl["Inf"]) == ("Expr", "1e999")
    assert typed(jdl["Long"]) == ("int", int("1" * 300))
    assert parse_jdl(jdl.to_text()) == jdl


def test_multiline_bare_expression_continues_only_after_an_operator() -> None:
    jdl = parse_jdl("Requirements = other.A &&\n    other.B;\nNext = 1;")
    assert jdl["Requirements"] == "other.A &&\n    other.B"
    jdl = parse_jdl("Requirements = other.A\n    || other.B;")
    assert jdl["Requirements"] == "other.A\n    || other.B"
    with pytest.raises(InvalidJDLError, match=r"^line 2, column 1: expected ';' or the end"):
        parse_jdl("A = word\nB = 2;")


def test_backslashes_other_than_escapes_are_kept() -> None:
    jdl = parse_jdl(r'A = "C:\dir\file"; B = "end\\"; C = "q\"q"')
    assert jdl["A"] == "C:\\dir\\file"
    assert jdl["B"] == "end\\"
    assert jdl["C"] == 'q"q'


def test_lookup_is_case_insensitive_and_keeps_the_first_spelling() -> None:
    jdl = parse_jdl('executable = "a"')
    assert jdl["Executable"] == "a"
    assert "EXECUTABLE" in jdl
    jdl["EXECUTABLE"] = "b"
    assert list(jdl.items()) == [("executable", "b")]
    assert jdl.name_of("Executable") == "executable"
    jdl.rename("EXECUTABLE", "Executable")
    assert list(jdl) == ["Executable"]
    del jdl["eXecutable"]
    assert len(jdl) == 0
    with pytest.raises(KeyError):
        jdl["Executable"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[\n    Executable = "x";\n    Arguments = "a" "b";\n]',
            "line 3, column 21: expected ';' or ']' after value of attribute 'Arguments', "
            "found '\"b\"'",
        ),
        ('A = "x" "y"', "line 1, column 9: expected ';' or the end of the text after value of"),
        ("A = ", "line 1, column 5: expected a value for attribute 'A', found the end of the text"),
        ("A = ;", "line 1, column 5: expected a value for attribute 'A', found ';'"),
        ("[A = 1", "line 1, column 1: missing ']' to close this '['"),
        ("[ A = [ B = 1 ]", "line 1, column 1: missing ']' to close this '['"),
        ("A = 1;\nB = 2;\na = 3;", "line 3, column 1: duplicate attribute 'a'"),
        ("A = {1, 2", "line 1, column 10: expected ',' or '}' in the list value of attribute 'A'"),
        ('A = {"x" "y"}', "line 1, column 10: expected ',' or '}' in the list value of attribute"),
        ('A "x"', "line 1, column 3: expected '=' after attribute name 'A', found '\"x\"'"),
        ("A == 1", "line 1, column 3: expected '=' after attribute name 'A'"),
        ("= 1", "line 1, column 1: expected an attribute name, found '='"),
        ("[A = 1] x", "line 1, column 9: unexpected text after the closing ']', found 'x'"),
        ('A = "abc', "line 1, column 5: unterminated string in the value of attribute 'A'"),
        ("A = (1", "line 1, column 7: missing ')' in the value of attribute 'A'"),
        ("A = 1)", "line 1, column 6: unbalanced ')' in the value of attribute 'A'"),
        ("A = {1,,2}", "line 1, column 8: expected a value for attribute 'A', found ',2}'"),
        ("A = 1 ]", "line 1, column 7: expected ';' or the end of the text after value of"),
    ],
)
def test_errors_name_the_position_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(InvalidJDLError) as info:
        parse_jdl(text)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.errno == 1501
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(InvalidJDLError, match="must be text"):
        parse_jdl(b"A = 1")  # type: ignore[arg-type]


def test_deep_nesting_is_an_invalid_jdl() -> None:
    with pytest.raises(InvalidJDLError, match="too deeply"):
        parse_jdl("A = " + "{" * 5000 + "}" * 5000)
    with pytest.raises(InvalidJDLError, match="too deeply"):
        parse_jdl("A = " + "[B = " * 5000 + "]" * 5000)
    value = parse_jdl("A = " + "{" * 50 + "}" * 50)["A"]
    depth = 1
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    assert (value, depth) == ([], 50)


@pytest.mark.timeout(20)  # a hang guard against catastrophic backtracking, not a speed target
def test_pathological_blanks_do_not_backtrack() -> None:
    with pytest.raises(InvalidJDLError):
        parse_jdl("A = 1;" + " \n\t" * 50000 + "#x\n" * 1000 + "?")
    with pytest.raises(InvalidJDLError):
        parse_jdl("A = " + "(" * 2000 + "x")


# -- writing ------------------------------------------------------------------------------------


def test_format_is_dirac_style_and_sorted() -> None:
    jdl = JDL(
        {
            "Site": ["A", "B"],
            "Executable": 'say "hi"',
            "OutputSandbox": ["std.out"],
            "Empty": [],
            "Priority": 3,
            "Flag": True,
            "Ratio": 1.0,
            "Requirements": Expr("other.CPU > 5"),
            "JobRequirements": JDL({"Tags": ["x", "y"], "CPUTime": 100}),
            "Nothing": JDL(),
        }
    )
    assert format_jdl(jdl) == (
        "[\n"
        "    Empty = {};\n"
        '    Executable = "say \\"hi\\"";\n'
        "    Flag = true;\n"
        "    JobRequirements =\n"
        "        [\n"
        "            CPUTime = 100;\n"
        "            Tags =\n"
        "                {\n"
        '                    "x",\n'
        '                    "y"\n'
        "                };\n"
        "        ];\n"
        "    Nothing = [];\n"
        '    OutputSandbox = { "std.out" };\n'
        "    Priority = 3;\n"
        "    Ratio = 1.0;\n"
        "    Requirements = other.CPU > 5;\n"
        "    Site =\n"
        "        {\n"
        '            "A",\n'
        '            "B"\n'
        "        };\n"
        "]"
    )
    assert jdl.to_text(sorted_=False).splitlines()[1] == "    Site ="
    assert format_jdl(JDL()) == "[]"
    assert_same(parse_jdl(format_jdl(jdl)), jdl)


def test_format_value() -> None:
    assert format_value("a\\b") == '"a\\b"'
    assert format_value("end\\") == '"end\\\\"'
    assert format_value(False) == "false"
    assert format_value(12) == "12"
    assert format_value(1e-05) == "1e-05"
    assert format_value([Expr("x"), "y", 2]) == '{ x, "y", 2 }'
    with pytest.raises(InvalidJDLError):
        format_value(float("nan"))


@pytest.mark.parametrize(
    "expr", ["5", "true", "a; b", "x }", "", " padded", "a\nB = 1", "007x ;", "//x", '"q"']
)
def test_an_expr_that_would_not_read_back_is_quoted(expr: str) -> None:
    jdl = JDL({"A": Expr(expr), "L": [Expr(expr), "z"]})
    back = parse_jdl(jdl.to_text())
    assert back == jdl
    assert isinstance(back["A"], str)
    assert back["L"] == [expr, "z"]


def test_values_are_checked_when_set_from_python() -> None:
    jdl = JDL()
    jdl["T"] = ("a", 1)  # type: ignore[assignment]
    assert jdl["T"] == ["a", 1]
    with pytest.raises(InvalidJDLError, match="attribute 'X'"):
        jdl["X"] = {"a": 1}  # type: ignore[assignment]
    with pytest.raises(InvalidJDLError, match="cannot be written"):
        jdl["X"] = float("inf")
    with pytest.raises(InvalidJDLError, match="invalid JDL attribute name"):
        jdl["1abc"] = 1
    with pytest.raises(InvalidJDLError, match="invalid JDL attribute name"):
        jdl["a b"] = 1


def test_copy_is_deep() -> None:
    jdl = JDL({"L": ["a"], "R": JDL({"M": [1]})})
    other = jdl.copy()
    other["L"].append("b")  # type: ignore[union-attr]
    other["R"]["M"].append(2)  # type: ignore[index,union-attr]
    assert jdl == JDL({"L": ["a"], "R": JDL({"M": [1]})})
    assert jdl != other
    assert jdl != {"L": ["a"]}


# -- getters ------------------------------------------------------------------------------------


def test_getters_with_defaults_and_lenient_dirac_forms() -> None:
    jdl = parse_jdl(
        'S = "text"; W = word; N = 12; Q = "86400"; F = 2.0; H = "1.5"; B = true; Y = "yes";'
        'L = {"a", "b"}; C = "a, b"; I = {1, "x"}; R = [X = 1]'
    )
    assert jdl.get_str("s") == "text"
    assert type(jdl.get_str("W")) is str
    assert jdl.get_str("N") == "12"
    assert jdl.get_str("missing") is None
    assert jdl.get_str("missing", "d") == "d"
    assert jdl.get_int("N") == 12
    assert jdl.get_int("Q") == 86400
    assert jdl.get_int("F") == 2
    assert jdl.get_int("missing", 7) == 7
    assert jdl.get_float("H") == 1.5
    assert jdl.get_float("N") == 12.0
    assert jdl.get_bool("B") is True
    assert jdl.get_bool("Y") is True
    assert jdl.get_bool("missing", False) is False
    assert jdl.get_list("L") == ["a", "b"]
    assert jdl.get_list("S") == ["text"]
    assert jdl.get_list("C") == ["a, b"]
    assert jdl.get_list("missing") == []
    assert jdl.get_list("missing", ["d"]) == ["d"]
    assert jdl.get_str_list("I") == ["1", "x"]
    assert jdl.get_record("R") == JDL({"X": 1})
    assert jdl.get_record("missing") is None


@pytest.mark.parametrize(
    ("getter", "name", "expected"),
    [
        ("get_str", "L", "a string"),
        ("get_str", "B", "a string"),
        ("get_int", "S", "an integer"),
        ("get_int", "B", "an integer"),
        ("get_int", "H", "an integer"),
        ("get_float", "S", "a number"),
        ("get_bool", "S", "true or false"),
        ("get_bool", "N", "true or false"),
        ("get_list", "R", "a list"),
        ("get_str_list", "M", "a list of strings"),
        ("get_record", "N", "a record [ ... ]"),
    ],
)
def test_getters_name_the_attribute_on_a_wrong_type(getter: str, name: str, expected: str) -> None:
    jdl = parse_jdl('S = "text"; N = 12; H = 1.5; B = true; L = {"a"}; M = {{"a"}}; R = [X = 1]')
    pattern = re.escape(f"attribute '{name}' must be {expected}, got ")
    with pytest.raises(InvalidJDLError, match="^" + pattern):
        getattr(jdl, getter)(name.lower())


# -- round trip and the fast path ---------------------------------------------------------------

_NAME_CHARS = "abcXYZ_09."
_TEXT_CHARS = ['a', 'Z', ' ', ';', ',', '"', "\\", "#", "/", "*", "{", "}", "[", "]", "=", "\n",
               "%", "é", "\t", "'"]  # fmt: skip
_WORDS = ["word", "LCG.CERN.cern", "a.b", "x_y", "other.Site", "/path/x", "LFN:/vo/f", "%s"]


def random_name(rng: random.Random) -> str:
    return rng.choice("AbcQ_") + "".join(rng.choice(_NAME_CHARS) for _ in range(rng.randint(0, 6)))


def random_value(rng: random.Random, depth: int = 0) -> JDLValue:
    kind = rng.randint(0, 9 if depth < 3 else 6)
    if kind <= 1:
        return "".join(rng.choice(_TEXT_CHARS) for _ in range(rng.randint(0, 12)))
    if kind == 2:
        return rng.randint(-(10**20), 10**20) if rng.random() < 0.2 else rng.randint(-99, 9999)
    if kind == 3:
        return rng.choice([0.5, -1.25, 1e-5, 3.0, 1e22, rng.uniform(-1e6, 1e6)])
    if kind == 4:
        return rng.random() < 0.5
    if kind in (5, 6):
        return Expr(rng.choice(_WORDS + ["a && b", 'x == "y"', "5", "a;b"]))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return random_jdl(rng, depth + 1)


def random_jdl(rng: random.Random, depth: int = 0) -> JDL:
    jdl = JDL()
    for _ in range(rng.randint(0, 6)):
        jdl[random_name(rng)] = random_value(rng, depth)
    return jdl


def typed_loose(value: object) -> object:
    """Like :func:`typed`, but an Expr may come back as a plain str (when written quoted)."""
    if isinstance(value, JDL):
        return ("jdl", sorted((name, typed_loose(value[name])) for name in value))
    if isinstance(value, list):
        return ("list", [typed_loose(item) for item in value])
    if isinstance(value, str):
        return ("str", str(value))
    return (type(value).__name__, value)


def check_fast_path(text: str) -> None:
    """The fast path gives the general parser's result, or gives up."""
    fast = _jdl_parse.parse_fast(text, JDL._trusted)
    try:
        general = _jdl_parse.parse_general(text, JDL._trusted)
    except InvalidJDLError:
        assert fast is None, text
        return
    if fast is not None:
        assert typed(fast) == typed(general), text


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        position = rng.randint(0, len(chars))
        if chars and rng.random() < 0.5:
            del chars[min(position, len(chars) - 1)]
        else:
            chars.insert(position, rng.choice(_TEXT_CHARS + ["1", "x", " "]))
    return "".join(chars)


def test_round_trip_on_a_generated_table() -> None:
    rng = random.Random(20240611)
    for _ in range(400):
        jdl = random_jdl(rng)
        for sorted_ in (True, False):
            text = jdl.to_text(sorted_=sorted_)
            back = parse_jdl(text)
            assert back == jdl, text
            assert typed_loose(back) == typed_loose(jdl), text
            assert _jdl_parse.parse_fast(text, JDL._trusted) in (None, back)
            check_fast_path(text)
            check_fast_path(mutate(rng, text))


def test_fast_path_takes_the_common_case() -> None:
    text = JDL({"A": "x", "L": ["a", "b"], "R": JDL({"N": 1}), "W": Expr("w")}).to_text()
    assert _jdl_parse.parse_fast(text, JDL._trusted) is not None
    assert _jdl_parse.parse_fast("A = 1; # comment", JDL._trusted) is None
    assert _jdl_parse.parse_fast('A = "x\\"y"', JDL._trusted) is None


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    given = None

if given is not None:
    names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
    scalars = (
        st.text(max_size=20)
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.booleans()
        | st.sampled_from(_WORDS).map(Expr)
    )
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.lists(st.tuples(names, inner), max_size=4).map(JDL)
        ),
        max_leaves=12,
    )
    jdls = st.lists(st.tuples(names, values), max_size=8).map(JDL)

    @settings(max_examples=300, deadline=None)
    @given(jdls)
    def test_round_trip_property(jdl: JDL) -> None:
        text = format_jdl(jdl)
        back = parse_jdl(text)
        assert back == jdl
        assert typed_loose(back) == typed_loose(jdl)
        check_fast_path(text)

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="".join(_TEXT_CHARS) + "Ab1 .-+eE", max_size=60))
    def test_fast_path_agrees_on_any_text(text: str) -> None:
        check_fast_path(text)
