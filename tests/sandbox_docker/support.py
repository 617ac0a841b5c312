"""What the docker suite's fixtures and tests share: the image under test and the planted secret."""

from __future__ import annotations

import os
import shutil
import subprocess

from sandbox.docker import DEFAULT_IMAGE

IMAGE = os.environ.get("REFEREE_SANDBOX_IMAGE", DEFAULT_IMAGE)
# Planted in this process before the runner starts: no program may ever see it.
SECRET = "referee-test-secret-9f2c1e"


def docker_unavailable() -> str | None:
    """Why the suite cannot run here, or None."""
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
