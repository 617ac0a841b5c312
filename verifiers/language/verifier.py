"""The ``language`` verifier: DeepSeek-R1's language-consistency reward.

The score is the share of the chain of thought's words that are in the target language. Code,
math, LaTeX, URLs, e-mail, identifiers and numbers are blanked first: they are neither target
nor foreign. See ``counting`` for the units and how shared scripts are settled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from verifiers.format.tags import chain_of_thought
from verifiers.language.counting import Decider, LanguageCounts, count_languages
from verifiers.language.scripts import SUPPORTED_LANGUAGES
from verifiers.registry import register
from verifiers.types import Verdict, VerifierInputError

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_:.-]{0,63}")
_LANGUAGE_CODE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*")


@dataclass(frozen=True)
class LanguageConfig:
    """Options of the ``language`` verifier.

    Attributes:
        backend: ``builtin`` (script counting + our stop-word profiles) or ``langdetect``
            (the same counting, with langdetect naming the language of shared-script sentences).
        scope: ``think``: the ``<think>`` block when there is one, else the whole completion;
            ``completion``: always the whole completion.
        think_tag: name of the reasoning tag, without brackets.
        min_units: fewer countable units than this → score None (nothing to judge).
    """

    backend: Literal["builtin", "langdetect"] = "builtin"
    scope: Literal["think", "completion"] = "think"
    think_tag: str = "think"
    min_units: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.think_tag, str) or not _TAG_NAME.fullmatch(self.think_tag):
            raise VerifierInputError(
                f"language.think_tag must be a tag name like 'think', got {self.think_tag!r}"
            )
        if self.min_units < 1:
            raise VerifierInputError(f"language.min_units must be at least 1, got {self.min_units}")


def normalize_language(code: Any) -> str:
    """Map ``"zh-CN"``, ``"pt_BR"``, ``"EN"`` to a supported ISO 639-1 code, or raise.

    Raises:
        VerifierInputError: not a string, or not a language we support.
    """
    if not isinstance(code, str):
        raise VerifierInputError(f"language reference must be an ISO 639-1 code string, got {code!r}")
    match = _LANGUAGE_CODE.fullmatch(code.strip())
    primary = match.group(1).lower() if match else None
    if primary not in SUPPORTED_LANGUAGES:
        raise VerifierInputError(
            f"unsupported language {code!r}; supported ISO 639-1 codes: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return primary


def measure(text: str, backend: Literal["builtin", "langdetect"] = "builtin") -> LanguageCounts:
    """Count ``text``'s units per language with the chosen backend."""
    decider: Decider | None = None
    if backend == "langdetect":
        from verifiers.language.langdetect_backend import LangdetectDecider

        decider = LangdetectDecider(text)
    return count_languages(text, decider)


@register("language", config=LanguageConfig, component="language", version="1")
def verify_language(completion: str, reference: Any, config: LanguageConfig) -> Verdict:
    """Share of the chain of thought's words in the target language (``reference``, ISO 639-1).

    Args:
        completion: the model's output.
        reference: the target language code (``"zh"``, ``"en"``, ``"pt-BR"``), or None.
        config: a ``LanguageConfig``.

    Returns:
        ``ok`` with the share in 0..1, or ``ok`` with score None and ``details.reason`` when there
        is no target or nothing to count.

    Raises:
        VerifierInputError: the reference is not a supported language code.

    >>> verify_language("<think>因为 $x^2=4$，所以 x=2。</think>", "zh", LanguageConfig()).score
    1.0
    """
    if not isinstance(completion, str):
        raise VerifierInputError(f"completion must be a string, got {type(completion).__name__}")
    if reference is None:
        return Verdict(status="ok", score=None, details={"reason": "no target language given"})
    target = normalize_language(reference)
    text = chain_of_thought(completion, config.think_tag) if config.scope == "think" else completion
    counts = measure(text, config.backend)
    details: dict[str, Any] = {
        "target": target,
        "backend": config.backend,
        "units": counts.units,
        "neutral": counts.neutral,
    }
    if counts.total < config.min_units:
        details["reason"] = "nothing to count: no words outside code, math and identifiers"
        return Verdict(status="ok", score=None, details=details)
    share = counts.share(target)
    assert share is not None
    details["dominant"] = max(counts.units, key=lambda label: counts.units[label])
    return Verdict(status="ok", score=share, details=details)


def detect_target_language(prompt: str, min_units: int = 2) -> str | None:
    """Guess the language a prompt asks in, for items that carry no ``language`` field.

    The prompt's words are counted as for the reward (math and code blanked) and the label with
    the most units wins, if it names one language and has at least ``min_units`` units.

    Args:
        prompt: the user's prompt (plain text).
        min_units: least evidence required.

    Returns:
        An ISO 639-1 code, or None when the prompt has too little text or is ambiguous.

    >>> detect_target_language("求 $x^2=4$ 的所有实数解。")
    'zh'
    """
    if not isinstance(prompt, str):
        return None
    counts = count_languages(prompt)
    if not counts.units:
        return None
    label, units = max(counts.units.items(), key=lambda item: item[1])
    if units < min_units or "/" in label or label.startswith("und-"):
        return None
    return label
