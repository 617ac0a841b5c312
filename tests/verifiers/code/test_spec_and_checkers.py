from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifiers.code import wire
from verifiers.code.checkers import json_equal, output_matches, python_equal
from verifiers.code.spec import parse_tests, rewrite_asserts
from verifiers.types import VerifierInputError

# -- shapes -----------------------------------------------------------------------------------


def test_stdio_shape() -> None:
    s = parse_tests({"language": "cpp", "cases": [{"stdin": "1\n", "stdout": "2\n"}, {"stdout": "x"}]})
    assert s.kind == "stdio" and s.language == "cpp" and len(s) == 2 and s.stdio[1].stdin == ""


def test_call_shape() -> None:
    s = parse_tests({"fn_name": "f", "cases": [{"args": [1, [2]], "kwargs": {"k": 3}, "expected": [4]}]})
    assert s.kind == "call" and s.calls[0].args == (1, [2]) and s.calls[0].kwargs == {"k": 3}


def test_verl_shapes_as_given() -> None:
    stdio = parse_tests('{"inputs": ["1 2\\n"], "outputs": ["3\\n"]}')  # JSON string, as verl stores it
    assert stdio.kind == "stdio" and stdio.stdio[0].stdout == "3\n"
    calls = parse_tests({"inputs": ["[1, 2]\n3", [4, 5]], "outputs": ["[3]", 9], "fn_name": "f"})
    assert calls.kind == "call"
    assert calls.calls[0].args == ([1, 2], 3) and calls.calls[0].expected == [3]
    assert calls.calls[1].args == (4, 5) and calls.calls[1].expected == 9


def test_list_and_common_oj_and_assert_case_shapes() -> None:
    s = parse_tests([{"stdin": "1", "stdout": "2"}, {"input": {"stdin": "3"}, "output": {"stdout": "4"}}])
    assert s.kind == "stdio" and [(c.stdin, c.stdout) for c in s.stdio] == [("1", "2"), ("3", "4")]
    s = parse_tests({"assert_case": ["assert f(1) == 2", "assert f(2) == 3"]})
    assert s.kind == "assert" and len(s) == 2


def test_assert_shapes() -> None:
    s = parse_tests({"assert": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "f"})
    assert s.kind == "assert" and s.asserts[0].call_check and s.entry_point == "f"
    s = parse_tests({"assert": ["assert f(1) == 2", "assert f(2) == 3"], "setup": "import math"})
    assert len(s) == 2 and not s.asserts[0].call_check


@pytest.mark.parametrize(
    "tests",
    [
        None,
        42,
        "not json",
        {},
        {"cases": "x"},
        {"cases": []},
        {"cases": [{"stdin": "1"}]},
        {"cases": [{"stdin": 1, "stdout": "2"}]},
        {"fn_name": "not an id", "cases": [{"args": [], "expected": 1}]},
        {"fn_name": "f", "cases": [{"args": [1]}]},
        {"fn_name": "f", "cases": [{"args": 1, "expected": 1}]},
        {"inputs": ["1"], "outputs": []},
        {"inputs": ["not json"], "outputs": ["1"], "fn_name": "f"},
        {"assert": "assert (", "entry_point": "f"},
        {"assert": "def check(candidate):\n    assert candidate(1) == 1\n"},  # no entry_point
        {"assert": []},
        {"language": "cobol", "cases": [{"stdin": "", "stdout": ""}]},
        {"language": "cpp", "fn_name": "f", "cases": [{"args": [], "expected": 1}]},
        {"cases": [{"stdin": "", "stdout": ""}] * 1001},
    ],
)
def test_malformed_tests_raise_input_error(tests) -> None:
    with pytest.raises(VerifierInputError):
        parse_tests(tests)


def test_rewrite_removes_expected_literals() -> None:
    t = rewrite_asserts(
        "def check(c):\n    assert c(1) == [1, 2]\n    assert 'x' == c(2)\n    assert c(3) > 0\n    assert c(4) == c(5)\n"
    )
    assert "[1, 2]" not in t.code and "'x'" not in t.code and "assert" not in t.code
    kinds = {k: (s.kind, s.expected) for k, s in t.sites.items()}
    assert kinds == {0: ("eq", [1, 2]), 1: ("eq", "x"), 2: ("truth", None), 3: ("truth", None)}


# -- checkers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("got", "want", "checker", "ok"),
    [
        ("3\n", "3\n", "exact", True),
        ("3", "3\n", "exact", False),
        ("3  \n\n\n", "3\n", "lines_rstrip", True),
        ("3\r\n4\n", "3\n4", "lines_rstrip", True),
        ("3\n4\n", "3\n", "lines_rstrip", False),  # an extra line fails
        ("3", "3\n4\n", "lines_rstrip", False),  # truncated output fails
        (" 3 4 ", "3\n4", "lines_rstrip", False),
        ("1  2\n3", "1 2 3", "tokens", True),
        ("1 2", "1 2 3", "tokens", False),
        ("0.3333333 1", "0.333333333 1.0", "floats", True),
        ("0.34", "0.333333", "floats", False),
        ("nan", "nan", "floats", True),
        ("abc 1.0", "abd 1.0", "floats", False),
    ],
)
def test_output_checkers(got: str, want: str, checker, ok: bool) -> None:
    assert output_matches(got, want, checker) is ok


def test_json_equal_rules() -> None:
    assert json_equal((1, 2), [1, 2])
    assert not json_equal(True, 1) and not json_equal(1, True)
    assert json_equal(2, 2.0)
    assert not json_equal(0.1 + 0.2, 0.3) and json_equal(0.1 + 0.2, 0.3, (1e-9, 1e-9))
    assert not json_equal({"a": [1]}, {"a": [2]}) and json_equal({"a": (1,)}, {"a": [1]})
    assert not json_equal(wire.Unserializable("x"), "x")


def test_python_equal_rejects_unserializable_anywhere() -> None:
    assert python_equal([1, (2, 3)], [1, (2, 3)])
    assert not python_equal([1, (2, 3)], [1, [2, 3]])
    assert not python_equal([wire.Unserializable("A")], [1])


# -- wire -------------------------------------------------------------------------------------

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=20,
)


@given(plain)
def test_wire_round_trip(value) -> None:
    back = wire.decode(wire.encode(value))
    assert back == value and type(back) is type(value)


def test_wire_specials_and_limits() -> None:
    assert math.isnan(wire.decode(wire.encode(float("nan"))))
    assert wire.decode(wire.encode(float("-inf"))) == float("-inf")
    assert wire.decode(wire.encode(10**5000)) == 10**5000  # beyond int->str digit limits
    assert wire.decode(wire.encode({1, 2})) == {1, 2}

    class Sub(int):
        pass

    assert wire.encode(Sub(1))[0] == "u" and wire.encode(object())[0] == "u"
    assert wire.encode([0] * 10, max_items=5)[0] == "u"
    nested: list = []
    for _ in range(100):
        nested = [nested]
    assert wire.encode(nested)[0] == "u"
    u = wire.decode(["u", "A"])
    assert u != u and not (u == u)


@pytest.mark.parametrize(
    "bad", [[], ["zz", 1], ["i", "xyz"], ["l", 3], ["d", [[["l", []], ["n"]]]], "x", ["n", 1]]
)
def test_wire_rejects_malformed(bad) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(bad)
