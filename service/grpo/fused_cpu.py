"""The fused CPU loss kernel (`fused_cpu.c`): build at first use, bind with ctypes, run over row chunks.

Why C: on the CPU the torch path (even through torch.compile) materialises (B, T) temporaries and computes
every masked position; this kernel reads each input once, skips the masked tail of each row and writes the
gradient once (see docs/grpo.md for the figures). It covers the configs most runs use (`supports`); the torch
path in losses.py stays the reference and the fallback for everything else, for CUDA, for float64 inputs,
and for machines without a C compiler.

The shared object is compiled with the host's `cc` (-march=native) into a cache directory keyed by the
source, the flags and the CPU, so a cache shared between different machines never runs foreign code.
`REFEREE_GRPO_NATIVE=0` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from service.grpo.config import LossConfig, TrlLossConfig, VerlLossConfig

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_cpu.c")
# No -ffast-math: NaN and inf must behave as in torch. -fopenmp-simd only honours `#pragma omp simd`
# (vectorised reductions); it links no OpenMP runtime.
CFLAGS = [
    "-O3",
    "-march=native",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fprefetch-loop-arrays",  # software prefetch in the row loops: 10-20% on inputs not already in cache
    "-shared",
    "-fPIC",
]

# row statistics columns, in the order of the C enum
_STATS = (
    "loss",
    "ppo_kl",
    "clip",
    "clip_lower",
    "kl_loss",
    "kl_sum",
    "low",
    "high",
    "region",
    "low_row",
    "high_row",
)
_KL_TYPES = {"kl": 0, "k1": 0, "abs": 1, "mse": 2, "k2": 2, "low_var_kl": 3, "k3": 3}
_MIN_ELEMS_PER_THREAD = 1 << 16
_BUILD_LOCK = threading.Lock()


class _Params(ctypes.Structure):
    _fields_ = [
        ("flavor", ctypes.c_int32),
        ("gspo", ctypes.c_int32),
        ("use_kl", ctypes.c_int32),
        ("kl_type", ctypes.c_int32),
        ("kl_plus", ctypes.c_int32),
        ("seq_level", ctypes.c_int32),
        ("has_delta", ctypes.c_int32),
        ("bias_corr", ctypes.c_int32),
        ("per_row_metric", ctypes.c_int32),
        ("lo", ctypes.c_float),
        ("hi", ctypes.c_float),
        ("clip_c", ctypes.c_float),
        ("delta", ctypes.c_float),
        ("kl_coef", ctypes.c_float),
    ]


def _cache_dir() -> Path:
    base = (
        os.environ.get("REFEREE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    )
    return Path(base) / "referee" / "native"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU model and flags (a shared cache must not cross machines)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _compile(cc: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # unique temporary name, then an atomic rename: concurrent first calls (several workers) never see a
    # half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        subprocess.run(
            [cc, *CFLAGS, str(SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, timeout=120
        )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (disabled, no compiler, or the build failed; logged once)."""
    if os.environ.get("REFEREE_GRPO_NATIVE", "1") == "0":
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        log.warning("no C compiler found: the GRPO loss uses the torch path on CPU (slower)")
        return None
    key = hashlib.sha256(
        SOURCE.read_bytes() + " ".join([cc, *CFLAGS]).encode() + _cpu_signature().encode()
    ).hexdigest()[:20]
    for base in (_cache_dir(), Path(tempfile.gettempdir()) / "referee-native"):
        out = base / f"fused_cpu-{key}.so"
        try:
            with _BUILD_LOCK:  # a request racing the start-up build waits for it instead of compiling twice
                if not out.exists():
                    _compile(cc, out)
            lib = ctypes.CDLL(str(out))
            break
        except (OSError, subprocess.SubprocessError) as e:
            err = getattr(e, "stderr", b"") or b""
            log.warning("building the fused GRPO kernel in %s failed: %s %s", base, e, err.decode()[-500:])
    else:
        return None
    lib.referee_call_new.restype = ctypes.c_void_p
    lib.referee_call_new.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        *[ctypes.c_void_p] * 3,
        ctypes.c_int32,
    ]
    for name in ("referee_call_work", "referee_call_scan", "referee_call_abort"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.referee_call_rows.restype = None
    if lib.referee_nstats() != len(_STATS):
        log.error("fused GRPO kernel has a different stats layout; not used")
        return None
    return lib


def status() -> str:
    """What the CPU loss runs on, for /readyz: "fused" (kernel loaded), "torch" (disabled or build failed) or
    "pending" (not built yet: it builds in the background at start-up, or at the first loss)."""
    if library.cache_info().currsize == 0:
        return "pending"
    return "fused" if library() is not None else "torch"


def supports(cfg: LossConfig, logp: torch.Tensor) -> bool:
    """Whether the fused kernel computes this config for these inputs (CPU, float32/bf16/fp16 log-probs)."""
    if logp.device.type != "cpu" or logp.dtype == torch.float64 or logp.dim() != 2:
        return False
    if isinstance(cfg, VerlLossConfig):
        kl = cfg.kl_loss_type.rstrip("+")
        return cfg.loss_mode in ("vanilla", "gspo") and (not cfg.use_kl_loss or kl in _KL_TYPES)
    if isinstance(cfg, TrlLossConfig):
        return cfg.loss_type in ("grpo", "bnpo", "dr_grpo", "dapo")
    return False


def _params(cfg: LossConfig, per_row_metric: bool) -> _Params:
    if isinstance(cfg, VerlLossConfig):
        return _Params(
            flavor=0,
            gspo=int(cfg.loss_mode == "gspo"),
            use_kl=int(cfg.use_kl_loss),
            kl_type=_KL_TYPES.get(cfg.kl_loss_type.rstrip("+"), 0),
            kl_plus=int(cfg.kl_loss_type.endswith("+")),
            lo=1.0 - cfg.eps_low,
            hi=1.0 + cfg.eps_high,
            clip_c=cfg.clip_ratio_c,
            kl_coef=cfg.kl_loss_coef,
        )
    assert isinstance(cfg, TrlLossConfig)
    return _Params(
        flavor=1,
        use_kl=int(cfg.beta != 0.0),
        seq_level=int(cfg.importance_sampling_level == "sequence"),
        has_delta=int(cfg.delta is not None),
        bias_corr=int(cfg.use_bias_correction_kl),
        per_row_metric=int(per_row_metric),
        lo=1.0 - cfg.epsilon,
        hi=1.0 + cfg.eps_high,
        delta=cfg.delta if cfg.delta is not None else 0.0,
        kl_coef=cfg.beta,
    )


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.float32).contiguous()


