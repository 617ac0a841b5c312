"""KL-to-reference estimators with their closed-form derivative d kl / d logp (GRPO.md §1.4, §2.2)."""

from __future__ import annotations

import torch


def kl_value_and_grad(lp: torch.Tensor, ref: torch.Tensor, kl_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """verl `kl_penalty(lp, ref, kl_type)` and its derivative w.r.t. `lp`.

    A `+` suffix keeps the forward value and takes the k2 gradient (straight-through), as verl does.

    Returns:
        (value, d value / d lp), both shaped like `lp`.
    """
    plus = kl_type.endswith("+")
    base = kl_type[:-1] if plus else kl_type
    d = lp - ref
    if base in ("kl", "k1"):
        val, grad = d, torch.ones_like(d)
    elif base == "abs":
        val, grad = d.abs(), torch.sign(d)
    elif base in ("mse", "k2"):
        val, grad = 0.5 * d * d, d
    elif base in ("low_var_kl", "k3"):
        delta = -d
        dc = delta.clamp(-20.0, 20.0)
        e = torch.exp(dc)
        k = e - dc - 1
        kc = k.clamp(-10.0, 10.0)
        # clamp passes the gradient on the closed interval, as torch's clamp backward does
        passes = (delta >= -20.0) & (delta <= 20.0) & (k >= -10.0) & (k <= 10.0)
        val, grad = kc, torch.where(passes, 1.0 - e, 0.0)
    else:
        raise NotImplementedError(f"kl type {kl_type!r}")
    if plus:
        grad = d
    return val, grad


def trl_kl_value_and_grad(lp: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's unclamped k3 `exp(ref - lp) - (ref - lp) - 1` and its derivative `1 - exp(ref - lp)`."""
    x = ref - lp
    e = torch.exp(x)
    return e - x - 1, 1.0 - e
