"""OpenRLHF file-mode reward function (``--remote_rm_url /path/to/openrlhf.py``, or
``--reward.remote_url`` from v0.10.2) that scores through a Referee service.

OpenRLHF loads this file with importlib and calls ``reward_func(queries, prompts, labels, **kwargs)``.
The request goes to the service's ``POST /get_reward`` (the same route OpenRLHF's HTTP mode can use
directly), which cuts the response out of the query, strips chat special tokens and scores it.
Only the standard library is needed (``httpx`` and ``torch`` are used when present).
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


def _as_tensors(out: dict[str, Any]) -> dict[str, Any]:
    # OpenRLHF v0.8.x concatenates extra_logs with torch.cat, which needs tensors; newer versions accept both.
    try:
        import torch
    except ImportError:
        return out
    return {
        "rewards": torch.tensor(out["rewards"], dtype=torch.float32),
        "scores": torch.tensor(out["scores"], dtype=torch.float32),
        "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in out["extra_logs"].items()},
    }


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """OpenRLHF's file-mode reward function.

    Args:
        queries: prompt + response texts, decoded with special tokens kept.
        prompts: the prompt texts (after the chat template).
        labels: the ``--label_key`` column (may be ``None`` or hold ``None`` entries).

    Returns:
        ``{"rewards", "scores", "extra_logs"}``, each the length of ``queries`` (torch tensors when
        torch is importable, else lists).
    """
    queries = list(queries)
    labels_list = list(labels) if labels is not None else [None] * len(queries)
    if not queries:
        return _as_tensors({"rewards": [], "scores": [], "extra_logs": {}})
    body = {"query": queries, "prompts": list(prompts), "labels": labels_list}
    out = _client().post_json("/get_reward", body)
    if len(out["rewards"]) != len(queries):  # never trust a mis-sized answer (OpenRLHF#1317)
        raise RuntimeError(f"/get_reward returned {len(out['rewards'])} rewards for {len(queries)} queries")
    return _as_tensors(out)
