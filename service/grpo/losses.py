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

import functools
import os
from dataclasses import dataclass, field

import torch

from service.grpo import fused_cpu
from service.grpo.advantages import GrpoInputError
from service.grpo.aggregation import trl_row_weights, verl_row_weights
from service.grpo.config import LossConfig, TrlLossConfig, VerlLossConfig
from service.grpo.entropy import check_entropy, entropy_bonus
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
    grad_entropy: torch.Tensor | None = None  # d loss / d entropy, when the request sent entropies


@dataclass
class LossInputs:
    """Validated tensors on the compute device (not yet cast; blocks are cast when processed)."""

    logp: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    advantages: torch.Tensor  # (B, 1) or (B, T)
    mask: torch.Tensor  # (B, T) bool or uint8 (0 = masked, anything else = valid)
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

    # a uint8 mask stays uint8 (the fused kernel reads it as is; converting 2 M bytes costs ~1 ms);
    # `bool_mask` makes the bool view the torch path needs
    m = mask.to(dev)
    if m.dtype not in (torch.bool, torch.uint8):
        m = m != 0
    adv = advantages.to(dev)
    return LossInputs(mv(logp), mv(old_logp), mv(ref_logp), adv, m, dtype)  # type: ignore[arg-type]


def bool_mask(x: LossInputs) -> LossInputs:
    """`x` with a bool mask (the torch path's `torch.where` needs one)."""
    if x.mask.dtype == torch.bool:
        return x
    return LossInputs(x.logp, x.old_logp, x.ref_logp, x.advantages, x.mask != 0, x.dtype)


