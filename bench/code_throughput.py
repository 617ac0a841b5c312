"""Throughput of running untrusted programs: our bwrap sandbox vs a naive unsandboxed runner.

Same programs, same run, 2 workers each. The naive runner is what many graders do: write the file,
``subprocess.run([python3, file])`` with a timeout, no isolation at all (it pays an interpreter start
per program; our warm fork servers do not). Prints programs/s and p50/p99 latency per runner, the
ratio ours/naive, medians over rounds, and checks both runners produced the same outputs.

    /work/venv/bin/python bench/code_throughput.py [--rounds 3] [--workers 2] [--repeat 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.bwrap import BwrapRunner  # noqa: E402
from sandbox.types import Limits, Program  # noqa: E402

PYTHON = "/usr/bin/python3"
LIMITS = Limits(wall_time_s=10, cpu_time_s=10, memory_mb=512)

# 30 stdin/stdout programs of the size RL code tasks have (parsing input, a loop, printing).
STDIO_PROGRAMS: list[tuple[str, str]] = [
    ("a, b = map(int, input().split())\nprint(a + b)", "40 2"),
    ("n = int(input())\nprint(sum(range(n + 1)))", "100000"),
    ("s = input()\nprint(s[::-1])", "referee"),
    ("import sys\nxs = sorted(map(int, sys.stdin.read().split()))\nprint(*xs)", "5 3 9 1 7 2 8"),
    ("n = int(input())\nprint(all(n % d for d in range(2, int(n ** .5) + 1)) and n > 1)", "999983"),
    ("n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)", "300"),
    ("from collections import Counter\nprint(Counter(input()).most_common(1)[0][0])", "mississippi"),
    (
        "n = int(input())\nsieve = bytearray([1]) * (n + 1)\nsieve[:2] = b'\\0\\0'\n"
        "for i in range(2, int(n ** .5) + 1):\n    if sieve[i]: sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\n"
        "print(sum(sieve))",
        "200000",
    ),
    ("import math\nprint(math.gcd(*map(int, input().split())))", "123456 7890"),
    ("w = input().split()\nprint(len(set(w)))", "a b c a b d e"),
    ("n = int(input())\nprint(bin(n).count('1'))", "123456789"),
    ("s = input()\nprint('YES' if s == s[::-1] else 'NO')", "racecar"),
    ("import sys\nlines = sys.stdin.read().splitlines()\nprint(max(map(len, lines)))", "a\nbbb\ncc"),
    ("n = int(input())\nprint('\\n'.join(str(i * i) for i in range(1, n + 1)))", "50"),
    ("import itertools\nprint(sum(1 for _ in itertools.permutations(range(7))))", ""),
    (
        "n = int(input())\ndp = [0] * (n + 1)\ndp[0] = 1\nfor c in (1, 5, 10, 25, 50):\n"
        "    for v in range(c, n + 1): dp[v] += dp[v - c]\nprint(dp[n])",
        "1000",
    ),
    (
        "xs = list(map(int, input().split()))\nbest = cur = xs[0]\nfor x in xs[1:]:\n"
        "    cur = max(x, cur + x); best = max(best, cur)\nprint(best)",
        "-2 1 -3 4 -1 2 1 -5 4",
    ),
    ("import heapq\nxs = list(map(int, input().split()))\nprint(heapq.nsmallest(3, xs))", "9 4 7 1 8 2"),
    (
        "s = input()\nst = []\nok = True\nfor ch in s:\n    if ch in '([{': st.append(ch)\n"
        "    elif not st or '([{'[')]}'.index(ch)] != st.pop(): ok = False\nprint(ok and not st)",
        "([]{()})",
    ),
    ("n = int(input())\nprint(len(str(2 ** n)))", "10000"),
    ("import json\nprint(json.dumps(sorted(input().split()), separators=(',', ':')))", "pear apple fig"),
    ("a = input(); b = input()\nprint(sorted(a) == sorted(b))", "listen\nsilent"),
    ("n = int(input())\nprint(sum(int(d) for d in str(3 ** n)))", "2000"),
    ("import re\nprint(len(re.findall(r'\\d+', input())))", "a1b22c333d"),
    (
        "n = int(input())\nc = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1; c += 1\nprint(c)",
        "27",
    ),
    ("g = [[1 if (i * j) % 3 else 0 for j in range(60)] for i in range(60)]\nprint(sum(map(sum, g)))", ""),
    ("import bisect\nxs = sorted(map(int, input().split()))\nprint(bisect.bisect_left(xs, 5))", "1 3 5 7 9"),
    (
        "from functools import lru_cache\n@lru_cache(None)\ndef f(n): return n if n < 2 else f(n-1) + f(n-2)\nprint(f(90))",
        "",
    ),
    ("s = input().split(',')\nprint(sum(float(x) for x in s) / len(s))", "1.5,2.5,3.5"),
    ("n = int(input())\nprint(*[i for i in range(1, n + 1) if n % i == 0])", "360"),
]


def naive_run(source: str, stdin: str) -> tuple[str, str]:
    """What an unsandboxed grader does: a temp file and ``subprocess.run``."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "main.py")
        with open(path, "w") as f:
            f.write(source)
        try:
            r = subprocess.run(
                [PYTHON, path], input=stdin, capture_output=True, text=True, timeout=LIMITS.wall_time_s, cwd=d
            )
        except subprocess.TimeoutExpired:
            return "timeout", ""
        return ("ok" if r.returncode == 0 else "runtime_error"), r.stdout


