"""The entropy bonus: `loss - coef * agg(H)` with H the per-token entropy the trainer computed.

The entropy is a function of the full logits, which the service never sees; the trainer sends H per token
and gets back `grad_entropy` = d loss / d H (closed form: `-coef * c_i` on valid tokens, 0 elsewhere), then
runs `torch.autograd.backward([logp, H], [grad_logprobs, grad_entropy])`.

- verl (`entropy_coeff`): `agg_loss(entropy, mask, loss_agg_mode, **global_batch_info)`, the same row
  weights as the KL term; metric `actor/entropy_loss`.
- TRL (`entropy_coef`, static; the adaptive controller keeps state across steps and is the trainer's): the
  masked token mean of H divided by the accumulation steps, whatever the loss type; metric `entropy` (the
  masked mean TRL logs).
"""

from __future__ import annotations

import torch

from service.grpo.advantages import GrpoInputError
from service.grpo.aggregation import trl_token_mean_weights, verl_row_weights
from service.grpo.config import LossConfig, VerlLossConfig


def check_entropy(entropy: torch.Tensor, shape: torch.Size) -> None:
    """Raises GrpoInputError unless `entropy` is a float tensor of logp's shape."""
    if entropy.shape != shape:
        raise GrpoInputError(f"entropy has shape {tuple(entropy.shape)}, logp has {tuple(shape)}")
    if not entropy.dtype.is_floating_point:
        raise GrpoInputError(f"entropy must be a float tensor, got {entropy.dtype}")


def entropy_bonus(
    entropy: torch.Tensor, mask: torch.Tensor, config: LossConfig, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(bonus value to subtract from the loss, d loss / d H (B, T), metrics) for (B, T) entropies already
    checked by `check_entropy` (compute_loss does).

    Masked positions may hold anything (NaN included): they never reach the value and get gradient 0.
    """
    m = mask if mask.dtype == torch.bool else mask != 0
    zero = torch.zeros((), dtype=dtype, device=m.device)
    h = torch.where(m, entropy.to(m.device, dtype), zero)
    n = m.to(dtype).sum(-1)
    if isinstance(config, VerlLossConfig):
        coef = config.entropy_coeff
        c = verl_row_weights(n, m.shape[1], config.loss_agg_mode, config)
    else:
        coef = config.entropy_coef
        c = trl_token_mean_weights(n, config.gradient_accumulation_steps)
    value = (h.sum(-1) * c).sum()
    if isinstance(config, VerlLossConfig):
        metrics = {"actor/entropy_loss": float(value)}
    else:  # TRL logs the plain masked mean, whatever the accumulation
        metrics = {"entropy": float(h.sum() / n.sum().clamp(min=1.0))}
    grad = torch.where(m, (-coef * c)[:, None].expand(m.shape), zero)
    return coef * value, grad, metrics
