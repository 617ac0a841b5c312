"""Shared-memory channel for `/grpo/loss`: a trainer on the same host hands the service a sealed memfd once;
each call then sends only a small JSON message (on this socket, or over HTTP), and the tensors stay where the
trainer wrote them.

Why: over loopback TCP a 512 x 4096 request (27 MB in, 8 MB out) costs four to five times the loss's compute in
copies alone (docs/grpo.md). Here the service maps the trainer's buffer once, reads the inputs in place and
writes the gradients into it.

Registration, on the Unix socket at `REFEREE_GRPO_SHM_SOCKET` (`SOCK_SEQPACKET`; the socket file's permissions
are the access control, 0660):

    trainer -> service   {"op": "register"}                 with the memfd attached (SCM_RIGHTS)
    service -> trainer   {"buffer": "<id>", "size": n}       or {"error": "<why>"}
    trainer -> service   {"op": "release", "buffer": "<id>"}
    service -> trainer   {"released": "<id>"}                or {"error": "<why>"}
    trainer -> service   {"op": "ping"}
    service -> trainer   {"pong": true, "buffers": n}        n: buffers this connection holds

A buffer lives until released or until the connection that registered it closes: when the trainer exits, its
buffers go. The id is an unguessable capability; `/grpo/loss` still needs the bearer token when one is set.

Calls, on the same connection, without HTTP (the default of trainer/client.py: the HTTP exchange and the hops
to the device thread and back that this saves cost 0.5-1 ms a call on our 2-vCPU VM):

    trainer -> service   {"op": "loss", "buffer": "<id>", "options": {...}, "token"?: "<REFEREE_API_TOKEN>"}
    service -> trainer   {"loss": x, "metrics": {...}, "written": [...], "compute_ms": t}
                         or {"error": <detail>, "status": <the HTTP form's status code>}

The same checks and answers as `POST /grpo/loss` with `Content-Type: application/vnd.referee.shm+json`
(routes/grpo.socket_loss), run on the connection's thread; `token` is required when the service has one.

The memfd must be sealed with `F_SEAL_SHRINK` and `F_SEAL_GROW`: a mapped file that shrinks makes the next read
of a page past its end fault (SIGBUS) and would kill the service, so only a buffer of fixed size is mapped. Its content is a
safetensors file: the inputs of `/grpo/loss` (`logp`, `old_logp`?, `ref_logp`?, `advantages`, `mask`?,
`entropy`?) and the outputs the service fills (`grad_logprobs`, and `grad_entropy` when `entropy` is there).
The trainer may rewrite the header between calls (new shapes), never during one.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import mmap
import os
import secrets
import socket
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import torch

from service.grpo.wire import MAX_HEADER_BYTES, WireError, decode

if TYPE_CHECKING:
    from service.grpo.batcher import LossJob

log = logging.getLogger("referee.grpo.shm")

SHM_MEDIA_TYPE = "application/vnd.referee.shm+json"
OUTPUTS = ("grad_logprobs", "grad_entropy")
_MAX_MESSAGE = 16384  # a call's options are a few hundred bytes
_MAX_CONNECTIONS = 256


class ShmError(ValueError):
    """A buffer or a registration the service refuses (the message says why)."""


class UnknownBuffer(ShmError):
    """No registered buffer has this id (never registered, or its connection closed: register again)."""


@dataclass
class ShmBuffer:
    """One registered, mapped memfd. `data` is a writable view of the whole mapping."""

    id: str
    size: int
    mm: mmap.mmap
    data: memoryview
    base: int  # address of the mapping's first byte
    # the last layout read from it: (header bytes, inputs, outputs); trainers reuse one layout call after call
    layout: tuple[bytes, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    # the last socket call checked on it, reused while the header and the message are the same:
    # (header bytes, message key, checked job, its outputs); routes/grpo.py fills and reads it
    checked_call: tuple[bytes, bytes, LossJob, dict[str, torch.Tensor]] | None = None


def header_bytes(buf: ShmBuffer) -> bytes:
    """The length prefix and JSON header at the start of the buffer (b"" if the length is out of range)."""
    (n,) = struct.unpack("<Q", buf.data[:8])
    return bytes(buf.data[: 8 + n]) if n <= MAX_HEADER_BYTES and 8 + n <= buf.size else b""


def sealed_size(fd: int) -> int:
    """The size of a memfd that can neither shrink nor grow (so a mapping of it stays valid as it is).

    Raises:
        ShmError: not a sealable memfd, F_SEAL_SHRINK or F_SEAL_GROW missing, write-sealed, empty, or on
            hugetlbfs.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ShmError("the attached descriptor is not a regular file (send a memfd)")
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise ShmError("the attached file is not a memfd (os.memfd_create with MFD_ALLOW_SEALING)") from None
    need = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
    if seals & need != need:
        raise ShmError(
            "the memfd must be sealed with F_SEAL_SHRINK and F_SEAL_GROW (a mapped file that shrinks faults "
            "its reader)"
        )
    if seals & (fcntl.F_SEAL_WRITE | getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0)):
        raise ShmError("the memfd is sealed against writes: the service writes the gradients into it")
    if st.st_size < 8:
        raise ShmError("the memfd is empty (size it with ftruncate before sealing)")
    if _filesystem(fd) != _TMPFS_MAGIC:
        # hugetlbfs (MFD_HUGETLB): a page that cannot be allocated from the huge-page pool when touched faults
        # (SIGBUS) instead of failing cleanly
        raise ShmError("the memfd must be a plain memfd (not MFD_HUGETLB)")
    return st.st_size


