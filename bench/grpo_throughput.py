"""GRPO loss + gradient throughput: our fused closed form vs the peers' eager code, the bandwidth bound, HTTP.

Same tensors, same run: B x T fp32 log-probs (policy, old, reference), ragged masks, per-sequence advantages.
  * ours:  service.grpo.compute_loss, the default path: the fused C kernel on CPU (service/grpo/fused_cpu.c,
           closed-form gradient, one pass per row, masked tails skipped)
  * torch: the same closed form through torch ops (`native=False`: the CUDA path and the CPU fallback);
           `--compiled` adds it through torch.compile
  * peers: verl `get_policy_loss_fn` + `agg_loss` + `kl_penalty`, TRL `GRPOTrainer._compute_loss`, forward +
           `autograd.grad` (when verl/TRL are importable; else our autograd reference, labelled as such)
  * bound: bytes one fused pass must touch (GRPO.md §6: logp, old, ref 4 B each, mask 1 B, grad 4 B) divided
           by the torch copy bandwidth measured in this run; "evicted" times ours alone right after a 512 MiB
           write, so its inputs come from memory as the bound assumes
  * http:  `referee serve` (its own process) on 127.0.0.1, the trainer's client with the safetensors body both
           ways, vs the same compute in process, and vs raw TCP moving the same bytes (the floor); then the
           shared-memory channel (tensors in a registered memfd; each call a small message on its socket, or a
           small JSON request over the same HTTP)

Run (peers installed in /work/venv-peers, see docs/grpo.md):
    PYTHONPATH=. /work/venv-peers/bin/python bench/grpo_throughput.py
Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: interleaved timing otherwise lets the peers' spinning torch
# threads (after each of their calls) steal the core our next call runs on. Applies to every contender; must be
# set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.grpo import TrlLossConfig, VerlLossConfig, compute_loss  # noqa: E402
from service.grpo.reference import reference_loss  # noqa: E402
from service.malloc_tuning import keep_freed_memory  # noqa: E402
from trainer.client import ShmChannel  # noqa: E402


def median_ms(
    fn: Callable[[], object], reps: int, sync: Callable[[], None], before: Callable[[], object] | None = None
) -> float:
    """Median of `fn` (after one warm-up call); `before` runs, untimed, ahead of each timed call."""
    fn()
    sync()
    ts = []
    for _ in range(reps):
        if before is not None:
            before()
            sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def interleaved_ms(
    fns: list[Callable[[], object]],
    reps: int,
    sync: Callable[[], None],
    before: Callable[[], object] | None = None,
) -> list[float]:
    """Medians of several callables timed round-robin (the shared machine's load drifts; this keeps ratios fair);
    `before` runs, untimed, ahead of each timed call."""
    for fn in fns:
        fn()
    sync()
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            if before is not None:
                before()
                sync()
            t0 = time.perf_counter()
            fn()
            sync()
            ts[i].append(time.perf_counter() - t0)
    return [1e3 * statistics.median(x) for x in ts]


def cache_flusher(device: torch.device) -> Callable[[], object]:
    """Writes 512 MiB on `device`, more than any last-level cache here: what was cached before is gone."""
    scratch = torch.empty(512 << 20, dtype=torch.uint8, device=device)
    return lambda: scratch.fill_(7)


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


def serve(port: int, threads: int, shm_socket: str):  # type: ignore[no-untyped-def]
    """`referee serve` (the shipped app, uvicorn + httptools) in its own process, as trainers meet it: a
    server thread in this process would share the client's GIL. Its shared-memory channel listens on
    `shm_socket`."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "OMP_NUM_THREADS": str(threads),  # the same intra-op threads as the in-process contender
        "REFEREE_POOL_SIZE": "1",
        "REFEREE_SANDBOX_BACKEND": "none",
        "REFEREE_GRPO_SHM_SOCKET": shm_socket,
    }
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=root)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if c.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("referee serve did not become ready")


