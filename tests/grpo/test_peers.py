"""Cross-check against verl's and TRL's own functions on random inputs, every variant.

Runs where verl 0.9.1 and TRL 1.16.0 are importable (a separate venv, see docs/grpo.md):
    PYTHONPATH=/path/to/referee /work/venv-peers/bin/python -m pytest tests/grpo/test_peers.py -m peers
verl: `get_policy_loss_fn(mode)` + `agg_loss` + `kl_penalty` (composed as its actor's `ppo_loss`), and the
`compute_*_outcome_advantage` functions. TRL: `GRPOTrainer._compute_loss` itself, called on a stand-in
trainer object whose model forward returns our log-probs; TRL advantages are not a function in TRL, so
its `nanstd` is used with the trainer's lines (GRPO.md §2.1) transcribed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from service.grpo import (
    TrlAdvantageConfig,
    TrlLossConfig,
    VerlAdvantageConfig,
    VerlLossConfig,
    compute_advantages,
    compute_loss,
    fused_cpu,
)
from service.grpo.config import TRL_LOSS_TYPES, VERL_AGG_MODES, VERL_LOSS_MODES

try:
    import verl.trainer.ppo.core_algos as core_algos
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import nanstd
    from verl.workers.config import ActorConfig, PolicyLossConfig

    PEERS_REASON = ""
except Exception as e:  # any import failure means: peers not installed here
    PEERS_REASON = (
        f"verl/trl not importable ({type(e).__name__}: {e}); install them in a separate venv (docs/grpo.md)"
    )

pytestmark = [pytest.mark.peers, pytest.mark.skipif(bool(PEERS_REASON), reason=PEERS_REASON or "ok")]
F64 = torch.float64


def batch(seed: int, b: int = 12, t: int = 24, spread: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g, dtype=F64) * 3
    old = lp + torch.randn(b, t, generator=g, dtype=F64) * spread
    ref = lp + torch.randn(b, t, generator=g, dtype=F64) * 0.5
    lens = torch.randint(1, t + 1, (b,), generator=g)
    m = torch.arange(t)[None] < lens[:, None]
    adv = torch.randn(b, generator=g, dtype=F64)
    return lp, old, ref, adv, m


def verl_peer(cfg: VerlLossConfig, lp, old, ref, adv, m):
    return verl_peer_with_entropy(cfg, lp, old, ref, adv, m, None)[:3]


def verl_peer_with_entropy(cfg: VerlLossConfig, lp, old, ref, adv, m, entropy):
    """verl's actor loss as `ppo_loss` assembles it; (loss, grad, metrics, d loss / d entropy or None)."""
    actor = ActorConfig(
        strategy="fsdp",
        clip_ratio=cfg.clip_ratio,
        clip_ratio_low=cfg.clip_ratio_low,
        clip_ratio_high=cfg.clip_ratio_high,
        clip_ratio_c=cfg.clip_ratio_c,
        loss_agg_mode=cfg.loss_agg_mode,
        tau_pos=cfg.tau_pos,
        tau_neg=cfg.tau_neg,
        policy_loss=PolicyLossConfig(
            loss_mode=cfg.loss_mode,
            clip_cov_ratio=cfg.clip_cov_ratio,
            clip_cov_lb=cfg.clip_cov_lb,
            clip_cov_ub=cfg.clip_cov_ub,
            kl_cov_ratio=cfg.kl_cov_ratio,
            ppo_kl_coef=cfg.ppo_kl_coef,
        ),
        ppo_mini_batch_size=1,
        ppo_micro_batch_size_per_gpu=1,
        rollout_n=1,
    )
    # what verl's ppo_loss puts there before calling the policy loss (workers/utils/losses.py)
    global_info = {
        "dp_size": cfg.dp_size,
        "batch_num_tokens": cfg.batch_num_tokens,
        "global_batch_size": cfg.global_batch_size,
        "loss_scale_factor": cfg.loss_scale_factor,
    }
    actor.global_batch_info.update(global_info)
    leaf = lp.clone().requires_grad_(True)
    mf = m.to(lp.dtype)
    a = (adv if adv.dim() == 2 else adv[:, None]) * mf  # per token, or one per sequence
    torch.manual_seed(cfg.seed)
    fn = core_algos.get_policy_loss_fn(cfg.loss_mode)
    pg, metrics = fn(
        old_log_prob=old,
        log_prob=leaf,
        advantages=a,
        response_mask=mf,
        loss_agg_mode=cfg.loss_agg_mode,
        config=actor,
    )
    loss = pg
    h_leaf = None
    if entropy is not None:
        h_leaf = entropy.clone().requires_grad_(True)
        entropy_loss = core_algos.agg_loss(h_leaf, mf, cfg.loss_agg_mode, **global_info)
        metrics["actor/entropy_loss"] = entropy_loss.detach()
        loss = loss - cfg.entropy_coeff * entropy_loss
    if cfg.use_kl_loss:
        kl = core_algos.kl_penalty(leaf, ref, cfg.kl_loss_type)
        kl_agg = core_algos.agg_loss(kl, mf, cfg.loss_agg_mode, **global_info)
        loss = loss + cfg.kl_loss_coef * kl_agg
    if h_leaf is None:
        (grad,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), grad, metrics, None
    grad, grad_h = torch.autograd.grad(loss, [leaf, h_leaf])
    return loss.detach(), grad, metrics, grad_h * mf


