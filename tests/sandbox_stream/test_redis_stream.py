"""Scaled-out code execution over Redis Streams, with a real redis-server and real bubblewrap workers.

What is shown: a job goes API → stream → worker → result; a worker SIGKILLed mid-job loses nothing (another
worker reclaims the job); with no worker the caller gets `sandbox_error`, never a hang or a silent 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sandbox.redis_stream import GROUP, STREAM, RedisStreamRunner, StreamWorker
from sandbox.types import Execution, Limits, Program
from tests.service.conftest import redis_url  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def worker_process(url: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "sandbox-worker",
            "--redis-url",
            url,
            "--concurrency",
            "1",
            *extra,
        ],
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def clean_stream(redis_url: str) -> Iterator[str]:  # noqa: F811
    r = redis.Redis.from_url(redis_url)
    r.delete(STREAM)
    yield redis_url
    r.delete(STREAM)


def test_job_round_trip(clean_stream: str) -> None:
    proc = worker_process(clean_stream)
    try:
        runner = RedisStreamRunner(clean_stream, queue_wait_s=30)
        ex = runner.run(Program("python", "print(input()[::-1])", stdin="abc\n"), Limits(wall_time_s=5))
        assert ex.status == "ok" and ex.stdout == "cba\n"
        files = runner.run(
            Program("python", "print(open('data.txt').read())", files={"data.txt": b"\x00bin"}),
            Limits(wall_time_s=5),
        )
        assert files.status == "ok" and "bin" in files.stdout
        slow = runner.run(Program("python", "while True: pass"), Limits(wall_time_s=1, cpu_time_s=1))
        assert slow.status == "timeout"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_worker_killed_mid_job_loses_nothing(clean_stream: str) -> None:
    r = redis.Redis.from_url(clean_stream)
    first = worker_process(clean_stream, "--claim-idle-s", "2")
    runner = RedisStreamRunner(clean_stream, queue_wait_s=60)
    out: list[Execution] = []
    caller = threading.Thread(
        target=lambda: out.append(
            runner.run(
                Program("python", "import time; time.sleep(3); print('survived')"), Limits(wall_time_s=10)
            )
        )
    )
    caller.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the first worker holds the job
        try:
            if r.xpending(STREAM, GROUP)["pending"] == 1:
                break
        except redis.ResponseError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the first worker never picked the job up")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = worker_process(clean_stream, "--claim-idle-s", "2")
    try:
        caller.join(timeout=60)
        assert out and out[0].status == "ok" and out[0].stdout == "survived\n"
        assert r.xpending(STREAM, GROUP)["pending"] == 0  # acknowledged
    finally:
        second.terminate()
        second.wait(timeout=20)


def test_no_worker_is_a_sandbox_error_not_a_hang(clean_stream: str) -> None:
    runner = RedisStreamRunner(clean_stream, queue_wait_s=0.5)
    started = time.monotonic()
    ex = runner.run(Program("python", "print(1)"), Limits(wall_time_s=0.5, compile_time_s=0.0))
    assert ex.status == "sandbox_error" and "no sandbox worker answered" in ex.message
    assert time.monotonic() - started < 20


def test_poison_job_is_answered_after_max_deliveries(clean_stream: str) -> None:
    """A job whose every delivery dies is answered with sandbox_error once it exceeds max_deliveries."""
    r = redis.Redis.from_url(clean_stream)

    class DyingRunner:
        name = "dies"

        def run(self, program: Program, limits: Limits) -> Execution:
            raise AssertionError("never reached: deliveries are simulated below")

        def close(self) -> None:
            pass

    worker = StreamWorker(clean_stream, DyingRunner(), claim_idle_s=0.0, max_deliveries=2)
    runner = RedisStreamRunner(clean_stream, queue_wait_s=10)
    answers: list[Execution] = []
    t = threading.Thread(
        target=lambda: answers.append(runner.run(Program("python", "print(1)"), Limits(wall_time_s=1)))
    )
    t.start()
    time.sleep(0.3)
    for consumer in ("dead-1", "dead-2"):  # two workers read it and died without acknowledging
        r.xreadgroup(GROUP, consumer, {STREAM: ">" if consumer == "dead-1" else "0"}, count=1)
        r.xclaim(STREAM, GROUP, consumer, 0, [r.xpending_range(STREAM, GROUP, "-", "+", 1)[0]["message_id"]])
    assert worker._reclaim("survivor") is False  # answered as abandoned, not run
    t.join(timeout=20)
    assert answers and answers[0].status == "sandbox_error" and "abandoned" in answers[0].message
