"""Comparing a gold shape with a predicted one; every decision names the rule that made it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from verifiers.math.exact import ExactValue, Gaussian, approx_equal, evaluate, evaluate_numeric
from verifiers.math.guards import GuardError, check_text
from verifiers.math.structure import Shape, is_infinite

Pair = tuple[Fraction, Fraction]
SYMBOLIC_BUDGET = 24


@dataclass(frozen=True)
class Context:
    """What a comparison needs besides the two shapes."""

    rel_tolerance: float
    allow_decimal_approx: bool
    gold_degrees: bool = False
    pred_degrees: bool = False
    gold_percent: bool = False
    pred_percent: bool = False
    max_chars: int = 400
    # Symbolic comparisons left for this item: a 60-member set against another must not run
    # 3,600 sympy comparisons. One list per item, shared by the nested comparisons.
    budget: list[int] = field(default_factory=lambda: [SYMBOLIC_BUDGET])


@dataclass(frozen=True)
class Decision:
    ok: bool
    rule: str


_DECIMAL_LITERAL = re.compile(r"\d\.\d|(?<!\d)\.\d")


def _round_half_away(x: Fraction, digits: int) -> Fraction:
    scale = 10**digits
    n = abs(x) * scale
    r = int(n + Fraction(1, 2))
    return Fraction(r if x >= 0 else -r, scale)


def _within(g: Fraction, p: Fraction, rel: float) -> bool:
    return abs(p - g) <= Fraction(rel) * abs(g) if g != 0 else p == 0


def _max_decimals(text: str) -> int:
    return max((len(m.group(1)) for m in re.finditer(r"\.(\d+)", text)), default=0)


def _decimal_gold_rule(
    g: Pair, p: Pair, gold_decimals: int, pred_decimals: int | None, rel: float
) -> Decision:
    """A decimal gold stands for the values that round to it, when the answer is more precise.

    ``pred_decimals`` is None for an exact answer (``1/3``, ``\\pi``). A decimal answer must carry
    at least two more places than the gold: ``3.49`` is not accepted for ``3.5``.
    """
    if all(_within(gv, pv, rel) for gv, pv in zip(g, p, strict=True)):
        return Decision(True, "within_tolerance_of_decimal_gold")
    precise = pred_decimals is None or pred_decimals >= gold_decimals + 2
    if precise and all(_round_half_away(pv, gold_decimals) == gv for gv, pv in zip(g, p, strict=True)):
        return Decision(True, "rounds_to_decimal_gold")
    return Decision(False, "decimal_gold_mismatch")


def _approximation_rule(g: Pair, p: Pair, pred_decimals: int, rel: float) -> Decision:
    """With ``allow_decimal_approx``: the answer is the gold rounded to the answer's places (≥ 2)."""
    if all(_within(gv, pv, rel) for gv, pv in zip(g, p, strict=True)):
        return Decision(True, "decimal_approximation_within_tolerance")
    if pred_decimals >= 2 and all(
        _round_half_away(gv, pred_decimals) == pv for gv, pv in zip(g, p, strict=True)
    ):
        return Decision(True, "decimal_approximation_rounds")
    return Decision(False, "decimal_approximation_too_far")


def _numbers_equal(ge: ExactValue, pe: ExactValue, ctx: Context) -> Decision:
    g, p = ge.value, pe.value
    if g == p:
        return Decision(True, "exact")
    gp, pp = (g.re, g.im), (p.re, p.im)
    if ge.has_decimal:
        return _decimal_gold_rule(
            gp, pp, ge.decimals, pe.decimals if pe.has_decimal else None, ctx.rel_tolerance
        )
    if pe.has_decimal and ctx.allow_decimal_approx:
        return _approximation_rule(gp, pp, pe.decimals, ctx.rel_tolerance)
    if pe.has_decimal:
        return Decision(False, "decimal_approximation_of_exact_gold")
    return Decision(False, "exact")


