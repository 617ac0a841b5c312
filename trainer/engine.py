"""Where the GRPO maths runs for the trainer worker: over HTTP (``POST /grpo/advantages`` and
``POST /grpo/loss`` with a safetensors body) or in process (``service.grpo``, the same library the
service runs).

Every engine answers the same two questions, so the training loop does not care which it uses:

* ``advantages(rewards, group_size)`` → one advantage per completion;
* ``loss(logp, old, ref, advantages, mask)`` → (loss, d loss / d logp per token, metrics); the loop
  then calls ``logp.backward(grad)``.

``LocalEngine`` is a small autograd version of TRL's ``grpo`` objective without the KL bias
correction, for environments that have neither the service nor its ``service.grpo`` package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class GRPOOptions:
    """TRL ``GRPOConfig`` names (the engines use the ``trl`` flavor)."""

    loss_type: str = "grpo"
    beta: float = 0.01
    epsilon: float = 0.2
    epsilon_high: float | None = None
    scale_rewards: str = "group"
    use_bias_correction_kl: bool = False

    def loss_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "flavor": "trl",
            "loss_type": self.loss_type,
            "beta": self.beta,
            "epsilon": self.epsilon,
            "use_bias_correction_kl": self.use_bias_correction_kl,
        }
        if self.epsilon_high is not None:
            out["epsilon_high"] = self.epsilon_high
        return out


@dataclass(frozen=True)
class LossOutput:
    loss: float
    grad: torch.Tensor
    metrics: dict[str, float]


class Engine(Protocol):
    def advantages(self, rewards: Sequence[float], group_size: int) -> torch.Tensor: ...

    def loss(
        self,
        logp: torch.Tensor,
        old: torch.Tensor,
        ref: torch.Tensor | None,
        advantages: torch.Tensor,
        mask: torch.Tensor,
    ) -> LossOutput: ...


def _clean(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: (math.nan if v is None else float(v)) for k, v in metrics.items()}


class InProcessEngine:
    """``service.grpo`` called directly (same numbers as the service, no HTTP)."""

    def __init__(self, options: GRPOOptions | None = None) -> None:
        from service import grpo

        self.grpo = grpo
        self.options = options or GRPOOptions()
        opts = self.options.loss_options()
        opts.pop("flavor")
        self.loss_config = grpo.TrlLossConfig(**opts)
        self.adv_config = grpo.TrlAdvantageConfig(scale_rewards=self.options.scale_rewards)

    def advantages(self, rewards: Sequence[float], group_size: int) -> torch.Tensor:
        r = torch.tensor([float(x) for x in rewards], dtype=torch.float64)
        return self.grpo.compute_advantages(r, self.adv_config, group_size=group_size)

    def loss(self, logp, old, ref, advantages, mask) -> LossOutput:  # type: ignore[no-untyped-def]
        out = self.grpo.compute_loss(
            logp.detach(),
            old.detach(),
            None if ref is None else ref.detach(),
            advantages.detach(),
            mask,
            self.loss_config,
        )
        grad = out.grad.to(device=logp.device, dtype=logp.dtype)
        return LossOutput(float(out.loss), grad, _clean(out.metrics))


class HttpEngine:
    """``POST /grpo/advantages`` (JSON) and ``POST /grpo/loss`` (safetensors) on a Referee service."""

    def __init__(self, client: Any, options: GRPOOptions | None = None) -> None:
        self.client = client
        self.options = options or GRPOOptions()

    def advantages(self, rewards: Sequence[float], group_size: int) -> torch.Tensor:
        out = self.client.grpo_advantages(
            {
                "flavor": "trl",
                "rewards": [float(r) for r in rewards],
                "group_size": group_size,
                "scale_rewards": self.options.scale_rewards,
            }
        )
        return torch.tensor(out["advantages"], dtype=torch.float64)

    def loss(self, logp, old, ref, advantages, mask) -> LossOutput:  # type: ignore[no-untyped-def]
        tensors: dict[str, torch.Tensor | None] = {
            "logp": logp.detach().float(),
            "old_logp": old.detach().float(),
            "ref_logp": None if ref is None else ref.detach().float(),
            "advantages": advantages.detach().float(),
            "mask": mask.to(torch.bool),
        }
        res = self.client.grpo_loss(tensors, self.options.loss_options())
        grad = res.grad_logprobs.to(device=logp.device, dtype=logp.dtype)
        return LossOutput(res.loss, grad, _clean(res.metrics))


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """TRL's group-relative advantages on contiguous groups, statistics in float64."""
    r = rewards.to(torch.float64).view(-1, group_size)
    a = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        a = a / (std + eps)
    elif scale == "batch":
        a = a / (r.std() + eps)
    return a.reshape(-1)


