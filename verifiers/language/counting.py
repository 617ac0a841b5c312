"""Count the words of a text by language: scripts first, the statistical detector only within a script.

Units: Han and Kana count per character (no spaces between words); every other script counts
per space-separated word, Hangul included (Korean puts spaces between words). Thai counts per
run between spaces, a phrase rather than a word; it only matters when Thai is mixed with others.

Han is Chinese, unless the text is Japanese: a sentence with kana is Japanese, and a sentence of
Han alone is Japanese when kana make up at least a fifth of the whole text's Han and kana and the
sentence holds none of the Chinese markers (的, 了, 们, 这, 是, ...).
Words of a script several supported languages share are settled per sentence by the profiles
(or by ``langdetect`` when that backend is chosen). The whole text's shares of votes are added to
each sentence's votes with the weight of one function word, so a short sentence with little
evidence follows the text around it; a text with no evidence at all stays undecided among that
script's languages (a label like ``en/es/fr``, which counts for each of them).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from verifiers.language.neutral import blank_non_language
from verifiers.language.profiles import MIN_EVIDENCE, decide, load_profiles, score_words
from verifiers.language.scripts import SCRIPT_LANGUAGES, script_of

_HAN = r"\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_KANA = r"\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"
# Combining marks and Indic/SE-Asian blocks: their vowel signs are not \w, but belong inside words.
_MARKS = r"\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0900-\u0963\u0966-\u0dff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
_TOKEN = re.compile(rf"(?P<han>[{_HAN}]+)|(?P<kana>[{_KANA}]+)|(?P<word>(?:[^\W{_HAN}{_KANA}]|[{_MARKS}])+)")
_SENTENCE_END = re.compile(r"[.!?;:\n\u3002\uff01\uff1f\uff1b\uff1a\u0964\u0965\u061f\u06d4]+")
_IDENTIFIER_MARK = re.compile(r"[\d_]|[a-z][A-Z]")  # a digit, an underscore, or camelCase

# Scripts whose one-letter words are variables (x, n, α), not words.
_SINGLE_LETTER_NEUTRAL = frozenset({"Latin", "Greek"})
# Function names and units that read as words but are notation in any language.
_NOTATION = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp lim sup inf gcd lcm "
    "mod det dim ker deg sgn arg max min mm cm km kg mg ml mol hz kb mb gb kmh mph".split()
)
# A sentence of Han without kana is Japanese when kana are at least this share of Han + kana
# in the whole text, unless it holds a Chinese marker: function words and simplified forms that
# Japanese prose does not use, so Chinese sentences in a Japanese text stay Chinese.
_JAPANESE_KANA_SHARE = 0.2
_CHINESE_MARKERS = re.compile(
    "[的了们這这个個那么麼吗嗎呢吧是我你他她它说說为為对對还還没沒里裡时時会會过過样樣从從让讓给給把被该該种種觉覺边邊就都也很再]"
)

# Weight of the whole text's language shares when deciding one sentence (see _with_prior).
PRIOR_WEIGHT = 1.0

# Segment-level language decider for a backend: (script, words, segment text) -> languages.
Decider = Callable[[str, list[str], str], tuple[str, ...]]


@dataclass
class _Segment:
    text: str
    han: int = 0
    kana: int = 0
    chinese_marker: bool = False
    # script → countable words (lower-cased) of that script in this sentence
    words: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LanguageCounts:
    """Counted units per language label; a label with ``/`` is undecided among its languages."""

    units: dict[str, int]
    neutral: int

    @property
    def total(self) -> int:
        return sum(self.units.values())

    def share(self, language: str) -> float | None:
        """Share of units whose label admits ``language``; None when nothing was counted."""
        total = self.total
        if total == 0:
            return None
        hits = sum(n for label, n in self.units.items() if language in label.split("/"))
        return hits / total


def count_languages(text: str, decider: Decider | None = None) -> LanguageCounts:
    """Blank non-language spans, then count the units of ``text`` per language label.

    Args:
        text: a chain of thought (or a prompt).
        decider: a backend that names the language of a sentence's words of one shared script;
            None uses the built-in profiles with the whole-text fallback described above.
    """
    segments, neutral = _segments(blank_non_language(text))
    units: Counter[str] = Counter()
    han_total = sum(s.han for s in segments)
    kana_total = sum(s.kana for s in segments)
    japanese_text = kana_total > 0 and kana_total >= _JAPANESE_KANA_SHARE * (han_total + kana_total)
    votes = [{script: score_words(script, words) for script, words in s.words.items()} for s in segments]
    prior = _whole_text_shares(votes) if decider is None else {}
    for segment, segment_votes in zip(segments, votes, strict=True):
        if segment.kana:
            units["ja"] += segment.kana + segment.han
        elif segment.han:
            japanese = japanese_text and not segment.chinese_marker
            units["ja" if japanese else "zh"] += segment.han
        for script, words in segment.words.items():
            candidates = SCRIPT_LANGUAGES.get(script)
            if not candidates:
                units[f"und-{script}"] += len(words)
                continue
            if len(candidates) == 1 or script not in load_profiles():
                units["/".join(candidates)] += len(words)
                continue
            if decider is not None:
                decided = decider(script, words, segment.text)
            else:
                # With a prior, the text around already gave evidence: the sentence's best guess
                # stands however little it adds. Without one, it needs evidence of its own.
                script_prior = prior.get(script, {})
                combined = _with_prior(segment_votes[script], script_prior)
                decided = decide(combined, 0.0 if script_prior else MIN_EVIDENCE)
            units["/".join(decided or candidates)] += len(words)
    return LanguageCounts(units=dict(units), neutral=neutral)


def _whole_text_shares(votes: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per shared script, each language's share of the whole text's votes (the prior)."""
    pooled: dict[str, dict[str, float]] = {}
    for segment_votes in votes:
        for script, scores in segment_votes.items():
            script_pool = pooled.setdefault(script, {})
            for lang, vote in scores.items():
                script_pool[lang] = script_pool.get(lang, 0.0) + vote
    shares: dict[str, dict[str, float]] = {}
    for script, totals in pooled.items():
        total = sum(totals.values())
        if total >= MIN_EVIDENCE:
            shares[script] = {lang: s / total for lang, s in totals.items()}
    return shares


