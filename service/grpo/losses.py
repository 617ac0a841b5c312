"""Policy losses with their gradient d loss / d logp in closed form (the fused fast path).

Every loss the peers implement is written here as per-token partial derivatives: `gq = dL/dq` where `q` is
the importance ratio (token or sequence level) and `glp = dL/dlogp` for terms that use logp directly
(cispo, KL). The aggregation is a row weight `c_i` (see `aggregation.py`), so the gradient is

    token-level ratio:     grad_it = c_i m_it (gq_it dq_it/dlogp_it + glp_it)
    sequence-level ratio:  grad_it = c_i m_it glp_it + m_it (sum_s c_i m_is gq_is) q_i / n_i

computed block by block over rows (a block is small enough to stay in cache on CPU; one block on CUDA),
with no autograd graph. Masked positions are sanitised before any arithmetic, so garbage there (NaN, inf)
never reaches the loss and their gradient is exactly 0. `reference.py` holds the autograd version the tests
compare against. Formulas and peer conventions: GRPO.md §1.2-§2.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from service.grpo.advantages import GrpoInputError
from service.grpo.aggregation import trl_row_weights, verl_row_weights
from service.grpo.config import LossConfig, TrlLossConfig, VerlLossConfig
from service.grpo.kl import kl_value_and_grad, trl_kl_value_and_grad


@dataclass
class LossOutput:
    """Result of a loss evaluation.

    Attributes:
        loss: 0-d tensor in the compute dtype.
        grad: (B, T) d loss / d logp in the compute dtype, already multiplied by the aggregation weight,
            exactly 0 on masked positions: `logp.backward(grad)` gives the peer's gradient.
        metrics: peer-named scalars (verl `actor/...`, TRL `clip_ratio/...`, `kl`).
    """

    loss: torch.Tensor
    grad: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class LossInputs:
    """Validated tensors on the compute device (not yet cast; blocks are cast when processed)."""

    logp: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    advantages: torch.Tensor  # (B, 1) or (B, T)
    mask: torch.Tensor  # (B, T) bool
    dtype: torch.dtype  # compute dtype: float64 if logp is float64, else float32


def prepare_inputs(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    device: torch.device | str | None = None,
) -> LossInputs:
    """Check shapes and move tensors to `device` (bf16/fp16/fp32 compute in fp32, fp64 in fp64).

    Raises:
        GrpoInputError: shapes that do not fit together or non-float log-probs.
    """
    if logp.dim() != 2:
        raise GrpoInputError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    if not logp.dtype.is_floating_point:
        raise GrpoInputError(f"logp must be a float tensor, got {logp.dtype}")
    shape = logp.shape
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != shape:
            raise GrpoInputError(f"{name} has shape {tuple(t.shape)}, logp has {tuple(shape)}")
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    if advantages.dim() != 2 or advantages.shape[0] != shape[0] or advantages.shape[1] not in (1, shape[1]):
        raise GrpoInputError(f"advantages must be (B,), (B, 1) or (B, T); got {tuple(advantages.shape)}")
    dev = torch.device(device) if device is not None else logp.device
    dtype = torch.float64 if logp.dtype == torch.float64 else torch.float32

    def mv(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(dev, non_blocking=True)

    m = mask.to(dev)
    m = m if m.dtype == torch.bool else m != 0
    adv = advantages.to(dev)
    return LossInputs(mv(logp), mv(old_logp), mv(ref_logp), adv, m, dtype)  # type: ignore[arg-type]


def _pick(a_lt_b: torch.Tensor, b_lt_a: torch.Tensor, da: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Derivative of min(a, b) as autograd takes it: the smaller side, half of each at a tie."""
    return torch.where(a_lt_b, da, torch.where(b_lt_a, db, 0.5 * (da + db)))


