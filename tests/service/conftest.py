"""Fixtures for the service: settings, an in-process app, a real `referee serve`, a real redis-server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PLUGIN = "referee_test_plugins"
# Spawn workers inherit sys.path, so the plugin module is importable in them too.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def make_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "pool_size": 2,
        "item_timeout_s": 5.0,
        "plugins": [PLUGIN],
        "sandbox_backend": "none",
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[str]:
    """A real `referee serve` subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "REFEREE_POOL_SIZE": "2",
        "REFEREE_SANDBOX_BACKEND": "none",
        "REFEREE_PLUGINS": f'["{PLUGIN}"]',
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--log-level", "warning", *args],
        cwd=ROOT,
        env=full_env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def live_server() -> Iterator[str]:
    with serve() as base:
        yield base


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A hermetic redis-server on a free port, shut down after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    subprocess.run(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ],
        check=True,
        capture_output=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            r.shutdown(nosave=True)
