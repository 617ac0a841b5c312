"""Building a runner by name, and the process-wide default runner behind ``sandbox.run``."""

from __future__ import annotations

import importlib
import os
import threading

from sandbox.types import Execution, Limits, Program, SandboxRunner

BACKENDS = ("bwrap", "docker", "unsafe-local")
_default: SandboxRunner | None = None
_default_lock = threading.Lock()


def make_runner(backend: str = "bwrap", **options: object) -> SandboxRunner:
    """A ``SandboxRunner`` for ``backend`` (``bwrap``, ``docker`` or ``unsafe-local``).

    Never falls back to another backend: if the one asked for cannot run here, this raises
    ``SandboxUnavailable`` (or ``ValueError`` for an unknown name). ``unsafe-local`` warns loudly.

    Args:
        backend: the backend's name.
        **options: passed to the backend (e.g. ``workers=4`` for bwrap).
    """
    if backend == "bwrap":
        from sandbox.bwrap import BwrapRunner

        return BwrapRunner(**options)  # type: ignore[arg-type]
    if backend == "unsafe-local":
        from sandbox.local import UnsafeLocalRunner

        return UnsafeLocalRunner(**options)  # type: ignore[arg-type]
    if backend == "docker":
        # Written by the docker helper in sandbox/docker.py (class DockerRunner).
        mod = importlib.import_module("sandbox.docker")
        return mod.DockerRunner(**options)  # type: ignore[no-any-return]
    raise ValueError(f"unknown sandbox backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def default_runner() -> SandboxRunner:
    """The shared runner: backend from ``REFEREE_SANDBOX_BACKEND`` (default ``bwrap``), built once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_runner(os.environ.get("REFEREE_SANDBOX_BACKEND", "bwrap"))
        return _default


def run(program: Program, limits: Limits | None = None) -> Execution:
    """Run ``program`` on the default runner. If no sandbox can be had: a ``sandbox_error`` Execution."""
    try:
        runner = default_runner()
    except Exception as e:  # SandboxUnavailable, bad backend name: ours, never the program's
        return Execution("sandbox_error", None, "", "", 0.0, message=f"no sandbox available: {e}")
    return runner.run(program, limits or Limits())