class _Acc:
    """Sums accumulated over row blocks (loss and metric numerators), kept as float64 tensors."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.rows: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        v = value.to(torch.float64)
        self.sums[name] = self.sums[name] + v if name in self.sums else v

    def add_rows(self, name: str, value: torch.Tensor) -> None:
        self.rows.setdefault(name, []).append(value)

    def get(self, name: str) -> float:
        return float(self.sums[name]) if name in self.sums else 0.0


def _block_ranges(b: int, t: int, device: torch.device, block_elems: int | None) -> list[tuple[int, int]]:
    if block_elems is None:
        block_elems = 1 << 62 if device.type == "cuda" else 1 << 16
    rows = max(1, block_elems // max(t, 1))
    return [(i, min(b, i + rows)) for i in range(0, b, rows)]


def _load_block(x: LossInputs, i0: int, i1: int) -> tuple[torch.Tensor, ...]:
    """Cast a row block to the compute dtype and sanitise masked positions (garbage there never propagates)."""
    dt = x.dtype
    m = x.mask[i0:i1]
    zero = torch.zeros((), dtype=dt, device=m.device)
    lp = torch.where(m, x.logp[i0:i1].to(dt), zero)
    old = lp if x.old_logp is None else torch.where(m, x.old_logp[i0:i1].to(dt), zero)
    ref = None if x.ref_logp is None else torch.where(m, x.ref_logp[i0:i1].to(dt), zero)
    a = x.advantages[i0:i1].to(dt)
    if a.shape[1] != 1:
        a = torch.where(m, a, zero)
    mf = m.to(dt)
    return m, mf, lp, old, ref, a


def _finalize(grad: torch.Tensor, loss: torch.Tensor, metrics: dict[str, float], check: bool) -> LossOutput:
    if check and not bool(torch.isfinite(loss)):
        metrics["non_finite_loss"] = 1.0
    return LossOutput(loss=loss, grad=grad, metrics=metrics)


# ----------------------------------------------------------------------------------------------- verl


def _verl_pg_block(
    cfg: VerlLossConfig,
    m: torch.Tensor,
    mf: torch.Tensor,
    lp: torch.Tensor,
    lr: torch.Tensor,
    a: torch.Tensor,
    n: torch.Tensor,
    acc: _Acc,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PG loss L and dL/dlogp for the token-local verl modes."""
    mode = cfg.loss_mode
    lo, hi = 1.0 - cfg.eps_low, 1.0 + cfg.eps_high
    if mode == "gpg":
        return -lp * a, (-a).expand_as(lp)
    if mode == "gspo":
        lseq = (lr * mf).sum(-1, keepdim=True) / n.clamp(min=1)[:, None]
        r = torch.exp(lseq.clamp(max=10.0))
        dr = torch.where(lseq <= 10.0, r, 0.0)
        acc.add("ppo_kl", -(lr * mf).sum())
    else:
        lrc = lr.clamp(-20.0, 20.0)
        r = torch.exp(lrc)
        dr = torch.where(lr.abs() <= 20.0, r, 0.0)
        acc.add("ppo_kl", -(lrc * mf).sum())
    if mode == "cispo":
        rc = r.clamp(lo, hi)
        acc.add("pg_clipfrac", ((r != rc) & m).sum())
        return -rc * a * lp, (-rc * a).expand_as(lp)
    if mode == "sapo":
        tau = torch.where(a > 0, cfg.tau_pos, cfg.tau_neg).to(lp.dtype)
        sg = torch.sigmoid(tau * (r - 1.0))
        return -(sg * (4.0 / tau)) * a, (-4.0 * a * sg * (1.0 - sg) * dr).expand_as(lp)
    # vanilla / gspo: clipped surrogate
    l1 = -a * r
    l2 = -a * r.clamp(lo, hi)
    dl1 = -a * dr
    inr = (r >= lo) & (r <= hi)
    dl2 = torch.where(inr, dl1, 0.0)
    c1 = torch.maximum(l1, l2)
    dc1 = _pick(l2 < l1, l1 < l2, dl1, dl2)  # max(l1, l2) = -min(-l1, -l2)
    acc.add("pg_clipfrac", ((l2 > l1) & m).sum())
    if mode == "gspo":
        return c1.expand_as(lp), dc1.expand_as(lp)
    l3 = -a * cfg.clip_ratio_c
    neg = a < 0
    low = torch.minimum(l3, c1)
    dlow = _pick(c1 < l3, l3 < c1, dc1, torch.zeros_like(dc1))
    acc.add("pg_clipfrac_lower", ((c1 > l3) & neg & m).sum())
    return torch.where(neg, low, c1), torch.where(neg, dlow, dc1).expand_as(lp)


