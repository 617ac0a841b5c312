"""GRPO loss + gradient throughput: our fused closed form vs the peers' eager code, the bandwidth bound, HTTP.

Same tensors, same run: B x T fp32 log-probs (policy, old, reference), ragged masks, per-sequence advantages.
  * ours:  service.grpo.compute_loss (closed-form gradient, no autograd graph)
  * peers: verl `get_policy_loss_fn` + `agg_loss` + `kl_penalty`, TRL `GRPOTrainer._compute_loss`, forward +
           `autograd.grad` (when verl/TRL are importable; else our autograd reference, labelled as such)
  * bound: bytes one fused pass must touch (GRPO.md §6: logp, old, ref 4 B each, mask 1 B, grad 4 B) divided
           by the torch copy bandwidth measured in this run
  * http:  a real uvicorn on 127.0.0.1 with the safetensors body (client encode + POST + decode) vs in-process

Run (peers installed in /work/venv-peers, see docs/grpo.md):
    PYTHONPATH=. /work/venv-peers/bin/python bench/grpo_throughput.py
Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss  # noqa: E402
from service.grpo.reference import reference_loss  # noqa: E402


def median_ms(fn: Callable[[], object], reps: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def interleaved_ms(fns: list[Callable[[], object]], reps: int, sync: Callable[[], None]) -> list[float]:
    """Medians of several callables timed round-robin (the shared machine's load drifts; this keeps ratios fair)."""
    for fn in fns:
        fn()
    sync()
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            sync()
            ts[i].append(time.perf_counter() - t0)
    return [1e3 * statistics.median(x) for x in ts]


def make_batch(b: int, t: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g) * 3
    old = lp + torch.randn(b, t, generator=g) * 0.1
    ref = lp + torch.randn(b, t, generator=g) * 0.1
    lens = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None] < lens[:, None]).to(torch.uint8)
    adv = torch.randn(b, generator=g)
    return [x.to(device) for x in (lp, old, ref, adv, mask)]


def copy_bandwidth(device: torch.device, sync: Callable[[], None], reps: int) -> float:
    x = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), reps, sync)
    return 2 * x.numel() / (ms / 1e3)  # read + write, bytes/s


def peer_fns():
    """Peer callables (loss + grad on the same tensors), or None with the reason."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "grpo"))
        import test_peers as tp  # the adapters the cross-check test uses

        if tp.PEERS_REASON:
            return None, tp.PEERS_REASON
        return tp, ""
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


def serve(port: int):
    import uvicorn
    from fastapi import FastAPI

    from service.routes.grpo import router

    app = FastAPI()
    app.include_router(router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(200):
        if server.started:
            return server, th
        time.sleep(0.05)
    raise RuntimeError("uvicorn did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=512)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads for every contender (0 = default)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    b, t = args.B, args.T
    lp, old, ref, adv, mask = make_batch(b, t, dev)
    valid = int(mask.sum())
    print(
        f"# {b} x {t} fp32, {valid / 1e6:.2f} M valid tokens, device {dev}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, reps {args.reps} (medians)"
    )
    bw = copy_bandwidth(dev, sync, args.reps)
    print(f"# measured copy bandwidth {bw / 1e9:.1f} GB/s")
    tp, reason = peer_fns()
    peer_label = "peer (verl/TRL eager)" if tp else "OUR autograd reference (peers not importable)"
    if not tp:
        print(f"# peers unavailable: {reason}")
    cases = [
        ("verl vanilla+dual-clip token-mean +0.001 k3", VerlLossConfig(use_kl_loss=True), True),
        ("verl vanilla token-mean, no KL", VerlLossConfig(), False),
        (
            "verl gspo seq-mean-token-mean",
            VerlLossConfig(loss_mode="gspo", loss_agg_mode="seq-mean-token-mean"),
            False,
        ),
        ("TRL grpo beta=0.04 (k3*IS)", TrlLossConfig(loss_type="grpo", beta=0.04), True),
        ("TRL dapo beta=0", TrlLossConfig(), False),
    ]
    print(
        f"{'case':44s} {'eager ms':>9s} {'compiled':>9s} {'peer ms':>9s} {'x eager':>8s} {'x compl':>8s} "
        f"{'bound ms':>9s} {'compl/bound':>11s}"
    )
    for name, cfg, uses_ref in cases:
        r = ref if uses_ref else None
        t0 = time.perf_counter()
        compute_loss(lp, old, r, adv, mask, cfg, use_compile=True)
        compile_s = time.perf_counter() - t0
        if tp:
            fn = tp.verl_peer if isinstance(cfg, VerlLossConfig) else tp.trl_peer
            peer_fn = lambda cfg=cfg, fn=fn: fn(cfg, lp, old, ref, adv, mask.bool())  # noqa: E731
        else:
            peer_fn = lambda cfg=cfg, r=r: reference_loss(lp, old, r, adv, mask, cfg)  # noqa: E731
        eager, comp, peer = interleaved_ms(
            [
                lambda cfg=cfg, r=r: compute_loss(lp, old, r, adv, mask, cfg, use_compile=False),
                lambda cfg=cfg, r=r: compute_loss(lp, old, r, adv, mask, cfg, use_compile=True),
                peer_fn,
            ],
            args.reps,
            sync,
        )
        nbytes = b * t * ((12 if uses_ref else 8) + 1 + 4)
        bound = nbytes / bw * 1e3
        print(
            f"{name:44s} {eager:9.2f} {comp:9.2f} {peer:9.2f} {peer / eager:8.1f} {peer / comp:8.1f} "
            f"{bound:9.2f} {comp / bound:11.1f}   (first compiled call {compile_s:.1f} s)",
            flush=True,
        )
    print(f"# peer column = {peer_label}")
    if args.no_http:
        return
    import httpx

    from service.grpo.wire import SAFETENSORS_MEDIA_TYPE, decode, encode

    compiled = os.environ.get("REFEREE_GRPO_COMPILE", "") == "1"
    port = free_port()
    server, th = serve(port)
    cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
    opts = {"flavor": "trl", "loss_type": "grpo", "beta": 0.04}
    host = [x.cpu() for x in (lp, old, ref, adv, mask)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:

            def call() -> torch.Tensor:
                body = encode(
                    {
                        "logp": host[0],
                        "old_logp": host[1],
                        "ref_logp": host[2],
                        "advantages": host[3],
                        "mask": host[4],
                    },
                    {"options": opts},
                )
                resp = client.post(
                    "/grpo/loss", content=body, headers={"content-type": SAFETENSORS_MEDIA_TYPE}
                )
                resp.raise_for_status()
                return decode(resp.content)[0]["grad_logprobs"]

            http, inproc = interleaved_ms(
                [
                    call,
                    lambda: compute_loss(
                        host[0], host[1], host[2], host[3], host[4], cfg, device=dev, use_compile=compiled
                    ).grad.cpu(),
                ],
                args.reps,
                sync,
            )
            req_mb = (
                len(
                    encode(
                        {
                            "logp": host[0],
                            "old_logp": host[1],
                            "ref_logp": host[2],
                            "advantages": host[3],
                            "mask": host[4],
                        }
                    )
                )
                / 1e6
            )
    finally:
        server.should_exit = True
        th.join(timeout=10)
    print(
        f"HTTP (safetensors body {req_mb:.1f} MB, TRL grpo+KL): {http:.2f} ms vs in-process {inproc:.2f} ms: "
        f"overhead {(http - inproc) / inproc * 100:.0f}% of compute ({'compiled' if compiled else 'eager'} path)"
    )


if __name__ == "__main__":
    main()
