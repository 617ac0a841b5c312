"""Fixtures for the docker backend's suite: a real dockerd and the locally built sandbox image.

Every test here is skipped, with the reason, when `docker info` fails or the image is missing:
`.ci/docker-setup.sh && .ci/build-images.sh base sandbox` provides both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.docker import DockerRunner
from tests.sandbox_docker.support import IMAGE, SECRET, docker_unavailable


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = docker_unavailable()
    if reason:
        if os.environ.get("REFEREE_REQUIRE_DOCKER") == "1":  # CI: a missing engine is a failure, not a skip
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def runner(docker_ready: None) -> Iterator[DockerRunner]:
    os.environ["REFEREE_API_TOKEN"] = SECRET
    try:
        with DockerRunner(IMAGE, pool_size=2) as r:
            yield r
    finally:
        os.environ.pop("REFEREE_API_TOKEN", None)
