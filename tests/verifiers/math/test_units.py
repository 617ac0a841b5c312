"""Unit tests of each step of the math verifier, and its contract with the registry."""

from __future__ import annotations

import pickle
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verifiers
from tests.verifiers.math.adversarial import ADVERSARIAL
from verifiers.math import MathConfig, verify_math
from verifiers.math.exact import approx_equal, evaluate, evaluate_numeric
from verifiers.math.extraction import boxed_contents, extract_answer
from verifiers.math.guards import GuardError, check_text, count_nodes
from verifiers.math.normalisation import normalise
from verifiers.math.structure import shape_of
from verifiers.math.verifier import prepare_gold
from verifiers.types import VerifierInputError

CFG = MathConfig()


# --- registry and options -------------------------------------------------------------------


def test_registered_as_pool_accuracy_verifier() -> None:
    verifiers.load_builtin()
    spec = verifiers.get("math")
    assert spec.fn is verify_math
    assert spec.component == "accuracy"
    assert spec.runs_in == "pool"
    assert spec.config_type is MathConfig


def test_options_build_a_frozen_config() -> None:
    verifiers.load_builtin()
    spec = verifiers.get("math")
    cfg = spec.build_config({"answer_source": "boxed", "allow_decimal_approx": True, "rel_tolerance": 1e-3})
    assert cfg == MathConfig(answer_source="boxed", allow_decimal_approx=True, rel_tolerance=1e-3)
    with pytest.raises(VerifierInputError):
        spec.build_config({"answer_source": "first_number"})
    with pytest.raises(VerifierInputError):
        spec.build_config({"tolerance": 0.1})


@pytest.mark.parametrize(
    "options",
    [
        {"rel_tolerance": 1.5},
        {"rel_tolerance": -1.0},
        {"choices": "abc"},
        {"choices": ""},
        {"max_answer_chars": 0},
    ],
)
def test_bad_option_values_are_refused(options: dict) -> None:
    with pytest.raises(VerifierInputError):
        MathConfig(**options)


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gold", ["", "   ", "\\frac{", "9^{9^{9^9}}", "x" * 2000])
def test_unparseable_or_hostile_gold_is_invalid_with_a_message(gold: str) -> None:
    with pytest.raises(VerifierInputError, match="math"):
        verify_math("<answer>1</answer>", gold, CFG)


@pytest.mark.parametrize("gold", [None, True, ["1"], {"a": 1}])
def test_gold_of_the_wrong_type_is_invalid(gold: object) -> None:
    with pytest.raises(VerifierInputError, match="string"):
        verify_math("<answer>1</answer>", gold, CFG)


def test_numeric_gold_is_read_as_text() -> None:
    assert verify_math("<answer>42</answer>", 42, CFG).status == "ok"
    assert verify_math("<answer>0.5</answer>", 0.5, CFG).status == "ok"


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "<think>still thinking",
        "I have no idea at all, sorry about that, really no clue here.",
        "<answer>4",
    ],
)
def test_nothing_committed_is_no_answer(completion: str) -> None:
    v = verify_math(completion, "4", CFG)
    assert (v.status, v.score, v.extracted) == ("no_answer", 0.0, None)


def test_ok_and_wrong_verdicts_carry_details() -> None:
    ok = verify_math("<think>t</think><answer>\\dfrac{1}{2}</answer>", "0.5", CFG)
    assert (ok.status, ok.score, ok.extracted) == ("ok", 1.0, "\\frac{1}{2}")
    assert ok.details["extraction"] == "answer_tag"
    assert ok.details["gold"] == "0.5" and ok.details["pred"] == "\\frac{1}{2}"
    assert ok.details["rule"] == "exact"
    wrong = verify_math("\\boxed{3} or \\boxed{4}", "3", CFG)
    assert (wrong.status, wrong.score) == ("wrong", 0.0)
    assert wrong.details["rule"].startswith("hedge")


def test_answer_source_option() -> None:
    text = "<answer>5</answer> and later \\boxed{6}"
    assert verify_math(text, "5", MathConfig(answer_source="answer_tag")).status == "ok"
    assert verify_math(text, "6", MathConfig(answer_source="boxed")).status == "ok"
    assert verify_math("\\boxed{6}", "6", MathConfig(answer_source="answer_tag")).status == "no_answer"
    assert verify_math("<answer>6</answer>", "6", MathConfig(answer_source="boxed")).status == "no_answer"


def test_strict_refuses_a_bare_completion() -> None:
    assert verify_math("42", "42", MathConfig()).status == "ok"
    assert verify_math("42", "42", MathConfig(strict=True)).status == "no_answer"


def test_gold_is_parsed_once_per_group() -> None:
    prepare_gold.cache_clear()
    for k in range(16):
        verify_math(f"<answer>{k}</answer>", "\\frac{7}{2}", CFG)
    info = prepare_gold.cache_info()
    assert info.misses == 1 and info.hits == 15


def test_verdict_pickles() -> None:
    v = verify_math("<answer>2</answer>", "2", CFG)
    assert pickle.loads(pickle.dumps(v)) == v


# --- extraction -------------------------------------------------------------------------------


def test_boxed_contents_handles_nesting_and_unclosed() -> None:
    assert boxed_contents("a \\boxed{\\frac{1}{2}} b \\fbox{3}") == (["\\frac{1}{2}", "3"], False)
    assert boxed_contents("\\boxed{1} \\boxed{2") == (["1"], True)


def test_reasoning_is_never_mined() -> None:
    e = extract_answer("<think>\\boxed{42}</think> The final answer is 41", "auto", strict=True)
    assert e.answers == ("41",) and e.rule == "final_answer_phrase"