def _symbolic(gold_text: str, pred_text: str, ctx: Context, *, inexact_gold: bool) -> Decision:
    if ctx.budget[0] <= 0:
        return Decision(False, "guard: symbolic comparison budget spent")
    ctx.budget[0] -= 1
    # Imported here: sympy and math-verify take about a second to import, and most items never
    # leave the exact path (the service's API process imports this module too).
    from verifiers.math.symbolic import (
        expressions_equal,
        is_plain_expr,
        numeric_value,
        objects_equal,
        parse_latex,
    )

    try:
        check_text(pred_text, max_chars=ctx.max_chars)
        g = parse_latex(gold_text)
        p = parse_latex(pred_text)
    except GuardError as e:
        return Decision(False, f"guard: {e}")
    if g is None:
        return Decision(False, "gold_unparsed")
    if p is None:
        return Decision(False, "answer_unparsed")
    if is_plain_expr(g) and is_plain_expr(p):
        pred_decimal = bool(_DECIMAL_LITERAL.search(pred_text))
        if inexact_gold or (pred_decimal and ctx.allow_decimal_approx):
            gv, pv = numeric_value(g), numeric_value(p)
            if gv is not None and pv is not None:
                if inexact_gold:
                    pred_places = _max_decimals(pred_text) if pred_decimal else None
                    return _decimal_gold_rule(
                        gv, pv, _max_decimals(gold_text), pred_places, ctx.rel_tolerance
                    )
                return _approximation_rule(gv, pv, _max_decimals(pred_text), ctx.rel_tolerance)
        same = expressions_equal(g, p, rel_tolerance=None)
        if same is not None:
            if not same and pred_decimal:
                return Decision(False, "symbolic: decimal_approximation_of_exact_gold")
            return Decision(same, "symbolic_numeric")
    return Decision(objects_equal(g, p), "structured: relation, matrix or math-verify")


def _numeric(gold_text: str, pred_text: str, ctx: Context, *, inexact_gold: bool) -> Decision | None:
    """Roots and pi without sympy: both sides to 60 digits, equal to 1e-40 relative.

    Returns None when either side is outside this path, or when a tolerance rule applies
    (decimal gold, allowed approximation): the symbolic path owns those.
    """
    pred_decimal = bool(_DECIMAL_LITERAL.search(pred_text))
    if inexact_gold or (pred_decimal and ctx.allow_decimal_approx):
        return None
    try:
        gn = evaluate_numeric(gold_text)
        pn = evaluate_numeric(pred_text) if gn is not None else None
    except GuardError as e:
        return Decision(False, f"guard: {e}")
    if gn is None or pn is None:
        return None
    if approx_equal(gn, pn):
        return Decision(True, "numeric")
    return Decision(False, "numeric: decimal_approximation_of_exact_gold" if pred_decimal else "numeric")


def values_equal(gold_text: str, pred_text: str, ctx: Context) -> Decision:
    """Compare two single values: the exact fast path first, then sympy."""
    if gold_text == pred_text:
        return Decision(True, "same_text")
    if is_infinite(gold_text) or is_infinite(pred_text):
        g, p = gold_text.replace(" ", "").lstrip("+"), pred_text.replace(" ", "").lstrip("+")
        return Decision(g == p, "infinity")
    try:
        ge = evaluate(gold_text)
        pe = evaluate(pred_text)
    except GuardError as e:
        return Decision(False, f"guard: {e}")
    inexact_gold = ge.has_decimal if ge is not None else bool(_DECIMAL_LITERAL.search(gold_text))
    decision: Decision | None = None
    if ge is not None and pe is not None:
        decision = _numbers_equal(ge, pe, ctx)
        if decision.ok:
            return decision
        decision = _units_adjusted(ge, pe, ctx) or decision
        if decision.ok or not (ctx.gold_degrees or ctx.pred_degrees):
            return decision
    else:
        decision = _numeric(gold_text, pred_text, ctx, inexact_gold=inexact_gold) or _symbolic(
            gold_text, pred_text, ctx, inexact_gold=inexact_gold
        )
        if decision.ok:
            return decision
    # Degrees on one side only: the other side may be the same angle in radians.
    if ctx.gold_degrees and not ctx.pred_degrees:
        alt = _symbolic(
            f"({gold_text})\\cdot\\frac{{\\pi}}{{180}}", pred_text, ctx, inexact_gold=inexact_gold
        )
        if alt.ok:
            return Decision(True, "degrees_as_radians")
    if ctx.pred_degrees and not ctx.gold_degrees and "\\pi" in gold_text:
        alt = _symbolic(
            gold_text, f"({pred_text})\\cdot\\frac{{\\pi}}{{180}}", ctx, inexact_gold=inexact_gold
        )
        if alt.ok:
            return Decision(True, "degrees_as_radians")
    return decision


