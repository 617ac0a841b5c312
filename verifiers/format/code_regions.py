"""Find Markdown code regions (fenced blocks and inline code spans) in linear time.

Tags written inside code are text, not structure: a model that prints ``<answer>`` inside a
fenced block has not answered. Callers blank these regions (same length, so offsets still map
back to the original text) before they look for tags or count words.
"""

from __future__ import annotations

import re

_BACKTICK_RUN = re.compile(r"`+")
_NOT_NEWLINE = re.compile(r"[^\n]")


def code_spans(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` of every code region, in order, delimiters included."""
    return scan_code(text)[0]


def scan_code(text: str) -> tuple[list[tuple[int, int]], bool]:
    """Return the code regions of ``text`` and whether the last one is a fence left unclosed.

    Rules (a pragmatic subset of CommonMark, tuned against tag hacks):

    - a run of three or more backticks opens a fence anywhere on a line; it is closed by the next
      run at least as long. An unclosed fence runs to the end of the text, as Markdown renders it.
    - a run of one or two backticks opens an inline span closed by the next run of exactly the
      same length on the same line; an unclosed run is a literal backtick.

    Each backtick run is visited a bounded number of times, so the scan is linear: an opener that
    finds no closer proves that no later run can close an opener of that length on that line.
    """
    runs = [(m.start(), m.end()) for m in _BACKTICK_RUN.finditer(text)]
    spans: list[tuple[int, int]] = []
    # For inline openers: (line end, run length) pairs known to have no closer further on.
    dead_inline: set[tuple[int, int]] = set()
    i = 0
    n_runs = len(runs)
    line_end = -1
    while i < n_runs:
        start, end = runs[i]
        length = end - start
        if length >= 3:
            j = i + 1
            while j < n_runs and runs[j][1] - runs[j][0] < length:
                j += 1
            if j == n_runs:
                spans.append((start, len(text)))
                return spans, True
            spans.append((start, runs[j][1]))
            i = j + 1
            continue
        if line_end < end:  # only search for the next newline once per line: keeps the scan linear
            line_end = text.find("\n", end)
            if line_end == -1:
                line_end = len(text)
        if (line_end, length) in dead_inline:
            i += 1
            continue
        j = i + 1
        while j < n_runs and runs[j][0] < line_end and runs[j][1] - runs[j][0] != length:
            j += 1
        if j < n_runs and runs[j][0] < line_end:
            spans.append((start, runs[j][1]))
            i = j + 1
        else:
            dead_inline.add((line_end, length))
            i += 1
    return spans, False


def blank_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each span with spaces (newlines kept), so lengths and line structure survive."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        parts.append(text[pos:start])
        parts.append(_blank(text[start:end]))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def blank_code(text: str) -> str:
    """Return ``text`` with every code region replaced by whitespace of the same length.

    >>> blank_code("a `<b>` c")
    'a       c'
    """
    return blank_spans(text, code_spans(text))


def _blank(segment: str) -> str:
    # Keep newlines so that line-based rules downstream (sentence splits, inline spans) still hold.
    return _NOT_NEWLINE.sub(" ", segment)
