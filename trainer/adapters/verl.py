"""verl reward functions that score through a Referee service.

Point verl at this file; it needs only the standard library (and ``httpx`` if present)::

    custom_reward_function.path=/path/to/referee/trainer/adapters/verl.py
    custom_reward_function.name=compute_score          # naive / dapo / remote / reward-loop managers
    # custom_reward_function.name=compute_score_batch  # with reward_model.reward_manager=batch
    # custom_reward_function.name=compute_score_prime  # with reward_model.reward_manager=prime

The service is found through ``REFEREE_URL`` and ``REFEREE_API_TOKEN``. Nothing here imports the
service or a package named ``verifiers``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
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


# Every dict this module returns has exactly these keys, in this order (verl logs each extra key
# per sample into reward_extra_info, so the key set must not vary between samples).
RESULT_KEYS: tuple[str, ...] = ("score", "acc", "format", "language", "timeout", "status", "pred")


def _parse_ground_truth(ground_truth: Any) -> Any:
    """verl stores code ground truth as a JSON string or a dict; math as a string or number."""
    if isinstance(ground_truth, bytes):
        ground_truth = ground_truth.decode()
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith(("{", "[")):
        try:
            return json.loads(ground_truth)
        except json.JSONDecodeError:
            return ground_truth
    return ground_truth


def _math_item(gt: Any) -> dict[str, Any]:
    if isinstance(gt, list | tuple) and len(gt) == 1:  # some datasets wrap the answer in a list
        gt = gt[0]
    return {"answer": str(gt)}


def _gsm8k_item(gt: Any) -> dict[str, Any]:
    text = str(gt)
    if "####" in text:  # raw GSM8K solution: the number follows the last '####'
        text = text.rsplit("####", 1)[1]
    return {"answer": text.strip().replace(",", "")}


def _code_item(gt: Any) -> dict[str, Any]:
    # verl's {"inputs", "outputs", "fn_name"?, "assert_case"?} goes through as given: /score accepts it.
    if not isinstance(gt, dict):
        raise ValueError(f"code ground_truth must be a dict or its JSON string, got {type(gt).__name__}")
    return {"tests": gt}


ItemBuilder = Callable[[Any], dict[str, Any]]

# verl's default_compute_score data_source names → how to build the /score item.
DATA_SOURCES: dict[str, ItemBuilder] = {
    "openai/gsm8k": _gsm8k_item,
    "gsm8k": _gsm8k_item,
    "lighteval/MATH": _math_item,
    "DigitalLearningGmbH/MATH-lighteval": _math_item,
    "HuggingFaceH4/MATH-500": _math_item,
    "math_dapo": _math_item,
    "math": _math_item,
    "math_dapo_reasoning": _math_item,
    "codecontests": _code_item,
    "apps": _code_item,
    "codeforces": _code_item,
    "taco": _code_item,
}
# Families matched by prefix when the exact name is not listed (numina_aops_forum, aime2024, ...).
DATA_SOURCE_PREFIXES: dict[str, ItemBuilder] = {
    "numina_": _math_item,
    "aime": _math_item,
    "math": _math_item,
    "deepscaler": _math_item,
    "likaixin/TACO": _code_item,
    "code": _code_item,
}


def builder_for(data_source: str, ground_truth: Any) -> ItemBuilder:
    """Pick the item builder for a data_source: exact name, then prefix, then the ground truth's shape."""
    if data_source in DATA_SOURCES:
        return DATA_SOURCES[data_source]
    for prefix, fn in DATA_SOURCE_PREFIXES.items():
        if data_source.startswith(prefix):
            return fn
    return _code_item if isinstance(ground_truth, dict) and "inputs" in ground_truth else _math_item


def build_item(
    item_id: str,
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None,
    reward_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """Translate one verl call into a ``/score`` item."""
    gt = _parse_ground_truth(ground_truth)
    item: dict[str, Any] = {"id": item_id, "completion": solution_str}
    item.update(builder_for(str(data_source), gt)(gt))
    extra = dict(extra_info or {})
    # Optional per-dataset knobs, from extra_info columns or custom_reward_function.reward_kwargs.
    for key in ("verifier", "language", "options", "weights"):
        value = extra.get(f"referee_{key}", reward_kwargs.get(f"referee_{key}"))
        if value is not None:
            item[key] = value
    if "question" in extra and "prompt" not in item:
        item["prompt"] = str(extra["question"])
    return item


def to_verl_dict(result: Mapping[str, Any]) -> dict[str, Any]:
    """A /score result → verl's dict (``score`` + the fixed RESULT_KEYS)."""
    comps = result.get("components") or {}

    def num(x: Any) -> float:
        return 0.0 if x is None else float(x)

    extracted = result.get("extracted")
    out = {
        "score": float(result.get("reward") or 0.0),
        "acc": num(comps.get("accuracy")),
        "format": num(comps.get("format")),
        "language": num(comps.get("language")),
        "timeout": 1.0 if result.get("status") == "timeout" else 0.0,
        "status": str(result.get("status")),
        "pred": "" if extracted is None else str(extracted),
    }
    return {k: out[k] for k in RESULT_KEYS}


def _weights(reward_kwargs: Mapping[str, Any]) -> Any:
    return reward_kwargs.get("referee_weights")


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **reward_kwargs: Any,
) -> dict[str, Any]:
    """verl's per-sample custom reward function (naive, dapo, remote and reward-loop managers).

    Returns:
        A dict with ``score`` and always the same keys (RESULT_KEYS) for ``reward_extra_info``.
    """
    item = build_item("0", data_source, solution_str, ground_truth, extra_info, reward_kwargs)
    [result] = _client().score([item], _weights(reward_kwargs))
    return to_verl_dict(result)


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **reward_kwargs: Any,
) -> dict[str, Any]:
    """``async def`` variant for verl's reward-loop managers (they await coroutine functions)."""
    item = build_item("0", data_source, solution_str, ground_truth, extra_info, reward_kwargs)
    [result] = await _aclient().score([item], _weights(reward_kwargs))
    return to_verl_dict(result)


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **reward_kwargs: Any,
) -> list[dict[str, Any]]:
    """verl's ``batch`` reward manager: one ``/score`` request for the whole batch."""
    n = len(solution_strs)
    if not (len(data_sources) == len(ground_truths) == n):
        raise ValueError("data_sources, solution_strs and ground_truths must have the same length")
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    items = [
        build_item(str(i), ds, s, gt, info, reward_kwargs)
        for i, (ds, s, gt, info) in enumerate(
            zip(data_sources, solution_strs, ground_truths, infos, strict=True)
        )
    ]
    if not items:
        return []
    return [to_verl_dict(r) for r in _client().score(items, _weights(reward_kwargs))]


def compute_score_prime(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None
) -> float:
    """verl's ``prime`` manager: positional arguments, a plain float (a dict would zero the batch)."""
    return float(compute_score(data_source, solution_str, ground_truth, extra_info)["score"])