def measure(fn: Callable[[str, str], tuple[str, str]], jobs: list[tuple[str, str]], workers: int):
    """Run every job through ``fn`` on ``workers`` threads; programs/s, latencies, outputs."""

    def timed(job: tuple[str, str]) -> tuple[float, tuple[str, str]]:
        t = time.perf_counter()
        out = fn(*job)
        return time.perf_counter() - t, out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(timed, jobs))
    total = time.perf_counter() - t0
    lat = sorted(r[0] for r in results)
    return len(jobs) / total, lat, [r[1] for r in results]


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=4, help="each program this many times per round")
    args = ap.parse_args()

    runner = BwrapRunner(workers=args.workers)

    def ours(source: str, stdin: str) -> tuple[str, str]:
        ex = runner.run(Program("python", source, stdin=stdin), LIMITS)
        return ex.status, ex.stdout

    jobs = STDIO_PROGRAMS * args.repeat
    measure(ours, jobs[:8], args.workers)  # warm both paths once
    measure(naive_run, jobs[:8], args.workers)
    rows: dict[str, list[tuple[float, float, float]]] = {"ours (bwrap, warm)": [], "naive subprocess": []}
    for _ in range(args.rounds):
        # alternate the order so machine noise hits both alike
        for name, fn in (("ours (bwrap, warm)", ours), ("naive subprocess", naive_run)):
            rate, lat, outs = measure(fn, jobs, args.workers)
            rows[name].append((rate, pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3))
            if name.startswith("ours"):
                ours_outs = outs
            else:
                naive_outs = outs
        assert ours_outs == naive_outs, "runners disagree on some program's output"
        assert all(s == "ok" for s, _ in ours_outs), [s for s, _ in ours_outs]
    runner.close()

    print(
        f"{len(STDIO_PROGRAMS)} stdin/stdout Python programs x{args.repeat}, {args.workers} workers, "
        f"{args.rounds} rounds (medians); interpreter {PYTHON}"
    )
    print(f"{'runner':<22}{'programs/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    med: dict[str, tuple[float, float, float]] = {}
    for name, rs in rows.items():
        med[name] = (
            statistics.median(r[0] for r in rs),
            statistics.median(r[1] for r in rs),
            statistics.median(r[2] for r in rs),
        )
        print(f"{name:<22}{med[name][0]:>12.1f}{med[name][1]:>10.1f}{med[name][2]:>10.1f}")
    o, n = med["ours (bwrap, warm)"], med["naive subprocess"]
    print(
        f"ratio ours/naive: throughput x{o[0] / n[0]:.2f}, p50 x{o[1] / n[1]:.2f}, p99 x{o[2] / n[2]:.2f} "
        "(throughput >1 and latency <1 mean ours is faster)"
    )


if __name__ == "__main__":
    main()
