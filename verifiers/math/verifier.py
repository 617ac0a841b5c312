"""The ``math`` verifier: extraction → guards → normalisation → shape → exact path → sympy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from verifiers.math.choice import gold_letter, predicted_letters
from verifiers.math.compare import Context, Decision, compare
from verifiers.math.config import MathConfig
from verifiers.math.exact import evaluate, evaluate_numeric
from verifiers.math.extraction import extract_answer
from verifiers.math.guards import GuardError, check_text
from verifiers.math.normalisation import Normalised, normalise
from verifiers.math.structure import Shape, has_hedge_words, has_negation, is_infinite, shape_of
from verifiers.registry import register
from verifiers.types import Verdict, VerifierInputError

_MAX_GOLD_CHARS = 1_000
_SHOWN_CHARS = 200
_EQUATION_RHS_VARIABLE = re.compile(r"=.*[A-Za-z]")


@dataclass(frozen=True)
class Gold:
    """A parsed gold answer (cached: a GRPO group shares one gold)."""

    raw: str
    letter: str | None
    norm: Normalised
    shape: Shape


def _values_of(shape: Shape) -> list[str]:
    if shape.kind == "value":
        return [shape.text]
    if shape.kind == "interval":
        return [e for e in shape.ends if not is_infinite(e)]
    return [v for item in shape.items for v in _values_of(item)]


def _parse_latex(text: str) -> object | None:
    from verifiers.math.symbolic import parse_latex  # lazy: see compare._symbolic

    return parse_latex(text)


def _parseable(text: str) -> bool:
    if not text:
        return False
    try:
        return (
            evaluate(text) is not None or evaluate_numeric(text) is not None or _parse_latex(text) is not None
        )
    except GuardError:
        return False


@lru_cache(maxsize=1024)
def prepare_gold(raw: str, choices: str) -> Gold:
    """Parse and check a gold answer once.

    Raises:
        VerifierInputError: the gold is empty, too large, or cannot be parsed.
    """
    text = raw.strip()
    if not text:
        raise VerifierInputError("math: the gold answer is empty")
    if len(text) > _MAX_GOLD_CHARS:
        raise VerifierInputError(f"math: the gold answer is longer than {_MAX_GOLD_CHARS} characters")
    letter = gold_letter(text, choices)
    norm = normalise(text)
    if letter is not None:
        return Gold(text, letter, norm, Shape("choice", text=letter))
    try:
        check_text(norm.text, max_chars=_MAX_GOLD_CHARS)
    except GuardError as e:
        raise VerifierInputError(f"math: the gold answer is refused: {e}") from None
    # "y = 2x + 3" is an equation to match; "x = 5" is the value 5.
    keep_relation = bool(_EQUATION_RHS_VARIABLE.search(re.sub(r"\\[A-Za-z]+", "", norm.text)))
    shape = shape_of(norm.text, keep_relation=keep_relation)
    if shape.kind == "relation":
        if _parse_latex(norm.text) is None:
            raise VerifierInputError(f"math: cannot parse the gold answer {text[:_SHOWN_CHARS]!r}")
    elif shape.kind != "text":
        bad = [v for v in _values_of(shape) if not _parseable(v)]
        if bad or not norm.text:
            raise VerifierInputError(f"math: cannot parse the gold answer {text[:_SHOWN_CHARS]!r}")
    return Gold(text, None, norm, shape)


def warm_up() -> None:
    """Import sympy and math-verify and parse once, so a worker's first item does not pay for it.

    They are imported lazily (most items never need them, and the API process imports this
    package too); a pool worker should call this once when it starts.
    """
    _parse_latex("\\sqrt{2} + \\frac{x}{3}")


def _verdict(ok: bool, extracted: str | None, details: dict[str, Any]) -> Verdict:
    return Verdict("ok" if ok else "wrong", 1.0 if ok else 0.0, extracted, details)


def _judge_choice(gold: Gold, answer: str, config: MathConfig, details: dict[str, Any]) -> Verdict:
    letters = predicted_letters(answer, config.choices)
    details["pred_letters"] = list(letters)
    if not letters:
        details["rule"] = "choice: no letter in the answer"
        return _verdict(False, answer, details)
    if len(letters) > 1:
        details["rule"] = "hedge: several choices"
        return _verdict(False, answer, details)
    details["rule"] = "choice"
    return _verdict(letters[0] == gold.letter, letters[0], details)


def _all_same_value(answers: tuple[str, ...]) -> bool:
    """Several committed answers that are one exact value written differently."""
    values = set()
    for a in answers[:8]:
        try:
            v = evaluate(normalise(a).text)
        except GuardError:
            return False
        if v is None:
            return False
        values.add(v.value)
    return len(answers) <= 8 and len(values) == 1


def _join_boxes(gold: Gold, answers: tuple[str, ...]) -> str | None:
    """Several boxes are one answer only when the gold is a list of that many values."""
    if gold.shape.kind in ("set", "tuple") and len(gold.shape.items) == len(answers):
        return ", ".join(answers)
    return None


@register("math", config=MathConfig, component="accuracy", version="1", runs_in="pool")
def verify_math(completion: str, reference: Any, config: MathConfig) -> Verdict:
    """Judge the committed final answer of a completion against a gold answer.

    Args:
        completion: the model's output (reasoning in ``<think>`` is never mined).
        reference: the gold answer, a string (numbers are accepted and read as text).
        config: ``MathConfig`` options.

    Returns:
        ``ok`` (1.0), ``wrong`` (0.0) or ``no_answer`` (0.0); ``details`` says what was extracted
        from each side and which rule decided.

    >>> verify_math("<think>6*7=42</think><answer>41</answer>", "42", MathConfig()).status
    'wrong'
    """
    if isinstance(reference, bool) or not isinstance(reference, str | int | float):
        raise VerifierInputError(f"math: the gold answer must be a string, got {type(reference).__name__}")
    gold = prepare_gold(str(reference), config.choices)
    details: dict[str, Any] = {"gold": gold.norm.text[:_SHOWN_CHARS], "gold_kind": gold.shape.kind}
    extraction = extract_answer(completion, config.answer_source, strict=config.strict)
    details["extraction"] = extraction.rule
    if not extraction.answers:
        details["rule"] = "no committed answer"
        return Verdict("no_answer", 0.0, None, details)
    answers = extraction.answers
    details["pred_raw"] = [a[:_SHOWN_CHARS] for a in answers]
    if len(answers) > 1 and _all_same_value(answers):
        answers = answers[:1]  # "\boxed{42.0} ... \boxed{42}" commits to one value
    if len(answers) > 1:
        joined = _join_boxes(gold, answers)
        if joined is None:
            details["rule"] = "hedge: several different committed answers"
            return _verdict(False, None, details)
        answers = (joined,)
    answer = answers[0]
    if len(answer) > config.max_answer_chars:
        details["rule"] = f"guard: answer longer than {config.max_answer_chars} characters"
        return _verdict(False, None, details)
    if gold.letter is not None:
        return _judge_choice(gold, answer, config, details)
    if has_negation(answer) and not has_negation(gold.raw):
        details["rule"] = "hedge: the answer negates a value"
        return _verdict(False, answer, details)
    if has_hedge_words(answer):
        details["rule"] = "hedge: hedging words"
        return _verdict(False, answer, details)
    norm = normalise(answer)
    details["pred"] = norm.text[:_SHOWN_CHARS]
    try:
        check_text(norm.text, max_chars=config.max_answer_chars)
    except GuardError as e:
        details["rule"] = f"guard: {e}"
        return _verdict(False, norm.text[:_SHOWN_CHARS], details)
    if not norm.text:
        details["rule"] = "empty answer"
        return _verdict(False, None, details)
    pred_shape = shape_of(norm.text, keep_relation=gold.shape.kind == "relation")
    details["pred_kind"] = pred_shape.kind
    ctx = Context(
        rel_tolerance=config.rel_tolerance,
        allow_decimal_approx=config.allow_decimal_approx,
        gold_degrees=gold.norm.degrees,
        pred_degrees=norm.degrees,
        gold_percent=gold.norm.percent,
        pred_percent=norm.percent,
        max_chars=config.max_answer_chars,
    )
    try:
        decision = compare(gold.shape, pred_shape, ctx)
    except GuardError as e:
        decision = Decision(False, f"guard: {e}")
    except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError) as e:
        # sympy raises many error types on odd input; an answer we cannot compare is not correct.
        decision = Decision(False, f"comparison error: {type(e).__name__}")
    details["rule"] = decision.rule
    return _verdict(decision.ok, norm.text[:_SHOWN_CHARS], details)
