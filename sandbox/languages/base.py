"""What a language needs from the sandbox: file names, an optional compile step, a run step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MemoryRlimit = Literal["as", "data"]


@dataclass(frozen=True)
class Step:
    """One process to start in the workdir. ``mode="python"`` runs ``argv[0]`` (a file in the workdir)
    inside the warm interpreter's forked child, without exec; ``"exec"`` execs ``argv`` (absolute path)."""

    argv: tuple[str, ...]
    mode: Literal["python", "exec"] = "exec"


@dataclass(frozen=True)
class LanguageRunner:
    """A language's recipe. Add one by writing a module that calls ``languages.register``.

    Attributes:
        name: canonical key in ``RUNNERS``.
        aliases: other keys accepted (``"py"``, ``"c++"``...).
        source_name: file the source is written to inside the workdir.
        binaries: absolute paths that must exist on the host (they are bound read-only inside).
        compile: the compile step, or ``None`` for interpreted languages.
        run: the run step; ``Program.argv`` is appended.
        memory_rlimit: ``"as"`` (address space) or ``"data"`` for runtimes that reserve huge virtual
            ranges up front (V8), where RLIMIT_AS would refuse to start them.
        memory_markers: stderr texts by which the runtime says it ran out of memory.
        extra_nproc: processes/threads the runtime itself needs beyond the program's own.
        stack_mb: RLIMIT_STACK. glibc also takes it as every thread's default stack size, and those
            stacks count against RLIMIT_AS/DATA: keep it small for threaded runtimes.
    """

    name: str
    source_name: str
    run: Step
    binaries: tuple[str, ...]
    compile: Step | None = None
    aliases: tuple[str, ...] = ()
    memory_rlimit: MemoryRlimit = "as"
    memory_markers: tuple[str, ...] = field(default=())
    extra_nproc: int = 0
    stack_mb: int = 64
