"""Scaling code execution out: a Redis Streams job queue between API replicas and sandbox workers.

The API side is ``RedisStreamRunner``, a ``SandboxRunner`` like any backend: ``run`` adds the job to a
stream and blocks on the job's result list. Sandbox workers (``referee sandbox-worker``) read the stream
through one consumer group, run each job with their local backend (bwrap or docker), push the
``Execution`` to the result list and only then acknowledge. A worker that dies mid-job leaves the job
pending: another worker reclaims it once it has been idle longer than ``claim_idle_s`` (XAUTOCLAIM), so
nothing is lost. A job delivered ``max_deliveries`` times (it kills every worker that touches it) is
answered with ``sandbox_error`` instead of circling forever.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any

import orjson
import redis

from sandbox.types import Execution, Limits, Program, SandboxRunner

log = logging.getLogger("referee.sandbox.stream")

STREAM = "referee:sandbox:jobs"
GROUP = "sandbox-workers"
RESULT_PREFIX = "referee:sandbox:result:"
RESULT_TTL_S = 600


# --- wire format (JSON; bytes as base64) ------------------------------------------------------------
def encode_job(job_id: str, program: Program, limits: Limits) -> dict[str, bytes]:
    p = asdict(program)
    p["files"] = {k: base64.b64encode(v).decode() for k, v in program.files.items()}
    return {"id": job_id.encode(), "program": orjson.dumps(p), "limits": orjson.dumps(asdict(limits))}


def decode_job(fields: dict[bytes, bytes]) -> tuple[str, Program, Limits]:
    p = orjson.loads(fields[b"program"])
    p["files"] = {k: base64.b64decode(v) for k, v in p["files"].items()}
    p["argv"] = tuple(p.get("argv", ()))
    return fields[b"id"].decode(), Program(**p), Limits(**orjson.loads(fields[b"limits"]))


def encode_execution(ex: Execution) -> bytes:
    e = asdict(ex)
    e["files"] = {k: base64.b64encode(v).decode() for k, v in ex.files.items()}
    return orjson.dumps(e)


def decode_execution(blob: bytes) -> Execution:
    e = orjson.loads(blob)
    e["files"] = {k: base64.b64decode(v) for k, v in e.get("files", {}).items()}
    return Execution(**e)


def job_deadline_s(limits: Limits) -> float:
    """How long one job may take on a worker, generously: compile + run + start-up."""
    return limits.compile_time_s + limits.wall_time_s + 10.0


# --- the API side ------------------------------------------------------------------------------------
class RedisStreamRunner:
    """``SandboxRunner`` that hands programs to remote sandbox workers through Redis Streams."""

    name = "redis-stream"

    def __init__(self, url: str, *, queue_wait_s: float = 60.0, stream: str = STREAM) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5.0, socket_timeout=None)
        self.queue_wait_s = queue_wait_s
        self.stream = stream
        self._redis.ping()

    def run(self, program: Program, limits: Limits) -> Execution:
        job_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            self._redis.xadd(self.stream, encode_job(job_id, program, limits))  # type: ignore[arg-type]
            wait = job_deadline_s(limits) + self.queue_wait_s
            answer: Any = self._redis.blpop([RESULT_PREFIX + job_id], timeout=max(1, int(wait + 0.999)))
        except redis.RedisError as e:
            return _sandbox_error(f"the job queue is unreachable: {e}", started)
        if answer is None:
            return _sandbox_error(f"no sandbox worker answered within {wait:.0f} s", started)
        return decode_execution(answer[1])

    def pending(self) -> int:
        try:
            return int(self._redis.xlen(self.stream))
        except redis.RedisError:
            return -1

    def close(self) -> None:
        self._redis.close()


def _sandbox_error(message: str, started: float) -> Execution:
    return Execution("sandbox_error", None, "", "", time.perf_counter() - started, message=message)


# --- the worker side ---------------------------------------------------------------------------------
class StreamWorker:
    """Consumes jobs with ``concurrency`` threads, runs them on ``runner``, answers, then acknowledges."""

    def __init__(
        self,
        url: str,
        runner: SandboxRunner,
        *,
        concurrency: int = 1,
        claim_idle_s: float = 60.0,
        max_deliveries: int = 3,
        stream: str = STREAM,
        name: str | None = None,
    ) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5.0, socket_timeout=None)
        self.runner = runner
        self.concurrency = max(1, concurrency)
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.max_deliveries = max_deliveries
        self.stream = stream
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._stop = threading.Event()
        self.processed = 0
        try:
            self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def serve_forever(self) -> None:
        threads = [
            threading.Thread(target=self._loop, args=(f"{self.name}-{i}",), daemon=True)
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        try:
            while not self._stop.is_set() and any(t.is_alive() for t in threads):
                self._stop.wait(0.5)
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=10)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, consumer: str) -> None:
        next_claim = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + max(self.claim_idle_ms / 4000, 0.2)
                    if self._reclaim(consumer):
                        continue
                batch: Any = self._redis.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=1, block=500)
                for _stream, messages in batch or []:
                    for message_id, fields in messages:
                        self._handle(message_id, fields)
            except redis.RedisError as e:
                log.warning("sandbox worker %s: redis error %s; retrying", consumer, e)
                self._stop.wait(1.0)

    def _reclaim(self, consumer: str) -> bool:
        """Take over one job a dead worker left pending; True if one was handled."""
        _next, claimed, *_ = self._redis.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=1
        )
        for message_id, fields in claimed:
            if not fields:  # deleted meanwhile
                self._redis.xack(self.stream, GROUP, message_id)
                continue
            info = self._redis.xpending_range(self.stream, GROUP, min=message_id, max=message_id, count=1)
            deliveries = int(info[0]["times_delivered"]) if info else 1
            if deliveries > self.max_deliveries:
                job_id = fields[b"id"].decode()
                self._answer(
                    message_id,
                    job_id,
                    _sandbox_error(
                        f"job abandoned after killing {deliveries - 1} sandbox workers", time.perf_counter()
                    ),
                )
                continue
            log.warning("reclaimed job %s (delivery %d) from a dead worker", message_id, deliveries)
            self._handle(message_id, fields)
            return True
        return False

    def _handle(self, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            job_id, program, limits = decode_job(fields)
        except Exception as e:  # noqa: BLE001 - a malformed job is answered, not retried forever
            job_id = fields.get(b"id", b"unknown").decode(errors="replace")
            self._answer(message_id, job_id, _sandbox_error(f"malformed job: {e}", time.perf_counter()))
            return
        try:
            execution = self.runner.run(program, limits)
        except Exception as e:  # noqa: BLE001 - the backend failed: our fault, say so
            execution = _sandbox_error(f"{type(e).__name__}: {e}", time.perf_counter())
        self._answer(message_id, job_id, execution)

    def _answer(self, message_id: bytes, job_id: str, execution: Execution) -> None:
        key = RESULT_PREFIX + job_id
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, encode_execution(execution))
        pipe.expire(key, RESULT_TTL_S)
        pipe.xack(self.stream, GROUP, message_id)
        pipe.xdel(self.stream, message_id)
        pipe.execute()
        self.processed += 1
