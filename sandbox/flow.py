"""The backend-independent part of running a ``Program``: files, compile step, run step, verdict."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sandbox import languages
from sandbox.classify import classify_exit, exit_code_of
from sandbox.languages.base import LanguageRunner, MemoryRlimit, Step
from sandbox.types import Execution, Limits, Program

COMPILE_OUTPUT_CAP = 64 << 10
COMPILE_MEMORY_MB = 2048
NOFILE = 256


@dataclass(frozen=True)
class StepRequest:
    """One process to run in the sandbox's workdir, with its limits."""

    step: Step
    files: dict[str, bytes] | None  # written into a fresh workdir first when not None
    stdin: bytes
    wall_s: float
    cpu_s: float
    memory_bytes: int
    memory_rlimit: MemoryRlimit
    file_bytes: int
    nproc: int
    output_cap: int
    final: bool  # the last step of the program: wipe everything afterwards
    stack_bytes: int = 64 << 20

    def limits_json(self) -> dict[str, object]:
        return {
            "cpu_s": self.cpu_s,
            "memory_bytes": self.memory_bytes,
            "memory_kind": self.memory_rlimit,
            "file_bytes": self.file_bytes,
            "nofile": NOFILE,
            "stack_bytes": self.stack_bytes,
            "nproc": self.nproc,
        }


@dataclass(frozen=True)
class StepOutcome:
    kind: Literal["exited", "timeout", "output_limit", "sandbox_error"]
    stdout: bytes = b""
    stderr: bytes = b""
    wall_s: float = 0.0
    exit_code: int | None = None
    signal_no: int | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None
    message: str = ""
    oom_killed: bool = False  # the kernel's OOM killer ended a process of this step (cgroup limit)


StepFn = Callable[[StepRequest], StepOutcome]


class BadProgram(ValueError):
    """The request itself cannot be run (unknown language, unsafe file name)."""


def _check_name(name: str) -> str:
    norm = posixpath.normpath(name)
    if (
        not name
        or "\x00" in name
        or name.startswith("/")
        or norm.startswith("..")
        or norm in (".", "")
        or "\\" in name
    ):
        raise BadProgram(f"unsafe file name {name!r}: must be a relative path inside the workdir")
    return norm


def program_files(runner: LanguageRunner, program: Program) -> dict[str, bytes]:
    """The workdir's contents: the extra files, then the source under the language's file name."""
    files = {_check_name(k): bytes(v) for k, v in program.files.items()}
    files[runner.source_name] = program.source.encode("utf-8", errors="surrogatepass")
    return files


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _error(message: str, wall_s: float = 0.0) -> Execution:
    return Execution(
        status="sandbox_error", exit_code=None, stdout="", stderr="", wall_time_s=wall_s, message=message
    )


def run_program(program: Program, limits: Limits, step_fn: StepFn, nproc_base: int = 0) -> Execution:
    """Run ``program`` through ``step_fn`` (one backend's way to run a step) and judge it.

    ``wall_time_s`` of the result is the run step's (for ``compile_error``: the compile step's).
    """
    runner = languages.get(program.language)
    if runner is None:
        known = sorted({r.name for r in languages.RUNNERS.values()})
        return _error(f"unsupported language {program.language!r}; known: {', '.join(known)}")
    try:
        files: dict[str, bytes] | None = program_files(runner, program)
    except BadProgram as e:
        return _error(str(e))
    nproc = nproc_base + limits.max_processes + runner.extra_nproc
    compile_output = ""
    total_wall = 0.0
    if runner.compile is not None:
        c = step_fn(
            StepRequest(
                step=runner.compile,
                files=files,
                stdin=b"",
                wall_s=limits.compile_time_s,
                cpu_s=limits.compile_time_s,
                memory_bytes=max(limits.memory_mb, COMPILE_MEMORY_MB) << 20,
                memory_rlimit="as",
                file_bytes=max(limits.max_file_bytes, 256 << 20),
                nproc=nproc_base + 64,
                output_cap=COMPILE_OUTPUT_CAP,
                final=False,
            )
        )
        total_wall += c.wall_s
        if c.kind == "sandbox_error":
            return _error(c.message, total_wall)
        compile_output = _decode(c.stdout + c.stderr)
        if c.kind != "exited" or c.exit_code != 0 or c.signal_no is not None:
            why = {
                "timeout": "compile timeout: compile_time_s reached",
                "output_limit": "too much compiler output",
            }
            return Execution(
                status="compile_error",
                exit_code=exit_code_of(c.exit_code, c.signal_no),
                stdout="",
                stderr="",
                wall_time_s=total_wall,
                message=why.get(c.kind, "compilation failed"),
                compile_output=compile_output,
            )
        files = None
    r = step_fn(
        StepRequest(
            step=Step(argv=runner.run.argv + tuple(program.argv), mode=runner.run.mode),
            files=files,
            stdin=program.stdin.encode("utf-8", errors="surrogatepass"),
            wall_s=limits.wall_time_s,
            cpu_s=limits.cpu_time_s,
            memory_bytes=limits.memory_mb << 20,
            memory_rlimit=runner.memory_rlimit,
            file_bytes=limits.max_file_bytes,
            nproc=nproc,
            output_cap=limits.max_output_bytes,
            final=True,
            stack_bytes=min(runner.stack_mb, limits.memory_mb // 2) << 20,
        )
    )
    total_wall += r.wall_s
    if r.kind == "sandbox_error":
        return _error(r.message, total_wall)
    if r.kind == "exited":
        status = classify_exit(runner, limits, r.exit_code, r.signal_no, r.cpu_s, r.peak_mb, r.stderr)
        if r.oom_killed and status != "ok":
            status = "memory"
    else:
        status = r.kind
    cap = limits.max_output_bytes
    return Execution(
        status=status,
        exit_code=exit_code_of(r.exit_code, r.signal_no),
        stdout=_decode(r.stdout),
        stderr=_decode(r.stderr),
        wall_time_s=r.wall_s,  # the run's own time; a compile step's is not counted here
        cpu_time_s=r.cpu_s,
        peak_memory_mb=r.peak_mb,
        message=r.message,
        compile_output=compile_output,
        stdout_truncated=r.kind == "output_limit" and len(r.stdout) >= cap,
        stderr_truncated=r.kind == "output_limit" and len(r.stderr) >= cap,
    )
