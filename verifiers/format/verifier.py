"""The ``format`` verifier: does a completion follow the R1-Zero or the R1 cold-start layout?

R1-Zero (DeepSeek-R1 paper, table 1): ``<think> reasoning </think> <answer> answer </answer>``.
R1 cold start (paper, section 2.3.1): ``|special_token|<reasoning>|special_token|<summary>``.

Tags are looked for only outside Markdown code, so a tag printed inside a fenced block or an
inline span is text, not structure. Every check is linear in the completion length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from verifiers.format.code_regions import blank_spans, scan_code
from verifiers.format.tags import Tag, find_tags
from verifiers.registry import register
from verifiers.types import Verdict, VerifierInputError

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_:.-]{0,63}")

# open-r1's tag_count reward pays 0.25 per token present exactly once. A completion that fails the
# format must never score like one that passes, so partial credit stops below 1.0.
_TAG_COUNT_CAP = 0.75


@dataclass(frozen=True)
class FormatConfig:
    """Options of the ``format`` verifier.

    Attributes:
        template: ``r1_zero`` (think block then answer block) or ``r1_cold_start``
            (``|special_token|reasoning|special_token|summary``).
        mode: ``strict``: nothing but whitespace outside the blocks (before the first token for
            cold start); ``lenient``: any text before, between and after, but still exactly one
            well-formed, ordered pair of blocks.
        tag_count: on failure, pay open-r1's ``tag_count`` partial credit (0.25 for each of
            ``<think>\\n``, ``\\n</think>\\n``, ``\\n<answer>\\n``, ``\\n</answer>`` found exactly
            once outside code), capped at 0.75. ``r1_zero`` only.
        think_tag: name of the reasoning tag, without brackets.
        answer_tag: name of the answer tag, without brackets.
        special_token: the literal separator of the cold-start layout.
        think_in_prompt: the chat template already opened the think block in the prompt (Qwen3,
            R1-distill templates), so the completion starts inside it and has only ``</think>``.
    """

    template: Literal["r1_zero", "r1_cold_start"] = "r1_zero"
    mode: Literal["strict", "lenient"] = "strict"
    tag_count: bool = False
    think_tag: str = "think"
    answer_tag: str = "answer"
    special_token: str = "|special_token|"
    think_in_prompt: bool = False

    def __post_init__(self) -> None:
        for field_name in ("think_tag", "answer_tag"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not _TAG_NAME.fullmatch(value):
                raise VerifierInputError(
                    f"format.{field_name} must be a tag name like 'think' (letters, digits, _:.-), got {value!r}"
                )
        if self.think_tag == self.answer_tag:
            raise VerifierInputError("format.think_tag and format.answer_tag must differ")
        if not isinstance(self.special_token, str) or not self.special_token.strip():
            raise VerifierInputError("format.special_token must be a non-blank string")
        if self.tag_count and self.template != "r1_zero":
            raise VerifierInputError("format.tag_count applies to template 'r1_zero' only")
        if self.think_in_prompt and self.template != "r1_zero":
            raise VerifierInputError("format.think_in_prompt applies to template 'r1_zero' only")


@register("format", config=FormatConfig, component="format", version="1")
def verify_format(completion: str, reference: Any, config: FormatConfig) -> Verdict:
    """Score 1.0 when the completion follows the configured template, else ``format_error``.

    Args:
        completion: the model's output.
        reference: ignored (format needs no reference).
        config: a ``FormatConfig``.

    Returns:
        ``ok``/1.0 with the answer (or cold-start summary) as ``extracted``; otherwise
        ``format_error`` with 0.0 (or tag_count partial credit) and ``details.reason``.

    >>> verify_format("<think>2+2=4</think><answer>4</answer>", None, FormatConfig()).score
    1.0
    """
    if not isinstance(completion, str):
        raise VerifierInputError(f"completion must be a string, got {type(completion).__name__}")
    if config.template == "r1_cold_start":
        return _check_cold_start(completion, config)
    return _check_r1_zero(completion, config)


def tag_count_score(blanked: str, think_tag: str = "think", answer_tag: str = "answer") -> float:
    """open-r1's ``tag_count`` partial credit on a text whose code regions are already blanked."""
    tokens = (f"<{think_tag}>\n", f"\n</{think_tag}>\n", f"\n<{answer_tag}>\n", f"\n</{answer_tag}>")
    return 0.25 * sum(1 for token in tokens if blanked.count(token) == 1)


