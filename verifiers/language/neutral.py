"""Blank out what belongs to no natural language: code, math, LaTeX, URLs, e-mail, identifiers.

What is blanked counts neither for nor against the target language, so a Chinese chain of
thought full of ``$x^2+1$`` and ``\\frac{a}{b}`` is still pure Chinese. Every pattern is linear:
unbounded repetitions either stop at a delimiter they cannot contain, or are anchored with a
lookbehind so that a failed match is not retried from inside the same run.
"""

from __future__ import annotations

import re
import unicodedata

from verifiers.format.code_regions import blank_code

# $$…$$ and $…$ (pandoc rule: no space just inside the dollars, no newline in inline math).
_DISPLAY_DOLLARS = re.compile(r"\$\$[^$]*\$\$")
_INLINE_DOLLARS = re.compile(r"\$(?=[^\s$])[^$\n]*(?<=[^\s$])\$|\$[^\s$]\$")
_BEGIN_ENV = re.compile(r"\\begin\{([A-Za-z*]{1,40})\}")
_LATEX_COMMAND = re.compile(r"\\(?:[A-Za-z]+\*?|.)")
_URL = re.compile(r"(?:https?|ftp)://\S+|(?<![\w.])www\.\S+")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++")
# Markup and chat-template tokens: <think>, </answer>, <br/>, <|im_end|>.
_MARKUP = re.compile(r"</?[A-Za-z][\w:-]{0,40}\s*/?>|<\|[^|\n]{0,64}\|>")
# Dotted names (np.array, os.path.join) and calls (sqrt(2), print(x)): program text, not words.
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*+(?:\.[A-Za-z_][A-Za-z0-9_]*+)++")
_CALL_WITH_ARGS = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_.]*+\([^()\n]{0,200}\)")
_CALL = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*+(?=\()")

_PAIRED = (("\\(", "\\)"), ("\\[", "\\]"))


def blank_non_language(text: str) -> str:
    """NFC-normalise ``text`` and replace code, math and other non-language spans with spaces.

    >>> blank_non_language("所以 $x^2=4$，得 \\\\(x=2\\\\)")
    '所以  ，得  '
    """
    # NFC, not NFKC: it composes accents (é as one letter, which the profiles need) and is a
    # no-op check on the usual already-composed text, where NFKC rewrites all CJK punctuation.
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = blank_code(text)
    text = _blank_environments(text)
    text = _DISPLAY_DOLLARS.sub(" ", text)
    for opening, closing in _PAIRED:
        text = _blank_paired(text, opening, closing)
    text = _INLINE_DOLLARS.sub(" ", text)
    for pattern in (_URL, _EMAIL, _MARKUP, _LATEX_COMMAND, _CALL_WITH_ARGS, _DOTTED, _CALL):
        text = pattern.sub(" ", text)
    return text


def _blank_paired(text: str, opening: str, closing: str) -> str:
    # A find-based scan: once a closer is missing after some position it is missing after any
    # later one too, so we stop instead of rescanning (quadratic on many unclosed openers).
    parts: list[str] = []
    pos = 0
    while True:
        start = text.find(opening, pos)
        if start == -1:
            break
        end = text.find(closing, start + len(opening))
        if end == -1:
            break
        parts.append(text[pos:start])
        parts.append(" ")
        pos = end + len(closing)
    parts.append(text[pos:])
    return "".join(parts)


def _blank_environments(text: str) -> str:
    parts: list[str] = []
    pos = 0
    unclosed: set[str] = set()
    for match in _BEGIN_ENV.finditer(text):
        if match.start() < pos:
            continue  # inside an environment already blanked
        name = match.group(1)
        if name in unclosed:
            continue
        end = text.find(f"\\end{{{name}}}", match.end())
        if end == -1:
            unclosed.add(name)
            continue
        parts.append(text[pos : match.start()])
        parts.append(" ")
        pos = end + len(name) + 6
    parts.append(text[pos:])
    return "".join(parts)
