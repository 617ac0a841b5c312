"""A process pool with a hard per-task timeout, for CPU-bound verifiers.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot kill one stuck task. A pathological
sympy expression can spin for minutes and ``signal.alarm`` only works in a main thread, so each task
here runs in a dedicated spawn worker that is SIGKILLed on overrun and replaced, while the other
workers keep serving. Workers get an address-space rlimit so one item cannot exhaust the host.

The pool lives in one asyncio loop: tasks wait in a bounded FIFO queue (backpressure is the
caller's ``try_admit``); one runner coroutine per worker sends it a chunk of tasks through a pipe
and waits for each answer with ``loop.add_reader`` (no threads). Every task keeps its own deadline,
counted from the previous answer; on overrun the rest of the chunk goes back to the front of the
queue. A cancelled task already sent is skipped by the worker, not run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

log = logging.getLogger("referee.pool")

Outcome = Literal["ok", "timeout", "crashed", "error"]
_READY = "__ready__"


@dataclass(frozen=True)
class PoolResult:
    outcome: Outcome
    value: Any = None
    message: str = ""
    elapsed_s: float = 0.0


class PoolClosedError(RuntimeError):
    pass


@dataclass
class _Job:
    fn: Callable[[Any], Any]
    arg: Any
    timeout_s: float
    future: asyncio.Future[PoolResult]


def _worker_main(conn: Connection, memory_mb: int, preload: Sequence[str]) -> None:
    """Entry point of a spawn worker: preload modules, then serve chunks of (fn, arg) calls until EOF."""
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import importlib

    for name in preload:
        module = importlib.import_module(name)
        for hook in ("load_builtin", "warm_up"):  # verifiers: register, then pay lazy imports
            fn = getattr(module, hook, None)
            if callable(fn):
                fn()
    try:
        conn.send(_READY)
    except (BrokenPipeError, OSError):  # the pool closed while this worker was starting
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "chunk":  # a late "skip" for a chunk already finished
            continue
        _, seq, chunk = message
        skipped: set[int] = set()
        # One message carries several tasks (less IPC); each answer goes back as soon as it is
        # ready, so the parent can time every task on its own and kill us on the first overrun.
        for index, (fn, arg) in enumerate(chunk):
            while conn.poll():  # callers that went away: their tasks are skipped, not run
                control = conn.recv()
                if control[0] == "skip" and control[1] == seq:
                    skipped.add(control[2])
            if index in skipped:
                conn.send(("skipped", None))
                continue
            try:
                reply: tuple[str, Any] = ("ok", fn(arg))
            except MemoryError:
                reply = ("error", "the verifier exceeded its memory limit")
            except BaseException as e:  # noqa: BLE001 - report, never die silently
                reply = ("error", f"{type(e).__name__}: {e}"[:2000])
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return
            except Exception as e:  # noqa: BLE001 - e.g. an unpicklable result
                conn.send(("error", f"could not return the result: {type(e).__name__}: {e}"[:2000]))


class _Worker:
    def __init__(self, ctx: Any, memory_mb: int, preload: Sequence[str]) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, memory_mb, tuple(preload)), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(timeout=5)
        with contextlib.suppress(Exception):
            self.conn.close()


async def _recv(conn: Connection, timeout_s: float | None) -> Any:
    """Wait until ``conn`` is readable (or EOF) without blocking the loop, then receive."""
    loop = asyncio.get_running_loop()
    if not conn.poll():
        ready: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await asyncio.wait_for(ready, timeout_s)
        finally:
            loop.remove_reader(fd)
    return conn.recv()


class ProcessPool:
    """``size`` spawn workers; ``await pool.run(fn, arg, timeout_s)`` never raises for task failures."""

    def __init__(
        self,
        size: int,
        *,
        max_queue: int = 16384,
        memory_mb: int = 2048,
        preload: Sequence[str] = (),
        start_timeout_s: float = 120.0,
        max_chunk: int = 32,
    ) -> None:
        self.size = max(1, size)
        self.max_queue = max_queue
        self.memory_mb = memory_mb
        self.preload = tuple(preload)
        self.start_timeout_s = start_timeout_s
        self.max_chunk = max(1, max_chunk)
        self._ctx = multiprocessing.get_context("spawn")
        self._pending: collections.deque[_Job] = collections.deque()
        self._work = asyncio.Condition()
        self._runners: list[asyncio.Task[None]] = []
        self._ready = 0
        self._busy = 0
        self._closed = False
        self._seq = 0
        self.restarts = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._runners = [asyncio.create_task(self._runner(i)) for i in range(self.size)]

    async def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Wait until every worker is up (start-up imports take a second or two)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._ready < self.size:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        self._closed = True
        for t in self._runners:
            t.cancel()
        for t in self._runners:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(PoolClosedError("the pool is shutting down"))

    # --- state ---------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def ready_workers(self) -> int:
        return self._ready

    def try_admit(self, n: int) -> bool:
        """Backpressure: may ``n`` more tasks be queued now?"""
        return not self._closed and len(self._pending) + n <= self.max_queue

    # --- work ----------------------------------------------------------------------------------
    async def run(self, fn: Callable[[Any], Any], arg: Any, timeout_s: float) -> PoolResult:
        if self._closed:
            raise PoolClosedError("the pool is shutting down")
        future: asyncio.Future[PoolResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(fn, arg, timeout_s, future))
        async with self._work:
            self._work.notify()
        # Cancelling the caller cancels the future; runners skip jobs whose future is done.
        return await future

    async def _take(self) -> list[_Job]:
        """The next chunk: a fair share of what is waiting, at most ``max_chunk``, cancelled jobs dropped."""
        async with self._work:
            while True:
                while self._pending and self._pending[0].future.done():
                    self._pending.popleft()
                if self._pending:
                    break
                await self._work.wait()
            share = min(self.max_chunk, max(1, len(self._pending) // self.size))
            jobs: list[_Job] = []
            while self._pending and len(jobs) < share:
                job = self._pending.popleft()
                if not job.future.done():
                    jobs.append(job)
            if self._pending:
                self._work.notify()  # more left: wake another runner
            return jobs

    async def _requeue(self, jobs: list[_Job]) -> None:
        """Jobs that never started because their worker died go back to the front of the line."""
        live = [j for j in jobs if not j.future.done()]
        self._pending.extendleft(reversed(live))
        if live:
            async with self._work:
                self._work.notify()

    async def _start_worker(self) -> _Worker:
        worker = _Worker(self._ctx, self.memory_mb, self.preload)
        try:
            hello = await _recv(worker.conn, self.start_timeout_s)
        except (TimeoutError, EOFError, OSError) as e:
            worker.kill()
            raise RuntimeError(f"pool worker failed to start: {type(e).__name__}") from e
        if hello != _READY:
            worker.kill()
            raise RuntimeError(f"pool worker sent {hello!r} instead of ready")
        return worker

    async def _runner(self, index: int) -> None:
        worker: _Worker | None = None
        try:
            while True:
                if worker is None:
                    try:
                        worker = await self._start_worker()
                    except RuntimeError:
                        log.exception("pool worker %d failed to start; retrying in 1 s", index)
                        await asyncio.sleep(1.0)
                        continue
                    self._ready += 1
                jobs = await self._take()
                self._busy += 1
                try:
                    alive = await self._execute(worker, jobs)
                finally:
                    self._busy -= 1
                if not alive:
                    self._ready -= 1
                    worker.kill()
                    worker = None
                    self.restarts += 1
        finally:
            if worker is not None:
                self._ready -= 1
                worker.kill()

    async def _execute(self, worker: _Worker, jobs: list[_Job]) -> bool:
        """Run a chunk; each job has its own deadline from the moment the previous one answered."""
        self._seq += 1
        seq = self._seq
        try:
            worker.conn.send(("chunk", seq, [(job.fn, job.arg) for job in jobs]))
        except (OSError, ValueError) as e:
            _resolve(jobs[0], PoolResult("crashed", message=f"could not send the task: {e}"))
            await self._requeue(jobs[1:])
            return False

        def skip_when_cancelled(index: int) -> Callable[[asyncio.Future[PoolResult]], None]:
            def callback(future: asyncio.Future[PoolResult]) -> None:
                if future.cancelled():
                    with contextlib.suppress(OSError, ValueError):
                        worker.conn.send(("skip", seq, index))

            return callback

        callbacks = [skip_when_cancelled(i) for i in range(len(jobs))]
        for job, callback in zip(jobs, callbacks, strict=True):
            job.future.add_done_callback(callback)
        try:
            return await self._collect(worker, jobs)
        finally:
            for job, callback in zip(jobs, callbacks, strict=True):
                job.future.remove_done_callback(callback)

    async def _collect(self, worker: _Worker, jobs: list[_Job]) -> bool:
        for i, job in enumerate(jobs):
            started = time.perf_counter()
            try:
                kind, payload = await _recv(worker.conn, job.timeout_s)
            except TimeoutError:
                message = f"exceeded the {job.timeout_s:g} s limit; worker killed"
                _resolve(job, PoolResult("timeout", message=message, elapsed_s=time.perf_counter() - started))
                await self._requeue(jobs[i + 1 :])
                return False
            except (EOFError, OSError):
                message = f"the worker died (exit code {worker.proc.exitcode})"
                _resolve(job, PoolResult("crashed", message=message, elapsed_s=time.perf_counter() - started))
                await self._requeue(jobs[i + 1 :])
                return False
            elapsed = time.perf_counter() - started
            if kind == "ok":
                _resolve(job, PoolResult("ok", payload, elapsed_s=elapsed))
            elif kind == "skipped":  # its caller is gone
                continue
            else:
                _resolve(job, PoolResult("error", message=str(payload), elapsed_s=elapsed))
        return True


def _resolve(job: _Job, result: PoolResult) -> None:
    if not job.future.done():
        job.future.set_result(result)


def default_pool_size() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
