"""``POST /score`` and ``GET /verifiers``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import typing

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

import verifiers
from service.routes.strict_json import StrictJSONRoute
from service.schemas import ErrorResponse, ScoreRequest, ScoreResponse, VerifierInfo
from service.scoring import BackpressureError, Scorer

router = APIRouter(tags=["score"], route_class=StrictJSONRoute)

_DISCONNECT_POLL_S = 0.25


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score a batch of completions",
    description=(
        "Each item gets a reward, a status and its components; the response has the same length and order "
        "as the request. One bad item never fails the batch: it gets `status: invalid` with a message."
    ),
    responses={
        413: {"model": ErrorResponse, "description": "Body or item count over the configured limits."},
        422: {
            "model": ErrorResponse,
            "description": "Malformed JSON, wrong types, NaN: the message names the field.",
        },
        429: {
            "model": ErrorResponse,
            "description": "The verifier queue is full; retry after `Retry-After` s.",
        },
    },
)
async def score(body: ScoreRequest, request: Request) -> Response:
    scorer: Scorer = request.app.state.scorer
    limit = scorer.settings.max_items
    if len(body.items) > limit:
        raise HTTPException(
            413, f"items: {len(body.items)} items exceed the limit of {limit} (REFEREE_MAX_ITEMS)"
        )
    work = asyncio.ensure_future(scorer.score(body))
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, work))
    try:
        # Serialised by pydantic-core directly: FastAPI's re-validation of the response model
        # costs as much as scoring a cached batch.
        return Response((await work).model_dump_json(), media_type="application/json")
    except BackpressureError as e:
        return JSONResponse(
            {"detail": str(e)}, status_code=429, headers={"Retry-After": str(e.retry_after_s)}
        )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _cancel_on_disconnect(request: Request, work: asyncio.Future[ScoreResponse]) -> None:
    """A caller that hung up gets its queued items dropped instead of burning workers."""
    while not work.done():
        if await request.is_disconnected():
            work.cancel()
            return
        await asyncio.sleep(_DISCONNECT_POLL_S)


@router.get(
    "/verifiers", response_model=list[VerifierInfo], summary="The registered verifiers and their options"
)
async def list_verifiers() -> list[VerifierInfo]:
    out = []
    for spec in verifiers.specs():
        hints = typing.get_type_hints(spec.config_type)
        options = {
            f.name: f"{_type_name(hints[f.name])} = {f.default!r}"
            for f in dataclasses.fields(spec.config_type)
        }
        out.append(
            VerifierInfo(
                name=spec.name,
                component=spec.component,
                version=spec.version,
                runs_in=spec.runs_in,
                description=spec.description,
                options=options,
            )
        )
    return out


def _type_name(hint: object) -> str:
    return str(hint).replace("typing.", "")
