"""Turning an extracted answer into one canonical LaTeX-ish string.

Only rewrites that cannot merge distinct answers happen here: wrappers (``$``, ``\\text``,
``\\left``), fraction spellings, thousands separators that are unambiguous (``25\\,000``,
``1{,}000``, ``4 096``, ``1,000`` but never ``3,5``), degree/percent marks and units after a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WRAPPERS = (
    (re.compile(r"\\displaystyle"), ""),
    (re.compile(r"^\s*\\(?:therefore|implies|Rightarrow|Longrightarrow|to)\s*"), ""),
    (re.compile(r"\\lbrace\b"), r"\\{"),
    (re.compile(r"\\rbrace\b"), r"\\}"),
    (re.compile(r"\\lbrack\b"), "["),
    (re.compile(r"\\rbrack\b"), "]"),
    (re.compile(r"\\(?:left|right)\s*\."), ""),  # invisible delimiters
    (re.compile(r"\\(?:left|right)\s*(\\[{}]|\\?[()\[\]|])"), r"\1"),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (
        re.compile(
            r"\\(?:mathrm|mathbf|textbf|textit|text|mbox|operatorname|mathit|boldsymbol)\s*\{([^{}]*)\}"
        ),
        r"\1",
    ),
    (re.compile(r"\\(?:mathrm|textbf|text|mathbf)\s*\{"), "{"),
    (re.compile(r"\\(?:dollar|\$)"), ""),
    (re.compile(r"\\!|\\;|\\:|\\quad|\\qquad"), " "),
    (re.compile(r"\\le(?!ft)(?:q)?\b"), r"\\leq"),
    (re.compile(r"\\ge(?:q)?\b"), r"\\geq"),
    (re.compile(r"\\ne(?:q)?\b"), r"\\neq"),
    (re.compile(r"\\infin(?:ity)?\b|∞"), r"\\infty"),
    (re.compile(r"\\varnothing\b|∅|\\\{\s*\\\}"), r"\\emptyset"),
    (re.compile(r"≤"), r"\\leq "),
    (re.compile(r"≥"), r"\\geq "),
    (re.compile(r"≠"), r"\\neq "),
    (re.compile(r"±"), r"\\pm "),
    (re.compile(r"−"), "-"),
    (re.compile(r"π"), r"\\pi "),
    (re.compile(r"√"), r"\\sqrt"),
)
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\s*\bdeg(?:rees?)?\b\.?")
_PERCENT = re.compile(r"\\%|%|\s*\bpercent\b")
# {a \over b}
_OVER = re.compile(r"\{([^{}]*)\\over([^{}]*)\}")
# Thousands separators that are unambiguous.
_THIN_SPACE_GROUP = re.compile(r"(?<=\d)(?:\\,|\\ |~|\{,\}|\\thinspace\s*)(?=\d{3}(?!\d))")
_MATH_THOUSANDS = re.compile(r"(?<=\d),\s*\\!\s*(?=\d{3}(?!\d))")
_SPACE_GROUP = re.compile(r"^(\d{1,3})((?: \d{3})+)$")
_COMMA_GROUP = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,]|\.\d)")
_COMMA_GROUP_DECIMAL = re.compile(r"^-?\d{1,3}(?:,\d{3})+\.\d+$")
# Units after a plain number: words only, never digits or maths after them.
_NUMBER_THEN_WORDS = re.compile(
    r"^(?P<lhs>[A-Za-z]\w*\s*=\s*)?"
    r"(?P<num>-?(?:\d+(?:\.\d+)?(?:/\d+)?|\d*\s*\\frac\{\d+\}\{\d+\}))"
    r"\s*(?:\\ )?\s*(?P<unit>[A-Za-z][A-Za-z .\-]*(?:\^\{?[23]\}?)?)$"
)
_SCALE_WORDS = {
    "thousand",
    "million",
    "billion",
    "trillion",
    "hundred",
    "dozen",
    "half",
    "percent",
    "pi",
    "i",
}
_CURRENCY = re.compile(r"^(?:\\\$|\$|USD|US\$|€|£|¥)\s*")
_ANSWER_PREAMBLE = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:answer|result|solution)\s*(?:is|:|=)\s*:?\s*|^therefore,?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Normalised:
    """A canonical answer string plus the marks that were taken off it."""

    text: str
    degrees: bool = False
    percent: bool = False
    unit: str = ""


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    # Inline $...$ and $$...$$: drop the dollars but keep a currency "\$".
    s = re.sub(r"(?<!\\)\$", "", s)
    s = s.replace("**", "").replace("__", "")
    return s.strip()


def _strip_trailing(s: str) -> str:
    prev = None
    while prev != s:
        prev = s
        s = s.strip()
        # "!" is a factorial after a number; only after a word ("Yes!") is it punctuation.
        s = re.sub(r"(?:\\\\|[.;?]|(?<=[A-Za-z])!|\\,|\\ )+$", "", s).strip()
        s = _ANSWER_PREAMBLE.sub("", s)
    return s


def _thousands(s: str) -> str:
    s = _THIN_SPACE_GROUP.sub("", s)
    m = _SPACE_GROUP.match(s)
    if m:
        s = m.group(1) + m.group(2).replace(" ", "")
    if _COMMA_GROUP_DECIMAL.match(s):
        return s.replace(",", "")
    # "1,000" is a thousand only when nothing else in the answer is a comma list.
    if s.count(",") and all(_COMMA_GROUP.fullmatch(tok.strip()) for tok in re.split(r"\s+", s) if "," in tok):
        s = _COMMA_GROUP.sub(lambda m: m.group(1).replace(",", ""), s)
    return s


def normalise(answer: str) -> Normalised:
    """Canonicalise an extracted answer string.

    >>> normalise(r"$\\dfrac{1}{2}$").text
    '\\\\frac{1}{2}'
    >>> normalise(r"25\\,000").text
    '25000'
    """
    s = _strip_math_delimiters(answer)
    s = _strip_trailing(s)
    # MATH writes thousands as "1,\!250": drop the pair before "\!" becomes a space.
    s = _MATH_THOUSANDS.sub("", s)
    for pattern, repl in _WRAPPERS:
        s = pattern.sub(repl, s)
    while True:
        new = _OVER.sub(r"\\frac{\1}{\2}", s)
        if new == s:
            break
        s = new
    degrees = bool(_DEGREE.search(s))
    s = _DEGREE.sub("", s)
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    s = _CURRENCY.sub("", s.strip())
    s = _strip_trailing(s)
    s = _thousands(s.strip())
    unit = ""
    m = _NUMBER_THEN_WORDS.match(s)
    if (
        m
        and not (set(m.group("unit").lower().split()) & _SCALE_WORDS)
        and not _is_variable_tail(m.group("unit"))
    ):
        s, unit = (m.group("lhs") or "") + m.group("num"), m.group("unit").strip()
    s = re.sub(r"\s+", " ", s).strip()
    return Normalised(s, degrees, percent, unit)


def _is_variable_tail(tail: str) -> bool:
    # "2x" or "3 n" is an expression, not "3 units": a lone letter is a variable.
    return len(tail.strip()) == 1


def strip_assignment(text: str) -> str:
    """``x = 5`` → ``5``; ``6 \\times 7 = 42`` → ``42``: the last side of a chain of ``=``.

    Only a left side that is a short name or an arithmetic chain is dropped, so genuine
    equations (``y = 2x + 3``) are kept whole by the caller when the gold is an equation.
    """
    parts = [p.strip() for p in re.split(r"(?<![<>!\\])=(?!=)", text)]
    if len(parts) < 2 or not parts[-1]:
        return text
    return parts[-1]
