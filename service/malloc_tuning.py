"""Keep large freed blocks in the process instead of handing them back to the kernel (glibc only).

A `/grpo/loss` call of 512 x 4096 allocates tens of MB (the body, the gradient, torch temporaries). With
glibc's defaults those blocks are mmap'ed and unmapped, or trimmed from the heap top, on every call, so the
next call page-faults its memory in again: measured on our VM, 1-3 ms of a 3 ms fused loss, and 40% of the
peers' eager loss. Raising the mmap and trim thresholds keeps the memory mapped between calls (the process
keeps its peak footprint: the usual trade of jemalloc/tcmalloc too). Applied by `create_app` when the GRPO
routes are mounted (each worker process) and by bench/grpo_throughput.py (to every contender alike).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# largest block still served from the heap (glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit unless set
# explicitly), and how much free memory may sit at the heap top before it is returned
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Apply the thresholds; False (and nothing changed) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )
    if not ok:
        log.warning("mallopt refused the thresholds; large tensors are re-faulted on every call")
    return ok
