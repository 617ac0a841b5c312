"""Global normalisers for data-parallel ranks and gradient accumulation (verl `global_batch_info`, TRL
`num_items_in_batch` / `num_processes` / `gradient_accumulation_steps` / `steps_per_generation`).

The defining property: a batch split over R ranks, each rank's request carrying the global counts, gives
the whole batch's loss and gradient once the ranks' results are combined the way the trainer combines them
(DDP/FSDP average gradients over ranks; accumulation adds micro-steps). Tested on the float64 torch path and
on the fused float32 kernel; the exact peer formulas are held to verl's and TRL's own code in test_peers.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.config import VERL_AGG_MODES, GrpoConfigError


def batch(seed: int, b: int = 12, t: int = 30, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    lp = (-torch.rand(b, t, generator=g) * 3).to(dtype)
    old = (lp + torch.randn(b, t, generator=g).to(dtype) * 0.3).to(dtype)
    ref = (lp + torch.randn(b, t, generator=g).to(dtype) * 0.3).to(dtype)
    lens = torch.randint(1, t + 1, (b,), generator=g)
    m = torch.arange(t)[None, :] < lens[:, None]
    m[2] = False  # an empty row: excluded from the verl seq-mean counts
    adv = torch.randn(b, generator=g).to(dtype)
    return lp, old, ref, adv, m


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 1e-7}


SHARDS = [(0, 2), (2, 7), (7, 8), (8, 12)]  # uneven rank shards, one holding the empty row


def _split(cfg, lp, old, ref, adv, m, shards=SHARDS):
    return [compute_loss(lp[a:b], old[a:b], ref[a:b], adv[a:b], m[a:b], cfg) for a, b in shards]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["torch-f64", "fused-f32"])
@pytest.mark.parametrize("mode", ["vanilla", "gspo", "cispo", "sapo"])
@pytest.mark.parametrize("agg", VERL_AGG_MODES)
def test_verl_ranks_with_global_counts_average_to_the_whole_batch(mode, agg, dtype):
    lp, old, ref, adv, m = batch(1, dtype=dtype)
    base = VerlLossConfig(
        loss_mode=mode, loss_agg_mode=agg, use_kl_loss=True, kl_loss_coef=0.1, loss_scale_factor=40
    )
    whole = compute_loss(lp, old, ref, adv, m, base)
    r = len(SHARDS)
    ranked = replace(
        base,
        dp_size=r,
        batch_num_tokens=int(m.sum()),
        global_batch_size=int((m.sum(-1) > 0).sum()),
    )
    parts = _split(ranked, lp, old, ref, adv, m)
    tol = tolerance(dtype)
    # DDP averages the ranks' gradients: each rank's per-token gradient counts 1/R
    torch.testing.assert_close(torch.cat([p.grad for p in parts]) / r, whole.grad, **tol)
    torch.testing.assert_close(sum(float(p.loss) for p in parts) / r, float(whole.loss), **tol)
    # without the global counts the ranks normalise locally and the average is not the batch's loss
    local = _split(base, lp, old, ref, adv, m)
    assert not torch.allclose(torch.cat([p.grad for p in local]) / r, whole.grad, rtol=1e-3)


def test_verl_dp_size_scales_a_local_request():
    """Hand-computed: token-mean with dp_size 4 and the rank's own token count is 4x the local loss."""
    lp, old, ref, adv, m = batch(2)
    base = VerlLossConfig()
    n = int(m.sum())
    one = compute_loss(lp, old, ref, adv, m, base)
    four = compute_loss(lp, old, ref, adv, m, replace(base, dp_size=4, batch_num_tokens=n))
    half = compute_loss(lp, old, ref, adv, m, replace(base, batch_num_tokens=2 * n))
    assert float(four.loss) == pytest.approx(4 * float(one.loss), rel=1e-12)
    torch.testing.assert_close(half.grad, one.grad / 2, rtol=1e-12, atol=0)
    summed = compute_loss(lp, old, ref, adv, m, VerlLossConfig(loss_agg_mode="token-sum", dp_size=3))
    local_sum = compute_loss(lp, old, ref, adv, m, VerlLossConfig(loss_agg_mode="token-sum"))
    assert float(summed.loss) == pytest.approx(3 * float(local_sum.loss), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["torch-f64", "fused-f32"])
