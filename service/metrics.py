"""Prometheus metrics, one registry per app (so tests may build many apps in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "referee_requests", "HTTP requests by route and status code", ["route", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "referee_request_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.items = Counter(
            "referee_items", "Scored items by verifier and status", ["verifier", "status"], registry=r
        )
        self.item_seconds = Histogram(
            "referee_item_seconds",
            "Per-item scoring latency",
            ["verifier"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter("referee_cache", "Cache look-ups by result (hit, miss)", ["result"], registry=r)
        self.rejected = Counter(
            "referee_rejected_requests", "Requests refused (429) by backpressure", registry=r
        )
        self.worker_restarts = Gauge(
            "referee_pool_worker_restarts", "Pool workers killed and replaced", registry=r
        )
        self.queue_depth = Gauge("referee_pool_queue_depth", "Items waiting for a pool worker", registry=r)
        self.busy_workers = Gauge("referee_pool_busy_workers", "Pool workers running an item", registry=r)
        self.shm_buffers = Gauge(
            "referee_grpo_shm_buffers",
            "Trainers' shared-memory buffers registered for /grpo/loss",
            registry=r,
        )
        self.shm_mapped_bytes = Gauge(
            "referee_grpo_shm_mapped_bytes", "Bytes of those buffers mapped by the service", registry=r
        )

        self.socket_calls = Counter(
            "referee_grpo_socket_calls",
            "GRPO loss calls on the shared-memory socket (no HTTP) by status code",
            ["code"],
            registry=r,
        )
        self.socket_call_seconds = Histogram(
            "referee_grpo_socket_call_seconds",
            "Latency of those calls in the service",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def bind_pool(
        self, depth: Callable[[], float], busy: Callable[[], float], restarts: Callable[[], float]
    ) -> None:
        self.queue_depth.set_function(depth)
        self.busy_workers.set_function(busy)
        self.worker_restarts.set_function(restarts)

    def bind_shm(self, buffers: Callable[[], float], mapped_bytes: Callable[[], float]) -> None:
        self.shm_buffers.set_function(buffers)
        self.shm_mapped_bytes.set_function(mapped_bytes)

    def render(self) -> bytes:
        return generate_latest(self.registry)
