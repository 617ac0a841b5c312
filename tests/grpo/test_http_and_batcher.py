"""Wire codec, endpoints (TestClient on an app with our router) and the batcher's bit-identity."""

import asyncio
import json

import pytest
import torch

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.batcher import LossBatcher, LossJob, run_batch
from service.grpo.wire import SAFETENSORS_MEDIA_TYPE, WireError, decode, encode


def tensors(seed=0, b=5, t=9, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lp = (-torch.rand(b, t, generator=g, dtype=torch.float64) * 2).to(dtype)
    old = (lp.double() + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2).to(dtype)
    ref = (lp.double() + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2).to(dtype)
    lens = torch.randint(0, t + 1, (b,), generator=g)
    m = (torch.arange(t)[None] < lens[:, None]).to(torch.uint8)
    adv = torch.randn(b, generator=g, dtype=torch.float64).to(dtype)
    return {"logp": lp, "old_logp": old, "ref_logp": ref, "advantages": adv, "mask": m}


def test_wire_round_trip():
    ts = tensors(dtype=torch.bfloat16) | {"x": torch.arange(6).reshape(2, 3)}
    body = encode(ts, {"options": {"flavor": "trl"}, "note": "hi"})
    back, meta = decode(body)
    assert set(back) == set(ts) and all(
        torch.equal(back[k], ts[k]) and back[k].dtype == ts[k].dtype for k in ts
    )
    assert json.loads(meta["options"]) == {"flavor": "trl"} and meta["note"] == "hi"
    with pytest.raises(WireError):
        decode(b"\x05\x00")
    with pytest.raises(WireError):
        decode(b"\xff" * 16)
    # a header whose offsets point past the body, or do not match the shape, is rejected (no over-read)
    good = encode({"a": torch.zeros(4)})
    n = int.from_bytes(good[:8], "little")
    hdr = json.loads(good[8 : 8 + n])
    for bad_entry in (
        {"dtype": "F32", "shape": [4], "data_offsets": [0, 4000]},
        {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]},
        {"dtype": "X9", "shape": [4], "data_offsets": [0, 16]},
    ):
        hdr["a"] = bad_entry
        raw = json.dumps(hdr).encode()
        with pytest.raises(WireError):
            decode(len(raw).to_bytes(8, "little") + raw + good[8 + n :])


@pytest.mark.parametrize(
    "opts",
    [
        {"flavor": "verl", "loss_agg_mode": "seq-mean-token-mean", "use_kl_loss": True, "kl_loss_coef": 0.04},
        {"flavor": "trl", "loss_type": "grpo", "beta": 0.04, "importance_sampling_level": "sequence"},
        {"flavor": "trl", "loss_type": "cispo", "epsilon_high": 5.0},
    ],
)
def test_json_and_binary_identical_and_match_library(client, opts):
    ts = tensors()
    js = {k: v.tolist() for k, v in ts.items()} | opts
    r1 = client.post("/grpo/loss", json=js)
    assert r1.status_code == 200, r1.text
    body = encode(ts, {"options": opts})
    r2 = client.post("/grpo/loss", content=body, headers={"content-type": SAFETENSORS_MEDIA_TYPE})
    assert r2.status_code == 200 and r2.headers["content-type"] == SAFETENSORS_MEDIA_TYPE
    back, meta = decode(r2.content)
    j = r1.json()
    for r in (r1, r2):  # the compute time, so that clients can tell it from the transport
        name, dur = r.headers["server-timing"].split(";")
        assert name == "compute" and float(dur.removeprefix("dur=")) > 0
    assert torch.equal(torch.tensor(j["grad_logprobs"], dtype=torch.float64), back["grad_logprobs"])
    assert j["loss"] == json.loads(meta["loss"])
    assert j["metrics"] == json.loads(meta["metrics"])
    cfg = (
        VerlLossConfig(**{k: v for k, v in opts.items() if k != "flavor"})
        if opts["flavor"] == "verl"
        else TrlLossConfig(**{k: v for k, v in opts.items() if k != "flavor"})
    )
    lib = compute_loss(ts["logp"], ts["old_logp"], ts["ref_logp"], ts["advantages"], ts["mask"], cfg)
    assert torch.equal(lib.grad, back["grad_logprobs"]) and lib.loss.item() == j["loss"]


