"""What every verifier returns, and the errors it may raise.

A verifier is a pure function ``(completion, reference, config) -> Verdict``. It never raises for
a bad *completion* (that is a ``wrong``/``no_answer``/``format_error`` verdict); it raises
``VerifierInputError`` only when the *reference* or the options are malformed, which the service
turns into ``status: invalid`` for that one item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "wrong", "no_answer", "format_error", "timeout", "sandbox_error", "invalid"]
STATUSES: tuple[Status, ...] = (
    "ok",
    "wrong",
    "no_answer",
    "format_error",
    "timeout",
    "sandbox_error",
    "invalid",
)

Component = Literal["accuracy", "format", "language"]
COMPONENTS: tuple[Component, ...] = ("accuracy", "format", "language")


@dataclass(frozen=True)
class Verdict:
    """One verifier's judgement of one completion.

    Attributes:
        status: what happened (see ``Status``); ``ok`` means the part was satisfied.
        score: the raw score in 0..1, or ``None`` where the part does not apply
            (e.g. a language score with nothing to count).
        extracted: what was judged (the final answer, the program), for the response.
        details: JSON-serialisable facts on how the decision was made.
    """

    status: Status
    score: float | None
    extracted: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Verdict.score must be in 0..1 or None, got {self.score!r}")


class VerifierInputError(ValueError):
    """The reference or the options given to a verifier are malformed (→ ``status: invalid``)."""
