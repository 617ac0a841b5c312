"""Compat routes in the peers' own wire formats: OpenRLHF's remote RM and slime's remote_rm.

* ``POST /get_reward`` (OpenRLHF ``--remote_rm_url`` / ``--reward.remote_url``):
  ``{"query": [...], "prompts": [...], "labels": [...]}`` → ``{"rewards", "scores", "extra_logs"}``.
* ``POST /slime/reward`` (slime ``--rm-type remote_rm --rm-url``):
  ``{"prompt", "response", "label"}`` → a bare number, or ``{"score", ...}`` with ``?format=dict``.

The translations request → ``/score`` items and results → peer response are pure functions below;
the routes hand the items to the app's ``Scorer`` (``request.app.state.scorer``, the code path of
``POST /score``) so that scoring, caching, limits and metrics are those of the native route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from service.routes.strict_json import unprocessable

router = APIRouter(tags=["compat"])

# Chat-template and end-of-sequence markers that OpenRLHF leaves in ``query`` (decoded with
# skip_special_tokens=False); they are not part of what the model "wrote".
CHAT_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<｜end▁of▁sentence｜>",
    "<|end|>",
    "</s>",
    "<eos>",
    "<end_of_turn>",
)


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward-model request: three lists of the same length."""

    query: list[str] = Field(description="prompt + response, special tokens kept")
    prompts: list[str] = Field(default_factory=list, description="the prompts after the chat template")
    labels: list[Any] | None = Field(default=None, description="the --label_key column; entries may be null")


class SlimeRequest(BaseModel):
    """slime's remote_rm request (one sample)."""

    prompt: str | list[dict[str, Any]] | None = None
    response: str
    label: Any = None


def strip_special_tokens(text: str) -> str:
    """Remove chat special tokens and trailing whitespace they leave behind."""
    for tok in CHAT_SPECIAL_TOKENS:
        text = text.replace(tok, "")
    return text.strip()


def response_from_query(query: str, prompt: str | None) -> str:
    """The model's response: ``query[len(prompt):]`` when the prompt is a prefix, else the whole query."""
    if prompt and query.startswith(prompt):
        query = query[len(prompt) :]
    return strip_special_tokens(query)


def _label_fields(label: Any) -> dict[str, Any]:
    """A label is a math answer, or code tests (a dict or its JSON string)."""
    if label is None:
        return {}
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            return {"answer": label}
    if isinstance(label, Mapping):
        if any(k in label for k in ("inputs", "cases", "assert", "fn_name")):
            return {"tests": dict(label)}
        if "answer" in label:
            return {"answer": str(label["answer"])}
    return {"answer": str(label)}


def _format_only_if_unlabelled(item: dict[str, Any]) -> dict[str, Any]:
    # Without a label there is no answer to check: score the format (and language) only.
    if "answer" not in item and "tests" not in item:
        item["verifier"] = "format"
    return item


def openrlhf_items(req: OpenRLHFRequest) -> list[dict[str, Any]]:
    """OpenRLHF request → ``/score`` items (one per query)."""
    n = len(req.query)
    if req.prompts and len(req.prompts) != n:
        raise ValueError(f"'prompts' has {len(req.prompts)} entries for {n} queries")
    if req.labels is not None and len(req.labels) != n:
        raise ValueError(f"'labels' has {len(req.labels)} entries for {n} queries")
    items = []
    for i, query in enumerate(req.query):
        prompt = req.prompts[i] if req.prompts else None
        item: dict[str, Any] = {"id": str(i), "completion": response_from_query(query, prompt)}
        if prompt:
            item["prompt"] = strip_special_tokens(prompt)
        item.update(_label_fields(req.labels[i] if req.labels is not None else None))
        items.append(_format_only_if_unlabelled(item))
    return items


def _unit(x: Any) -> float:
    return min(1.0, max(0.0, float(x or 0.0)))


