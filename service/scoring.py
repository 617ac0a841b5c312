"""``POST /score`` orchestration: route items, consult the cache, dispatch, combine components.

The same ``Scorer`` serves the HTTP route, the compat routes and ``referee score`` (offline), so an
item is judged by one code path wherever it comes from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio

import verifiers
from service.cache import VerdictCache, cache_key, is_cacheable, make_cache
from service.config import Settings
from service.item_task import Check, ItemTask, run_item_task
from service.metrics import Metrics
from service.pool import PoolResult, ProcessPool, default_pool_size
from service.schemas import Components, ItemResult, ScoreItem, ScoreRequest, ScoreResponse
from verifiers.language import detect_target_language
from verifiers.registry import UnknownVerifierError
from verifiers.types import COMPONENTS, Component, Status, Verdict, VerifierInputError

log = logging.getLogger("referee.scoring")

# Verifiers that always run beside the accuracy verifier.
FORMAT_VERIFIER = "format"
LANGUAGE_VERIFIER = "language"
# Field-based routing when an item names no verifier.
ROUTE_BY_FIELD: tuple[tuple[str, str], ...] = (("answer", "math"), ("tests", "code"))


class BackpressureError(Exception):
    """The pool's queue is full; the caller should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("the verifier queue is full; retry later")
        self.retry_after_s = retry_after_s


@dataclass
class PreparedItem:
    """An item after validation and routing, ready to dispatch (or already invalid)."""

    item: ScoreItem
    weights: dict[Component, float]
    primary: str | None = None  # the verifier whose status becomes the item's status
    task: ItemTask | None = None
    pool_task: ItemTask | None = None  # the checks that run in the process pool
    sandbox_checks: tuple[Check, ...] = ()  # the checks that run programs
    error: str | None = None
    key: str | None = None
    format_gate: bool = False


