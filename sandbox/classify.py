"""Turning what a finished process left behind into an ``ExecStatus`` (pure functions)."""

from __future__ import annotations

import signal

from sandbox.languages.base import LanguageRunner
from sandbox.types import ExecStatus, Limits

_FATAL_MEMORY_SIGNALS = {signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}


def classify_exit(
    runner: LanguageRunner,
    limits: Limits,
    exit_code: int | None,
    signal_no: int | None,
    cpu_s: float | None,
    peak_mb: float | None,
    stderr: bytes,
) -> ExecStatus:
    """Status of a run that ended by itself (not killed by our wall-time or output watchdog)."""
    if signal_no == signal.SIGXCPU or (
        signal_no == signal.SIGKILL and cpu_s is not None and cpu_s >= limits.cpu_time_s * 0.95
    ):
        return "timeout"
    if signal_no is None and exit_code == 0:
        return "ok"
    tail = stderr[-8192:].decode("utf-8", errors="replace")
    if any(marker in tail for marker in runner.memory_markers):
        return "memory"
    if signal_no in _FATAL_MEMORY_SIGNALS and peak_mb is not None and peak_mb >= 0.9 * limits.memory_mb:
        return "memory"
    return "runtime_error"


def exit_code_of(exit_code: int | None, signal_no: int | None) -> int | None:
    """Shell convention: a death by signal N reads as ``-N`` (like ``subprocess``)."""
    if signal_no is not None:
        return -signal_no
    return exit_code
