"""Advantages: hand-computed cases, peer conventions (GRPO.md §4) and hypothesis properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.grpo import GrpoInputError, TrlAdvantageConfig, VerlAdvantageConfig, compute_advantages

F64 = torch.float64


def verl(est: str = "grpo", **kw) -> VerlAdvantageConfig:
    return VerlAdvantageConfig(adv_estimator=est, **kw)


def test_grpo_hand_computed_bessel_std():
    # group [1, 0, 1, 0]: mean 0.5, Bessel std sqrt(1/3) = 0.57735
    a = compute_advantages(torch.tensor([1.0, 0, 1, 0]), verl(), group_size=4)
    std = math.sqrt(1 / 3)
    assert a.tolist() == pytest.approx([0.5 / (std + 1e-6), -0.5 / (std + 1e-6)] * 2, abs=1e-12)


def test_trl_epsilon_and_dr_grpo():
    r = torch.tensor([1.0, 0, 1, 0])
    std = math.sqrt(1 / 3)
    assert compute_advantages(r, TrlAdvantageConfig(), group_size=4)[0] == pytest.approx(0.5 / (std + 1e-4))
    assert compute_advantages(r, TrlAdvantageConfig(scale_rewards="none"), group_size=4).tolist() == [
        0.5,
        -0.5,
        0.5,
        -0.5,
    ]
    assert (
        compute_advantages(r, verl(norm_adv_by_std_in_grpo=False), group_size=4).tolist() == [0.5, -0.5] * 2
    )


def test_groups_by_ids_any_order_uneven():
    r = torch.tensor([3.0, 1.0, 5.0, 2.0, 4.0])
    ids = ["b", "a", "b", "a", "c"]
    a = compute_advantages(r, verl(norm_adv_by_std_in_grpo=False), group_ids=ids)
    # b: mean 4 -> -1, +1 ; a: mean 1.5 -> -0.5, +0.5 ; c singleton -> verl returns s
    assert a.tolist() == [-1.0, -0.5, 1.0, 0.5, 4.0]


def test_all_equal_groups_give_exact_zero_both_flavors():
    r = torch.tensor([0.7] * 8 + [0.1] * 3, dtype=torch.float32)
    ids = [0] * 8 + [1] * 3
    for cfg in (
        verl(),
        verl("rloo"),
        verl("opo"),
        verl("gpg"),
        TrlAdvantageConfig(),
        TrlAdvantageConfig(scale_rewards="batch"),
    ):
        a = compute_advantages(r, cfg, group_ids=ids)
        assert (a == 0).all(), cfg


def test_near_equal_group_eps_difference():
    # GRPO.md §4.2: rewards 0.5 ... 0.5+7e-7 give verl +-0.29 vs TRL +-0.0036 (epsilon 1e-6 vs 1e-4)
    r = 0.5 + torch.arange(8, dtype=F64) * 1e-7
    av = compute_advantages(r, verl(), group_size=8)
    at = compute_advantages(r, TrlAdvantageConfig(), group_size=8)
    assert av.max() == pytest.approx(0.29, abs=0.01)
    assert at.max() == pytest.approx(0.0036, abs=0.0002)


def test_singletons_per_flavor():
    r = torch.tensor([2.0])
    assert compute_advantages(r, verl(), group_size=1).item() == pytest.approx(2.0 / (1 + 1e-6))
    assert compute_advantages(r, verl("rloo"), group_size=1).item() == 2.0
    assert compute_advantages(r, TrlAdvantageConfig(), group_size=1).item() == 0.0
    with pytest.raises(GrpoInputError):
        compute_advantages(r, verl("grpo_passk"), group_size=1)


def test_trl_nan_rewards():
    r = torch.tensor([1.0, math.nan, 0.0, 1.0, math.nan, math.nan, 2.0, 1.0])
    a = compute_advantages(r, TrlAdvantageConfig(), group_size=4)
    # group 1: [1, nan, 0, 1] -> stats over 3 values; nan row -> 0
    mean, std = 2 / 3, math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2)
    assert a[0].item() == pytest.approx((1 - mean) / (std + 1e-4))
    assert a[1].item() == 0.0
    # group 2: [nan, nan, 2, 1]
    assert a[4].item() == 0.0 and a[6].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4))
    with pytest.raises(GrpoInputError):
        compute_advantages(r, verl(), group_size=4)


def test_rloo_opo_gpg_passk_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 2.0])
    assert compute_advantages(r, verl("rloo"), group_size=4).tolist() == pytest.approx(
        [1 - 2 / 3, 0 - 1, 0 - 1, 2 - 1 / 3]
    )
    lengths = torch.tensor([1, 3, 1, 1])
    b = (1 * 1 + 0 + 0 + 2 * 1) / 6
    assert compute_advantages(r, verl("opo"), group_size=4, lengths=lengths).tolist() == pytest.approx(
        [1 - b, -b, -b, 2 - b]
    )
    # gpg: alpha = B / #nonzero = 4 / 2
    assert compute_advantages(r, verl("gpg"), group_size=4).tolist() == pytest.approx(
        [2 * (1 - 0.75), 2 * -0.75, 2 * -0.75, 2 * 1.25]
    )
    p = compute_advantages(r, verl("grpo_passk", norm_adv_by_std_in_grpo=False), group_size=4)
    assert p.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_rfpp_baseline_and_remax_and_rfpp():
    r = torch.tensor([1.0, 0.0, 3.0, 1.0])
    lengths = torch.tensor([2, 2, 1, 3])
    a = compute_advantages(r, verl("reinforce_plus_plus_baseline"), group_size=2, lengths=lengths)
    x = torch.tensor([0.5, -0.5, 1.0, -1.0], dtype=F64)
    w = lengths.to(F64)
    mean = (x * w).sum() / (w.sum() + 1e-8)
    var = ((x - mean) ** 2 * w).sum() / (w.sum() + 1e-8) * w.sum() / (w.sum() - 1)
    assert torch.allclose(a, (x - mean) / torch.sqrt(var + 1e-8))
    rm = compute_advantages(r, verl("remax"), reward_baselines=torch.tensor([0.5, 0.5, 1.0, 1.0]))
    assert rm.tolist() == [0.5, -0.5, 2.0, 0.0]
    tok = compute_advantages(r, verl("reinforce_plus_plus", gamma=0.5), lengths=lengths)
    assert tok.shape == (4, 3)
    assert tok[2, 1] == 0 and tok[0, 2] == 0  # masked


@settings(max_examples=60, deadline=None)
@given(
    rewards=st.lists(st.floats(-100, 100), min_size=2, max_size=24),
    shift=st.floats(-1000, 1000),
    nclass=st.integers(1, 4),
    trl=st.booleans(),
)
def test_shift_invariance(rewards, shift, nclass, trl):
    r = torch.tensor(rewards, dtype=F64)
    ids = [i % nclass for i in range(len(rewards))]
    if min(ids.count(g) for g in set(ids)) < 2:
        return
    cfg = TrlAdvantageConfig() if trl else verl()
    a = compute_advantages(r, cfg, group_ids=ids)
    b = compute_advantages(r + shift, cfg, group_ids=ids)
    assert torch.allclose(a, b, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(rewards=st.lists(st.floats(-5, 5), min_size=2, max_size=16), perm_seed=st.integers(0, 1000))
def test_group_order_does_not_matter(rewards, perm_seed):
    r = torch.tensor(rewards, dtype=F64)
    ids = [i % 3 for i in range(len(rewards))]
    perm = torch.randperm(len(rewards), generator=torch.Generator().manual_seed(perm_seed))
    a = compute_advantages(r, verl(), group_ids=ids)
    b = compute_advantages(r[perm], verl(), group_ids=[ids[i] for i in perm.tolist()])
    assert torch.allclose(a[perm], b, atol=1e-12)
