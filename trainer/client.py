"""Typed HTTP client for a Referee service (sync and async).

This module is self-contained on purpose: it needs only the standard library, and uses ``httpx``
(connection pooling, HTTP keep-alive, async) when it is importable, else ``urllib``. Trainer adapters
load it by file path, so it must never import the service or the project's ``verifiers`` package
(trainer environments often hold an unrelated PyPI package of that name).

Retries (with exponential backoff and jitter) happen only where they are safe:

* connection errors (the request never reached the server);
* HTTP 429 (honouring ``Retry-After``) and 503 (overload / not ready);
* read timeouts, only for idempotent calls. Every Referee route the client calls is idempotent
  (scoring and GRPO maths are pure functions of the body), so this is the default.

The service is found through ``REFEREE_URL`` (default ``http://127.0.0.1:8000``) and the bearer
token through ``REFEREE_API_TOKEN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http.client
import itertools
import json
import os
import random
import select
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

try:  # pooled client when available; urllib otherwise (stdlib only)
    import httpx
except ImportError:  # pragma: no cover - exercised in environments without httpx
    httpx = None  # type: ignore[assignment]

DEFAULT_URL = "http://127.0.0.1:8000"
SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
SHM_MEDIA_TYPE = "application/vnd.referee.shm+json"
RETRY_STATUSES = frozenset({429, 503})


class ScoreItem(TypedDict, total=False):
    """One item of a ``POST /score`` request (``id`` and ``completion`` are required)."""

    id: str
    completion: str
    answer: Any
    tests: Any
    verifier: str
    language: str
    prompt: Any
    options: dict[str, Any]
    weights: dict[str, float]


class ScoreResult(TypedDict, total=False):
    """One result of a ``POST /score`` response, in request order."""

    id: str
    reward: float
    status: str
    components: dict[str, float | None]
    extracted: Any
    details: dict[str, Any]
    elapsed_ms: float


class RefereeError(RuntimeError):
    """The service answered with an error status, or could not be reached after the retries."""

    def __init__(self, message: str, status_code: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the service.

    Attributes:
        base_url: service root, e.g. ``http://127.0.0.1:8000``.
        token: bearer token, or ``None`` for no auth header.
        timeout: total seconds per attempt.
        connect_timeout: seconds to establish a connection.
        max_retries: extra attempts after the first, for retryable failures only.
        backoff: base seconds of the exponential backoff (doubles each try, capped at ``backoff_max``).
        backoff_max: upper bound of one wait.
        shm_socket: the service's shared-memory registration socket (``REFEREE_GRPO_SHM_SOCKET``); when set,
            ``grpo_loss`` moves its tensors through a sealed memfd instead of the HTTP body (same host only).
        shm_calls: how shared-memory calls reach the service (``REFEREE_GRPO_SHM_CALLS``): ``"socket"`` (the
            default) as a message on the registration socket, ``"http"`` as ``POST /grpo/loss`` with a small
            JSON body. Same answers; the socket saves the HTTP exchange and two thread hops (0.5-1 ms a call on
            our 2-vCPU VM).
    """

    base_url: str = DEFAULT_URL
    token: str | None = None
    timeout: float = 300.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    backoff: float = 0.25
    backoff_max: float = 8.0
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    shm_socket: str | None = None
    shm_calls: Literal["socket", "http"] = "socket"

    def __post_init__(self) -> None:
        if self.shm_calls not in ("socket", "http"):
            raise ValueError(f"shm_calls must be 'socket' or 'http', not {self.shm_calls!r}")

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientConfig:
        """Build a config from ``REFEREE_URL`` / ``REFEREE_API_TOKEN`` / ``REFEREE_TIMEOUT`` /
        ``REFEREE_GRPO_SHM_SOCKET`` / ``REFEREE_GRPO_SHM_CALLS``."""
        values: dict[str, Any] = {
            "base_url": os.environ.get("REFEREE_URL", DEFAULT_URL),
            "token": os.environ.get("REFEREE_API_TOKEN") or None,
            "shm_socket": os.environ.get("REFEREE_GRPO_SHM_SOCKET") or None,
        }
        if os.environ.get("REFEREE_GRPO_SHM_CALLS"):
            values["shm_calls"] = os.environ["REFEREE_GRPO_SHM_CALLS"]
        if os.environ.get("REFEREE_TIMEOUT"):
            values["timeout"] = float(os.environ["REFEREE_TIMEOUT"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def headers(
        self, content_type: str = "application/json", accept: str = "application/json"
    ) -> dict[str, str]:
        h = {"Content-Type": content_type, "Accept": accept, **self.extra_headers}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _delay(cfg: ClientConfig, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, cfg.backoff_max * 4)
    base = min(cfg.backoff * (2**attempt), cfg.backoff_max)
    return base * (0.5 + random.random() / 2)  # jitter: spread out the retries of many ranks


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    content: bytes | memoryview  # memoryview: a binary body read into a writable buffer (_PartsTransport)

    def json(self) -> Any:
        return json.loads(bytes(self.content))


def _raise_for(resp: _Response, url: str) -> None:
    if resp.status >= 400:
        text = bytes(resp.content[:2000]).decode("utf-8", "replace")
        raise RefereeError(f"{url} answered HTTP {resp.status}: {text}", resp.status, text)


def _urllib_send(cfg: ClientConfig, url: str, body: bytes, headers: Mapping[str, str]) -> _Response:
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout) as r:  # noqa: S310 - URL is the user's service
            return _Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return _Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def _is_connect_error(exc: BaseException) -> bool:
    if httpx is not None and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ConnectionRefusedError | OSError):
        return not isinstance(exc.reason, TimeoutError)
    return isinstance(exc, ConnectionRefusedError)


