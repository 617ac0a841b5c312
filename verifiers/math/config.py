"""Per-request options of the ``math`` verifier (built from the item's ``options.math``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AnswerSource = Literal["auto", "answer_tag", "boxed"]


@dataclass(frozen=True)
class MathConfig:
    """Options of the math verifier.

    Attributes:
        answer_source: where the committed final answer is taken from. ``answer_tag``: only the
            ``<answer>`` block; ``boxed``: only the last ``\\boxed{}``/``\\fbox{}``; ``auto``: the
            ``<answer>`` block, else the last box, else an explicit "final answer is ..." phrase.
        rel_tolerance: relative tolerance used when the gold is itself a decimal (inexact), or
            when ``allow_decimal_approx`` is on.
        allow_decimal_approx: accept a decimal approximation of an exact, non-decimal gold
            (``0.142857`` for ``1/7``). Off by default: an approximation is not the answer.
        choices: the letters that make a one-letter gold a multiple-choice answer.
        strict: when on, a bare completion with no answer marker gets ``no_answer``; when off, a
            short completion that is nothing but an answer is taken as committed.
        max_answer_chars: longer extracted answers are refused before any parsing.
    """

    answer_source: AnswerSource = "auto"
    rel_tolerance: float = 1e-6
    allow_decimal_approx: bool = False
    choices: str = "ABCDEFGHIJ"
    strict: bool = False
    max_answer_chars: int = 400

    def __post_init__(self) -> None:
        # Options arrive from JSON; refuse values that would make the verifier meaningless.
        from verifiers.types import VerifierInputError

        if not 0.0 <= self.rel_tolerance < 1.0:
            raise VerifierInputError(
                f"option math.rel_tolerance must be in [0, 1), got {self.rel_tolerance!r}"
            )
        if not self.choices or not self.choices.isalpha() or not self.choices.isupper():
            raise VerifierInputError(f"option math.choices must be upper-case letters, got {self.choices!r}")
        if not 1 <= self.max_answer_chars <= 10_000:
            raise VerifierInputError(
                f"option math.max_answer_chars must be in 1..10000, got {self.max_answer_chars!r}"
            )
