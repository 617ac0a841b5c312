from __future__ import annotations

import os

import pytest

from tests.verifiers.code.local_runner import SubprocessTestRunner, real_sandbox_runner


@pytest.fixture(scope="session")
def runner():
    real = real_sandbox_runner()
    if real is None and os.environ.get("REFEREE_REQUIRE_BWRAP") == "1":
        pytest.fail("REFEREE_REQUIRE_BWRAP=1 but the bwrap sandbox cannot run here")
    r = real if real is not None else SubprocessTestRunner()
    yield r
    r.close()


@pytest.fixture(scope="session")
def is_real_sandbox(runner) -> bool:
    return not isinstance(runner, SubprocessTestRunner)
