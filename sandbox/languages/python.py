"""Python: first-class. Runs in a fork of the sandbox's warm ``python3 -I -S`` (no interpreter start)."""

from sandbox.languages.base import LanguageRunner, Step

PYTHON = LanguageRunner(
    name="python",
    aliases=("py", "python3"),
    source_name="main.py",
    binaries=("/usr/bin/python3",),
    run=Step(argv=("main.py",), mode="python"),
    memory_markers=("MemoryError",),
)
