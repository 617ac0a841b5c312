"""Group-relative advantage estimators, as verl and TRL compute them (GRPO.md §1.1, §2.1, §4).

Statistics are taken in float64 (the peers use the rewards' dtype, usually float32, where an all-equal group
gives one-ulp noise instead of 0); groups whose rewards are all equal get exactly 0. Groups are given by
arbitrary hashable ids in any order and may have different sizes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from service.grpo.config import AdvantageConfig, GrpoConfigError, TrlAdvantageConfig, VerlAdvantageConfig

F64 = torch.float64


class GrpoInputError(ValueError):
    """Tensors or ids that do not fit together (maps to HTTP 422)."""


def group_index(group_ids: Sequence[Hashable] | None, n: int, group_size: int | None = None) -> torch.Tensor:
    """Map group ids (any hashables, any order) or a contiguous group size to dense indices 0..G-1.

    Args:
        group_ids: one id per row, or None to use `group_size`.
        n: number of rows.
        group_size: contiguous blocks of this size (TRL's `num_generations`).

    Returns:
        int64 tensor of shape (n,).
    """
    if group_ids is not None:
        if len(group_ids) != n:
            raise GrpoInputError(f"group_ids has {len(group_ids)} entries for {n} rewards")
        seen: dict[Hashable, int] = {}
        return torch.tensor([seen.setdefault(g, len(seen)) for g in group_ids], dtype=torch.int64)
    if group_size is None:
        raise GrpoInputError("give group_ids or group_size")
    if group_size < 1 or n % group_size:
        raise GrpoInputError(f"{n} rewards do not split into groups of {group_size}")
    return torch.arange(n, dtype=torch.int64) // group_size


class _Groups:
    """Per-group float64 statistics of a reward vector (NaN-aware when asked)."""

    def __init__(self, s: torch.Tensor, inv: torch.Tensor, *, nan_aware: bool = False) -> None:
        g = int(inv.max()) + 1 if inv.numel() else 0
        self.inv = inv
        valid = ~torch.isnan(s) if nan_aware else torch.ones_like(s, dtype=torch.bool)
        x = torch.where(valid, s, 0.0)
        self.count = torch.zeros(g, dtype=F64).index_add_(0, inv, valid.to(F64))
        self.size = torch.bincount(inv, minlength=g)
        self.mean = torch.zeros(g, dtype=F64).index_add_(0, inv, x) / self.count
        centered = torch.where(valid, s - self.mean[inv], 0.0)
        self.sq = torch.zeros(g, dtype=F64).index_add_(0, inv, centered * centered)
        big = torch.where(valid, s, -torch.inf)
        small = torch.where(valid, s, torch.inf)
        gmax = torch.full((g,), -torch.inf, dtype=F64).scatter_reduce_(0, inv, big, "amax")
        gmin = torch.full((g,), torch.inf, dtype=F64).scatter_reduce_(0, inv, small, "amin")
        self.all_equal = gmax == gmin

    def std(self) -> torch.Tensor:
        """Bessel-corrected std per group (NaN for groups with fewer than 2 values)."""
        return torch.sqrt(self.sq / (self.count - 1)).where(self.count > 1, torch.nan)

    def centered(self, s: torch.Tensor) -> torch.Tensor:
        """s - group mean, exactly 0 in all-equal groups."""
        return torch.where(self.all_equal[self.inv], 0.0, s - self.mean[self.inv])


def _masked_whiten_rows(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """verl `masked_whiten` of a per-row constant over all valid tokens (rows weighted by their length)."""
    w = lengths.to(F64)
    total = w.sum()
    if total <= 1:
        raise GrpoInputError("whitening needs more than one valid token in the batch")
    mean = (x * w).sum() / (total + 1e-8)
    var = ((x - mean) ** 2 * w).sum() / (total + 1e-8) * (total / (total - 1))
    return (x - mean) * torch.rsqrt(var + 1e-8)


def _masked_whiten_tokens(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    total = m.sum()
    if total <= 1:
        raise GrpoInputError("whitening needs more than one valid token in the batch")
    mean = (x * m).sum() / (total + 1e-8)
    var = (((x - mean) ** 2) * m).sum() / (total + 1e-8) * (total / (total - 1))
    return (x - mean) * torch.rsqrt(var + 1e-8) * m


def verl_outcome_advantages(
    rewards: torch.Tensor,
    inv: torch.Tensor,
    config: VerlAdvantageConfig,
    lengths: torch.Tensor | None = None,
    reward_baselines: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence advantages of verl's outcome estimators (verl multiplies them by the mask).

    Args:
        rewards: (B,) outcome scores s_i.
        inv: (B,) dense group indices (see `group_index`).
        config: verl options.
        lengths: (B,) response lengths n_i (opo, reinforce_plus_plus_baseline; default all equal).
        reward_baselines: (B,) greedy-rollout rewards (remax).

    Returns:
        float64 (B,) advantages.
    """
    s = rewards.to(F64)
    if torch.isnan(s).any():
        raise GrpoInputError("verl estimators do not accept NaN rewards (use flavor trl)")
    est = config.adv_estimator
    eps = config.epsilon
    grp = _Groups(s, inv)
    single = (grp.size == 1)[inv]
    c = grp.centered(s)
    if est == "grpo":
        if config.norm_adv_by_std_in_grpo:
            std = grp.std()[inv]
            # verl's singleton std is torch.tensor(1.0) (float32): 1 + eps is rounded in float32, kept for parity
            single_den = float(torch.tensor(1.0, dtype=torch.float32) + eps)
            return torch.where(single, s / single_den, c / (std + eps))
        return torch.where(single, s, c)
    if est == "rloo":
        n = grp.size[inv].to(F64)
        return torch.where(single, s, c * n / (n - 1).clamp(min=1))
    if est == "opo":
        ln = torch.ones_like(s) if lengths is None else lengths.to(F64)
        num = torch.zeros(grp.size.numel(), dtype=F64).index_add_(0, inv, ln * s)
        den = torch.zeros(grp.size.numel(), dtype=F64).index_add_(0, inv, ln)
        b = (num / den)[inv]
        return torch.where(single, s, torch.where(grp.all_equal[inv], 0.0, s - b))
    if est == "gpg":
        alpha = s.numel() / max(int(torch.count_nonzero(s)), 1)
        return alpha * torch.where(single, s, c)
    if est == "grpo_passk":
        if bool((grp.size < 2).any()):
            raise GrpoInputError("grpo_passk needs at least 2 samples per group")
        out = torch.zeros_like(s)
        std = grp.std()
        for g in range(grp.size.numel()):
            rows = torch.nonzero(inv == g).flatten()
            vals = s[rows]
            top = torch.topk(vals, 2)
            adv = top.values[0] - top.values[1]
            if config.norm_adv_by_std_in_grpo:
                adv = adv / (std[g] + eps)
            out[rows[top.indices[0]]] = adv
        return out
    if est == "reinforce_plus_plus_baseline":
        ln = torch.ones_like(s) if lengths is None else lengths.to(F64)
        x = torch.where(single, s, c)
        return _masked_whiten_rows(x, ln)
    if est == "remax":
        if reward_baselines is None:
            raise GrpoInputError("remax needs reward_baselines (the greedy rollout's reward)")
        return s - reward_baselines.to(F64)
    raise GrpoConfigError(f"{est} is token-level: use verl_token_advantages")


def verl_token_advantages(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    inv: torch.Tensor | None,
    config: VerlAdvantageConfig,
    reward_baselines: torch.Tensor | None = None,
) -> torch.Tensor:
    """verl estimators on token-level rewards (B, T); returns float64 (B, T), 0 on masked tokens."""
    r = token_level_rewards.to(F64)
    m = response_mask.to(F64)
    est = config.adv_estimator
    if est == "reinforce_plus_plus":
        returns = torch.zeros_like(r)
        running = torch.zeros(r.shape[0], dtype=F64)
        for t in range(r.shape[1] - 1, -1, -1):
            new = r[:, t] + config.gamma * running
            returns[:, t] = new * m[:, t]
            running = new * m[:, t] + running * (1 - m[:, t])
        return _masked_whiten_tokens(returns, m)
    if est == "remax":
        if reward_baselines is None:
            raise GrpoInputError("remax needs reward_baselines (the greedy rollout's reward)")
        returns = (r * m).flip(-1).cumsum(-1).flip(-1)
        return returns - reward_baselines.to(F64)[:, None] * m
    if inv is None:
        raise GrpoInputError(f"{est} needs group ids")
    lengths = m.sum(-1)
    a = verl_outcome_advantages(r.sum(-1), inv, config, lengths=lengths, reward_baselines=reward_baselines)
    return a[:, None] * m


def trl_advantages(rewards: torch.Tensor, inv: torch.Tensor, config: TrlAdvantageConfig) -> torch.Tensor:
    """TRL `GRPOTrainer` advantages (NaN reward = unscorable: excluded from the stats, advantage 0).

    Args:
        rewards: (B,) summed rewards, NaN where no reward function scored the row.
        inv: (B,) dense group indices (TRL's groups are contiguous blocks; any grouping works here).
        config: TRL options.

    Returns:
        float64 (B,) advantages.
    """
    s = rewards.to(F64)
    grp = _Groups(s, inv, nan_aware=True)
    c = grp.centered(s)
    if config.scale_rewards == "group":
        # TRL: a group of size 1 gets std := 0 (so A = 0); a group with one scored row gets NaN, then 0.
        std = torch.where(grp.size[inv] > 1, grp.std()[inv], 0.0)
        a = c / (std + config.epsilon)
    elif config.scale_rewards == "batch":
        valid = ~torch.isnan(s)
        cnt = valid.sum()
        if s.numel() > 1:
            x = s[valid]
            std_b = (
                torch.sqrt(((x - x.mean()) ** 2).sum() / (cnt - 1))
                if cnt > 1
                else torch.tensor(torch.nan, dtype=F64)
            )
            if cnt > 1 and bool((x == x[0]).all()):
                std_b = torch.tensor(0.0, dtype=F64)
        else:
            std_b = torch.tensor(0.0, dtype=F64)
        a = c / (std_b + config.epsilon)
    else:
        a = c
    return torch.nan_to_num(a, nan=0.0)


def compute_advantages(
    rewards: torch.Tensor,
    config: AdvantageConfig,
    *,
    group_ids: Sequence[Hashable] | None = None,
    group_size: int | None = None,
    lengths: torch.Tensor | None = None,
    reward_baselines: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence advantages for either flavour (the one entry point the service uses).

    Args:
        rewards: (B,) outcome rewards.
        config: `VerlAdvantageConfig` or `TrlAdvantageConfig` (selects the flavour).
        group_ids: one hashable per row, any order; or `group_size` for contiguous blocks.
        lengths: response lengths (opo, reinforce_plus_plus_baseline, reinforce_plus_plus).
        reward_baselines: remax baselines.

    Returns:
        float64 (B,) advantages, or (B, max(lengths)) for reinforce_plus_plus with gamma != 1.
    """
    rewards = torch.as_tensor(rewards, dtype=F64).flatten()
    b = rewards.numel()
    needs_groups = not (
        isinstance(config, VerlAdvantageConfig) and config.adv_estimator in ("remax", "reinforce_plus_plus")
    )
    if needs_groups and group_ids is None and group_size is None:
        raise GrpoInputError("give group_ids or group_size")
    inv = group_index(group_ids, b, group_size) if needs_groups else torch.zeros(b, dtype=torch.int64)
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.int64).flatten()
        if lengths.numel() != b or bool((lengths < 0).any()):
            raise GrpoInputError("lengths must be one non-negative integer per reward")
    if reward_baselines is not None:
        reward_baselines = torch.as_tensor(reward_baselines, dtype=F64).flatten()
        if reward_baselines.numel() != b:
            raise GrpoInputError("reward_baselines must have one value per reward")
    if isinstance(config, TrlAdvantageConfig):
        return trl_advantages(rewards, inv, config)
    if config.adv_estimator == "reinforce_plus_plus":
        if lengths is None:
            raise GrpoInputError(
                "reinforce_plus_plus needs lengths (the reward sits on the last valid token)"
            )
        t = max(int(lengths.max()), 1) if b else 1
        m = (torch.arange(t)[None, :] < lengths[:, None]).to(F64)
        r = torch.zeros(b, t, dtype=F64)
        last = (lengths - 1).clamp(min=0)
        r[torch.arange(b), last] = rewards * (lengths > 0)
        return verl_token_advantages(r, m, None, config)
    return verl_outcome_advantages(rewards, inv, config, lengths=lengths, reward_baselines=reward_baselines)
