"""Locate ``<think>``/``<answer>``-style tags outside code, and pull out the blocks they delimit.

Everything here is pure and linear in the length of the text: tags are found with one
``finditer`` over a literal alternation after code regions have been blanked out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from verifiers.format.code_regions import blank_code


@dataclass(frozen=True)
class Tag:
    """One tag occurrence: ``name`` (e.g. ``think``), whether it closes, and its span."""

    name: str
    closing: bool
    start: int
    end: int

    @property
    def text(self) -> str:
        return f"</{self.name}>" if self.closing else f"<{self.name}>"


@lru_cache(maxsize=64)
def _tag_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(n) for n in names)
    return re.compile(rf"<(/?)({alternation})>")


def find_tags(blanked: str, names: tuple[str, ...]) -> list[Tag]:
    """All occurrences of ``<name>`` / ``</name>`` for the given names in an already-blanked text."""
    return [
        Tag(name=m.group(2), closing=bool(m.group(1)), start=m.start(), end=m.end())
        for m in _tag_pattern(names).finditer(blanked)
    ]


def last_block(text: str, tag: str) -> tuple[int, int] | None:
    """Span of the contents of the last ``<tag>…</tag>`` pair outside code, or None.

    The pair is the last closing tag and the nearest opening tag before it, so the contents
    hold no further tag of that name.
    """
    tags = find_tags(blank_code(text), (tag,))
    for k in range(len(tags) - 1, -1, -1):
        if tags[k].closing:
            if k > 0 and not tags[k - 1].closing:
                return tags[k - 1].end, tags[k].start
            return None
    return None


def extract_answer_block(text: str, answer_tag: str = "answer") -> str | None:
    """Return the stripped contents of the last ``<answer>…</answer>`` block outside code.

    Tags inside fenced or inline code do not count. Structure (one block, order, nothing around
    it) is the ``format`` verifier's job; this helper only extracts, so that accuracy verifiers can
    judge the answer of a completion whose format is imperfect.

    Args:
        text: the completion.
        answer_tag: the tag name, without angle brackets.

    Returns:
        The block's contents with surrounding whitespace removed, or None when there is no
        complete block.

    >>> extract_answer_block("<think>2+2</think> <answer> 4 </answer>")
    '4'
    """
    span = last_block(text, answer_tag)
    if span is None:
        return None
    return text[span[0] : span[1]].strip()


def chain_of_thought(text: str, think_tag: str = "think") -> str:
    """The reasoning part of a completion: the first ``<think>`` block if any, else all of it.

    An unclosed ``<think>`` runs to the end; a lone ``</think>`` (the chat template put the
    opening tag in the prompt) means everything before it is reasoning.
    """
    tags = find_tags(blank_code(text), (think_tag,))
    if not tags:
        return text
    first = tags[0]
    if first.closing:
        return text[: first.start]
    for tag in tags[1:]:
        if tag.closing:
            return text[first.end : tag.start]
    return text[first.end :]
