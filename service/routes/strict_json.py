"""A route class whose JSON bodies are parsed strictly: NaN/Infinity and invalid UTF-8 are 4xx.

Python's ``json`` accepts ``NaN`` and decodes lone surrogates; a reward service must refuse both
with a message, so request bodies go through orjson (RFC 8259 strict). FastAPI turns the
``JSONDecodeError`` it raises into a 422 naming the position. Routes that read a body themselves parse it
with `strict_loads` and answer pydantic's errors with `unprocessable`, as FastAPI would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def unprocessable(e: ValidationError) -> HTTPException:
    """A 422 carrying pydantic's list of errors, as FastAPI's own validation answers."""
    return HTTPException(422, json.loads(e.json(include_url=False)))


def strict_loads(raw: bytes | str, what: str = "body") -> Any:
    """`raw` parsed as strict JSON, or a 422 saying why it is not."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise HTTPException(
            422, f"{what}: not strict JSON (no NaN, Infinity or invalid UTF-8): {e}"
        ) from None
