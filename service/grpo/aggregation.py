"""Loss aggregation as per-row weights: every peer mode is `loss = sum_i c_i * sum_t m_it * L_it` (GRPO.md §1.3, §2.2).

Writing the aggregation as a row weight `c_i` is what lets the gradient be `c_i * m_it * dL_it/dlogp_it`
without a graph: the aggregated gradient is the per-token derivative times this weight.
"""

from __future__ import annotations

import torch

from service.grpo.config import TrlLossConfig


def verl_row_weights(n: torch.Tensor, width: int, mode: str, loss_scale_factor: float | None) -> torch.Tensor:
    """verl `agg_loss` (single process) as row weights c_i, shape (B,), dtype of `n`.

    Args:
        n: (B,) valid-token counts.
        width: padded width T (the default seq-mean-token-sum-norm factor).
        mode: loss_agg_mode.
        loss_scale_factor: sum-norm divisor, None = width.
    """
    if mode == "token-mean":
        # no epsilon: an all-masked batch gives NaN, like verl
        return (1.0 / n.sum()).expand_as(n)
    if mode == "token-sum":
        return torch.ones_like(n)
    nonempty = (n > 0).to(n.dtype)
    seqs = nonempty.sum()
    if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        c = nonempty / seqs
        if mode == "seq-mean-token-sum-norm":
            c = c / (float(width) if loss_scale_factor is None else float(loss_scale_factor))
        return c
    if mode == "seq-mean-token-mean":
        return nonempty / (n + 1e-8) / seqs
    raise ValueError(f"Invalid loss_agg_mode: {mode}")


def trl_row_weights(n: torch.Tensor, config: TrlLossConfig) -> torch.Tensor:
    """TRL `_compute_loss` aggregation (single process, no gradient accumulation) as row weights c_i."""
    b = n.numel()
    lt = config.loss_type
    if lt in ("grpo", "sapo"):
        return 1.0 / (n.clamp(min=1.0) * b)
    if lt in ("bnpo", "dapo", "cispo"):
        # dapo/cispo divide by num_items_in_batch (the global token count); one process: the local count
        return (1.0 / n.sum().clamp(min=1.0)).expand_as(n)
    if lt == "dr_grpo":
        return torch.full_like(n, 1.0 / (b * config.max_completion_length))
    raise ValueError(f"Unknown loss type: {lt}")
