"""Autograd reference: the peers' loss formulas written plainly, differentiated by torch.

Slow (hundreds of full-size temporaries) but obviously right; the tests compare the closed-form fused path
(`losses.py`) against it. Masked positions are sanitised the same way as in the fused path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.grpo.aggregation import trl_row_weights, verl_row_weights
from service.grpo.config import LossConfig, TrlLossConfig, VerlLossConfig
from service.grpo.losses import LossInputs, _verl_global_selection, bool_mask, prepare_inputs

Agg = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _agg(loss_mat: torch.Tensor, mf: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return ((loss_mat * mf).sum(-1) * c).sum()


def _abs_agg(loss_mat: torch.Tensor, mf: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The same aggregation over |terms|: the scale that bounds any summation order's rounding error."""
    return ((loss_mat.abs() * mf).sum(-1) * c.abs()).sum()


def _verl_kl(lp: torch.Tensor, ref: torch.Tensor, kl_type: str) -> torch.Tensor:
    plus = kl_type.endswith("+")
    base = kl_type[:-1] if plus else kl_type
    if base in ("kl", "k1"):
        fwd = lp - ref
    elif base == "abs":
        fwd = (lp - ref).abs()
    elif base in ("mse", "k2"):
        fwd = 0.5 * (lp - ref).square()
    else:
        kl = torch.clamp(ref - lp, min=-20, max=20)
        fwd = torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)
    if not plus or base in ("mse", "k2"):
        return fwd
    back = 0.5 * (lp - ref).square()
    return back - back.detach() + fwd.detach()


def _verl_reference(x: LossInputs, lp: torch.Tensor, cfg: VerlLossConfig, agg: Agg = _agg) -> torch.Tensor:
    m = x.mask
    dt = x.dtype
    mf = m.to(dt)
    zero = torch.zeros((), dtype=dt)
    old = lp.detach() if x.old_logp is None else torch.where(m, x.old_logp.to(dt), zero)
    a = x.advantages.to(dt)
    a = a if a.shape[1] == 1 else torch.where(m, a, zero)
    b, t = lp.shape
    n = mf.sum(-1)
    lo, hi = cfg.eps_low, cfg.eps_high
    mode = cfg.loss_mode
    pg_mode = "seq-mean-token-mean" if mode == "sapo" else cfg.loss_agg_mode
    c = verl_row_weights(n, t, pg_mode, cfg)
    nkl = lp - old
    if mode in ("vanilla", "cispo", "sapo"):
        ratio = torch.exp(torch.clamp(nkl, -20.0, 20.0))
    else:
        ratio = torch.exp(nkl)
    if mode == "vanilla":
        l1 = -a * ratio
        l2 = -a * torch.clamp(ratio, 1 - lo, 1 + hi)
        c1 = torch.maximum(l1, l2)
        l3 = -a * cfg.clip_ratio_c
        pg = agg(torch.where(a < 0, torch.min(l3, c1), c1), mf, c)
    elif mode == "gspo":
        seq = (nkl * mf).sum(-1) / n.clamp(min=1)
        s = torch.exp(torch.clamp(lp - lp.detach() + seq.detach()[:, None], max=10.0))
        pg = agg(torch.maximum(-a * s, -a * torch.clamp(s, 1 - lo, 1 + hi)), mf, c)
    elif mode == "gpg":
        pg = agg(-lp * a, mf, c)
    elif mode == "cispo":
        pg = agg(-torch.clamp(ratio, 1 - lo, 1 + hi).detach() * a * lp, mf, c)
    elif mode == "sapo":
        tau = torch.where(a > 0, torch.tensor(cfg.tau_pos, dtype=dt), torch.tensor(cfg.tau_neg, dtype=dt))
        pg = agg(-torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau) * a, mf, c)
    elif mode == "geo_mean":
        sgn = torch.sign(a)
        clamped = torch.clamp(nkl, -lo, hi)
        nm = sgn * torch.min(sgn * nkl, sgn * clamped)
        rho = torch.exp((nm * mf).sum(-1) / (n + 1e-8))
        abar = (a * mf).sum(-1) / (n + 1e-8)
        pg = torch.mean(-abar * rho) if agg is _agg else torch.mean((abar * rho).abs())
    else:
        sel = _verl_global_selection(cfg, x)
        assert sel is not None
        if mode == "clip_cov":
            l1 = -a * ratio
            l2 = -a * torch.clamp(ratio, 1 - lo, 1 + hi)
            pg = agg(torch.maximum(l1, l2) * (~sel).to(dt), mf, c)
        else:
            pg = agg(-a * ratio + torch.where(sel, cfg.ppo_kl_coef * nkl.abs(), 0.0), mf, c)
    if cfg.use_kl_loss:
        assert x.ref_logp is not None
        ref = torch.where(m, x.ref_logp.to(dt), zero)
        ck = verl_row_weights(n, t, cfg.loss_agg_mode, cfg)
        pg = pg + cfg.kl_loss_coef * agg(_verl_kl(lp, ref, cfg.kl_loss_type), mf, ck)
    return pg


