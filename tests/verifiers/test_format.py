"""The format verifier: R1-Zero strict/lenient, tag_count, cold start, code-aware tags, speed."""

from __future__ import annotations

import pickle
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verifiers
from verifiers.format import FormatConfig, blank_code, chain_of_thought, extract_answer_block, verify_format
from verifiers.types import VerifierInputError

STRICT = FormatConfig()
LENIENT = FormatConfig(mode="lenient")

GOOD = "<think>\n3*4=12, 2+12=14\n</think>\n<answer>\n14\n</answer>"

# (completion, config, expected status, expected reason or extracted answer)
R1_ZERO_CASES = [
    (GOOD, STRICT, "ok", "14"),  # the canonical layout
    ("<think>a</think><answer>4</answer>", STRICT, "ok", "4"),  # no newlines needed
    ("  \n<think>a</think>\n\n<answer> 4 </answer>\n ", STRICT, "ok", "4"),  # whitespace outside is fine
    (
        "<think>see `x` and ```py\nprint(1)\n```</think><answer>4</answer>",
        STRICT,
        "ok",
        "4",
    ),  # code inside think
    ("<think>a</think><answer>`<b>`</answer>", STRICT, "ok", "`<b>`"),  # code inside the answer is kept
    ("Sure! <think>a</think><answer>4</answer>", STRICT, "format_error", "text_outside_tags"),  # text before
    ("<think>a</think> so <answer>4</answer>", STRICT, "format_error", "text_outside_tags"),  # text between
    ("<think>a</think><answer>4</answer> bye", STRICT, "format_error", "text_outside_tags"),  # text after
    ("Sure! <think>a</think> so <answer>4</answer> bye", LENIENT, "ok", "4"),  # lenient allows all three
    ("<think>a</think>", LENIENT, "format_error", "missing_answer"),  # lenient still needs the answer
    ("<answer>4</answer>", LENIENT, "format_error", "missing_think"),  # ... and the think block
    ("plain text 4", STRICT, "format_error", "missing_think"),  # no tags at all
    # Hacks: each fails, and its twin without the hack passes (rows above).
    (
        "<think><think>a</think></think><answer>4</answer>",
        LENIENT,
        "format_error",
        "nested_tags",
    ),  # nested same
    (
        "<think>a<answer>4</answer></think><answer>4</answer>",
        LENIENT,
        "format_error",
        "nested_tags",
    ),  # answer in think
    (
        "<think>a</think><think>b</think><answer>4</answer>",
        LENIENT,
        "format_error",
        "repeated_tags",
    ),  # two thinks
    (
        "<think>a</think><answer>4</answer><answer>5</answer>",
        LENIENT,
        "format_error",
        "repeated_tags",
    ),  # two answers
    ("<answer>4</answer><think>a</think>", LENIENT, "format_error", "answer_before_think"),  # reversed order
    (
        "<think> \n\t</think><answer>4</answer>",
        LENIENT,
        "format_error",
        "empty_think",
    ),  # whitespace-only think
    ("<think></think><answer>4</answer>", LENIENT, "format_error", "empty_think"),  # empty think
    ("<think>a</think><answer>\n</answer>", LENIENT, "format_error", "empty_answer"),  # empty answer
    (
        "```\n<think>a</think><answer>4</answer>\n```",
        LENIENT,
        "format_error",
        "missing_think",
    ),  # all in a fence
    (
        "`<think>a</think>` <answer>4</answer>",
        LENIENT,
        "format_error",
        "missing_think",
    ),  # think in inline code
    (
        "<think>a</think>```<answer>4</answer>```",
        LENIENT,
        "format_error",
        "missing_answer",
    ),  # answer in fence
    (
        "<think>a</think><answer>4</answer>\n```\n<answer>5</answer>\n```",
        LENIENT,
        "ok",
        "4",
    ),  # fenced extra ignored
    (
        "<think>a ``` </think><answer>4</answer>",
        LENIENT,
        "format_error",
        "unclosed_tag",
    ),  # unclosed fence eats tags
    ("<think>a</think></think><answer>4</answer>", LENIENT, "format_error", "unbalanced_tags"),  # stray close
    ("<think>a <answer>4</answer>", LENIENT, "format_error", "nested_tags"),  # think never closed
    ("<think>a</think><answer>4", LENIENT, "format_error", "unclosed_tag"),  # answer never closed
    (
        "a</think><answer>4</answer>",
        STRICT,
        "format_error",
        "unbalanced_tags",
    ),  # think opened by the prompt...
    (
        "a</think><answer>4</answer>",
        FormatConfig(think_in_prompt=True),
        "ok",
        "4",
    ),  # ...when the option says so
    ("<reason>a</reason><final>4</final>", FormatConfig(think_tag="reason", answer_tag="final"), "ok", "4"),
    ("<think>a</think><answer>4</answer>", FormatConfig(think_tag="reason"), "format_error", "missing_think"),
]