class _Failure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _check_r1_zero(completion: str, config: FormatConfig) -> Verdict:
    think, answer = config.think_tag, config.answer_tag
    text = f"<{think}>" + completion if config.think_in_prompt else completion
    spans, unclosed_fence = scan_code(text)
    blanked = blank_spans(text, spans)
    tags = find_tags(blanked, (think, answer))
    base = {"template": config.template, "mode": config.mode}
    try:
        think_open, think_close, answer_open, answer_close = _r1_zero_structure(tags, think, answer)
        if not text[think_open.end : think_close.start].strip():
            raise _Failure("empty_think", f"the <{think}> block is empty")
        if not text[answer_open.end : answer_close.start].strip():
            raise _Failure("empty_answer", f"the <{answer}> block is empty")
        if config.mode == "strict":
            outside = (
                (f"before <{think}>", text[: think_open.start]),
                (f"between </{think}> and <{answer}>", text[think_close.end : answer_open.start]),
                (f"after </{answer}>", text[answer_close.end :]),
            )
            for where, segment in outside:
                if segment.strip():
                    raise _Failure("text_outside_tags", f"strict mode allows only whitespace {where}")
    except _Failure as failure:
        details: dict[str, Any] = {**base, "reason": failure.reason, "message": failure.message}
        if unclosed_fence:
            details["unclosed_code_fence"] = True
        score = 0.0
        if config.tag_count:
            score = min(tag_count_score(blanked, think, answer), _TAG_COUNT_CAP)
            details["tag_count"] = score
        return Verdict(status="format_error", score=score, extracted=None, details=details)
    extracted = text[answer_open.end : answer_close.start].strip()
    return Verdict(status="ok", score=1.0, extracted=extracted, details=base)


def _r1_zero_structure(tags: list[Tag], think: str, answer: str) -> tuple[Tag, Tag, Tag, Tag]:
    """Check tags form exactly ``<think></think><answer></answer>``; return the four tags or fail."""
    blocks: list[tuple[Tag, Tag]] = []
    open_tag: Tag | None = None
    for tag in tags:
        if not tag.closing:
            if open_tag is not None:
                raise _Failure("nested_tags", f"{tag.text} appears inside an open {open_tag.text} block")
            open_tag = tag
        else:
            if open_tag is None or open_tag.name != tag.name:
                raise _Failure(
                    "unbalanced_tags",
                    f"{tag.text} has no matching <{tag.name}> before it"
                    + (
                        " (set think_in_prompt if the prompt opens the think block)"
                        if tag.name == think
                        else ""
                    ),
                )
            blocks.append((open_tag, tag))
            open_tag = None
    if open_tag is not None:
        raise _Failure("unclosed_tag", f"{open_tag.text} is never closed")
    names = [opening.name for opening, _ in blocks]
    for name in (think, answer):
        count = names.count(name)
        if count > 1:
            raise _Failure("repeated_tags", f"<{name}> block appears {count} times, expected once")
    if think not in names:
        raise _Failure("missing_think", f"no <{think}>…</{think}> block")
    if answer not in names:
        raise _Failure("missing_answer", f"no <{answer}>…</{answer}> block")
    if names[0] == answer:
        raise _Failure("answer_before_think", f"the <{answer}> block comes before the <{think}> block")
    (think_open, think_close), (answer_open, answer_close) = blocks
    return think_open, think_close, answer_open, answer_close


def _check_cold_start(completion: str, config: FormatConfig) -> Verdict:
    token = config.special_token
    blanked = blank_spans(completion, scan_code(completion)[0])
    positions: list[int] = []
    pos = blanked.find(token)
    while pos != -1:
        positions.append(pos)
        if len(positions) > 2:
            break
        pos = blanked.find(token, pos + len(token))
    base = {"template": config.template, "mode": config.mode}

    def fail(reason: str, message: str) -> Verdict:
        return Verdict(
            status="format_error",
            score=0.0,
            extracted=None,
            details={**base, "reason": reason, "message": message},
        )

    if len(positions) < 2:
        return fail("missing_special_token", f"expected {token!r} twice, found {len(positions)}")
    if len(positions) > 2:
        return fail("repeated_special_token", f"{token!r} appears more than twice")
    first, second = positions
    reasoning = completion[first + len(token) : second]
    summary = completion[second + len(token) :]
    if config.mode == "strict" and completion[:first].strip():
        return fail("text_outside_tags", f"strict mode allows only whitespace before the first {token!r}")
    if not reasoning.strip():
        return fail("empty_reasoning", "the reasoning between the two special tokens is empty")
    if not summary.strip():
        return fail("empty_summary", "the summary after the second special token is empty")
    return Verdict(status="ok", score=1.0, extracted=summary.strip(), details=base)
