"""Service settings, read from ``REFEREE_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SandboxBackend = Literal["bwrap", "docker", "unsafe-local", "redis", "none"]


class Settings(BaseSettings):
    """Every knob of the service. Each field is ``REFEREE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="REFEREE_", env_ignore_empty=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Address `referee serve` binds to (loopback by default).")
    port: int = Field(8000, description="Port `referee serve` listens on.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each has its own pools).")
    api_token: SecretStr | None = Field(
        None,
        description="If set, every route but /healthz and /readyz needs `Authorization: Bearer <token>`.",
    )

    pool_size: int = Field(0, ge=0, description="Verifier worker processes; 0 = one per CPU core.")
    item_timeout_s: float = Field(
        10.0, gt=0, description="Hard limit per item; the worker is killed on overrun."
    )
    worker_memory_mb: int = Field(
        2048, ge=0, description="Address-space limit of a verifier worker; 0 = none."
    )
    max_queue: int = Field(
        16384, ge=1, description="Items that may wait for a worker before /score answers 429."
    )

    max_body_bytes: int = Field(64 << 20, ge=1024, description="Largest request body accepted (413 above).")
    max_items: int = Field(4096, ge=1, description="Most items in one /score request (413 above).")
    max_completion_chars: int = Field(
        200_000,
        ge=1,
        description="Longer completions get `status: invalid` (the rest of the batch is scored).",
    )

    cache_size: int = Field(65536, ge=0, description="In-memory LRU entries; 0 disables the cache.")
    redis_url: str | None = Field(
        None, description="Use Redis as the shared cache, e.g. redis://127.0.0.1:6379/0."
    )
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="Time to live of Redis cache entries.")

    sandbox_backend: SandboxBackend = Field(
        "bwrap",
        description=(
            "Where code runs: bwrap, docker, unsafe-local (development only), redis (remote sandbox workers "
            "reading a Redis stream at REFEREE_REDIS_URL) or none."
        ),
    )
    sandbox_workers: int = Field(0, ge=0, description="Concurrent sandboxed programs; 0 = one per CPU core.")

    grpo_shm_socket: str | None = Field(
        None,
        description=(
            "Unix socket path of the shared-memory channel for /grpo/loss (trainers on the same host register a "
            "sealed memfd there; docs/grpo.md). Unset: the channel is off. Needs workers=1."
        ),
    )
    grpo_shm_max_bytes: int = Field(
        4 << 30,
        ge=0,
        description="Most bytes of shared-memory buffers mapped at once (registrations above: refused).",
    )

    plugins: list[str] = Field(
        default_factory=list,
        description="Extra Python modules that register verifiers, imported by the API and every worker.",
    )

    default_accuracy_weight: float = Field(1.0, description="Weight of `accuracy` when a request names none.")
    default_format_weight: float = Field(0.1, description="Weight of `format` when a request names none.")
    default_language_weight: float = Field(
        0.2, description="Weight of `language` when a target language is known and the request names none."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