@pytest.mark.parametrize(("completion", "config", "status", "expected"), R1_ZERO_CASES)
def test_r1_zero(completion: str, config: FormatConfig, status: str, expected: str) -> None:
    verdict = verify_format(completion, None, config)
    assert verdict.status == status
    if status == "ok":
        assert verdict.score == 1.0
        assert verdict.extracted == expected
    else:
        assert verdict.score == 0.0
        assert verdict.details["reason"] == expected
        assert verdict.details["message"]


# (completion, expected partial credit on failure)
TAG_COUNT_CASES = [
    ("<think>\na\n</think>\n<answer>\n\n</answer>", 0.75),  # all four tokens but empty answer: capped
    ("<think>\na\n</think>\nso 4", 0.5),  # think tokens only
    ("<think>a</think><answer>4</answer> x", 0.0),  # tags without the newlines open-r1 counts
    (
        "<think>\na\n</think>\n<answer>\n4\n</answer>\n<answer>\n5\n</answer>",
        0.5,
    ),  # answer tokens twice: no credit
    ("```\n<think>\na\n</think>\n<answer>\n4\n</answer>\n```", 0.0),  # tokens inside a fence do not count
]


@pytest.mark.parametrize(("completion", "credit"), TAG_COUNT_CASES)
def test_tag_count_partial_credit(completion: str, credit: float) -> None:
    verdict = verify_format(completion, None, FormatConfig(tag_count=True))
    assert verdict.status == "format_error"
    assert verdict.score == pytest.approx(credit)
    assert verify_format(completion, None, STRICT).score == 0.0  # without the option, no credit


def test_tag_count_passing_completion_scores_one() -> None:
    assert verify_format(GOOD, None, FormatConfig(tag_count=True)).score == 1.0


COLD = FormatConfig(template="r1_cold_start")
COLD_LENIENT = FormatConfig(template="r1_cold_start", mode="lenient")

# (completion, config, status, reason or extracted summary)
COLD_START_CASES = [
    ("|special_token|2+2=4|special_token| The answer is 4.", COLD, "ok", "The answer is 4."),  # the layout
    ("\n|special_token|r|special_token|s", COLD, "ok", "s"),  # leading whitespace is fine
    ("Hi |special_token|r|special_token|s", COLD, "format_error", "text_outside_tags"),  # strict: text before
    ("Hi |special_token|r|special_token|s", COLD_LENIENT, "ok", "s"),  # lenient allows it
    ("|special_token|r summary", COLD, "format_error", "missing_special_token"),  # one token only
    ("|special_token|r|special_token|s|special_token|t", COLD, "format_error", "repeated_special_token"),
    ("|special_token| |special_token|s", COLD, "format_error", "empty_reasoning"),  # blank reasoning
    ("|special_token|r|special_token|  ", COLD, "format_error", "empty_summary"),  # blank summary
    ("|special_token|r`|special_token|`s", COLD, "format_error", "missing_special_token"),  # token in code
    ("<SEP>r<SEP>s", FormatConfig(template="r1_cold_start", special_token="<SEP>"), "ok", "s"),  # own token
]


@pytest.mark.parametrize(("completion", "config", "status", "expected"), COLD_START_CASES)
def test_cold_start(completion: str, config: FormatConfig, status: str, expected: str) -> None:
    verdict = verify_format(completion, None, config)
    assert verdict.status == status
    if status == "ok":
        assert (verdict.score, verdict.extracted) == (1.0, expected)
    else:
        assert (verdict.score, verdict.details["reason"]) == (0.0, expected)


# (text, expected answer block)
EXTRACT_CASES = [
    ("<think>a</think><answer> 14 </answer>", "14"),  # stripped
    ("no tags", None),  # nothing to extract
    ("<answer>1</answer> then <answer>2</answer>", "2"),  # the last block wins
    ("<answer>1</answer> `<answer>2</answer>`", "1"),  # inline code is not structure
    ("<answer>1</answer>\n```\n<answer>2</answer>\n```", "1"),  # nor is a fence
    ("<answer>unclosed", None),  # incomplete block
    ("<answer>a<answer>b</answer>", "b"),  # nearest opening before the last closing
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT_CASES)
def test_extract_answer_block(text: str, expected: str | None) -> None:
    assert extract_answer_block(text) == expected


# (completion, chain of thought)
COT_CASES = [
    ("<think>abc</think><answer>1</answer>", "abc"),  # the think block
    ("plain", "plain"),  # no tags: the whole completion
    ("abc</think>rest", "abc"),  # think opened in the prompt
    ("<think>abc", "abc"),  # unclosed think runs to the end
    ("`<think>`x", "`<think>`x"),  # a tag in code is no tag
]


@pytest.mark.parametrize(("completion", "cot"), COT_CASES)
def test_chain_of_thought(completion: str, cot: str) -> None:
    assert chain_of_thought(completion) == cot


