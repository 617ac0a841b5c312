"""The entropy bonus (verl `entropy_coeff`, TRL `entropy_coef`): hand-computed values, the gradient w.r.t. the
entropies, the wire (JSON and safetensors, the trainer's client) and the batcher.

The peers' own code is compared in test_peers.py (`test_entropy_bonus_matches_peers`).
"""

from __future__ import annotations

import json

import pytest
import torch

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.advantages import GrpoInputError
from service.grpo.batcher import LossJob, run_batch
from service.grpo.wire import SAFETENSORS_MEDIA_TYPE, decode, encode
from tests.trainer.fake_referee import FakeReferee
from trainer.client import ClientConfig, RefereeClient

NAN = float("nan")


def inputs(seed: int = 0, b: int = 4, t: int = 6, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    lp = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 2).to(dtype)
    old = (lp.double() + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2).to(dtype)
    m = torch.ones(b, t, dtype=torch.bool)
    m[0, 2:] = False  # 2 valid
    m[1, 5:] = False  # 5 valid
    m[3] = False  # empty
    adv = torch.randn(b, generator=g, dtype=torch.float64).to(dtype)
    h = (torch.rand(b, t, generator=g, dtype=torch.float64) * 2).to(dtype)
    h = torch.where(m, h, torch.tensor(NAN, dtype=dtype))  # garbage where masked
    return lp, old, adv, m, h


