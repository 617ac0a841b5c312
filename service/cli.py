"""The ``referee`` command: ``serve``, ``score`` and ``filter`` (rejection sampling)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import ValidationError

from service.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="referee", description="Reward-and-verifier service for RL.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or REFEREE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000, or REFEREE_PORT)")
    serve.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default 1)")
    serve.add_argument("--log-level", default="info")

    train = sub.add_parser("train", help="the attached GRPO trainer worker (toy policy or a local HF model)")
    try:
        from trainer.cli import add_arguments as add_train_arguments

        add_train_arguments(train)
    except ImportError as e:  # torch is an extra: say how to get it instead of failing every command
        train.set_defaults(train_unavailable=str(e))

    worker = sub.add_parser(
        "sandbox-worker", help="run code jobs from the Redis stream (scaled-out sandboxes)"
    )
    worker.add_argument("--redis-url", default=None, help="default: REFEREE_REDIS_URL")
    worker.add_argument(
        "--backend", default="bwrap", help="local backend that runs the programs (bwrap, docker)"
    )
    worker.add_argument("--concurrency", type=int, default=0, help="jobs at once (default: one per core)")
    worker.add_argument(
        "--claim-idle-s", type=float, default=60.0, help="reclaim jobs idle this long (dead worker)"
    )

    for name, help_text in (
        ("score", "score a JSONL file offline through the same code path as POST /score"),
        ("filter", "rejection sampling: keep the rows whose reward reaches --min-reward"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", type=Path, help="JSONL, one /score item per line ('-' = stdin)")
        p.add_argument("-o", "--output", type=Path, required=True, help="JSONL output ('-' = stdout)")
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument(
            "--weights", type=orjson.loads, default=None, help='JSON, e.g. {"accuracy":1,"format":0.1}'
        )
        p.add_argument("--options", type=orjson.loads, default=None, help="JSON per-verifier options")
        p.add_argument("--no-progress", action="store_true")
        if name == "filter":
            p.add_argument("--min-reward", type=float, default=1.0)
            p.add_argument("--status", default="ok", help="required status (default ok; '' = any)")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "sandbox-worker":
        return _sandbox_worker(args)
    if args.command == "train":
        if getattr(args, "train_unavailable", None):
            sys.stderr.write(
                f"referee train needs torch: pip install 'referee[train]' ({args.train_unavailable})\n"
            )
            return 2
        from trainer.cli import run as run_training

        return run_training(args)
    return asyncio.run(_score_file(args))


def http_implementation() -> str:
    """uvicorn's HTTP parser: httptools (a pinned dependency; a 27 MB /grpo/loss body crosses it with fewer
    copies than h11, ~5 ms less on the dev VM), h11 where it cannot be imported (e.g. no wheel)."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools is a dependency
        return "h11"
    return "httptools"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1 and settings.grpo_shm_socket:
        sys.stderr.write(
            "referee serve: REFEREE_GRPO_SHM_SOCKET needs one worker (a buffer is mapped by one process)\n"
        )
        return 2
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=args.log_level,
        http=http_implementation(),
        timeout_graceful_shutdown=10,
    )
    return 0


def _sandbox_worker(args: argparse.Namespace) -> int:
    import logging
    import signal

    from sandbox import make_runner
    from sandbox.redis_stream import StreamWorker
    from service.pool import default_pool_size

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    url = args.redis_url or Settings().redis_url
    if not url:
        sys.stderr.write("referee sandbox-worker: set --redis-url or REFEREE_REDIS_URL\n")
        return 2
    concurrency = args.concurrency or default_pool_size()
    runner = make_runner(args.backend, workers=concurrency)
    worker = StreamWorker(url, runner, concurrency=concurrency, claim_idle_s=args.claim_idle_s)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.serve_forever()
    finally:
        runner.close()
    return 0


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    stream: TextIO = sys.stdin if str(path) == "-" else path.open(encoding="utf-8", errors="strict")
    with stream:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                yield lineno, None, f"line {lineno}: invalid JSON ({e})"
                continue
            if not isinstance(row, dict):
                yield lineno, None, f"line {lineno}: expected a JSON object"
                continue
            yield lineno, row, None


