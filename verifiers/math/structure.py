"""The shape of an answer: a value, a tuple, a set, an interval (or a union), a letter, or words.

Shape decides how two answers compare: an ordered pair must match in order, a solution set in
any order, an interval with the same ends and the same closedness, and several alternatives
("3 or 4", "\\pm 2") form a set, which fails against a single gold value (a hedge).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from verifiers.math.normalisation import strip_assignment

Kind = Literal["value", "tuple", "set", "interval", "union", "choice", "text", "relation"]


@dataclass(frozen=True)
class Shape:
    """A parsed answer.

    Attributes:
        kind: see ``Kind``. ``relation`` is an equation/inequality kept whole for math-verify.
        text: the (normalised) text of a ``value``/``text``/``relation``/``choice``.
        items: the members of a ``tuple``/``set``/``union``.
        ends: for an ``interval``: (low, high) texts; closed: (low closed, high closed).
        bracketed_pair: a "(a, b)" that could be an ordered pair or an open interval.
    """

    kind: Kind
    text: str = ""
    items: tuple[Shape, ...] = ()
    ends: tuple[str, str] = ("", "")
    closed: tuple[bool, bool] = (False, False)
    bracketed_pair: bool = False


_NEGATION = re.compile(
    r"\bnot\b|n't\b|\\neq|\\ne\b|\bnever\b|\binstead\b|\brather\b|\bwrong\b", re.IGNORECASE
)
_ALTERNATIVE = re.compile(r"\s+(?:or|and)\s+|\\text\{\s*(?:or|and)\s*\}|\\(?:lor|vee)\b", re.IGNORECASE)
_HEDGE_WORDS = re.compile(
    r"\b(?:either|maybe|perhaps|possibly|probably|approximately|about|around)\b", re.IGNORECASE
)
_IN_PREFIX = re.compile(r"^[A-Za-z]\s*\\in\s*")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z' \-]*$")
_INEQ = re.compile(r"(\\leq|\\geq|<=|>=|<|>)")
_VARIABLE = re.compile(r"^[A-Za-z]$")
_INFINITE = {"\\infty", "+\\infty", "-\\infty", "infty", "-infty", "inf", "-inf"}


def has_negation(text: str) -> bool:
    """True when the answer text argues against a value ("not 42, it is 43")."""
    return bool(_NEGATION.search(text))


def has_hedge_words(text: str) -> bool:
    """True when the answer text is hedged ("maybe 4", "either 3 or 4")."""
    return bool(_HEDGE_WORDS.search(text))


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside any brackets."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if text.startswith("\\{", i) or text.startswith("\\}", i):
            depth += 1 if text[i + 1] == "{" else -1
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur).strip())
    return parts


def _enclosed(text: str, open_: str, close: str) -> bool:
    """``text`` starts with ``open_`` and ends with ``close`` that match each other."""
    if not (text.startswith(open_) and text.endswith(close)) or len(text) < len(open_) + len(close):
        return False
    depth = 0
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return False
    return depth == 0


def _interval_or_pair(text: str) -> Shape | None:
    if len(text) < 5 or text[0] not in "([" or text[-1] not in ")]":
        return None
    inner = text[1:-1]
    depth = 0
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return None
    parts = split_top_level(inner)
    closed = (text[0] == "[", text[-1] == "]")
    if len(parts) == 2 and all(parts):
        if closed == (False, False):
            return Shape("tuple", items=tuple(value_shape(p) for p in parts), bracketed_pair=True)
        return Shape("interval", ends=(parts[0], parts[1]), closed=closed)
    if closed == (False, False) and len(parts) > 2 and all(parts):
        return Shape("tuple", items=tuple(value_shape(p) for p in parts))
    return None


def _inequality(text: str) -> Shape | None:
    """``a < x \\leq b``, ``x > 3``, ``3 \\geq x`` as an interval of the one variable."""
    pieces = _INEQ.split(text)
    if len(pieces) not in (3, 5):
        return None
    terms = [p.strip() for p in pieces[0::2]]
    ops = pieces[1::2]
    var_positions = [i for i, t in enumerate(terms) if _VARIABLE.match(t)]
    if len(var_positions) != 1 or not all(terms):
        return None
    lo, hi, lo_c, hi_c = "-\\infty", "\\infty", False, False

    def less(op: str) -> bool:
        return op in ("<", "\\leq", "<=")

    def inclusive(op: str) -> bool:
        return op in ("\\leq", "\\geq", "<=", ">=")

    v = var_positions[0]
    for k, op in enumerate(ops):
        left, right = terms[k], terms[k + 1]
        if less(op):
            if k + 1 == v:
                lo, lo_c = left, inclusive(op)
            elif k == v:
                hi, hi_c = right, inclusive(op)
            else:
                return None
        else:
            if k + 1 == v:
                hi, hi_c = left, inclusive(op)
            elif k == v:
                lo, lo_c = right, inclusive(op)
            else:
                return None
    if len(ops) == 2 and less(ops[0]) != less(ops[1]):
        return None
    return Shape("interval", ends=(lo, hi), closed=(lo_c, hi_c))


def value_shape(text: str) -> Shape:
    """A single value: ``x = 5`` keeps only ``5``."""
    text = text.strip()
    if "=" in text and not _INEQ.search(text):
        text = strip_assignment(text)
    return Shape("value", text=text)


def shape_of(text: str, *, keep_relation: bool = False) -> Shape:
    """Parse normalised answer text into a ``Shape``.

    Args:
        text: normalised answer.
        keep_relation: keep an equation whole (the gold is an equation such as ``y = 2x + 3``).
    """
    text = _IN_PREFIX.sub("", text.strip())
    alternatives = [a for a in _ALTERNATIVE.split(text) if a.strip()]
    if len(alternatives) > 1:
        return _combine([shape_of(a, keep_relation=keep_relation) for a in alternatives])
    if "\\cup" in text:
        parts = [shape_of(p) for p in text.split("\\cup")]
        if all(p.kind in ("interval", "set") or p.bracketed_pair for p in parts):
            return Shape("union", items=tuple(_as_interval(p) for p in parts))
    if "\\pm" in text or "\\mp" in text:
        plus = text.replace("\\mp", "\\pm").replace("\\pm", "+", 1)
        minus = text.replace("\\mp", "\\pm").replace("\\pm", "-", 1)
        return Shape("set", items=(value_shape(plus), value_shape(minus)))
    if _enclosed(text, "\\{", "\\}"):
        inner = text[2:-2]
        return Shape("set", items=tuple(value_shape(p) for p in split_top_level(inner) if p))
    interval = _interval_or_pair(text)
    if interval is not None:
        return interval
    if _INEQ.search(text):
        ineq = _inequality(text)
        if ineq is not None:
            return ineq
        return Shape("relation", text=text)
    pieces = split_top_level(text)
    if len(pieces) > 1 and all(pieces):
        return _combine([shape_of(p, keep_relation=keep_relation) for p in pieces])
    if keep_relation and "=" in text:
        return Shape("relation", text=text)
    if _WORDS.match(text) and len(text.replace(" ", "")) > 1:
        return Shape("text", text=" ".join(text.lower().split()))
    return value_shape(text)


def _as_interval(shape: Shape) -> Shape:
    if shape.bracketed_pair:
        return Shape("interval", ends=(shape.items[0].text, shape.items[1].text), closed=(False, False))
    return shape


def _combine(shapes: list[Shape]) -> Shape:
    """Alternatives or a bare list: one set of every value (nested sets flattened)."""
    if all(s.kind in ("interval", "union") or s.bracketed_pair for s in shapes) and any(
        s.kind == "interval" for s in shapes
    ):
        flat: list[Shape] = []
        for s in shapes:
            flat.extend(s.items if s.kind == "union" else (_as_interval(s),))
        return Shape("union", items=tuple(flat))
    items: list[Shape] = []
    for s in shapes:
        items.extend(s.items if s.kind == "set" else (s,))
    return Shape("set", items=tuple(items))


def is_infinite(text: str) -> bool:
    """``\\infty`` and its spellings."""
    return text.replace(" ", "") in _INFINITE
