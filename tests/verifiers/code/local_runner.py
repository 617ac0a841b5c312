"""A throwaway, UNSANDBOXED runner for developing the code verifier before the real backend exists.

``SubprocessTestRunner`` runs programs as plain subprocesses in a temp dir with a timeout. It
isolates nothing; tests prefer the real bubblewrap backend whenever it is importable and works.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from sandbox.types import Execution, Limits, Program

_SOURCE = {"python": "main.py", "cpp": "main.cpp", "javascript": "main.js"}


class SubprocessTestRunner:
    name = "subprocess-test"

    def run(self, program: Program, limits: Limits) -> Execution:
        if program.language not in _SOURCE:
            return Execution(
                "sandbox_error", None, "", "", 0.0, message=f"unknown language {program.language}"
            )
        with tempfile.TemporaryDirectory(prefix="referee-test-") as d:
            for name, data in program.files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            src = os.path.join(d, _SOURCE[program.language])
            with open(src, "w") as f:
                f.write(program.source)
            if program.language == "python":
                cmd = [sys.executable, "-I", src]
            elif program.language == "javascript":
                cmd = [shutil.which("node") or "node", src]
            else:
                try:
                    cp = subprocess.run(
                        ["g++", "-O2", "-o", os.path.join(d, "main"), src],
                        capture_output=True,
                        text=True,
                        timeout=limits.compile_time_s,
                    )
                except subprocess.TimeoutExpired:
                    return Execution("compile_error", None, "", "", 0.0, message="compile timeout")
                if cp.returncode != 0:
                    return Execution("compile_error", cp.returncode, "", "", 0.0, compile_output=cp.stderr)
                cmd = [os.path.join(d, "main")]
            return self._exec(cmd, d, program, limits)

    def _exec(self, cmd: list[str], cwd: str, program: Program, limits: Limits) -> Execution:
        def limit() -> None:
            if program.language == "python":
                mem = limits.memory_mb << 20
                resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

        start = time.monotonic()
        p = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            preexec_fn=limit,
        )
        try:
            out, err = p.communicate(program.stdin.encode(), timeout=limits.wall_time_s)
            status = "ok" if p.returncode == 0 else "runtime_error"
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            status = "timeout"
        try:  # leave no stray process of the group behind
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        cap = limits.max_output_bytes
        return Execution(
            status,  # type: ignore[arg-type]
            p.returncode,
            out[:cap].decode("utf-8", "replace"),
            err[:cap].decode("utf-8", "replace"),
            time.monotonic() - start,
            stdout_truncated=len(out) > cap,
            stderr_truncated=len(err) > cap,
        )

    def close(self) -> None:
        pass


def real_sandbox_runner():
    """The real bubblewrap backend when it is importable and works here, else ``None``."""
    try:
        from sandbox import make_runner
    except ImportError:
        return None
    try:
        return make_runner("bwrap", workers=2)
    except Exception:  # SandboxUnavailable: no bubblewrap / user namespaces on this host
        return None
