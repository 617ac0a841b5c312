from __future__ import annotations

import asyncio
import json
import time

import pytest
import torch

from tests.trainer.fake_referee import FakeReferee
from trainer.client import (
    SAFETENSORS_MEDIA_TYPE,
    AsyncRefereeClient,
    ClientConfig,
    RefereeClient,
    RefereeError,
    decode_loss_response,
    loss_request_parts,
)

ITEM = {"id": "a", "completion": "<think>2+2</think><answer>4</answer>", "answer": "4"}


def client(referee: FakeReferee, **kw: object) -> RefereeClient:
    return RefereeClient(ClientConfig(base_url=referee.url, token="tok", backoff=0.01, **kw))  # type: ignore[arg-type]


def test_score_round_trip_sends_bearer_token(referee_env: FakeReferee) -> None:
    with client(referee_env) as c:
        [r] = c.score([ITEM], weights={"accuracy": 1.0, "format": 0.5})
    assert r["id"] == "a" and r["status"] == "ok" and r["reward"] == pytest.approx(1.5)
    path, headers = referee_env.app.state.seen[-1]
    assert path == "/score" and headers["authorization"] == "Bearer tok"


def test_from_env_reads_url_and_token(referee_env: FakeReferee) -> None:
    cfg = ClientConfig.from_env()
    assert cfg.base_url == referee_env.url and cfg.token == "sekrit"
    assert cfg.shm_socket is None and cfg.shm_calls == "socket"  # the defaults when the environment is silent


def test_from_env_reads_the_shared_memory_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFEREE_GRPO_SHM_SOCKET", "/run/referee/grpo-shm.sock")
    monkeypatch.setenv("REFEREE_GRPO_SHM_CALLS", "http")
    cfg = ClientConfig.from_env()
    assert cfg.shm_socket == "/run/referee/grpo-shm.sock" and cfg.shm_calls == "http"
    monkeypatch.setenv("REFEREE_GRPO_SHM_CALLS", "carrier-pigeon")
    with pytest.raises(ValueError, match="shm_calls must be 'socket' or 'http'"):
        ClientConfig.from_env()


@pytest.mark.parametrize("status", [503, 429])
def test_retries_overload_then_succeeds(referee_env: FakeReferee, status: int) -> None:
    referee_env.app.state.fail[:] = [status, status]
    with client(referee_env) as c:
        [r] = c.score([ITEM])
    assert r["status"] == "ok"
    assert [p for p, _ in referee_env.app.state.seen] == ["/score"] * 3


def test_gives_up_after_max_retries(referee_env: FakeReferee) -> None:
    referee_env.app.state.fail[:] = [503] * 3
    with client(referee_env, max_retries=2) as c, pytest.raises(RefereeError) as err:
        c.score([ITEM])
    assert err.value.status_code == 503


def test_client_errors_are_not_retried(referee_env: FakeReferee) -> None:
    referee_env.app.state.fail[:] = [400]
    with client(referee_env) as c, pytest.raises(RefereeError) as err:
        c.score([ITEM])
    assert err.value.status_code == 400
    assert len(referee_env.app.state.seen) == 1


def test_connection_refused_is_retried_then_raised() -> None:
    from tests.trainer.fake_referee import free_port

    c = RefereeClient(ClientConfig(base_url=f"http://127.0.0.1:{free_port()}", max_retries=2, backoff=0.01))
    with pytest.raises(RefereeError, match="failed"):
        c.score([ITEM])


def test_empty_batch(referee_env: FakeReferee) -> None:
    with client(referee_env) as c:
        assert c.score([]) == []


def test_async_client_concurrent_scores(referee_env: FakeReferee) -> None:
    async def main() -> list[float]:
        async with AsyncRefereeClient(ClientConfig(base_url=referee_env.url, backoff=0.01)) as c:
            referee_env.app.state.fail[:] = [503]
            outs = await asyncio.gather(*(c.score([{**ITEM, "id": str(i)}]) for i in range(8)))
        return [o[0]["reward"] for o in outs]

    assert asyncio.run(main()) == [pytest.approx(1.1)] * 8


