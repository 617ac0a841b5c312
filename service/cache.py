"""Verdict cache: an in-process LRU by default, Redis when ``REFEREE_REDIS_URL`` is set.

Keys hash everything that can change a verdict (verifier names and versions, references, options,
the completion). Only final verdicts are stored: never a timeout or a sandbox error. A broken Redis
degrades to a miss and is counted, it never fails a request.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, Protocol

import orjson

from service.item_task import ItemTask
from verifiers import get
from verifiers.types import Verdict

log = logging.getLogger("referee.cache")

CACHEABLE = frozenset({"ok", "wrong", "no_answer", "format_error", "invalid"})
_PREFIX = "referee:v1:"


def cache_key(task: ItemTask) -> str:
    digest = hashlib.sha256(task.completion.encode("utf-8", "surrogatepass"))
    for c in task.checks:
        digest.update(b"\x00")
        digest.update(_check_identity(c.component, c.verifier, c.config))
        digest.update(orjson.dumps(c.reference, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    return _PREFIX + digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _check_identity(component: str, verifier: str, config: Any) -> bytes:
    """What identifies a check apart from its reference; configs are frozen, so this is cached."""
    return orjson.dumps(
        [component, verifier, get(verifier).version, asdict(config)], option=orjson.OPT_SORT_KEYS
    )


def encode(verdicts: dict[str, Verdict]) -> bytes:
    return orjson.dumps({k: asdict(v) for k, v in verdicts.items()}, option=orjson.OPT_NON_STR_KEYS)


def decode(blob: bytes) -> dict[str, Verdict]:
    return {k: Verdict(**v) for k, v in orjson.loads(blob).items()}


def is_cacheable(verdicts: dict[str, Verdict]) -> bool:
    return all(v.status in CACHEABLE and "error" not in v.details for v in verdicts.values())


class VerdictCache(Protocol):
    name: str

    async def get_many(self, keys: list[str]) -> list[dict[str, Verdict] | None]: ...

    async def put_many(self, entries: dict[str, dict[str, Verdict]]) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class NoCache:
    name = "none"

    async def get_many(self, keys: list[str]) -> list[dict[str, Verdict] | None]:
        return [None] * len(keys)

    async def put_many(self, entries: dict[str, dict[str, Verdict]]) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class MemoryCache:
    """LRU of encoded verdicts (bytes, so a cached object can never be mutated by a caller)."""

    name = "memory"

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, bytes] = OrderedDict()

    async def get_many(self, keys: list[str]) -> list[dict[str, Verdict] | None]:
        out: list[dict[str, Verdict] | None] = []
        for key in keys:
            blob = self._data.get(key)
            if blob is None:
                out.append(None)
            else:
                self._data.move_to_end(key)
                out.append(decode(blob))
        return out

    async def put_many(self, entries: dict[str, dict[str, Verdict]]) -> None:
        for key, verdicts in entries.items():
            self._data[key] = encode(verdicts)
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class RedisCache:
    name = "redis"

    def __init__(self, url: str, ttl_s: int) -> None:
        import redis.asyncio as aioredis

        self.ttl_s = ttl_s
        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.errors = 0

    async def get_many(self, keys: list[str]) -> list[dict[str, Verdict] | None]:
        if not keys:
            return []
        try:
            blobs = await self._redis.mget(keys)
        except Exception as e:  # noqa: BLE001 - the cache is an optimisation, never a failure
            self.errors += 1
            log.warning("redis cache read failed: %s", e)
            return [None] * len(keys)
        return [decode(b.encode() if isinstance(b, str) else b) if b is not None else None for b in blobs]

    async def put_many(self, entries: dict[str, dict[str, Verdict]]) -> None:
        if not entries:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, verdicts in entries.items():
                    pipe.set(key, encode(verdicts), ex=self.ttl_s)
                await pipe.execute()
        except Exception as e:  # noqa: BLE001
            self.errors += 1
            log.warning("redis cache write failed: %s", e)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:  # noqa: BLE001
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def make_cache(redis_url: str | None, size: int, ttl_s: int) -> VerdictCache:
    if redis_url:
        return RedisCache(redis_url, ttl_s)
    if size > 0:
        return MemoryCache(size)
    return NoCache()
