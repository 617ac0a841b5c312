"""The long tail: LaTeX parsed by math-verify into sympy, compared without its rounding.

math-verify is called with its ``signal.alarm`` timeouts off (``parsing_timeout=None``,
``timeout_seconds=None``): signals only work in a main thread, and the service's worker process
enforces a hard kill anyway. Our own bounds are the text guards (before parsing), a node limit on
the parsed tree, and numeric comparison at fixed precision instead of ``simplify``.

Decimal literals are rewritten as exact fractions before parsing, so ``1.41421356`` is a
rational close to, but not equal to, ``\\sqrt{2}``. Values are compared at 60 significant digits
with a *relative* tolerance: ``1/2^{99}`` and ``1/2^{98}`` stay apart (math-verify #14).
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

import sympy
from math_verify import parse, verify
from math_verify.parser import LatexExtractionConfig

from verifiers.math.guards import MAX_SYMPY_NODES, GuardError, count_nodes

# math-verify warns once per process that its timeouts are off; we bound work ourselves.
for _name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_DIGITS = 60
_EXACT_REL = sympy.Float(10) ** -40
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_LATEX_CONFIG = (LatexExtractionConfig(),)
# Points at which expressions with variables are compared (polynomial identity testing).
_POINTS = (sympy.Rational(7, 13), sympy.Rational(-29, 11), sympy.Rational(53, 7))


def _decimals_to_fractions(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        whole, frac = m.group(1), m.group(2)
        return "(\\frac{" + str(int(whole + frac)) + "}{" + str(10 ** len(frac)) + "})"

    return _DECIMAL.sub(repl, text)


@lru_cache(maxsize=4096)
def parse_latex(text: str) -> Any | None:
    """Parse one (guarded, normalised) answer into a sympy object, or ``None``.

    Cached: a GRPO group shares one gold, and repeated answers are common.

    Raises:
        GuardError: the parsed tree is larger than the node budget.
    """
    source = "\\boxed{" + _decimals_to_fractions(text) + "}"
    try:
        found = parse(source, _LATEX_CONFIG, parsing_timeout=None)  # type: ignore[arg-type]
    except Exception:
        return None
    if not found or isinstance(found[0], str):
        return None
    obj = found[0]
    if count_nodes(obj) > MAX_SYMPY_NODES:
        raise GuardError(f"parsed answer has more than {MAX_SYMPY_NODES} nodes")
    if isinstance(obj, sympy.Expr):
        # The parser may give "i" assumptions (real=False); any symbol named i is the unit.
        units = {s: sympy.I for s in obj.free_symbols if getattr(s, "name", "") == "i"}
        if units:
            obj = obj.subs(units)
    return obj


def is_plain_expr(obj: Any) -> bool:
    """A number or an expression: not a relation, set, tuple or matrix."""
    return isinstance(obj, sympy.Expr) and not isinstance(obj, sympy.Tuple | sympy.MatrixBase)


def _numeric(expr: sympy.Expr, subs: dict[sympy.Symbol, sympy.Rational]) -> complex | None:
    try:
        value = (
            expr.subs(subs).evalf(_DIGITS, maxn=2 * _DIGITS)
            if subs
            else expr.evalf(_DIGITS, maxn=2 * _DIGITS)
        )
    except Exception:
        return None
    if not value.is_number or value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        return None
    re_part, im_part = value.as_real_imag()
    if not (re_part.is_Number and im_part.is_Number):
        return None
    return value  # type: ignore[return-value]


def _close(a: Any, b: Any, rel: Any) -> bool:
    diff = abs(sympy.N(a - b, _DIGITS))
    scale = max(abs(sympy.N(a, _DIGITS)), abs(sympy.N(b, _DIGITS)))
    if scale == 0:
        return bool(diff == 0)
    return bool(diff <= rel * scale)


def expressions_equal(gold: sympy.Expr, pred: sympy.Expr, *, rel_tolerance: float | None) -> bool | None:
    """Decide whether two plain expressions are the same value (or function).

    Args:
        gold, pred: parsed expressions.
        rel_tolerance: ``None`` to demand exact equality (up to 1e-40 relative at 60 digits),
            else the relative tolerance allowed.

    Returns:
        True/False, or None when a value could not be evaluated numerically.
    """
    symbols = gold.free_symbols | pred.free_symbols
    if {s.name for s in gold.free_symbols} != {s.name for s in pred.free_symbols}:
        return False
    rel = _EXACT_REL if rel_tolerance is None else sympy.Float(rel_tolerance)
    for subs in _trials(symbols):
        gv = _numeric(gold, subs)
        pv = _numeric(pred, subs)
        if gv is None or pv is None:
            return None
        if not _close(gv, pv, rel):
            return False
    return True


def numeric_value(expr: Any) -> tuple[Fraction, Fraction] | None:
    """A 60-digit approximation of a constant expression as (real, imaginary) fractions."""
    if not is_plain_expr(expr) or expr.free_symbols:
        return None
    if expr.is_Rational:
        return Fraction(int(expr.p), int(expr.q)), Fraction(0)
    value = _numeric(expr, {})
    if value is None:
        return None
    re_part, im_part = (sympy.Rational(x) for x in value.as_real_imag())  # type: ignore[attr-defined]
    return Fraction(int(re_part.p), int(re_part.q)), Fraction(int(im_part.p), int(im_part.q))


def _trials(symbols: set[Any]) -> list[dict[Any, Any]]:
    ordered = sorted(symbols, key=lambda s: s.name)
    if not ordered:
        return [{}]
    if len(ordered) == 1:
        return [dict.fromkeys(ordered, p) for p in _POINTS]
    return [{s: _POINTS[(k + j) % len(_POINTS)] + j for j, s in enumerate(ordered)} for k in range(3)]


def _oriented(rel: Any) -> tuple[Any, str] | None:
    """A relation as (expression, kind): ``a = b`` → (a − b, "eq"); ``a < b`` → (b − a, "gt")."""
    lhs, rhs = rel.lhs, rel.rhs
    if not (is_plain_expr(lhs) and is_plain_expr(rhs)):
        return None
    if isinstance(rel, sympy.Equality):
        return lhs - rhs, "eq"
    if isinstance(rel, sympy.StrictLessThan):
        return rhs - lhs, "gt"
    if isinstance(rel, sympy.LessThan):
        return rhs - lhs, "ge"
    if isinstance(rel, sympy.StrictGreaterThan):
        return lhs - rhs, "gt"
    if isinstance(rel, sympy.GreaterThan):
        return lhs - rhs, "ge"
    return None


def relations_equal(gold: Any, pred: Any) -> bool | None:
    """Same equation or inequality: ``f = 0`` and ``g = 0`` with ``f = c·g`` for a constant ``c ≠ 0``
    (``c > 0`` for inequalities), checked at sample points instead of with ``simplify``.

    A gold assignment ``y = e`` also matches a bare ``e``. Returns None when not both relations.
    """
    if not isinstance(gold, sympy.core.relational.Relational):
        return None
    if isinstance(gold, sympy.Equality) and is_plain_expr(pred) and isinstance(gold.lhs, sympy.Symbol):
        return expressions_equal(gold.rhs, pred, rel_tolerance=None) is True
    if not isinstance(pred, sympy.core.relational.Relational):
        return None
    g, p = _oriented(gold), _oriented(pred)
    if g is None or p is None or g[1] != p[1]:
        return None if g is None or p is None else False
    gd, pd = g[0], p[0]
    if {s.name for s in gd.free_symbols} != {s.name for s in pd.free_symbols}:
        return False
    ratio = None
    for subs in _trials(gd.free_symbols | pd.free_symbols):
        gv, pv = _numeric(gd, subs), _numeric(pd, subs)
        if gv is None or pv is None:
            return None
        if _close(gv, 0, _EXACT_REL) or _close(pv, 0, _EXACT_REL):
            if not (_close(gv, 0, _EXACT_REL) and _close(pv, 0, _EXACT_REL)):
                return False
            continue
        r = sympy.N(gv / pv, _DIGITS)
        if ratio is None:
            ratio = r
        elif not _close(r, ratio, _EXACT_REL):
            return False
    if ratio is None:
        return True
    if g[1] != "eq" and not (ratio.is_real and ratio > 0):
        return False
    return True


def _hard_for_simplify(obj: Any) -> bool:
    """Powers of symbols with large exponents make sympy's ``simplify`` take seconds."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, sympy.Pow)
            and node.exp.is_Integer
            and abs(int(node.exp)) > 12
            and node.free_symbols
        ):
            return True
        args = getattr(node, "args", ())
        if isinstance(args, tuple):
            stack.extend(args)
    return False


def objects_equal(gold: Any, pred: Any) -> bool:
    """Relations by sampling; matrices element by element; other structures via math-verify.

    math-verify's ``verify`` may call ``simplify``, so it only sees objects without large powers.
    """
    rel = relations_equal(gold, pred)
    if rel is not None:
        return rel
    if isinstance(gold, sympy.MatrixBase) and isinstance(pred, sympy.MatrixBase):
        if gold.shape != pred.shape:
            return False
        return all(
            is_plain_expr(g) and is_plain_expr(p) and expressions_equal(g, p, rel_tolerance=None) is True
            for g, p in zip(gold, pred, strict=True)
        )
    if _hard_for_simplify(gold) or _hard_for_simplify(pred):
        return False
    try:
        return bool(verify(gold, pred, strict=True, timeout_seconds=None))
    except Exception:
        return False