def _loss_tensors(b: int = 3, t: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(b, t, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    return {
        "logp": logp,
        "old_logp": logp,  # on-policy: the same tensor twice is fine on the wire (no clone needed)
        "ref_logp": logp + 0.1,
        "advantages": torch.randn(b, generator=g),
        "mask": mask,
    }


def test_grpo_loss_over_http_equals_in_process_and_survives_a_dropped_keep_alive() -> None:
    from service.grpo import TrlLossConfig, compute_loss

    ts = _loss_tensors()
    opts = {"flavor": "trl", "loss_type": "grpo", "beta": 0.04}
    want = compute_loss(
        ts["logp"],
        ts["old_logp"],
        ts["ref_logp"],
        ts["advantages"],
        ts["mask"],
        TrlLossConfig(loss_type="grpo", beta=0.04),
    )
    with (
        FakeReferee(keep_alive_s=0.2) as ref,
        RefereeClient(ClientConfig(base_url=ref.url, max_retries=0)) as c,
    ):
        first = c.grpo_loss(ts, opts)
        time.sleep(0.6)  # the server closes the idle connection; the client must notice and reconnect
        second = c.grpo_loss(ts, opts)
        assert [p for p, _ in ref.app.state.seen] == ["/grpo/loss", "/grpo/loss"]
    for res in (first, second):
        assert torch.equal(res.grad_logprobs, want.grad) and res.loss == want.loss.item()
        assert res.grad_logprobs.is_contiguous() and not res.grad_logprobs.is_shared()
        assert res.server_ms is not None and res.server_ms > 0  # Server-Timing: compute;dur=...


def test_async_grpo_loss(referee: FakeReferee) -> None:
    ts = _loss_tensors()

    async def main() -> list[float]:
        async with AsyncRefereeClient(ClientConfig(base_url=referee.url)) as c:
            outs = await asyncio.gather(*(c.grpo_loss(ts, {"flavor": "trl"}) for _ in range(3)))
        return [o.loss for o in outs]

    a, b, c = asyncio.run(main())
    assert a == b == c and a == a


def test_server_timing_parsing() -> None:
    from trainer.client import _server_ms

    assert _server_ms({"server-timing": "db;dur=2, compute;dur=12.5"}) == 12.5
    assert _server_ms({"server-timing": "compute;desc=x;dur=3"}) == 3.0
    assert _server_ms({"server-timing": "compute;dur=oops"}) is None
    assert _server_ms({}) is None


def test_loss_request_parts_are_zero_copy_and_decode_in_place() -> None:
    from service.grpo.wire import decode, encode

    ts = _loss_tensors()
    parts = loss_request_parts(ts, {"beta": 0.0})
    # header, then the tensors' own memory (advantages, logp x2, ref, mask): no copy of a contiguous tensor
    assert len(parts) == 6 and parts[1].obj is not None
    pointers = {ts[k].data_ptr() for k in ts}
    assert {torch.frombuffer(p, dtype=torch.uint8).data_ptr() for p in parts[1:]} <= pointers
    back, meta = decode(b"".join(parts))
    assert all(torch.equal(back[k], ts[k]) for k in ts) and back["mask"].dtype == torch.bool
    assert json.loads(meta["options"]) == {"beta": 0.0}
    answer = encode({"grad_logprobs": torch.arange(6.0).reshape(2, 3)}, {"loss": 1.5, "metrics": {"kl": 0.5}})
    buf = torch.empty(len(answer), dtype=torch.uint8)
    buf.numpy()[:] = torch.frombuffer(bytearray(answer), dtype=torch.uint8).numpy()
    res = decode_loss_response(buf.numpy().data, SAFETENSORS_MEDIA_TYPE)  # writable: a view, no copy
    assert res.grad_logprobs.data_ptr() - buf.data_ptr() == len(answer) - 24
    assert torch.equal(res.grad_logprobs, torch.arange(6.0).reshape(2, 3)) and res.loss == 1.5
    res = decode_loss_response(answer, SAFETENSORS_MEDIA_TYPE)  # read-only bytes: copied once
    assert torch.equal(res.grad_logprobs, torch.arange(6.0).reshape(2, 3)) and res.metrics == {"kl": 0.5}
