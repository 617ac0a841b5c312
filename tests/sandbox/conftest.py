"""Fixtures for the sandbox suite: one shared bwrap runner, and a one-sandbox runner."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.bwrap import BwrapRunner
from tests.sandbox.helpers import HAVE_BWRAP


@pytest.fixture(scope="session")
def runner() -> Iterator[BwrapRunner]:
    if not HAVE_BWRAP and os.environ.get("REFEREE_REQUIRE_BWRAP") != "1":
        pytest.skip("bubblewrap not installed")
    r = BwrapRunner(workers=2)
    yield r
    r.close()


@pytest.fixture()
def solo() -> Iterator[BwrapRunner]:
    """A one-sandbox runner, so consecutive runs are sure to land in the same warm sandbox."""
    if not HAVE_BWRAP and os.environ.get("REFEREE_REQUIRE_BWRAP") != "1":
        pytest.skip("bubblewrap not installed")
    r = BwrapRunner(workers=1)
    yield r
    r.close()
