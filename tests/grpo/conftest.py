"""Fixtures shared by the GRPO tests."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.routes.grpo import router


@pytest.fixture(scope="module")
def client():
    """The GRPO routes alone, in process (the full app and its pool are not needed for them)."""
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as c:
        yield c
