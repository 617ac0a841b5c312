"""The adapters and the trainer against the real service (``create_app()`` served by uvicorn), with
the compat and GRPO routers mounted as the lead wires them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

import verifiers
from service.config import Settings
from service.main import create_app
from service.routes import compat, grpo
from tests.trainer.fake_referee import FakeReferee
from trainer.adapters import slime, trl, verl
from trainer.client import ClientConfig, RefereeClient
from trainer.engine import GRPOOptions, HttpEngine
from trainer.loop import HttpScorer, TrainConfig, train
from verifiers import registry

GOOD = "<think>\n6*7=42\n</think>\n<answer>\n42\n</answer>"
verifiers.load_builtin()
HAS_MATH = "math" in registry.names()
needs_math = pytest.mark.skipif(not HAS_MATH, reason="the math verifier is not on this branch yet")


@pytest.fixture(scope="module")
def service() -> Iterator[FakeReferee]:
    app = create_app(Settings(pool_size=1, item_timeout_s=10.0, sandbox_backend="none"))  # type: ignore[call-arg]
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/get_reward" not in paths:
        app.include_router(compat.router)
    if "/grpo/loss" not in paths:
        app.include_router(grpo.router)
    with FakeReferee(app) as live:
        yield live


@pytest.fixture
def env(service: FakeReferee, monkeypatch: pytest.MonkeyPatch) -> FakeReferee:
    monkeypatch.setenv("REFEREE_URL", service.url)
    monkeypatch.delenv("REFEREE_API_TOKEN", raising=False)
    return service


def test_trl_format_and_tag_count_on_the_real_format_verifier(env: FakeReferee) -> None:
    completions = [GOOD, "<think>\nx\n</think>\n no answer", "plain text"]
    assert trl.format(["p"] * 3, completions) == [1.0, 0.0, 0.0]
    assert trl.tag_count(["p"] * 3, completions) == [1.0, 0.5, 0.0]


def test_openrlhf_route_on_the_real_service(env: FakeReferee) -> None:
    prompt = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
    body = {
        "query": [prompt + GOOD + "<|im_end|>", prompt + "no idea"],
        "prompts": [prompt] * 2,
        "labels": [None, None],
    }
    out = RefereeClient(ClientConfig(base_url=env.url)).post_json("/get_reward", body)
    assert len(out["rewards"]) == len(out["scores"]) == 2
    assert out["rewards"][0] > out["rewards"][1]
    assert all(0.0 <= s <= 1.0 for s in out["scores"])
    empty = RefereeClient(ClientConfig(base_url=env.url)).post_json(
        "/get_reward", {"query": [], "prompts": [], "labels": []}
    )
    assert empty == {"rewards": [], "scores": [], "extra_logs": {}}


@needs_math
def test_verl_and_trl_accuracy_on_the_real_math_verifier(env: FakeReferee) -> None:
    assert verl.compute_score("openai/gsm8k", GOOD, "42")["acc"] == 1.0
    assert verl.compute_score_prime("lighteval/MATH", GOOD.replace("42", "41"), "42", None) < 1.0
    assert trl.accuracy(["p", "p"], [GOOD, GOOD], solution=["42", "41"]) == [1.0, 0.0]
    s = SimpleNamespace(prompt="6*7?", response=GOOD, label="42")
    assert asyncio.run(slime.reward(None, s)) >= 1.0


def test_toy_steps_over_the_real_service(env: FakeReferee, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = RefereeClient(ClientConfig(base_url=env.url))
    cfg = TrainConfig(steps=2, prompts_per_step=2, group_size=4, out_dir=str(tmp_path), options=GRPOOptions())
    scorer = HttpScorer(
        client, {"accuracy": 1.0, "format": 0.5}, {"format": {"tag_count": True}}, verifier=None
    )
    history = train(cfg, scorer=scorer, engine=HttpEngine(client, cfg.options))
    assert len(history) == 2 and (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("mode", ["strict", "lenient"])
@pytest.mark.parametrize("think_in_prompt", [False, True])
def test_toy_format_rules_equal_the_real_format_verifier(
    env: FakeReferee, think_in_prompt: bool, mode: str
) -> None:
    """The offline toy scorer and the tests' stand-in use the service's format rules: check it."""
    from trainer.toy import toy_judgement

    body = "3\n</think>\n\n<answer>\n7\n</answer>"
    completions = [
        body,
        "<think>\n" + body,
        "\n</think>\n\n<answer>\n7\n</answer>",
        "3\n</think>\n",
        "\n<answer>\n7\n</answer>3\n</think>\n",
        body + "9",
        "33",
        "<think>\n1\n</think>\n<think>\n",
        "12\n</think>\n3-\n<answer>\n7\n</answer>45",
        "=\n</think>\n\n<answer>\n\n</answer>",
        "\n<answer>\n7\n</answer>",
    ]
    items = [
        {
            "id": str(i),
            "completion": c,
            "verifier": "format",
            "options": {"format": {"tag_count": True, "think_in_prompt": think_in_prompt, "mode": mode}},
        }
        for i, c in enumerate(completions)
    ]
    results = RefereeClient(ClientConfig(base_url=env.url)).score(items)
    service = [r["components"]["format"] for r in results]
    local = [toy_judgement(c, "7", think_in_prompt, mode)["format"] for c in completions]
    assert service == local