def reference_loss(
    logp: torch.Tensor,
    old: torch.Tensor,
    ref: torch.Tensor | None,
    adv: torch.Tensor,
    mask: torch.Tensor,
    opts: GRPOOptions,
) -> tuple[torch.Tensor, dict[str, float]]:
    """TRL's ``grpo``/``bnpo`` loss with autograd (token ratio, clipped surrogate, k3 KL)."""
    m = mask.to(logp.dtype)
    ratio = torch.exp(logp - old)
    eps_high = opts.epsilon_high if opts.epsilon_high is not None else opts.epsilon
    a = adv.to(logp.dtype).unsqueeze(1)
    clipped = torch.clamp(ratio, 1 - opts.epsilon, 1 + eps_high)
    per_token = -torch.min(ratio * a, clipped * a)
    kl = torch.zeros_like(logp)
    if ref is not None and opts.beta != 0.0:
        d = ref - logp
        kl = torch.exp(d) - d - 1
        per_token = per_token + opts.beta * kl
    n = m.sum(1).clamp(min=1)
    if opts.loss_type == "grpo":
        loss = ((per_token * m).sum(1) / n).mean()
    else:  # bnpo / dapo on one process: token mean over the batch
        loss = (per_token * m).sum() / m.sum().clamp(min=1)
    with torch.no_grad():
        total = m.sum().clamp(min=1)
        low = ((ratio < 1 - opts.epsilon) & (a < 0)).to(m.dtype)
        high = ((ratio > 1 + eps_high) & (a > 0)).to(m.dtype)
        metrics = {
            "kl": float((kl * m).sum() / total),
            "clip_ratio/low_mean": float((low * m).sum() / total),
            "clip_ratio/high_mean": float((high * m).sum() / total),
            "clip_ratio/region_mean": float(((low + high).clamp(max=1) * m).sum() / total),
        }
    return loss, metrics


class LocalEngine:
    """Autograd fallback (no service, no ``service.grpo``)."""

    def __init__(self, options: GRPOOptions | None = None) -> None:
        self.options = options or GRPOOptions()

    def advantages(self, rewards: Sequence[float], group_size: int) -> torch.Tensor:
        return group_advantages(torch.tensor(list(rewards)), group_size, self.options.scale_rewards)

    def loss(self, logp, old, ref, advantages, mask) -> LossOutput:  # type: ignore[no-untyped-def]
        leaf = logp.detach().to(torch.float64).requires_grad_(True)
        loss, metrics = reference_loss(
            leaf,
            old.detach().to(torch.float64),
            None if ref is None else ref.detach().to(torch.float64),
            advantages.detach().to(torch.float64),
            mask,
            self.options,
        )
        loss.backward()
        assert leaf.grad is not None
        grad = (leaf.grad * mask.to(leaf.grad.dtype)).to(logp.dtype)
        return LossOutput(float(loss.detach()), grad, metrics)


def default_engine(options: GRPOOptions | None = None) -> Engine:
    """``service.grpo`` in process when it is importable, else the autograd fallback."""
    try:
        return InProcessEngine(options)
    except ImportError:
        return LocalEngine(options)
