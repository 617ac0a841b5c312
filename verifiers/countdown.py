"""Countdown (TinyZero's task): combine the given numbers with + - * / to reach the target.

The committed answer is the ``<answer>`` block (else the last line). It must be an arithmetic
expression that uses each given number exactly once (``use_all``, TinyZero's rule) or at most once,
and evaluate exactly (fractions, no floats) to the target. It is parsed with ``ast`` and evaluated by
our own walker, never ``eval``: only numbers, the four operators, unary minus and parentheses pass.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from verifiers.registry import register
from verifiers.types import Verdict, VerifierInputError

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_MAX_EXPR_CHARS = 200
_MAX_NUMBER = 10**6


@dataclass(frozen=True)
class CountdownConfig:
    use_all: bool = True  # every number exactly once (TinyZero); False: each at most once
    allow_unary_minus: bool = False


class _Rejected(Exception):
    pass


def _parse_reference(reference: Any) -> tuple[list[int], Fraction]:
    if not isinstance(reference, dict) or "numbers" not in reference or "target" not in reference:
        raise VerifierInputError('countdown reference must be {"numbers": [int, ...], "target": int}')
    numbers, target = reference["numbers"], reference["target"]
    if (
        not isinstance(numbers, list)
        or not numbers
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
    ):
        raise VerifierInputError("countdown reference.numbers must be a non-empty list of integers")
    if isinstance(target, bool) or not isinstance(target, int | float):
        raise VerifierInputError("countdown reference.target must be a number")
    return numbers, Fraction(target)


def _evaluate(node: ast.AST, used: list[int], config: CountdownConfig) -> Fraction:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, used, config)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        if abs(node.value) > _MAX_NUMBER:
            raise _Rejected("number too large")
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left = _evaluate(node.left, used, config)
        right = _evaluate(node.right, used, config)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Rejected("division by zero")
        return left / right
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and config.allow_unary_minus:
        return -_evaluate(node.operand, used, config)
    raise _Rejected(f"not allowed in an equation: {type(node).__name__}")


@register("countdown", config=CountdownConfig, component="accuracy", version="1")
def countdown(completion: str, reference: Any, config: CountdownConfig) -> Verdict:
    """Countdown equation check: exact arithmetic, each given number used once.

    >>> countdown("<answer>(6 - 2) * 5</answer>", {"numbers": [2, 5, 6], "target": 20}, CountdownConfig()).status
    'ok'
    """
    numbers, target = _parse_reference(reference)
    blocks = _ANSWER.findall(completion)
    if not blocks:
        return Verdict("no_answer", 0.0, details={"reason": "no <answer> block"})
    expression = blocks[-1].strip()
    if "=" in expression:  # "(6-2)*5 = 20": judge the left side, the model's claim is not evidence
        expression = expression.split("=", 1)[0].strip()
    expression = expression.replace("×", "*").replace("÷", "/").replace("−", "-")
    if not expression:
        return Verdict("no_answer", 0.0, details={"reason": "empty answer"})
    if len(expression) > _MAX_EXPR_CHARS:
        return Verdict("wrong", 0.0, expression[:80], {"reason": "expression too long"})
    used: list[int] = []
    try:
        value = _evaluate(ast.parse(expression, mode="eval"), used, config)
    except (SyntaxError, _Rejected, RecursionError, ValueError) as e:
        return Verdict("wrong", 0.0, expression, {"reason": f"not a valid equation: {e}"})
    have, want = Counter(used), Counter(numbers)
    if config.use_all and have != want:
        return Verdict(
            "wrong", 0.0, expression, {"reason": f"must use exactly {sorted(numbers)}, used {sorted(used)}"}
        )
    if not config.use_all and have - want:
        return Verdict(
            "wrong",
            0.0,
            expression,
            {"reason": f"uses numbers not given: {sorted((have - want).elements())}"},
        )
    if value != target:
        return Verdict("wrong", 0.0, expression, {"reason": f"evaluates to {value}, target {target}"})
    return Verdict("ok", 1.0, expression, {"value": str(value)})
