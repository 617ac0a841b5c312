"""Helpers of the sandbox suite: the planted secret, fast limits, host-state probes."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import pytest

from sandbox.bwrap import BwrapRunner
from sandbox.types import Limits

# A secret in the server's environment: no program may ever see it.
SECRET = "referee-secret-" + uuid.uuid4().hex
os.environ["REFEREE_SECRET"] = SECRET

HAVE_BWRAP = shutil.which("bwrap") is not None
needs_bwrap = pytest.mark.skipif(
    not HAVE_BWRAP and os.environ.get("REFEREE_REQUIRE_BWRAP") != "1",
    reason="bubblewrap not installed (apt-get install -y bubblewrap)",
)

# for programs expected to run into the wall-time limit
SHORT = Limits(wall_time_s=0.6, cpu_time_s=1.0, memory_mb=256, max_processes=16, max_output_bytes=64 << 10)
FAST = Limits(wall_time_s=1.5, cpu_time_s=1.0, memory_mb=256, max_processes=16, max_output_bytes=64 << 10)


def marker() -> str:
    return "refmark" + uuid.uuid4().hex[:12]


def processes_with(text: str) -> list[int]:
    """Host pids whose command line contains ``text``."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(p))
        except OSError:
            continue
    return found


def processes_of_uids(uids: range) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid in uids:
                    found.append(int(p))
            except OSError:
                continue
    return found


def sandbox_pids(r: BwrapRunner) -> set[int]:
    """The processes our warm sandboxes are allowed to have: outer bwrap and the fork server."""
    pids: set[int] = set()
    for slot in r._slots:
        sb = slot.sandbox
        if sb is not None and sb.alive():
            pids.add(sb.proc.pid)
            if sb.init_host_pid is not None:
                pids.add(sb.init_host_pid)
    return pids


def _describe(pids: list[int]) -> list[str]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                out.append(f.read()[:80])
        except OSError:
            out.append(f"{p} gone")
    return out


def host_files_with(text: str) -> list[str]:
    hits = []
    for top in ("/tmp", "/dev/shm", "/var/tmp"):
        try:
            hits += [os.path.join(top, n) for n in os.listdir(top) if text in n]
        except OSError:
            pass
    return hits


def assert_host_clean(r: BwrapRunner, mark: str, settle_s: float = 3.0) -> None:
    """Nothing of the run is left on the host: no process (by marker or by sandbox uid), no file."""
    end = time.monotonic() + settle_s
    while True:
        # wait for any replacement sandbox to be up, so its processes are known
        for slot in r._slots:
            slot.get()
        stray_marked = processes_with(mark)
        stray = []
        if r._root:
            assert r.uid_base is not None
            uids = range(r.uid_base, r.uid_base + r.workers)
            stray = [p for p in processes_of_uids(uids) if p not in sandbox_pids(r)]
        if not stray_marked and not stray:
            break
        if time.monotonic() > end:
            raise AssertionError(
                f"leftover processes: marked={stray_marked} sandbox-uid={_describe(stray)} "
                f"known={sandbox_pids(r)}"
            )
        time.sleep(0.05)
    assert host_files_with(mark) == []
    assert os.environ["REFEREE_SECRET"] == SECRET