_TMPFS_MAGIC = 0x01021994  # what a plain memfd's file system reports (hugetlbfs is 0x958458F6)
_libc = ctypes.CDLL(None, use_errno=True)


def _filesystem(fd: int) -> int:
    """f_type of fstatfs(fd): the first field of struct statfs on Linux."""
    buf = ctypes.create_string_buffer(256)  # larger than struct statfs on every Linux ABI
    if _libc.fstatfs(fd, buf) != 0:
        raise ShmError(f"fstatfs on the memfd failed: {os.strerror(ctypes.get_errno())}")
    return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], "little") & 0xFFFFFFFF


class ShmRegistry:
    """Registered buffers by id, under a cap on their total size (thread-safe: the socket threads add and
    drop, request handlers look up)."""

    def __init__(self, max_bytes: int, max_buffers: int = 1024) -> None:
        self.max_bytes = max_bytes
        # each buffer is a mapping, and a process's map count is finite (vm.max_map_count)
        self.max_buffers = max_buffers
        self._lock = threading.Lock()
        self._buffers: dict[str, ShmBuffer] = {}
        self._bytes = 0
        self._pending = 0  # reserved, being mapped

    def add(self, fd: int) -> ShmBuffer:
        """Map a sealed memfd (shared, writable, pages populated up front) and give it an id."""
        size = sealed_size(fd)
        # reserve, then map outside the lock: populating a big buffer must not hold up lookups
        with self._lock:
            if len(self._buffers) + self._pending >= self.max_buffers:
                raise ShmError(f"{self.max_buffers} buffers are registered already; release some")
            room = self.max_bytes - self._bytes
            if size > room:
                raise ShmError(
                    f"the memfd holds {size} bytes; {room} are left of REFEREE_GRPO_SHM_MAX_BYTES={self.max_bytes}"
                )
            self._bytes += size
            self._pending += 1
        try:
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except OSError as e:
            with self._lock:
                self._bytes -= size
                self._pending -= 1
            raise ShmError(f"cannot map the memfd read-write: {e}") from None
        data = memoryview(mm)
        base = torch.frombuffer(data, dtype=torch.uint8).data_ptr()
        buf = ShmBuffer(secrets.token_hex(16), size, mm, data, base)
        with self._lock:
            self._buffers[buf.id] = buf
            self._pending -= 1
        return buf

    def find(self, buffer_id: str) -> ShmBuffer | None:
        with self._lock:
            return self._buffers.get(buffer_id)

    def get(self, buffer_id: str) -> ShmBuffer:
        buf = self.find(buffer_id)
        if buf is None:
            raise UnknownBuffer(f"no shared-memory buffer {buffer_id!r} is registered (register it again)")
        return buf

    def drop(self, buffer_id: str) -> None:
        """Forget a buffer. Its mapping goes when the last request using it lets go (tensors export it)."""
        with self._lock:
            buf = self._buffers.pop(buffer_id, None)
            if buf is not None:
                self._bytes -= buf.size

    def __len__(self) -> int:
        return len(self._buffers)

    @property
    def mapped_bytes(self) -> int:
        return self._bytes


