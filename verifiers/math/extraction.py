"""Isolating the committed final answer of a completion.

Only what the model committed to counts: the ``<answer>`` block, else the last ``\\boxed{}`` /
``\\fbox{}``, else an explicit "final answer is ..." phrase. The reasoning (``<think>``) is never
mined for numbers, and a completion cut off mid-reasoning has no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.math.config import AnswerSource

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Explicit commitments outside any tag: "final answer is", "the answer is", "Answer:", GSM8K's
# "#### 42". Bold markers around the phrase are tolerated.
_FINAL_PHRASE = re.compile(
    r"(?:final\s+answer|the\s+answer)\s*(?:is|:)?\s*[:=]?\s*\**\s*:?\s*(?P<ans>[^\n]+)"
    r"|^\s*\**\s*answer\s*\**\s*:\s*\**(?P<ans2>[^\n]+)"
    r"|^\s*####\s*(?P<ans3>[^\n]+)",  # GSM8K's closing line
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Extraction:
    """What was committed: ``answers`` holds every committed candidate (several = a hedge)."""

    answers: tuple[str, ...]
    rule: str
    truncated: bool = False


def _balanced_group(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group whose ``{`` is at ``start``; None when it never closes."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if c == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif c == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def boxed_contents(text: str) -> tuple[list[str], bool]:
    """All ``\\boxed{...}``/``\\fbox{...}`` contents in order, and whether one was left unclosed."""
    out: list[str] = []
    pos = 0
    while True:
        m = _BOX.search(text, pos)
        if m is None:
            return out, False
        group = _balanced_group(text, m.end() - 1)
        if group is None:
            return out, True
        out.append(group[0])
        pos = group[1]


def _strip_reasoning(completion: str) -> tuple[str, bool]:
    """Text after the reasoning, and whether the reasoning was left unfinished."""
    closes = list(_THINK_CLOSE.finditer(completion))
    if closes:
        tail = completion[closes[-1].end() :]
        # A fresh <think> after the last </think> is reasoning again, never finished.
        return tail, bool(_THINK_OPEN.search(tail))
    if _THINK_OPEN.search(completion):
        return "", True
    return completion, False


def _distinct(values: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(" ".join(v.split()), None)
    return tuple(seen)


def _answer_blocks(text: str) -> tuple[list[str], bool]:
    """Contents of every ``<answer>...</answer>`` and whether one is left open (linear time)."""
    lower = text.lower()
    blocks: list[str] = []
    pos = 0
    while True:
        start = lower.find("<answer>", pos)
        if start < 0:
            return blocks, False
        end = lower.find("</answer>", start + 8)
        if end < 0:
            return blocks, True
        blocks.append(text[start + 8 : end])
        pos = end + 9


def _from_answer_tag(text: str) -> Extraction | None:
    blocks, unclosed = _answer_blocks(text)
    if unclosed:
        return Extraction((), "answer_tag_unclosed", truncated=True)
    if not blocks:
        return None
    answers: list[str] = []
    for block in blocks:
        boxes, unclosed = boxed_contents(block)
        if unclosed:
            return Extraction((), "answer_tag_box_unclosed", truncated=True)
        if boxes:
            answers.extend(_distinct(boxes))
        else:
            # "<answer>Since 6*7=42, the answer is 42</answer>": the phrase commits, not the prose.
            phrase = _from_phrase(block)
            answers.append(phrase.answers[0] if phrase is not None else block.strip())
    return Extraction(_distinct(answers), "answer_tag")


def _from_boxes(text: str) -> Extraction | None:
    boxes, unclosed = boxed_contents(text)
    if unclosed:
        return Extraction((), "boxed_unclosed", truncated=True)
    if not boxes:
        return None
    return Extraction(_distinct(boxes), "boxed")


def _from_phrase(text: str) -> Extraction | None:
    last = None
    for m in _FINAL_PHRASE.finditer(text):
        last = m
    if last is None:
        return None
    ans = _trim_phrase_answer(last.group("ans") or last.group("ans2") or last.group("ans3") or "")
    return Extraction((ans,), "final_answer_phrase") if ans else None


_MATH_SPAN = re.compile(r"^(\$\$|\$|\\\(|\\\[)(.+?)(\$\$|\$|\\\)|\\\])")
_ALTERNATIVE_TAIL = re.compile(
    r"\b(?:or|possibly|maybe|perhaps|probably|either|alternatively)\b", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<!\d)\.\s|\.\s+(?=[A-Z])|\.$")


def _trim_phrase_answer(ans: str) -> str:
    """The answer a phrase commits to: its first math span, else the text up to the sentence end.

    "The final answer is $42$. I hope it is correct." commits to ``42``.
    """
    ans = ans.strip().lstrip("*").strip()
    m = _MATH_SPAN.match(ans)
    if m is not None:
        rest = ans[m.end() :]
        end = _SENTENCE_END.search(rest)
        rest = rest[: end.start()] if end else rest
        # "$42$ (or possibly $43$)": an alternative after the span keeps the hedge in the answer.
        if _ALTERNATIVE_TAIL.search(rest):
            return (m.group(2) + " " + rest).strip()
        return m.group(2).strip()
    end = _SENTENCE_END.search(ans)
    return (ans[: end.start()] if end else ans).strip()


def extract_answer(completion: str, source: AnswerSource, *, strict: bool) -> Extraction:
    """Find the committed final answer(s) of ``completion``.

    Args:
        completion: the model's whole output.
        source: ``auto``, ``answer_tag`` or ``boxed`` (see ``MathConfig``).
        strict: when False, a short completion that is nothing but an answer counts as committed.

    Returns:
        An ``Extraction``; ``answers`` is empty when nothing was committed.

    >>> extract_answer("<think>6*7=42</think><answer>41</answer>", "auto", strict=True).answers
    ('41',)
    """
    text, unfinished = _strip_reasoning(completion)
    if unfinished:
        return Extraction((), "reasoning_unfinished", truncated=True)
    if source == "answer_tag":
        return _from_answer_tag(text) or Extraction((), "no_answer_tag")
    if source == "boxed":
        return _from_boxes(text) or Extraction((), "no_box")
    for step in (_from_answer_tag, _from_boxes, _from_phrase):
        found = step(text)
        if found is not None:
            return found
    bare = text.strip()
    if not strict and bare and len(bare) <= 40 and "\n" not in bare and not _looks_like_prose(bare):
        return Extraction((bare,), "bare_completion")
    return Extraction((), "nothing_committed")


def _looks_like_prose(text: str) -> bool:
    words = re.findall(r"[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", " ", text))
    return len(words) > 2
