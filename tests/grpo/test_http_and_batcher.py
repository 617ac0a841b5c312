"""Wire codec, endpoints (TestClient on an app with our router) and the batcher's bit-identity."""

import asyncio
import json

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss
from service.grpo.batcher import LossBatcher, LossJob, run_batch
from service.grpo.wire import SAFETENSORS_MEDIA_TYPE, WireError, decode, encode
from service.routes.grpo import router


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as c:
        yield c


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
