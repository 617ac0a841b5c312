"""``RUNNERS``: the language registry, keyed by canonical name and by alias. One module per language."""

from __future__ import annotations

from sandbox.languages.base import LanguageRunner, Step
from sandbox.languages.cpp import CPP
from sandbox.languages.javascript import JAVASCRIPT
from sandbox.languages.python import PYTHON

RUNNERS: dict[str, LanguageRunner] = {}


def register(runner: LanguageRunner) -> LanguageRunner:
    """Add ``runner`` under its name and aliases (case-insensitive look-up through ``get``)."""
    for key in (runner.name, *runner.aliases):
        RUNNERS[key.lower()] = runner
    return runner


def get(language: str) -> LanguageRunner | None:
    """The runner for ``language`` (name or alias, any case), or ``None``."""
    return RUNNERS.get(language.strip().lower())


for _runner in (PYTHON, CPP, JAVASCRIPT):
    register(_runner)

__all__ = ["RUNNERS", "LanguageRunner", "Step", "get", "register"]
