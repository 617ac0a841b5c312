"""Build the sandboxed judge program for function-call and assert-style tests, and judge its records.

The program is ``wire.py + judge.py``; the candidate goes in beside it as a file, the tests and a
fresh random nonce arrive on stdin. Only lines of stdout that start with the nonce are records.
Expected values never leave this process: calls ship arguments only, asserts ship rewritten code.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.types import Execution, Limits, Program
from verifiers.code import wire
from verifiers.code.checkers import json_equal, python_equal
from verifiers.code.spec import Suite

PROGRAM_FILE = "solution.py"
_HERE = Path(__file__).parent
_STARTUP_S = 3.0  # judge + one worker interpreter start, generously


@cache
def judge_source() -> str:
    """Source of the judge program: wire.py, worker.py (for the forked first worker), judge.py."""
    return "\n\n".join((_HERE / name).read_text() for name in ("wire.py", "worker.py", "judge.py"))


@cache
def worker_source() -> str:
    """Source of the worker program the judge starts for the candidate."""
    return (
        "\n\n".join((_HERE / name).read_text() for name in ("wire.py", "worker.py"))
        + "\n\nserve_from_argv()\n"
    )


@dataclass(frozen=True)
class TestResult:
    status: str  # passed | failed | error | raised | timeout | crash | unserializable | missing | ...
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class JudgeRun:
    program: Program
    limits: Limits
    nonce: str


def build_judge_run(
    suite: Suite, code: str, *, call_timeout_s: float, memory_mb: int, max_total_s: float
) -> JudgeRun:
    """The sandbox program that runs ``suite`` (kind ``call`` or ``assert``) against ``code``."""
    nonce = secrets.token_hex(16)
    spec: dict[str, Any] = {
        "nonce": nonce,
        "worker": worker_source(),
        "program": PROGRAM_FILE,
        "call_timeout_s": call_timeout_s,
        "kind": suite.kind,
    }
    if suite.kind == "call":
        spec["tests"] = [
            {
                "fn": c.fn,
                "args": [wire.encode(a) for a in c.args],
                "kwargs": {k: wire.encode(v) for k, v in c.kwargs.items()},
            }
            for c in suite.calls
        ]
        n_calls = len(suite.calls)
    else:
        spec["tests"] = [{"code": t.code, "call_check": t.call_check} for t in suite.asserts]
        spec["entry_point"] = suite.entry_point
        spec["setup"] = suite.setup
        n_calls = len(suite.asserts) * 2
    wall = min(max_total_s, _STARTUP_S + call_timeout_s * (n_calls + 1))
    program = Program(
        language="python",
        source=judge_source(),
        stdin=json.dumps(spec),
        files={PROGRAM_FILE: code.encode("utf-8")},
    )
    limits = Limits(
        wall_time_s=wall, cpu_time_s=wall, memory_mb=memory_mb, max_processes=16, max_output_bytes=8 << 20
    )
    return JudgeRun(program, limits, nonce)


def read_records(execution: Execution, nonce: str) -> list[dict[str, Any]]:
    """Records the judge wrote: stdout lines carrying this run's nonce, nothing else."""
    prefix = nonce + " "
    records = []
    for line in execution.stdout.splitlines():
        if line.startswith(prefix):
            try:
                record = json.loads(line[len(prefix) :])
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _missing_status(execution: Execution) -> TestResult:
    """What a test without an outcome record gets: blame the run's end, never pass."""
    if execution.status in ("timeout", "memory", "output_limit"):
        return TestResult(execution.status, "the run was stopped: " + execution.status)
    return TestResult("missing", "no result arrived for this test")


def judge_calls(
    suite: Suite, records: list[dict[str, Any]], execution: Execution, float_tol: tuple[float, float] | None
) -> list[TestResult]:
    """Per-test results of a function-call suite."""
    by_test: dict[int, dict[str, Any]] = {}
    for r in records:
        t = r.get("test")
        if isinstance(t, int) and t not in by_test:
            by_test[t] = r
    results = []
    for i, case in enumerate(suite.calls):
        rec = by_test.get(i)
        if rec is None:
            results.append(_missing_status(execution))
            continue
        r = rec
        if "value" in r:
            try:
                got = wire.decode(r["value"])
            except wire.WireError as e:
                results.append(TestResult("failed", f"malformed result: {e}"))
                continue
            if isinstance(got, wire.Unserializable):
                results.append(TestResult("unserializable", f"returned a {got.type_name}, not plain data"))
            elif json_equal(got, case.expected, float_tol):
                results.append(TestResult("passed"))
            else:
                results.append(TestResult("failed", f"returned {_short(got)}"))
        else:
            results.append(TestResult(str(r.get("kind", "error")), str(r.get("error", ""))[:300]))
    return results


def judge_asserts(suite: Suite, records: list[dict[str, Any]], execution: Execution) -> list[TestResult]:
    """Per-test results of an assert-style suite: a test passes only when the judge saw its code run
    to the end, and every assert it executed holds (value compared here, or a true ``bool``)."""
    per_test: dict[int, list[dict[str, Any]]] = {}
    setup_error = None
    for r in records:
        if "setup_error" in r:
            setup_error = str(r["setup_error"])
        t = r.get("test")
        if isinstance(t, int):
            per_test.setdefault(t, []).append(r)
    results = []
    for i, test in enumerate(suite.asserts):
        recs = per_test.get(i, [])
        failure: TestResult | None = None
        done = False
        executed = 0
        for r in recs:
            if r.get("done") is True:
                done = True
            elif "error" in r:
                failure = failure or TestResult(str(r.get("kind", "error")), str(r["error"])[:300])
            elif "site" in r:
                executed += 1
                failure = failure or _check_site(test.sites, r)
            else:
                failure = failure or TestResult("failed", "unexpected record")
        if setup_error is not None:
            results.append(TestResult("error", "setup failed: " + setup_error[:300]))
        elif failure is not None:
            results.append(failure)
        elif not done:
            results.append(_missing_status(execution))
        else:
            results.append(TestResult("passed", f"{executed} assert(s) held"))
    return results


def _check_site(sites: dict[int, Any], r: dict[str, Any]) -> TestResult | None:
    site = sites.get(r["site"]) if isinstance(r["site"], int) else None
    if site is None:
        return TestResult("failed", "record for an unknown assert")
    if site.kind == "truth":
        if r.get("truth") is True:
            return None
        return TestResult("failed", f"assert #{r['site']} failed")
    if "value" not in r:
        return TestResult("failed", f"assert #{r['site']}: no value")
    try:
        got = wire.decode(r["value"])
    except wire.WireError as e:
        return TestResult("failed", f"assert #{r['site']}: malformed value ({e})")
    if python_equal(got, site.expected):
        return None
    return TestResult("failed", f"assert #{r['site']} failed: got {_short(got)}")


def import_failure(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The judge's report that the candidate's program did not load (syntax error, crash, timeout)."""
    for r in records:
        if "import_error" in r:
            return r
    return None


def _short(value: Any, n: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."
