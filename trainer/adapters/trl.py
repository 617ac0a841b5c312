"""TRL / open-r1 reward functions that score through a Referee service.

Each function has TRL's reward-function signature and returns one value per completion, ``None``
where the reward does not apply to that row (TRL turns it into NaN and ignores it)::

    from trainer.adapters import trl as referee
    GRPOTrainer(..., reward_funcs=[referee.accuracy, referee.format, referee.tag_count])
    # TRL >= 0.27 runs async reward functions concurrently:
    GRPOTrainer(..., reward_funcs=[referee.accuracy_async, referee.format_async])

Dataset columns are read from ``**kwargs``: ``solution`` / ``answer`` / ``ground_truth`` (math),
``verification_info`` (open-r1 code: ``{"language", "test_cases": [{"input", "output"}]}``) or
``tests`` (Referee's own shape), ``language``. String and conversational completions both work.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
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


# Options of the format verifier for open-r1's tag_count partial credit (0.25 per well-placed tag).
TAG_COUNT_OPTIONS: dict[str, Any] = {"format": {"tag_count": True}}
ANSWER_COLUMNS: tuple[str, ...] = ("solution", "answer", "ground_truth")
_CACHE_SIZE = 8


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the assistant messages of a conversation joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return str(completion.get("content") or "")
    if isinstance(completion, Sequence):
        parts = [str(m.get("content") or "") for m in completion if isinstance(m, Mapping)]
        return "".join(parts)
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def prompt_text(prompt: Any) -> str | None:
    """The last user turn of a conversational prompt (or the string prompt), for language detection."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        if users:
            return str(users[-1].get("content") or "")
    return None


def _column(kwargs: Mapping[str, Any], name: str, i: int) -> Any:
    col = kwargs.get(name)
    if col is None or isinstance(col, str | bytes):
        return None
    try:
        return col[i]
    except (IndexError, KeyError, TypeError):
        return None


def _code_tests(info: Any) -> Any:
    """open-r1's verification_info → Referee ``tests`` (stdin/stdout cases)."""
    if isinstance(info, str):
        info = json.loads(info)
    if not isinstance(info, Mapping):
        return None
    cases = [
        {"stdin": c.get("input", ""), "stdout": c.get("output", "")} for c in info.get("test_cases") or []
    ]
    return {"language": info.get("language", "python"), "cases": cases}


def build_items(
    prompts: Sequence[Any] | None, completions: Sequence[Any], kwargs: Mapping[str, Any], *, want: str
) -> list[dict[str, Any]]:
    """One ``/score`` item per completion. ``want`` = ``math`` (answer), ``code`` (tests) or ``none``."""
    items = []
    for i, completion in enumerate(completions):
        item: dict[str, Any] = {"id": str(i), "completion": completion_text(completion)}
        prompt = prompt_text(prompts[i]) if prompts is not None and i < len(prompts) else None
        if prompt:
            item["prompt"] = prompt
        lang = _column(kwargs, "language", i)
        if lang:
            item["language"] = lang
        if want == "math":
            for col in ANSWER_COLUMNS:
                value = _column(kwargs, col, i)
                if value is not None:
                    item["answer"] = str(value)
                    break
        elif want == "code":
            tests = _column(kwargs, "tests", i)
            if tests is None:
                info = _column(kwargs, "verification_info", i)
                tests = _code_tests(info) if info is not None else None
            if tests is not None:
                item["tests"] = tests
        if "answer" not in item and "tests" not in item:
            item["verifier"] = "format"  # nothing to check the answer against: format (and language) only
        items.append(item)
    return items


class _Memo:
    """Results of the last few batches: accuracy and format share one request for the same rows."""

    def __init__(self) -> None:
        self.data: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def key(self, items: list[dict[str, Any]], options: Mapping[str, Any] | None) -> str:
        return json.dumps([items, options], sort_keys=True, default=str)

    def get(self, key: str) -> list[dict[str, Any]] | None:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: str, value: list[dict[str, Any]]) -> None:
        self.data[key] = value
        while len(self.data) > _CACHE_SIZE:
            self.data.popitem(last=False)


