"""The FastAPI application: ``create_app()`` builds it, the lifespan owns the pools."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from service.config import Settings, get_settings
from service.malloc_tuning import keep_freed_memory
from service.metrics import Metrics
from service.middleware import BearerAuth, BodySizeLimit, RequestMetrics
from service.routes import compat, health, run_code, score
from service.routes.docs import install_docs
from service.scoring import Scorer

if TYPE_CHECKING:
    from service.grpo.shm import ShmListener

log = logging.getLogger("referee")

DESCRIPTION = """
Rule-based rewards for RL of reasoning models (GRPO, DeepSeek-R1 style), as a service.

* `POST /score`: accuracy (math equivalence, code run in a sandbox), format (`<think>…</think><answer>…</answer>`)
  and language-consistency rewards for a batch of completions, each with a `status`.
* `POST /grpo/advantages`, `POST /grpo/loss`: group-relative advantages and the GRPO/PPO loss with d loss / d
  log-prob per token (JSON, or `application/vnd.safetensors` bodies for large tensors), verl and TRL flavours.
* Health: `GET /healthz` (liveness), `GET /readyz` (readiness), `GET /metrics` (Prometheus).

When `REFEREE_API_TOKEN` is set, every route but the health checks needs `Authorization: Bearer <token>`.
"""


def grpo_router() -> APIRouter:
    """The GRPO routes, or, where torch is not installed, routes that say how to get them."""
    try:
        from service.grpo import fused_cpu
        from service.routes.grpo import router

        # large tensor bodies and gradients on every call: keep their memory mapped (in every worker process)
        keep_freed_memory()
        # build (or load from the cache) the fused CPU kernel now, not inside the first /grpo/loss call
        threading.Thread(target=fused_cpu.library, name="grpo-kernel-build", daemon=True).start()
    except ImportError as e:
        missing = str(e)
        router = APIRouter(tags=["grpo"])

        @router.post("/grpo/advantages", include_in_schema=False)
        @router.post("/grpo/loss", include_in_schema=False)
        async def grpo_unavailable() -> JSONResponse:
            return JSONResponse(
                {"detail": f"the GRPO engine needs torch: pip install 'referee[grpo]' ({missing})"},
                status_code=501,
            )

    return router


def open_shm_channel(
    settings: Settings, app_state: Any = None, metrics: Metrics | None = None
) -> ShmListener | None:
    """The GRPO shared-memory registration socket, listening, when `REFEREE_GRPO_SHM_SOCKET` is set; with
    `app_state` it also answers loss calls (routes/grpo.socket_loss, on that app's registry and batcher)."""
    if not settings.grpo_shm_socket:
        return None
    if settings.workers > 1:
        # a registration lives in one worker process; requests would land on the others
        raise RuntimeError(
            "REFEREE_GRPO_SHM_SOCKET needs REFEREE_WORKERS=1 (a buffer is mapped by one process)"
        )
    try:
        from service.grpo.shm import ShmListener, ShmRegistry  # torch: only when the channel is asked for
        from service.routes.grpo import socket_loss
    except ImportError as e:  # the GRPO routes answer 501 with the install hint; the rest of the service runs
        log.warning(
            "REFEREE_GRPO_SHM_SOCKET is set but the GRPO engine is not installed (%s): channel off", e
        )
        return None
    token = settings.api_token.get_secret_value() if settings.api_token else None

    def on_loss(message: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        reply = socket_loss(app_state, token, message)
        if metrics is not None:
            metrics.socket_calls.labels(str(reply.get("status", 200))).inc()
            metrics.socket_call_seconds.observe(time.perf_counter() - started)
        return reply

    listener = ShmListener(
        settings.grpo_shm_socket,
        ShmRegistry(settings.grpo_shm_max_bytes),
        on_loss=on_loss if app_state is not None else None,
    )
    listener.start()
    return listener


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # first: a bad socket path fails the start before any pool exists
        shm = open_shm_channel(settings, app.state, metrics)
        app.state.grpo_shm = shm.registry if shm is not None else None
        if shm is not None:
            registry = shm.registry
            metrics.bind_shm(lambda: len(registry), lambda: registry.mapped_bytes)
        try:
            scorer = await Scorer.open(settings, metrics)
        except BaseException:
            if shm is not None:
                shm.close()
            raise
        app.state.scorer = scorer
        app.state.sandbox = scorer.sandbox
        try:
            yield
        finally:
            if shm is not None:
                shm.close()
            batcher = getattr(app.state, "grpo_batcher", None)
            if batcher is not None:
                batcher.close()
            await scorer.close()

    app = FastAPI(
        title="Referee",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "score", "description": "Rewards for completions."},
            {"name": "sandbox", "description": "SandboxFusion-compatible code execution (`/run_code`)."},
            {
                "name": "grpo",
                "description": "GRPO advantages, and the clipped-surrogate loss with its gradient.",
            },
            {
                "name": "compat",
                "description": "Peers' wire formats: OpenRLHF `/get_reward`, slime `/slime/reward`.",
            },
            {"name": "health", "description": "Probes and metrics."},
        ],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(health.router)
    app.include_router(score.router)
    app.include_router(grpo_router())
    app.include_router(run_code.router)
    app.include_router(compat.router)
    install_docs(app)
    # Outermost first: metrics see every answer, auth runs before the body is read.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BearerAuth, token=settings.api_token.get_secret_value() if settings.api_token else None
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