def _is_read_timeout(exc: BaseException) -> bool:
    """A timeout, or the server going away mid-exchange (only retried for idempotent calls)."""
    if httpx is not None and isinstance(exc, httpx.ReadTimeout | httpx.RemoteProtocolError):
        return True
    dropped = (
        ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected | http.client.IncompleteRead
    )
    return isinstance(exc, TimeoutError | dropped)


def _encode_json(body: Any) -> bytes:
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()


Parts = Sequence[bytes | memoryview]  # a body as pieces sent back to back (no join)


def _alloc(n: int) -> memoryview:
    """A writable n-byte buffer; torch's allocator when torch is there (reuses freed memory: a fresh
    zeroed ``bytearray`` of 8 MB costs several ms of page faults on a busy VM), else a ``bytearray``."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return memoryview(bytearray(n))
    return torch.empty(n, dtype=torch.uint8).numpy().data


def _stale(sock: socket.socket | None) -> bool:
    """True when an idle keep-alive socket is unusable: an idle HTTP/1.1 connection has nothing to read, so
    a readable one was closed by the server (keep-alive timeout) or holds garbage."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _PartsTransport:
    """POST a body given as pieces over one keep-alive ``http.client`` connection per thread and origin.

    For the large binary GRPO bodies: httpx (via h11) joins every piece into one new ``bytes`` before
    sending and copies the answer several times; here the pieces (safetensors header, then each tensor's
    memory) go straight to ``sendall`` and the answer is read straight into one buffer. Stdlib only.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, for close()

    def _conn(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {}
        )
        conn = conns.get((scheme, netloc))
        if conn is not None and not _stale(conn.sock):
            return conn, True
        if conn is not None:
            conn.close()
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(netloc, timeout=self.config.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.config.timeout)
        # the last partial segment of a body must not wait for the ACK of the previous one (Nagle)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[(scheme, netloc)] = conn
        with self._lock:
            self._opened = [c for c in self._opened if c.sock is not None] + [conn]
        return conn, False

    def post(self, url: str, parts: Parts, headers: Mapping[str, str]) -> _Response:
        u = urllib.parse.urlsplit(url)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        conn, reused = self._conn(u.scheme, u.netloc)
        try:
            return self._exchange(conn, path, parts, headers)
        except (ConnectionError, http.client.BadStatusLine):
            conn.close()
            if not reused:
                raise
        # the server dropped a keep-alive connection between our check and our request: once more, fresh
        conn, _ = self._conn(u.scheme, u.netloc)
        return self._exchange(conn, path, parts, headers)

    def _exchange(
        self, conn: http.client.HTTPConnection, path: str, parts: Parts, headers: Mapping[str, str]
    ) -> _Response:
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(sum(memoryview(p).nbytes for p in parts)))
            conn.endheaders()
            assert conn.sock is not None
            for p in parts:
                conn.sock.sendall(p)
            r = conn.getresponse()
            length = r.getheader("content-length")
            if length is not None and r.status < 300:
                content: bytes | memoryview = _alloc(int(length))
                if r.readinto(content) != len(content):
                    raise http.client.IncompleteRead(b"")
            else:
                content = r.read()
            if r.will_close:
                conn.close()
            return _Response(r.status, {k.lower(): v for k, v in r.getheaders()}, content)
        except (OSError, http.client.HTTPException):
            conn.close()  # a half-done exchange leaves the connection unusable
            raise

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def _with_retries(cfg: ClientConfig, url: str, send: Callable[[], _Response], idempotent: bool) -> _Response:
    """Run ``send`` under the retry policy (module docstring); returns the final 2xx response."""
    last: BaseException | None = None
    for attempt in range(cfg.max_retries + 1):
        try:
            resp = send()
        except Exception as exc:  # noqa: BLE001 - classified just below
            retryable = _is_connect_error(exc) or (idempotent and _is_read_timeout(exc))
            if not retryable or attempt == cfg.max_retries:
                raise RefereeError(f"POST {url} failed: {exc!r}") from exc
            last = exc
            time.sleep(_delay(cfg, attempt, None))
            continue
        if resp.status in RETRY_STATUSES and attempt < cfg.max_retries:
            time.sleep(_delay(cfg, attempt, _retry_after(resp.headers.get("retry-after"))))
            continue
        _raise_for(resp, url)
        return resp
    raise RefereeError(f"POST {url} failed after retries: {last!r}")  # pragma: no cover


class RefereeClient:
    """Blocking client; one instance keeps a pool of keep-alive connections (with httpx).

    Example:
        >>> client = RefereeClient()  # REFEREE_URL / REFEREE_API_TOKEN
        >>> client.score([{"id": "a", "completion": "<answer>4</answer>", "answer": "4"}])
    """

    def __init__(self, config: ClientConfig | None = None, *, max_connections: int = 64) -> None:
        self.config = config or ClientConfig.from_env()
        self._parts = _PartsTransport(self.config)
        self._shm = _ShmTransport(self.config, self._parts) if self.config.shm_socket else None
        self._http: Any = None
        if httpx is not None:
            self._http = httpx.Client(
                timeout=httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )

    def close(self) -> None:
        if self._shm is not None:
            self._shm.close()
        self._parts.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RefereeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------------------
    def _send_once(self, url: str, body: bytes, headers: Mapping[str, str]) -> _Response:
        if self._http is None:
            return _urllib_send(self.config, url, body, headers)
        r = self._http.post(url, content=body, headers=dict(headers))
        return _Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)

    def request(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        idempotent: bool = True,
    ) -> _Response:
        """POST ``body`` to ``path`` with the retry policy; returns the final 2xx response."""
        url = self.config.url(path)
        headers = self.config.headers(content_type, accept)
        return _with_retries(self.config, url, lambda: self._send_once(url, body, headers), idempotent)

    def request_parts(
        self, path: str, parts: Parts, *, content_type: str, accept: str, idempotent: bool = True
    ) -> _Response:
        """POST a body given as pieces (no join, see ``_PartsTransport``) with the retry policy."""
        url = self.config.url(path)
        headers = self.config.headers(content_type, accept)
        return _with_retries(self.config, url, lambda: self._parts.post(url, parts, headers), idempotent)

    def post_json(self, path: str, payload: Any, *, idempotent: bool = True) -> Any:
        """POST a JSON body and decode the JSON answer."""
        return self.request(path, _encode_json(payload), idempotent=idempotent).json()

    # -- Referee routes ------------------------------------------------------------------------
    def score(
        self, items: Sequence[ScoreItem], weights: Mapping[str, float] | None = None
    ) -> list[ScoreResult]:
        """``POST /score``; results come back in request order, one per item."""
        payload: dict[str, Any] = {"items": list(items)}
        if weights is not None:
            payload["weights"] = dict(weights)
        results = self.post_json("/score", payload)["results"]
        if len(results) != len(items):
            raise RefereeError(f"/score returned {len(results)} results for {len(items)} items")
        return results

    def grpo_advantages(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /grpo/advantages`` with a JSON body (rewards are small)."""
        return self.post_json("/grpo/advantages", dict(payload))

    def grpo_loss(self, tensors: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> LossResult:
        """``POST /grpo/loss`` with a safetensors body (:func:`loss_request_parts`), or through shared memory
        when ``config.shm_socket`` is set (the tensors copied into this thread's registered buffer)."""
        if self._shm is not None:
            return self._shm.loss(tensors, options or {})
        parts = loss_request_parts(tensors, options or {})
        resp = self.request_parts(
            "/grpo/loss", parts, content_type=SAFETENSORS_MEDIA_TYPE, accept=SAFETENSORS_MEDIA_TYPE
        )
        res = decode_loss_response(resp.content, resp.headers.get("content-type", ""))
        return dataclasses.replace(res, server_ms=_server_ms(resp.headers))

    def grpo_loss_shm(self, buffer: ShmLossBuffer, options: Mapping[str, Any] | None = None) -> LossResult:
        """``POST /grpo/loss`` on a buffer the caller laid out and filled (``ShmLossBuffer.lay_out``): nothing is
        copied; the result's gradients are the buffer's ``grad_logprobs`` / ``grad_entropy`` views, valid until
        the next call on it. Needs ``config.shm_socket``."""
        if self._shm is None:
            raise RefereeError("grpo_loss_shm needs ClientConfig.shm_socket (REFEREE_GRPO_SHM_SOCKET)")
        return self._shm.call(buffer, options or {})


class AsyncRefereeClient:
    """Async twin of :class:`RefereeClient` (httpx.AsyncClient; a thread per call without httpx)."""

    def __init__(self, config: ClientConfig | None = None, *, max_connections: int = 64) -> None:
        self.config = config or ClientConfig.from_env()
        self._parts = _PartsTransport(self.config)  # used from worker threads: one connection per thread
        self._shm = _ShmTransport(self.config, self._parts) if self.config.shm_socket else None
        self._http: Any = None
        self._sync: RefereeClient | None = None
        if httpx is not None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )
        else:  # pragma: no cover
            self._sync = RefereeClient(self.config)

    async def aclose(self) -> None:
        if self._shm is not None:
            self._shm.close()
        self._parts.close()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRefereeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        idempotent: bool = True,
    ) -> _Response:
        """Async POST with the same retry policy as the sync client."""
        if self._http is None:  # pragma: no cover
            assert self._sync is not None
            return await asyncio.to_thread(
                self._sync.request,
                path,
                body,
                content_type=content_type,
                accept=accept,
                idempotent=idempotent,
            )
        cfg = self.config
        url = cfg.url(path)
        headers = cfg.headers(content_type, accept)
        for attempt in range(cfg.max_retries + 1):
            try:
                r = await self._http.post(url, content=body, headers=headers)
            except Exception as exc:  # noqa: BLE001
                retryable = _is_connect_error(exc) or (idempotent and _is_read_timeout(exc))
                if not retryable or attempt == cfg.max_retries:
                    raise RefereeError(f"POST {url} failed: {exc!r}") from exc
                await asyncio.sleep(_delay(cfg, attempt, None))
                continue
            resp = _Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)
            if resp.status in RETRY_STATUSES and attempt < cfg.max_retries:
                await asyncio.sleep(_delay(cfg, attempt, _retry_after(resp.headers.get("retry-after"))))
                continue
            _raise_for(resp, url)
            return resp
        raise RefereeError(f"POST {url} failed after retries")  # pragma: no cover

    async def post_json(self, path: str, payload: Any, *, idempotent: bool = True) -> Any:
        return (await self.request(path, _encode_json(payload), idempotent=idempotent)).json()

    async def score(
        self, items: Sequence[ScoreItem], weights: Mapping[str, float] | None = None
    ) -> list[ScoreResult]:
        """Async ``POST /score``."""
        payload: dict[str, Any] = {"items": list(items)}
        if weights is not None:
            payload["weights"] = dict(weights)
        results = (await self.post_json("/score", payload))["results"]
        if len(results) != len(items):
            raise RefereeError(f"/score returned {len(results)} results for {len(items)} items")
        return results

    async def grpo_advantages(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return await self.post_json("/grpo/advantages", dict(payload))

    async def grpo_loss(
        self, tensors: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> LossResult:
        """Async ``POST /grpo/loss``: the zero-copy blocking exchange on a worker thread (the loop stays free)."""
        if self._shm is not None:
            return await asyncio.to_thread(self._shm.loss, tensors, options or {})
        parts = loss_request_parts(tensors, options or {})
        url = self.config.url("/grpo/loss")
        headers = self.config.headers(SAFETENSORS_MEDIA_TYPE, SAFETENSORS_MEDIA_TYPE)
        resp = await asyncio.to_thread(
            _with_retries, self.config, url, lambda: self._parts.post(url, parts, headers), True
        )
        res = decode_loss_response(resp.content, resp.headers.get("content-type", ""))
        return dataclasses.replace(res, server_ms=_server_ms(resp.headers))


# -- binary tensor bodies (torch + safetensors imported lazily: adapters never need them) --------


@dataclass(frozen=True)
class LossResult:
    """Answer of ``POST /grpo/loss``: the scalar loss, its metrics, and d loss / d logp per token."""

    loss: float
    metrics: dict[str, Any]
    grad_logprobs: Any  # torch.Tensor, same shape as the request's logprobs
    server_ms: float | None = None  # the service's compute time (Server-Timing), when it says
    grad_entropy: Any = None  # torch.Tensor d loss / d entropy, when the request sent `entropy`


def _server_ms(headers: Mapping[str, str]) -> float | None:
    """``dur`` of the ``compute`` entry of a ``Server-Timing`` header, in ms."""
    for entry in headers.get("server-timing", "").split(","):
        name, *params = (x.strip() for x in entry.split(";"))
        for p in params:
            if name == "compute" and p.startswith("dur="):
                try:
                    return float(p[4:])
                except ValueError:
                    return None
    return None


_WIRE_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def _layout(
    specs: Mapping[str, tuple[Sequence[int], Any]], metadata: Mapping[str, str]
) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """A safetensors header for tensors of these (shape, torch dtype), laid out by descending element size so
    each one is aligned; returns the 8-byte length plus the JSON header (space-padded to 8 bytes, as safetensors
    writes it) and each tensor's (start, end) offsets from the end of the header."""
    import torch

    order = sorted(specs, key=lambda k: (-torch.empty((), dtype=specs[k][1]).element_size(), k))
    header: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    off = 0
    for k in order:
        shape, dtype = specs[k]
        name = _WIRE_NAMES.get(str(dtype).removeprefix("torch."))
        if name is None:
            raise ValueError(f"tensor {k!r}: dtype {dtype} has no safetensors name")
        count = 1
        for d in shape:
            count *= int(d)
        nb = count * torch.empty((), dtype=dtype).element_size()
        header[k] = {"dtype": name, "shape": [int(d) for d in shape], "data_offsets": [off, off + nb]}
        spans[k] = (off, off + nb)
        off += nb
    header["__metadata__"] = dict(metadata)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h, spans


def loss_request_parts(tensors: Mapping[str, Any], options: Mapping[str, Any]) -> list[bytes | memoryview]:
    """A safetensors body (tensors ``logp``, ``old_logp``, ``ref_logp``, ``advantages``, ``mask``, ``entropy``; the JSON
    options in the metadata key ``"options"``; the service's wire format, ``service/grpo/wire.py``) as
    pieces to send back to back: the header, then a byte view of each tensor's own memory (no copy of a
    contiguous CPU tensor). Tensors are laid out by descending element size, so each one is aligned.
    ``None`` values are left out; the mask should be bool or uint8 (1 byte a token, not a float).
    """
    import torch

    ts = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if v is not None}
    head, spans = _layout(
        {k: (t.shape, t.dtype) for k, t in ts.items()}, {"options": json.dumps(dict(options))}
    )
    order = sorted(ts, key=lambda k: spans[k][0])
    return [head] + [ts[k].reshape(-1).view(torch.uint8).numpy().data for k in order if ts[k].numel()]


def encode_loss_request(tensors: Mapping[str, Any], options: Mapping[str, Any]) -> bytes:
    """:func:`loss_request_parts` joined into one ``bytes`` (one copy), for transports that need that."""
    return b"".join(loss_request_parts(tensors, options))


def decode_loss_response(content: bytes | memoryview, content_type: str) -> LossResult:
    """Read a loss answer: safetensors (tensor ``grad_logprobs``; metadata ``loss`` and ``metrics`` as
    JSON, ``null`` for a non-finite value) or the JSON form.

    A writable buffer (what :class:`RefereeClient` reads a binary answer into) is used in place, so the
    gradient is a view of it; a read-only ``bytes`` body is copied once.
    """
    import torch

    if content_type.startswith(SAFETENSORS_MEDIA_TYPE):
        view = memoryview(content).cast("B")
        (n,) = struct.unpack("<Q", view[:8])
        header = json.loads(bytes(view[8 : 8 + n]))
        meta = header.get("__metadata__", {}) or {}
        metrics = json.loads(meta.get("metrics", "{}"))
        grad = _tensor_in(view, 8 + n, header["grad_logprobs"])
        grad_h = _tensor_in(view, 8 + n, header["grad_entropy"]) if "grad_entropy" in header else None
        return LossResult(_num(json.loads(meta["loss"])), metrics, grad, grad_entropy=grad_h)
    data = json.loads(bytes(content))
    grad_h = data.get("grad_entropy")
    return LossResult(
        _num(data["loss"]),
        data.get("metrics", {}),
        torch.tensor(data["grad_logprobs"]),
        grad_entropy=None if grad_h is None else torch.tensor(grad_h),
    )


def _tensor_in(view: memoryview, data_start: int, info: Mapping[str, Any]) -> Any:
    """One safetensors tensor of `view` as a torch view of it (copied if the buffer is read-only or the
    tensor is misaligned)."""
    import torch

    dtype = {v: getattr(torch, k) for k, v in _WIRE_NAMES.items()}[info["dtype"]]
    b0, b1 = info["data_offsets"]
    count = (b1 - b0) // torch.empty((), dtype=dtype).element_size()
    start = data_start + b0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only buffer: copied right below
        flat = torch.frombuffer(view, dtype=dtype, count=count, offset=start) if count else None
    if flat is None:
        flat = torch.empty(0, dtype=dtype)
    elif view.readonly or start % flat.element_size():
        flat = flat.clone()
    return flat.reshape(info["shape"])


# -- shared memory (same host): the tensors stay in a sealed memfd the service has mapped -----------------


class ShmLossBuffer:
    """A sealed memfd that holds one ``/grpo/loss`` request as a safetensors file, mapped here and (once
    registered) in the service: the trainer writes the inputs into ``tensors``, the service writes the gradients
    into ``tensors["grad_logprobs"]`` (and ``"grad_entropy"``). Linux only.

    The memfd is sealed against shrinking and growing (the service maps only such buffers: a file that shrinks
    under a mapping faults its reader), so its ``capacity`` is fixed; ``lay_out`` places any set of tensors
    that fits. Do not touch the tensors while a call on this buffer is in flight.
    """

    def __init__(self, capacity: int) -> None:
        import fcntl
        import mmap

        import torch

        self.capacity = max(int(capacity), 4096)
        self.fd = os.memfd_create("referee-grpo", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, self.capacity)
            fcntl.fcntl(
                self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
            )
            self._mm = mmap.mmap(self.fd, self.capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except OSError:
            os.close(self.fd)
            raise
        self._bytes = torch.frombuffer(memoryview(self._mm), dtype=torch.uint8)
        self.tensors: dict[str, Any] = {}
        self.registered: dict[int, str] = {}  # channel serial -> the id the service gave this buffer there

    @staticmethod
    def size_for(specs: Mapping[str, tuple[Sequence[int], Any]]) -> int:
        """Bytes a layout of these (shape, dtype) needs, outputs included (see ``lay_out``)."""
        return _plan(specs).size

    def lay_out(self, specs: Mapping[str, tuple[Sequence[int], Any]]) -> dict[str, Any]:
        """Write a safetensors header for tensors of these (shape, torch dtype), with ``grad_logprobs`` (float32,
        logp's shape) and, when ``entropy`` is there, ``grad_entropy`` added unless given; returns the tensors as
        views of the buffer (also kept in ``tensors``). Raises ValueError when they do not fit."""
        return self._write(_plan(specs))

    def _write(self, plan: _Plan) -> dict[str, Any]:
        import torch

        if plan.size > self.capacity:
            raise ValueError(f"the layout needs {plan.size} bytes; this buffer holds {self.capacity}")
        head = len(plan.header)
        self._bytes[:head] = torch.frombuffer(bytearray(plan.header), dtype=torch.uint8)
        views: dict[str, Any] = {}
        for k, (b0, b1) in plan.spans.items():
            shape, dtype = plan.specs[k]
            views[k] = self._bytes[head + b0 : head + b1].view(dtype).reshape(tuple(shape))
        self.tensors = views
        return views

    def close(self) -> None:
        self.tensors = {}
        self._bytes = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:  # a tensor view is still alive: the mapping goes with it
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ShmLossBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Plan:
    """A loss buffer's layout: every tensor's (shape, dtype), outputs included, the safetensors header and each
    tensor's byte span after it, and the bytes it all needs."""

    specs: dict[str, tuple[Sequence[int], Any]]
    header: bytes
    spans: dict[str, tuple[int, int]]

    @property
    def size(self) -> int:
        return len(self.header) + max((e for _, e in self.spans.values()), default=0)


def _plan(specs: Mapping[str, tuple[Sequence[int], Any]]) -> _Plan:
    import torch

    full = dict(specs)
    if "logp" not in full:
        raise ValueError("a loss buffer needs logp")
    full.setdefault("grad_logprobs", (full["logp"][0], torch.float32))
    if "entropy" in full:
        full.setdefault("grad_entropy", (full["entropy"][0], torch.float32))
    header, spans = _layout(full, {})
    return _Plan(full, header, spans)


_channel_serials = itertools.count()


class ShmChannelBroken(RefereeError):
    """The registration socket failed or was closed by the service (it restarted): reconnect and register again."""


class ShmChannel:
    """One connection to the service's registration socket (``SOCK_SEQPACKET``); buffers registered on it stay
    mapped in the service until it closes (``service/grpo/shm.py`` has the protocol)."""

    def __init__(self, path: str, timeout: float = 300.0, connect_timeout: float = 10.0) -> None:
        self.path = path
        self.serial = next(_channel_serials)
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise RefereeError(f"cannot reach the shared-memory socket {path}: {e}") from e
        self._sock.settimeout(timeout)  # a loss call waits for its compute

    def register(self, buf: ShmLossBuffer) -> str:
        """The service's id for ``buf`` on this channel (registered on first use)."""
        known = buf.registered.get(self.serial)
        if known is not None:
            return known
        answer = self._ask({"op": "register"}, [buf.fd])
        if "buffer" not in answer:
            raise RefereeError(f"the service refused the shared-memory buffer: {answer.get('error')}")
        buf.registered[self.serial] = answer["buffer"]
        return answer["buffer"]

    def release(self, buf: ShmLossBuffer) -> None:
        """Let the service unmap ``buf`` now (it would when this channel closes)."""
        known = buf.registered.pop(self.serial, None)
        if known is not None:
            self._ask({"op": "release", "buffer": known}, [])

    def ping(self) -> int:
        """A round trip that does no work: the number of buffers the service holds for this channel (raises
        ``ShmChannelBroken`` when the socket is gone)."""
        return int(self._ask({"op": "ping"}, [])["buffers"])

    def loss(self, buffer_id: str, options: Mapping[str, Any], token: str | None) -> dict[str, Any]:
        """One loss call on this connection (``{"op": "loss"}``): the answer, or `RefereeError` with the status
        code the HTTP form would give."""
        message: dict[str, Any] = {"op": "loss", "buffer": buffer_id, "options": dict(options)}
        if token:
            message["token"] = token
        answer = self._ask(message, [])
        if "error" in answer:
            detail = answer["error"]
            raise RefereeError(
                f"shared-memory loss call: {answer.get('status')} {detail}",
                status_code=answer.get("status"),
                body=json.dumps(detail),
            )
        return answer

    def _ask(self, message: Mapping[str, Any], fds: list[int]) -> dict[str, Any]:
        with self._lock:
            try:
                socket.send_fds(self._sock, [json.dumps(message).encode()], fds)
                reply = self._sock.recv(1 << 16)
            except OSError as e:
                raise ShmChannelBroken(f"shared-memory socket {self.path}: {e}") from e
        if not reply:
            raise ShmChannelBroken(f"the service closed the shared-memory socket {self.path}")
        return json.loads(reply)

    def close(self) -> None:
        self._sock.close()


class _ShmTransport:
    """``grpo_loss`` through shared memory: per thread, one buffer that grows as requests do (a new, larger memfd
    registered in its place); the tensors are copied into it, and the gradient copied out (so it outlives the
    next call). On a 404 (the service restarted and forgot the buffer) it reconnects and registers again, once."""

    def __init__(self, config: ClientConfig, parts: _PartsTransport) -> None:
        assert config.shm_socket
        self.config = config
        self.parts = parts
        self._local = threading.local()
        self._lock = threading.Lock()
        self._channel: ShmChannel | None = None
        self._buffers: list[ShmLossBuffer] = []

    def channel(self, fresh: bool = False) -> ShmChannel:
        with self._lock:
            if fresh and self._channel is not None:
                self._channel.close()
                self._channel = None
            if self._channel is None:
                self._channel = ShmChannel(
                    self.config.shm_socket or "", self.config.timeout, self.config.connect_timeout
                )
            return self._channel

    def buffer_for(self, need: int) -> ShmLossBuffer:
        """This thread's buffer, replaced by a larger one when it holds fewer than `need` bytes."""
        buf: ShmLossBuffer | None = getattr(self._local, "buffer", None)
        if buf is None or buf.capacity < need:
            if buf is not None:
                self.retire(buf)
            buf = ShmLossBuffer(need + need // 4)  # room for the next, slightly longer batch
            self._local.buffer = buf
            with self._lock:
                self._buffers.append(buf)
        return buf

    def retire(self, buf: ShmLossBuffer) -> None:
        with self._lock:
            channel = self._channel
            self._buffers = [b for b in self._buffers if b is not buf]
        if channel is not None:
            with contextlib.suppress(RefereeError):
                channel.release(buf)
        buf.close()

    def loss(self, tensors: Mapping[str, Any], options: Mapping[str, Any]) -> LossResult:
        ts = {k: v.detach() for k, v in tensors.items() if v is not None}
        plan = _plan({k: (t.shape, t.dtype) for k, t in ts.items()})
        buf = self.buffer_for(plan.size)
        views = buf._write(plan)
        for k, t in ts.items():
            views[k].copy_(t)
        res = self.call(buf, options)
        grad_h = None if res.grad_entropy is None else res.grad_entropy.clone()
        return dataclasses.replace(res, grad_logprobs=res.grad_logprobs.clone(), grad_entropy=grad_h)

    def call(self, buf: ShmLossBuffer, options: Mapping[str, Any]) -> LossResult:
        """One loss call on a laid-out buffer (over the socket or HTTP, ``config.shm_calls``); the gradients in
        the result are views of the buffer."""
        for attempt in range(2):
            channel = self.channel(fresh=attempt > 0)
            try:
                data, server_ms = self._send(channel, channel.register(buf), options)
            except RefereeError as e:
                # 404: the service lost the registration (it restarted); a broken socket: the same
                if attempt == 0 and (e.status_code == 404 or isinstance(e, ShmChannelBroken)):
                    continue  # reconnect and register again, once (the call is idempotent)
                raise
            grad_h = buf.tensors.get("grad_entropy") if "grad_entropy" in data.get("written", ()) else None
            return LossResult(
                _num(data["loss"]),
                data.get("metrics", {}),
                buf.tensors["grad_logprobs"],
                server_ms=server_ms,
                grad_entropy=grad_h,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, channel: ShmChannel, buffer_id: str, options: Mapping[str, Any]
    ) -> tuple[dict[str, Any], float | None]:
        if self.config.shm_calls == "socket":
            data = channel.loss(buffer_id, options, self.config.token)
            return data, data.get("compute_ms")
        url = self.config.url("/grpo/loss")
        headers = self.config.headers(SHM_MEDIA_TYPE, "application/json")
        body: Parts = [_encode_json({"buffer": buffer_id, "options": dict(options)})]
        resp = _with_retries(self.config, url, functools.partial(self.parts.post, url, body, headers), True)
        return resp.json(), _server_ms(resp.headers)

    def close(self) -> None:
        with self._lock:
            buffers, self._buffers = self._buffers, []
            if self._channel is not None:
                self._channel.close()
                self._channel = None
        for b in buffers:
            b.close()


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


_shared: dict[tuple[int, str, str | None], RefereeClient] = {}
_shared_async: dict[tuple[int, str, str | None, int], AsyncRefereeClient] = {}


def shared_client() -> RefereeClient:
    """The process's pooled client for the service named by ``REFEREE_URL`` / ``REFEREE_API_TOKEN``.

    Keyed by pid as well: verl's prime manager forks workers, which must not share sockets. The
    environment is read on every call, so a changed ``REFEREE_URL`` gets its own client.
    """
    cfg = ClientConfig.from_env()
    key = (os.getpid(), cfg.base_url, cfg.token)
    if key not in _shared:
        _shared[key] = RefereeClient(cfg)
    return _shared[key]


def shared_async_client() -> AsyncRefereeClient:
    """Like ``shared_client``, one per event loop: an async HTTP client is bound to the loop that first uses it."""
    import asyncio

    cfg = ClientConfig.from_env()
    key = (os.getpid(), cfg.base_url, cfg.token, id(asyncio.get_running_loop()))
    if key not in _shared_async:
        _shared_async[key] = AsyncRefereeClient(cfg)
    return _shared_async[key]