# (text, expected blanked)
BLANK_CASES = [
    ("a `b` c", "a     c"),  # inline span
    ("a ``b`c`` d", "a         d"),  # double-backtick span holding a backtick
    ("a ` b", "a ` b"),  # lone backtick is literal
    ("a `b\nc` d", "a `b\nc` d"),  # inline spans do not cross lines
    ("x```py\ny\n```z", "x     \n \n   z"),  # fence, newlines kept
    ("x````\n```\n````z", "x    \n   \n    z"),  # a longer fence is closed only by one as long
    ("x```\nrest", "x   \n    "),  # unclosed fence runs to the end
]


@pytest.mark.parametrize(("text", "blanked"), BLANK_CASES)
def test_blank_code(text: str, blanked: str) -> None:
    out = blank_code(text)
    assert out == blanked
    assert len(out) == len(text)


@pytest.mark.parametrize(
    "adversarial",
    [
        "<think>" * 30_000,  # 210k chars of openers
        "`" + "a`" * 100_000,  # alternating inline-code openers
        "``" + " `" * 100_000,  # double-backtick opener that never closes, many singles
        "```" * 70_000,  # fences opening and closing
        "<think>" + "<" * 200_000 + "</think><answer>4</answer>",  # many tag-like prefixes
        "|special_token|" * 14_000,  # cold-start tokens
    ],
)
def test_long_adversarial_inputs_are_fast(adversarial: str) -> None:
    assert len(adversarial) >= 200_000
    start = time.perf_counter()
    for config in (STRICT, LENIENT, FormatConfig(tag_count=True), COLD):
        verify_format(adversarial, None, config)
    extract_answer_block(adversarial)
    assert time.perf_counter() - start < 5.0  # linear: ~0.3 s; quadratic would take minutes


@pytest.mark.parametrize(
    "options",
    [
        {"think_tag": "<think>"},  # brackets are not part of the name
        {"think_tag": "x", "answer_tag": "x"},  # the two tags must differ
        {"special_token": "  "},  # blank separator
        {"template": "r1_cold_start", "tag_count": True},  # tag_count is an r1_zero option
        {"template": "r1_cold_start", "think_in_prompt": True},  # so is think_in_prompt
        {"mode": "loose"},  # not a mode
        {"tags": True},  # unknown option
    ],
)
def test_bad_options_raise_input_error(options: dict[str, object]) -> None:
    with pytest.raises(VerifierInputError):
        verifiers.get("format").build_config(options)


def test_registration_and_options() -> None:
    verifiers.load_builtin()
    spec = verifiers.get("format")
    assert spec.fn is verify_format
    assert (spec.component, spec.runs_in) == ("format", "pool")
    config = spec.build_config({"mode": "lenient", "tag_count": True})
    assert config == FormatConfig(mode="lenient", tag_count=True)
    assert spec.fn("x <think>a</think> <answer>4</answer>", None, config).status == "ok"


def test_config_pickles() -> None:
    config = FormatConfig(template="r1_cold_start", special_token="<SEP>", mode="lenient")
    assert pickle.loads(pickle.dumps(config)) == config


def test_non_string_completion_is_input_error() -> None:
    with pytest.raises(VerifierInputError):
        verify_format(None, None, STRICT)  # type: ignore[arg-type]


NAIVE_R1_ZERO = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)

# Hacks that a naive search (what many reward scripts use) accepts: each is caught only by its rule.
HACKS = [
    ("<think><think>a</think></think><answer>4</answer>", "nested_tags"),
    ("<think>a</think><answer>4</answer><think>b</think><answer>5</answer>", "repeated_tags"),
    ("<answer>4</answer><think>a</think><answer>4</answer>", "repeated_tags"),
    ("<think> </think><answer>4</answer>", "empty_think"),
    ("<think>a</think><answer> </answer>", "empty_answer"),
    ("```\n<think>a</think><answer>4</answer>\n```", "missing_think"),
    ("`<think>a</think><answer>4</answer>`", "missing_think"),
]


@pytest.mark.parametrize(("completion", "reason"), HACKS)
def test_hacks_a_naive_search_accepts_are_rejected(completion: str, reason: str) -> None:
    assert NAIVE_R1_ZERO.search(completion)  # the hack gets past a naive check
    verdict = verify_format(completion, None, LENIENT)
    assert (verdict.status, verdict.details["reason"]) == ("format_error", reason)


_PIECES = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "`", "```", "\n", " ", "a"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_any_tag_soup_gets_a_verdict(completion: str) -> None:
    for config in (STRICT, LENIENT, FormatConfig(tag_count=True)):
        verdict = verify_format(completion, None, config)
        assert verdict.status in ("ok", "format_error")
        assert verdict.score is not None and 0.0 <= verdict.score <= 1.0
        assert (verdict.status == "ok") == (verdict.score == 1.0)
