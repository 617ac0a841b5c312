"""Cheap checks that run before any parsing, so no answer can make sympy slow.

math-verify spends seconds on power towers (``9^{9^{9^9}}``) and never returns from ``str()`` of
one. Everything here looks only at the text, in linear time. A refused answer is judged ``wrong``
(a gold that is refused is an invalid item): no real contest answer is this large.
"""

from __future__ import annotations

import re

MAX_NESTING = 12
MAX_EXPONENT_DEPTH = 2  # 2^{3^{2}} is allowed; one level more is a tower
MAX_EXPONENT_VALUE = 4_096
MAX_INTEGER_DIGITS = 1_000
MAX_FACTORIAL = 5_000
MAX_COMMANDS = 60
MAX_SYMPY_NODES = 400


class GuardError(ValueError):
    """An answer is too large or too deep to be judged within the time budget."""


_FACTORIAL = re.compile(r"(\d+)\s*!")
_FACTORIAL_CMD = re.compile(r"\\(?:factorial|Gamma|binom)")
_INTEGER = re.compile(r"\d+")
_EXPONENT_NUMBER = re.compile(r"\^\s*\{?\s*(-?\d+)")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_BARE_TOWER = re.compile(r"\^\s*(?:\w+|\{[^{}]*\})\s*\^")


def _max_nesting(text: str) -> int:
    depth = best = 0
    for c in text:
        if c in "({[":
            depth += 1
            best = max(best, depth)
        elif c in ")}]":
            depth = max(depth - 1, 0)
    return best


def _exponent_depth(text: str) -> int:
    """How deeply ``^`` nests: ``a^{b^{c}}`` is 2, ``9^{9^{9^9}}`` is 4."""
    best = 0
    # stack of exponent levels, one entry per open brace
    stack: list[int] = []
    level = 0
    pending = False  # saw ^, next token is its exponent
    for c in text:
        if c == "^":
            best = max(best, level + 1)
            pending = True
            continue
        if c == "{":
            stack.append(level)
            if pending:
                level += 1
            pending = False
        elif c == "}":
            level = stack.pop() if stack else 0
        elif not c.isspace():
            pending = False
    return best


_INNER_POWER = re.compile(r"(\d+)\s*\^\s*\{?\s*(\d+)")


def _check_nested_powers(text: str) -> None:
    """``9^{9^{9}}`` passes the depth limit but its inner power is 387,420,489: refuse it.

    Any numeric power that sits inside an exponent must stay small, because sympy evaluates
    integer powers eagerly while parsing.
    """
    depth = 0
    stack: list[int] = []
    pending = False
    for i, c in enumerate(text):
        if c == "^":
            if depth >= 1:
                m = _INNER_POWER.search(text, max(0, i - 12), i + 12)
                if m is not None and int(m.group(2)) * max(int(m.group(1)), 2).bit_length() > 16:
                    raise GuardError("a large power inside an exponent")
            pending = True
            continue
        if c == "{":
            stack.append(depth)
            if pending:
                depth += 1
            pending = False
        elif c == "}":
            depth = stack.pop() if stack else 0
        elif not c.isspace():
            pending = False


def check_text(text: str, *, max_chars: int) -> None:
    """Refuse an answer string whose parse or evaluation could take long.

    Raises:
        GuardError: with a message naming the limit that was hit.
    """
    if len(text) > max_chars:
        raise GuardError(f"answer longer than {max_chars} characters")
    if _max_nesting(text) > MAX_NESTING:
        raise GuardError(f"brackets nested deeper than {MAX_NESTING}")
    if _exponent_depth(text) > MAX_EXPONENT_DEPTH:
        raise GuardError("a tower of exponents")
    if len(_COMMAND.findall(text)) > MAX_COMMANDS:
        raise GuardError(f"more than {MAX_COMMANDS} LaTeX commands")
    for m in _INTEGER.finditer(text):
        if len(m.group()) > MAX_INTEGER_DIGITS:
            raise GuardError(f"an integer with more than {MAX_INTEGER_DIGITS} digits")
    for m in _EXPONENT_NUMBER.finditer(text):
        if abs(int(m.group(1))) > MAX_EXPONENT_VALUE:
            raise GuardError(f"an exponent larger than {MAX_EXPONENT_VALUE}")
    for m in _FACTORIAL.finditer(text):
        if int(m.group(1)) > MAX_FACTORIAL:
            raise GuardError(f"a factorial of more than {MAX_FACTORIAL}")
    if _FACTORIAL_CMD.search(text) and (
        "^" in text or any(len(m.group()) > 4 for m in _INTEGER.finditer(text))
    ):
        raise GuardError("a factorial-like function of a large number")
    if re.search(r"!\s*!", text):
        raise GuardError("an iterated factorial")
    _check_nested_powers(text)
    if "!" in text and re.search(r"[)}]\s*!", text):
        raise GuardError("a factorial of an expression")
    if _BARE_TOWER.search(text):
        raise GuardError("a tower of exponents")
    big = [m for m in _EXPONENT_NUMBER.finditer(text) if abs(int(m.group(1))) > 64]
    if len(big) > 1:
        raise GuardError("several large exponents")


def count_nodes(expr: object, limit: int = MAX_SYMPY_NODES) -> int:
    """Count the nodes of a parsed sympy tree, stopping once ``limit`` is passed.

    Uses ``.args`` only: never ``str()``, which can hang on a hostile tree.
    """
    seen = 0
    stack = [expr]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return seen
        args = getattr(node, "args", ())
        if isinstance(args, tuple):
            stack.extend(args)
    return seen