class RawLoopback:
    """One call moves `up` bytes to a peer thread and `down` bytes back over raw TCP on 127.0.0.1: no HTTP, no
    copies outside the kernel (sendall of one buffer, recv_into a preallocated one). HTTP cannot beat it."""

    def __init__(self, up: int, down: int) -> None:
        self.a = torch.ones(up, dtype=torch.uint8).numpy().data
        self.b = torch.ones(down, dtype=torch.uint8).numpy().data
        self.ra = torch.empty(up, dtype=torch.uint8).numpy().data
        self.rb = torch.empty(down, dtype=torch.uint8).numpy().data
        with socket.socket() as ls:
            ls.bind(("127.0.0.1", 0))
            ls.listen(1)
            self.cli = socket.create_connection(ls.getsockname())
            self.srv, _ = ls.accept()
        self.peer = threading.Thread(target=self._serve, daemon=True)
        self.peer.start()

    @staticmethod
    def _recv_exact(sock: socket.socket, view: memoryview) -> bool:
        pos = 0
        while pos < len(view):
            n = sock.recv_into(view[pos:])
            if not n:
                return False
            pos += n
        return True

    def _serve(self) -> None:
        while self._recv_exact(self.srv, self.ra):
            self.srv.sendall(self.b)

    def __call__(self) -> None:
        self.cli.sendall(self.a)
        self._recv_exact(self.cli, self.rb)

    def close(self) -> None:
        self.cli.close()
        self.peer.join(timeout=10)
        self.srv.close()


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
        "--http-only", action="store_true", help="only the end-to-end section (HTTP and shared memory)"
    )
    ap.add_argument("--compiled", action="store_true", help="also time the torch path through torch.compile")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads for every contender (0 = default)"
    )
    args = ap.parse_args()
    malloc_tuned = keep_freed_memory()  # as `referee serve` does; applies to every contender alike
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    b, t = args.B, args.T
    lp, old, ref, adv, mask = make_batch(b, t, dev)
    valid = int(mask.sum())
    print(
        f"# {b} x {t} fp32, {valid / 1e6:.2f} M valid tokens, device {dev}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, reps {args.reps} (medians), "
        f"malloc thresholds raised: {malloc_tuned}"
    )
    if args.http_only:
        http_section(lp, old, ref, adv, mask, dev, args.reps, sync)
        return
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
        f"{'case':44s} {'ours ms':>8s} {'torch ms':>9s} {'peer ms':>8s} {'peer/ours':>9s} {'bound ms':>8s} "
        f"{'ours/bound':>10s} {'evicted ms':>10s} {'/bound':>6s}"
        + (f" {'compiled ms':>11s}" if args.compiled else "")
    )
    flush = cache_flusher(dev)
    for name, cfg, uses_ref in cases:
        r = ref if uses_ref else None
        if tp:
            fn = tp.verl_peer if isinstance(cfg, VerlLossConfig) else tp.trl_peer
            peer_fn = lambda cfg=cfg, fn=fn: fn(cfg, lp, old, ref, adv, mask.bool())  # noqa: E731
        else:
            peer_fn = lambda cfg=cfg, r=r: reference_loss(lp, old, r, adv, mask, cfg)  # noqa: E731
        contenders = [
            lambda cfg=cfg, r=r: compute_loss(lp, old, r, adv, mask, cfg),
            lambda cfg=cfg, r=r: compute_loss(lp, old, r, adv, mask, cfg, native=False),
            peer_fn,
        ]
        if args.compiled:
            compute_loss(lp, old, r, adv, mask, cfg, use_compile=True)  # compile outside the timing
            contenders.append(lambda cfg=cfg, r=r: compute_loss(lp, old, r, adv, mask, cfg, use_compile=True))
        ms = interleaved_ms(contenders, args.reps, sync)
        ours, torch_ms, peer = ms[:3]
        # ours alone right after writing more than the last-level cache: inputs come from memory, as the bound
        # assumes, without the round-robin's time-since-last-call effects (on a shared VM a call made 100+ ms
        # after the previous one runs slower, whatever it does)
        evicted = median_ms(contenders[0], args.reps, sync, before=flush)
        nbytes = b * t * ((12 if uses_ref else 8) + 1 + 4)
        bound = nbytes / bw * 1e3
        print(
            f"{name:44s} {ours:8.2f} {torch_ms:9.2f} {peer:8.2f} {peer / ours:9.1f} {bound:8.2f} "
            f"{ours / bound:10.1f} {evicted:10.2f} {evicted / bound:6.1f}"
            + (f" {ms[3]:11.2f}" if args.compiled else ""),
            flush=True,
        )
    print(f"# peer column = {peer_label}")
    if args.no_http:
        return
    http_section(lp, old, ref, adv, mask, dev, args.reps, sync)


