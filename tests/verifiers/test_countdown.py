"""Countdown equations: exact arithmetic, each number once, nothing but arithmetic accepted."""

from __future__ import annotations

import pytest

from verifiers.countdown import CountdownConfig, countdown
from verifiers.types import VerifierInputError

REF = {"numbers": [2, 5, 6], "target": 20}


@pytest.mark.parametrize(
    ("completion", "status"),
    [
        ("<think>6-2=4, 4*5=20</think><answer>(6 - 2) * 5</answer>", "ok"),
        ("<answer>(6-2)*5 = 20</answer>", "ok"),  # a trailing "= target" is allowed
        ("<answer>(6 × 2) + 5 + 3</answer>", "wrong"),  # 3 is not a given number
        ("<answer>6 * 2 + 5</answer>", "wrong"),  # 17, not 20
        ("<answer>(6-2)*5*1</answer>", "wrong"),  # 1 is not given (and used extra)
        ("<answer>20</answer>", "wrong"),  # the target itself, numbers unused
        ("<answer>(6-2)*5</answer> <answer>20</answer>", "wrong"),  # the last answer counts
        ("<answer>__import__('os').system('id')</answer>", "wrong"),  # code is not an equation
        ("<answer>2**5 - 6 - 5 - 1</answer>", "wrong"),  # ** is not allowed
        ("<answer>5 / (6 - 6)</answer>", "wrong"),  # division by zero
        ("(6 - 2) * 5", "no_answer"),  # no <answer> block
        ("<answer>  </answer>", "no_answer"),
        ("<answer>" + "(" * 500 + "2" + ")" * 500 + "</answer>", "wrong"),  # too long, refused before parsing
    ],
)
def test_countdown(completion: str, status: str) -> None:
    verdict = countdown(completion, REF, CountdownConfig())
    assert verdict.status == status, verdict.details
    assert verdict.score == (1.0 if status == "ok" else 0.0)


def test_fractions_are_exact() -> None:
    ref = {"numbers": [1, 3, 3, 8], "target": 24}
    assert (
        countdown(
            "<answer>8 / (3 - 8 / 3)</answer>", {"numbers": [3, 3, 8, 8], "target": 24}, CountdownConfig()
        ).status
        == "ok"
    )
    assert countdown("<answer>(1 + 3) * 3 * 8 / 4</answer>", ref, CountdownConfig()).status == "wrong"


def test_at_most_once_mode() -> None:
    cfg = CountdownConfig(use_all=False)
    assert countdown("<answer>6 * 5 - 2 * 5</answer>", REF, cfg).status == "wrong"  # 5 twice
    assert (
        countdown("<answer>(6 - 2) * 5</answer>", {"numbers": [2, 5, 6, 9], "target": 20}, cfg).status == "ok"
    )


@pytest.mark.parametrize(
    "reference", [None, {"numbers": [1]}, {"numbers": "12", "target": 3}, {"numbers": [1], "target": "x"}]
)
def test_bad_reference_is_invalid_input(reference: object) -> None:
    with pytest.raises(VerifierInputError):
        countdown("<answer>1</answer>", reference, CountdownConfig())
