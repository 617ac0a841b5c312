"""Code verifier on our full problem sets, beside the naive reference way of grading, same run.

* HumanEval set (``bench/data/humaneval_set.jsonl.gz``): canonical programs and mutants, judged by
  our ``code`` verifier in the bwrap sandbox (harness: separate judge/worker processes, values
  compared outside) and by HumanEval's own way (program + tests + ``check()`` run by plain
  ``python``, exit status 0 = pass, no isolation).
* stdin/stdout set (``bench/data/stdio_set.json.gz``): correct / wrong / slow / crash solutions,
  ours vs a naive ``subprocess.run`` per case with the same ``lines_rstrip``/``floats`` comparison.

Prints, per set: how many verdicts are right (canonical/correct = 1, every other = below 1),
agreement with the reference, programs/s and p50/p99 latency per verdict, and the ratios.
Usage: python bench/code_correctness.py [--workers 2] [--timeout 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import make_runner  # noqa: E402
from verifiers.code import CodeConfig, verify_code  # noqa: E402
from verifiers.code.checkers import output_matches  # noqa: E402

DATA = Path(__file__).parent / "data"


def reference_humaneval(program: str, test: str, entry: str, timeout: float) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.py"
        path.write_text(f"{program}\n\n{test}\n\ncheck({entry})\n")
        try:
            p = subprocess.run([sys.executable, str(path)], capture_output=True, timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            return 0.0
        return 1.0 if p.returncode == 0 else 0.0


def reference_stdio(program: str, cases: list[dict], checker: str, timeout: float) -> float:
    passed = 0
    for c in cases:
        try:
            p = subprocess.run(
                [sys.executable, "-c", program],
                input=c["stdin"],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            continue
        passed += p.returncode == 0 and output_matches(p.stdout, c["stdout"], checker)  # type: ignore[arg-type]
    return passed / len(cases)


def timed_map(
    fn: Callable[[dict], float], jobs: list[dict], workers: int
) -> tuple[list[float], list[float], float]:
    def one(job: dict) -> tuple[float, float]:
        t = time.perf_counter()
        score = fn(job)
        return score, time.perf_counter() - t

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(one, jobs))
    return [s for s, _ in out], [d for _, d in out], time.perf_counter() - start


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(name: str, jobs: list[dict], ours: tuple, ref: tuple) -> None:
    (s1, d1, w1), (s2, d2, w2) = ours, ref
    right1 = sum((s == 1.0) == j["good"] for s, j in zip(s1, jobs, strict=True))
    right2 = sum((s == 1.0) == j["good"] for s, j in zip(s2, jobs, strict=True))
    agree = sum((a == 1.0) == (b == 1.0) for a, b in zip(s1, s2, strict=True))
    n = len(jobs)
    print(
        f"\n== {name}: {n} programs ({sum(j['good'] for j in jobs)} good, {n - sum(j['good'] for j in jobs)} bad)"
    )
    print(f"{'':24}{'ours (bwrap+harness)':>22}{'reference (no isolation)':>26}{'ratio':>8}")
    print(f"{'verdicts right':24}{right1:>22}{right2:>26}")
    print(f"{'programs/s':24}{n / w1:>22.1f}{n / w2:>26.1f}{(n / w1) / (n / w2):>8.2f}")
    print(
        f"{'p50 latency (ms)':24}{1000 * statistics.median(d1):>22.0f}{1000 * statistics.median(d2):>26.0f}{statistics.median(d1) / statistics.median(d2):>8.2f}"
    )
    print(
        f"{'p99 latency (ms)':24}{1000 * pct(d1, 0.99):>22.0f}{1000 * pct(d2, 0.99):>26.0f}{pct(d1, 0.99) / pct(d2, 0.99):>8.2f}"
    )
    print(f"agreement with the reference: {agree}/{n}")
    for s, j in zip(s1, jobs, strict=True):
        if (s == 1.0) != j["good"]:
            print("  WRONG VERDICT (ours):", j["label"], s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--sets", default="humaneval,stdio", help="comma-separated: humaneval, stdio")
    args = ap.parse_args()
    runner = make_runner("bwrap", workers=args.workers)
    try:
        sets = args.sets.split(",")
        he = (
            []
            if "humaneval" not in sets
            else [json.loads(line) for line in gzip.open(DATA / "humaneval_set.jsonl.gz", "rt")]
        )
        jobs = []
        for r in he:
            for i, prog in enumerate([r["canonical"], *r["mutants"]]):
                jobs.append(
                    {
                        "label": f"{r['task_id']}#{i}",
                        "good": i == 0,
                        "program": prog,
                        "test": r["test"],
                        "entry": r["entry_point"],
                    }
                )
        cfg = CodeConfig(timeout_s=max(args.timeout, 5.0))

        def ours_he(j: dict) -> float:
            v = verify_code(
                f"```python\n{j['program']}\n```",
                {"assert": j["test"], "entry_point": j["entry"]},
                cfg,
                runner,
            )
            return v.score or 0.0

        if jobs:
            ours = timed_map(ours_he, jobs, args.workers)
            ref = timed_map(
                lambda j: reference_humaneval(j["program"], j["test"], j["entry"], 5.0), jobs, args.workers
            )
            report("HumanEval set (assert-style)", jobs, ours, ref)
        if "stdio" not in sets:
            return
        stdio = json.load(gzip.open(DATA / "stdio_set.json.gz", "rt"))
        jobs = [
            {
                "label": f"{p['id']}/{kind}",
                "good": kind == "correct",
                "program": prog,
                "cases": p["cases"],
                "checker": p["checker"],
            }
            for p in stdio
            for kind, prog in p["solutions"].items()
        ]

        def ours_stdio(j: dict) -> float:
            c = CodeConfig(timeout_s=args.timeout, checker=j["checker"])
            v = verify_code(f"```python\n{j['program']}```", {"cases": j["cases"]}, c, runner)
            return v.score or 0.0

        ours = timed_map(ours_stdio, jobs, args.workers)
        ref = timed_map(
            lambda j: reference_stdio(j["program"], j["cases"], j["checker"], args.timeout),
            jobs,
            args.workers,
        )
        report("stdin/stdout set (per-program latency covers all its cases)", jobs, ours, ref)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
