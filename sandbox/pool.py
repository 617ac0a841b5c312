"""A fair (FIFO) pool of slots with a bounded waiting line: backpressure instead of unbounded queues."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    """More callers are waiting than the pool allows; try again later."""


class QueueTimeout(TimeoutError):
    """No slot became free in time."""


class FifoPool(Generic[T]):
    """Hands out ``items`` one caller at a time, strictly in arrival order.

    A released item goes straight to the oldest waiter (no barging), so a burst from one request cannot
    starve another that arrived earlier. At most ``max_waiting`` callers may wait; more get ``QueueFull``.
    """

    def __init__(self, items: list[T], max_waiting: int) -> None:
        self._free: deque[T] = deque(items)
        self._waiters: deque[tuple[threading.Event, list[T]]] = deque()
        self._lock = threading.Lock()
        self._max_waiting = max_waiting
        self.size = len(items)

    def acquire(self, timeout_s: float | None = None) -> T:
        with self._lock:
            if self._free and not self._waiters:
                return self._free.popleft()
            if len(self._waiters) >= self._max_waiting:
                raise QueueFull(f"{len(self._waiters)} runs already waiting for a sandbox")
            ev = threading.Event()
            box: list[T] = []
            entry = (ev, box)
            self._waiters.append(entry)
        if ev.wait(timeout_s):
            return box[0]
        with self._lock:
            if box:  # handed over just as we gave up
                return box[0]
            self._waiters.remove(entry)
        raise QueueTimeout(f"no sandbox free within {timeout_s} s")

    def release(self, item: T) -> None:
        with self._lock:
            if self._waiters:
                ev, box = self._waiters.popleft()
                box.append(item)
                ev.set()
            else:
                self._free.append(item)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def drain(self, timeout_s: float = 5.0) -> list[T]:
        """Take every item back (for ``close``), waiting up to ``timeout_s`` for busy ones."""
        taken: list[T] = []
        end = time.monotonic() + timeout_s
        while len(taken) < self.size:
            try:
                taken.append(self.acquire(max(0.0, end - time.monotonic())))
            except (QueueTimeout, QueueFull):
                break
        return taken
