"""POST /score over HTTP vs the same verifiers called in-process, on one realistic mixed batch.

    python bench/score_throughput.py [--items 1024] [--rounds 5] [--pool-size 2]

The batch mixes what a GRPO step sends: math items (right, wrong, unanswered, LaTeX answers), format
checks and language-consistency checks, with fresh completions every round so the cache never answers.
In-process = one Python loop calling each verifier function directly (one core, no IPC, no HTTP).
Service = a real `referee serve` on loopback with a pool of N workers. The ratio shows what the service
costs (or gains, with N cores) per item.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MATH = [
    ("<think>6*7 = 42</think> <answer>42</answer>", "42"),
    ("<think>Half of 3 is 1.5</think> <answer>\\frac{3}{2}</answer>", "1.5"),
    ("<think>Try 12.</think> <answer>12</answer>", "14"),
    ("<think>so x = 2 or x = 3</think> <answer>\\{2, 3\\}</answer>", "\\{2,3\\}"),
    ("<think>area is pi r^2 with r=2</think> <answer>4\\pi</answer>", "4\\pi"),
    ("<think>sqrt(8) simplifies</think> <answer>2\\sqrt{2}</answer>", "\\sqrt{8}"),
    ("<think>I am not sure", "7"),
    ("The final answer is \\boxed{\\dfrac{1}{3}}", "\\frac13"),
]
LANG = [
    ("<think>首先计算 $3 \\times 4 = 12$，然后加上 2 得到 14。</think><answer>14</answer>", "zh"),
    ("<think>First compute 3*4 = 12, then add 2 to get 14.</think><answer>14</answer>", "en"),
    ("<think>Primero calculamos 3*4 = 12 y luego sumamos 2, lo que da 14.</think><answer>14</answer>", "es"),
    ("<think>First 3*4 = 12, 然后加 2 得到 14.</think><answer>14</answer>", "zh"),
]


def make_batch(n: int, round_no: int) -> list[dict[str, object]]:
    rng = random.Random(round_no)
    items: list[dict[str, object]] = []
    for i in range(n):
        salt = f" <!-- r{round_no} i{i} -->"  # makes every completion unique: no cache hits
        kind = i % 4
        if kind in (0, 1):
            completion, answer = rng.choice(MATH)
            items.append({"id": i, "completion": completion + salt, "answer": answer})
        elif kind == 2:
            completion, _ = rng.choice(MATH)
            items.append({"id": i, "completion": completion + salt, "verifier": "format"})
        else:
            completion, lang = rng.choice(LANG)
            items.append({"id": i, "completion": completion + salt, "verifier": "language", "language": lang})
    return items


def in_process(items: list[dict[str, object]]) -> tuple[float, list[float]]:
    """Call each item's verifiers directly, as a trainer's reward function would."""
    import verifiers

    verifiers.load_builtin()
    fmt = verifiers.get("format")
    lang = verifiers.get("language")
    math = verifiers.get("math")
    fmt_cfg, lang_cfg, math_cfg = fmt.build_config({}), lang.build_config({}), math.build_config({})
    latencies = []
    started = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        completion = str(item["completion"])
        fmt.fn(completion, None, fmt_cfg)
        if "answer" in item:
            math.fn(completion, item["answer"], math_cfg)
        elif item.get("verifier") == "language":
            lang.fn(completion, item["language"], lang_cfg)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - started, latencies


def start_server(port: int, pool_size: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REFEREE_POOL_SIZE": str(pool_size),
        "REFEREE_CACHE_SIZE": "0",
        "REFEREE_SANDBOX_BACKEND": "none",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the service did not become ready")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--group", type=int, default=64, help="items per request in the latency run")
    args = parser.parse_args()

    local_rates, local_item_lat = [], []
    for r in range(args.rounds):
        seconds, lat = in_process(make_batch(args.items, 1000 + r))
        local_rates.append(args.items / seconds)
        local_item_lat += lat

    proc = start_server(args.port, args.pool_size)
    try:
        url = f"http://127.0.0.1:{args.port}/score"
        with httpx.Client(timeout=300) as client:
            client.post(url, json={"items": make_batch(64, 999)})  # warm-up
            http_rates, item_ms, request_lat = [], [], []
            for r in range(args.rounds):
                batch = make_batch(args.items, r)
                t = time.perf_counter()
                res = client.post(url, json={"items": batch})
                elapsed = time.perf_counter() - t
                res.raise_for_status()
                results = res.json()["results"]
                assert len(results) == len(batch)
                http_rates.append(args.items / elapsed)
                item_ms += [x["elapsed_ms"] for x in results]
            for r in range(args.rounds * 4):  # GRPO-group-sized requests: latency as a trainer sees it
                batch = make_batch(args.group, 5000 + r)
                t = time.perf_counter()
                client.post(url, json={"items": batch}).raise_for_status()
                request_lat.append(time.perf_counter() - t)
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    local = statistics.median(local_rates)
    http = statistics.median(http_rates)
    print(
        f"mixed batch of {args.items} items (math 50%, format 25%, language 25%), {args.rounds} rounds, medians"
    )
    print(f"{'path':<34}{'items/s':>10}{'item p50 ms':>13}{'item p99 ms':>13}")
    print(
        f"{'in-process, 1 core':<34}{local:>10.0f}{pct(local_item_lat, 0.5) * 1e3:>13.2f}"
        f"{pct(local_item_lat, 0.99) * 1e3:>13.2f}"
    )
    print(
        f"{f'POST /score, pool of {args.pool_size}':<34}{http:>10.0f}{pct(item_ms, 0.5):>13.2f}{pct(item_ms, 0.99):>13.2f}"
    )
    print(f"ratio service / in-process throughput: {http / local:.2f}x")
    print(
        f"request latency, {args.group}-item requests: p50 {pct(request_lat, 0.5) * 1e3:.1f} ms, "
        f"p99 {pct(request_lat, 0.99) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
