from __future__ import annotations

import pytest

import verifiers
from sandbox.types import Execution, Limits, Program
from verifiers.code import CodeConfig, verify_code
from verifiers.types import VerifierInputError

ADD_STDIO = {"cases": [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "5 5\n", "stdout": "10\n"}]}


def py(code: str) -> str:
    return f"Sure.\n```python\n{code}\n```\n"


def run(completion: str, tests, runner, **options):
    return verify_code(completion, tests, CodeConfig(**options), runner)


class CountingRunner:
    """Wraps a runner to count how many programs the verifier asked for."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.name = inner, 0, "counting"

    def run(self, program: Program, limits: Limits) -> Execution:
        self.calls += 1
        return self.inner.run(program, limits)

    def close(self) -> None:
        pass


class FailingRunner:
    name = "failing"

    def run(self, program: Program, limits: Limits) -> Execution:
        return Execution("sandbox_error", None, "", "", 0.0, message="backend unavailable")

    def close(self) -> None:
        pass


def test_registered_as_sandbox_accuracy_verifier() -> None:
    verifiers.load_builtin()
    spec = verifiers.get("code")
    assert spec.runs_in == "sandbox" and spec.component == "accuracy"
    cfg = spec.build_config({"checker": "tokens", "all_or_nothing": True, "timeout_s": 2})
    assert cfg.checker == "tokens" and cfg.all_or_nothing and cfg.timeout_s == 2.0
    for bad in (
        {"nope": 1},
        {"checker": "fuzzy"},
        {"timeout_s": -1},
        {"memory_mb": 1},
        {"language": "cobol"},
    ):
        with pytest.raises(VerifierInputError):
            spec.build_config(bad)


def test_stdio_pass_and_partial(runner) -> None:
    v = run(py("a, b = map(int, input().split())\nprint(a + b)"), ADD_STDIO, runner)
    assert (v.status, v.score) == ("ok", 1.0) and v.details["passed"] == 2
    v = run(py("a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)"), ADD_STDIO, runner)
    assert (v.status, v.score) == ("wrong", 0.5)
    assert [t["status"] for t in v.details["tests"]] == ["passed", "failed"]
    v = run(
        py("a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)"),
        ADD_STDIO,
        runner,
        all_or_nothing=True,
    )
    assert (v.status, v.score) == ("wrong", 0.0)


def test_no_program_is_no_answer(runner) -> None:
    v = run("The answer is to add them.", ADD_STDIO, runner)
    assert (v.status, v.score) == ("no_answer", 0.0)
    v = run("```cpp\nint main(){}\n```", ADD_STDIO, runner)  # wrong language for a python test
    assert v.status == "no_answer"


def test_answer_tag_block_is_the_one_judged(runner) -> None:
    completion = "```python\nprint(0)\n```\n<answer>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n</answer>"
    assert run(completion, ADD_STDIO, runner).score == 1.0


def test_runtime_error_and_timeout_statuses(runner) -> None:
    v = run(py("raise SystemExit(1)"), ADD_STDIO, runner)
    assert v.score == 0.0 and {t["status"] for t in v.details["tests"]} == {"runtime_error"}
    v = run(py("while True:\n    pass"), ADD_STDIO, runner, timeout_s=0.5)
    assert (v.status, v.score) == ("timeout", 0.0)


def test_output_flood_does_not_pass(runner) -> None:
    v = run(py("print('3' * 5_000_000)"), {"cases": [{"stdin": "", "stdout": "3"}]}, runner)
    assert v.score == 0.0


def test_stop_on_first_failure_runs_fewer_programs(runner) -> None:
    counting = CountingRunner(runner)
    tests = {"cases": [{"stdin": "", "stdout": "x"}] * 4}
    v = run(py("print('y')"), tests, counting, stop_on_first_failure=True)
    assert counting.calls == 1 and v.score == 0.0 and v.details["skipped"] == 3


def test_compile_error_stops_early(runner) -> None:
    counting = CountingRunner(runner)
    tests = {"language": "cpp", "cases": [{"stdin": "", "stdout": "1"}] * 3}
    v = run("```cpp\nint main( {\n```", tests, counting)
    assert counting.calls == 1
    assert (v.status, v.score) == ("wrong", 0.0) and v.details["compile_error"]


def test_python_syntax_error_in_function_tests(runner) -> None:
    v = run(py("def f(x) return x"), {"fn_name": "f", "cases": [{"args": [1], "expected": 1}]}, runner)
    assert (v.status, v.score) == ("wrong", 0.0) and "SyntaxError" in v.details["compile_error"]


def test_sandbox_failure_is_never_a_silent_zero() -> None:
    for tests in (ADD_STDIO, {"fn_name": "f", "cases": [{"args": [1], "expected": 1}]}):
        v = run(py("def f(x):\n    return x\nprint(3)"), tests, FailingRunner())
        assert v.status == "sandbox_error" and v.score is None and "unavailable" in v.details["message"]


def test_cpp_and_javascript_stdio(runner) -> None:
    cpp = '```cpp\n#include <cstdio>\nint main(){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);}\n```'
    assert run(cpp, {**ADD_STDIO, "language": "c++"}, runner).score == 1.0
    js = "```javascript\nconst [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(' ').map(Number);\nconsole.log(a + b);\n```"
    assert run(js, {**ADD_STDIO, "language": "js"}, runner).score == 1.0


def test_checkers_are_selectable(runner) -> None:
    tests = {"cases": [{"stdin": "", "stdout": "0.3333333\n"}]}
    assert run(py("print(1/3)"), tests, runner, checker="floats").score == 1.0
    assert run(py("print(1/3)"), tests, runner).score == 0.0
    tests = {"cases": [{"stdin": "", "stdout": "1 2\n"}]}
    assert run(py("print('1  2  ')"), tests, runner, checker="tokens").score == 1.0
    assert run(py("print('1 2 ')"), tests, runner, checker="exact").score == 0.0
    assert run(py("print('1 2 ')"), tests, runner).score == 1.0  # lines_rstrip default


def test_verl_stdio_and_fn_name_shapes(runner) -> None:
    v = run(
        py("a, b = map(int, input().split())\nprint(a + b)"),
        {"inputs": ["1 2\n", "2 2\n"], "outputs": ["3\n", "5\n"]},
        runner,
    )
    assert v.score == 0.5
    tests = {"inputs": ["[1, 2, 3]\n2", "[]\n0"], "outputs": ["[3, 1, 2]", "[]"], "fn_name": "rotate"}
    v = run(py("def rotate(a, k):\n    return a[-k:] + a[:-k] if a else []"), tests, runner)
    assert v.score == 0.5, v.details  # rotate([1,2,3],2) == [2,3,1], not [3,1,2]


def test_function_call_values_compared_outside(runner) -> None:
    tests = {
        "fn_name": "stats",
        "cases": [
            {"args": [[1, 2, 3]], "expected": {"mean": 2.0, "items": [1, 2, 3]}},
            {"args": [[]], "kwargs": {"default": None}, "expected": None},
        ],
    }
    code = "def stats(xs, default=0):\n    if not xs:\n        return default\n    return {'mean': sum(xs) / len(xs), 'items': tuple(xs)}"
    assert run(py(code), tests, runner).score == 1.0
    assert run(py("def stats(xs, default=0):\n    return True"), tests, runner).score == 0.0


def test_assert_style_features(runner) -> None:
    test = (
        "def check(candidate):\n"
        "    assert candidate(4) == 2.0\n"
        "    assert abs(candidate(2) - 1.41421356) < 1e-6\n"
        "    try:\n"
        "        candidate(-1)\n"
        "    except ValueError:\n"
        "        pass\n"
        "    else:\n"
        "        assert False, 'should raise'\n"
        "    assert helper(3) == 9\n"  # a prompt-defined helper, resolved in the candidate's program
    )
    good = "import math\ndef helper(x):\n    return x * x\ndef root(x):\n    if x < 0:\n        raise ValueError('neg')\n    return math.sqrt(x)"
    bad = "import math\ndef helper(x):\n    return x * x\ndef root(x):\n    return math.sqrt(abs(x))"
    assert run(py(good), {"assert": test, "entry_point": "root"}, runner).score == 1.0
    v = run(py(bad), {"assert": test, "entry_point": "root"}, runner)
    assert v.score == 0.0 and "assert" in v.details["tests"][0]["message"]


def test_mbpp_list_gives_partial_credit_and_setup_runs(runner) -> None:
    tests = {"assert": ["assert f(1) == K", "assert f(2) == 4", "assert f(3) == 9"], "setup": "K = 1"}
    v = run(py("def f(x):\n    return x * x if x < 3 else 0"), tests, runner)
    assert v.score == pytest.approx(2 / 3) and [t["status"] for t in v.details["tests"]] == [
        "passed",
        "passed",
        "failed",
    ]


def test_candidate_names_never_shadow_builtins_in_tests(runner) -> None:
    tests = {"assert": ["assert abs(f(-2)) == 2"]}
    v = run(py("def abs(x):\n    return 2\ndef f(x):\n    return 7"), tests, runner)
    assert v.score == 0.0