class _Acc:
    sync_gradients = True  # an optimizer-step boundary (TRL logs entropy_coef there)

    def __init__(self, num_processes: int) -> None:
        self.num_processes = num_processes

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    gather_for_metrics = gather


def trl_peer(cfg: TrlLossConfig, lp, old, ref, adv, m):
    return trl_peer_with_entropy(cfg, lp, old, ref, adv, m, None)[:3]


def trl_peer_with_entropy(cfg: TrlLossConfig, lp, old, ref, adv, m, entropy):
    """TRL's `GRPOTrainer._compute_loss` itself; (loss, grad, metrics, d loss / d entropy or None)."""
    leaf = lp.clone().requires_grad_(True)
    h_leaf = (torch.zeros_like(lp) if entropy is None else entropy.clone()).requires_grad_(True)
    args = SimpleNamespace(
        use_bias_correction_kl=cfg.use_bias_correction_kl,
        delta=cfg.delta,
        sapo_temperature_pos=cfg.sapo_temperature_pos,
        sapo_temperature_neg=cfg.sapo_temperature_neg,
        steps_per_generation=cfg.spg,
        entropy_target=0.0,
    )
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (leaf, h_leaf, None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=cfg.importance_sampling_level,
        beta=cfg.beta,
        args=args,
        loss_type=cfg.loss_type,
        epsilon_low=cfg.epsilon,
        epsilon_high=cfg.eps_high,
        use_vllm=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        accelerator=_Acc(cfg.num_processes),
        _entropy_bonus_enabled=entropy is not None,
        entropy_coef=cfg.entropy_coef,
        use_adaptive_entropy=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)},
        max_completion_length=cfg.max_completion_length,
    )
    b, t = lp.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long),
        "completion_mask": m.to(torch.long),
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": m.sum()
        if cfg.num_items_in_batch is None
        else torch.tensor(cfg.num_items_in_batch),
    }
    loss = GRPOTrainer._compute_loss(fake, None, inputs)
    grad, grad_h = torch.autograd.grad(loss, [leaf, h_leaf], allow_unused=True)
    metrics = {k: v[-1] for k, v in fake._metrics["train"].items()}
    return loss.detach(), grad * m, metrics, None if entropy is None else grad_h * m


VERL_CFGS = [
    VerlLossConfig(
        loss_mode=mode,
        loss_agg_mode=agg,
        use_kl_loss=kl,
        kl_loss_type=kt,
        clip_ratio_high=0.28,
        clip_cov_ratio=0.02,
        clip_cov_lb=-3.0,
        clip_cov_ub=3.0,
        kl_cov_ratio=0.05,
        seed=11,
        loss_scale_factor=lsf,
    )
    for mode in VERL_LOSS_MODES
    for agg in VERL_AGG_MODES
    for kl, kt in ((False, "low_var_kl"), (True, "low_var_kl"))
    for lsf in (None,)
] + [
    VerlLossConfig(
        use_kl_loss=True, kl_loss_type=kt, loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=100
    )
    for kt in ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k3+", "low_var_kl+", "k1+", "abs+")
]
TRL_CFGS = [
    TrlLossConfig(
        loss_type=lt,
        importance_sampling_level=lvl,
        beta=beta,
        use_bias_correction_kl=bc,
        delta=delta,
        epsilon_high=5.0 if lt == "cispo" else 0.28,
        max_completion_length=40,
    )
    for lt in TRL_LOSS_TYPES
    for lvl in ("token", "sequence")
    for beta, bc, delta in ((0.0, True, None), (0.04, True, None), (0.04, False, 2.0))
]


