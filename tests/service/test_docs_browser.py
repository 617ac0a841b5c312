"""GET /docs renders in a real headless Chromium (Swagger UI served locally, no CDN)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=8000",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_docs_page_renders_the_api(live_server: str, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{live_server}/docs").stdout
    # These strings exist only after Swagger UI's JavaScript fetched /openapi.json and rendered it.
    assert "Score a batch of completions" in dom
    assert "ScoreRequest" in dom
    shot = tmp_path / "docs.png"
    _chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", f"{live_server}/docs")
    assert shot.exists() and shot.stat().st_size > 20_000
    out = Path(__file__).resolve().parents[2] / "build"
    out.mkdir(exist_ok=True)
    shutil.copy(shot, out / "docs.png")
