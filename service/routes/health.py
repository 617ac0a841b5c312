"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers (touches nothing)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: verifiers loaded and pool workers up")
async def readyz(request: Request) -> JSONResponse:
    state = await request.app.state.scorer.ready()
    ready = state["pool_workers"] > 0 and bool(state["verifiers"]) and state["cache_ok"]
    # informative only (the torch path always works): is the fused CPU GRPO kernel in use?
    return JSONResponse(
        {"ready": ready, **state, "grpo_cpu_loss": _grpo_cpu_loss()}, status_code=200 if ready else 503
    )


def _grpo_cpu_loss() -> str:
    try:
        from service.grpo import fused_cpu
    except ImportError:  # no torch: the GRPO routes answer 501
        return "unavailable"
    return fused_cpu.status()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
