"""Unicode scripts of letters, and which scripts each supported language is written in.

Python's ``unicodedata`` has no script property, so the block ranges that matter for reasoning
text are listed here. A character outside them has no script and is never counted.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

# (first, last, script), sorted and disjoint. Blocks, not exact script extents: good enough for
# letters, and punctuation inside a block never reaches here (tokens are runs of letters).
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "Latin"),
    (0x0061, 0x007A, "Latin"),
    (0x00C0, 0x024F, "Latin"),
    (0x0250, 0x02AF, "Latin"),
    (0x0370, 0x03FF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"),
    (0x0530, 0x058F, "Armenian"),
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"),
    (0x0750, 0x077F, "Arabic"),
    (0x08A0, 0x08FF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0980, 0x09FF, "Bengali"),
    (0x0A00, 0x0A7F, "Gurmukhi"),
    (0x0A80, 0x0AFF, "Gujarati"),
    (0x0B00, 0x0B7F, "Oriya"),
    (0x0B80, 0x0BFF, "Tamil"),
    (0x0C00, 0x0C7F, "Telugu"),
    (0x0C80, 0x0CFF, "Kannada"),
    (0x0D00, 0x0D7F, "Malayalam"),
    (0x0D80, 0x0DFF, "Sinhala"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x0E80, 0x0EFF, "Lao"),
    (0x1000, 0x109F, "Myanmar"),
    (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul"),
    (0x1780, 0x17FF, "Khmer"),
    (0x1E00, 0x1EFF, "Latin"),
    (0x1F00, 0x1FFF, "Greek"),
    (0x3005, 0x3005, "Han"),
    (0x3007, 0x3007, "Han"),
    (0x3040, 0x309F, "Kana"),
    (0x30A0, 0x30FF, "Kana"),
    (0x3130, 0x318F, "Hangul"),
    (0x31F0, 0x31FF, "Kana"),
    (0x3400, 0x4DBF, "Han"),
    (0x4E00, 0x9FFF, "Han"),
    (0xAC00, 0xD7AF, "Hangul"),
    (0xF900, 0xFAFF, "Han"),
    (0xFB50, 0xFDFF, "Arabic"),
    (0xFE70, 0xFEFF, "Arabic"),
    (0x20000, 0x2FFFF, "Han"),
)
_STARTS = [r[0] for r in _RANGES]


@lru_cache(maxsize=4096)
def script_of(char: str) -> str | None:
    """The script of one character, or None when it is not a letter of a known script."""
    code = ord(char)
    k = bisect.bisect_right(_STARTS, code) - 1
    if k >= 0 and _RANGES[k][0] <= code <= _RANGES[k][1]:
        return _RANGES[k][2]
    return None


# Scripts counted per character (no spaces between words); every other script counts per word.
PER_CHARACTER_SCRIPTS = frozenset({"Han", "Kana"})

# Language (ISO 639-1) → the scripts its words are written in.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{
        code: frozenset({"Latin"})
        for code in ("en", "es", "fr", "de", "it", "pt", "nl", "pl", "tr", "vi", "id", "sv")
    },
    "ru": frozenset({"Cyrillic"}),
    "uk": frozenset({"Cyrillic"}),
    "ar": frozenset({"Arabic"}),
    "fa": frozenset({"Arabic"}),
    "zh": frozenset({"Han"}),
    "ja": frozenset({"Han", "Kana"}),
    "ko": frozenset({"Hangul"}),
    "el": frozenset({"Greek"}),
    "he": frozenset({"Hebrew"}),
    "hi": frozenset({"Devanagari"}),
    "bn": frozenset({"Bengali"}),
    "ta": frozenset({"Tamil"}),
    "te": frozenset({"Telugu"}),
    "th": frozenset({"Thai"}),
    "ka": frozenset({"Georgian"}),
    "hy": frozenset({"Armenian"}),
}

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(sorted(LANGUAGE_SCRIPTS))

# Script → the supported languages written in it (Han is settled separately: zh vs ja by kana).
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {}
for _code, _scripts in sorted(LANGUAGE_SCRIPTS.items()):
    for _script in _scripts:
        SCRIPT_LANGUAGES.setdefault(_script, ())
        SCRIPT_LANGUAGES[_script] += (_code,)
