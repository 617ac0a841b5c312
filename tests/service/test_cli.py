"""`referee score` / `referee filter` score JSONL files offline through the same code path as /score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import HERE, PLUGIN, ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REFEREE_POOL_SIZE": "1",
        "REFEREE_SANDBOX_BACKEND": "none",
        "REFEREE_PLUGINS": json.dumps([PLUGIN]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_jsonl(path: Path, rows: list[object]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")


def test_score_file(tmp_path: Path) -> None:
    rows = [
        {"id": i, "completion": str(i % 3), "verifier": "test_echo", "reference": "0", "extra": "kept out"}
        for i in range(9)
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    done = run_cli(
        "score", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--batch-size", "4"
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 10  # one result per input line, the bad line included
    assert [r["status"] for r in out[:9]] == ["ok", "wrong", "wrong"] * 3
    assert out[9]["status"] == "invalid" and "line 10" in out[9]["details"]["error"]
    assert "items/s" in done.stderr  # progress bar
    assert "test_echo" in done.stderr and "mean reward" in done.stderr  # summary table


def test_filter_keeps_passing_rows(tmp_path: Path) -> None:
    rows = [{"id": i, "completion": str(i % 2), "verifier": "test_echo", "reference": "0"} for i in range(6)]
    write_jsonl(tmp_path / "in.jsonl", rows)
    done = run_cli(
        "filter", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "keep.jsonl"), "--min-reward", "1.0"
    )
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in (tmp_path / "keep.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == [0, 2, 4]
    assert all(r["referee"]["status"] == "ok" for r in kept)
    assert "kept 3 rows" in done.stderr


def test_serve_uses_the_httptools_parser() -> None:
    """`referee serve` runs uvicorn with httptools (pinned dependency), h11 only as the fallback."""
    from service.cli import http_implementation

    assert http_implementation() == "httptools"
