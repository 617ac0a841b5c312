"""Coalesce concurrent loss requests (several trainer ranks) into one device batch.

Device work is serialised on one worker thread. A request that finds that thread idle is flushed at once
on CPU (where coalescing saves nothing: `run_batch` does not concatenate there), and after a `window_s`
gathering window (default 2 ms) on CUDA; requests that arrive while the thread is busy wait and are flushed
together as soon as it is free, so a burst of concurrent ranks still forms one batch and an idle service
never waits. On CUDA the batch's tensors go to the device in one host-to-device copy per
field and the gradients come back in one copy; each request is then evaluated on its own row segment with
exactly the kernels it would get alone, so results are bit-identical to unbatched calls (reductions never
mix requests: their normalisers differ per request anyway).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from service.grpo.config import LossConfig
from service.grpo.losses import LossOutput, compute_loss, written_into


@dataclass
class LossJob:
    """One `/grpo/loss` request's tensors (host) and config; `run_s` is set by the batcher: the seconds its
    batch spent on the device thread (sent back as `Server-Timing`, so a client can tell compute from
    transport)."""

    logp: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    advantages: torch.Tensor
    mask: torch.Tensor
    config: LossConfig
    entropy: torch.Tensor | None = None  # (B, T) per-token entropies for the entropy bonus
    # where to write the gradients (a trainer's shared-memory buffer); the result's tensors are then these
    grad_out: torch.Tensor | None = None
    grad_entropy_out: torch.Tensor | None = None
    run_s: float = 0.0


@dataclass
class BatcherStats:
    requests: int = 0
    batches: int = 0
    largest_batch: int = 0


_FIELDS = ("logp", "old_logp", "ref_logp", "advantages", "mask", "entropy")


def _key(job: LossJob) -> tuple:
    def sig(t: torch.Tensor | None) -> tuple:
        return () if t is None else (t.dtype, tuple(t.shape[1:]))

    return tuple(sig(getattr(job, n)) for n in _FIELDS)


def run_batch(jobs: list[LossJob], device: torch.device, *, coalesce: bool | None = None) -> list[LossOutput]:
    """Evaluate jobs as one device batch; results are on the CPU, each equal to `compute_loss` alone.

    Args:
        jobs: the requests.
        device: compute device.
        coalesce: concatenate same-shaped jobs into one transfer (default: only on CUDA, where it saves
            copies; on CPU there is no transfer to save).
    """
    coalesce = device.type == "cuda" if coalesce is None else coalesce
    out: list[LossOutput | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(_key(j) if coalesce else (i,), []).append(i)
    for idxs in groups.values():
        members = [jobs[i] for i in idxs]
        rows = [j.logp.shape[0] for j in members]
        pin = device.type == "cuda"

        def cat(
            name: str, members: list[LossJob] = members, pin: bool = pin, rows: list[int] = rows
        ) -> list[torch.Tensor | None]:
            ts = [getattr(j, name) for j in members]
            if ts[0] is None:
                return [None] * len(ts)
            if len(ts) == 1:
                return [ts[0].to(device)]
            host = torch.cat(ts, 0)
            dev = (host.pin_memory() if pin else host).to(device, non_blocking=pin)
            return list(torch.split(dev, rows, 0))

        fields = {n: cat(n) for n in _FIELDS}
        results = []
        for k, j in enumerate(members):
            results.append(
                compute_loss(
                    fields["logp"][k],  # type: ignore[arg-type]
                    fields["old_logp"][k],
                    fields["ref_logp"][k],
                    fields["advantages"][k],  # type: ignore[arg-type]
                    fields["mask"][k],  # type: ignore[arg-type]
                    j.config,
                    device=device,
                    entropy=fields["entropy"][k],
                    # on CPU the kernel writes straight into them; on CUDA they are filled after the copy back
                    grad_out=j.grad_out if device.type == "cpu" else None,
                    grad_entropy_out=j.grad_entropy_out if device.type == "cpu" else None,
                )
            )
        grads = torch.cat([r.grad for r in results], 0).cpu() if len(results) > 1 else results[0].grad.cpu()
        for k, (i, r) in enumerate(zip(idxs, results, strict=True)):
            g = grads[sum(rows[:k]) : sum(rows[: k + 1])] if len(results) > 1 else grads
            gh = None if r.grad_entropy is None else r.grad_entropy.cpu()
            g = written_into(jobs[i].grad_out, g)  # on CUDA: the copy back lands in the trainer's buffer
            if gh is not None:
                gh = written_into(jobs[i].grad_entropy_out, gh)
            out[i] = LossOutput(loss=r.loss.cpu(), grad=g, metrics=r.metrics, grad_entropy=gh)
    return out  # type: ignore[return-value]


@dataclass
class LossBatcher:
    """Async front of `run_batch`: `await batcher.submit(job)` from request handlers, `run_now(job)` from a
    thread that wants the answer itself (the shared-memory socket's connections).

    Attributes:
        device: compute device.
        window_s: how long an idle batcher gathers before flushing; `None` = 2 ms on CUDA (one transfer for
            several ranks is worth it there), 0 on CPU (nothing to save, so never wait).
        coalesce: passed to `run_batch`.
    """

    device: torch.device
    window_s: float | None = None
    coalesce: bool | None = None
    stats: BatcherStats = field(default_factory=BatcherStats)

    def __post_init__(self) -> None:
        if self.window_s is None:
            self.window_s = 0.002 if self.device.type == "cuda" else 0.0
        self._pending: list[tuple[LossJob, asyncio.Future[LossOutput]]] = []
        self._busy = False  # a batch is on the worker thread; touched on the event loop only
        self._timer: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grpo-device")
        # device work runs one batch at a time, whichever thread runs it (the device thread or `run_now`'s
        # caller): two at once would oversubscribe the CPU's threads or interleave on the CUDA stream
        self._device_lock = threading.Lock()

    async def submit(self, job: LossJob) -> LossOutput:
        """Queue a job; resolves when its batch has run."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[LossOutput] = loop.create_future()
        self._pending.append((job, fut))
        if not self._busy:  # when busy, `_done` flushes everything gathered meanwhile
            if not self.window_s:
                self._flush(loop)
            elif self._timer is None:
                self._timer = loop.call_later(self.window_s, self._flush, loop)
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or not self._pending:
            return
        batch, self._pending = self._pending, []
        self._busy = True

        def work() -> None:
            try:
                results: list[LossOutput] | Exception = self._run([j for j, _ in batch])
            except Exception as e:  # deliver the error to every waiter instead of hanging them
                results = e
            loop.call_soon_threadsafe(self._done, loop, batch, results)

        self._executor.submit(work)

    def run_now(self, job: LossJob) -> LossOutput:
        """Run one job on the calling thread, as a batch of its own (the shared-memory socket's calls: a hop to
        the device thread and back costs more than the hand-off saves). Blocks while a batch runs."""
        return self._run([job])[0]

    def _run(self, jobs: list[LossJob]) -> list[LossOutput]:
        with self._device_lock:
            self.stats.requests += len(jobs)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
            t0 = time.perf_counter()
            try:
                return run_batch(jobs, self.device, coalesce=self.coalesce)
            finally:
                for j in jobs:
                    j.run_s = time.perf_counter() - t0

    def _done(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[LossJob, asyncio.Future[LossOutput]]],
        results: list[LossOutput] | Exception,
    ) -> None:
        """On the loop: resolve the batch's waiters, then run what arrived meanwhile without a window."""
        self._busy = False
        for k, (_, f) in enumerate(batch):
            if isinstance(results, Exception):
                _set_exc(f, results)
            else:
                _set_result(f, results[k])
        self._flush(loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _set_result(f: asyncio.Future[LossOutput], r: LossOutput) -> None:
    if not f.done():
        f.set_result(r)


def _set_exc(f: asyncio.Future[LossOutput], e: Exception) -> None:
    if not f.done():
        f.set_exception(e)


def default_device() -> torch.device:
    """cuda when available, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