def _pick(a_lt_b: torch.Tensor, b_lt_a: torch.Tensor, da: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Derivative of min(a, b) as autograd takes it: the smaller side, half of each at a tie."""
    return torch.where(a_lt_b, da, torch.where(b_lt_a, db, 0.5 * (da + db)))


Stats = dict[str, torch.Tensor]


def _add(st: Stats, name: str, value: torch.Tensor) -> None:
    st[name] = st[name] + value if name in st else value


def _block_ranges(b: int, t: int, device: torch.device, block_elems: int | None) -> list[tuple[int, int]]:
    if block_elems is None:
        block_elems = 1 << 62 if device.type == "cuda" else 1 << 18
    rows = max(1, block_elems // max(t, 1))
    return [(i, min(b, i + rows)) for i in range(0, b, rows)]


def _load_block(
    lp_raw: torch.Tensor,
    old_raw: torch.Tensor | None,
    ref_raw: torch.Tensor | None,
    a_raw: torch.Tensor,
    m: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Cast a row block to the compute dtype and sanitise masked positions (garbage there never propagates)."""
    dt = torch.float64 if lp_raw.dtype == torch.float64 else torch.float32
    zero = torch.zeros((), dtype=dt, device=m.device)
    lp = torch.where(m, lp_raw.to(dt), zero)
    old = lp if old_raw is None else torch.where(m, old_raw.to(dt), zero)
    ref = None if ref_raw is None else torch.where(m, ref_raw.to(dt), zero)
    a = a_raw.to(dt)
    if a.shape[1] != 1:
        a = torch.where(m, a, zero)
    mf = m.to(dt)
    return m, mf, lp, old, ref, a


def _slices(x: LossInputs, i0: int, i1: int) -> tuple:
    def sl(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[i0:i1]

    return x.logp[i0:i1], sl(x.old_logp), sl(x.ref_logp), x.advantages[i0:i1], x.mask[i0:i1]


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
    acc: Stats,
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
        _add(acc, "ppo_kl", -(lr * mf).sum())
    else:
        lrc = lr.clamp(-20.0, 20.0)
        r = torch.exp(lrc)
        dr = torch.where(lr.abs() <= 20.0, r, 0.0)
        _add(acc, "ppo_kl", -(lrc * mf).sum())
    if mode == "cispo":
        rc = r.clamp(lo, hi)
        _add(acc, "pg_clipfrac", ((r != rc) & m).sum())
        return -rc * a * lp, (-rc * a).expand_as(lp)
    if mode == "sapo":
        tp = torch.tensor(cfg.tau_pos, dtype=lp.dtype, device=lp.device)
        tau = torch.where(a > 0, tp, torch.tensor(cfg.tau_neg, dtype=lp.dtype, device=lp.device))
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
    _add(acc, "pg_clipfrac", ((l2 > l1) & m).sum())
    if mode == "gspo":
        return c1.expand_as(lp), dc1.expand_as(lp)
    l3 = -a * cfg.clip_ratio_c
    neg = a < 0
    low = torch.minimum(l3, c1)
    dlow = _pick(c1 < l3, l3 < c1, dc1, torch.zeros_like(dc1))
    _add(acc, "pg_clipfrac_lower", ((c1 > l3) & neg & m).sum())
    return torch.where(neg, low, c1), torch.where(neg, dlow, dc1).expand_as(lp)


def _verl_global_selection(cfg: VerlLossConfig, x: LossInputs) -> torch.Tensor | None:
    """clip_cov / kl_cov pick tokens by covariance over the whole batch: a (B, T) bool selection."""
    if cfg.loss_mode not in ("clip_cov", "kl_cov"):
        return None
    m, mf, lp, old, _, a = _load_block(*_slices(x, 0, x.mask.shape[0]))
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


def _verl_block(
    cfg: VerlLossConfig,
    lp_raw: torch.Tensor,
    old_raw: torch.Tensor | None,
    ref_raw: torch.Tensor | None,
    a_raw: torch.Tensor,
    m: torch.Tensor,
    n: torch.Tensor,
    c_pg: torch.Tensor,
    c_kl: torch.Tensor,
    sel: torch.Tensor | None,
    b_total: int,
) -> tuple[torch.Tensor, Stats]:
    """One row block of the verl loss: (masked gradient, partial sums). Pure, so torch.compile can fuse it."""
    m, mf, lp, old, ref, a = _load_block(lp_raw, old_raw, ref_raw, a_raw, m)
    dt = lp.dtype
    acc: Stats = {}
    lr = lp - old
    if cfg.loss_mode == "geo_mean":
        lo, hi = cfg.eps_low, cfg.eps_high
        lrc = lr.clamp(-lo, hi)
        sgn = torch.sign(a)
        lrm = sgn * torch.minimum(sgn * lr, sgn * lrc)
        dlrm = ((a != 0) & (sgn * lr <= sgn * lrc)).to(dt)
        rho = torch.exp((lrm * mf).sum(-1) / (n + 1e-8))
        abar = (a * mf).sum(-1) / (n + 1e-8)
        _add(acc, "pg", (-abar * rho).sum() / b_total)
        g = (-(abar * rho) / (n + 1e-8) / b_total)[:, None] * dlrm
        clipped = (lr != lrc) & m
        _add(acc, "pg_clipfrac", (clipped & (a > 0)).sum())
        _add(acc, "pg_clipfrac_lower", (clipped & (a < 0)).sum())
        _add(acc, "ppo_kl", -(lr * mf).sum())
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
            _add(acc, "pg_clipfrac", (sel & m).sum())
            _add(acc, "ppo_kl", -(lr * mf).sum())
        else:
            loss_t = -a * r + torch.where(sel, cfg.ppo_kl_coef * lr.abs(), 0.0)
            g_t = -a * r + torch.where(sel, cfg.ppo_kl_coef * torch.sign(lr), 0.0)
            _add(acc, "ppo_kl_abs", (lr.abs() * mf).sum())
        _add(acc, "pg", (loss_t * mf).sum(-1).mul(c_pg).sum())
        g = g_t * c_pg[:, None]
    else:
        loss_t, g_t = _verl_pg_block(cfg, m, mf, lp, lr, a, n, acc)
        _add(acc, "pg", (loss_t * mf).sum(-1).mul(c_pg).sum())
        g = g_t * c_pg[:, None]
    if cfg.use_kl_loss:
        assert ref is not None
        kv, kg = kl_value_and_grad(lp, ref, cfg.kl_loss_type)
        _add(acc, "kl_loss", (kv * mf).sum(-1).mul(c_kl).sum())
        _add(acc, "kl_sum", (kv * mf).sum())
        g = g + (cfg.kl_loss_coef * c_kl)[:, None] * kg
    return torch.where(m, g, torch.zeros((), dtype=dt, device=m.device)), acc


def _run_blocks(block_fn, x: LossInputs, blocks: list[tuple[int, int]], per_row: tuple, extra: tuple):
    """Run `block_fn` over row blocks; write gradients into one buffer and sum the partial stats."""
    b, t = x.logp.shape
    if len(blocks) == 1:
        g, st = block_fn(*_slices(x, 0, b), *per_row, *extra)
        sums1 = {k: v.to(torch.float64) for k, v in st.items() if not k.endswith("_rows")}
        return g, sums1, {k: v for k, v in st.items() if k.endswith("_rows")}
    grad = torch.empty((b, t), dtype=x.dtype, device=x.logp.device)
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, list[torch.Tensor]] = {}
    for i0, i1 in blocks:
        g, st = block_fn(*_slices(x, i0, i1), *(p[i0:i1] for p in per_row), *extra)
        grad[i0:i1] = g
        for k, v in st.items():
            if k.endswith("_rows"):
                rows.setdefault(k, []).append(v)
            else:
                _add(sums, k, v.to(torch.float64))
    return grad, sums, {k: torch.cat(v) for k, v in rows.items()}


_COMPILED: dict[tuple, object] = {}


def _maybe_compiled(fn, cfg: LossConfig, use_compile: bool):
    """torch.compile'd block function per config (optional: eager works everywhere; compile fuses the
    elementwise chain into one or two loops on CPU (C++) and GPU (Triton))."""
    if not use_compile:
        return functools.partial(fn, cfg)
    key = (fn.__name__, cfg)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(functools.partial(fn, cfg), dynamic=True)
    return _COMPILED[key]


def _fused_run(x: LossInputs, cfg: LossConfig, native: bool) -> fused_cpu.FusedRun | None:
    """The fused CPU kernel for these inputs, if asked for, supported and built (else the torch path)."""
    if not native or not fused_cpu.supports(cfg, x.logp):
        return None
    lib = fused_cpu.library()
    if lib is None:
        return None
    return fused_cpu.FusedRun(lib, x.logp, x.old_logp, x.ref_logp, x.advantages, x.mask)


def verl_loss(
    x: LossInputs,
    cfg: VerlLossConfig,
    block_elems: int | None = None,
    use_compile: bool = False,
    native: bool = False,
    grad_out: torch.Tensor | None = None,
) -> LossOutput:
    """verl actor loss (`ppo_loss`: policy loss + kl_loss_coef * agg(kl_penalty)) and its gradient."""
    b, t = x.logp.shape
    dev = x.logp.device
    if cfg.use_kl_loss and x.ref_logp is None:
        raise GrpoInputError("use_kl_loss needs ref_logp")
    fused = _fused_run(x, cfg, native)
    if fused is None:
        x = bool_mask(x)
    n_all = (fused.row_counts() if fused is not None else x.mask.sum(-1)).to(x.dtype)
    total = n_all.sum()
    pg_mode = "seq-mean-token-mean" if cfg.loss_mode == "sapo" else cfg.loss_agg_mode
    c_pg = verl_row_weights(n_all, t, pg_mode, cfg)
    c_kl = verl_row_weights(n_all, t, cfg.loss_agg_mode, cfg)
    if fused is not None:
        grad, st, _ = fused.run(cfg, c_pg, c_kl, out=grad_out)
        names = {"pg": "loss", "ppo_kl": "ppo_kl", "pg_clipfrac": "clip", "pg_clipfrac_lower": "clip_lower"}
        if cfg.use_kl_loss:
            names |= {"kl_loss": "kl_loss", "kl_sum": "kl_sum"}
        sums = {k: st[v] for k, v in names.items()}
    else:
        sel = _verl_global_selection(cfg, x)
        global_sel = sel is not None
        blocks = [(0, b)] if global_sel or use_compile else _block_ranges(b, t, dev, block_elems)
        fn = _maybe_compiled(_verl_block, cfg, use_compile and not global_sel)
        grad, sums, _ = _run_blocks(fn, x, blocks, (n_all, c_pg, c_kl), (sel, b))
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    pg = sums.get("pg", zero)
    loss = pg + cfg.kl_loss_coef * sums.get("kl_loss", zero) if cfg.use_kl_loss else pg

    def get(k: str) -> float:
        return float(sums[k]) if k in sums else 0.0

    denom = float(total) + 1e-8
    metrics: dict[str, float] = {"actor/pg_loss": float(pg)}
    if cfg.loss_mode == "kl_cov":
        metrics["actor/ppo_kl"] = get("ppo_kl_abs") / denom
    elif cfg.loss_mode != "gpg":
        metrics["actor/ppo_kl"] = get("ppo_kl") / denom
        metrics["actor/pg_clipfrac"] = get("pg_clipfrac") / denom
        if cfg.loss_mode != "clip_cov":
            metrics["actor/pg_clipfrac_lower"] = get("pg_clipfrac_lower") / denom
    if cfg.use_kl_loss:
        metrics["actor/kl_loss"] = get("kl_loss")
        metrics["actor/kl_coef"] = cfg.kl_loss_coef
        metrics["kl_mean"] = get("kl_sum") / denom
    return _finalize(grad, loss.to(x.dtype), metrics, True)


# ------------------------------------------------------------------------------------------------ TRL


def _trl_block(
    cfg: TrlLossConfig,
    lp_raw: torch.Tensor,
    old_raw: torch.Tensor | None,
    ref_raw: torch.Tensor | None,
    a_raw: torch.Tensor,
    m: torch.Tensor,
    n: torch.Tensor,
    c: torch.Tensor,
    per_row_metric: bool,
) -> tuple[torch.Tensor, Stats]:
    """One row block of TRL's loss: (masked gradient, partial sums). Pure, so torch.compile can fuse it."""
    m, mf, lp, old, ref, a = _load_block(lp_raw, old_raw, ref_raw, a_raw, m)
    dt = lp.dtype
    acc: Stats = {}
    seq = cfg.importance_sampling_level == "sequence"
    lt = cfg.loss_type
    el, eh = cfg.epsilon, cfg.eps_high
    lr = lp - old
    w = (lr * mf).sum(-1, keepdim=True) / n.clamp(min=1)[:, None] if seq else lr
    q = torch.exp(w)
    glp: torch.Tensor | float = 0.0
    if lt == "cispo":
        cq = q.clamp(max=eh)
        ptl = -cq * a * lp
        gq: torch.Tensor = torch.zeros_like(q)
        glp = -cq * a
        _add(acc, "cispo_clip", ((q > eh) & (a > 0) & m).sum())
    elif lt == "sapo":
        # TRL builds the temperatures with torch.where on Python floats: float32 values, kept for parity
        tau = torch.where(a > 0, cfg.sapo_temperature_pos, cfg.sapo_temperature_neg).to(dt)
        sg = torch.sigmoid(tau * (q - 1.0))
        ptl = -(sg * 4.0 / tau) * a
        gq = -4.0 * a * sg * (1.0 - sg)
    else:
        q2 = q.clamp(1.0 - el, 1.0 + eh)
        inr = ((q >= 1.0 - el) & (q <= 1.0 + eh)).to(dt)
        if cfg.delta is not None:
            q1 = q.clamp(max=cfg.delta)
            pass1 = (q <= cfg.delta).to(dt)
        else:
            q1, pass1 = q, torch.ones_like(q)
        p1, p2 = q1 * a, q2 * a
        ptl = -torch.minimum(p1, p2)
        gq = -a * _pick(p1 < p2, p2 < p1, pass1, inr)
        low = (q < 1.0 - el) & (a < 0)
        high = (q > 1.0 + eh) & (a > 0)
        if per_row_metric:
            _add(acc, "low", low.sum())
            _add(acc, "high", high.sum())
            _add(acc, "region", (low | high).sum())
            acc["low_rows"] = low[:, 0].to(dt)
            acc["high_rows"] = high[:, 0].to(dt)
        else:
            lowf, highf = (low & m).to(dt), (high & m).to(dt)
            _add(acc, "low", lowf.sum())
            _add(acc, "high", highf.sum())
            _add(acc, "region", ((low | high) & m).sum())
            acc["low_rows"] = lowf.sum(-1) / n
            acc["high_rows"] = highf.sum(-1) / n
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
        _add(acc, "kl", (kl * mf).sum())
    _add(acc, "loss", (ptl * mf).sum(-1).mul(c).sum())
    cw = c[:, None]
    if seq:
        gsum = (gq * mf).sum(-1, keepdim=True) * cw
        g = cw * glp + gsum * q / n.clamp(min=1)[:, None]
    else:
        g = cw * (gq * q + glp)
    return torch.where(m, g, torch.zeros((), dtype=dt, device=m.device)), acc


def trl_loss(
    x: LossInputs,
    cfg: TrlLossConfig,
    block_elems: int | None = None,
    use_compile: bool = False,
    native: bool = False,
    grad_out: torch.Tensor | None = None,
) -> LossOutput:
    """TRL `GRPOTrainer._compute_loss` (training mode; processes and accumulation from the config) and its
    gradient."""
    b, t = x.logp.shape
    dev = x.logp.device
    if cfg.beta != 0.0 and x.ref_logp is None:
        raise GrpoInputError("beta != 0 needs ref_logp")
    fused = _fused_run(x, cfg, native)
    if fused is None:
        x = bool_mask(x)
    n_all = (fused.row_counts() if fused is not None else x.mask.sum(-1)).to(x.dtype)
    total = n_all.sum()
    c_all = trl_row_weights(n_all, cfg)
    per_row_metric = cfg.importance_sampling_level == "sequence" and x.advantages.shape[1] == 1
    if fused is not None:
        grad, st, per_row = fused.run(cfg, c_all, c_all, per_row_metric, out=grad_out)
        sums = {"loss": st["loss"], "low": st["low"], "high": st["high"], "region": st["region"]}
        if cfg.beta != 0.0:
            sums["kl"] = st["kl_sum"]
        rows = {
            "low_rows": fused.column(per_row, "low_row").to(x.dtype),
            "high_rows": fused.column(per_row, "high_row").to(x.dtype),
        }
    else:
        blocks = [(0, b)] if use_compile else _block_ranges(b, t, dev, block_elems)
        fn = _maybe_compiled(_trl_block, cfg, use_compile)
        grad, sums, rows = _run_blocks(fn, x, blocks, (n_all, c_all), (per_row_metric,))
    # an empty batch (B = 0) runs no block: nothing summed, loss 0 as TRL gives
    loss = sums.get("loss", torch.zeros((), dtype=torch.float64)).to(x.dtype)
    lt = cfg.loss_type
    tok = max(float(total), 1.0)

    def get(k: str) -> float:
        return float(sums[k]) if k in sums else 0.0

    metrics: dict[str, float] = {}
    if cfg.beta != 0.0:
        metrics["kl"] = get("kl") / tok
    if lt == "cispo":
        metrics["cispo_clip_ratio"] = get("cispo_clip") / tok
    elif lt != "sapo":
        den = float(b) if per_row_metric else tok
        metrics["clip_ratio/low_mean"] = get("low") / den
        metrics["clip_ratio/high_mean"] = get("high") / den
        metrics["clip_ratio/region_mean"] = get("region") / den
        empty = torch.zeros(0, dtype=x.dtype)
        lows, highs = rows.get("low_rows", empty), rows.get("high_rows", empty)
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
    use_compile: bool | None = None,
    native: bool | None = None,
    entropy: torch.Tensor | None = None,
    grad_out: torch.Tensor | None = None,
    grad_entropy_out: torch.Tensor | None = None,
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
        block_elems: elements per row block (default: 256 Ki on CPU, one block on CUDA).
        use_compile: run the block function through `torch.compile` (one fused pass; the first call per
            config compiles, seconds to a minute). None = env `REFEREE_GRPO_COMPILE=1`, else eager.
        native: use the fused C kernel (`fused_cpu.py`) when it supports the config and the inputs (CPU,
            not float64) and a compiler built it. None = yes unless torch.compile was asked for.
        entropy: (B, T) per-token entropies for the entropy bonus (verl `entropy_coeff`, TRL `entropy_coef`);
            then `grad_entropy` is set.
        grad_out, grad_entropy_out: (B, T) tensors to write the gradients into (a shared-memory buffer the
            trainer reads them from); the fused kernel writes a contiguous float32 CPU one directly, anything else
            gets a copy (cast) at the end. The returned `grad` / `grad_entropy` are then these tensors.

    Returns:
        `LossOutput` (loss, grad already weighted by the aggregation, metrics, grad_entropy).
    """
    x = prepare_inputs(logp, old_logp, ref_logp, advantages, mask, device)
    if entropy is not None:
        check_entropy(entropy, x.logp.shape)
    if use_compile is None:
        use_compile = os.environ.get("REFEREE_GRPO_COMPILE", "") == "1"
    if native is None:
        native = not use_compile
    for name, dest in (("grad_out", grad_out), ("grad_entropy_out", grad_entropy_out)):
        if dest is not None and tuple(dest.shape) != tuple(x.logp.shape):
            raise GrpoInputError(f"{name} has shape {list(dest.shape)}, logp has {list(x.logp.shape)}")
    if isinstance(config, VerlLossConfig):
        out = verl_loss(x, config, block_elems, use_compile, native, grad_out)
    else:
        out = trl_loss(x, config, block_elems, use_compile, native, grad_out)
    out = LossOutput(out.loss, written_into(grad_out, out.grad), out.metrics)
    if entropy is None:
        return out
    bonus, grad_h, metrics = entropy_bonus(entropy, x.mask, config, x.dtype)
    return LossOutput(
        loss=(out.loss - bonus.to(out.loss.dtype)),
        grad=out.grad,
        metrics={**out.metrics, **metrics},
        grad_entropy=written_into(grad_entropy_out, grad_h),
    )


def written_into(dest: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """`value` written into `dest` (unless the kernel already wrote it there), or `value` when no `dest`."""
    if dest is None:
        return value
    if dest.data_ptr() != value.data_ptr() or dest.dtype != value.dtype or dest.device != value.device:
        dest.copy_(value)
    return dest