def _verl_global_selection(cfg: VerlLossConfig, x: LossInputs) -> torch.Tensor | None:
    """clip_cov / kl_cov pick tokens by covariance over the whole batch: a (B, T) bool selection."""
    if cfg.loss_mode not in ("clip_cov", "kl_cov"):
        return None
    m, mf, lp, old, _, a = _load_block(x, 0, x.mask.shape[0])
    a = a.expand_as(lp)
    lr = lp - old
    total = int(m.sum())
    if cfg.loss_mode == "clip_cov":
        r = torch.exp(lr)
        lo, hi = 1.0 - cfg.eps_low, 1.0 + cfg.eps_high
        clipped = (-a * r.clamp(lo, hi) > -a * r) & m
        cov = (a - (a * mf).sum() / (mf.sum() + 1e-8)) * (lp - (lp * mf).sum() / (mf.sum() + 1e-8))
        cand = m & ~clipped & (cov < cfg.clip_cov_ub) & (cov > cfg.clip_cov_lb)
        idx = torch.nonzero(cand)
        sel = torch.zeros_like(m)
        if len(idx):
            k = min(max(int(cfg.clip_cov_ratio * total), 1), len(idx))
            gen = torch.Generator().manual_seed(cfg.seed)
            perm = torch.randperm(len(idx), generator=gen).to(idx.device)
            chosen = idx[perm[:k]]
            sel[chosen[:, 0], chosen[:, 1]] = True
        return sel
    flat = torch.nonzero(m.reshape(-1), as_tuple=True)[0]
    sel = torch.zeros_like(m)
    if total:
        av, lv = a[m], lp[m]
        cov = (av - av.mean()) * (lv - lv.mean())
        k = max(1, int(total * cfg.kl_cov_ratio))
        top = flat[torch.topk(cov, k, largest=True).indices]
        sel.view(-1)[top] = True
    return sel


def verl_loss(x: LossInputs, cfg: VerlLossConfig, block_elems: int | None = None) -> LossOutput:
    """verl actor loss (`ppo_loss`: policy loss + kl_loss_coef * agg(kl_penalty)) and its gradient."""
    b, t = x.logp.shape
    dev = x.logp.device
    if cfg.use_kl_loss and x.ref_logp is None:
        raise GrpoInputError("use_kl_loss needs ref_logp")
    n_all = x.mask.sum(-1).to(x.dtype)
    total = n_all.sum()
    pg_mode = "seq-mean-token-mean" if cfg.loss_mode == "sapo" else cfg.loss_agg_mode
    c_pg = verl_row_weights(n_all, t, pg_mode, cfg.loss_scale_factor)
    c_kl = verl_row_weights(n_all, t, cfg.loss_agg_mode, cfg.loss_scale_factor)
    sel = _verl_global_selection(cfg, x)
    grad = torch.empty((b, t), dtype=x.dtype, device=dev)
    acc = _Acc(dev)
    blocks = [(0, b)] if sel is not None else _block_ranges(b, t, dev, block_elems)
    for i0, i1 in blocks:
        m, mf, lp, old, ref, a = _load_block(x, i0, i1)
        n = n_all[i0:i1]
        lr = lp - old
        if cfg.loss_mode == "geo_mean":
            lo, hi = cfg.eps_low, cfg.eps_high
            lrc = lr.clamp(-lo, hi)
            sgn = torch.sign(a)
            lrm = sgn * torch.minimum(sgn * lr, sgn * lrc)
            dlrm = ((a != 0) & (sgn * lr <= sgn * lrc)).to(x.dtype)
            rho = torch.exp((lrm * mf).sum(-1) / (n + 1e-8))
            abar = (a * mf).sum(-1) / (n + 1e-8)
            acc.add("pg", (-abar * rho).sum() / b)
            g = (-(abar * rho) / (n + 1e-8) / b)[:, None] * dlrm
            clipped = (lr != lrc) & m
            acc.add("pg_clipfrac", (clipped & (a > 0)).sum())
            acc.add("pg_clipfrac_lower", (clipped & (a < 0)).sum())
            acc.add("ppo_kl", -(lr * mf).sum())
        elif cfg.loss_mode in ("clip_cov", "kl_cov"):
            assert sel is not None
            r = torch.exp(lr)
            if cfg.loss_mode == "clip_cov":
                lo, hi = 1.0 - cfg.eps_low, 1.0 + cfg.eps_high
                l1, l2 = -a * r, -a * r.clamp(lo, hi)
                dl1 = -a * r
                dl2 = torch.where((r >= lo) & (r <= hi), dl1, 0.0)
                loss_t = torch.where(sel, 0.0, torch.maximum(l1, l2))
                g_t = torch.where(sel, 0.0, _pick(l2 < l1, l1 < l2, dl1, dl2))
                acc.add("pg_clipfrac", (sel & m).sum())
                acc.add("ppo_kl", -(lr * mf).sum())
            else:
                loss_t = -a * r + torch.where(sel, cfg.ppo_kl_coef * lr.abs(), 0.0)
                g_t = -a * r + torch.where(sel, cfg.ppo_kl_coef * torch.sign(lr), 0.0)
                acc.add("ppo_kl_abs", (lr.abs() * mf).sum())
            cw = c_pg[:, None]
            acc.add("pg", (loss_t * mf * cw).sum())
            g = g_t * cw
        else:
            loss_t, g_t = _verl_pg_block(cfg, m, mf, lp, lr, a, n, acc)
            cw = c_pg[i0:i1, None]
            acc.add("pg", (loss_t * mf).sum(-1).mul(c_pg[i0:i1]).sum())
            g = g_t * cw
        if cfg.use_kl_loss:
            assert ref is not None
            kv, kg = kl_value_and_grad(lp, ref, cfg.kl_loss_type)
            ck = c_kl[i0:i1]
            acc.add("kl_loss", (kv * mf).sum(-1).mul(ck).sum())
            acc.add("kl_sum", (kv * mf).sum())
            g = g + (cfg.kl_loss_coef * ck)[:, None] * kg
        torch.where(m, g, torch.zeros((), dtype=x.dtype, device=dev), out=grad[i0:i1])
    pg = acc.sums.get("pg", torch.zeros((), dtype=torch.float64, device=dev))
    loss = pg + cfg.kl_loss_coef * acc.sums["kl_loss"] if cfg.use_kl_loss else pg
    denom = float(total) + 1e-8
    metrics: dict[str, float] = {"actor/pg_loss": float(pg)}
    if cfg.loss_mode == "kl_cov":
        metrics["actor/ppo_kl"] = acc.get("ppo_kl_abs") / denom
    elif cfg.loss_mode != "gpg":
        metrics["actor/ppo_kl"] = acc.get("ppo_kl") / denom
        metrics["actor/pg_clipfrac"] = acc.get("pg_clipfrac") / denom
        if cfg.loss_mode != "clip_cov":
            metrics["actor/pg_clipfrac_lower"] = acc.get("pg_clipfrac_lower") / denom
    if cfg.use_kl_loss:
        metrics["actor/kl_loss"] = acc.get("kl_loss")
        metrics["actor/kl_coef"] = cfg.kl_loss_coef
        metrics["kl_mean"] = acc.get("kl_sum") / denom
    return _finalize(grad, loss.to(x.dtype), metrics, True)