def _with_prior(scores: dict[str, float], prior: dict[str, float]) -> dict[str, float]:
    # The whole text's verdict weighs as much as one unambiguous word: a short sentence ("Also
    # x = 3.") follows the text around it, a sentence with real evidence decides for itself.
    combined = dict(scores)
    for lang, share in prior.items():
        combined[lang] = combined.get(lang, 0.0) + PRIOR_WEIGHT * share
    return combined


def _segments(blanked: str) -> tuple[list[_Segment], int]:
    segments: list[_Segment] = []
    neutral = 0
    for sentence in _SENTENCE_END.split(blanked):
        segment = _Segment(text=sentence)
        for match in _TOKEN.finditer(sentence):
            kind = match.lastgroup
            token = match.group()
            if kind == "han":
                segment.han += len(token)
                segment.chinese_marker = segment.chinese_marker or bool(_CHINESE_MARKERS.search(token))
            elif kind == "kana":
                segment.kana += len(token)
            else:
                script = _word_script(token)
                if script is None or _is_notation(token, script):
                    neutral += 1
                    continue
                segment.words.setdefault(script, []).append(token.lower())
        if segment.han or segment.kana or segment.words:
            segments.append(segment)
    return segments, neutral


def _word_script(word: str) -> str | None:
    if word.isascii():
        return "Latin"  # letters, digits and _ only; digits and _ make it neutral anyway
    for char in word:
        script = script_of(char)
        if script is not None:
            return script
    return None


def _is_notation(word: str, script: str) -> bool:
    """Numbers, identifiers (digits, snake_case, camelCase), acronyms, variables, math names."""
    if _IDENTIFIER_MARK.search(word):
        return True
    if script in _SINGLE_LETTER_NEUTRAL and len(word) == 1:
        return True
    if len(word) > 1 and word.isupper() and script != "Hangul":
        return True
    return word.lower() in _NOTATION
