"""A small stand-in for the Referee ``/score`` route (OUR wire format) next to the real compat and
GRPO routers, for testing the trainer-side code before/without the full service.

Scoring follows the toy task's rules (``trainer.toy.toy_judgement``): accuracy = exact match of
the last ``<answer>`` block, format = strict R1-Zero template, or with ``options.format.tag_count``
open-r1's partial credit capped at 0.75 (the rules of the service's ``format`` verifier). It also records every request it saw, and can be told to fail
the next N requests with a given status, to test the client's retry policy.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request, Response

from service.routes.compat import router as compat_router
from service.routes.grpo import router as grpo_router
from trainer.toy import toy_judgement

WEIGHTS = {"accuracy": 1.0, "format": 0.1, "language": 0.0}


def score_item(item: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    completion = item["completion"]
    answer = item.get("answer")
    fmt_opts = (item.get("options") or {}).get("format", {})
    j = toy_judgement(
        completion, str(answer) if answer is not None else "", bool(fmt_opts.get("think_in_prompt"))
    )
    tag_count = bool(fmt_opts.get("tag_count"))
    comps: dict[str, float | None] = {
        "accuracy": j["accuracy"] if answer is not None else None,
        "format": j["format"] if tag_count else j["strict"],
        "language": None,
    }
    if "tests" in item:
        comps["accuracy"] = 1.0 if "```" in completion else 0.0
    reward = sum(weights.get(k, 0.0) * (v or 0.0) for k, v in comps.items())
    if answer is None and "tests" not in item:
        status = "ok" if comps["format"] else "format_error"
    else:
        status = "ok" if comps["accuracy"] == 1.0 else "wrong"
    return {
        "id": item["id"],
        "reward": reward,
        "status": status,
        "components": comps,
        "extracted": None,
        "details": {},
        "elapsed_ms": 0.1,
    }


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.seen = []  # (path, headers, body-json-or-None)
    app.state.fail = []  # statuses to answer the next requests with
    app.include_router(compat_router)
    app.include_router(grpo_router)  # the real GRPO routes

    @app.middleware("http")
    async def record_and_fail(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/_"):
            return await call_next(request)
        app.state.seen.append((request.url.path, dict(request.headers)))
        if app.state.fail:
            status = app.state.fail.pop(0)
            headers = {"Retry-After": "0"} if status == 429 else {}
            return Response(status_code=status, headers=headers, content=b'{"detail":"busy"}')
        return await call_next(request)

    @app.post("/score")
    async def score(body: dict[str, Any]) -> dict[str, Any]:
        weights = {**WEIGHTS, **(body.get("weights") or {})}
        return {"results": [score_item(it, weights) for it in body["items"]]}

    @app.get("/_ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeReferee:
    """Runs ``app`` (default ``make_app()``) with uvicorn on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: FastAPI | None = None, *, keep_alive_s: float = 5) -> None:
        self.app = app if app is not None else make_app()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="error",
                timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeReferee:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("fake referee did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


__all__ = ["FakeReferee", "make_app", "score_item", "torch"]
