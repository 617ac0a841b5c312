"""The shared-memory channel of /grpo/loss: a real Unix socket, real sealed memfds, the real app under uvicorn,
and the trainer's client on both sides of it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi import FastAPI

from service.config import Settings
from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.shm import ShmError, ShmListener, ShmRegistry, _clear_stale_socket
from service.main import create_app, open_shm_channel
from service.routes.grpo import router, socket_loss
from tests.trainer.fake_referee import FakeReferee
from trainer.client import (
    SHM_MEDIA_TYPE,
    AsyncRefereeClient,
    ClientConfig,
    RefereeClient,
    RefereeError,
    ShmChannel,
    ShmChannelBroken,
    ShmLossBuffer,
)

OPTS = [
    {"flavor": "verl", "use_kl_loss": True, "kl_loss_coef": 0.01, "entropy_coeff": 0.01},
    {"flavor": "trl", "loss_type": "grpo", "beta": 0.04, "importance_sampling_level": "sequence"},
    {"flavor": "trl", "loss_type": "cispo", "epsilon_high": 5.0},  # not a fused config: the torch path
]


def batch(
    seed: int = 0, b: int = 6, t: int = 40, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g) * 2
    lens = torch.randint(0, t + 1, (b,), generator=g)
    return {
        "logp": lp.to(dtype),
        "old_logp": (lp + torch.randn(b, t, generator=g) * 0.2).to(dtype),
        "ref_logp": (lp + torch.randn(b, t, generator=g) * 0.2).to(dtype),
        "advantages": torch.randn(b, generator=g),
        "mask": torch.arange(t)[None] < lens[:, None],
        "entropy": torch.rand(b, t, generator=g).to(dtype),
    }


@pytest.fixture(scope="module")
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="referee-shm-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def live(sock_dir: Path) -> Iterator[tuple[FakeReferee, ShmListener]]:
    """The GRPO routes under uvicorn with a listening channel (the full app's wiring has its own test)."""
    app = FastAPI()
    app.include_router(router)
    on_loss = functools.partial(socket_loss, app.state, None)
    listener = ShmListener(sock_dir / "grpo.sock", ShmRegistry(max_bytes=64 << 20), on_loss=on_loss)
    listener.start()
    app.state.grpo_shm = listener.registry
    with FakeReferee(app) as server:
        yield server, listener
    listener.close()


CALLS = ["socket", "http"]  # how a shared-memory call reaches the service: the same answers either way


def shm_client(live: tuple[FakeReferee, ShmListener], calls: str = "socket") -> RefereeClient:
    server, listener = live
    config = ClientConfig(base_url=server.url, max_retries=0, shm_socket=str(listener.path), shm_calls=calls)  # type: ignore[arg-type]
    return RefereeClient(config)


def wait_for(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("calls", CALLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("opts", OPTS)
def test_shared_memory_answers_exactly_what_the_http_body_answers(live, opts, dtype, calls):
    ts = batch(dtype=dtype)
    if "entropy_coeff" not in opts:
        ts.pop("entropy")
    body = RefereeClient(ClientConfig(base_url=live[0].url, max_retries=0))
    with shm_client(live, calls) as shm, body:
        want = body.grpo_loss(ts, opts)
        got = shm.grpo_loss(ts, opts)
    assert got.loss == want.loss and got.metrics == want.metrics
    assert torch.equal(got.grad_logprobs, want.grad_logprobs) and got.grad_logprobs.dtype == torch.float32
    if "entropy" in ts:
        assert torch.equal(got.grad_entropy, want.grad_entropy)
    else:
        assert got.grad_entropy is None
    assert got.server_ms is not None and got.server_ms >= 0


@pytest.mark.parametrize("calls", CALLS)
def test_in_place_buffer_is_filled_by_the_service_and_nothing_else_moves(live, calls):
    ts = batch(seed=1)
    ts.pop("entropy")
    opts = {"flavor": "trl", "loss_type": "dapo"}
    want = compute_loss(
        *(ts[k] for k in ("logp", "old_logp", "ref_logp", "advantages", "mask")), TrlLossConfig()
    )
    specs = {k: (v.shape, v.dtype) for k, v in ts.items()}
    with shm_client(live, calls) as client, ShmLossBuffer(ShmLossBuffer.size_for(specs)) as buf:
        views = buf.lay_out(specs)
        assert set(views) == set(ts) | {"grad_logprobs"}
        for k, v in ts.items():
            views[k].copy_(v)
        views["grad_logprobs"].fill_(float("nan"))  # every element must be written, masked ones as 0
        res = client.grpo_loss_shm(buf, opts)
        assert res.grad_logprobs.data_ptr() == views["grad_logprobs"].data_ptr()  # a view: no copy
        assert torch.equal(views["grad_logprobs"], want.grad)
        assert torch.equal(views["logp"], ts["logp"])  # inputs untouched
        assert res.loss == pytest.approx(float(want.loss), abs=0)
        # the trainer writes new log-probs in place; the next call sees them
        views["logp"].sub_(0.05)
        again = client.grpo_loss_shm(buf, opts)
        moved = compute_loss(
            views["logp"].clone(), ts["old_logp"], None, ts["advantages"], ts["mask"], TrlLossConfig()
        )
        assert again.loss == float(moved.loss) and again.loss != res.loss


def test_kernel_and_torch_paths_write_into_grad_out():
    ts = batch(seed=2)
    args = [ts[k] for k in ("logp", "old_logp", "ref_logp", "advantages", "mask")]
    cfg = VerlLossConfig(use_kl_loss=True)
    want = compute_loss(*args, cfg)
    for native in (True, False):  # the kernel writes into it, the torch path is copied into it
        out32 = torch.full_like(want.grad, float("nan"))
        got = compute_loss(*args, cfg, native=native, grad_out=out32)
        alone = compute_loss(*args, cfg, native=native)
        assert got.grad is out32 and torch.equal(out32, alone.grad) and float(got.loss) == float(alone.loss)
    out64 = torch.zeros(want.grad.shape, dtype=torch.float64)  # another dtype: a cast copy into it
    assert compute_loss(*args, cfg, grad_out=out64).grad is out64 and torch.equal(out64, want.grad.double())
    with pytest.raises(ValueError, match="grad_out has shape"):
        compute_loss(*args, cfg, grad_out=torch.zeros(2, 2))


def raw_call(path: Path, message: dict | bytes, fds: list[int] | None = None) -> dict:
    """One message on a fresh connection to the socket, its answer."""
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(str(path))
        socket.send_fds(s, [raw], fds or [])
        return json.loads(s.recv(1 << 16))


def raw_register(path: Path, fds: list[int], message: bytes = b'{"op": "register"}') -> dict:
    return raw_call(path, message, fds)


def memfd(size: int = 4096, seals: int = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW) -> int:
    fd = os.memfd_create("t", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def test_registration_refuses_what_could_fault_or_not_be_written(live, tmp_path):
    path = live[1].path
    before = len(live[1].registry)
    plain = tmp_path / "f"
    plain.write_bytes(b"\0" * 4096)
    cases = {
        "F_SEAL_SHRINK": memfd(seals=0),  # could shrink under the mapping: SIGBUS
        "F_SEAL_GROW": memfd(seals=fcntl.F_SEAL_SHRINK),
        "sealed against writes": memfd(seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE),
        "not a memfd": os.open(plain, os.O_RDWR),
        "empty": memfd(size=0),
        "are left": memfd(size=65 << 20),
    }
    try:  # huge pages: a touch that finds the pool empty faults instead of failing
        hugetlb = os.memfd_create("h", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | os.MFD_HUGETLB)
        os.ftruncate(hugetlb, 2 << 20)
        fcntl.fcntl(hugetlb, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        cases["MFD_HUGETLB"] = hugetlb
    except OSError:  # a kernel without hugetlbfs: nothing to refuse
        pass
    try:
        for why, fd in cases.items():
            assert why in raw_register(path, [fd])["error"], why
        assert "exactly one memfd" in raw_register(path, [])["error"]
        assert "exactly one memfd" in raw_register(path, [cases["empty"], cases["empty"]])["error"]
        assert "op" in raw_register(path, [], b"not json")["error"]
        assert '"ping"' in raw_call(path, {"op": "pong"})["error"]  # the refusal lists every message
        ok = raw_register(path, [memfd()])
        assert len(ok["buffer"]) == 32 and ok["size"] == 4096
    finally:
        for fd in cases.values():
            os.close(fd)
    # the connection that registered it closed: its buffer is gone, and nothing else was registered
    assert wait_for(lambda: len(live[1].registry) == before)


def test_buffers_live_as_long_as_their_connection_and_release_frees_them(live):
    registry = live[1].registry
    before, mapped = len(registry), registry.mapped_bytes
    channel = ShmChannel(str(live[1].path))
    a, b = ShmLossBuffer(1 << 16), ShmLossBuffer(1 << 16)
    assert channel.ping() == 0
    ida, idb = channel.register(a), channel.register(b)
    assert ida != idb and channel.register(a) == ida  # registered once per channel
    assert len(registry) == before + 2 and registry.mapped_bytes == mapped + 2 * (1 << 16)
    other = ShmChannel(str(live[1].path))
    assert channel.ping() == 2 and other.ping() == 0  # counted per connection
    other.close()
    channel.release(a)
    assert channel.ping() == 1
    assert len(registry) == before + 1
    with pytest.raises(ShmError, match="register it again"):
        registry.get(ida)
    channel.close()
    assert wait_for(lambda: len(registry) == before and registry.mapped_bytes == mapped)
    a.close()
    b.close()


def test_buffer_count_is_capped(sock_dir):
    listener = ShmListener(sock_dir / "few.sock", ShmRegistry(max_bytes=1 << 30, max_buffers=2))
    listener.start()
    try:
        channel = ShmChannel(str(listener.path))
        bufs = [ShmLossBuffer(4096) for _ in range(3)]
        channel.register(bufs[0])
        channel.register(bufs[1])
        with pytest.raises(RefereeError, match="2 buffers are registered already"):
            channel.register(bufs[2])
        channel.release(bufs[1])
        channel.register(bufs[2])
        channel.close()
        for b in bufs:
            b.close()
    finally:
        listener.close()


def test_mapped_bytes_are_capped(sock_dir):
    listener = ShmListener(sock_dir / "small.sock", ShmRegistry(max_bytes=3 << 16))
    listener.start()
    try:
        channel = ShmChannel(str(listener.path))
        bufs = [ShmLossBuffer(1 << 16) for _ in range(4)]
        for b in bufs[:3]:
            channel.register(b)
        with pytest.raises(RefereeError, match="REFEREE_GRPO_SHM_MAX_BYTES"):
            channel.register(bufs[3])
        channel.release(bufs[0])
        channel.register(bufs[3])  # room again
        channel.close()
        for b in bufs:
            b.close()
    finally:
        listener.close()
    assert not listener.path.exists()


def write_header(buf: ShmLossBuffer, header: dict) -> None:
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    data = struct.pack("<Q", len(raw)) + raw
    buf._bytes[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)


@pytest.mark.parametrize("calls", CALLS)
def test_bad_layouts_are_4xx_and_the_service_keeps_serving(live, calls):
    n = 2 * 4 * 4  # a (2, 4) float32
    good = {
        "logp": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, n]},
        "advantages": {"dtype": "F32", "shape": [2], "data_offsets": [n, n + 8]},
        "grad_logprobs": {"dtype": "F32", "shape": [2, 4], "data_offsets": [n + 8, 2 * n + 8]},
    }
    bad = {
        "must hold an output tensor grad_logprobs": {k: v for k, v in good.items() if k != "grad_logprobs"},
        "overlap": {**good, "grad_logprobs": {"dtype": "F32", "shape": [2, 4], "data_offsets": [4, n + 4]}},
        "floating point": {
            **good,
            "grad_logprobs": {"dtype": "I32", "shape": [2, 4], "data_offsets": [n + 8, 2 * n + 8]},
        },
        "has shape": {
            **good,
            "grad_logprobs": {"dtype": "F32", "shape": [8], "data_offsets": [n + 8, 2 * n + 8]},
        },
        "aligned": {
            **good,
            "grad_logprobs": {"dtype": "F32", "shape": [2, 4], "data_offsets": [n + 9, 2 * n + 9]},
        },
        "data offsets": {**good, "logp": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 1 << 20]}},
        "entropy": {
            **good,
            "grad_entropy": {"dtype": "F32", "shape": [2, 4], "data_offsets": [2 * n + 8, 3 * n + 8]},
        },
        "tensors must be": {
            **good,
            "extra": {"dtype": "F32", "shape": [1], "data_offsets": [3 * n, 3 * n + 4]},
        },
    }
    with shm_client(live, calls) as client, ShmLossBuffer(4096) as buf:
        for why, header in bad.items():
            write_header(buf, header)
            with pytest.raises(RefereeError, match=why) as e:
                client.grpo_loss_shm(buf, {"flavor": "trl"})
            assert e.value.status_code in (400, 422), why
        views = buf.lay_out({"logp": ((2, 4), torch.float32), "advantages": ((2,), torch.float32)})
        views["logp"].fill_(-1.0)
        views["advantages"].fill_(1.0)
        res = client.grpo_loss_shm(buf, {"flavor": "trl"})
        assert res.grad_logprobs.shape == (2, 4) and bool((res.grad_logprobs < 0).all())
        # the options are validated as in the other forms
        with pytest.raises(RefereeError, match="do not belong to flavor") as e:
            client.grpo_loss_shm(buf, {"flavor": "trl", "clip_ratio_c": 3.0})
        assert e.value.status_code == 422


def test_malformed_requests_and_a_service_without_the_channel(live):
    import httpx

    url = live[0].url + "/grpo/loss"
    headers = {"content-type": SHM_MEDIA_TYPE}
    for body in (b"{", b'{"buffer": "../../etc/passwd"}', b'{"buffer": "' + b"a" * 32 + b'", "x": 1}'):
        assert httpx.post(url, content=body, headers=headers).status_code == 422
    r = httpx.post(url, content=json.dumps({"buffer": "f" * 32}), headers=headers)
    assert r.status_code == 404 and "register it again" in r.json()["detail"]
    nan = json.dumps({"buffer": "f" * 32, "options": {"flavor": "trl", "beta": float("nan")}})
    r = httpx.post(url, content=nan, headers=headers)  # strict JSON, as on the socket: 422 before the lookup
    assert r.status_code == 422 and "strict JSON" in r.json()["detail"]
    off = FastAPI()
    off.include_router(router)
    with FakeReferee(off) as server:
        r = httpx.post(server.url + "/grpo/loss", content=json.dumps({"buffer": "f" * 32}), headers=headers)
    assert r.status_code == 409 and "REFEREE_GRPO_SHM_SOCKET" in r.json()["detail"]


@pytest.mark.parametrize("calls", CALLS)
def test_client_registers_again_after_the_service_forgets_and_grows_its_buffer(live, calls):
    registry = live[1].registry
    before = len(registry)
    with shm_client(live, calls) as client:
        small = batch(seed=3, b=2, t=8)
        first = client.grpo_loss(small, OPTS[0])
        assert len(registry) == before + 1
        for buffer_id in list(registry._buffers):  # what a restarted service knows: nothing
            registry.drop(buffer_id)
        again = client.grpo_loss(small, OPTS[0])  # 404, then a fresh channel and registration
        assert again.loss == first.loss and len(registry) == 1
        big = batch(seed=4, b=16, t=300)
        want = RefereeClient(ClientConfig(base_url=live[0].url, max_retries=0)).grpo_loss(big, OPTS[0])
        got = client.grpo_loss(big, OPTS[0])  # a larger memfd replaces the small one, which is released
        assert torch.equal(got.grad_logprobs, want.grad_logprobs)
        assert wait_for(lambda: len(registry) == 1)
        # the copied-out gradient outlives the next call
        kept = got.grad_logprobs
        client.grpo_loss(batch(seed=5, b=16, t=300), OPTS[0])
        assert torch.equal(kept, want.grad_logprobs)
    assert wait_for(lambda: len(registry) == 0)
    for buffer_id in list(registry._buffers):
        registry.drop(buffer_id)


def test_async_client_uses_the_channel(live):
    ts = batch(seed=6)
    cfg = ClientConfig(base_url=live[0].url, max_retries=0, shm_socket=str(live[1].path))

    async def go() -> list:
        async with AsyncRefereeClient(cfg) as client:
            return await asyncio.gather(*(client.grpo_loss(ts, o) for o in OPTS))

    want = [RefereeClient(ClientConfig(base_url=live[0].url, max_retries=0)).grpo_loss(ts, o) for o in OPTS]
    for got, w in zip(asyncio.run(go()), want, strict=True):  # concurrent calls: one buffer per thread
        assert got.loss == w.loss and torch.equal(got.grad_logprobs, w.grad_logprobs)


def test_client_without_a_socket_or_with_a_wrong_one(live, sock_dir):
    with RefereeClient(ClientConfig(base_url=live[0].url)) as client, ShmLossBuffer(4096) as buf:
        with pytest.raises(RefereeError, match="shm_socket"):
            client.grpo_loss_shm(buf)
    cfg = ClientConfig(base_url=live[0].url, max_retries=0, shm_socket=str(sock_dir / "nobody.sock"))
    with RefereeClient(cfg) as client, pytest.raises(RefereeError, match="cannot reach"):
        client.grpo_loss(batch(), OPTS[1])


def test_socket_path_stale_live_or_taken(sock_dir, tmp_path):
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(str(stale))
    s.close()  # a service that died: the file stays, nobody listens
    listener = ShmListener(stale, ShmRegistry(1 << 20))
    listener.start()
    try:
        assert stale.stat().st_mode & 0o777 == 0o660
        with pytest.raises(ShmError, match="another service"):
            _clear_stale_socket(stale)
    finally:
        listener.close()
    taken = tmp_path / "file"
    taken.write_text("mine")
    with pytest.raises(ShmError, match="not a socket"):
        _clear_stale_socket(taken)
    assert taken.read_text() == "mine"
    with pytest.raises(ShmError, match="cannot listen"):
        ShmListener(tmp_path / "no" / "such" / "dir.sock", ShmRegistry(1 << 20)).start()
    with pytest.raises(RuntimeError, match="REFEREE_WORKERS=1"):
        open_shm_channel(Settings(workers=2, grpo_shm_socket=str(tmp_path / "w.sock")))  # type: ignore[call-arg]
    assert open_shm_channel(Settings()) is None  # type: ignore[call-arg]


def test_the_app_opens_the_channel_from_its_settings(tmp_path):
    import httpx

    path = tmp_path / "app.sock"
    settings = Settings(pool_size=1, sandbox_backend="none", grpo_shm_socket=str(path))  # type: ignore[call-arg]
    ts = batch(seed=7)
    with FakeReferee(create_app(settings)) as server:
        assert path.exists()
        cfg = ClientConfig(base_url=server.url, max_retries=0, shm_socket=str(path))
        with RefereeClient(cfg) as client:
            got = client.grpo_loss(ts, OPTS[1])
            text = httpx.get(server.url + "/metrics").text  # the client's buffer is registered while it lives
            assert "referee_grpo_shm_buffers 1.0" in text
            mapped = [ln for ln in text.splitlines() if ln.startswith("referee_grpo_shm_mapped_bytes ")]
            assert mapped and float(mapped[0].split()[1]) >= ShmLossBuffer.size_for(
                {k: (v.shape, v.dtype) for k, v in ts.items()}
            )
        want = RefereeClient(ClientConfig(base_url=server.url, max_retries=0)).grpo_loss(ts, OPTS[1])
        assert torch.equal(got.grad_logprobs, want.grad_logprobs)
    assert not path.exists()  # the lifespan closed the channel


def test_the_trainer_trains_the_same_over_shared_memory(live, tmp_path):
    """`referee train`'s HTTP engine with REFEREE_GRPO_SHM_SOCKET set: the same run, step for step, as over the
    binary body (the gradients are bit-identical, so the whole trajectory is)."""
    from trainer.engine import GRPOOptions, HttpEngine
    from trainer.loop import LocalToyScorer, TrainConfig, train

    runs = []
    for shm in (False, True):
        cfg = TrainConfig(
            steps=2, prompts_per_step=2, group_size=4, out_dir=str(tmp_path / str(shm)), options=GRPOOptions()
        )
        config = ClientConfig(
            base_url=live[0].url, max_retries=0, shm_socket=str(live[1].path) if shm else None
        )
        before = len(live[1].registry)
        with RefereeClient(config) as client:
            runs.append(train(cfg, scorer=LocalToyScorer(), engine=HttpEngine(client, cfg.options)))
            assert len(live[1].registry) == before + shm  # the shared-memory run did go through a buffer
    body, shm = runs
    assert [(s.loss, s.reward, s.kl, s.clip_ratio) for s in body] == [
        (s.loss, s.reward, s.kl, s.clip_ratio) for s in shm
    ]


def test_socket_calls_refuse_what_the_http_form_refuses(live):
    path = live[1].path
    unknown = raw_call(path, {"op": "loss", "buffer": "f" * 32, "options": {}})
    assert unknown["status"] == 404 and "register it again" in unknown["error"]
    bad_id = raw_call(path, {"op": "loss", "buffer": "../../etc/passwd"})
    assert bad_id["status"] == 422
    nan = json.dumps({"op": "loss", "buffer": "a" * 32, "options": {"beta": float("nan")}}).encode()
    refused = raw_call(path, nan)  # Python's json writes NaN; strict JSON has none, as over HTTP
    assert refused["status"] == 422 and "strict" in refused["error"]
    extra = raw_call(path, {"op": "loss", "buffer": "a" * 32, "surprise": 1})
    assert extra["status"] == 422 and "surprise" in json.dumps(extra["error"])
    fd = memfd()
    try:
        assert raw_call(path, {"op": "loss", "buffer": "a" * 32}, [fd])["status"] == 400  # no descriptors
    finally:
        os.close(fd)
    long = json.dumps({"op": "loss", "buffer": "a" * 32, "options": {"pad": "x" * 20000}}).encode()
    assert raw_call(path, long)["status"] == 413  # cut by the datagram size: refused, never half-read


def test_a_repeated_socket_call_reuses_its_checks_and_nothing_else(live):
    """The last checked call is kept on its buffer: the same message on the same layout skips the checks; new
    options, a new layout or a message the checks refuse must each take the full path."""
    ts = batch(seed=3)
    ts.pop("entropy")
    names = ("logp", "old_logp", "ref_logp", "advantages", "mask")
    specs = {k: (v.shape, v.dtype) for k, v in ts.items()}
    registry = live[1].registry
    channel = ShmChannel(str(live[1].path))
    with contextlib.closing(channel), ShmLossBuffer(ShmLossBuffer.size_for(specs)) as buf:
        views = buf.lay_out(specs)
        for k, v in ts.items():
            views[k].copy_(v)
        buffer_id = channel.register(buf)
        served = registry.get(buffer_id)
        opts = {"flavor": "trl", "loss_type": "grpo", "beta": 0.04}
        first = channel.loss(buffer_id, opts, None)
        memo = served.checked_call
        assert memo is not None
        views["logp"].sub_(0.1)  # new values, same layout: the kept job reads them
        second = channel.loss(buffer_id, opts, None)
        assert served.checked_call is memo
        want = compute_loss(*(views[k].clone() for k in names), TrlLossConfig(loss_type="grpo", beta=0.04))
        assert second["loss"] == float(want.loss) != first["loss"]
        assert torch.equal(views["grad_logprobs"], want.grad)

        other = {**opts, "beta": 0.5}  # other options: checked again, not the kept config
        third = channel.loss(buffer_id, other, None)
        want = compute_loss(*(views[k].clone() for k in names), TrlLossConfig(loss_type="grpo", beta=0.5))
        assert third["loss"] == float(want.loss) and served.checked_call is not memo

        with pytest.raises(RefereeError) as refused:  # the checks still run for what they refuse
            channel.loss(buffer_id, {**other, "loss_type": "nope"}, None)
        assert refused.value.status_code == 422
        wrong = raw_call(live[1].path, {"op": "loss", "buffer": buffer_id, "options": other, "surprise": 1})
        assert wrong["status"] == 422
        assert (
            raw_call(live[1].path, {"op": "loss", "buffer": [buffer_id], "options": other})["status"] == 422
        )

        short = {k: v[:, :7] if v.dim() == 2 else v for k, v in ts.items()}  # a new layout in the same buffer
        views = buf.lay_out({k: (v.shape, v.dtype) for k, v in short.items()})
        for k, v in short.items():
            views[k].copy_(v)
        fourth = channel.loss(buffer_id, other, None)
        want = compute_loss(*(short[k] for k in names), TrlLossConfig(loss_type="grpo", beta=0.5))
        assert fourth["loss"] == float(want.loss) and torch.equal(views["grad_logprobs"], want.grad)
        views = buf.lay_out({**specs, "advantages": ((3,), torch.float32)})  # shapes that do not fit
        bad = raw_call(live[1].path, {"op": "loss", "buffer": buffer_id, "options": other})
        assert bad["status"] == 422 and "advantages" in json.dumps(bad["error"])


def test_a_failing_handler_costs_one_call_and_a_listener_without_one_refuses(sock_dir):
    calls = []

    def broken(message: dict) -> dict:
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"loss": 1.0, "metrics": {}, "written": []}

    listener = ShmListener(sock_dir / "broken.sock", ShmRegistry(1 << 20), on_loss=broken)
    listener.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:  # one connection for both calls
            s.connect(str(listener.path))
            s.send(json.dumps({"op": "loss", "buffer": "a" * 32}).encode())
            first = json.loads(s.recv(4096))
            s.send(json.dumps({"op": "loss", "buffer": "a" * 32}).encode())
            second = json.loads(s.recv(4096))
        assert first["status"] == 500 and "RuntimeError: boom" in first["error"]
        assert second == {"loss": 1.0, "metrics": {}, "written": []}
    finally:
        listener.close()
    off = ShmListener(sock_dir / "off.sock", ShmRegistry(1 << 20))  # registrations only
    off.start()
    try:
        answer = raw_call(off.path, {"op": "loss", "buffer": "a" * 32})
        assert answer["status"] == 409 and "POST /grpo/loss" in answer["error"]
    finally:
        off.close()


