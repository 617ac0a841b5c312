"""The unit of work shipped to a pool worker: one completion and the verifier calls to make on it.

Everything here is picklable and runs in the spawn worker (``run_item_task``), so it imports only
``verifiers``. Configs are built and validated in the API process before dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifiers import get
from verifiers.types import Component, Verdict, VerifierInputError


@dataclass(frozen=True)
class Check:
    component: Component
    verifier: str
    reference: Any
    config: Any


@dataclass(frozen=True)
class ItemTask:
    completion: str
    checks: tuple[Check, ...]


def run_item_task(task: ItemTask) -> dict[str, Verdict]:
    """Run every check of one item; a verifier bug becomes an ``invalid`` verdict, never a dead batch."""
    verdicts: dict[str, Verdict] = {}
    for check in task.checks:
        spec = get(check.verifier)
        try:
            verdicts[check.component] = spec.fn(task.completion, check.reference, check.config)
        except VerifierInputError as e:
            verdicts[check.component] = Verdict("invalid", None, details={"error": str(e)})
        except RecursionError:
            verdicts[check.component] = Verdict(
                "invalid", None, details={"error": f"{check.verifier}: input too deeply nested"}
            )
        except Exception as e:  # noqa: BLE001 - one bad item never fails its batch
            verdicts[check.component] = Verdict(
                "invalid", None, details={"error": f"{check.verifier} failed: {type(e).__name__}: {e}"[:1000]}
            )
    return verdicts
