"""The registered ``code`` verifier: extract the program, run its tests in the sandbox, score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sandbox.types import Execution, Limits, Program, SandboxRunner
from verifiers.code.checkers import output_matches
from verifiers.code.extract import canonical_language, extract_program
from verifiers.code.harness import (
    TestResult,
    build_judge_run,
    import_failure,
    judge_asserts,
    judge_calls,
    read_records,
)
from verifiers.code.spec import Suite, parse_tests
from verifiers.registry import register
from verifiers.types import Verdict, VerifierInputError

# Our canonical language names -> the names the sandbox's RUNNERS registry uses.
SANDBOX_LANGUAGE = {"python": "python", "cpp": "cpp", "javascript": "javascript"}


@dataclass(frozen=True)
class CodeConfig:
    """Options of the ``code`` verifier (``options.code`` in a ``/score`` item)."""

    extract: Literal["last_block", "first_block", "answer_tag", "raw"] = "last_block"
    language: str | None = None  # overrides tests.language; default python
    checker: Literal["exact", "lines_rstrip", "tokens", "floats"] = "lines_rstrip"
    abs_tol: float = 1e-6
    rel_tol: float = 1e-6
    all_or_nothing: bool = False
    stop_on_first_failure: bool = False
    timeout_s: float = 5.0  # per stdin/stdout case, per function call
    compile_timeout_s: float = 30.0
    memory_mb: int = 512
    max_total_s: float = 120.0  # cap on one sandbox run of the function-call/assert judge

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 300 or not 0 < self.compile_timeout_s <= 300:
            raise VerifierInputError("code.timeout_s and code.compile_timeout_s must be in (0, 300]")
        if not 16 <= self.memory_mb <= 16384:
            raise VerifierInputError("code.memory_mb must be in 16..16384")
        if not 0 < self.max_total_s <= 3600:
            raise VerifierInputError("code.max_total_s must be in (0, 3600]")
        if self.abs_tol < 0 or self.rel_tol < 0:
            raise VerifierInputError("code.abs_tol and code.rel_tol must be >= 0")
        if self.language is not None and canonical_language(self.language) is None:
            raise VerifierInputError(
                f"code.language {self.language!r} is not supported (python, cpp, javascript)"
            )


class _SandboxFailed(Exception):
    def __init__(self, execution: Execution) -> None:
        super().__init__(execution.message)
        self.execution = execution


@register("code", config=CodeConfig, component="accuracy", version="1", runs_in="sandbox")
def verify_code(completion: str, tests: Any, config: CodeConfig, runner: SandboxRunner) -> Verdict:
    """Run the completion's program against its tests in the sandbox; reward = fraction passed."""
    suite = parse_tests(tests)
    language = canonical_language(config.language) or suite.language or "python"
    if suite.kind != "stdio" and language != "python":
        raise VerifierInputError(f"{suite.kind} tests are supported for python only, not {language}")
    code = extract_program(completion, language, config.extract)
    if code is None:
        return Verdict("no_answer", 0.0, None, {"reason": f"no {language} program found ({config.extract})"})
    try:
        if suite.kind == "stdio":
            results, compile_error = _run_stdio(suite, code, language, config, runner)
        else:
            results, compile_error = _run_judge(suite, code, config, runner)
    except _SandboxFailed as e:
        return Verdict(
            "sandbox_error",
            None,
            code,
            {"kind": suite.kind, "language": language, "message": e.execution.message or "sandbox failure"},
        )
    return _verdict(suite, language, code, results, compile_error, config)


def _run_stdio(
    suite: Suite, code: str, language: str, config: CodeConfig, runner: SandboxRunner
) -> tuple[list[TestResult], str | None]:
    results: list[TestResult] = []
    for case in suite.stdio:
        if config.stop_on_first_failure and results and not results[-1].passed:
            break
        limits = Limits(
            wall_time_s=config.timeout_s,
            cpu_time_s=config.timeout_s,
            memory_mb=config.memory_mb,
            max_output_bytes=max(1 << 20, 2 * len(case.stdout) + (64 << 10)),
            compile_time_s=config.compile_timeout_s,
        )
        ex = runner.run(Program(SANDBOX_LANGUAGE[language], code, stdin=case.stdin), limits)
        if ex.status == "sandbox_error":
            raise _SandboxFailed(ex)
        if ex.status == "compile_error":
            return results, (ex.compile_output or ex.message or "compile error")[-2000:]
        if ex.status != "ok":
            results.append(TestResult(ex.status, _tail(ex.stderr) or ex.message))
        elif ex.stdout_truncated:
            results.append(TestResult("output_limit", "output was truncated"))
        elif output_matches(ex.stdout, case.stdout, config.checker, config.abs_tol, config.rel_tol):
            results.append(TestResult("passed"))
        else:
            results.append(TestResult("failed", "wrong output: " + _tail(ex.stdout, 120)))
    return results, None


def _run_judge(
    suite: Suite, code: str, config: CodeConfig, runner: SandboxRunner
) -> tuple[list[TestResult], str | None]:
    run = build_judge_run(
        suite,
        code,
        call_timeout_s=config.timeout_s,
        memory_mb=config.memory_mb,
        max_total_s=config.max_total_s,
    )
    ex = runner.run(run.program, run.limits)
    if ex.status == "sandbox_error":
        raise _SandboxFailed(ex)
    records = read_records(ex, run.nonce)
    failed_import = import_failure(records)
    if failed_import is not None:
        if failed_import.get("timeout"):
            return [
                TestResult("timeout", "the program did not finish loading") for _ in range(len(suite))
            ], None
        return [], str(failed_import["import_error"])
    if not records and ex.status == "ok":
        # The judge ran but said nothing: it cannot have worked (we never pass on silence).
        return [TestResult("missing", "the judge produced no records") for _ in range(len(suite))], None
    if suite.kind == "call":
        tol = (config.abs_tol, config.rel_tol) if config.checker == "floats" else None
        results = judge_calls(suite, records, ex, tol)
    else:
        results = judge_asserts(suite, records, ex)
    if config.stop_on_first_failure:
        for i, r in enumerate(results):
            if not r.passed:
                results = results[: i + 1]
                break
    return results, None


def _verdict(
    suite: Suite,
    language: str,
    code: str,
    results: list[TestResult],
    compile_error: str | None,
    config: CodeConfig,
) -> Verdict:
    total = len(suite)
    passed = sum(r.passed for r in results)
    details: dict[str, Any] = {
        "kind": suite.kind,
        "language": language,
        "passed": passed,
        "total": total,
        "tests": [
            {"status": r.status, **({"message": r.message} if r.message else {})} for r in results[:100]
        ],
    }
    if len(results) < total:
        details["skipped"] = total - len(results)
    if compile_error is not None:
        details["compile_error"] = compile_error
        return Verdict("wrong", 0.0, code, details)
    if passed == total:
        return Verdict("ok", 1.0, code, details)
    score = 0.0 if config.all_or_nothing else passed / total
    failures = [r for r in results if not r.passed]
    timed_out = bool(failures) and all(r.status == "timeout" for r in failures) and len(results) == total
    return Verdict("timeout" if timed_out else "wrong", score, code, details)


def _tail(text: str, n: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]
