"""The FastAPI application: ``create_app()`` builds it, the lifespan owns the pools."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.config import Settings, get_settings
from service.metrics import Metrics
from service.middleware import BearerAuth, BodySizeLimit, RequestMetrics
from service.routes import health, score
from service.routes.docs import install_docs
from service.scoring import Scorer

log = logging.getLogger("referee")

DESCRIPTION = """
Rule-based rewards for RL of reasoning models (GRPO, DeepSeek-R1 style), as a service.

* `POST /score`: accuracy (math equivalence, code run in a sandbox), format (`<think>…</think><answer>…</answer>`)
  and language-consistency rewards for a batch of completions, each with a `status`.
* Health: `GET /healthz` (liveness), `GET /readyz` (readiness), `GET /metrics` (Prometheus).

When `REFEREE_API_TOKEN` is set, every route but the health checks needs `Authorization: Bearer <token>`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scorer = await Scorer.open(settings, metrics)
        app.state.scorer = scorer
        app.state.sandbox = scorer.sandbox
        try:
            yield
        finally:
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
            {"name": "health", "description": "Probes and metrics."},
        ],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(health.router)
    app.include_router(score.router)
    install_docs(app)
    # Outermost first: metrics see every answer, auth runs before the body is read.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BearerAuth, token=settings.api_token.get_secret_value() if settings.api_token else None
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
