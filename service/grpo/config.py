"""Frozen configs for the GRPO engine, one per trainer flavour.

Field names are spelled exactly as verl's (`actor_rollout_ref.actor.*`, `algorithm.*`) and TRL's
(`GRPOConfig`) configs spell them, so values are copied from a trainer config unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Flavor = Literal["verl", "trl"]

VERL_ADV_ESTIMATORS = (
    "grpo",
    "rloo",
    "opo",
    "gpg",
    "grpo_passk",
    "reinforce_plus_plus",
    "reinforce_plus_plus_baseline",
    "remax",
)
VERL_LOSS_MODES = ("vanilla", "gspo", "gpg", "cispo", "sapo", "geo_mean", "clip_cov", "kl_cov")
VERL_AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)
VERL_KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3")
TRL_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")


class GrpoConfigError(ValueError):
    """A config value is out of range or unknown (maps to HTTP 422)."""


@dataclass(frozen=True)
class VerlAdvantageConfig:
    """verl `algorithm.*` advantage options.

    Attributes:
        adv_estimator: one of `VERL_ADV_ESTIMATORS`.
        norm_adv_by_std_in_grpo: divide by the group std (False = Dr. GRPO); grpo and grpo_passk.
        gamma: discount for `reinforce_plus_plus`.
        epsilon: added to the std (verl 1e-6).
    """

    adv_estimator: str = "grpo"
    norm_adv_by_std_in_grpo: bool = True
    gamma: float = 1.0
    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if self.adv_estimator not in VERL_ADV_ESTIMATORS:
            raise GrpoConfigError(
                f"adv_estimator must be one of {VERL_ADV_ESTIMATORS}, got {self.adv_estimator!r}"
            )


@dataclass(frozen=True)
class TrlAdvantageConfig:
    """TRL `GRPOConfig` advantage options.

    Attributes:
        scale_rewards: "group" (True), "batch" or "none" (False).
        epsilon: added to the std (TRL hard-codes 1e-4).
    """

    scale_rewards: str = "group"
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if self.scale_rewards not in ("group", "batch", "none"):
            raise GrpoConfigError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")


@dataclass(frozen=True)
class VerlLossConfig:
    """verl actor policy-loss options (`actor_rollout_ref.actor.*` and `policy_loss.*`).

    Attributes:
        loss_mode: `policy_loss.loss_mode`, one of `VERL_LOSS_MODES`.
        clip_ratio, clip_ratio_low, clip_ratio_high: PPO clip range (low/high default to clip_ratio).
        clip_ratio_c: dual-clip constant (> 1), vanilla only.
        loss_agg_mode: one of `VERL_AGG_MODES`.
        loss_scale_factor: divisor of seq-mean-token-sum-norm; None = padded width (verl default).
        use_kl_loss, kl_loss_coef, kl_loss_type: KL-to-reference term (types in `VERL_KL_TYPES`, `+` allowed).
        clip_cov_ratio, clip_cov_lb, clip_cov_ub: clip_cov selection; kl_cov_ratio, ppo_kl_coef: kl_cov.
        tau_pos, tau_neg: SAPO gate temperatures.
        seed: seeds clip_cov's random choice (verl uses the global torch RNG; same seed = same choice).
        entropy_coeff: weight of the entropy bonus (needs the per-token `entropy`; see entropy.py).
        dp_size, batch_num_tokens, global_batch_size: verl's `global_batch_info` for data-parallel runs (what
            `agg_loss` receives): a rank's loss is its local sum over the global normaliser times dp_size, so
            the gradient averaged by DDP/FSDP is the global batch's. batch_num_tokens (valid tokens of the
            global batch) is needed by token-mean and global_batch_size (non-empty sequences of the global
            batch) by the seq-mean modes when dp_size > 1; unset = this request's own count.
    """

    loss_mode: str = "vanilla"
    clip_ratio: float = 0.2
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float = 3.0
    loss_agg_mode: str = "token-mean"
    loss_scale_factor: float | None = None
    use_kl_loss: bool = False
    kl_loss_coef: float = 0.001
    kl_loss_type: str = "low_var_kl"
    clip_cov_ratio: float = 0.0002
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 0.0002
    ppo_kl_coef: float = 0.1
    tau_pos: float = 1.0
    tau_neg: float = 1.05
    seed: int = 0
    entropy_coeff: float = 0.0
    dp_size: int = 1
    batch_num_tokens: int | None = None
    global_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.loss_mode not in VERL_LOSS_MODES:
            raise GrpoConfigError(f"loss_mode must be one of {VERL_LOSS_MODES}, got {self.loss_mode!r}")
        if self.loss_agg_mode not in VERL_AGG_MODES:
            raise GrpoConfigError(
                f"loss_agg_mode must be one of {VERL_AGG_MODES}, got {self.loss_agg_mode!r}"
            )
        if self.kl_loss_type.rstrip("+") not in VERL_KL_TYPES:
            raise GrpoConfigError(
                f"kl_loss_type must be one of {VERL_KL_TYPES} (+ allowed), got {self.kl_loss_type!r}"
            )
        if self.loss_mode == "vanilla" and not self.clip_ratio_c > 1.0:
            raise GrpoConfigError(f"clip_ratio_c must be > 1.0, got {self.clip_ratio_c}")
        if self.loss_scale_factor is not None and not self.loss_scale_factor > 0:
            raise GrpoConfigError("loss_scale_factor must be > 0")
        if self.loss_mode == "clip_cov" and not self.clip_cov_ratio > 0:
            raise GrpoConfigError("clip_cov_ratio must be > 0")
        if self.loss_mode == "kl_cov" and not self.kl_cov_ratio > 0:
            raise GrpoConfigError("kl_cov_ratio must be > 0")
        if self.dp_size < 1:
            raise GrpoConfigError(f"dp_size must be >= 1, got {self.dp_size}")
        for name in ("batch_num_tokens", "global_batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise GrpoConfigError(f"{name} must be >= 1, got {v}")
        # verl's agg_loss raises these at the first step; here they are a 422 before any work
        if self.dp_size > 1 and self.loss_agg_mode == "token-mean" and self.batch_num_tokens is None:
            raise GrpoConfigError("(global) batch_num_tokens is required when dp_size > 1 (token-mean)")
        seq_mean = self.loss_agg_mode.startswith("seq-mean") or self.loss_mode == "sapo"
        if self.dp_size > 1 and seq_mean and self.global_batch_size is None:
            raise GrpoConfigError("global_batch_size is required when dp_size > 1 (seq-mean modes, sapo)")

    @property
    def eps_low(self) -> float:
        return self.clip_ratio if self.clip_ratio_low is None else self.clip_ratio_low

    @property
    def eps_high(self) -> float:
        return self.clip_ratio if self.clip_ratio_high is None else self.clip_ratio_high


@dataclass(frozen=True)
class TrlLossConfig:
    """TRL `GRPOConfig` loss options.

    Attributes:
        loss_type: one of `TRL_LOSS_TYPES`.
        epsilon, epsilon_high: clip range (epsilon_high None = epsilon); for cispo epsilon_high is an absolute cap.
        delta: optional upper bound of the unclipped ratio (two-sided clipping).
        beta: KL coefficient (k3 estimator).
        importance_sampling_level: "token" or "sequence" (GSPO).
        use_bias_correction_kl: multiply the KL by the importance ratio (TRL 1.16 default True).
        max_completion_length: the dr_grpo constant divisor.
        sapo_temperature_pos, sapo_temperature_neg: SAPO gate temperatures.
        entropy_coef: weight of the (static) entropy bonus (needs the per-token `entropy`; see entropy.py).
        gradient_accumulation_steps: the trainer's current accumulation window (TRL's
            `current_gradient_accumulation_steps`): every loss type's loss is divided by it, as in training.
        steps_per_generation: micro-steps one generation batch is split into (GRPOConfig; None = as TRL,
            gradient_accumulation_steps).
        num_processes: accelerate's process count.
        num_items_in_batch: valid tokens of the whole generation batch over all processes (what TRL gathers);
            dapo/cispo divide by num_items_in_batch / num_processes * gradient_accumulation_steps /
            steps_per_generation. None = this request's own count, allowed only for one process and one
            step per generation.
    """

    loss_type: str = "dapo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    delta: float | None = None
    beta: float = 0.0
    importance_sampling_level: str = "token"
    use_bias_correction_kl: bool = True
    max_completion_length: int = 512
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    entropy_coef: float = 0.0
    gradient_accumulation_steps: int = 1
    steps_per_generation: int | None = None
    num_processes: int = 1
    num_items_in_batch: int | None = None

    def __post_init__(self) -> None:
        if self.loss_type not in TRL_LOSS_TYPES:
            raise GrpoConfigError(f"loss_type must be one of {TRL_LOSS_TYPES}, got {self.loss_type!r}")
        if self.importance_sampling_level not in ("token", "sequence"):
            raise GrpoConfigError("importance_sampling_level must be token or sequence")
        if self.max_completion_length < 1:
            raise GrpoConfigError("max_completion_length must be >= 1")
        for name in ("gradient_accumulation_steps", "steps_per_generation", "num_processes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise GrpoConfigError(f"{name} must be >= 1, got {v}")
        if self.num_items_in_batch is not None and self.num_items_in_batch < 0:
            raise GrpoConfigError(f"num_items_in_batch must be >= 0, got {self.num_items_in_batch}")
        global_norm = self.loss_type in ("dapo", "cispo")
        if global_norm and self.num_items_in_batch is None and (self.num_processes > 1 or self.spg > 1):
            raise GrpoConfigError(
                "num_items_in_batch (valid tokens of the generation batch, all processes) is required for "
                f"{self.loss_type} when num_processes > 1 or steps_per_generation > 1"
            )

    @property
    def spg(self) -> int:
        """steps_per_generation as TRL resolves it (default: gradient_accumulation_steps)."""
        return (
            self.gradient_accumulation_steps
            if self.steps_per_generation is None
            else self.steps_per_generation
        )

    @property
    def eps_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


LossConfig = VerlLossConfig | TrlLossConfig
AdvantageConfig = VerlAdvantageConfig | TrlAdvantageConfig
