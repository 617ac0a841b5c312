"""GRPO engine: advantages, losses and their closed-form gradients, matching verl and TRL (torch only)."""

from service.grpo.advantages import GrpoInputError, compute_advantages, group_index
from service.grpo.config import (
    GrpoConfigError,
    TrlAdvantageConfig,
    TrlLossConfig,
    VerlAdvantageConfig,
    VerlLossConfig,
)
from service.grpo.losses import LossOutput, compute_loss

__all__ = [
    "GrpoConfigError",
    "GrpoInputError",
    "LossOutput",
    "TrlAdvantageConfig",
    "TrlLossConfig",
    "VerlAdvantageConfig",
    "VerlLossConfig",
    "compute_advantages",
    "compute_loss",
    "group_index",
]
