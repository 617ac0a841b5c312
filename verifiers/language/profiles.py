"""A small statistical detector for languages that share a script (en/es/fr/de/..., ru/uk, ar/fa).

The profiles in ``profiles.json`` are ours: for each language, frequent function words plus
the vocabulary of step-by-step reasoning ("therefore", "entonces", "donc", "daher"), and the
letters with diacritics that mark it. A word votes for every language whose list holds it,
split evenly among them, and each marked letter adds half a vote, split likewise. Scores add up,
so a sentence's score and a whole text's score come from the same counts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Beside this module, so that the package-data rule "*.json" ships it in the wheel.
_DATA = Path(__file__).with_name("profiles.json")

# One unambiguous function word is the least evidence we act on.
MIN_EVIDENCE = 1.0
_CHAR_WEIGHT = 0.5


@dataclass(frozen=True)
class ScriptProfiles:
    """Vote tables of the languages written in one script."""

    languages: tuple[str, ...]
    word_votes: dict[str, tuple[tuple[str, float], ...]]
    char_votes: dict[str, tuple[tuple[str, float], ...]]


@lru_cache(maxsize=1)
def load_profiles() -> dict[str, ScriptProfiles]:
    """The shipped profiles, keyed by script name (``Latin``, ``Cyrillic``, ``Arabic``)."""
    raw = json.loads(_DATA.read_text(encoding="utf-8"))
    profiles: dict[str, ScriptProfiles] = {}
    for script, langs in raw.items():
        word_langs: dict[str, list[str]] = defaultdict(list)
        char_langs: dict[str, list[str]] = defaultdict(list)
        for lang, profile in langs.items():
            for word in profile["words"]:
                word_langs[word].append(lang)
            for char in profile["chars"]:
                char_langs[char].append(lang)
        profiles[script] = ScriptProfiles(
            languages=tuple(sorted(langs)),
            word_votes={w: tuple((lg, 1.0 / len(ls)) for lg in ls) for w, ls in word_langs.items()},
            char_votes={c: tuple((lg, _CHAR_WEIGHT / len(ls)) for lg in ls) for c, ls in char_langs.items()},
        )
    return profiles


def score_words(script: str, words: list[str]) -> dict[str, float]:
    """Votes per language for lower-cased ``words`` of one script; empty when no profile applies."""
    if script not in load_profiles():
        return {}
    scores: dict[str, float] = defaultdict(float)
    for word in words:
        for lang, vote in word_votes(script, word):
            scores[lang] += vote
    return dict(scores)


@lru_cache(maxsize=65536)
def word_votes(script: str, word: str) -> tuple[tuple[str, float], ...]:
    """The votes of one lower-cased word (its own, plus its marked letters); memoised."""
    profile = load_profiles().get(script)
    if profile is None:
        return ()
    votes: dict[str, float] = defaultdict(float)
    for lang, vote in profile.word_votes.get(word, ()):
        votes[lang] += vote
    if not word.isascii():  # marked letters are never ASCII
        for char in word:
            for lang, vote in profile.char_votes.get(char, ()):
                votes[lang] += vote
    return tuple(votes.items())


def decide(scores: dict[str, float], min_evidence: float = MIN_EVIDENCE) -> tuple[str, ...]:
    """The winning language(s): one when it leads with at least ``min_evidence`` votes, the tied
    ones on a tie, and nothing when the evidence is too thin to say."""
    if not scores:
        return ()
    best = max(scores.values())
    if best <= 0.0 or best < min_evidence:
        return ()
    return tuple(sorted(lang for lang, s in scores.items() if s >= best - 1e-9))
