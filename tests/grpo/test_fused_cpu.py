"""The fused C kernel (service/grpo/fused_cpu.c) against the torch path and the autograd reference.

The torch path is itself checked against autograd (test_losses.py) and against verl's and TRL's own code
(test_peers.py), so agreement here carries those checks over to the kernel. Every case is computed both
ways on the same float32 tensors; masked positions hold NaN and inf, which must never leak.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss, fused_cpu
from service.grpo.reference import reference_loss, reference_loss_scale

F32 = torch.float32


def _library_or_fail():
    lib = fused_cpu.library()
    assert lib is not None, "the fused kernel did not build (is a C compiler installed? see the log)"
    return lib


def batch(
    seed: int,
    b: int = 9,
    t: int = 37,
    spread: float = 0.4,
    per_token: bool = False,
    garbage: bool = True,
    mask_dtype: torch.dtype = torch.bool,
):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g) * 3
    old = lp + torch.randn(b, t, generator=g) * spread
    ref = lp + torch.randn(b, t, generator=g) * 0.5
    m = torch.rand(b, t, generator=g) > 0.3
    m[0] = False  # an empty row
    m[1, :] = True  # a full row
    m[2, : t // 2] = False  # a row that starts late
    adv = torch.randn(b, t, generator=g) if per_token else torch.randn(b, generator=g)
    if not per_token and b > 3:
        adv[3] = 0.0  # neither sign: the kernel's general form
    if garbage:
        for x in (lp, old, ref):
            x[~m] = torch.tensor([float("nan"), float("inf"), -float("inf")])[
                torch.arange(int((~m).sum())) % 3
            ]
        if per_token:
            adv[~m] = float("nan")
    return lp, old, ref, adv, m.to(mask_dtype)


def supported_configs():
    out: list = []
    for mode in ("vanilla", "gspo"):
        for agg in (
            "token-mean",
            "token-sum",
            "seq-mean-token-sum",
            "seq-mean-token-mean",
            "seq-mean-token-sum-norm",
        ):
            out.append(VerlLossConfig(loss_mode=mode, loss_agg_mode=agg, clip_ratio_high=0.28))
    for kl in ("k1", "abs", "k2", "k3", "low_var_kl", "mse", "k1+", "abs+", "k3+"):
        for mode in ("vanilla", "gspo"):
            out.append(VerlLossConfig(loss_mode=mode, use_kl_loss=True, kl_loss_type=kl, kl_loss_coef=0.1))
    out.append(VerlLossConfig(clip_ratio_c=1.5, clip_ratio_low=0.1, clip_ratio_high=0.3))
    for lt in ("grpo", "bnpo", "dr_grpo", "dapo"):
        for lvl in ("token", "sequence"):
            for beta, bc in ((0.0, True), (0.04, True), (0.04, False)):
                for delta in (None, 1.3):
                    out.append(
                        TrlLossConfig(
                            loss_type=lt,
                            importance_sampling_level=lvl,
                            beta=beta,
                            use_bias_correction_kl=bc,
                            delta=delta,
                            epsilon_high=0.28,
                            max_completion_length=37,
                        )
                    )
    return out


CONFIGS = supported_configs()


F32_EPS = torch.finfo(F32).eps


def assert_same(a, b, rtol=2e-5, atol=1e-6, scale=0.0):
    """Equal to float32 precision. `scale` (reference_loss_scale) widens the loss's absolute tolerance to a
    few ulps of the sum of |terms|: when terms cancel, any two summation orders differ by that much."""
    torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=atol, equal_nan=True)
    loss_atol = atol + 16 * F32_EPS * scale if math.isfinite(scale) else atol
    torch.testing.assert_close(a.loss, b.loss, rtol=rtol, atol=loss_atol, equal_nan=True)
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        x, y = a.metrics[k], b.metrics[k]
        assert x == y or (x != x and y != y) or abs(x - y) <= rtol * max(1.0, abs(x)) + atol, (k, x, y)


def test_kernel_builds_and_is_used():
    _library_or_fail()
    lp, old, ref, adv, m = batch(0)
    for cfg in (VerlLossConfig(), TrlLossConfig(loss_type="grpo", beta=0.04)):
        assert fused_cpu.supports(cfg, lp)
    assert not fused_cpu.supports(VerlLossConfig(loss_mode="cispo"), lp)
    assert not fused_cpu.supports(TrlLossConfig(loss_type="sapo"), lp)
    assert not fused_cpu.supports(VerlLossConfig(), lp.double())  # float64 stays on the torch path


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: repr(c)[:120])
@pytest.mark.parametrize("per_token", [False, True])
def test_matches_torch_path(cfg, per_token):
    _library_or_fail()
    for on_policy in (False, True):
        lp, old, ref, adv, m = batch(len(repr(cfg)) + per_token, per_token=per_token)
        o = None if on_policy else old
        torch_path = compute_loss(lp, o, ref, adv, m, cfg, native=False)
        fused = compute_loss(lp, o, ref, adv, m, cfg, native=True)
        assert_same(torch_path, fused)
        assert torch.isfinite(fused.grad).all()
        assert (fused.grad[~m] == 0).all()


@pytest.mark.parametrize(
    "cfg",
    [
        VerlLossConfig(use_kl_loss=True),
        VerlLossConfig(loss_mode="gspo", loss_agg_mode="seq-mean-token-mean"),
        TrlLossConfig(loss_type="grpo", beta=0.04),
        TrlLossConfig(loss_type="dapo", importance_sampling_level="sequence", beta=0.04),
    ],
    ids=repr,
)
def test_matches_autograd_reference(cfg):
    _library_or_fail()
    lp, old, ref, adv, m = batch(7, b=12, t=50, garbage=False)
    fused = compute_loss(lp, old, ref, adv, m, cfg, native=True)
    loss, grad = reference_loss(lp.double(), old.double(), ref.double(), adv.double(), m, cfg)
    torch.testing.assert_close(fused.grad.double(), grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(fused.loss.double(), loss, rtol=1e-5, atol=1e-7)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 7),
    t=st.integers(1, 70),
    spread=st.sampled_from([0.01, 0.5, 5.0, 40.0]),
    k=st.integers(0, len(CONFIGS) - 1),
    mask_dtype=st.sampled_from([torch.bool, torch.uint8, torch.int64, torch.float32]),
)
def test_random_shapes_and_extreme_ratios(seed, b, t, spread, k, mask_dtype):
    """Shapes from 1 x 1, ratios far outside the clamps (|log ratio| up to ~100: TRL overflows to inf there,
    verl clamps), and every mask dtype a client may send."""
    _library_or_fail()
    lp, old, ref, adv, m = batch(seed, b=max(b, 4), t=t, spread=spread, mask_dtype=mask_dtype)
    cfg = CONFIGS[k]
    assert_same(
        compute_loss(lp, old, ref, adv, m, cfg, native=False),
        compute_loss(lp, old, ref, adv, m, cfg),
        scale=reference_loss_scale(lp, old, ref, adv, m, cfg),
    )


def test_cancelling_terms_compare_at_the_scale_of_the_terms():
    """The case CI found: gspo token-sum, terms of ~±60 cancelling to 0.045. Both float32 paths are within a
    few ulps of the terms' scale of the float64 reference (the torch path ~2e-6, the kernel ~1.3e-5), so
    they are compared at that scale; a real error (a wrong term) is far larger and still fails."""
    _library_or_fail()
    lp, old, ref, adv, m = batch(6, b=4, t=62, spread=5.0)
    cfg = VerlLossConfig(loss_mode="gspo", loss_agg_mode="token-sum", clip_ratio_high=0.28)
    scale = reference_loss_scale(lp, old, ref, adv, m, cfg)
    zero = torch.zeros(())
    ref64, _ = reference_loss(
        *(torch.where(m, v, zero).double() for v in (lp, old, ref)), adv.double(), m, cfg
    )
    torch_path = compute_loss(lp, old, ref, adv, m, cfg, native=False)
    fused = compute_loss(lp, old, ref, adv, m, cfg)
    assert scale > 100 * abs(float(ref64))  # the terms do cancel
    for out in (torch_path, fused):
        assert abs(float(out.loss) - float(ref64)) <= 16 * F32_EPS * scale
    assert_same(torch_path, fused, scale=scale)
    # one token's term dropped is not rounding: the scaled tolerance is far tighter than that
    m2 = m.clone()
    m2[1, int(m[1].nonzero()[0])] = False
    dropped = compute_loss(lp, old, ref, adv, m2, cfg)
    assert abs(float(dropped.loss) - float(fused.loss)) > 1000 * 16 * F32_EPS * scale


def test_nan_at_a_valid_position_is_not_hidden():
    _library_or_fail()
    lp, old, ref, adv, m = batch(3, garbage=False)
    lp[1, 4] = float("nan")
    for cfg in (VerlLossConfig(use_kl_loss=True), TrlLossConfig(loss_type="grpo", beta=0.04)):
        torch_path = compute_loss(lp, old, ref, adv, m, cfg, native=False)
        fused = compute_loss(lp, old, ref, adv, m, cfg, native=True)
        assert not torch.isfinite(fused.loss)
        assert fused.metrics.get("non_finite_loss") == 1.0
        assert_same(torch_path, fused)


def test_bf16_inputs_are_computed_in_float32():
    _library_or_fail()
    lp, old, ref, adv, m = batch(5, garbage=False)
    cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
    bf = [x.bfloat16() for x in (lp, old, ref)]
    fused = compute_loss(*bf, adv, m, cfg, native=True)
    torch_path = compute_loss(*bf, adv, m, cfg, native=False)
    assert fused.grad.dtype == F32
    assert_same(torch_path, fused)


def test_thread_split_does_not_change_results():
    """Rows are split across threads; per-row sums are added in row order, so results are bit-identical."""
    _library_or_fail()
    lp, old, ref, adv, m = batch(11, b=64, t=2048, garbage=False)
    cfg = VerlLossConfig(use_kl_loss=True, loss_agg_mode="seq-mean-token-mean")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compute_loss(lp, old, ref, adv, m, cfg)
        torch.set_num_threads(2)
        two = compute_loss(lp, old, ref, adv, m, cfg)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.grad, two.grad)
    assert torch.equal(one.loss, two.loss)
    assert one.metrics == two.metrics


def _two_thread_batch():
    """Large enough for two threads (the kernel gives each at least 64 Ki elements)."""
    return batch(13, b=64, t=4096, garbage=False)


def _pool_is_free(timeout: float = 5.0) -> bool:
    return fused_cpu._executor(1).submit(lambda: True).result(timeout=timeout)


def test_a_pool_thread_that_never_starts_costs_nothing():
    """The caller takes every chunk the pool thread does not: with the pool thread held up for the whole call,
    the call still finishes, with the same bits, and the pool thread's late turn neither hangs nor writes."""
    _library_or_fail()
    lp, old, ref, adv, m = _two_thread_batch()
    cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
    before = torch.get_num_threads()
    release = threading.Event()
    try:
        torch.set_num_threads(1)
        one = compute_loss(lp, old, ref, adv, m, cfg)
        torch.set_num_threads(2)
        blocker = fused_cpu._executor(1).submit(release.wait, 30)
        held = compute_loss(lp, old, ref, adv, m, cfg)
        assert not blocker.done(), "the pool thread was meant to be busy for the whole call"
    finally:
        release.set()
        torch.set_num_threads(before)
    assert torch.equal(one.grad, held.grad) and torch.equal(one.loss, held.loss)
    assert one.metrics == held.metrics
    grad = held.grad.clone()
    assert _pool_is_free()  # the late turn found nothing left and returned
    assert torch.equal(held.grad, grad)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_two_threads_on_one_cpu_finish_and_agree():
    """The caller and the pool thread on the same CPU (a container with one CPU, or the scheduler putting the
    woken thread beside its waker): each waits for the other by yielding the CPU, never by spinning it away, so
    the calls finish, with the same bits as one thread."""
    _library_or_fail()
    lp, old, ref, adv, m = _two_thread_batch()
    cfgs = (VerlLossConfig(use_kl_loss=True), TrlLossConfig(loss_type="grpo", beta=0.04))
    before, cpus = torch.get_num_threads(), os.sched_getaffinity(0)

    def pin(to: set[int]) -> None:  # every thread of the process, the pool's included
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), to)
            except ProcessLookupError:
                pass  # a thread that ended meanwhile

    try:
        torch.set_num_threads(1)
        alone = [compute_loss(lp, old, ref, adv, m, cfg) for cfg in cfgs]
        torch.set_num_threads(2)
        assert _pool_is_free()  # the pool thread exists, so it is pinned too
        pin({min(cpus)})
        for _ in range(3):
            shared = [compute_loss(lp, old, ref, adv, m, cfg) for cfg in cfgs]
            for a, b in zip(alone, shared, strict=True):
                assert torch.equal(a.grad, b.grad) and torch.equal(a.loss, b.loss)
    finally:
        pin(cpus)
        torch.set_num_threads(before)