def _trl_reference(x: LossInputs, lp: torch.Tensor, cfg: TrlLossConfig, agg: Agg = _agg) -> torch.Tensor:
    m = x.mask
    dt = x.dtype
    mf = m.to(dt)
    zero = torch.zeros((), dtype=dt)
    old = lp.detach() if x.old_logp is None else torch.where(m, x.old_logp.to(dt), zero)
    a = x.advantages.to(dt)
    a = a if a.shape[1] == 1 else torch.where(m, a, zero)
    n = mf.sum(-1)
    log_ratio = lp - old
    if cfg.importance_sampling_level == "token":
        liw = log_ratio
    else:
        liw = ((log_ratio * mf).sum(-1) / n.clamp(min=1.0))[:, None]
    coef_1 = torch.exp(liw)
    lt = cfg.loss_type
    if lt == "cispo":
        ptl = -torch.clamp(coef_1, max=cfg.eps_high).detach() * a * lp
    elif lt == "sapo":
        temps = torch.where(a > 0, cfg.sapo_temperature_pos, cfg.sapo_temperature_neg).to(dt)
        ptl = -torch.sigmoid(temps * (coef_1 - 1)) * 4 / temps * a
    else:
        coef_2 = torch.clamp(coef_1, 1 - cfg.epsilon, 1 + cfg.eps_high)
        c1 = coef_1 if cfg.delta is None else torch.clamp(coef_1, max=cfg.delta)
        ptl = -torch.min(c1 * a, coef_2 * a)
    if cfg.beta != 0.0:
        assert x.ref_logp is not None
        ref = torch.where(m, x.ref_logp.to(dt), zero)
        kl = torch.exp(ref - lp) - (ref - lp) - 1
        if cfg.use_bias_correction_kl:
            kl = kl * coef_1
        ptl = ptl + cfg.beta * kl
    return agg(ptl.expand_as(mf), mf, trl_row_weights(n, cfg))


def _reference(x: LossInputs, lp: torch.Tensor, cfg: LossConfig, agg: Agg = _agg) -> torch.Tensor:
    if isinstance(cfg, VerlLossConfig):
        return _verl_reference(x, lp, cfg, agg)
    assert isinstance(cfg, TrlLossConfig)
    return _trl_reference(x, lp, cfg, agg)


def reference_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and d loss / d logp by autograd (CPU; slow; the test oracle).

    Returns:
        (loss, grad) with grad exactly 0 on masked positions.
    """
    x = bool_mask(prepare_inputs(logp, old_logp, ref_logp, advantages, mask, "cpu"))
    dt = x.dtype
    leaf = x.logp.detach().to(dt).clone().requires_grad_(True)
    lp = torch.where(x.mask, leaf, torch.zeros((), dtype=dt))
    loss = _reference(x, lp, config)
    (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(leaf)
    return loss.detach(), torch.where(x.mask, grad, torch.zeros((), dtype=dt))


def reference_loss_scale(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: LossConfig,
) -> float:
    """Sum over valid tokens of |row weight x per-token loss term| (float64, the loss's own formulas).

    A float32 loss is a sum of these terms; when they cancel, two correct summation orders differ by a few
    float32 ulps of this scale, not of the (small) loss. Tests that compare two float32 paths scale their
    absolute tolerance by it.
    """

    def f64(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.double()

    # float64 inputs make prepare_inputs pick the float64 compute dtype
    x = bool_mask(
        prepare_inputs(logp.double(), f64(old_logp), f64(ref_logp), advantages.double(), mask, "cpu")
    )
    lp = torch.where(x.mask, x.logp, torch.zeros((), dtype=torch.float64))
    return abs(float(_reference(x, lp, config, _abs_agg)))
