"""Running untrusted programs: ``run(program, limits) -> Execution`` and the backends behind it.

``make_runner("bwrap")`` is the default (bubblewrap, warm fork servers); ``"unsafe-local"`` must be
asked for by name and warns; ``"docker"`` lives in ``sandbox.docker``. Languages are in ``RUNNERS``.
"""

from sandbox.factory import BACKENDS, default_runner, make_runner, run
from sandbox.languages import RUNNERS, LanguageRunner
from sandbox.types import ExecStatus, Execution, Limits, Program, SandboxRunner

__all__ = [
    "BACKENDS",
    "RUNNERS",
    "ExecStatus",
    "Execution",
    "LanguageRunner",
    "Limits",
    "Program",
    "SandboxRunner",
    "default_runner",
    "make_runner",
    "run",
]
