"""Test shapes as users give them, normalised into one ``Suite``.

Accepted shapes (``tests`` may also be a JSON string of any of them, as verl stores ground truth):

* stdin/stdout: ``{"language"?, "cases": [{"stdin", "stdout"}]}``
* function call (LeetCode/TACO): ``{"fn_name", "cases": [{"args": [...], "kwargs"?, "expected"}]}``
* assert-style (HumanEval/MBPP): ``{"assert": "<code>" | ["<code>", ...], "entry_point"?, "setup"?}``
* verl: ``{"inputs": [...], "outputs": [...], "fn_name"?}``; with ``fn_name`` each input is a list of
  arguments or a string holding one JSON argument per line, and each output a value or its JSON text;
  verl's ``{"assert_case": [...]}`` is read as a list of assert tests.
* a bare list of cases: ``[{"stdin", "stdout"}]`` or CommonOJ's ``[{"input": {"stdin"}, "output": {"stdout"}}]``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from verifiers.code import wire
from verifiers.code.extract import canonical_language
from verifiers.types import VerifierInputError

SuiteKind = Literal["stdio", "call", "assert"]
MAX_TESTS = 1000


@dataclass(frozen=True)
class StdioCase:
    stdin: str
    stdout: str


@dataclass(frozen=True)
class CallCase:
    fn: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any


@dataclass(frozen=True)
class Site:
    """One rewritten ``assert``: ``eq`` ships a value compared outside with ``expected``; ``truth``
    ships ``bool(test)`` computed by the judge from plain data."""

    kind: Literal["eq", "truth"]
    expected: Any = None


@dataclass(frozen=True)
class AssertTest:
    source: str  # as the user gave it
    code: str  # rewritten: every assert is a call to a harness hook, expected literals removed
    call_check: bool  # the code defines check(candidate): call it with the entry point
    sites: dict[int, Site] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    kind: SuiteKind
    language: str | None
    stdio: tuple[StdioCase, ...] = ()
    calls: tuple[CallCase, ...] = ()
    asserts: tuple[AssertTest, ...] = ()
    entry_point: str | None = None
    setup: str = ""

    def __len__(self) -> int:
        return len(self.stdio) + len(self.calls) + len(self.asserts)


def parse_tests(tests: Any) -> Suite:
    """Normalise ``tests`` into a ``Suite``; raises ``VerifierInputError`` when malformed."""
    if isinstance(tests, str | bytes):
        try:
            tests = json.loads(tests)
        except ValueError as e:
            raise VerifierInputError(f"tests is a string but not JSON: {e}") from None
    if isinstance(tests, list):  # a bare list of stdin/stdout cases (SandboxFusion's CommonOJ shape too)
        tests = {"cases": [_common_oj_case(c) for c in tests]}
    if not isinstance(tests, dict):
        raise VerifierInputError(f"tests must be an object, got {type(tests).__name__}")
    if "assert_case" in tests and "assert" not in tests and "inputs" not in tests:
        tests = {**tests, "assert": tests["assert_case"]}  # verl's ground_truth["assert_case"]
    language = _language(tests.get("language"))
    if "assert" in tests:
        suite = _assert_suite(tests, language)
    elif "inputs" in tests or "outputs" in tests:
        suite = _verl_suite(tests, language)
    elif "fn_name" in tests:
        suite = _call_suite(tests, language)
    elif "cases" in tests:
        suite = _stdio_suite(tests, language)
    else:
        raise VerifierInputError(
            "tests must hold 'cases' (stdin/stdout or with 'fn_name'), 'assert', or verl's 'inputs'/'outputs'"
        )
    if len(suite) == 0:
        raise VerifierInputError("tests hold no test case")
    if len(suite) > MAX_TESTS:
        raise VerifierInputError(f"tests hold {len(suite)} cases; at most {MAX_TESTS} are allowed")
    return suite


def _common_oj_case(case: Any) -> Any:
    """``{"input": {"stdin": ...}, "output": {"stdout": ...}}`` → ``{"stdin", "stdout"}``; others as given."""
    if (
        isinstance(case, dict)
        and isinstance(case.get("input"), dict)
        and isinstance(case.get("output"), dict)
    ):
        return {"stdin": case["input"].get("stdin", ""), "stdout": case["output"].get("stdout")}
    return case


def _language(value: Any) -> str | None:
    if value is None:
        return None
    lang = canonical_language(value) if isinstance(value, str) else None
    if lang is None:
        raise VerifierInputError(f"tests.language {value!r} is not supported (python, cpp, javascript)")
    return lang


def _cases(tests: dict[str, Any]) -> list[Any]:
    cases = tests.get("cases")
    if not isinstance(cases, list):
        raise VerifierInputError("tests.cases must be a list")
    return cases


def _stdio_suite(tests: dict[str, Any], language: str | None) -> Suite:
    out = []
    for i, case in enumerate(_cases(tests)):
        if not isinstance(case, dict):
            raise VerifierInputError(f"tests.cases[{i}] must be an object with 'stdin' and 'stdout'")
        stdin = case.get("stdin", case.get("input", ""))
        stdout = case.get("stdout", case.get("output"))
        if not isinstance(stdin, str) or not isinstance(stdout, str):
            raise VerifierInputError(f"tests.cases[{i}]: 'stdin' and 'stdout' must be strings")
        out.append(StdioCase(stdin, stdout))
    return Suite("stdio", language, stdio=tuple(out))


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise VerifierInputError(f"{what} must be a Python identifier, got {value!r}")
    return value


def _plain(value: Any, what: str) -> Any:
    if wire.encode(value)[0] == "u":
        raise VerifierInputError(f"{what} is not plain data")
    return value


def _call_suite(tests: dict[str, Any], language: str | None) -> Suite:
    fn = _identifier(tests.get("fn_name"), "tests.fn_name")
    out = []
    for i, case in enumerate(_cases(tests)):
        if not isinstance(case, dict) or "expected" not in case:
            raise VerifierInputError(f"tests.cases[{i}] must be an object with 'args' and 'expected'")
        args = case.get("args", [])
        kwargs = case.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise VerifierInputError(f"tests.cases[{i}]: 'args' must be a list and 'kwargs' an object")
        for k in kwargs:
            _identifier(k, f"tests.cases[{i}].kwargs key")
        out.append(CallCase(fn, tuple(_plain(args, f"tests.cases[{i}].args")), kwargs, case["expected"]))
    return Suite("call", _python_only(language, "function-call"), calls=tuple(out))


def _verl_suite(tests: dict[str, Any], language: str | None) -> Suite:
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise VerifierInputError("tests.inputs and tests.outputs must be lists of the same length")
    if tests.get("fn_name") is None:
        cases = []
        for i, (stdin, stdout) in enumerate(zip(inputs, outputs, strict=True)):
            if not isinstance(stdin, str) or not isinstance(stdout, str):
                raise VerifierInputError(f"tests.inputs[{i}] and tests.outputs[{i}] must be strings")
            cases.append(StdioCase(stdin, stdout))
        return Suite("stdio", language, stdio=tuple(cases))
    fn = _identifier(tests.get("fn_name"), "tests.fn_name")
    calls = []
    for i, (raw_args, raw_expected) in enumerate(zip(inputs, outputs, strict=True)):
        if isinstance(raw_args, str):
            try:
                args = [json.loads(line) for line in raw_args.splitlines() if line.strip()]
            except ValueError as e:
                raise VerifierInputError(
                    f"tests.inputs[{i}]: each line must be one JSON argument ({e})"
                ) from None
        elif isinstance(raw_args, list):
            args = raw_args
        else:
            raise VerifierInputError(f"tests.inputs[{i}] must be a list of arguments or JSON lines")
        expected = raw_expected
        if isinstance(raw_expected, str):
            try:
                expected = json.loads(raw_expected)
            except ValueError:
                expected = raw_expected
        calls.append(CallCase(fn, tuple(_plain(args, f"tests.inputs[{i}]")), {}, expected))
    return Suite("call", _python_only(language, "function-call"), calls=tuple(calls))


def _python_only(language: str | None, what: str) -> str:
    if language not in (None, "python"):
        raise VerifierInputError(f"{what} tests are supported for python only, not {language}")
    return "python"


def _assert_suite(tests: dict[str, Any], language: str | None) -> Suite:
    raw = tests["assert"]
    sources = [raw] if isinstance(raw, str) else raw
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise VerifierInputError("tests.assert must be a string of test code or a list of them")
    entry = tests.get("entry_point")
    if entry is not None:
        entry = _identifier(entry, "tests.entry_point")
    setup = tests.get("setup", "")
    if not isinstance(setup, str):
        raise VerifierInputError("tests.setup must be a string of code")
    _parse(setup, "tests.setup")
    out = [rewrite_asserts(src, f"tests.assert[{i}]") for i, src in enumerate(sources)]
    if any(t.call_check for t in out) and entry is None:
        raise VerifierInputError("tests.assert defines check(candidate): tests.entry_point is required")
    return Suite(
        "assert", _python_only(language, "assert-style"), asserts=tuple(out), entry_point=entry, setup=setup
    )


def _parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as e:
        raise VerifierInputError(f"{what} is not valid Python: {e}") from None


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """``(True, value)`` when ``node`` is a literal whose value can be compared outside."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    return wire.encode(value)[0] != "u", value


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.sites: dict[int, Site] = {}

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        site = len(self.sites)
        test = node.test
        hook, shipped = "__referee_true__", test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            left, right = test.left, test.comparators[0]
            right_lit, right_val = _literal(right)
            left_lit, left_val = _literal(left)
            if right_lit and not left_lit:
                hook, shipped = "__referee_eq__", left
                self.sites[site] = Site("eq", right_val)
            elif left_lit and not right_lit:
                hook, shipped = "__referee_eq__", right
                self.sites[site] = Site("eq", left_val)
        if hook == "__referee_true__":
            self.sites[site] = Site("truth")
        call = ast.Call(ast.Name(hook, ast.Load()), [ast.Constant(site), shipped], [])
        return ast.copy_location(ast.Expr(call), node)


def rewrite_asserts(source: str, what: str = "test code") -> AssertTest:
    """Rewrite every ``assert`` into a harness hook; ``assert e == <literal>`` loses its literal.

    The judge then ships ``e``'s value (or ``bool(test)`` for other asserts) and the comparison
    with the literal happens outside the sandbox.
    """
    tree = _parse(source, what)
    rewriter = _AssertRewriter()
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    call_check = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body)
    return AssertTest(source=source, code=ast.unparse(tree), call_check=call_check, sites=rewriter.sites)