async def _score_file(args: argparse.Namespace) -> int:
    from service.metrics import Metrics
    from service.schemas import ItemResult, ScoreItem, ScoreRequest, Weights
    from service.scoring import Scorer

    settings = Settings()
    scorer = await Scorer.open(settings, Metrics())
    out: TextIO = sys.stdout if str(args.output) == "-" else args.output.open("w", encoding="utf-8")
    progress = _Progress(enabled=not args.no_progress, total=_count_lines(args.input))
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    rewards: dict[str, list[float]] = defaultdict(list)
    kept = 0
    weights = Weights.model_validate(args.weights) if args.weights else None

    async def flush(batch: list[tuple[dict[str, Any], ScoreItem | None, str | None]]) -> None:
        nonlocal kept
        items = [item for _, item, _ in batch if item is not None]
        request = ScoreRequest(items=items, weights=weights, options=args.options or {})
        results = iter((await scorer.score(request)).results if items else [])
        for row, item, error in batch:
            result: dict[str, Any]
            if item is None:
                result = {
                    "id": row.get("id"),
                    "reward": 0.0,
                    "status": "invalid",
                    "details": {"error": error},
                }
                verifier = "none"
            else:
                scored: ItemResult = next(results)
                result = scored.model_dump()
                verifier = item.verifier or (
                    "math" if item.answer is not None else "code" if item.tests else "none"
                )
            stats[verifier][result["status"]] += 1
            rewards[verifier].append(float(result["reward"]))
            if args.command == "filter":
                if result["reward"] < args.min_reward or (args.status and result["status"] != args.status):
                    continue
                out.write(orjson.dumps({**row, "referee": result}).decode() + "\n")
                kept += 1
            else:
                out.write(orjson.dumps(result).decode() + "\n")
        progress.advance(len(batch))

    try:
        batch: list[tuple[dict[str, Any], ScoreItem | None, str | None]] = []
        for _, row, error in _read_rows(args.input):
            if row is None:
                batch.append(({}, None, error))
            else:
                item_fields = {k: v for k, v in row.items() if k in ScoreItem.model_fields}
                try:
                    batch.append((row, ScoreItem.model_validate(item_fields), None))
                except ValidationError as e:
                    batch.append((row, None, _first_error(e)))
            if len(batch) >= args.batch_size:
                await flush(batch)
                batch = []
        if batch:
            await flush(batch)
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
        await scorer.close()
    _print_summary(stats, rewards, kept if args.command == "filter" else None)
    return 0


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def _count_lines(path: Path) -> int | None:
    if str(path) == "-":
        return None
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


class _Progress:
    """A one-line progress bar on stderr: done/total, items/s, ETA."""

    def __init__(self, *, enabled: bool, total: int | None) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            line = f"\r[{bar:<30}] {self.done}/{self.total} {rate:8.1f} items/s ETA {eta:6.1f}s"
        else:
            line = f"\r{self.done} items {rate:8.1f} items/s"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _print_summary(stats: dict[str, Counter[str]], rewards: dict[str, list[float]], kept: int | None) -> None:
    statuses = sorted({s for c in stats.values() for s in c})
    header = f"{'verifier':<12}{'items':>8}{'mean reward':>13}" + "".join(f"{s:>14}" for s in statuses)
    lines = [header, "-" * len(header)]
    for verifier in sorted(stats):
        counts = stats[verifier]
        n = sum(counts.values())
        mean = sum(rewards[verifier]) / n if n else 0.0
        lines.append(f"{verifier:<12}{n:>8}{mean:>13.4f}" + "".join(f"{counts[s]:>14}" for s in statuses))
    if kept is not None:
        lines.append(f"kept {kept} rows")
    sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