def http_section(lp, old, ref, adv, mask, dev: torch.device, reps: int, sync: Callable[[], None]) -> None:  # type: ignore[no-untyped-def]
    """End to end through `referee serve` with the trainer's client (safetensors both ways) vs the same
    compute in process, and vs raw TCP moving the same bytes (the floor)."""
    from service.grpo.wire import encode_parts
    from trainer.client import ClientConfig, RefereeClient, ShmLossBuffer, loss_request_parts

    compiled = os.environ.get("REFEREE_GRPO_COMPILE", "") == "1"
    cfg = TrlLossConfig(loss_type="grpo", beta=0.04)
    opts = {"flavor": "trl", "loss_type": "grpo", "beta": 0.04}
    host = {"logp": lp.cpu(), "old_logp": old.cpu(), "ref_logp": ref.cpu(), "advantages": adv.cpu()}
    host["mask"] = mask.cpu().to(torch.bool)  # one byte a token, as trainer.engine sends it
    req_bytes = sum(memoryview(p).nbytes for p in loss_request_parts(host, opts))

    def local() -> torch.Tensor:
        h = host
        out = compute_loss(
            h["logp"],
            h["old_logp"],
            h["ref_logp"],
            h["advantages"],
            h["mask"],
            cfg,
            device=dev,
            use_compile=compiled,  # the server reads the same REFEREE_GRPO_COMPILE
        )
        return out.grad.cpu()

    port = free_port()
    sock_dir = tempfile.mkdtemp(prefix="referee-bench-")
    shm_socket = os.path.join(sock_dir, "grpo-shm.sock")
    server = serve(port, torch.get_num_threads(), shm_socket)
    base = f"http://127.0.0.1:{port}"
    client = RefereeClient(ClientConfig(base_url=base, max_retries=0))
    shm_client = RefereeClient(ClientConfig(base_url=base, max_retries=0, shm_socket=shm_socket))
    shm_http_client = RefereeClient(
        ClientConfig(base_url=base, max_retries=0, shm_socket=shm_socket, shm_calls="http")
    )
    net: list[float] = []  # per request: end to end - that request's compute on the service (Server-Timing)

    def call() -> torch.Tensor:
        t0 = time.perf_counter()
        r = client.grpo_loss(host, opts)
        net.append(1e3 * (time.perf_counter() - t0) - (r.server_ms or 0.0))
        return r.grad_logprobs

    # shared memory, as a trainer that writes its log-probs into the buffer (or copies them there from the GPU,
    # which it must do for any transport): the tensors are laid out once, each call moves a small JSON request
    specs = {k: (v.shape, v.dtype) for k, v in host.items()}
    buf = ShmLossBuffer(ShmLossBuffer.size_for(specs))
    for k, v in buf.lay_out(specs).items():
        if k in host:
            v.copy_(host[k])

    # per shared-memory call (on the socket, over HTTP): the service's own compute, and end to end minus it
    shm_server: list[float] = []
    shm_net: list[float] = []
    shm_http_server: list[float] = []
    shm_http_net: list[float] = []

    def shm_call(c: RefereeClient, server_ms: list[float], net_ms: list[float]) -> torch.Tensor:
        t0 = time.perf_counter()
        r = c.grpo_loss_shm(buf, opts)
        server_ms.append(r.server_ms or 0.0)
        net_ms.append(1e3 * (time.perf_counter() - t0) - server_ms[-1])
        return r.grad_logprobs

    def shm_in_place() -> torch.Tensor:
        return shm_call(shm_client, shm_server, shm_net)

    def shm_http_in_place() -> torch.Tensor:
        return shm_call(shm_http_client, shm_http_server, shm_http_net)

    def shm_copied() -> (
        torch.Tensor
    ):  # grpo_loss(tensors) with shm_socket set: copies in, gradient copied out
        return shm_client.grpo_loss(host, opts).grad_logprobs

    raw: RawLoopback | None = None
    try:
        res = client.grpo_loss(host, opts)  # the answer's exact size: the service encodes it the same way
        for c in (shm_client, shm_http_client):
            if not torch.equal(res.grad_logprobs, c.grpo_loss_shm(buf, opts).grad_logprobs):
                raise RuntimeError("the shared-memory answer differs from the HTTP-body one")
        resp = encode_parts({"grad_logprobs": res.grad_logprobs}, {"loss": res.loss, "metrics": res.metrics})
        resp_bytes = sum(memoryview(p).nbytes for p in resp)
        raw = RawLoopback(req_bytes, resp_bytes)
        # every call starts with its inputs out of the caches: the in-process call would otherwise find the
        # 27 MB the HTTP call before it just read in the L3 (32 MB here), and the socket call, whose buffer is
        # another copy, would not
        http, inproc, floor, shm_ms, shm_http_ms, shm_copy_ms = interleaved_ms(
            [call, local, raw, shm_in_place, shm_http_in_place, shm_copied],
            reps,
            sync,
            before=cache_flusher(torch.device("cpu")),
        )
        wake = wake_up_us(ShmChannel(shm_socket))
    finally:
        if raw is not None:
            raw.close()
        client.close()
        shm_client.close()
        shm_http_client.close()
        buf.close()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(sock_dir, ignore_errors=True)
    over = http - inproc
    same = statistics.median(net)  # immune to the server computing faster or slower than this process
    moved = (req_bytes + resp_bytes) / 1e6
    print(
        f"HTTP (referee serve on 127.0.0.1, trainer client, TRL grpo+KL, {'torch.compile' if compiled else 'default (fused kernel on CPU)'}"
        f" path): request {req_bytes / 1e6:.1f} MB, response {resp_bytes / 1e6:.1f} MB\n"
        f"  end to end {http:.2f} ms, in process {inproc:.2f} ms: overhead {over:.2f} ms = "
        f"{over / inproc * 100:.0f}% of compute\n"
        f"  per request, end to end minus its own compute on the service (Server-Timing): {same:.2f} ms = "
        f"{same / inproc * 100:.0f}% of in-process compute, {moved / same:.2f} GB/s effective over loopback\n"
        f"  raw-TCP floor for the same bytes (no HTTP, no user-space copies) {floor:.2f} ms = "
        f"{moved / floor:.2f} GB/s\n"
        f"shared memory (REFEREE_GRPO_SHM_SOCKET; tensors written in the buffer by the trainer):\n"
        f"  calls on the socket (the default): end to end {shm_ms:.2f} ms, overhead "
        f"{shm_ms - inproc:.2f} ms = {(shm_ms - inproc) / inproc * 100:.0f}% of compute; the service's own compute "
        f"in those calls {statistics.median(shm_server):.2f} ms, per call end to end minus it "
        f"{statistics.median(shm_net):.2f} ms = {statistics.median(shm_net) / inproc * 100:.0f}% of in-process compute\n"
        f"  calls over HTTP (a small JSON request): end to end {shm_http_ms:.2f} ms, overhead "
        f"{shm_http_ms - inproc:.2f} ms = {(shm_http_ms - inproc) / inproc * 100:.0f}% of compute; its own "
        f"compute {statistics.median(shm_http_server):.2f} ms, end to end minus it "
        f"{statistics.median(shm_http_net):.2f} ms = {statistics.median(shm_http_net) / inproc * 100:.0f}%\n"
        f"  grpo_loss(tensors) on the socket, copying them in and the gradient out: end to end "
        f"{shm_copy_ms:.2f} ms, overhead {shm_copy_ms - inproc:.2f} ms = "
        f"{(shm_copy_ms - inproc) / inproc * 100:.0f}% of compute\n"
        f"  a round trip that does no work (ping): {wake[0]:.0f} us back to back, {wake[1]:.0f} us when the service "
        f"has slept 5 ms first; a loss call has two such sleeps (the service waiting for it, the trainer waiting "
        f"for its answer): about {2 * (wake[1] - wake[0]) / 1e3:.2f} ms of its overhead is waking up"
    )


def wake_up_us(channel: ShmChannel, reps: int = 100) -> tuple[float, float]:
    """Median socket round trip with no work, after 5 ms idle and right after a few others: the difference is
    what waking a sleeping thread costs here (on a VM, waking an idle vCPU), which every call across processes
    pays. The two are taken in turn so that both see the same machine."""

    def timed_ping() -> float:
        t0 = time.perf_counter()
        channel.ping()
        return 1e6 * (time.perf_counter() - t0)

    try:
        idle, busy = [], []
        for _ in range(reps):
            time.sleep(0.005)
            idle.append(timed_ping())
            for _ in range(3):  # the service's thread, and the vCPU it runs on, are awake now
                channel.ping()
            busy.append(timed_ping())
        return statistics.median(busy), statistics.median(idle)
    finally:
        channel.close()


if __name__ == "__main__":
    main()
