"""Math verifier benchmark: ours vs plain math-verify, same cases, same run.

The peer is math-verify 0.9.0 called as verl's ``math_verify`` reward calls it: the gold wrapped in
``\\boxed{}``, ``math_metric(gold=(LatexExtractionConfig(),), pred=(ExprExtractionConfig(),
LatexExtractionConfig()))`` over the whole completion, its own signal timeouts on, any exception
scored 0.

Prints:
  1. accuracy, false positives and false negatives per category of the regression suite
     (tests/verifiers/math/cases.py), for both sides;
  2. throughput on a realistic GRPO mix (groups of 8 completions sharing a gold; most answers are
     integers and fractions): items/s per core from CPU time, p50/p99 latency, and the ratio;
  3. worst-case latency on adversarial inputs (tests/verifiers/math/adversarial.py).

Each side runs in its own spawned worker process; the parent kills and replaces a worker whose item
overruns ``--item-timeout`` (the item then counts as a timeout, reward 0), so a hang cannot stall
the bench. Run: ``python bench/math_bench.py [--mix 1000] [--skip-adversarial]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# "math-verify" is verl's reward as is; "mv-on-span" hands it only the text of the last <answer>
# block in $...$ (our extraction's job done for it), to separate its equivalence from its extraction.
SIDES = ("ours", "math-verify", "mv-on-span")


def _load(name: str) -> Any:
    path = ROOT / "tests" / "verifiers" / "math" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_math_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- the two sides, as each worker process runs them ----------------------------------------------


def _make_scorer(side: str) -> Any:
    if side == "ours":
        sys.path.insert(0, str(ROOT))
        from verifiers.math import MathConfig, verify_math, warm_up
        from verifiers.types import VerifierInputError

        warm_up()  # what a service pool worker does at start: import sympy before the first item

        def ours(completion: str, gold: str, options: dict[str, Any]) -> float:
            try:
                return float(verify_math(completion, gold, MathConfig(**options)).score or 0.0)
            except VerifierInputError:
                return 0.0

        return ours

    import logging

    from math_verify.errors import TimeoutException
    from math_verify.metric import math_metric
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    logging.disable(logging.CRITICAL)
    metric = math_metric(
        gold_extraction_target=(LatexExtractionConfig(),),
        pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig()),
    )

    def peer(completion: str, gold: str, options: dict[str, Any]) -> float:
        if side == "mv-on-span":
            start, end = completion.rfind("<answer>"), completion.rfind("</answer>")
            if 0 <= start < end:
                completion = "$" + completion[start + 8 : end].strip().strip("$") + "$"
        try:
            score, _ = metric(["\\boxed{" + gold + "}"], [completion])
            return float(score)
        except Exception:
            return 0.0
        except TimeoutException:
            return 0.0

    return peer


def _worker(side: str, conn: Any) -> None:
    import resource

    score = _make_scorer(side)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        completion, gold, options = msg
        c0, w0 = time.process_time(), time.perf_counter()
        reward = score(completion, gold, options)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send((reward, time.process_time() - c0, time.perf_counter() - w0, rss_mib))


class Runner:
    """A worker process for one side; an item past the timeout kills and replaces the worker."""

    def __init__(self, side: str, timeout: float) -> None:
        self.side = side
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(self.side, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            raise RuntimeError(f"{self.side} worker did not start")
        self.conn.recv()

    peak_rss_mib: float = 0.0

    def score(self, completion: str, gold: str, options: dict[str, Any]) -> tuple[float, float, float, bool]:
        """(reward, cpu seconds, wall seconds, timed out)."""
        start = time.perf_counter()
        self.conn.send((completion, gold, options))
        if self.conn.poll(self.timeout):
            reward, cpu, wall, rss = self.conn.recv()
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            return reward, cpu, wall, False
        self.proc.kill()
        self.proc.join()
        self._start()
        return 0.0, float("nan"), time.perf_counter() - start, True

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


# --- reports ----------------------------------------------------------------------------------


@dataclass
class Tally:
    n: int = 0
    correct: int = 0
    fp: int = 0
    fn: int = 0
    timeouts: int = 0

    def add(self, expected: bool, reward: float, timed_out: bool) -> None:
        got = reward >= 0.5
        self.n += 1
        self.correct += got == expected
        self.fp += got and not expected
        self.fn += expected and not got
        self.timeouts += timed_out

    def cell(self) -> str:
        acc = self.correct / self.n if self.n else 0.0
        return f"{acc:6.3f} {self.fp:4d} {self.fn:4d}"


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def suite_report(runners: dict[str, Runner]) -> None:
    cases_mod = _load("cases")
    print(f"\n## Regression suite: {len(cases_mod.CASES)} labelled cases (acc, false pos, false neg)\n")
    print(f"{'category':<10} {'n':>4} | " + " | ".join(f"{s + ' acc  FP   FN':>22}" for s in SIDES))
    totals = {s: Tally() for s in SIDES}
    cpu: dict[str, list[float]] = {s: [] for s in SIDES}
    for category in cases_mod.CATEGORIES:
        cases = [c for c in cases_mod.CASES if c.category == category]
        tallies = {s: Tally() for s in SIDES}
        for c in cases:
            for side in SIDES:
                reward, c_s, _, timed_out = runners[side].score(c.completion, c.gold, c.options)
                if not timed_out:
                    cpu[side].append(c_s)
                tallies[side].add(c.expected, reward, timed_out)
                totals[side].add(c.expected, reward, timed_out)
        print(f"{category:<10} {len(cases):>4} | " + " | ".join(f"{tallies[s].cell():>22}" for s in SIDES))
    print(f"{'all':<10} {totals['ours'].n:>4} | " + " | ".join(f"{totals[s].cell():>22}" for s in SIDES))
    print("timeouts: " + ", ".join(f"{s} {totals[s].timeouts}" for s in SIDES))
    # The suite is sympy-heavy on purpose (notation, guards): a harder mix than training data.
    print(
        "suite throughput (items/s per core, CPU; p99 ms): "
        + ", ".join(
            f"{s} {len(cpu[s]) / sum(cpu[s]):.0f} ({_percentile(cpu[s], 0.99) * 1e3:.1f})" for s in SIDES
        )
    )


def realistic_mix(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """GRPO-like items: groups of 8 completions per gold, a reasoning block, then the answer.

    Golds: 60% integers, 15% fractions, 10% decimals, 10% radicals/pi, 5% pairs/intervals.
    Half the completions are right, written in the notations models use.
    """
    rng = random.Random(seed)
    items: list[tuple[str, str, bool]] = []
    filler = "We set up the equation and simplify term by term, checking each step. " * 12
    while len(items) < n:
        r = rng.random()
        if r < 0.60:
            k = rng.randint(-50, 2000)
            gold, right, wrong = str(k), [str(k), f"{k:,}" if k >= 1000 else str(k), f"x = {k}"], str(k + 1)
        elif r < 0.75:
            a, b = rng.randint(1, 40), rng.randint(2, 41)
            gold, right, wrong = (
                f"\\frac{{{a}}}{{{b}}}",
                [f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}", f"{a}/{b}"],
                f"\\frac{{{a + 1}}}{{{b}}}",
            )
        elif r < 0.85:
            k = rng.randint(1, 999) / 100
            gold, right, wrong = f"{k:.2f}", [f"{k:.2f}", f"{k:.2f}0"], f"{k + 0.1:.2f}"
        elif r < 0.95:
            k = rng.randint(2, 30)
            gold, right, wrong = (
                f"{k}\\sqrt{{2}}",
                [f"{k}\\sqrt{{2}}", f"\\sqrt{{{2 * k * k}}}"],
                f"{k}\\sqrt{{3}}",
            )
        else:
            a, b = rng.randint(0, 9), rng.randint(10, 20)
            gold, right, wrong = f"({a}, {b}]", [f"({a}, {b}]", f"{a} < x \\leq {b}"], f"[{a}, {b}]"
        for _ in range(8):
            ok = rng.random() < 0.5
            answer = rng.choice(right) if ok else wrong
            wrap = rng.random()
            if wrap < 0.6:
                completion = f"<think>{filler}</think>\n<answer>{answer}</answer>"
            else:
                completion = f"<think>{filler}</think>\nTherefore the answer is $\\boxed{{{answer}}}$."
            items.append((completion, gold, ok))
    return items[:n]


def throughput_report(runners: dict[str, Runner], n: int) -> None:
    items = realistic_mix(n)
    print(
        f"\n## Throughput on a realistic mix: {len(items)} items, groups of 8 per gold, one process per side\n"
    )
    stats: dict[str, dict[str, float]] = {}
    for side in SIDES:
        runner = runners[side]
        for completion, gold, _ in items[:16]:  # warm-up: lazy imports, first parses
            runner.score(completion, gold, {})
        cpu: list[float] = []
        tally = Tally()
        for completion, gold, expected in items:
            reward, c, _, timed_out = runner.score(completion, gold, {})
            tally.add(expected, reward, timed_out)
            if not timed_out:
                cpu.append(c)
        stats[side] = {
            "ips": len(cpu) / sum(cpu),
            "p50": statistics.median(cpu) * 1e3,
            "p99": _percentile(cpu, 0.99) * 1e3,
            "max": max(cpu) * 1e3,
            "acc": tally.correct / tally.n,
        }
    print(f"{'side':<12} {'items/s/core':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'accuracy':>9}")
    for side in SIDES:
        s = stats[side]
        print(
            f"{side:<12} {s['ips']:>12.0f} {s['p50']:>8.2f} {s['p99']:>8.2f} {s['max']:>8.1f} {s['acc']:>9.3f}"
        )
    for peer in SIDES[1:]:
        print(f"ratio ours / {peer}: {stats['ours']['ips'] / stats[peer]['ips']:.1f}x items/s per core")


def adversarial_report(timeout: float) -> None:
    adversarial = _load("adversarial").ADVERSARIAL
    print(
        f"\n## Adversarial inputs: {len(adversarial)} items, CPU/wall seconds per item (timeout {timeout:.0f} s wall)\n"
    )
    worst = dict.fromkeys(SIDES, 0.0)
    worst_wall = dict.fromkeys(SIDES, 0.0)
    rss = dict.fromkeys(SIDES, 0.0)
    rewarded = dict.fromkeys(SIDES, 0)
    timeouts = dict.fromkeys(SIDES, 0)
    rows = []
    for side in SIDES:
        runner = Runner(side, timeout)
        runner.score("\\boxed{\\sqrt{2}}", "\\sqrt{2}", {})
        for name, completion, gold in adversarial:
            reward, cpu, wall, timed_out = runner.score(completion, gold, {})
            cost = wall if timed_out else cpu
            worst[side] = max(worst[side], cost)
            worst_wall[side] = max(worst_wall[side], wall)
            rewarded[side] += reward >= 0.5
            timeouts[side] += timed_out
            rows.append((side, name, cost, wall, timed_out))
        rss[side] = runner.peak_rss_mib
        runner.close()
    by_name: dict[str, dict[str, str]] = {}
    for side, name, cost, wall, timed_out in rows:
        by_name.setdefault(name, {})[side] = f">{wall:.1f} killed" if timed_out else f"{cost:.3f}/{wall:.3f}"
    print(f"{'input':<28} " + " ".join(f"{s + ' cpu/wall s':>22}" for s in SIDES))
    for name, cells in by_name.items():
        print(f"{name:<28} " + " ".join(f"{cells[s]:>22}" for s in SIDES))
    for side in SIDES:
        print(
            f"{side}: worst CPU {worst[side]:.3f} s, worst wall {worst_wall[side]:.3f} s, killed {timeouts[side]},"
            f" rewarded {rewarded[side]}, peak RSS {rss[side]:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mix", type=int, default=1000, help="items in the realistic mix")
    parser.add_argument("--item-timeout", type=float, default=20.0, help="seconds before a worker is killed")
    parser.add_argument("--skip-suite", action="store_true")
    parser.add_argument("--skip-adversarial", action="store_true")
    args = parser.parse_args()
    runners = {side: Runner(side, args.item_timeout) for side in SIDES}
    try:
        if not args.skip_suite:
            suite_report(runners)
        throughput_report(runners, args.mix)
    finally:
        for r in runners.values():
            r.close()
    if not args.skip_adversarial:
        adversarial_report(args.item_timeout)


if __name__ == "__main__":
    main()