def openrlhf_response(results: Sequence[Mapping[str, Any]], extra_logs: bool = True) -> dict[str, Any]:
    """``/score`` results → ``{"rewards", "scores", "extra_logs"}``.

    ``scores`` (used by OpenRLHF's dynamic filtering, default range (0, 1)) is the accuracy in 0..1
    where there is one, else the reward clipped to 0..1.
    """
    rewards = [float(r.get("reward") or 0.0) for r in results]
    scores = []
    logs: dict[str, list[float]] = {"accuracy": [], "format": [], "timeout": []}
    for r in results:
        comps = r.get("components") or {}
        acc = comps.get("accuracy")
        scores.append(_unit(acc) if acc is not None else _unit(r.get("reward")))
        logs["accuracy"].append(float(acc or 0.0))
        logs["format"].append(float(comps.get("format") or 0.0))
        logs["timeout"].append(1.0 if r.get("status") == "timeout" else 0.0)
    return {"rewards": rewards, "scores": scores, "extra_logs": logs if extra_logs and results else {}}


def slime_item(req: SlimeRequest) -> dict[str, Any]:
    """slime request → one ``/score`` item."""
    item: dict[str, Any] = {"id": "0", "completion": req.response}
    prompt = req.prompt
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if m.get("role") == "user"]
        prompt = str(users[-1]) if users else None
    if prompt:
        item["prompt"] = prompt
    item.update(_label_fields(req.label))
    return _format_only_if_unlabelled(item)


def slime_response(result: Mapping[str, Any], as_dict: bool) -> float | dict[str, Any]:
    """A ``/score`` result → a bare number (slime's default) or a dict with ``score``."""
    reward = float(result.get("reward") or 0.0)
    if not as_dict:
        return reward
    comps = result.get("components") or {}
    return {
        "score": reward,
        "accuracy": comps.get("accuracy"),
        "format": comps.get("format"),
        "status": result.get("status"),
        "extracted": result.get("extracted"),
    }


async def _score(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score with the app's ``Scorer`` (the ``/score`` code path); apps without one (tests, custom
    apps) go through their own ``POST /score`` over ASGI instead.
    """
    if not items:
        return []
    scorer = getattr(request.app.state, "scorer", None)
    if scorer is not None:
        from pydantic import ValidationError

        from service.schemas import ScoreRequest
        from service.scoring import BackpressureError

        limit = scorer.settings.max_items
        if len(items) > limit:
            raise HTTPException(413, f"{len(items)} items exceed the limit of {limit} (REFEREE_MAX_ITEMS)")
        try:
            body = ScoreRequest.model_validate({"items": items})
        except ValidationError as exc:
            raise unprocessable(exc) from exc
        try:
            response = await scorer.score(body)
        except BackpressureError as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
        results = [r.model_dump() for r in response.results]
    else:
        headers = {}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        transport = httpx.ASGITransport(app=request.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referee.internal") as client:
            resp = await client.post("/score", json={"items": items}, headers=headers, timeout=None)
        if resp.status_code != 200:
            raise HTTPException(status_code=resp.status_code, detail=resp.json().get("detail", resp.text))
        results = resp.json()["results"]
    if len(results) != len(items):
        raise HTTPException(status_code=500, detail="scoring returned a result list of the wrong length")
    return results


@router.post("/get_reward", summary="OpenRLHF remote reward model")
async def get_reward(
    body: OpenRLHFRequest,
    request: Request,
    extra_logs: bool = Query(True, description="false for OpenRLHF v0.8.x, which cannot concatenate lists"),
) -> dict[str, Any]:
    """OpenRLHF's ``--remote_rm_url`` request; every list in the answer has the request's length."""
    try:
        items = openrlhf_items(body)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return openrlhf_response(await _score(request, items), extra_logs=extra_logs)


@router.post("/slime/reward", summary="slime remote_rm")
async def slime_reward(
    body: SlimeRequest,
    request: Request,
    format: str = Query("number", pattern="^(number|dict)$", description="'dict' for --reward-key score"),  # noqa: A002
) -> Any:
    """slime's ``--rm-type remote_rm`` request → a bare number (or a dict with ``score``)."""
    [result] = await _score(request, [slime_item(body)])
    return slime_response(result, as_dict=format == "dict")