def test_client_reconnects_when_the_socket_breaks(live):
    ts = batch(seed=8)
    ts.pop("entropy")
    with shm_client(live) as client:
        first = client.grpo_loss(ts, OPTS[1])
        with live[1]._lock:
            conns = list(live[1]._conns)
        for c in conns:  # what a service restart does to the trainer's connection
            c.shutdown(socket.SHUT_RDWR)
        again = client.grpo_loss(ts, OPTS[1])  # empty answer: a fresh connection, registered again
        assert again.loss == first.loss and torch.equal(again.grad_logprobs, first.grad_logprobs)


def test_socket_and_http_calls_run_together_and_stay_exact(live):
    """Concurrent calls from both transports share the one device lock; each answer is its own."""
    import threading

    inputs = [batch(seed=20 + k, b=8, t=64) for k in range(4)]
    for ts in inputs:
        ts.pop("entropy")
    body = RefereeClient(ClientConfig(base_url=live[0].url, max_retries=0))
    want = [body.grpo_loss(ts, OPTS[1]) for ts in inputs]
    errors: list[BaseException] = []

    def hammer(calls: str, k: int) -> None:
        try:
            with shm_client(live, calls) as client:
                for _ in range(10):
                    got = client.grpo_loss(inputs[k], OPTS[1])
                    assert got.loss == want[k].loss and torch.equal(got.grad_logprobs, want[k].grad_logprobs)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(CALLS[k % 2], k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_socket_calls_need_the_token_and_are_counted(tmp_path):
    import httpx

    path = tmp_path / "tok.sock"
    settings = Settings(  # type: ignore[call-arg]
        pool_size=1, sandbox_backend="none", grpo_shm_socket=str(path), api_token="s3cret"
    )
    ts = batch(seed=9)
    ts.pop("entropy")
    with FakeReferee(create_app(settings)) as server:
        auth = {"authorization": "Bearer s3cret"}
        for token, code in ((None, 401), ("wrong", 401), ("s3cret", None)):
            cfg = ClientConfig(base_url=server.url, max_retries=0, shm_socket=str(path), token=token)
            with RefereeClient(cfg) as client:
                if code is None:
                    got = client.grpo_loss(ts, OPTS[1])
                else:
                    with pytest.raises(RefereeError, match="token") as e:
                        client.grpo_loss(ts, OPTS[1])
                    assert e.value.status_code == code
        want = RefereeClient(ClientConfig(base_url=server.url, max_retries=0, token="s3cret")).grpo_loss(
            ts, OPTS[1]
        )
        assert torch.equal(got.grad_logprobs, want.grad_logprobs)
        text = httpx.get(server.url + "/metrics", headers=auth).text
    assert 'referee_grpo_socket_calls_total{code="401"} 2.0' in text
    assert 'referee_grpo_socket_calls_total{code="200"} 1.0' in text
    assert "referee_grpo_socket_call_seconds_count 3.0" in text


def test_a_refused_registration_is_not_retried_on_a_new_connection(sock_dir):
    listener = ShmListener(sock_dir / "tiny.sock", ShmRegistry(max_bytes=1024))
    listener.start()
    try:
        cfg = ClientConfig(base_url="http://127.0.0.1:9", max_retries=0, shm_socket=str(listener.path))
        with RefereeClient(cfg) as client:
            assert client._shm is not None
            first = client._shm.channel().serial
            with pytest.raises(RefereeError, match="REFEREE_GRPO_SHM_MAX_BYTES") as e:
                client.grpo_loss(batch(), OPTS[1])
            assert not isinstance(e.value, ShmChannelBroken)
            assert client._shm.channel().serial == first  # the connection (and its other buffers) kept
    finally:
        listener.close()