class Scorer:
    def __init__(
        self,
        settings: Settings,
        *,
        pool: ProcessPool,
        cache: VerdictCache,
        sandbox: Any,
        sandbox_error: str | None,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cache = cache
        self.sandbox = sandbox
        self.sandbox_error = sandbox_error
        self.metrics = metrics
        self._sandbox_limiter = anyio.CapacityLimiter(settings.sandbox_workers or default_pool_size())

    # --- lifecycle -----------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings, metrics: Metrics) -> Scorer:
        load_verifiers(settings.plugins)
        pool = ProcessPool(
            settings.pool_size or default_pool_size(),
            max_queue=settings.max_queue,
            memory_mb=settings.worker_memory_mb,
            preload=("verifiers", *settings.plugins),
        )
        await pool.start()
        if not await pool.wait_ready():
            log.warning("pool workers are still starting; items will wait for them")
        metrics.bind_pool(lambda: pool.queue_depth, lambda: pool.busy, lambda: pool.restarts)
        sandbox, sandbox_error = open_sandbox(settings)
        cache = make_cache(settings.redis_url, settings.cache_size, settings.cache_ttl_s)
        return cls(
            settings, pool=pool, cache=cache, sandbox=sandbox, sandbox_error=sandbox_error, metrics=metrics
        )

    async def close(self) -> None:
        await self.pool.close()
        await self.cache.close()
        if self.sandbox is not None:
            await anyio.to_thread.run_sync(self.sandbox.close)

    # --- preparation (pure, in the API process) --------------------------------------------------
    def prepare(self, request: ScoreRequest) -> list[PreparedItem]:
        return [self._prepare_item(item, request) for item in request.items]

    def _prepare_item(self, item: ScoreItem, request: ScoreRequest) -> PreparedItem:
        target = item.language or _derive_language(item)
        weights = _weights(self.settings, request, item, has_target=target is not None)
        prepared = PreparedItem(item=item, weights=weights, format_gate=request.format_gate)
        try:
            if len(item.completion) > self.settings.max_completion_chars:
                raise VerifierInputError(
                    f"completion has {len(item.completion)} characters; the limit is "
                    f"{self.settings.max_completion_chars} (REFEREE_MAX_COMPLETION_CHARS)"
                )
            options = _merged_options(request.options, item.options)
            unknown = sorted(set(options) - set(verifiers.names()))
            if unknown:
                raise VerifierInputError(
                    f"options name unknown verifier(s) {unknown}; valid: {verifiers.names()}"
                )
            primary = _route(item)
            if primary is None:
                raise VerifierInputError(
                    "item has no `answer`, `tests`, `reference` or `verifier`; set `verifier` "
                    f"(one of {verifiers.names()}) to choose what to score"
                )
            spec = verifiers.get(primary)
            if primary == LANGUAGE_VERIFIER:
                if target is None:
                    raise VerifierInputError(
                        "the language verifier needs `language` or a `prompt` to detect it from"
                    )
                reference: Any = target
            else:
                reference = _reference_for(primary, item)
            checks = [Check(spec.component, primary, reference, spec.build_config(options.get(primary)))]
            if primary != FORMAT_VERIFIER:
                spec = verifiers.get(FORMAT_VERIFIER)
                checks.append(
                    Check("format", FORMAT_VERIFIER, None, spec.build_config(options.get(FORMAT_VERIFIER)))
                )
            if target is not None and primary != LANGUAGE_VERIFIER:
                spec = verifiers.get(LANGUAGE_VERIFIER)
                config = spec.build_config(options.get(LANGUAGE_VERIFIER))
                checks.append(Check("language", LANGUAGE_VERIFIER, target, config))
            prepared.primary = primary
            prepared.task = ItemTask(item.completion, tuple(checks))
            prepared.pool_task = _pool_part(prepared.task)
            prepared.sandbox_checks = tuple(
                c for c in checks if verifiers.get(c.verifier).runs_in == "sandbox"
            )
            prepared.key = cache_key(prepared.task)
        except (VerifierInputError, UnknownVerifierError) as e:
            prepared.error = str(e)
        return prepared

    # --- execution -----------------------------------------------------------------------------
    async def score(self, request: ScoreRequest) -> ScoreResponse:
        prepared = self.prepare(request)
        return ScoreResponse(results=await self.score_prepared(prepared))

    async def score_prepared(self, prepared: Sequence[PreparedItem]) -> list[ItemResult]:
        runnable = [p for p in prepared if p.task is not None and p.key is not None]
        cached = await self.cache.get_many([p.key for p in runnable if p.key is not None])
        hits: dict[int, dict[str, Verdict]] = {}
        misses: list[PreparedItem] = []
        for p, hit in zip(runnable, cached, strict=True):
            if hit is None:
                misses.append(p)
            else:
                hits[id(p)] = hit
        self.metrics.cache.labels("hit").inc(len(hits))
        self.metrics.cache.labels("miss").inc(len(misses))
        pool_jobs = sum(1 for p in misses if p.pool_task is not None)
        if not self.pool.try_admit(pool_jobs):
            self.metrics.rejected.inc()
            raise BackpressureError()

        computed = await asyncio.gather(*(self._run(p) for p in misses))
        fresh: dict[int, tuple[dict[str, Verdict], float]] = {
            id(p): out for p, out in zip(misses, computed, strict=True)
        }
        await self.cache.put_many(
            {p.key: fresh[id(p)][0] for p in misses if p.key is not None and is_cacheable(fresh[id(p)][0])}
        )

        results: list[ItemResult] = []
        for p in prepared:
            if p.error is not None or p.task is None:
                result = _invalid_result(p)
            elif id(p) in hits:
                result = combine(p, hits[id(p)], elapsed_ms=0.0, cached=True)
            else:
                verdicts, elapsed = fresh[id(p)]
                result = combine(p, verdicts, elapsed_ms=elapsed * 1000, cached=False)
            self.metrics.items.labels(p.primary or "none", result.status).inc()
            if not result.cached:
                self.metrics.item_seconds.labels(p.primary or "none").observe(result.elapsed_ms / 1000)
            results.append(result)
        return results

    async def _run(self, p: PreparedItem) -> tuple[dict[str, Verdict], float]:
        """Verdicts of one item and the time spent judging it (not waiting in the queue)."""
        assert p.task is not None
        pool_task, sandbox_checks = p.pool_task, p.sandbox_checks
        if not sandbox_checks and pool_task is not None:  # the common case: one pool job, no gather
            result = await self.pool.run(run_item_task, pool_task, self.settings.item_timeout_s)
            return _from_pool(result, pool_task), result.elapsed_s
        jobs: list[Any] = [self._run_sandboxed(p.task.completion, check) for check in sandbox_checks]
        if pool_task is not None:
            jobs.append(self.pool.run(run_item_task, pool_task, self.settings.item_timeout_s))
        outcomes = await asyncio.gather(*jobs)
        verdicts: dict[str, Verdict] = {}
        elapsed = 0.0
        for check, (verdict, seconds) in zip(sandbox_checks, outcomes, strict=False):
            verdicts[check.component] = verdict
            elapsed = max(elapsed, seconds)
        if pool_task is not None:
            result = outcomes[-1]
            verdicts.update(_from_pool(result, pool_task))
            elapsed = max(elapsed, result.elapsed_s)
        return verdicts, elapsed

    async def _run_sandboxed(self, completion: str, check: Check) -> tuple[Verdict, float]:
        started = time.perf_counter()
        verdict = await self._sandboxed_verdict(completion, check)
        return verdict, time.perf_counter() - started

    async def _sandboxed_verdict(self, completion: str, check: Check) -> Verdict:
        if self.sandbox is None:
            return Verdict(
                "sandbox_error",
                None,
                details={"error": self.sandbox_error or "no sandbox backend is configured"},
            )
        spec = verifiers.get(check.verifier)
        try:
            return await anyio.to_thread.run_sync(
                spec.fn,
                completion,
                check.reference,
                check.config,
                self.sandbox,
                limiter=self._sandbox_limiter,
            )
        except VerifierInputError as e:
            return Verdict("invalid", None, details={"error": str(e)})
        except Exception as e:  # noqa: BLE001 - a sandbox failure is our failure, never a silent 0
            log.exception("sandboxed verifier %s failed", check.verifier)
            return Verdict("sandbox_error", None, details={"error": f"{type(e).__name__}: {e}"[:1000]})

    async def ready(self) -> dict[str, Any]:
        return {
            "pool_workers": self.pool.ready_workers,
            "pool_size": self.pool.size,
            "cache": self.cache.name,
            "cache_ok": await self.cache.ping(),
            "sandbox": getattr(self.sandbox, "name", None),
            "sandbox_error": self.sandbox_error,
            "verifiers": verifiers.names(),
        }


# --- pure helpers -----------------------------------------------------------------------------------
def load_verifiers(plugins: Sequence[str] = ()) -> None:
    import importlib

    verifiers.load_builtin()
    for module in plugins:
        importlib.import_module(module)


def open_sandbox(settings: Settings) -> tuple[Any, str | None]:
    """The configured sandbox runner, or (None, why) — code items then get ``sandbox_error``."""
    if settings.sandbox_backend == "none":
        return None, "code execution is disabled (REFEREE_SANDBOX_BACKEND=none)"
    if settings.sandbox_backend == "redis":
        if not settings.redis_url:
            return None, "REFEREE_SANDBOX_BACKEND=redis needs REFEREE_REDIS_URL"
        from sandbox.redis_stream import RedisStreamRunner

        try:
            return RedisStreamRunner(settings.redis_url), None
        except Exception as e:  # noqa: BLE001
            return None, f"the sandbox job queue at REFEREE_REDIS_URL is unreachable: {e}"
    try:
        from sandbox import make_runner  # type: ignore[attr-defined]
    except ImportError as e:
        return None, f"the sandbox package is unavailable: {e}"
    try:
        return make_runner(settings.sandbox_backend, workers=settings.sandbox_workers or None), None
    except Exception as e:  # noqa: BLE001 - the API still serves math/format/language
        log.error("sandbox backend %r unavailable: %s", settings.sandbox_backend, e)
        return None, f"sandbox backend {settings.sandbox_backend!r} unavailable: {e}"


def _route(item: ScoreItem) -> str | None:
    if item.verifier is not None:
        return item.verifier
    for field_name, verifier in ROUTE_BY_FIELD:
        if getattr(item, field_name) is not None:
            return verifier
    return None


def _reference_for(verifier: str, item: ScoreItem) -> Any:
    if item.reference is not None:
        return item.reference
    if verifier == "code" or (item.tests is not None and item.answer is None):
        return item.tests
    if item.answer is not None:
        return item.answer if isinstance(item.answer, str) else _number_text(item.answer)
    if verifiers.get(verifier).component == "accuracy":
        raise VerifierInputError(
            f"verifier {verifier!r} needs a reference: give `answer`, `tests` or `reference`"
        )
    return None


def _number_text(x: int | float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _merged_options(
    request_options: dict[str, dict[str, Any]], item_options: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {name: dict(values) for name, values in request_options.items()}
    for name, values in item_options.items():
        merged.setdefault(name, {}).update(values)
    return merged


def _derive_language(item: ScoreItem) -> str | None:
    if item.prompt is None:
        return None
    if isinstance(item.prompt, str):
        text = item.prompt
    else:
        users = [m.content for m in item.prompt if m.role == "user"]
        text = users[-1] if users else ""
    return detect_target_language(text)


def _weights(
    settings: Settings, request: ScoreRequest, item: ScoreItem, *, has_target: bool
) -> dict[Component, float]:
    weights: dict[Component, float] = {
        "accuracy": settings.default_accuracy_weight,
        "format": settings.default_format_weight,
        "language": settings.default_language_weight if has_target else 0.0,
    }
    for source in (request.weights, item.weights):
        if source is None:
            continue
        given = source.model_dump(exclude_none=True)
        for component in COMPONENTS:
            if component in given:
                weights[component] = float(given[component])
    return weights


def _pool_part(task: ItemTask | None) -> ItemTask | None:
    if task is None:
        return None
    checks = tuple(c for c in task.checks if verifiers.get(c.verifier).runs_in == "pool")
    return replace(task, checks=checks) if checks else None


def _from_pool(result: PoolResult, task: ItemTask) -> dict[str, Verdict]:
    if result.outcome == "ok":
        verdicts: dict[str, Verdict] = result.value
        return verdicts
    status: Status = "timeout" if result.outcome == "timeout" else "invalid"
    message = result.message
    if result.outcome == "crashed":
        message = f"the verifier worker died while scoring this item ({message})"
    return {c.component: Verdict(status, None, details={"error": message}) for c in task.checks}


def combine(p: PreparedItem, verdicts: dict[str, Verdict], *, elapsed_ms: float, cached: bool) -> ItemResult:
    """Weighted sum of the components that apply; the primary verifier's status is the item's."""
    assert p.task is not None
    primary_component = next(c.component for c in p.task.checks if c.verifier == p.primary)
    scores: dict[Component, float | None] = dict.fromkeys(COMPONENTS)
    for component in COMPONENTS:
        if component in verdicts:
            scores[component] = verdicts[component].score
    primary = verdicts[primary_component]
    status: Status = primary.status
    failures = [v for v in verdicts.values() if v.status in ("timeout", "invalid", "sandbox_error")]
    if failures and status not in ("timeout", "invalid", "sandbox_error"):
        status = failures[0].status
    fmt = verdicts.get("format")
    if p.format_gate and fmt is not None and fmt.status == "format_error" and status in ("ok", "wrong"):
        status = "format_error"
        if scores["accuracy"] is not None:
            scores["accuracy"] = 0.0
    reward = sum((p.weights[c] * s for c, s in scores.items() if s is not None), 0.0)
    if status in ("timeout", "invalid", "sandbox_error"):
        reward = 0.0
    extracted = primary.extracted if primary.extracted is not None else (fmt.extracted if fmt else None)
    details = {c: v.details for c, v in verdicts.items() if v.details}
    return ItemResult(
        id=p.item.id,
        reward=reward,
        status=status,
        components=Components(**scores),
        extracted=extracted,
        details=details,
        elapsed_ms=round(elapsed_ms, 3),
        cached=cached,
    )


def _invalid_result(p: PreparedItem) -> ItemResult:
    return ItemResult(
        id=p.item.id,
        reward=0.0,
        status="invalid",
        components=Components(),
        extracted=None,
        details={"error": p.error or "invalid item"},
        elapsed_ms=0.0,
    )