def test_a_call_abandoned_after_the_scan_releases_the_pool():
    """An error between the scan and the rows (the caller's weights) aborts the call: the waiting pool thread
    leaves at once instead of spinning out its wait, and the next call is exact."""
    lib = _library_or_fail()
    lp, old, ref, adv, m = _two_thread_batch()
    cfg = VerlLossConfig(use_kl_loss=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run = fused_cpu.FusedRun(lib, lp, old, ref, adv[:, None], m)
        assert run.threads == 2
        assert torch.equal(run.row_counts(), m.sum(-1))
        with pytest.raises(AttributeError):  # the weights are not tensors: fails before the rows start
            run.run(cfg, "not a tensor", "not a tensor")  # type: ignore[arg-type]
        t0 = time.perf_counter()
        assert _pool_is_free()
        assert time.perf_counter() - t0 < 0.015  # well under the pool thread's 20 ms wait
        with pytest.raises(RuntimeError, match="once"):
            run.run(cfg, torch.ones(64), torch.ones(64))
        again = compute_loss(lp, old, ref, adv, m, cfg)
        torch.set_num_threads(1)
        alone = compute_loss(lp, old, ref, adv, m, cfg)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(again.grad, alone.grad) and torch.equal(again.loss, alone.loss)


def test_a_forked_child_gets_a_pool_of_its_own():
    """A child forked after the pool started (dataloaders, verl's workers) does not inherit the parent's pool,
    whose thread it does not have: work sent there would never start. (The child does not run the loss
    itself: torch's thread-count calls can hang after a fork on their own, which is torch's matter.)"""
    _library_or_fail()
    assert _pool_is_free()  # the parent's pool thread exists
    parent_pool = fused_cpu._executor(1)
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, only an exit status
        code = 1
        try:
            pool = fused_cpu._executor(1)
            if pool is not parent_pool and pool.submit(lambda: 7).result(timeout=5) == 7:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_disabled_or_unbuildable_falls_back_to_torch(monkeypatch, tmp_path, caplog):
    lp, old, ref, adv, m = batch(2)
    cfg = VerlLossConfig()
    expected = compute_loss(lp, old, ref, adv, m, cfg, native=False)
    try:
        fused_cpu.library.cache_clear()
        monkeypatch.setenv("REFEREE_GRPO_NATIVE", "0")
        assert fused_cpu.library() is None
        assert_same(expected, compute_loss(lp, old, ref, adv, m, cfg))

        fused_cpu.library.cache_clear()
        monkeypatch.setenv("REFEREE_GRPO_NATIVE", "1")
        monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
        monkeypatch.setenv("REFEREE_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(fused_cpu.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
        with caplog.at_level(logging.WARNING):
            assert fused_cpu.library() is None
        assert "failed" in caplog.text
        assert_same(expected, compute_loss(lp, old, ref, adv, m, cfg))
    finally:
        fused_cpu.library.cache_clear()


def test_cache_key_changes_with_the_source(monkeypatch, tmp_path):
    """A rebuilt library lands in the cache under a new name; an existing one is loaded, not rebuilt."""
    try:
        fused_cpu.library.cache_clear()
        monkeypatch.setenv("REFEREE_CACHE_DIR", str(tmp_path))
        assert fused_cpu.library() is not None
        built = sorted((tmp_path / "referee" / "native").glob("*.so"))
        assert len(built) == 1
        mtime = built[0].stat().st_mtime_ns
        fused_cpu.library.cache_clear()
        assert fused_cpu.library() is not None
        assert built[0].stat().st_mtime_ns == mtime
    finally:
        fused_cpu.library.cache_clear()


@pytest.mark.parametrize(
    "cfg",
    [
        VerlLossConfig(clip_ratio_low=0.0, clip_ratio_high=0.0, use_kl_loss=True),
        VerlLossConfig(loss_mode="gspo", clip_ratio_low=0.0, clip_ratio_high=0.0),
        TrlLossConfig(loss_type="grpo", epsilon=0.0, epsilon_high=0.0, delta=1.0, beta=0.04),
        TrlLossConfig(loss_type="dapo", epsilon=0.0, importance_sampling_level="sequence"),
        TrlLossConfig(loss_type="bnpo", epsilon=0.0, epsilon_high=0.0, beta=0.04),
    ],
    ids=repr,
)
def test_ties_at_the_clip_boundaries(cfg):
    """On-policy (ratio exactly 1) with a zero-width clip range: every comparison is a tie, where autograd
    splits the gradient between the two branches of min/max and clamp passes it on its closed interval."""
    _library_or_fail()
    lp, _, ref, _, m = batch(4, garbage=False)
    adv = torch.linspace(-1.0, 1.0, lp.shape[0])  # both signs and zero: every specialised form of the kernel
    fused = compute_loss(lp, None, ref, adv, m, cfg, native=True)
    assert_same(compute_loss(lp, None, ref, adv, m, cfg, native=False), fused)
    loss, grad = reference_loss(lp.double(), None, ref.double(), adv.double(), m, cfg)
    torch.testing.assert_close(fused.grad.double(), grad, rtol=1e-4, atol=1e-7)


def test_malloc_thresholds_are_accepted():
    """glibc takes the thresholds (a refusal would silently leave every call page-faulting its tensors)."""
    from service.malloc_tuning import keep_freed_memory

    assert keep_freed_memory()


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0), (1, 1)])
@pytest.mark.parametrize("native", [True, False])
def test_empty_and_tiny_batches(shape, native):
    """B = 0 or T = 0 is a valid (if useless) request: an answer, never an exception (a 500 over HTTP)."""
    lp = torch.zeros(shape)
    m = torch.ones(shape, dtype=torch.bool)
    adv = torch.ones(shape[0])
    for cfg in (VerlLossConfig(use_kl_loss=True), TrlLossConfig(loss_type="grpo", beta=0.04)):
        out = compute_loss(lp, lp, lp, adv, m, cfg, native=native)
        assert out.grad.shape == shape
        if shape == (1, 1):
            assert out.loss.item() == -1.0  # -a * ratio 1, KL 0


