"""The verifier registry: a plain dict filled by a decorator.

Each verifier module registers its function under a unique name together with the frozen
dataclass that holds its options, the reward component it produces and a version string that
enters cache keys (bump it whenever the verifier's judgement can change).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from verifiers.types import Component, Verdict, VerifierInputError

RunsIn = Literal["pool", "sandbox"]


@dataclass(frozen=True)
class VerifierSpec:
    name: str
    fn: Callable[..., Verdict]
    config_type: type
    component: Component
    version: str
    # "pool": pure CPU work, run in the service's process pool as fn(completion, reference, config).
    # "sandbox": runs programs, called as fn(completion, reference, config, runner) with a sandbox runner.
    runs_in: RunsIn = "pool"
    description: str = ""

    def build_config(self, options: Mapping[str, Any] | None) -> Any:
        if not options:
            return _default_config(self.config_type)
        return config_from_options(self.config_type, options, verifier=self.name)


class UnknownVerifierError(KeyError):
    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.valid = valid

    def __str__(self) -> str:
        return f"unknown verifier {self.name!r}; valid names are: {', '.join(self.valid)}"


_REGISTRY: dict[str, VerifierSpec] = {}


def register(
    name: str,
    *,
    config: type,
    component: Component,
    version: str,
    runs_in: RunsIn = "pool",
) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Register ``fn`` under ``name``; a second, different function under the same name is an error."""
    if not (dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"verifier {name!r}: config must be a frozen dataclass, got {config!r}")

    def decorator(fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"verifier {name!r} is already registered by {existing.fn.__module__}")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = VerifierSpec(
            name=name,
            fn=fn,
            config_type=config,
            component=component,
            version=version,
            runs_in=runs_in,
            description=doc[0] if doc else "",
        )
        return fn

    return decorator


def get(name: str) -> VerifierSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVerifierError(name, names()) from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def specs() -> list[VerifierSpec]:
    return [_REGISTRY[n] for n in names()]


@functools.lru_cache(maxsize=256)
def _default_config(config_type: type) -> Any:
    return config_type()


@functools.lru_cache(maxsize=256)
def _hints(config_type: type) -> dict[str, Any]:
    return typing.get_type_hints(config_type)


def config_from_options(config_type: type, options: Mapping[str, Any], *, verifier: str) -> Any:
    """Build a frozen config from a JSON options dict, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise VerifierInputError(
            f"unknown option(s) {unknown} for verifier {verifier!r}; valid options are: {sorted(fields)}"
        )
    hints = _hints(config_type)
    values: dict[str, Any] = {}
    for key, value in options.items():
        values[key] = _coerce(hints[key], value, f"{verifier}.{key}")
    return config_type(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check a JSON value against a (simple) type hint; lists become tuples so configs stay hashable."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise VerifierInputError(f"option {where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(arm, value, where)
            except VerifierInputError:
                continue
        raise VerifierInputError(f"option {where}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is not None:
            raise VerifierInputError(f"option {where} must be null")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise VerifierInputError(f"option {where} must be a boolean, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VerifierInputError(f"option {where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VerifierInputError(f"option {where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise VerifierInputError(f"option {where} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise VerifierInputError(f"option {where} must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    raise VerifierInputError(f"option {where} has an unsupported type {hint!r}")
