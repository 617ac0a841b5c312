from __future__ import annotations

import asyncio

import pytest

from tests.trainer.fake_referee import FakeReferee
from trainer.client import AsyncRefereeClient, ClientConfig, RefereeClient, RefereeError

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
