"""``unsafe-local``: plain subprocesses with rlimits and a private temp dir. NOT a sandbox.

Programs see the host's files and network and may leave daemons behind (those that ``setsid``
escape the process-group kill). Only for development on hosts without namespaces, and only when
asked for by name: it warns loudly every time it is built.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import replace

from sandbox.flow import StepOutcome, StepRequest, run_program
from sandbox.io_pump import pump
from sandbox.pool import FifoPool, QueueFull, QueueTimeout
from sandbox.types import Execution, Limits, Program

log = logging.getLogger(__name__)

WARNING = (
    "UNSAFE sandbox backend 'unsafe-local' enabled: untrusted programs run as plain processes "
    "with host filesystem and network access. Never use it for submissions you do not trust."
)


class UnsafeLocalRunner:
    """``SandboxRunner`` on plain subprocesses (rlimits, new session, kill of the process group)."""

    name = "unsafe-local"

    def __init__(self, workers: int | None = None, max_waiting: int = 1024, python: str = "/usr/bin/python3"):
        warnings.warn(WARNING, RuntimeWarning, stacklevel=2)
        log.warning(WARNING)
        self.python = python if os.path.exists(python) else (shutil.which("python3") or python)
        self.workers = workers or os.cpu_count() or 1
        self._pool: FifoPool[int] = FifoPool(list(range(self.workers)), max_waiting)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "workers": self.workers, "isolation": "NONE (rlimits only)"}

    def run(self, program: Program, limits: Limits) -> Execution:
        try:
            token = self._pool.acquire(300.0)
        except (QueueFull, QueueTimeout) as e:
            return Execution("sandbox_error", None, "", "", 0.0, message=f"pool busy: {e}")
        workdir = tempfile.mkdtemp(prefix="referee-unsafe-")
        try:
            return run_program(program, limits, lambda req: self._step(workdir, req))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            self._pool.release(token)

    def _step(self, workdir: str, req: StepRequest) -> StepOutcome:
        if req.files is not None:
            for name, data in req.files.items():
                path = os.path.join(workdir, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
        argv = list(req.step.argv)
        if req.step.mode == "python":
            argv = [self.python, "-I", "-S", *argv]
        lim = req.limits_json()

        def limit_child() -> None:
            cpu = max(1, int(req.cpu_s + 0.999))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            mem = resource.RLIMIT_AS if req.memory_rlimit == "as" else resource.RLIMIT_DATA
            resource.setrlimit(mem, (req.memory_bytes, req.memory_bytes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (req.file_bytes, req.file_bytes))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_STACK, (req.stack_bytes, req.stack_bytes))
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(lim["nofile"]), int(lim["nofile"])))  # type: ignore[call-overload]

        stdin_r, stdin_w = os.pipe()
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                stdin=stdin_r,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir},
                start_new_session=True,
                preexec_fn=limit_child,
            )
        except OSError as e:
            os.close(stdin_r)
            os.close(stdin_w)
            return StepOutcome(kind="sandbox_error", message=f"cannot start {argv[0]}: {e}")
        os.close(stdin_r)
        _feed(stdin_w, req.stdin)
        assert proc.stdout is not None and proc.stderr is not None
        got = pump(proc.stdout.fileno(), proc.stderr.fileno(), req.output_cap, t0 + req.wall_s)
        kind = "output_limit" if got.overflow else "timeout" if got.deadline_hit else None
        if kind is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = 0
        proc.stdout.close()
        proc.stderr.close()
        base = StepOutcome(
            kind="exited", stdout=bytes(got.stdout), stderr=bytes(got.stderr), wall_s=time.monotonic() - t0
        )
        if kind is not None:
            return replace(base, kind=kind)  # type: ignore[arg-type]
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        except ProcessLookupError:
            pass
        return replace(
            base,
            exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            signal_no=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            cpu_s=ru.ru_utime + ru.ru_stime,
            peak_mb=round(ru.ru_maxrss / 1024.0, 2),
        )

    def close(self) -> None:
        pass


def _feed(fd: int, data: bytes) -> None:
    """Write stdin from a thread so a program that never reads it cannot block us."""
    import threading

    def writer() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            pass
        finally:
            os.close(fd)

    threading.Thread(target=writer, daemon=True).start()
