"""The trainer's GRPO engines: HTTP (binary body) and in-process give the same parameter update."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from tests.trainer.fake_referee import FakeReferee
from trainer.client import ClientConfig, RefereeClient, decode_loss_response, encode_loss_request
from trainer.engine import GRPOOptions, HttpEngine, InProcessEngine, LocalEngine
from trainer.loop import ToyPolicy, TrainConfig, sample, token_logprobs
from trainer.toy import ArithmeticTask

OPTS = GRPOOptions(loss_type="grpo", beta=0.04, epsilon=0.2)


def _batch(seed: int = 0) -> tuple[ToyPolicy, ToyPolicy, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    cfg = TrainConfig()
    policy = ToyPolicy(cfg, torch.device("cpu"))
    ref = copy.deepcopy(policy)
    rng = random.Random(seed)
    problems = [ArithmeticTask(4).sample(rng) for _ in range(4) for _ in range(4)]
    prompt_ids = policy.encode_prompts([p.prompt for p in problems])
    completion, mask = sample(policy, prompt_ids, cfg.max_new_tokens, 1.0)
    return policy, ref, prompt_ids, completion, mask


def _update(engine: object, policy: ToyPolicy, ref: ToyPolicy, prompt_ids, completion, mask, steps: int = 2):  # type: ignore[no-untyped-def]
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-2)
    rewards = torch.rand(completion.shape[0], generator=torch.Generator().manual_seed(1)).tolist()
    adv = engine.advantages(rewards, 4).float()  # type: ignore[attr-defined]
    with torch.no_grad():
        old = token_logprobs(policy, prompt_ids, completion)
        ref_lp = token_logprobs(ref, prompt_ids, completion)
    metrics = []
    for _ in range(steps):
        logp = token_logprobs(policy, prompt_ids, completion)
        out = engine.loss(logp, old, ref_lp, adv, mask)  # type: ignore[attr-defined]
        opt.zero_grad()
        logp.backward(out.grad)
        opt.step()
        metrics.append(out)
    return adv, metrics


def test_http_and_in_process_give_the_same_parameter_update(referee: FakeReferee) -> None:
    policy, ref, prompt_ids, completion, mask = _batch()
    twin = copy.deepcopy(policy)
    client = RefereeClient(ClientConfig(base_url=referee.url))
    adv_http, out_http = _update(HttpEngine(client, OPTS), policy, ref, prompt_ids, completion, mask)
    adv_local, out_local = _update(InProcessEngine(OPTS), twin, ref, prompt_ids, completion, mask)
    assert torch.allclose(adv_http, adv_local, atol=1e-6)
    for a, b in zip(out_http, out_local, strict=True):
        assert a.loss == pytest.approx(b.loss, abs=1e-6)
        assert a.metrics["kl"] == pytest.approx(b.metrics["kl"], abs=1e-6)
    diffs = [
        (p - q).abs().max().item()
        for p, q in zip(policy.model.parameters(), twin.model.parameters(), strict=True)
    ]
    assert max(diffs) < 1e-6
    moved = [
        (p - q).abs().max().item()
        for p, q in zip(policy.model.parameters(), ref.model.parameters(), strict=True)
    ]
    assert max(moved) > 1e-3  # the update did happen


def test_autograd_fallback_matches_service_grpo_without_bias_correction() -> None:
    policy, ref, prompt_ids, completion, mask = _batch(3)
    twin = copy.deepcopy(policy)
    _, a = _update(LocalEngine(OPTS), policy, ref, prompt_ids, completion, mask)
    _, b = _update(InProcessEngine(OPTS), twin, ref, prompt_ids, completion, mask)
    assert a[-1].loss == pytest.approx(b[-1].loss, abs=1e-6)
    assert torch.allclose(a[-1].grad, b[-1].grad, atol=1e-7)


def test_masked_positions_get_zero_gradient() -> None:
    policy, ref, prompt_ids, completion, mask = _batch(5)
    assert not bool(mask.all())  # some rows stopped early
    logp = token_logprobs(policy, prompt_ids, completion)
    out = InProcessEngine(OPTS).loss(
        logp, logp.detach() + 0.1, logp.detach(), torch.randn(logp.shape[0]), mask
    )
    assert bool((out.grad[~mask] == 0).all())


def test_loss_body_round_trip() -> None:
    t = {"logp": torch.randn(2, 3), "mask": torch.ones(2, 3, dtype=torch.bool), "ref_logp": None}
    body = encode_loss_request(t, {"flavor": "trl", "beta": 0.1})
    from service.grpo.wire import decode, encode

    tensors, meta = decode(body)
    assert set(tensors) == {"logp", "mask"} and meta["options"] == '{"flavor": "trl", "beta": 0.1}'
    answer = encode({"grad_logprobs": torch.ones(2, 3)}, {"loss": None, "metrics": {"kl": 0.5}})
    res = decode_loss_response(answer, "application/vnd.safetensors")
    assert res.loss != res.loss and res.metrics == {"kl": 0.5} and res.grad_logprobs.shape == (2, 3)
