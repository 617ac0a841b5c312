"""Comparisons done outside the sandbox: program output against expected text, values against values."""

from __future__ import annotations

import math
from typing import Any, Literal

from verifiers.code.wire import Unserializable

Checker = Literal["exact", "lines_rstrip", "tokens", "floats"]


def _lines_rstrip(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _float_token_equal(got: str, want: str, abs_tol: float, rel_tol: float) -> bool:
    if got == want:
        return True
    try:
        g, w = float(got), float(want)
    except ValueError:
        return False
    if math.isnan(g) or math.isnan(w):
        return math.isnan(g) and math.isnan(w)
    return math.isclose(g, w, abs_tol=abs_tol, rel_tol=rel_tol)


def output_matches(
    got: str, want: str, checker: Checker, abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """Does program output ``got`` match ``want`` under ``checker``?

    ``exact``: byte for byte. ``lines_rstrip``: trailing whitespace on each line and trailing blank
    lines ignored. ``tokens``: whitespace-separated tokens equal. ``floats``: tokens equal, numeric
    tokens within ``abs_tol``/``rel_tol``. Extra or missing lines/tokens always fail.
    """
    if checker == "exact":
        return got == want
    if checker == "lines_rstrip":
        return _lines_rstrip(got) == _lines_rstrip(want)
    g, w = got.split(), want.split()
    if len(g) != len(w):
        return False
    if checker == "tokens":
        return g == w
    return all(_float_token_equal(a, b, abs_tol, rel_tol) for a, b in zip(g, w, strict=True))


def _has_unserializable(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Unserializable):
            return True
        if isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return False


def python_equal(got: Any, want: Any) -> bool:
    """Python ``==`` on plain decoded values (what ``assert got == want`` meant), never true for an
    unserializable value. Safe: both sides hold only exact built-in types."""
    if _has_unserializable(got) or _has_unserializable(want):
        return False
    try:
        return bool(got == want)
    except RecursionError:
        return False


def json_equal(got: Any, want: Any, float_tol: tuple[float, float] | None = None) -> bool:
    """Compare a returned value with an expected value that came from JSON.

    JSON has no tuples, so tuples count as lists; ``bool`` equals only ``bool`` (``True != 1``
    here, unlike Python); numbers compare by value, within ``float_tol=(abs, rel)`` when given.
    """
    if isinstance(got, Unserializable) or isinstance(want, Unserializable):
        return False
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, int | float) and isinstance(want, int | float):
        if float_tol is None or (isinstance(got, int) and isinstance(want, int)):
            return got == want
        g, w = float(got), float(want)
        if math.isnan(g) or math.isnan(w):
            return math.isnan(g) and math.isnan(w)
        return math.isclose(g, w, abs_tol=float_tol[0], rel_tol=float_tol[1])
    if isinstance(got, list | tuple) and isinstance(want, list | tuple):
        return len(got) == len(want) and all(
            json_equal(a, b, float_tol) for a, b in zip(got, want, strict=True)
        )
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(json_equal(got[k], want[k], float_tol) for k in got)
    if isinstance(got, set | frozenset) or isinstance(want, set | frozenset):
        return python_equal(got, want)
    return type(got) is type(want) and got == want
