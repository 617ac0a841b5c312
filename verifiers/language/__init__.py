"""The ``language`` verifier (language-consistency reward) and prompt language detection."""

from verifiers.language.counting import LanguageCounts, count_languages
from verifiers.language.neutral import blank_non_language
from verifiers.language.scripts import SUPPORTED_LANGUAGES
from verifiers.language.verifier import (
    LanguageConfig,
    detect_target_language,
    measure,
    normalize_language,
    verify_language,
)

__all__ = [
    "SUPPORTED_LANGUAGES",
    "LanguageConfig",
    "LanguageCounts",
    "blank_non_language",
    "count_languages",
    "detect_target_language",
    "measure",
    "normalize_language",
    "verify_language",
]