# ------------------------------------------------------------------------------------------------ TRL


def trl_loss(x: LossInputs, cfg: TrlLossConfig, block_elems: int | None = None) -> LossOutput:
    """TRL `GRPOTrainer._compute_loss` (one process, no gradient accumulation) and its gradient."""
    b, t = x.logp.shape
    dev = x.logp.device
    if cfg.beta != 0.0 and x.ref_logp is None:
        raise GrpoInputError("beta != 0 needs ref_logp")
    n_all = x.mask.sum(-1).to(x.dtype)
    total = n_all.sum()
    c_all = trl_row_weights(n_all, cfg)
    seq = cfg.importance_sampling_level == "sequence"
    lt = cfg.loss_type
    el, eh = cfg.epsilon, cfg.eps_high
    grad = torch.empty((b, t), dtype=x.dtype, device=dev)
    acc = _Acc(dev)
    per_row_metric = seq and x.advantages.shape[1] == 1
    for i0, i1 in _block_ranges(b, t, dev, block_elems):
        m, mf, lp, old, ref, a = _load_block(x, i0, i1)
        n = n_all[i0:i1]
        c = c_all[i0:i1]
        lr = lp - old
        w = (lr * mf).sum(-1, keepdim=True) / n.clamp(min=1)[:, None] if seq else lr
        q = torch.exp(w)
        glp: torch.Tensor | float = 0.0
        if lt == "cispo":
            cq = q.clamp(max=eh)
            ptl = -cq * a * lp
            gq: torch.Tensor = torch.zeros_like(q)
            glp = -cq * a
            acc.add("cispo_clip", ((q > eh) & (a > 0)).expand_as(m).logical_and(m).sum())
        elif lt == "sapo":
            tau = torch.where(a > 0, cfg.sapo_temperature_pos, cfg.sapo_temperature_neg).to(x.dtype)
            sg = torch.sigmoid(tau * (q - 1.0))
            ptl = -(sg * 4.0 / tau) * a
            gq = -4.0 * a * sg * (1.0 - sg)
        else:
            q2 = q.clamp(1.0 - el, 1.0 + eh)
            inr = ((q >= 1.0 - el) & (q <= 1.0 + eh)).to(x.dtype)
            if cfg.delta is not None:
                q1 = q.clamp(max=cfg.delta)
                pass1 = (q <= cfg.delta).to(x.dtype)
            else:
                q1, pass1 = q, torch.ones((), dtype=x.dtype, device=dev)
            p1, p2 = q1 * a, q2 * a
            ptl = -torch.minimum(p1, p2)
            gq = -a * _pick(p1 < p2, p2 < p1, pass1.expand_as(p1), inr.expand_as(p2))
            low = (q < 1.0 - el) & (a < 0)
            high = (q > 1.0 + eh) & (a > 0)
            if per_row_metric:
                acc.add("low", low.sum())
                acc.add("high", high.sum())
                acc.add("region", (low | high).sum())
                acc.add_rows("low_rows", low[:, 0].to(x.dtype))
                acc.add_rows("high_rows", high[:, 0].to(x.dtype))
            else:
                lowf, highf = (low & m).to(x.dtype), (high & m).to(x.dtype)
                acc.add("low", lowf.sum())
                acc.add("high", highf.sum())
                acc.add("region", ((low | high) & m).sum())
                acc.add_rows("low_rows", lowf.sum(-1) / n)
                acc.add_rows("high_rows", highf.sum(-1) / n)
        if cfg.beta != 0.0:
            assert ref is not None
            kv, kg = trl_kl_value_and_grad(lp, ref)
            if cfg.use_bias_correction_kl:
                kl = kv * q
                gq = gq + cfg.beta * kv
                glp = glp + cfg.beta * kg * q
            else:
                kl = kv
                glp = glp + cfg.beta * kg
            ptl = ptl + cfg.beta * kl
            acc.add("kl", (kl * mf).sum())
        acc.add("loss", (ptl.expand_as(mf) * mf).sum(-1).mul(c).sum())
        cw = c[:, None]
        if seq:
            gsum = (gq.expand_as(mf) * mf).sum(-1, keepdim=True) * cw
            g = cw * glp + gsum * q / n.clamp(min=1)[:, None]
        else:
            g = cw * (gq * q + glp)
        g = g.expand_as(mf)
        torch.where(m, g, torch.zeros((), dtype=x.dtype, device=dev), out=grad[i0:i1])
    loss = acc.sums["loss"].to(x.dtype)
    tok = max(float(total), 1.0)
    metrics: dict[str, float] = {}
    if cfg.beta != 0.0:
        metrics["kl"] = acc.get("kl") / tok
    if lt == "cispo":
        metrics["cispo_clip_ratio"] = acc.get("cispo_clip") / tok
    elif lt != "sapo":
        den = float(b) if per_row_metric else tok
        metrics["clip_ratio/low_mean"] = acc.get("low") / den
        metrics["clip_ratio/high_mean"] = acc.get("high") / den
        metrics["clip_ratio/region_mean"] = acc.get("region") / den
        lows = torch.cat(acc.rows["low_rows"]) if b else torch.zeros(0)
        highs = torch.cat(acc.rows["high_rows"]) if b else torch.zeros(0)
        lows, highs = lows[~torch.isnan(lows)], highs[~torch.isnan(highs)]
        metrics["clip_ratio/low_min"] = float(lows.min()) if lows.numel() else float("nan")
        metrics["clip_ratio/high_max"] = float(highs.max()) if highs.numel() else float("nan")
    return _finalize(grad, loss, metrics, True)


def compute_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: LossConfig,
    *,
    device: torch.device | str | None = None,
    block_elems: int | None = None,
) -> LossOutput:
    """Loss, closed-form gradient and metrics for either flavour (the config's type picks it).

    Args:
        logp: (B, T) current policy log-probs (bf16, fp16, fp32 or fp64).
        old_logp: (B, T) behaviour-policy log-probs, or None for on-policy (old = logp, detached).
        ref_logp: (B, T) reference log-probs (needed for the KL term).
        advantages: (B,) per sequence or (B, T) per token.
        mask: (B, T) response mask (bool or 0/1).
        config: `VerlLossConfig` or `TrlLossConfig`.
        device: where to compute (default: logp's device).
        block_elems: elements per row block (default: 64 Ki on CPU, one block on CUDA).

    Returns:
        `LossOutput` (loss, grad already weighted by the aggregation, metrics).
    """
    x = prepare_inputs(logp, old_logp, ref_logp, advantages, mask, device)
    if isinstance(config, VerlLossConfig):
        return verl_loss(x, config, block_elems)
    return trl_loss(x, config, block_elems)
