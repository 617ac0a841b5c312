"""Fixtures for the docker backend's suite: a real dockerd and the locally built sandbox image.

Every test here is skipped, with the reason, when `docker info` fails or the image is missing:
`.ci/docker-setup.sh && .ci/build-images.sh base sandbox` provides both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from sandbox.docker import DEFAULT_IMAGE

IMAGE = os.environ.get("REFEREE_SANDBOX_IMAGE", DEFAULT_IMAGE)
# Planted in this process before the runner starts: no program may ever see it.
SECRET = "referee-test-secret-9f2c1e"


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH (run .ci/docker-setup.sh)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "`docker info` failed: dockerd is not running (run .ci/docker-setup.sh)"
    image = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30, check=False
    )
    if image.returncode != 0:
        return f"sandbox image {IMAGE} is missing (run .ci/build-images.sh base sandbox)"
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def runner(docker_ready: None) -> Iterator[object]:
    from sandbox.docker import DockerRunner

    os.environ["REFEREE_API_TOKEN"] = SECRET
    try:
        with DockerRunner(IMAGE, pool_size=2) as r:
            yield r
    finally:
        os.environ.pop("REFEREE_API_TOKEN", None)
