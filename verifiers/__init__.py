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
    "names",
    "register",
    "specs",
]


def load_builtin() -> None:
    """Import the built-in verifier modules so that they register themselves."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


# One line per verifier module; each registers itself on import.
_BUILTIN_MODULES: tuple[str, ...] = (
    "verifiers.countdown",
    "verifiers.format",
    "verifiers.language",
)
