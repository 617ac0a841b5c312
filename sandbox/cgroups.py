"""One cgroup per warm sandbox (cgroup v1 memory, pids and cpu controllers), re-limited before each run.

RLIMIT_AS bounds each process, not a run: a program with 30 processes of 500 MB each, or one that fills
its tmpfs, is only bounded by a cgroup. A slot runs one program at a time, so a cgroup per slot whose
limits the host rewrites before every run is, in effect, a cgroup per run:

- ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``: no swap) = the run's memory plus a
  fixed allowance for the fork server; the kernel's OOM killer then ends a process of the run (the
  fork server's children set ``oom_score_adj=1000`` so they go first; should it take the server, the
  host sees the OOM kill in the cgroup's counter and still reports ``memory``);
- ``pids.max`` = the run's process budget plus the sandbox's own two processes;
- ``cpu.cfs_quota_us`` = one CPU per sandbox, so threads cannot take the whole machine.

Only cgroup v1 hierarchies are handled (the hosts we run on mount the controllers there). Where the
controllers are missing or not writable (not root, cgroup v2, read-only /sys/fs/cgroup) this module
answers ``None`` and the sandbox relies on rlimits alone; ``BwrapRunner.describe()`` says which.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_ALLOWANCE = 64 << 20  # the fork server and the run's page tables, beside the run's own memory
_CONTROLLERS = ("memory", "pids", "cpu")


def _v1_dirs() -> dict[str, Path]:
    """Our own cgroup directory in each v1 hierarchy of interest, where it exists."""
    mounts: dict[str, tuple[str, str]] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, tail = pre.split(), post.split()
                if len(tail) < 3 or tail[0] != "cgroup":
                    continue
                opts = tail[2].split(",")
                for c in _CONTROLLERS:
                    if c in opts:
                        mounts[c] = (fields[4], fields[3])  # mount point, root inside the hierarchy
        own: dict[str, str] = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in ctrls.split(","):
                    own[c] = path
    except OSError:
        return {}
    dirs = {}
    for c, (mnt, root) in mounts.items():
        mine = own.get(c)
        if mine is None:
            continue
        rel = mine[len(root) :] if root != "/" and mine.startswith(root) else mine
        d = Path(mnt + rel)
        if d.is_dir():
            dirs[c] = d
    return dirs


def _write(path: Path, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@dataclass
class SlotCgroup:
    """The memory, pids (and cpu) cgroups of one sandbox slot."""

    memory: Path
    pids: Path
    cpu: Path | None

    @classmethod
    def create(cls, name: str) -> SlotCgroup | None:
        """Make the slot's cgroups (removing stale ones of that name), or ``None`` if we cannot."""
        if os.geteuid() != 0:
            return None
        dirs = _v1_dirs()
        if "memory" not in dirs or "pids" not in dirs:
            return None
        for d in dirs.values():
            _sweep_stale(d)
        made: dict[str, Path] = {}
        try:
            for c in _CONTROLLERS:
                if c not in dirs:
                    continue
                d = dirs[c] / name
                if d.exists():
                    _remove(d)
                d.mkdir()
                made[c] = d
            if "cpu" in made:
                _write(made["cpu"] / "cpu.cfs_period_us", 100_000)
                _write(made["cpu"] / "cpu.cfs_quota_us", 100_000)
            cg = cls(memory=made["memory"], pids=made["pids"], cpu=made.get("cpu"))
            cg.limit(256 << 20, 64)
            return cg
        except OSError as e:
            log.warning("per-sandbox cgroups unavailable (%s); limits are rlimits only", e)
            for d in made.values():
                _remove(d)
            return None

    def procs_files(self) -> list[str]:
        dirs = [self.memory, self.pids] + ([self.cpu] if self.cpu else [])
        return [str(d / "cgroup.procs") for d in dirs]

    def limit(self, memory_bytes: int, pids: int) -> None:
        """Set the limits for the next run (memory gets the fork server's allowance on top)."""
        new = memory_bytes + SERVER_ALLOWANCE
        lim, sw = self.memory / "memory.limit_in_bytes", self.memory / "memory.memsw.limit_in_bytes"
        if sw.exists():
            # memsw must stay >= limit at every moment: raise memsw first, lower it last.
            if new > int(sw.read_text()):
                _write(sw, new)
                _write(lim, new)
            else:
                _write(lim, new)
                _write(sw, new)
        else:
            _write(lim, new)
        _write(self.pids / "pids.max", pids)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has ended in this cgroup so far."""
        try:
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
            return int((self.memory / "memory.failcnt").read_text())
        except (OSError, ValueError):
            return 0

    def remove(self) -> None:
        for d in (self.memory, self.pids, self.cpu):
            if d is not None:
                _remove(d)


_OURS = re.compile(r"referee-sandbox-(\d+)-\d+")


def _sweep_stale(parent: Path) -> None:
    """Remove slot cgroups left by runners whose process is gone (crashed, or never closed)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for d in entries:
        m = _OURS.fullmatch(d.name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _remove(d)


def _remove(d: Path) -> None:
    try:
        d.rmdir()
    except OSError as e:
        log.warning("could not remove cgroup %s: %s", d, e)