def _mask_u8(mask: torch.Tensor) -> torch.Tensor:
    m = mask.contiguous()
    if m.dtype == torch.bool:
        return m.view(torch.uint8)
    if m.dtype == torch.uint8:
        return m
    return (m != 0).view(torch.uint8)


@functools.cache
def _executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpo-fused")


# a forked child (verl's and the trainers' dataloaders fork) inherits the cached pool without its threads: work
# sent there would never start (the call would still finish, on the caller's thread alone)
os.register_at_fork(after_in_child=_executor.cache_clear)


class FusedRun:
    """One evaluation: `row_counts()` first (the caller needs n for its row weights), then `run()` once.

    The mask scan starts in the constructor on this thread and `threads - 1` pool threads at once (a call in
    `fused_cpu.c`: the threads take chunks of rows from a shared counter, and the pool threads wait for
    `run()` instead of returning to the pool), so a pool thread that wakes late costs nothing and each call
    hands off to the pool once. A run that is never made (an error between the two) is aborted by `close()`,
    which `run()` and garbage collection also call."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        logp: torch.Tensor,
        old_logp: torch.Tensor | None,
        ref_logp: torch.Tensor | None,
        advantages: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        self.lib = lib
        self.lp = _f32(logp)
        self.old = _f32(old_logp)
        self.ref = _f32(ref_logp)
        self.adv = _f32(advantages)
        self.mask = _mask_u8(mask)
        b, t = self.lp.shape  # type: ignore[union-attr]
        self.b, self.t = b, t
        self.threads = max(1, min(torch.get_num_threads(), b, (b * t) // _MIN_ELEMS_PER_THREAD))
        self.n = torch.empty(b, dtype=torch.int64)
        self.first = torch.empty(b, dtype=torch.int64)
        self.last = torch.empty(b, dtype=torch.int64)
        workers = self.threads - 1
        spans = (self.n.data_ptr(), self.first.data_ptr(), self.last.data_ptr())
        call = lib.referee_call_new(self.mask.data_ptr(), b, t, *spans, workers)
        if not call:
            raise MemoryError("the fused GRPO kernel could not allocate its call state")
        self._call: int | None = call
        if workers:
            pool = _executor(workers)
            try:
                for _ in range(workers):  # ctypes drops the GIL for the call: the threads run in C
                    pool.submit(lib.referee_call_work, call)
            except RuntimeError:  # the interpreter is shutting down: this thread does every chunk
                log.debug("no pool threads for the fused GRPO kernel; running on the caller's thread")
        lib.referee_call_scan(call)

    def row_counts(self) -> torch.Tensor:
        """(B,) valid tokens per row (int64)."""
        return self.n

    def close(self) -> None:
        """Abort the call if `run()` was not made (pool threads still waiting for it leave)."""
        if self._call is not None:
            call, self._call = self._call, None
            self.lib.referee_call_abort(call)

    def __del__(self) -> None:
        self.close()

    def run(
        self,
        cfg: LossConfig,
        c_pg: torch.Tensor,
        c_kl: torch.Tensor,
        per_row_metric: bool = False,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(grad float32 (B, T), summed stats float64 by name, per-row stats (B, NSTATS) float64).

        The gradient is written into `out` when it is a contiguous float32 (B, T) CPU tensor (every element,
        masked ones as 0), else into a new tensor."""
        if self._call is None:
            raise RuntimeError("FusedRun.run() is made once")
        b, t = self.b, self.t
        try:
            params = _params(cfg, per_row_metric)
            usable = (
                out is not None
                and out.dtype == torch.float32
                and tuple(out.shape) == (b, t)
                and out.device.type == "cpu"
                and out.is_contiguous()
            )
            grad = out if usable and out is not None else torch.empty((b, t), dtype=torch.float32)
            stats = torch.empty((b, len(_STATS)), dtype=torch.float64)
            cpg = c_pg.to(torch.float32).contiguous()
            ckl = c_kl.to(torch.float32).contiguous()
        except BaseException:
            self.close()
            raise
        call, self._call = self._call, None
        self.lib.referee_call_rows(
            ctypes.c_void_p(call),
            ctypes.byref(params),
            _ptr(self.lp),
            _ptr(self.old),
            _ptr(self.ref),
            _ptr(self.adv),
            ctypes.c_int64(self.adv.shape[1]),  # type: ignore[union-attr]
            _ptr(cpg),
            _ptr(ckl),
            _ptr(grad),
            _ptr(stats),
        )
        # one reduction and one conversion (a torch op per statistic costs more than the sums themselves)
        totals = stats.sum(0).tolist()
        sums = {name: torch.tensor(v, dtype=torch.float64) for name, v in zip(_STATS, totals, strict=True)}
        return grad, sums, stats

    @staticmethod
    def column(stats: torch.Tensor, name: str) -> torch.Tensor:
        return stats[:, _STATS.index(name)]
