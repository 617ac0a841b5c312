"""Loss aggregation as per-row weights: every peer mode is `loss = sum_i c_i * sum_t m_it * L_it` (GRPO.md §1.3, §2.2).

Writing the aggregation as a row weight `c_i` is what lets the gradient be `c_i * m_it * dL_it/dlogp_it`
without a graph: the aggregated gradient is the per-token derivative times this weight.
"""

from __future__ import annotations

import torch

from service.grpo.config import TrlLossConfig, VerlLossConfig


def verl_row_weights(n: torch.Tensor, width: int, mode: str, cfg: VerlLossConfig) -> torch.Tensor:
    """verl `agg_loss` as row weights c_i, shape (B,), dtype of `n`.

    Args:
        n: (B,) valid-token counts.
        width: padded width T (the default seq-mean-token-sum-norm factor).
        mode: loss_agg_mode (sapo's policy loss always uses seq-mean-token-mean).
        cfg: `loss_scale_factor` (sum-norm divisor, None = width) and the data-parallel `global_batch_info`
            (`dp_size`, `batch_num_tokens`, `global_batch_size`; unset = this request's own counts).
    """
    dp = float(cfg.dp_size)
    if mode == "token-mean":
        # no epsilon: an all-masked batch gives NaN, like verl
        if cfg.batch_num_tokens is None:
            return (dp / n.sum()).expand_as(n)
        return torch.full_like(n, dp / cfg.batch_num_tokens)
    if mode == "token-sum":
        return torch.full_like(n, dp)
    nonempty = (n > 0).to(n.dtype)
    seqs = nonempty.sum() if cfg.global_batch_size is None else float(cfg.global_batch_size)
    if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
        c = nonempty / seqs * dp
        if mode == "seq-mean-token-sum-norm":
            c = c / (float(width) if cfg.loss_scale_factor is None else float(cfg.loss_scale_factor))
        return c
    if mode == "seq-mean-token-mean":
        return nonempty / (n + 1e-8) / seqs * dp
    raise ValueError(f"Invalid loss_agg_mode: {mode}")


def trl_row_weights(n: torch.Tensor, config: TrlLossConfig) -> torch.Tensor:
    """TRL `_compute_loss` aggregation (training mode) as row weights c_i."""
    b = n.numel()
    lt = config.loss_type
    ga = float(config.gradient_accumulation_steps)
    if lt in ("grpo", "sapo"):
        return 1.0 / (n.clamp(min=1.0) * b) / ga
    if lt == "bnpo":
        return trl_token_mean_weights(n, config.gradient_accumulation_steps)
    if lt in ("dapo", "cispo"):
        # normalizer = num_items_in_batch / num_processes * GA / steps_per_generation (one accumulation window
        # of the generation batch); without num_items_in_batch, this request is the whole batch
        if config.num_items_in_batch is None:
            items = n.sum().clamp(min=1.0)
        else:
            items = torch.tensor(max(float(config.num_items_in_batch), 1.0), dtype=n.dtype)
        normalizer = items / config.num_processes * ga / config.spg
        return (1.0 / normalizer).expand_as(n)
    if lt == "dr_grpo":
        return torch.full_like(n, 1.0 / (b * config.max_completion_length) / ga)
    raise ValueError(f"Unknown loss type: {lt}")


def trl_token_mean_weights(n: torch.Tensor, gradient_accumulation_steps: int) -> torch.Tensor:
    """TRL's masked token mean over the accumulation window as row weights: bnpo's policy loss, and the
    entropy bonus of every loss type."""
    return (1.0 / n.sum().clamp(min=1.0) / gradient_accumulation_steps).expand_as(n)
