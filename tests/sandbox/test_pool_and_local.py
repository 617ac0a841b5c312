"""The FIFO pool, the seccomp filter's shape, and the unsafe-local backend (no bwrap needed)."""

from __future__ import annotations

import struct
import threading
import time

import pytest

from sandbox import make_runner
from sandbox.pool import FifoPool, QueueFull, QueueTimeout
from sandbox.seccomp import DENIED_X86_64, build_filter
from sandbox.types import Limits, Program


def test_pool_is_fifo() -> None:
    pool = FifoPool(["only"], max_waiting=10)
    held = pool.acquire()
    order: list[int] = []

    def waiter(i: int) -> None:
        item = pool.acquire(5)
        order.append(i)
        pool.release(item)

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while pool.waiting < i + 1:  # make arrival order certain
            time.sleep(0.001)
    pool.release(held)
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]


def test_pool_backpressure_and_timeout() -> None:
    pool = FifoPool([1], max_waiting=1)
    pool.acquire()
    t = threading.Thread(target=lambda: pytest.raises(QueueTimeout, pool.acquire, 0.3))
    t.start()
    while pool.waiting < 1:
        time.sleep(0.001)
    with pytest.raises(QueueFull):
        pool.acquire(0.1)
    t.join()
    assert pool.waiting == 0


def test_seccomp_filter_shape() -> None:
    prog = build_filter("x86_64")
    assert prog is not None and len(prog) % 8 == 0
    ins = [struct.unpack("<HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    ks = {k for code, _, _, k in ins if code == 0x15}
    assert set(DENIED_X86_64.values()) <= ks  # every denied syscall is tested
    assert ins[0] == (0x20, 0, 0, 4) and ins[2] == (0x06, 0, 0, 0x80000000)  # wrong arch is killed
    assert build_filter("aarch64") is None


def test_unsafe_local_warns_and_runs() -> None:
    with pytest.warns(RuntimeWarning, match="UNSAFE"):
        r = make_runner("unsafe-local", workers=1)
    ok = r.run(Program("python", "import sys; print(sys.stdin.read().upper())", stdin="hi"), Limits())
    assert (ok.status, ok.stdout) == ("ok", "HI\n")
    assert r.run(Program("python", "while True: pass"), Limits(wall_time_s=0.5)).status == "timeout"
    big = r.run(Program("python", "print('x' * 10**6)"), Limits(max_output_bytes=1000))
    assert big.status == "output_limit" and len(big.stdout) == 1000
    assert r.run(Program("python", "x = bytearray(1 << 30)"), Limits(memory_mb=128)).status == "memory"
    r.close()


def test_sandbox_run_without_backend_is_sandbox_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.factory as factory

    monkeypatch.setattr(factory, "_default", None)
    monkeypatch.setenv("REFEREE_SANDBOX_BACKEND", "no-such-backend")
    ex = factory.run(Program("python", "print(1)"))
    assert ex.status == "sandbox_error" and "no sandbox available" in ex.message
    monkeypatch.setattr(factory, "_default", None)
