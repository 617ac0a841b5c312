"""Verdict caches: in-memory LRU and a real redis-server, plus the service using Redis end to end."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

import referee_test_plugins
from service.cache import MemoryCache, RedisCache, cache_key, is_cacheable
from service.item_task import Check, ItemTask
from service.main import create_app
from tests.service.conftest import make_settings
from verifiers.types import Verdict


def task(completion: str, reference: str = "r", case_sensitive: bool = True) -> ItemTask:
    config = referee_test_plugins.EchoConfig(case_sensitive=case_sensitive)
    return ItemTask(completion, (Check("accuracy", "test_echo", reference, config),))


def test_key_changes_with_everything_that_can_change_a_verdict() -> None:
    base = cache_key(task("a"))
    assert cache_key(task("a")) == base
    assert cache_key(task("b")) != base  # completion
    assert cache_key(task("a", reference="s")) != base  # reference
    assert cache_key(task("a", case_sensitive=False)) != base  # options


def test_timeouts_and_errors_are_never_cached() -> None:
    assert is_cacheable({"accuracy": Verdict("ok", 1.0)})
    assert not is_cacheable({"accuracy": Verdict("timeout", None)})
    assert not is_cacheable({"accuracy": Verdict("sandbox_error", None)})
    assert not is_cacheable({"accuracy": Verdict("invalid", None, details={"error": "worker died"})})


def test_memory_cache_is_an_lru() -> None:
    async def scenario() -> None:
        cache = MemoryCache(2)
        v = {"accuracy": Verdict("ok", 1.0, "x", {"rule": "exact"})}
        await cache.put_many({"a": v, "b": v})
        assert (await cache.get_many(["a"]))[0] == v  # touch a: b is now the oldest
        await cache.put_many({"c": v})
        assert await cache.get_many(["a", "b", "c"]) == [v, None, v]

    asyncio.run(scenario())


def test_redis_cache_round_trip(redis_url: str) -> None:
    async def scenario() -> None:
        cache = RedisCache(redis_url, ttl_s=60)
        v = {"accuracy": Verdict("wrong", 0.0, "41", {"rule": "exact"}), "format": Verdict("ok", 1.0)}
        await cache.put_many({"k1": v})
        assert await cache.get_many(["k1", "k2"]) == [v, None]
        assert await cache.ping()
        await cache.close()

    asyncio.run(scenario())


def test_redis_down_is_a_miss_not_a_failure() -> None:
    async def scenario() -> None:
        cache = RedisCache("redis://127.0.0.1:1/0", ttl_s=60)
        assert await cache.get_many(["k"]) == [None]
        await cache.put_many({"k": {"accuracy": Verdict("ok", 1.0)}})
        assert cache.errors == 2
        assert not await cache.ping()

    asyncio.run(scenario())


def test_service_shares_verdicts_through_redis(redis_url: str) -> None:
    body = {"items": [{"id": 1, "completion": "shared", "verifier": "test_echo", "reference": "shared"}]}
    with TestClient(create_app(make_settings(redis_url=redis_url, pool_size=1))) as first:
        assert first.post("/score", json=body).json()["results"][0]["cached"] is False
        assert first.get("/readyz").json()["cache"] == "redis"
    # A second replica (a new app, empty memory) gets the verdict from Redis.
    with TestClient(create_app(make_settings(redis_url=redis_url, pool_size=1))) as second:
        result = second.post("/score", json=body).json()["results"][0]
        assert result["cached"] is True and result["status"] == "ok"


@pytest.mark.parametrize("size", [0])
def test_cache_can_be_disabled(size: int) -> None:
    body = {"items": [{"id": 1, "completion": "n", "verifier": "test_echo", "reference": "n"}]}
    with TestClient(create_app(make_settings(cache_size=size, pool_size=1))) as c:
        c.post("/score", json=body)
        assert c.post("/score", json=body).json()["results"][0]["cached"] is False
