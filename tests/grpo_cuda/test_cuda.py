"""The GRPO engine on CUDA: the same closed form as on CPU, the device batcher's coalescing bit-identical to
unbatched calls. Skipped where no GPU is visible (CI); `scripts/device-check.sh` runs it on a GPU machine.

This directory has no conftest: it needs torch, pytest and hypothesis only (no FastAPI), so it runs in a bare
CUDA image.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
import torch

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.batcher import LossBatcher, LossJob, run_batch
from service.grpo.reference import reference_loss_scale
from tests.grpo.test_fused_cpu import CONFIGS, assert_same, batch

# REFEREE_TEST_GRPO_DEVICE=cpu runs the same checks on the CPU (a dry run of this file where no GPU is)
CUDA = torch.device(os.environ.get("REFEREE_TEST_GRPO_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"
)


def on(device: torch.device, *ts: torch.Tensor | None) -> list[torch.Tensor | None]:
    return [None if t is None else t.to(device) for t in ts]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: repr(c)[:120])
@pytest.mark.parametrize("per_token", [False, True])
def test_cuda_equals_the_cpu_torch_path(cfg, per_token):
    """Every fused-kernel config (both flavours, KL types, levels) on CUDA vs the CPU torch path, float32; the
    masked positions hold NaN and inf, which must not leak into the loss or the gradient."""
    for on_policy in (False, True):
        lp, old, ref, adv, m = batch(len(repr(cfg)) + per_token, per_token=per_token)
        o = None if on_policy else old
        cpu = compute_loss(lp, o, ref, adv, m, cfg, native=False)
        gpu = compute_loss(*on(CUDA, lp, o, ref, adv, m), cfg)  # type: ignore[arg-type]
        assert gpu.grad.device.type == CUDA.type and gpu.grad.dtype == torch.float32
        host = type(gpu)(gpu.loss.cpu(), gpu.grad.cpu(), gpu.metrics)
        assert_same(cpu, host, scale=reference_loss_scale(lp, o, ref, adv, m, cfg))
        assert bool((host.grad[~m.bool()] == 0).all())


@pytest.mark.parametrize(
    "cfg",
    [
        VerlLossConfig(loss_mode="cispo"),
        VerlLossConfig(loss_mode="sapo", use_kl_loss=True),
        VerlLossConfig(loss_mode="geo_mean"),
        VerlLossConfig(loss_mode="clip_cov", seed=3),
        VerlLossConfig(loss_mode="kl_cov", seed=3),
        VerlLossConfig(loss_mode="gpg", loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=9),
        TrlLossConfig(loss_type="cispo", epsilon_high=5.0),
        TrlLossConfig(loss_type="sapo", beta=0.04),
    ],
    ids=repr,
)
def test_cuda_torch_only_modes_and_the_entropy_bonus(cfg):
    """The modes the CPU kernel leaves to torch, and the entropy bonus, on CUDA vs CPU."""
    lp, old, ref, adv, m = batch(11)
    h = torch.rand(lp.shape, generator=torch.Generator().manual_seed(1))
    coef = "entropy_coeff" if isinstance(cfg, VerlLossConfig) else "entropy_coef"
    cfg_h = dataclasses.replace(cfg, **{coef: 0.01})
    cpu = compute_loss(lp, old, ref, adv, m, cfg_h, native=False, entropy=h)
    gpu = compute_loss(*on(CUDA, lp, old, ref, adv, m), cfg_h, entropy=h.to(CUDA))  # type: ignore[arg-type]
    host = type(gpu)(gpu.loss.cpu(), gpu.grad.cpu(), gpu.metrics)
    assert_same(cpu, host, scale=reference_loss_scale(lp, old, ref, adv, m, cfg))
    torch.testing.assert_close(gpu.grad_entropy.cpu(), cpu.grad_entropy, rtol=2e-5, atol=1e-7)


def test_bf16_inputs_accumulate_in_float32_on_cuda():
    lp, old, ref, adv, m = batch(5)
    lp, old, ref = (x.nan_to_num(0.0).bfloat16() for x in (lp, old, ref))
    cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
    cpu = compute_loss(lp, old, ref, adv, m, cfg, native=False)
    gpu = compute_loss(*on(CUDA, lp, old, ref, adv, m), cfg)  # type: ignore[arg-type]
    assert gpu.grad.dtype == torch.float32
    assert_same(cpu, type(gpu)(gpu.loss.cpu(), gpu.grad.cpu(), gpu.metrics))


def jobs(n: int, seed: int = 0) -> list[LossJob]:
    out = []
    for k in range(n):
        lp, old, ref, adv, m = batch(seed + k, b=7, t=33)
        cfg = VerlLossConfig(use_kl_loss=True) if k % 2 else TrlLossConfig(loss_type="grpo", beta=0.04)
        out.append(LossJob(lp, old, ref, adv, m, cfg))
    return out


def test_coalesced_cuda_batch_is_bit_identical_to_each_request_alone():
    js = jobs(5)
    together = run_batch(js, CUDA, coalesce=True)
    for j, t in zip(js, together, strict=True):
        alone = compute_loss(*on(CUDA, j.logp, j.old_logp, j.ref_logp, j.advantages, j.mask), j.config)  # type: ignore[arg-type]
        assert t.grad.device.type == "cpu"
        assert torch.equal(t.grad, alone.grad.cpu()) and torch.equal(t.loss, alone.loss.cpu())
        assert t.metrics == alone.metrics


def test_cuda_batcher_gathers_concurrent_ranks_and_fills_host_buffers():
    """Several ranks at once form one device batch (2 ms window on CUDA); a job with `grad_out` (a trainer's
    shared-memory buffer, on the host) gets its gradient copied there."""
    batcher = LossBatcher(device=CUDA, window_s=0.002)
    js = jobs(4, seed=10)
    outs = [torch.full(j.logp.shape, float("nan")) for j in js]
    for j, o in zip(js, outs, strict=True):
        j.grad_out = o

    async def go() -> list:
        return await asyncio.gather(*(batcher.submit(j) for j in js))

    try:
        results = asyncio.run(go())
    finally:
        batcher.close()
    assert batcher.stats.largest_batch > 1
    for j, r, o in zip(js, results, outs, strict=True):
        assert r.grad is o
        alone = compute_loss(*on(CUDA, j.logp, j.old_logp, j.ref_logp, j.advantages, j.mask), j.config)  # type: ignore[arg-type]
        assert torch.equal(o, alone.grad.cpu())


def test_compiled_cuda_path_matches_eager():
    lp, old, ref, adv, m = batch(21)
    for cfg in (VerlLossConfig(use_kl_loss=True), TrlLossConfig(loss_type="dapo")):
        eager = compute_loss(*on(CUDA, lp, old, ref, adv, m), cfg)  # type: ignore[arg-type]
        compiled = compute_loss(*on(CUDA, lp, old, ref, adv, m), cfg, use_compile=True)  # type: ignore[arg-type]
        assert_same(
            type(eager)(eager.loss.cpu(), eager.grad.cpu(), eager.metrics),
            type(compiled)(compiled.loss.cpu(), compiled.grad.cpu(), compiled.metrics),
            scale=reference_loss_scale(lp, old, ref, adv, m, cfg),
        )