def test_readyz_says_which_cpu_loss_runs(monkeypatch, tmp_path):
    """The app builds the kernel in the background at start-up; /readyz reports it (and the fallback)."""
    import time

    from fastapi.testclient import TestClient

    from service.config import Settings
    from service.main import create_app

    def cpu_loss(client: TestClient) -> str:
        deadline = time.monotonic() + 120
        while (state := client.get("/readyz").json()["grpo_cpu_loss"]) == "pending":
            assert time.monotonic() < deadline, "the kernel build never finished"
            time.sleep(0.1)
        return state

    settings = Settings(pool_size=1, sandbox_backend="none")
    try:
        fused_cpu.library.cache_clear()
        with TestClient(create_app(settings)) as client:
            assert cpu_loss(client) == "fused"
        fused_cpu.library.cache_clear()
        monkeypatch.setenv("REFEREE_GRPO_NATIVE", "0")
        with TestClient(create_app(settings)) as client:
            assert cpu_loss(client) == "torch"
    finally:
        fused_cpu.library.cache_clear()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4099]),
    density=st.sampled_from([0.0, 0.02, 0.5, 1.0]),
)
def test_row_info_counts_and_spans_every_nonzero_byte(seed, t, density):
    """The mask scan (word-at-a-time head/tail skip and popcount) equals torch on masks of any width, with
    holes, any nonzero byte value (uint8 masks may hold 2 or 255), and valid tokens at the very edges."""
    lib = _library_or_fail()
    g = torch.Generator().manual_seed(seed)
    b = 12
    m = (torch.rand(b, t, generator=g) < density).to(torch.uint8) * torch.randint(
        1, 256, (b, t), generator=g
    ).to(torch.uint8)
    m[0] = 0  # empty
    m[1] = 255  # full, high bytes
    m[2] = 0
    m[2, 0] = 1  # only the first
    m[3] = 0
    m[3, -1] = 128  # only the last (a byte whose low seven bits are 0)
    m[4] = 0
    m[4, t // 2] = 2
    run = fused_cpu.FusedRun(lib, torch.zeros(b, t), None, None, torch.zeros(b), m)
    valid = m != 0
    idx = torch.arange(t).expand(b, t)
    want_first = torch.where(valid, idx, t).min(1).values
    want_last = torch.where(valid, idx, -1).max(1).values
    assert torch.equal(run.n, valid.sum(1))
    assert torch.equal(run.first, want_first) and torch.equal(run.last, want_last)
