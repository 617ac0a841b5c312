"""The optional ``langdetect`` backend: the Google language-detection port, imported lazily.

It is the design card's named detector, kept selectable so that its accuracy and speed can be
measured against the built-in profiles (``bench/language_bench.py``). It names the language of
each sentence; the word counting, the blanking and the sentence split stay the same as built-in.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# A sentence with fewer countable words than this is too short for langdetect to call; it takes
# the verdict on the whole text, as the built-in backend does.
_MIN_WORDS = 3

# langdetect labels → ISO 639-1 codes we use.
_ALIASES = {"zh-cn": "zh", "zh-tw": "zh"}


@lru_cache(maxsize=1)
def _factory() -> Any:
    try:
        from langdetect import detector_factory
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'langdetect' backend needs the langdetect package: pip install 'referee[langdetect]'"
        ) from exc
    factory = detector_factory.DetectorFactory()
    factory.load_profile(detector_factory.PROFILES_DIRECTORY)
    # An instance attribute, not the class-wide DetectorFactory.seed: deterministic without
    # touching langdetect's global state.
    factory.seed = 0
    return factory


def detect(text: str) -> str | None:
    """langdetect's best language for ``text`` as an ISO 639-1 code, or None when it has no features."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _factory().create()
    detector.append(text)
    try:
        label = detector.detect()
    except LangDetectException:
        return None
    return _ALIASES.get(label, label)


class LangdetectDecider:
    """A ``counting.Decider`` backed by langdetect, with a whole-text fallback for short sentences."""

    def __init__(self, whole_text: str) -> None:
        self._whole_text = whole_text
        self._whole: str | None = None
        self._whole_done = False

    def __call__(self, script: str, words: list[str], segment: str) -> tuple[str, ...]:
        label = detect(segment) if len(words) >= _MIN_WORDS else None
        if label is None:
            if not self._whole_done:
                self._whole = detect(self._whole_text)
                self._whole_done = True
            label = self._whole
        return (label,) if label else ()
