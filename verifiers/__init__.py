"""Pure scoring functions. Importing this package registers every built-in verifier."""

from verifiers.registry import VerifierSpec, get, names, register, specs
from verifiers.types import COMPONENTS, STATUSES, Component, Status, Verdict, VerifierInputError

__all__ = [
    "COMPONENTS",
    "STATUSES",
    "Component",
    "Status",
    "Verdict",
    "VerifierInputError",
    "VerifierSpec",
    "get",
    "load_builtin",
    "warm_up",
    "names",
    "register",
    "specs",
]


def load_builtin() -> None:
    """Import the built-in verifier modules so that they register themselves."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def warm_up() -> None:
    """Pay lazy imports (sympy, parsers) now: pool workers call this before taking their first item."""
    import importlib

    for module in _BUILTIN_MODULES:
        hook = getattr(importlib.import_module(module), "warm_up", None)
        if callable(hook):
            hook()


# One line per verifier module; each registers itself on import.
_BUILTIN_MODULES: tuple[str, ...] = (
    "verifiers.countdown",
    "verifiers.format",
    "verifiers.language",
    "verifiers.math",
)