def test_options_in_header_and_errors(client):
    ts = tensors()
    body = encode(ts)
    r = client.post(
        "/grpo/loss",
        content=body,
        headers={"content-type": SAFETENSORS_MEDIA_TYPE, "x-grpo-options": json.dumps({"flavor": "trl"})},
    )
    assert r.status_code == 200
    bad = client.post(
        "/grpo/loss", json={"flavor": "verl", "loss_type": "grpo", "logp": [[0.0]], "advantages": [1.0]}
    )
    assert bad.status_code == 422 and "loss_type" in bad.text
    bad = client.post("/grpo/loss", json={"logp": [[0.0, 1.0]], "advantages": [1.0], "mask": [[1]]})
    assert bad.status_code == 422 and "mask" in bad.text
    bad = client.post("/grpo/loss", json={"logp": [[0.0]], "advantages": [1.0], "loss_mode": "nope"})
    assert bad.status_code == 422 and "loss_mode" in bad.text
    bad = client.post("/grpo/loss", json={"flavor": "trl", "beta": 0.1, "logp": [[0.0]], "advantages": [1.0]})
    assert bad.status_code == 422 and "ref_logp" in bad.text
    bad = client.post(
        "/grpo/loss", content=b"garbage!garbage!", headers={"content-type": SAFETENSORS_MEDIA_TYPE}
    )
    assert bad.status_code == 400
    # JSON is strict in every form (Python's json writes NaN and Infinity; RFC 8259 has neither): 422, as on
    # the shared-memory socket, never a NaN option taken as given
    nan_opts = {"x-grpo-options": json.dumps({"flavor": "trl", "beta": float("nan")})}
    bad = client.post(
        "/grpo/loss", content=body, headers={"content-type": SAFETENSORS_MEDIA_TYPE, **nan_opts}
    )
    assert bad.status_code == 422 and "strict JSON" in bad.text
    nan_body = json.dumps({"logp": [[float("nan")]], "advantages": [1.0]})
    bad = client.post("/grpo/loss", content=nan_body, headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "strict JSON" in bad.text
    # all-masked verl token-mean: NaN loss travels as null
    r = client.post("/grpo/loss", json={"logp": [[0.0]], "advantages": [1.0], "mask": [[0]]})
    assert r.status_code == 200 and r.json()["loss"] is None and r.json()["grad_logprobs"] == [[0.0]]


def test_advantages_endpoint(client):
    r = client.post("/grpo/advantages", json={"rewards": [1, 0, 1, 0], "group_size": 4, "flavor": "trl"})
    assert r.status_code == 200
    assert r.json()["advantages"][0] == pytest.approx(0.5 / ((1 / 3) ** 0.5 + 1e-4))
    results = [
        {"id": f"q{i}", "reward": rw, "status": "ok", "components": {}}
        for i, rw in enumerate([1.0, None, 0.0, 2.0])
    ]
    r = client.post(
        "/grpo/advantages", json={"results": results, "group_ids": ["a", "b", "a", "b"], "flavor": "trl"}
    )
    assert r.status_code == 200 and r.json()["advantages"][1] == 0.0
    r = client.post("/grpo/advantages", json={"rewards": [1, 0], "group_size": 2, "adv_estimator": "rloo"})
    assert r.json()["advantages"] == [1.0, -1.0]
    r = client.post(
        "/grpo/advantages",
        json={"rewards": [1, 0], "lengths": [2, 1], "adv_estimator": "reinforce_plus_plus", "gamma": 0.9},
    )
    assert r.status_code == 200 and [len(x) for x in r.json()["token_advantages"]] == [2, 1]
    assert (
        client.post(
            "/grpo/advantages", json={"rewards": [1, 0], "group_size": 2, "scale_rewards": "batch"}
        ).status_code
        == 422
    )
    assert client.post("/grpo/advantages", json={"rewards": [1, 0, 1], "group_size": 2}).status_code == 422
    # unscorable is null (NaN inside, as TRL's None); a NaN literal is not JSON (RFC 8259): 422, not taken as null
    unscorable = {"rewards": [1.0, None, 0.0, 1.0], "group_size": 2, "flavor": "trl"}
    assert client.post("/grpo/advantages", json=unscorable).status_code == 200
    nan = json.dumps({**unscorable, "rewards": [1.0, float("nan"), 0.0, 1.0]})
    r = client.post("/grpo/advantages", content=nan, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.post("/grpo/advantages", json={"group_size": 2}).status_code == 422


def test_run_batch_coalesced_is_bit_identical():
    jobs = []
    for s in range(5):
        ts = tensors(seed=s, b=3 + s, t=37, dtype=torch.float32)
        cfg = TrlLossConfig(loss_type="grpo", beta=0.04) if s % 2 else VerlLossConfig(use_kl_loss=True)
        jobs.append(LossJob(ts["logp"], ts["old_logp"], ts["ref_logp"], ts["advantages"], ts["mask"], cfg))
    outs = run_batch(jobs, torch.device("cpu"), coalesce=True)
    for j, o in zip(jobs, outs, strict=True):
        alone = compute_loss(j.logp, j.old_logp, j.ref_logp, j.advantages, j.mask, j.config)
        assert (
            torch.equal(o.grad, alone.grad) and torch.equal(o.loss, alone.loss) and o.metrics == alone.metrics
        )


def test_batcher_coalesces_concurrent_ranks():
    async def main():
        b = LossBatcher(device=torch.device("cpu"), window_s=0.05, coalesce=True)
        jobs = []
        for s in range(6):
            ts = tensors(seed=s, b=4, t=64, dtype=torch.float32)
            jobs.append(
                LossJob(
                    ts["logp"],
                    ts["old_logp"],
                    ts["ref_logp"],
                    ts["advantages"],
                    ts["mask"],
                    TrlLossConfig(loss_type="dapo", beta=0.04),
                )
            )
        outs = await asyncio.gather(*(b.submit(j) for j in jobs))
        b.close()
        return b.stats, jobs, outs

    stats, jobs, outs = asyncio.run(main())
    assert stats.requests == 6 and stats.batches < 6 and stats.largest_batch >= 2
    for j, o in zip(jobs, outs, strict=True):
        alone = compute_loss(j.logp, j.old_logp, j.ref_logp, j.advantages, j.mask, j.config)
        assert torch.equal(o.grad, alone.grad) and torch.equal(o.loss, alone.loss)


def test_batcher_flushes_at_once_when_idle_and_gathers_while_busy():
    """CPU default: the first request runs without waiting for a window; the ones that arrive while the
    device thread is busy form the next batch, and every result is still bit-identical to a lone call."""

    async def main():
        b = LossBatcher(device=torch.device("cpu"))
        assert b.window_s == 0.0
        jobs = []
        for s in range(6):
            ts = tensors(seed=s, b=4, t=64, dtype=torch.float32)
            cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
            jobs.append(
                LossJob(ts["logp"], ts["old_logp"], ts["ref_logp"], ts["advantages"], ts["mask"], cfg)
            )
        outs = await asyncio.gather(*(b.submit(j) for j in jobs))
        b.close()
        return b.stats, jobs, outs

    stats, jobs, outs = asyncio.run(main())
    assert (stats.requests, stats.batches, stats.largest_batch) == (6, 2, 5)
    for j, o in zip(jobs, outs, strict=True):
        alone = compute_loss(j.logp, j.old_logp, j.ref_logp, j.advantages, j.mask, j.config)
        assert torch.equal(o.grad, alone.grad) and torch.equal(o.loss, alone.loss)


def test_batcher_window_and_errors_reach_every_waiter():
    """An explicit window still gathers an idle burst into one batch; a failing batch fails all its waiters
    and leaves the batcher usable."""

    async def main():
        b = LossBatcher(device=torch.device("cpu"), window_s=0.01)
        ts = tensors(b=2, t=8, dtype=torch.float32)
        good = LossJob(ts["logp"], None, None, ts["advantages"], ts["mask"], TrlLossConfig())
        bad = LossJob(ts["logp"], None, None, ts["advantages"][:1], ts["mask"], TrlLossConfig())
        res = await asyncio.gather(b.submit(bad), b.submit(bad), return_exceptions=True)
        ok = await b.submit(good)
        b.close()
        return b.stats, res, ok

    stats, res, ok = asyncio.run(main())
    assert all(isinstance(r, Exception) for r in res) and stats.largest_batch == 2
    assert ok.grad.shape == (2, 8) and stats.batches == 2


def _asgi_post(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Drive the ASGI app directly: the body arrives in the given chunks, whatever Content-Length says (a
    server frames by Content-Length; other ASGI servers or proxies may not, so the route must check)."""

    async def run() -> tuple[int, bytes, int]:
        msgs = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        sent: list[dict] = []

        async def receive() -> dict:
            return msgs.pop(0) if msgs else {"type": "http.disconnect"}

        async def send(m: dict) -> None:
            sent.append(m)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/grpo/loss",
            "raw_path": b"/grpo/loss",
            "query_string": b"",
            "headers": [(b"content-type", SAFETENSORS_MEDIA_TYPE.encode()), *headers],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        bodies = [bytes(m.get("body", b"")) for m in sent if m["type"] == "http.response.body"]
        return status, b"".join(bodies), len(bodies)

    return asyncio.run(run())


def test_binary_body_length_is_checked_never_500(client):
    app = client.app
    body = encode(tensors(), {"options": {"flavor": "trl"}})
    n = len(body)
    half = [body[: n // 2], body[n // 2 :]]

    def cl(x) -> list[tuple[bytes, bytes]]:
        return [(b"content-length", str(x).encode())]

    ok, answer, pieces = _asgi_post(app, cl(n), half)
    assert ok == 200 and decode(answer)[0]["grad_logprobs"].shape == (5, 9)
    assert pieces == 2  # safetensors header, then the gradient's own memory: never joined
    status, text, _ = _asgi_post(app, cl(n + 10), half)
    assert status == 400 and b"Content-Length" in text  # stopped short
    status, text, _ = _asgi_post(app, cl(n - 10), half)
    assert status == 400 and b"longer than its Content-Length" in text
    assert _asgi_post(app, cl("12x"), half)[0] == 400
    assert _asgi_post(app, cl(-1), half)[0] == 400
    status, text, _ = _asgi_post(app, cl(1 << 40), half)  # refused before anything is read
    assert status == 413 and b"exceeds" in text
    # no Content-Length (chunked upload): joined, still checked against the limit
    assert _asgi_post(app, [], half)[0] == 200
    app.state.settings = type("S", (), {"max_body_bytes": n - 1})()  # not a Settings: default limit kept
    assert _asgi_post(app, [], half)[0] == 200
    from service.config import Settings

    app.state.settings = Settings(max_body_bytes=n - 1)
    try:
        assert _asgi_post(app, [], half)[0] == 413
        assert _asgi_post(app, cl(n), half)[0] == 413
    finally:
        del app.state.settings
    # truncated inside a tensor (Content-Length matches what was sent): the codec's 400, not a 500
    short = body[: n - 7]
    assert _asgi_post(app, cl(len(short)), [short])[0] == 400


def test_binary_answer_is_sent_in_pieces_equal_to_encode(client):
    """The answer goes out as header + tensor chunks (no join); the bytes are exactly `encode`'s, a standard
    safetensors file."""
    from safetensors.torch import load

    from service.grpo.wire import encode_parts

    ts = tensors(dtype=torch.float32)
    opts = {"flavor": "trl", "loss_type": "grpo", "beta": 0.04}
    r = client.post(
        "/grpo/loss", content=encode(ts, {"options": opts}), headers={"content-type": SAFETENSORS_MEDIA_TYPE}
    )
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    back, meta = decode(r.content)
    again = encode(
        {"grad_logprobs": back["grad_logprobs"]},
        {"loss": json.loads(meta["loss"]), "metrics": json.loads(meta["metrics"])},
    )
    assert r.content == again
    assert torch.equal(load(r.content)["grad_logprobs"], back["grad_logprobs"])
    parts = encode_parts(
        {"a": torch.arange(3.0), "m": torch.ones(2, 2, dtype=torch.bool), "e": torch.zeros(0)}
    )
    assert len(parts) == 3 and all(isinstance(p, memoryview) for p in parts[1:])
    assert b"".join(parts) == encode(
        {"a": torch.arange(3.0), "m": torch.ones(2, 2, dtype=torch.bool), "e": torch.zeros(0)}
    )


def test_every_config_field_is_an_http_option():
    """LossOptions spells out each option for the OpenAPI page; none of the configs' fields may be missing."""
    from dataclasses import fields

    from service.routes.grpo import LossOptions

    names = {f.name for f in fields(VerlLossConfig)} | {f.name for f in fields(TrlLossConfig)}
    assert names <= set(LossOptions.model_fields), names - set(LossOptions.model_fields)
