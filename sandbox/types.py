"""The contract between whoever runs untrusted programs and whoever asks for it.

``sandbox`` knows nothing of rewards: it takes a ``Program`` and ``Limits`` and returns an
``Execution``. Backends (bwrap, docker, unsafe-local) implement ``SandboxRunner``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ExecStatus = Literal[
    "ok",  # ran to completion with exit code 0
    "runtime_error",  # non-zero exit or killed by a signal other than our limits
    "compile_error",  # the compile step failed (compiled languages only)
    "timeout",  # wall or CPU time limit reached; the whole process tree was killed
    "memory",  # memory limit reached
    "output_limit",  # stdout+stderr exceeded the cap; the run was killed
    "sandbox_error",  # *we* failed (backend unavailable, setup error): never the program's fault
]


@dataclass(frozen=True)
class Limits:
    wall_time_s: float = 10.0
    cpu_time_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 32
    max_output_bytes: int = 1 << 20  # stdout and stderr each are capped at this
    max_file_bytes: int = 16 << 20  # largest file the program may write
    compile_time_s: float = 30.0


@dataclass(frozen=True)
class Program:
    """Source to run. ``files`` are extra files placed beside it in the private workdir."""

    language: str
    source: str
    stdin: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Execution:
    status: ExecStatus
    exit_code: int | None
    stdout: str
    stderr: str
    wall_time_s: float
    cpu_time_s: float | None = None
    peak_memory_mb: float | None = None
    message: str = ""  # for sandbox_error/compile_error: what went wrong, for humans
    compile_output: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # files fetched back on request (fetch_files)


class SandboxRunner(Protocol):
    """A backend. ``run`` is blocking and thread-safe; callers run it from worker threads."""

    name: str

    def run(self, program: Program, limits: Limits) -> Execution: ...

    def close(self) -> None: ...