ENTROPY_CFGS = (
    [
        VerlLossConfig(
            loss_agg_mode=agg,
            entropy_coeff=0.01,
            use_kl_loss=True,
            dp_size=2,
            batch_num_tokens=500,
            global_batch_size=20,
        )
        for agg in VERL_AGG_MODES
    ]
    + [VerlLossConfig(loss_mode="gspo", entropy_coeff=0.0)]
    + [
        TrlLossConfig(
            loss_type=lt,
            entropy_coef=0.02,
            beta=0.04,
            epsilon_high=5.0 if lt == "cispo" else 0.28,
            gradient_accumulation_steps=2,
            num_items_in_batch=700,
        )
        for lt in TRL_LOSS_TYPES
    ]
)


@pytest.mark.parametrize("cfg", ENTROPY_CFGS, ids=repr)
def test_entropy_bonus_matches_peers(cfg):
    """verl `ppo_loss`'s `- entropy_coeff * agg_loss(entropy)`, TRL's static entropy bonus: loss, d/dlogp,
    d/dentropy (masked positions hold NaN, which must not leak) and the entropy metric."""
    lp, old, ref, adv, m = batch(6)
    h = torch.rand(lp.shape, dtype=F64, generator=torch.Generator().manual_seed(8)) * 3
    peer = verl_peer_with_entropy if isinstance(cfg, VerlLossConfig) else trl_peer_with_entropy
    p_loss, p_grad, p_metrics, p_gh = peer(cfg, lp, old, ref, adv, m, h)
    garbage = torch.where(m, h, torch.tensor(float("nan"), dtype=F64))
    ours = compute_loss(lp, old, ref, adv, m, cfg, entropy=garbage)
    rtol = 1e-7 if isinstance(cfg, TrlLossConfig) and cfg.loss_type in ("dapo", "cispo") else 1e-9
    assert torch.allclose(ours.loss, p_loss, rtol=rtol, atol=1e-12)
    assert torch.allclose(ours.grad, p_grad, rtol=1e-7, atol=1e-12)
    assert ours.grad_entropy is not None
    assert torch.allclose(ours.grad_entropy, p_gh, rtol=1e-9, atol=1e-15)
    assert (ours.grad_entropy[~m.bool()] == 0).all()
    name = "actor/entropy_loss" if isinstance(cfg, VerlLossConfig) else "entropy"
    assert ours.metrics[name] == pytest.approx(float(p_metrics[name]), rel=1e-9)


# data-parallel runs and gradient accumulation: the global normalisers each trainer passes per rank / micro-step
VERL_DP_CFGS = [
    VerlLossConfig(
        loss_mode=mode,
        loss_agg_mode=agg,
        use_kl_loss=True,
        clip_ratio_high=0.28,
        dp_size=4,
        batch_num_tokens=997,
        global_batch_size=37,
        loss_scale_factor=50 if agg == "seq-mean-token-sum-norm" else None,
    )
    for mode in ("vanilla", "gspo", "sapo", "geo_mean", "cispo")
    for agg in VERL_AGG_MODES
]
TRL_DP_CFGS = [
    TrlLossConfig(
        loss_type=lt,
        beta=0.04,
        epsilon_high=5.0 if lt == "cispo" else 0.28,
        max_completion_length=40,
        gradient_accumulation_steps=ga,
        steps_per_generation=spg,
        num_processes=npr,
        num_items_in_batch=items,
    )
    for lt in TRL_LOSS_TYPES
    for ga, spg, npr, items in ((4, None, 8, 4000), (2, 4, 3, 1234), (1, 1, 2, 0))
]