_memo = _Memo()


def _with_options(items: list[dict[str, Any]], options: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not options:
        return items
    return [{**it, "options": {**it.get("options", {}), **options}} for it in items]


def _score(items: list[dict[str, Any]], options: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    key = _memo.key(items, options)
    hit = _memo.get(key)
    if hit is None:
        hit = _client().score(_with_options(items, options)) if items else []
        _memo.put(key, hit)
    return hit


async def _ascore(items: list[dict[str, Any]], options: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    key = _memo.key(items, options)
    hit = _memo.get(key)
    if hit is None:
        hit = await _aclient().score(_with_options(items, options)) if items else []
        _memo.put(key, hit)
    return hit


def _component(
    results: list[dict[str, Any]], name: str, applies: list[bool] | None = None
) -> list[float | None]:
    out: list[float | None] = []
    for i, r in enumerate(results):
        value = (r.get("components") or {}).get(name)
        if (applies is not None and not applies[i]) or r.get("status") == "invalid" or value is None:
            out.append(None)  # does not apply / gold unusable: TRL ignores this row for this function
        else:
            out.append(float(value))
    return out


def _has(items: list[dict[str, Any]], key: str) -> list[bool]:
    return [key in it for it in items]


# -- the reward functions (TRL signature) -----------------------------------------------------


def accuracy(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Final-answer correctness against the ``solution``/``answer``/``ground_truth`` column."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(_score(items, None), "accuracy", _has(items, "answer"))


def format(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:  # noqa: A001
    """1.0 when the completion follows the ``<think>…</think><answer>…</answer>`` template."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(_score(items, None), "format")


def tag_count(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """open-r1's partial format credit: 0.25 per well-placed tag."""
    items = build_items(prompts, completions, {}, want="none")
    return _component(_score(items, TAG_COUNT_OPTIONS), "format")


def language(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Share of the chain of thought in the target language (``language`` column, else the prompt's)."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(_score(items, None), "language")


def code(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Pass rate of the program in the completion on the row's tests (``None`` without tests)."""
    items = build_items(prompts, completions, kwargs, want="code")
    return _component(_score(items, None), "accuracy", _has(items, "tests"))


async def accuracy_async(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Async :func:`accuracy` (TRL >= 0.27 awaits these concurrently)."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(await _ascore(items, None), "accuracy", _has(items, "answer"))


async def format_async(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Async :func:`format`."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(await _ascore(items, None), "format")


async def tag_count_async(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Async :func:`tag_count`."""
    items = build_items(prompts, completions, {}, want="none")
    return _component(await _ascore(items, TAG_COUNT_OPTIONS), "format")


async def language_async(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Async :func:`language`."""
    items = build_items(prompts, completions, kwargs, want="math")
    return _component(await _ascore(items, None), "language")


async def code_async(
    prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """Async :func:`code`."""
    items = build_items(prompts, completions, kwargs, want="code")
    return _component(await _ascore(items, None), "accuracy", _has(items, "tests"))


# TRL logs each reward function under its __name__; give them the names open-r1 uses.
for _fn, _name in (
    (accuracy, "accuracy_reward"),
    (format, "format_reward"),
    (tag_count, "tag_count_reward"),
    (language, "language_reward"),
    (code, "code_reward"),
    (accuracy_async, "accuracy_reward"),
    (format_async, "format_reward"),
    (tag_count_async, "tag_count_reward"),
    (language_async, "language_reward"),
    (code_async, "code_reward"),
):
    _fn.__name__ = _name

REWARD_FUNCS: dict[str, Any] = {
    "accuracy": accuracy,
    "format": format,
    "tag_count": tag_count,
    "language": language,
    "code": code,
}