def test_repeated_same_box_is_one_answer() -> None:
    assert extract_answer("\\boxed{7} ... \\boxed{ 7 }", "auto", strict=True).answers == ("7",)


# --- normalisation, shapes, exact path --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("$\\dfrac{1}{2}$", "\\frac{1}{2}"),
        ("25\\,000", "25000"),
        ("1{,}000", "1000"),
        ("4 096", "4096"),
        ("3,5", "3,5"),
        ("12 \\text{ cm}", "12"),
        ("\\left( 1, 2 \\right)", "( 1, 2 )"),
        ("{3 \\over 4}", "\\frac{3 }{ 4}"),
        ("5!", "5!"),
    ],
)
def test_normalise(raw: str, text: str) -> None:
    assert normalise(raw).text == text


def test_normalise_marks() -> None:
    assert normalise("90^\\circ").degrees and normalise("50\\%").percent
    assert normalise("12 apples").unit == "apples"


def test_shapes() -> None:
    assert shape_of("(0, 1]").kind == "interval"
    assert shape_of("(0, 1)").bracketed_pair
    assert shape_of("\\{1, 2\\}").kind == "set"
    assert shape_of("3 \\text{ or } 4").kind == "set"
    assert shape_of("x \\geq 2").ends == ("2", "\\infty")
    assert shape_of("\\pm 3").kind == "set"
    assert shape_of("Tuesday").kind == "text"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2\\frac12", Fraction(5, 2)),
        ("-2\\frac{1}{2}", Fraction(-5, 2)),
        ("0.\\overline{3}", Fraction(1, 3)),
        ("1.5 \\times 10^{3}", Fraction(1500)),
        ("2^{-3}", Fraction(1, 8)),
        ("5!", Fraction(120)),
        ("\\frac{6}{8}", Fraction(3, 4)),
    ],
)
def test_exact_values(text: str, value: Fraction) -> None:
    result = evaluate(text)
    assert result is not None and result.value.re == value and result.value.im == 0


def test_exact_complex_and_unsupported() -> None:
    r = evaluate("(1+i)^2")
    assert r is not None and (r.value.re, r.value.im) == (0, 2)
    assert evaluate("\\sqrt{2}") is None
    assert evaluate("2 3") is None  # two numbers side by side are not one number
    assert evaluate("2^10") is None  # LaTeX reads this as 2^1 0: refuse to guess


def test_exact_decimal_flags() -> None:
    r = evaluate("3.140")
    assert r is not None and r.has_decimal and r.decimals == 3


# --- guards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["9^{9^{9^9}}", "9^{9^{9}}", "2^{100000}", "100000!", "(" * 20 + ")" * 20, "3!!", "9^9^9"]
)
def test_guard_refuses(text: str) -> None:
    with pytest.raises(GuardError):
        check_text(text, max_chars=400)


@pytest.mark.parametrize("text", ["2^{2^{3}}", "e^{x^2}", "2004!", "\\frac{1}{2^{99}}", "(x+1)^{12}"])
def test_guard_allows(text: str) -> None:
    check_text(text, max_chars=400)


def test_count_nodes_stops_at_the_limit() -> None:
    import sympy

    expr = sum(sympy.Symbol(f"x{k}") for k in range(1000))
    assert count_nodes(expr, limit=50) == 51


# --- time bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "completion", "gold"), ADVERSARIAL, ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_inputs_are_fast_and_unrewarded(name: str, completion: str, gold: str) -> None:
    verify_math("\\boxed{\\sqrt{2}}", "\\sqrt{2}", CFG)  # warm sympy's lazy imports
    start = time.process_time()
    verdict = verify_math(completion, gold, CFG)
    assert time.process_time() - start < 1.0
    assert verdict.status != "ok"


_LATEXISH = st.lists(
    st.sampled_from(
        list("0123456789+-*/^()[]{}!,.=<> xi") + ["\\frac", "\\sqrt", "\\pi", "\\boxed{", "\\pm"]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=_LATEXISH, gold=st.sampled_from(["2", "\\frac{1}{2}", "\\sqrt{2}", "(0, 1]", "\\{1, 2\\}", "x+1"])
)
def test_fuzzed_answers_never_crash_or_hang(answer: str, gold: str) -> None:
    start = time.process_time()
    verdict = verify_math(f"<answer>{answer}</answer>", gold, CFG)
    assert verdict.status in ("ok", "wrong", "no_answer")
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("\\frac{5}{\\sqrt{2}}", "\\frac{5\\sqrt2}{2}", True),
        ("\\frac{\\pi}{2}", "90\\cdot\\frac{\\pi}{180}", True),
        ("\\sqrt{-4}", "2i", True),
        ("\\sqrt2", "1.41421356", False),
        ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False),
    ],
)
def test_numeric_fast_path(a: str, b: str, same: bool) -> None:
    x, y = evaluate_numeric(a), evaluate_numeric(b)
    assert x is not None and y is not None
    assert approx_equal(x, y) is same


def test_numeric_path_leaves_variables_to_sympy() -> None:
    assert evaluate_numeric("x + 1") is None
    assert evaluate_numeric("\\sqrt[3]{27}") is None


def test_import_does_not_load_sympy() -> None:
    # The API process imports every verifier; sympy (about a second) loads only when needed.
    import subprocess
    import sys

    code = "import sys, verifiers.math; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_warm_up_loads_the_symbolic_path() -> None:
    import sys

    from verifiers.math import warm_up

    warm_up()
    assert "sympy" in sys.modules and "math_verify" in sys.modules