@pytest.mark.parametrize(
    "cfg",
    TRL_DP_CFGS,
    ids=lambda c: f"{c.loss_type}-ga{c.gradient_accumulation_steps}-spg{c.spg}-np{c.num_processes}",
)
def test_trl_accumulation_and_process_normalisers_match(cfg):
    lp, old, ref, adv, m = batch(4)
    p_loss, p_grad, _ = trl_peer(cfg, lp, old, ref, adv, m)
    ours = compute_loss(lp, old, ref, adv, m, cfg)
    # TRL's dapo/cispo normaliser is float32 whatever the inputs (an int64 token count clamped with a float
    # min promotes to float32), so 1234 / 3 carries float32 rounding there; ours is float64
    rtol = 1e-7 if cfg.loss_type in ("dapo", "cispo") else 1e-9
    assert torch.allclose(ours.loss, p_loss, rtol=rtol, atol=1e-12)
    assert torch.allclose(ours.grad, p_grad, rtol=max(rtol, 1e-7), atol=1e-12)


@pytest.mark.parametrize(
    "cfg",
    VERL_CFGS + VERL_DP_CFGS,
    ids=lambda c: f"{c.loss_mode}-{c.loss_agg_mode}-{c.use_kl_loss}-{c.kl_loss_type}-dp{c.dp_size}",
)
@pytest.mark.parametrize("seed", [0, 1])
def test_verl_losses_match(cfg, seed):
    lp, old, ref, adv, m = batch(seed)
    p_loss, p_grad, p_metrics = verl_peer(cfg, lp, old, ref, adv, m)
    ours = compute_loss(lp, old, ref, adv, m, cfg)
    assert torch.allclose(ours.loss, p_loss, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ours.grad, p_grad, rtol=1e-7, atol=1e-12)
    for k, v in p_metrics.items():
        assert ours.metrics[k] == pytest.approx(float(v), rel=1e-7, abs=1e-9), k


@pytest.mark.parametrize(
    "cfg",
    TRL_CFGS,
    ids=lambda c: f"{c.loss_type}-{c.importance_sampling_level}-{c.beta}-{c.use_bias_correction_kl}",
)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("per_token_adv", [False, True])
def test_trl_losses_match(cfg, seed, per_token_adv):
    lp, old, ref, adv, m = batch(seed)
    if per_token_adv:
        adv = torch.randn(lp.shape, dtype=F64, generator=torch.Generator().manual_seed(seed + 99))
    p_loss, p_grad, p_metrics = trl_peer(cfg, lp, old, ref, adv, m)
    ours = compute_loss(lp, old, ref, adv, m, cfg)
    assert torch.allclose(ours.loss, p_loss, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ours.grad, p_grad, rtol=1e-7, atol=1e-12)
    for k, v in p_metrics.items():
        if k in ("entropy",):
            continue
        assert ours.metrics[k] == pytest.approx(float(v), rel=1e-7, abs=1e-9, nan_ok=True), k


def _verl_adv(est: str, scores, ids, lengths, norm=True, gamma=1.0, baselines=None):
    b = len(scores)
    t = int(max(lengths))
    m = (torch.arange(t)[None] < torch.tensor(lengths)[:, None]).to(F64)
    r = torch.zeros(b, t, dtype=F64)
    r[torch.arange(b), torch.tensor(lengths) - 1] = torch.tensor(scores, dtype=F64)
    index = np.array(ids, dtype=object)
    if est == "grpo":
        a, _ = core_algos.compute_grpo_outcome_advantage(r, m, index, norm_adv_by_std_in_grpo=norm)
    elif est == "grpo_passk":
        a, _ = core_algos.compute_grpo_passk_outcome_advantage(
            r, m, index, config={"norm_adv_by_std_in_grpo": norm}
        )
    elif est == "reinforce_plus_plus":
        a, _ = core_algos.compute_reinforce_plus_plus_outcome_advantage(
            r, m, config=SimpleNamespace(gamma=gamma)
        )
    elif est == "remax":
        a, _ = core_algos.compute_remax_outcome_advantage(r, torch.tensor(baselines, dtype=F64), m)
    else:
        fn = getattr(core_algos, f"compute_{est}_outcome_advantage")
        a, _ = fn(r, m, index)
    return a, m