def test_verl_token_mean_hand_computed():
    lp, old, adv, m, h = inputs()
    cfg = VerlLossConfig(entropy_coeff=0.05)
    plain = compute_loss(lp, old, None, adv, m, cfg)
    out = compute_loss(lp, old, None, adv, m, cfg, entropy=h)
    n = int(m.sum())  # 2 + 5 + 6 = 13 valid tokens
    mean_h = float(h[m].sum()) / n
    assert n == 13
    assert float(out.loss) == pytest.approx(float(plain.loss) - 0.05 * mean_h, rel=1e-12)
    assert out.metrics["actor/entropy_loss"] == pytest.approx(mean_h, rel=1e-12)
    assert out.grad_entropy is not None
    want = torch.where(
        m, torch.tensor(-0.05 / n, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    )
    assert torch.equal(out.grad_entropy, want)
    assert torch.equal(out.grad, plain.grad)  # the bonus does not touch d loss / d logp
    assert plain.grad_entropy is None


def test_verl_seq_mean_token_mean_weights_each_sequence_equally():
    lp, old, adv, m, h = inputs(1)
    out = compute_loss(
        lp,
        old,
        None,
        adv,
        m,
        VerlLossConfig(entropy_coeff=1.0, loss_agg_mode="seq-mean-token-mean"),
        entropy=h,
    )
    rows = [0, 1, 2]  # row 3 is empty and does not count
    per_row = [float(h[i][m[i]].mean()) for i in rows]
    assert out.metrics["actor/entropy_loss"] == pytest.approx(sum(per_row) / 3, rel=1e-7)
    assert out.grad_entropy is not None
    assert float(out.grad_entropy[0, 0]) == pytest.approx(-1.0 / (2 * 3), rel=1e-7)
    assert float(out.grad_entropy[1, 0]) == pytest.approx(-1.0 / (5 * 3), rel=1e-7)
    assert float(out.grad_entropy[2, 0]) == pytest.approx(-1.0 / (6 * 3), rel=1e-7)
    assert (out.grad_entropy[~m] == 0).all()


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo", "sapo"])
def test_trl_bonus_is_a_token_mean_over_accumulation_steps_for_every_loss_type(loss_type):
    lp, old, adv, m, h = inputs(2)
    cfg = TrlLossConfig(
        loss_type=loss_type, entropy_coef=0.1, gradient_accumulation_steps=2, steps_per_generation=1
    )
    plain = compute_loss(lp, old, None, adv, m, cfg)
    out = compute_loss(lp, old, None, adv, m, cfg, entropy=h)
    mean_h = float(h[m].mean())
    assert out.metrics["entropy"] == pytest.approx(mean_h, rel=1e-12)
    assert float(out.loss) == pytest.approx(float(plain.loss) - 0.1 * mean_h / 2, rel=1e-12)
    assert out.grad_entropy is not None
    assert torch.allclose(out.grad_entropy[m], torch.full((13,), -0.1 / 13 / 2, dtype=torch.float64))


def test_zero_coefficient_reports_the_metric_and_a_zero_gradient():
    lp, old, adv, m, h = inputs(3)
    out = compute_loss(lp, old, None, adv, m, VerlLossConfig(), entropy=h)
    plain = compute_loss(lp, old, None, adv, m, VerlLossConfig())
    assert float(out.loss) == float(plain.loss)
    assert out.grad_entropy is not None and (out.grad_entropy == 0).all()
    assert out.metrics["actor/entropy_loss"] == pytest.approx(float(h[m].mean()), rel=1e-12)


def test_fused_float32_path_takes_the_bonus_too():
    lp, old, adv, m, h = inputs(4, dtype=torch.float32)
    cfg = VerlLossConfig(entropy_coeff=0.05)
    fused = compute_loss(lp, old, None, adv, m, cfg, entropy=h)
    torch_path = compute_loss(lp, old, None, adv, m, cfg, entropy=h, native=False)
    torch.testing.assert_close(fused.loss, torch_path.loss, rtol=1e-6, atol=1e-7)
    assert fused.grad_entropy is not None and torch_path.grad_entropy is not None
    assert torch.equal(fused.grad_entropy, torch_path.grad_entropy)


def test_bad_entropy_is_an_input_error():
    lp, old, adv, m, h = inputs()
    with pytest.raises(GrpoInputError, match="entropy has shape"):
        compute_loss(lp, old, None, adv, m, VerlLossConfig(), entropy=h[:, :3])
    with pytest.raises(GrpoInputError, match="float"):
        compute_loss(lp, old, None, adv, m, VerlLossConfig(), entropy=torch.ones(h.shape, dtype=torch.int64))


def test_batched_jobs_with_and_without_entropy_equal_unbatched():
    jobs = []
    for seed in range(4):
        lp, old, adv, m, h = inputs(seed)
        cfg = VerlLossConfig(entropy_coeff=0.01 * seed)
        jobs.append(LossJob(lp, old, None, adv, m, cfg, h if seed % 2 else None))
    batched = run_batch(jobs, torch.device("cpu"), coalesce=True)
    for j, r in zip(jobs, batched, strict=True):
        alone = compute_loss(j.logp, j.old_logp, None, j.advantages, j.mask, j.config, entropy=j.entropy)
        assert torch.equal(r.grad, alone.grad) and float(r.loss) == float(alone.loss)
        if j.entropy is None:
            assert r.grad_entropy is None
        else:
            assert r.grad_entropy is not None and torch.equal(r.grad_entropy, alone.grad_entropy)


def test_json_and_binary_return_the_same_entropy_gradient(client):
    lp, old, adv, m, h = inputs(5)
    opts = {"flavor": "trl", "loss_type": "grpo", "entropy_coef": 0.03}
    h_clean = torch.where(m, h, torch.zeros(()))  # JSON has no NaN
    js = {"logp": lp.tolist(), "old_logp": old.tolist(), "advantages": adv.tolist(), "mask": m.int().tolist()}
    r1 = client.post("/grpo/loss", json=js | opts | {"entropy": h_clean.tolist()})
    assert r1.status_code == 200, r1.text
    body = encode(
        {"logp": lp, "old_logp": old, "advantages": adv, "mask": m, "entropy": h}, {"options": opts}
    )
    r2 = client.post("/grpo/loss", content=body, headers={"content-type": SAFETENSORS_MEDIA_TYPE})
    assert r2.status_code == 200, r2.text
    back, meta = decode(r2.content)
    assert torch.equal(torch.tensor(r1.json()["grad_entropy"], dtype=torch.float64), back["grad_entropy"])
    assert r1.json()["loss"] == json.loads(meta["loss"])
    assert json.loads(meta["metrics"])["entropy"] == pytest.approx(float(h[m].mean()), rel=1e-12)
    no_h = client.post("/grpo/loss", json=js | opts)
    assert no_h.json()["grad_entropy"] is None
    bad = client.post("/grpo/loss", json=js | opts | {"entropy": [[0.0]]})
    assert bad.status_code == 422 and "entropy" in bad.text


def test_trainer_client_sends_entropy_and_gets_its_gradient():
    lp, old, adv, m, h = inputs(6, dtype=torch.float32)
    want = compute_loss(lp, old, None, adv, m, VerlLossConfig(entropy_coeff=0.02), entropy=h)
    ts = {"logp": lp, "old_logp": old, "advantages": adv, "mask": m, "entropy": h}
    with FakeReferee() as ref, RefereeClient(ClientConfig(base_url=ref.url, max_retries=0)) as c:
        res = c.grpo_loss(ts, {"flavor": "verl", "entropy_coeff": 0.02})
    assert res.grad_entropy is not None and torch.equal(res.grad_entropy, want.grad_entropy)
    assert torch.equal(res.grad_logprobs, want.grad) and res.loss == want.loss.item()
    # what a trainer then does: one backward through both inputs
    lp_leaf = lp.clone().requires_grad_(True)
    h_leaf = torch.where(m, h, torch.zeros(())).requires_grad_(True)
    torch.autograd.backward([lp_leaf, h_leaf], [res.grad_logprobs, res.grad_entropy])
    assert lp_leaf.grad is not None and h_leaf.grad is not None
    assert torch.equal(h_leaf.grad, want.grad_entropy)
