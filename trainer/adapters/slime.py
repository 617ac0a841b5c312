"""slime reward functions that score through a Referee service.

HTTP mode needs no code: ``--rm-type remote_rm --rm-url http://127.0.0.1:8000/slime/reward``.
Custom mode (``--custom-rm-path trainer.adapters.slime.reward``, or ``...slime.group_reward`` with
``--group-rm``) uses these coroutines: one ``/score`` item per sample, the sample's ``label`` as answer.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _load_client() -> Any:
    """``trainer.client`` if importable, else the ``client.py`` next to this folder (file mode)."""
    try:
        import trainer.client as mod

        if hasattr(mod, "RefereeClient"):
            return mod
    except ImportError:
        pass
    name = "referee_trainer_client"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "client.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the Referee client from {path}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


_client_mod = _load_client()
_client = _client_mod.shared_client  # one pooled client per process, service and token
_aclient = _client_mod.shared_async_client  # ... and per event loop


def _text(x: Any) -> str | None:
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, list):  # a message list: the last user turn
        users = [m.get("content") for m in x if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else None
    return str(x)


def sample_item(i: int, sample: Any) -> dict[str, Any]:
    """A slime ``Sample`` (``prompt``, ``response``, ``label`` attributes) → a ``/score`` item."""
    item: dict[str, Any] = {"id": str(i), "completion": str(getattr(sample, "response", "") or "")}
    label = getattr(sample, "label", None)
    if label is not None:
        item["answer"] = str(label)
    else:
        item["verifier"] = "format"  # no gold answer: format (and language) only
    prompt = _text(getattr(sample, "prompt", None))
    if prompt:
        item["prompt"] = prompt
    return item


async def reward(args: Any, sample: Any, **kwargs: Any) -> float:
    """``--custom-rm-path``: ``async def fn(args, sample) -> float``."""
    [result] = await _aclient().score([sample_item(0, sample)])
    return float(result["reward"])


async def group_reward(args: Any, samples: Sequence[Any], **kwargs: Any) -> list[float]:
    """``--group-rm``: the whole group in one request."""
    if not samples:
        return []
    results = await _aclient().score([sample_item(i, s) for i, s in enumerate(samples)])
    return [float(r["reward"]) for r in results]
