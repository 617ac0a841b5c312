"""Multiple-choice answers: one letter, however it is dressed (``(C)``, ``\\textbf{(C) } 12``)."""

from __future__ import annotations

import re
from functools import lru_cache

_GOLD_LETTER = re.compile(r"^\(?\s*([A-Za-z])\s*\)?$")


def gold_letter(gold: str, choices: str) -> str | None:
    """The letter of a multiple-choice gold (``C``, ``(C)``), or None when the gold is not one."""
    m = _GOLD_LETTER.match(gold.strip())
    if m is None:
        return None
    letter = m.group(1)
    # A lone lower-case letter is a variable or a constant (``e``), not a choice.
    return letter if letter.isupper() and letter in choices else None


@lru_cache(maxsize=64)
def _patterns(choices: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    cls = f"[{re.escape(choices)}]"
    leading = re.compile(
        rf"^(?:(?:option|choice|answer)\s*:?\s*)?[(\[]?\s*({cls})\s*(?:[)\].:]|$|\s)", re.IGNORECASE
    )
    standalone = re.compile(rf"(?<![A-Za-z\\])[(\[]?({cls})[)\]]?(?![A-Za-z])")
    return leading, standalone


def predicted_letters(answer: str, choices: str) -> tuple[str, ...]:
    """The choice letters an answer commits to, in order (several = a hedge)."""
    text = answer.strip().replace("$", "")
    text = re.sub(r"\\(?:textbf|text|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", text).replace("*", "").strip()
    leading, standalone = _patterns(choices)
    m = leading.match(text)
    if m is None:
        return ()
    if m.group(1).islower() and not re.fullmatch(r"[(\[]?\s*[a-z]\s*[)\].]?", text):
        return ()  # "a triangle" is prose; a lone "c" or "(c)" is a choice
    first = m.group(1).upper()
    found = [first]
    # Other letters standing alone ("C or D", "(B), (C)") make the answer a hedge; lower-case
    # words like "a" are prose, so only upper-case letters count after the first.
    for other in standalone.finditer(text[m.end() :]):
        letter = other.group(1)
        if letter.isupper() and letter not in found:
            found.append(letter)
    return tuple(found)
