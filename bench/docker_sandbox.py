"""Throughput of the docker sandbox backend beside a naive, unisolated ``subprocess`` runner.

Same programs (small Python stdin/stdout solutions, some wrong, one crashing), same run, 2 workers each.
The naive runner starts ``/usr/bin/python3`` per program with no isolation at all, as many graders do;
the docker backend runs each program fully isolated in a warm container.

    python bench/docker_sandbox.py [--programs 60] [--workers 2]

Needs dockerd and the sandbox image (.ci/docker-setup.sh && .ci/build-images.sh base sandbox).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sandbox.docker import DockerRunner
from sandbox.types import Limits, Program

SOURCES = [
    "a, b = map(int, input().split())\nprint(a + b)",
    "a, b = map(int, input().split())\nprint(a - b)",  # wrong answer
    "n = int(input().split()[0])\nprint(sum(i * i for i in range(n)) % 1000003 + 0 * n)",
    "import sys\nxs = sorted(map(int, sys.stdin.read().split()))\nprint(xs[-1] + xs[0])",
    "raise SystemExit(1)",  # crashes
]


def programs(n: int) -> list[Program]:
    return [Program("python", SOURCES[i % len(SOURCES)], stdin=f"{i + 3} {i + 1}\n") for i in range(n)]


def naive(program: Program) -> str:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", program.source],
        input=program.stdin,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout


def measure(
    name: str, fn: Callable[[Program], str], progs: list[Program], workers: int
) -> tuple[float, float]:
    def timed(p: Program) -> float:
        t = time.perf_counter()
        fn(p)
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        lat = list(pool.map(timed, progs))
    rate = len(progs) / (time.perf_counter() - t0)
    p50 = statistics.median(lat) * 1000
    p99 = sorted(lat)[max(0, int(0.99 * len(lat)) - 1)] * 1000
    print(f"{name:8s} {rate:6.1f} programs/s   p50 {p50:6.0f} ms   p99 {p99:6.0f} ms")
    return rate, p50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    progs = programs(args.programs)
    limits = Limits(wall_time_s=5.0, memory_mb=256)
    with DockerRunner(pool_size=args.workers) as runner:
        runner.run(progs[0], limits)  # warm-up
        # Same answers from both, or the comparison means nothing.
        for p in progs[: len(SOURCES)]:
            assert runner.run(p, limits).stdout == naive(p), p.source
        docker_rate, docker_p50 = measure(
            "docker", lambda p: runner.run(p, limits).stdout, progs, args.workers
        )
    naive_rate, naive_p50 = measure("naive", naive, progs, args.workers)
    print(
        f"ratio docker/naive: throughput {docker_rate / naive_rate:.2f}x, p50 latency {docker_p50 / naive_p50:.2f}x"
    )


if __name__ == "__main__":
    main()