@pytest.mark.parametrize("loss_type", ["dapo", "cispo"])
def test_trl_processes_with_num_items_average_to_the_whole_batch(loss_type, dtype):
    lp, old, ref, adv, m = batch(3, dtype=dtype)
    base = TrlLossConfig(loss_type=loss_type, beta=0.04, epsilon_high=5.0 if loss_type == "cispo" else 0.28)
    whole = compute_loss(lp, old, ref, adv, m, base)
    r = len(SHARDS)
    cfg = replace(base, num_processes=r, num_items_in_batch=int(m.sum()))
    parts = _split(cfg, lp, old, ref, adv, m)
    tol = tolerance(dtype)
    torch.testing.assert_close(torch.cat([p.grad for p in parts]) / r, whole.grad, **tol)
    torch.testing.assert_close(sum(float(p.loss) for p in parts) / r, float(whole.loss), **tol)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_trl_accumulated_micro_steps_add_up_to_the_whole_batch(loss_type):
    """One process, gradient_accumulation_steps = steps_per_generation = 3: the trainer adds the three
    micro-steps' gradients. Equal micro-batches, so grpo's mean of means and bnpo's token mean agree."""
    lp, old, ref, adv, m = batch(4, b=12)
    m[:] = True
    m[:, 20:] = False  # equal token counts per micro-batch (bnpo divides by each micro-batch's own count)
    base = TrlLossConfig(loss_type=loss_type, beta=0.04, max_completion_length=30)
    whole = compute_loss(lp, old, ref, adv, m, base)
    cfg = replace(base, gradient_accumulation_steps=3, num_items_in_batch=int(m.sum()))
    parts = _split(cfg, lp, old, ref, adv, m, shards=[(0, 4), (4, 8), (8, 12)])
    torch.testing.assert_close(torch.cat([p.grad for p in parts]), whole.grad, rtol=1e-10, atol=1e-12)
    assert sum(float(p.loss) for p in parts) == pytest.approx(float(whole.loss), rel=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VerlLossConfig(dp_size=2),  # token-mean needs batch_num_tokens
        lambda: VerlLossConfig(dp_size=2, loss_agg_mode="seq-mean-token-mean", batch_num_tokens=9),
        lambda: VerlLossConfig(dp_size=0),
        lambda: VerlLossConfig(batch_num_tokens=0),
        lambda: TrlLossConfig(num_processes=2),  # dapo needs num_items_in_batch
        lambda: TrlLossConfig(loss_type="cispo", steps_per_generation=4),
        lambda: TrlLossConfig(gradient_accumulation_steps=0),
        lambda: TrlLossConfig(num_items_in_batch=-1),
    ],
)
def test_missing_or_bad_global_counts_are_config_errors(make):
    with pytest.raises(GrpoConfigError):
        make()


def test_grpo_and_dr_grpo_need_no_token_count_across_processes():
    # TRL's grpo/bnpo/dr_grpo normalise locally (only by the accumulation steps): nothing global to pass
    TrlLossConfig(loss_type="grpo", num_processes=8, gradient_accumulation_steps=4)
    TrlLossConfig(loss_type="dr_grpo", num_processes=8)


def test_http_takes_the_trainers_own_names_and_explains_what_is_missing(client):
    lp, old, ref, adv, m = batch(5, b=3, t=4)
    body = {
        "logp": lp.tolist(),
        "old_logp": old.tolist(),
        "advantages": adv.tolist(),
        "mask": m.int().tolist(),
    }
    ok = client.post("/grpo/loss", json={**body, "dp_size": 2, "batch_num_tokens": 2 * int(m.sum())})
    assert ok.status_code == 200, ok.text
    assert ok.json()["loss"] == pytest.approx(
        float(compute_loss(lp, old, None, adv, m, VerlLossConfig()).loss)
    )
    missing = client.post("/grpo/loss", json={**body, "dp_size": 2})
    assert missing.status_code == 422 and "batch_num_tokens" in missing.text
    trl = client.post(
        "/grpo/loss", json={**body, "flavor": "trl", "num_processes": 4, "num_items_in_batch": 40}
    )
    assert trl.status_code == 200, trl.text
    need = client.post("/grpo/loss", json={**body, "flavor": "trl", "num_processes": 4})
    assert need.status_code == 422 and "num_items_in_batch" in need.text
    crossed = client.post("/grpo/loss", json={**body, "flavor": "trl", "dp_size": 2})
    assert crossed.status_code == 422 and "dp_size" in crossed.text
