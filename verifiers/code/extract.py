"""Find the program in a model's completion."""

from __future__ import annotations

import re
from typing import Literal

ExtractMode = Literal["last_block", "first_block", "answer_tag", "raw"]

# Canonical language name -> every spelling we accept (fence info strings, test specs, requests).
LANGUAGE_ALIASES: dict[str, tuple[str, ...]] = {
    "python": ("python", "py", "python3", "py3"),
    "cpp": ("cpp", "c++", "cxx", "cc", "g++"),
    "javascript": ("javascript", "js", "node", "nodejs"),
}
_ALIAS_TO_LANGUAGE = {alias: lang for lang, aliases in LANGUAGE_ALIASES.items() for alias in aliases}

# A closed fence: ``` or ~~~, an optional info string, the body, the same fence again on its own line.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.M | re.S,
)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def canonical_language(name: str | None) -> str | None:
    """Map an alias (``py``, ``c++``, ``node``...) to its canonical name; ``None`` if unknown."""
    if name is None:
        return None
    return _ALIAS_TO_LANGUAGE.get(name.strip().lower())


def fenced_blocks(text: str, language: str) -> list[str]:
    """Bodies of the closed fenced blocks for ``language``, in order.

    Blocks tagged with the language (any alias) are preferred; untagged blocks are used only when
    no tagged one exists. Blocks tagged with another language never count.
    """
    tagged: list[str] = []
    untagged: list[str] = []
    for m in _FENCE.finditer(text):
        info = m.group("info").strip().split()
        tag = info[0].lower().lstrip("{.").rstrip("}") if info else ""
        if not tag:
            untagged.append(m.group("body"))
        elif _ALIAS_TO_LANGUAGE.get(tag) == language:
            tagged.append(m.group("body"))
    return tagged or untagged


def _last_answer(text: str) -> str | None:
    answers = _ANSWER.findall(text)
    return answers[-1] if answers else None


def extract_program(completion: str, language: str, mode: ExtractMode = "last_block") -> str | None:
    """The program to run, or ``None`` when the completion holds none.

    Args:
        completion: the model's text.
        language: canonical language of the wanted program.
        mode: ``last_block``/``first_block``: that fenced block of the language, searched inside
            the last ``<answer>…</answer>`` when it holds one, else in the completion outside
            ``<think>``; ``answer_tag``: the last ``<answer>`` (its last block if it has one, else its
            text); ``raw``: the completion outside ``<think>`` as is.
    """
    visible = _THINK.sub("", completion)
    if mode == "raw":
        program = visible
    elif mode == "answer_tag":
        answer = _last_answer(visible)
        if answer is None:
            return None
        blocks = fenced_blocks(answer, language)
        program = blocks[-1] if blocks else answer
    else:
        answer = _last_answer(visible)
        blocks = fenced_blocks(answer, language) if answer is not None else []
        if not blocks:
            blocks = fenced_blocks(visible, language)
        if not blocks:
            return None
        program = blocks[0] if mode == "first_block" else blocks[-1]
    return program if program.strip() else None