@pytest.mark.parametrize(
    "est",
    [
        "grpo",
        "rloo",
        "opo",
        "gpg",
        "grpo_passk",
        "reinforce_plus_plus",
        "reinforce_plus_plus_baseline",
        "remax",
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verl_advantages_match(est, seed):
    g = torch.Generator().manual_seed(seed)
    b = 20
    ids = [f"p{int(i)}" for i in torch.randint(0, 5, (b,), generator=g)]
    if est == "grpo_passk":
        ids = [f"p{i // 4}" for i in range(b)]
    scores = (torch.randint(0, 3, (b,), generator=g).to(F64) + torch.rand(b, generator=g, dtype=F64)).tolist()
    lengths = torch.randint(1, 9, (b,), generator=g).tolist()
    baselines = torch.rand(b, generator=g, dtype=F64).tolist()
    gamma = 0.9 if seed == 1 else 1.0
    for norm in (True, False):
        peer, m = _verl_adv(est, scores, ids, lengths, norm=norm, gamma=gamma, baselines=baselines)
        cfg = VerlAdvantageConfig(adv_estimator=est, norm_adv_by_std_in_grpo=norm, gamma=gamma)
        ours = compute_advantages(
            torch.tensor(scores, dtype=F64),
            cfg,
            group_ids=ids,
            lengths=torch.tensor(lengths),
            reward_baselines=torch.tensor(baselines, dtype=F64),
        )
        ours_tok = ours * m if ours.dim() == 2 else ours[:, None] * m
        assert torch.allclose(ours_tok, peer, rtol=1e-9, atol=1e-9), (est, norm)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trl_advantages_match(scale, seed):
    g = torch.Generator().manual_seed(seed)
    gsize, b = 4, 24
    rewards = torch.randint(0, 3, (b,), generator=g).to(F64)
    rewards[torch.rand(b, generator=g) < 0.2] = math.nan
    # TRL's lines (grpo_trainer.py L2761-2810) with its own nanstd
    mean = torch.nanmean(rewards.view(-1, gsize), dim=1).repeat_interleave(gsize)
    if scale in ("group", "none"):
        std = nanstd(rewards.view(-1, gsize), dim=1).repeat_interleave(gsize)
    else:
        std = nanstd(rewards).expand_as(rewards)
    peer = rewards - mean
    if scale != "none":
        peer = peer / (std + 1e-4)
    peer = torch.nan_to_num(peer, nan=0.0)
    ours = compute_advantages(rewards, TrlAdvantageConfig(scale_rewards=scale), group_size=gsize)
    assert torch.allclose(ours, peer, atol=1e-12)


FUSED_CFGS = [c for c in VERL_CFGS + TRL_CFGS if fused_cpu.supports(c, torch.zeros(1, 1))]


@pytest.mark.parametrize("cfg", FUSED_CFGS, ids=repr)
@pytest.mark.parametrize("per_token_adv", [False, True])
def test_fused_kernel_matches_peers(cfg, per_token_adv):
    """The fused C kernel on float32 inputs against the peer evaluated in float64 on the same values."""
    assert fused_cpu.library() is not None, "the fused kernel did not build"
    lp, old, ref, adv, m = (x.float() if x.is_floating_point() else x for x in batch(5))
    if per_token_adv:
        adv = torch.randn(lp.shape, generator=torch.Generator().manual_seed(77))
    peer = verl_peer if isinstance(cfg, VerlLossConfig) else trl_peer
    p_loss, p_grad, p_metrics = peer(cfg, lp.double(), old.double(), ref.double(), adv.double(), m)
    ours = compute_loss(lp, old, ref, adv, m, cfg, native=True)
    torch.testing.assert_close(ours.loss.double(), p_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.grad.double(), p_grad, rtol=1e-4, atol=1e-7)
    for k, v in p_metrics.items():
        if k == "entropy":
            continue
        assert ours.metrics[k] == pytest.approx(float(v), rel=1e-5, abs=1e-6, nan_ok=True), k
