"""Reading a run's stdout/stderr pipes on the host with a byte cap and a deadline."""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass, field


@dataclass
class Pumped:
    """What came out of the pipes, and why reading stopped."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    overflow: bool = False  # a stream went past the cap (only the cap is kept)
    deadline_hit: bool = False
    control: bytes | None = None  # the message read from the control fd, if one was watched
    control_eof: bool = False


def pump(
    out_fd: int,
    err_fd: int,
    cap: int,
    deadline: float,
    control_fd: int | None = None,
    after_control_grace_s: float = 1.0,
) -> Pumped:
    """Read both pipes until EOF (and a control message, if ``control_fd``), a cap overflow or ``deadline``.

    Stops at once on overflow or deadline; the caller then kills the whole sandbox. When a control fd
    is watched, pipes still open ``after_control_grace_s`` after its message count as a deadline hit
    (something outlived the run and kept them open).
    """
    res = Pumped()
    bufs = {out_fd: res.stdout, err_fd: res.stderr}
    poller = select.poll()
    for fd in bufs:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    if control_fd is not None:
        poller.register(control_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    open_fds = set(bufs)
    waiting_control = control_fd is not None
    while open_fds or waiting_control:
        now = time.monotonic()
        if now >= deadline:
            res.deadline_hit = True
            break
        for fd, _ev in poller.poll(max(1, int((deadline - now) * 1000) + 1)):
            if fd == control_fd:
                try:
                    msg = os.read(fd, 1 << 16)
                except OSError:
                    msg = b""
                poller.unregister(fd)
                waiting_control = False
                if msg:
                    res.control = msg
                    deadline = min(deadline, time.monotonic() + after_control_grace_s)
                else:
                    res.control_eof = True
                continue
            buf = bufs[fd]
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            room = cap - len(buf)
            if len(chunk) > room:
                buf += chunk[: max(room, 0)]
                res.overflow = True
                return res
            buf += chunk
        if res.control_eof:
            break
    return res