def loss_tensors(buf: ShmBuffer) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The inputs and the outputs (`grad_logprobs`, `grad_entropy`) laid out in a buffer, as views of it.

    Raises:
        ShmError: a malformed safetensors layout; an output missing, not floating point, misaligned, not of
            its input's shape, or overlapping another tensor; grad_entropy without entropy or the reverse.
    """
    header = header_bytes(buf)
    if buf.layout is not None and header and buf.layout[0] == header:
        return dict(buf.layout[1]), dict(buf.layout[2])  # same header as last time: same validated views
    try:
        tensors, _ = decode(buf.data)
    except WireError as e:
        raise ShmError(f"buffer {buf.id}: {e}") from None
    outputs = {k: tensors.pop(k) for k in OUTPUTS if k in tensors}
    if "grad_logprobs" not in outputs:
        raise ShmError("the buffer must hold an output tensor grad_logprobs (shape of logp, floating point)")
    spans = [
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), k)
        for k, t in {**tensors, **outputs}.items()
        if t.numel()
    ]
    starts = {k: s for s, _, k in spans}
    ends = {k: e for _, e, k in spans}
    for name, t in outputs.items():
        if not t.is_floating_point():
            raise ShmError(f"{name} must be floating point, not {t.dtype}")
        p = t.data_ptr()
        if t.numel() and not buf.base <= p < buf.base + buf.size:
            raise ShmError(f"{name} is not aligned to its element size (the service would write a copy)")
    entropy = tensors.get("entropy")
    if entropy is not None and "grad_entropy" not in outputs:
        raise ShmError(f"the buffer must hold grad_entropy (shape {list(entropy.shape)}) for its entropy")
    if entropy is None and "grad_entropy" in outputs:
        raise ShmError("the buffer holds grad_entropy but no entropy")
    for name, source in (("grad_logprobs", "logp"), ("grad_entropy", "entropy")):
        got, like = outputs.get(name), tensors.get(source)  # no logp: the route says which tensors it needs
        if got is not None and like is not None and got.shape != like.shape:
            raise ShmError(f"{name} has shape {list(got.shape)}, {source} has {list(like.shape)}")
    for name in outputs:
        for start, end, other in spans:
            if other == name or not start < ends[name] or not starts[name] < end:
                continue
            raise ShmError(f"tensors {name} and {other} overlap in the buffer")
    if header and header_bytes(buf) == header:  # not rewritten while we read it: safe to reuse
        buf.layout = (header, dict(tensors), dict(outputs))
    return tensors, outputs


class ShmListener:
    """The registration socket: one thread accepts, one thread per connection serves its registrations."""

    def __init__(
        self,
        path: str | Path,
        registry: ShmRegistry,
        on_loss: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.path = Path(path)
        self.registry = registry
        # answers {"op": "loss", ...} (routes/grpo.socket_loss); None: loss calls are refused
        self.on_loss = on_loss
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        _clear_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.listen(64)
        except OSError as e:
            sock.close()
            raise ShmError(f"cannot listen on REFEREE_GRPO_SHM_SOCKET={self.path}: {e}") from None
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), name="grpo-shm-accept", daemon=True).start()
        log.info("GRPO shared-memory channel on %s", self.path)

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                if len(self._conns) >= _MAX_CONNECTIONS:
                    conn.close()
                    continue
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="grpo-shm-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        owned: list[str] = []
        try:
            while True:
                try:
                    msg, fds, flags, _ = socket.recv_fds(conn, _MAX_MESSAGE, 4)
                except OSError:
                    return
                if not msg and not fds:
                    return  # the trainer closed the connection (or exited)
                try:
                    reply = self._handle(msg, fds, flags, owned)
                finally:
                    for fd in fds:
                        os.close(fd)
                try:
                    conn.send(orjson.dumps(reply))
                except OSError:
                    return
        finally:
            for buffer_id in owned:
                self.registry.drop(buffer_id)
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _handle(self, msg: bytes, fds: list[int], flags: int, owned: list[str]) -> dict[str, object]:
        if flags & socket.MSG_TRUNC:  # the datagram was cut: refuse it, never parse half of it
            return {"error": f"message longer than {_MAX_MESSAGE} bytes", "status": 413}
        try:
            req = orjson.loads(msg)
        except orjson.JSONDecodeError as e:  # strict, as the HTTP form's JSON bodies: 422 there too
            return {
                "error": f'messages are JSON objects with an "op" (strict: no NaN, Infinity or invalid UTF-8): {e}',
                "status": 422,
            }
        op = req.get("op") if isinstance(req, dict) else None
        if op == "loss" and isinstance(req, dict):
            if fds:
                return {"error": "a loss call takes no descriptors", "status": 400}
            if self.on_loss is None:
                return {"error": "loss calls over this socket are off: POST /grpo/loss", "status": 409}
            try:
                return self.on_loss(req)
            except Exception as e:  # a bug must cost one call, not the connection or the service
                log.exception("GRPO loss call on the shared-memory socket failed")
                return {"error": f"internal error: {type(e).__name__}: {e}", "status": 500}
        if op == "ping":  # liveness, and a no-work round trip (bench/grpo_throughput.py times it)
            return {"pong": True, "buffers": len(owned)}
        if op == "release" and isinstance(req, dict):
            buffer_id = req.get("buffer")
            if buffer_id not in owned:
                return {"error": f"buffer {buffer_id!r} was not registered on this connection"}
            owned.remove(buffer_id)
            self.registry.drop(buffer_id)
            return {"released": buffer_id}
        if op != "register":
            return {
                "error": 'messages are {"op": "register"} with a memfd attached, {"op": "release", "buffer": id}, '
                '{"op": "loss", "buffer": id, "options": {...}} or {"op": "ping"}'
            }
        if flags & socket.MSG_CTRUNC or len(fds) != 1:
            return {"error": f"attach exactly one memfd (SCM_RIGHTS), got {len(fds)}"}
        try:
            buf = self.registry.add(fds[0])
        except ShmError as e:
            return {"error": str(e)}
        owned.append(buf.id)
        return {"buffer": buf.id, "size": buf.size}

    def close(self) -> None:
        """Stop accepting, drop every connection and its buffers, remove the socket file."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file left by a service that died; refuse to touch a live one or any other file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ShmError(f"{path} exists and is not a socket; REFEREE_GRPO_SHM_SOCKET must name a free path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: stale
        return
    finally:
        probe.close()
    raise ShmError(f"another service listens on {path}")