def _units_adjusted(ge: ExactValue, pe: ExactValue, ctx: Context) -> Decision | None:
    """``25\\%`` against ``0.25`` (either side): a percent is a hundredth."""
    hundred = Gaussian(Fraction(100))
    if ctx.gold_percent and not ctx.pred_percent and ge.value / hundred == pe.value:
        return Decision(True, "percent_as_fraction")
    if ctx.pred_percent and not ctx.gold_percent and pe.value / hundred == ge.value:
        return Decision(True, "percent_as_fraction")
    return None


def _interval_equal(g: Shape, p: Shape, ctx: Context) -> Decision:
    if p.bracketed_pair:
        p = Shape("interval", ends=(p.items[0].text, p.items[1].text), closed=(False, False))
    if p.kind != "interval":
        return Decision(False, f"interval_vs_{p.kind}")
    if g.closed != p.closed:
        return Decision(False, "interval_closedness")
    for ge, pe in zip(g.ends, p.ends, strict=True):
        d = values_equal(ge, pe, ctx)
        if not d.ok:
            return Decision(False, f"interval_end: {d.rule}")
    return Decision(True, "interval")


def _match_unordered(golds: tuple[Shape, ...], preds: tuple[Shape, ...], ctx: Context) -> bool:
    if len(golds) != len(preds):
        return False
    left = list(preds)
    for g in golds:
        for k, p in enumerate(left):
            if compare(g, p, ctx).ok:
                del left[k]
                break
        else:
            return False
    return True


def compare(g: Shape, p: Shape, ctx: Context) -> Decision:
    """Compare a gold shape with a predicted one.

    A single gold value against several predicted values is a hedge and fails; sets compare
    as multisets, tuples in order, intervals by ends and closedness.
    """
    if g.kind == "value":
        if p.kind == "value":
            return values_equal(g.text, p.text, ctx)
        if p.kind in ("set", "tuple") and len(p.items) > 1:
            return Decision(False, "hedge_or_list_against_single_value")
        if p.kind in ("set", "tuple") and len(p.items) == 1:
            return compare(g, p.items[0], ctx)
        return Decision(False, f"value_vs_{p.kind}")
    if g.kind == "text":
        pred_text = " ".join(p.text.lower().split())
        return Decision(p.kind in ("text", "value") and pred_text == g.text, "text")
    if g.kind == "set":
        if p.kind in ("set", "tuple"):
            if len(p.items) != len(g.items):
                return Decision(False, "set_size_differs")
            return Decision(_match_unordered(g.items, p.items, ctx), "set")
        if len(g.items) == 1:
            return compare(g.items[0], p, ctx)
        return Decision(False, f"set_vs_{p.kind}")
    if g.kind == "tuple":
        if p.kind == "interval" and g.bracketed_pair:
            as_interval = Shape("interval", ends=(g.items[0].text, g.items[1].text), closed=(False, False))
            return _interval_equal(as_interval, p, ctx)
        if p.kind not in ("tuple", "set"):
            return Decision(False, f"tuple_vs_{p.kind}")
        if len(p.items) != len(g.items):
            return Decision(False, "tuple_size_differs")
        for gi, pi in zip(g.items, p.items, strict=True):
            d = compare(gi, pi, ctx)
            if not d.ok:
                return Decision(False, f"tuple_member: {d.rule}")
        return Decision(True, "tuple")
    if g.kind == "interval":
        return _interval_equal(g, p, ctx)
    if g.kind == "union":
        items = p.items if p.kind == "union" else (p,)
        if len(items) != len(g.items):
            return Decision(False, "union_size_differs")
        return Decision(_match_unordered(g.items, items, ctx), "union")
    if g.kind == "relation":
        return _symbolic(g.text, p.text or "", ctx, inexact_gold=False)
    return Decision(False, f"unsupported_gold_{g.kind}")
