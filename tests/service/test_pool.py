"""The process pool: hard per-task timeouts that kill and replace the worker, memory limits, crashes."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import referee_test_plugins  # registers the test verifiers in this process
from service.item_task import Check, ItemTask, run_item_task
from service.pool import ProcessPool

PLUGIN = "referee_test_plugins"


def _task(verifier: str, config: object, completion: str = "x", reference: object = "x") -> ItemTask:
    return ItemTask(completion, (Check("accuracy", verifier, reference, config),))


def run(coro):
    return asyncio.run(coro)


def test_timeout_kills_worker_and_next_task_runs_on_a_fresh_one() -> None:
    async def scenario() -> None:
        pool = ProcessPool(1, preload=("verifiers", PLUGIN))
        await pool.start()
        try:
            pid_before = (
                await pool.run(run_item_task, _task("test_pid", referee_test_plugins.NoConfig()), 10)
            ).value
            started = time.perf_counter()
            slow = await pool.run(
                run_item_task, _task("test_sleep", referee_test_plugins.SleepConfig(30)), 0.5
            )
            assert slow.outcome == "timeout"
            assert time.perf_counter() - started < 5, (
                "the timeout must fire near its limit, not when the task ends"
            )
            pid_after = (
                await pool.run(run_item_task, _task("test_pid", referee_test_plugins.NoConfig()), 30)
            ).value
            assert pid_before["accuracy"].extracted != pid_after["accuracy"].extracted
            assert pool.restarts == 1
            with pytest.raises(ProcessLookupError):  # the killed worker is gone, not left spinning
                os.kill(int(pid_before["accuracy"].extracted), 0)
        finally:
            await pool.close()

    run(scenario())


def test_other_tasks_complete_while_one_times_out() -> None:
    async def scenario() -> None:
        pool = ProcessPool(2, preload=("verifiers", PLUGIN))
        await pool.start()
        try:
            echo = referee_test_plugins.EchoConfig()
            jobs = [pool.run(run_item_task, _task("test_sleep", referee_test_plugins.SleepConfig(30)), 1.0)]
            jobs += [pool.run(run_item_task, _task("test_echo", echo, str(i), str(i)), 10) for i in range(20)]
            results = await asyncio.gather(*jobs)
            assert results[0].outcome == "timeout"
            assert all(r.outcome == "ok" and r.value["accuracy"].status == "ok" for r in results[1:])
        finally:
            await pool.close()

    run(scenario())


def test_memory_hog_is_stopped_by_the_rlimit_and_the_pool_survives() -> None:
    async def scenario() -> None:
        pool = ProcessPool(1, memory_mb=1024, preload=("verifiers", PLUGIN))
        await pool.start()
        try:
            hog = await pool.run(run_item_task, _task("test_hog", referee_test_plugins.NoConfig()), 20)
            assert hog.outcome in ("error", "ok")
            if hog.outcome == "ok":  # the verifier's MemoryError became an invalid verdict
                assert hog.value["accuracy"].status == "invalid"
            echo = await pool.run(run_item_task, _task("test_echo", referee_test_plugins.EchoConfig()), 20)
            assert echo.outcome == "ok" and echo.value["accuracy"].status == "ok"
        finally:
            await pool.close()

    run(scenario())


def test_dead_worker_is_reported_and_replaced() -> None:
    async def scenario() -> None:
        pool = ProcessPool(1, preload=("verifiers", PLUGIN))
        await pool.start()
        try:
            died = await pool.run(run_item_task, _task("test_die", referee_test_plugins.NoConfig()), 10)
            assert died.outcome == "crashed" and "exit code" in died.message
            echo = await pool.run(run_item_task, _task("test_echo", referee_test_plugins.EchoConfig()), 30)
            assert echo.outcome == "ok"
        finally:
            await pool.close()

    run(scenario())


def test_cancelled_callers_jobs_are_skipped() -> None:
    async def scenario() -> None:
        pool = ProcessPool(1, preload=("verifiers", PLUGIN))
        await pool.start()
        try:
            blocker = asyncio.ensure_future(
                pool.run(run_item_task, _task("test_sleep", referee_test_plugins.SleepConfig(1.0)), 10)
            )
            await asyncio.sleep(0.05)
            queued = [
                asyncio.ensure_future(
                    pool.run(run_item_task, _task("test_sleep", referee_test_plugins.SleepConfig(1.0)), 10)
                )
                for _ in range(5)
            ]
            await asyncio.sleep(0.05)
            for q in queued:
                q.cancel()
            started = time.perf_counter()
            assert (await blocker).outcome == "ok"
            after = await pool.run(run_item_task, _task("test_echo", referee_test_plugins.EchoConfig()), 10)
            assert after.outcome == "ok"
            # Five cancelled 1-second jobs were dropped, not run.
            assert time.perf_counter() - started < 3
        finally:
            await pool.close()

    run(scenario())


def test_backpressure_admission() -> None:
    pool = ProcessPool(1, max_queue=3)
    assert pool.try_admit(3)
    assert not pool.try_admit(4)


def test_cancelled_jobs_inside_a_dispatched_chunk_are_skipped_by_the_worker() -> None:
    async def scenario() -> None:
        pool = ProcessPool(1, preload=("verifiers", PLUGIN))
        await pool.start()
        await pool.wait_ready()
        try:
            cfg = referee_test_plugins.SleepConfig(0.5)
            jobs = [
                asyncio.ensure_future(pool.run(run_item_task, _task("test_sleep", cfg), 10))
                for _ in range(10)
            ]
            await asyncio.sleep(0.2)  # all ten went to the worker as one chunk
            assert pool.queue_depth == 0
            for job in jobs:
                job.cancel()
            started = time.perf_counter()
            after = await pool.run(run_item_task, _task("test_echo", referee_test_plugins.EchoConfig()), 10)
            assert after.outcome == "ok"
            assert time.perf_counter() - started < 2.5  # not the 4.5 s the nine skipped jobs would take
            assert pool.restarts == 0  # skipped, not killed
        finally:
            await pool.close()

    run(scenario())
