"""Losses: hand-computed values, closed-form gradient == autograd, masked zeros, flavour agreement (§4.13)."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.config import TRL_LOSS_TYPES, VERL_AGG_MODES, VERL_LOSS_MODES
from service.grpo.reference import reference_loss

F64 = torch.float64


def batch(seed: int, b: int = 6, t: int = 11, spread: float = 0.3, empty_row: bool = True):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g, dtype=F64) * 3
    old = lp + torch.randn(b, t, generator=g, dtype=F64) * spread
    ref = lp + torch.randn(b, t, generator=g, dtype=F64) * 0.5
    lens = torch.randint(1, t + 1, (b,), generator=g)
    if empty_row:
        lens[0] = 0
    m = torch.arange(t)[None] < lens[:, None]
    adv = torch.randn(b, generator=g, dtype=F64)
    return lp, old, ref, adv, m


def all_configs():
    out = []
    for mode in VERL_LOSS_MODES:
        for agg in VERL_AGG_MODES:
            out.append(
                VerlLossConfig(
                    loss_mode=mode,
                    loss_agg_mode=agg,
                    use_kl_loss=True,
                    clip_cov_ratio=0.5,
                    clip_cov_lb=-10,
                    clip_cov_ub=10,
                    kl_cov_ratio=0.1,
                    clip_ratio_high=0.28,
                )
            )
    for kt in ("k1", "abs", "k2", "k3", "low_var_kl+", "k1+", "abs+", "mse"):
        out.append(
            VerlLossConfig(
                use_kl_loss=True,
                kl_loss_type=kt,
                loss_agg_mode="seq-mean-token-sum-norm",
                loss_scale_factor=7,
            )
        )
    for lt in TRL_LOSS_TYPES:
        for lvl in ("token", "sequence"):
            for beta, bc, delta in ((0.0, True, None), (0.04, True, 1.5), (0.04, False, None)):
                out.append(
                    TrlLossConfig(
                        loss_type=lt,
                        importance_sampling_level=lvl,
                        beta=beta,
                        use_bias_correction_kl=bc,
                        delta=delta,
                        epsilon_high=5.0 if lt == "cispo" else 0.28,
                        max_completion_length=9,
                    )
                )
    return out


CONFIGS = all_configs()


def test_vanilla_hand_computed():
    # one row, two tokens; A = 1; ratios e^0.5 (clipped at 1.2) and e^-0.1 (inside)
    lp = torch.tensor([[0.0, 0.0]], dtype=F64)
    old = torch.tensor([[-0.5, 0.1]], dtype=F64)
    m = torch.ones(1, 2, dtype=torch.bool)
    out = compute_loss(lp, old, None, torch.tensor([1.0], dtype=F64), m, VerlLossConfig())
    r2 = math.exp(-0.1)
    assert out.loss.item() == pytest.approx((-1.2 - r2) / 2)
    assert out.grad[0].tolist() == pytest.approx([0.0, -r2 / 2])
    assert out.metrics["actor/pg_clipfrac"] == pytest.approx(0.5, abs=1e-8)
    # dual clip: A = -1, ratio e^2 = 7.39 > c = 3 -> loss = 3 (constant), zero gradient
    out = compute_loss(
        torch.tensor([[2.0]], dtype=F64),
        torch.zeros(1, 1, dtype=F64),
        None,
        torch.tensor([-1.0], dtype=F64),
        torch.ones(1, 1, dtype=torch.bool),
        VerlLossConfig(),
    )
    assert out.loss.item() == pytest.approx(3.0) and out.grad.item() == 0.0
    assert out.metrics["actor/pg_clipfrac_lower"] == pytest.approx(1.0, abs=1e-7)


def test_trl_grpo_kl_hand_computed():
    lp = torch.tensor([[-1.0, -2.0, 5.0]], dtype=F64)
    ref = torch.tensor([[-1.5, -2.0, 0.0]], dtype=F64)
    m = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    cfg = TrlLossConfig(loss_type="grpo", beta=0.1)
    out = compute_loss(lp, None, ref, torch.tensor([2.0], dtype=F64), m, cfg)
    k = math.exp(-0.5) + 0.5 - 1
    assert out.loss.item() == pytest.approx((-2 * 2 + 0.1 * k) / 2)
    # on-policy, bias-corrected: d/dlp [ -A q + beta kv q ] = -A + beta (kv + (1 - e^{ref-lp}))
    g0 = (-2 + 0.1 * (k + 1 - math.exp(-0.5))) / 2
    assert out.grad[0, 0].item() == pytest.approx(g0)
    assert out.grad[0, 2].item() == 0.0
    assert out.metrics["kl"] == pytest.approx(k / 2)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: repr(c)[:90])
def test_closed_form_equals_autograd(cfg):
    for seed in range(3):
        lp, old, ref, adv, m = batch(seed)
        for a in (adv, torch.randn(lp.shape, dtype=F64)):
            for o in (old, None):
                out = compute_loss(lp, o, ref, a, m, cfg, block_elems=23)
                loss, grad = reference_loss(lp, o, ref, a, m, cfg)
                assert torch.allclose(out.loss, loss, atol=1e-9, rtol=1e-9, equal_nan=True)
                assert torch.allclose(out.grad, grad, atol=1e-9, rtol=1e-7)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg_i=st.integers(0, len(CONFIGS) - 1),
    seed=st.integers(0, 10_000),
    b=st.integers(1, 6),
    t=st.integers(1, 17),
    spread=st.sampled_from([0.01, 0.3, 3.0, 30.0]),
    block=st.integers(1, 64),
)
def test_closed_form_equals_autograd_random(cfg_i, seed, b, t, spread, block):
    cfg = CONFIGS[cfg_i]
    lp, old, ref, adv, m = batch(seed, b, t, spread, empty_row=False)
    m[0, 0] = True
    out = compute_loss(lp, old, ref, adv, m, cfg, block_elems=block)
    loss, grad = reference_loss(lp, old, ref, adv, m, cfg)
    if torch.isfinite(loss):
        assert torch.allclose(out.loss, loss, atol=1e-6, rtol=1e-6)
        assert torch.allclose(out.grad, grad, atol=1e-6, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    cfg_i=st.integers(0, len(CONFIGS) - 1),
    seed=st.integers(0, 10_000),
    garbage=st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -7.0]),
)
def test_masked_positions_have_exactly_zero_grad(cfg_i, seed, garbage):
    cfg = CONFIGS[cfg_i]
    lp, old, ref, adv, m = batch(seed)
    lp2, old2, ref2 = lp.clone(), old.clone(), ref.clone()
    for x in (lp2, old2, ref2):
        x[~m] = garbage
    a = torch.randn(lp.shape, dtype=F64)
    a2 = a.clone()
    a2[~m] = garbage
    clean = compute_loss(lp, old, ref, a, m, cfg)
    dirty = compute_loss(lp2, old2, ref2, a2, m, cfg)
    assert (dirty.grad[~m] == 0).all()
    assert torch.equal(clean.grad, dirty.grad)
    assert torch.equal(clean.loss, dirty.loss) or (clean.loss.isnan() and dirty.loss.isnan())


def test_block_size_does_not_change_results():
    lp, old, ref, adv, m = batch(3, 40, 33)
    cfg = VerlLossConfig(loss_agg_mode="seq-mean-token-mean", use_kl_loss=True)
    a = compute_loss(lp, old, ref, adv, m, cfg, block_elems=1)
    b = compute_loss(lp, old, ref, adv, m, cfg, block_elems=1 << 20)
    assert torch.equal(a.grad, b.grad)
    assert torch.allclose(a.loss, b.loss, atol=1e-14)


def test_bf16_and_fp32_inputs_accumulate_in_fp32():
    lp, old, ref, adv, m = batch(1, 8, 64)
    ref64 = compute_loss(lp, old, ref, adv, m, TrlLossConfig(loss_type="grpo", beta=0.04))
    for dt in (torch.float32, torch.bfloat16):
        out = compute_loss(
            lp.to(dt), old.to(dt), ref.to(dt), adv.to(dt), m, TrlLossConfig(loss_type="grpo", beta=0.04)
        )
        assert out.grad.dtype == torch.float32
        tol = 1e-5 if dt == torch.float32 else 0.05
        assert torch.allclose(out.loss.double(), ref64.loss, atol=tol, rtol=tol)


def test_flavors_agree_where_grpo_md_says():
    lp, old, ref, adv, m = batch(7, 8, 16, empty_row=False)
    pairs = [
        (
            TrlLossConfig(loss_type="grpo", beta=0.04, use_bias_correction_kl=False),
            VerlLossConfig(
                loss_agg_mode="seq-mean-token-mean", use_kl_loss=True, kl_loss_coef=0.04, clip_ratio_c=1e9
            ),
        ),
        (TrlLossConfig(loss_type="bnpo"), VerlLossConfig(clip_ratio_c=1e9)),
        (
            TrlLossConfig(loss_type="dapo", epsilon_high=0.28),
            VerlLossConfig(clip_ratio_high=0.28, clip_ratio_c=1e9),
        ),
        (
            TrlLossConfig(loss_type="dr_grpo", max_completion_length=1024),
            VerlLossConfig(loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=1024, clip_ratio_c=1e9),
        ),
        (
            TrlLossConfig(loss_type="grpo", importance_sampling_level="sequence"),
            VerlLossConfig(loss_mode="gspo", loss_agg_mode="seq-mean-token-mean"),
        ),
        (TrlLossConfig(loss_type="sapo"), VerlLossConfig(loss_mode="sapo")),
        (
            TrlLossConfig(loss_type="grpo", delta=3.0),
            VerlLossConfig(loss_agg_mode="seq-mean-token-mean", clip_ratio_c=3.0),
        ),
    ]
    for trl, verl in pairs:
        a = compute_loss(lp, old, ref, adv, m, trl)
        b = compute_loss(lp, old, ref, adv, m, verl)
        assert torch.allclose(a.loss, b.loss, atol=1e-12), (trl, verl)
        if trl.importance_sampling_level == "token":
            assert torch.allclose(a.grad, b.grad, atol=1e-12), (trl, verl)
    # metrics: verl pg_clipfrac == TRL clip_ratio/region_mean
    a = compute_loss(lp, old, ref, adv, m, TrlLossConfig(loss_type="bnpo"))
    b = compute_loss(lp, old, ref, adv, m, VerlLossConfig(clip_ratio_c=1e9))
    assert a.metrics["clip_ratio/region_mean"] == pytest.approx(b.metrics["actor/pg_clipfrac"], abs=1e-7)


def test_empty_rows_conventions():
    lp, old, ref, adv, m = batch(2, 16, 8)
    m[0] = False
    v = compute_loss(
        lp, old, ref, adv, m, VerlLossConfig(loss_agg_mode="seq-mean-token-mean", clip_ratio_c=1e9)
    )
    t = compute_loss(lp, old, ref, adv, m, TrlLossConfig(loss_type="grpo"))
    assert v.loss.item() == pytest.approx(t.loss.item() * 16 / 15)
    none = torch.zeros_like(m)
    assert compute_loss(lp, old, ref, adv, none, VerlLossConfig()).loss.isnan()
    assert compute_loss(lp, old, ref, adv, none, TrlLossConfig(loss_type="bnpo")).loss.item() == 0.0


def test_clip_cov_seed_is_deterministic():
    lp, old, ref, adv, m = batch(5, 16, 32)
    cfg = VerlLossConfig(loss_mode="clip_cov", clip_cov_ratio=0.05, clip_cov_lb=-5, clip_cov_ub=5, seed=3)
    a, b = compute_loss(lp, old, ref, adv, m, cfg), compute_loss(lp, old, ref, adv, m, cfg)
    assert torch.equal(a.grad, b.grad) and a.metrics["actor/pg_clipfrac"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "cfg",
    [
        TrlLossConfig(loss_type="grpo", beta=0.04, importance_sampling_level="sequence"),
        VerlLossConfig(use_kl_loss=True, loss_agg_mode="seq-mean-token-mean"),
    ],
    ids=["trl-grpo-seq-kl", "verl-vanilla-kl"],
)
def test_compiled_path_matches_eager(cfg):
    lp, old, ref, adv, m = batch(4, 16, 40)
    lp, old, ref, adv = (x.float() for x in (lp, old, ref, adv))
    e = compute_loss(lp, old, ref, adv, m, cfg, use_compile=False)
    c = compute_loss(lp, old, ref, adv, m, cfg, use_compile=True)
    assert torch.allclose(e.grad, c.grad, atol=1e-6, rtol=1e-5)
    assert torch.allclose(e.loss, c.loss, atol=1e-6, rtol=1e-5)
    assert (c.grad[~m] == 0).all()
