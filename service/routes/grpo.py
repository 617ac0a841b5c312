"""`POST /grpo/advantages` and `POST /grpo/loss`: thin HTTP edges over `service.grpo`.

Both accept JSON. `/grpo/loss` also accepts a binary body, `Content-Type: application/vnd.safetensors`: the
tensors `logp`, `old_logp`?, `ref_logp`?, `advantages`, `mask`? and the scalar options as a JSON object in
the safetensors metadata key `options` (or the `X-Grpo-Options` header). A binary request gets a binary
response: tensor `grad_logprobs` and metadata `loss` and `metrics` (JSON). A trainer on the same host can instead
name a shared-memory buffer it registered (`application/vnd.referee.shm+json`, `service/grpo/shm.py`): the
tensors are read and the gradients written in place. `socket_loss` answers the same call made as a message on
the shared-memory socket instead of over HTTP. See docs/grpo.md.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import threading
from typing import Any, Literal

import orjson
import torch
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from service.config import Settings
from service.grpo.advantages import GrpoInputError, compute_advantages
from service.grpo.batcher import LossBatcher, LossJob, default_device
from service.grpo.config import (
    GrpoConfigError,
    TrlAdvantageConfig,
    TrlLossConfig,
    VerlAdvantageConfig,
    VerlLossConfig,
)
from service.grpo.entropy import check_entropy
from service.grpo.losses import LossOutput, prepare_inputs
from service.grpo.shm import SHM_MEDIA_TYPE, ShmError, ShmRegistry, UnknownBuffer, header_bytes, loss_tensors
from service.grpo.wire import SAFETENSORS_MEDIA_TYPE, WireError, decode, encode_parts
from service.routes.strict_json import StrictJSONRoute, strict_loads, unprocessable

router = APIRouter(tags=["grpo"], route_class=StrictJSONRoute)  # /grpo/advantages: strict like the rest

_VERL_ADV = {"adv_estimator", "norm_adv_by_std_in_grpo", "gamma"}
_TRL_ADV = {"scale_rewards"}
_VERL_LOSS = set(VerlLossConfig.__dataclass_fields__)
_TRL_LOSS = set(TrlLossConfig.__dataclass_fields__)


class ScoredItem(BaseModel):
    """One entry of a `/score` response's `results` (only `reward` is used; the rest is ignored)."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    reward: float | None = Field(None, description="The item's combined reward; null = unscorable (NaN).")


class AdvantagesRequest(BaseModel):
    """Rewards (or a `/score` response's results) plus groups and estimator options."""

    flavor: Literal["verl", "trl"] = Field("verl", description="Whose conventions to follow (GRPO.md §4).")
    rewards: list[float | None] | None = Field(
        None, description="One outcome reward per completion; null = NaN."
    )
    results: list[ScoredItem] | None = Field(None, description="A `/score` response's `results` list.")
    group_ids: list[str | int] | None = Field(
        None, description="Group (prompt uid) of each completion, any order."
    )
    group_size: int | None = Field(
        None, ge=1, description="Contiguous groups of this size (TRL num_generations)."
    )
    lengths: list[int] | None = Field(
        None, description="Response lengths (opo, reinforce_plus_plus(_baseline))."
    )
    reward_baselines: list[float] | None = Field(None, description="Greedy-rollout rewards (remax).")
    adv_estimator: str | None = Field(None, description="verl algorithm.adv_estimator", examples=["grpo"])
    norm_adv_by_std_in_grpo: bool | None = Field(None, description="verl: divide by the group std.")
    gamma: float | None = Field(None, description="verl: discount for reinforce_plus_plus.")
    scale_rewards: Literal["group", "batch", "none"] | bool | None = Field(
        None, description="TRL scale_rewards."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"flavor": "verl", "rewards": [1, 0, 1, 1], "group_size": 4}]},
    )


class AdvantagesResponse(BaseModel):
    advantages: list[float] | None = Field(None, description="One advantage per completion.")
    token_advantages: list[list[float]] | None = Field(
        None, description="reinforce_plus_plus: per token, row i has lengths[i] values."
    )


class LossOptions(BaseModel):
    """Scalar options of `/grpo/loss`: verl and TRL names exactly as their configs spell them."""

    model_config = ConfigDict(extra="forbid")
    flavor: Literal["verl", "trl"] = Field("verl", description="Whose loss to compute.")
    # verl
    loss_mode: str | None = Field(None, description="verl policy_loss.loss_mode", examples=["vanilla"])
    clip_ratio: float | None = None
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float | None = None
    loss_agg_mode: str | None = Field(None, examples=["token-mean"])
    loss_scale_factor: float | None = None
    use_kl_loss: bool | None = None
    kl_loss_coef: float | None = None
    kl_loss_type: str | None = Field(None, examples=["low_var_kl"])
    clip_cov_ratio: float | None = None
    clip_cov_lb: float | None = None
    clip_cov_ub: float | None = None
    kl_cov_ratio: float | None = None
    ppo_kl_coef: float | None = None
    tau_pos: float | None = None
    tau_neg: float | None = None
    seed: int | None = None
    entropy_coeff: float | None = Field(None, description="verl: entropy bonus weight (send `entropy`).")
    dp_size: int | None = Field(None, description="verl global_batch_info: data-parallel size.")
    batch_num_tokens: int | None = Field(
        None, description="verl: valid tokens of the global batch (token-mean, needed when dp_size > 1)."
    )
    global_batch_size: int | None = Field(
        None, description="verl: non-empty sequences of the global batch (seq-mean modes, dp_size > 1)."
    )
    # TRL
    loss_type: str | None = Field(None, description="TRL loss_type", examples=["dapo"])
    epsilon: float | None = None
    epsilon_high: float | None = None
    delta: float | None = None
    beta: float | None = None
    importance_sampling_level: Literal["token", "sequence"] | None = None
    use_bias_correction_kl: bool | None = None
    max_completion_length: int | None = None
    sapo_temperature_pos: float | None = None
    sapo_temperature_neg: float | None = None
    entropy_coef: float | None = Field(None, description="TRL: static entropy bonus weight (send `entropy`).")
    gradient_accumulation_steps: int | None = Field(
        None, description="TRL: the current accumulation window; every loss is divided by it."
    )
    steps_per_generation: int | None = Field(None, description="TRL GRPOConfig.steps_per_generation.")
    num_processes: int | None = Field(None, description="TRL: accelerate's process count.")
    num_items_in_batch: int | None = Field(
        None, description="TRL: valid tokens of the generation batch over all processes (dapo, cispo)."
    )


class LossRequest(LossOptions):
    """JSON form (small batches). Large ones: use the safetensors body."""

    logp: list[list[float]] = Field(..., description="(B, T) policy log-probs of the sampled tokens.")
    old_logp: list[list[float]] | None = Field(
        None, description="(B, T) old-policy log-probs; null = on-policy."
    )
    ref_logp: list[list[float]] | None = Field(None, description="(B, T) reference log-probs (KL term).")
    advantages: list[float] | list[list[float]] = Field(
        ..., description="(B,) per sequence or (B, T) per token."
    )
    mask: list[list[int]] | None = Field(None, description="(B, T) response mask of 0/1; null = all ones.")
    entropy: list[list[float]] | None = Field(
        None, description="(B, T) per-token entropies for the entropy bonus (entropy_coeff / entropy_coef)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "flavor": "trl",
                    "loss_type": "grpo",
                    "beta": 0.04,
                    "logp": [[-1.0, -0.5, -2.0]],
                    "old_logp": [[-1.1, -0.4, -2.0]],
                    "ref_logp": [[-1.0, -0.7, -1.5]],
                    "advantages": [0.5],
                    "mask": [[1, 1, 0]],
                }
            ]
        },
    )


class LossResponse(BaseModel):
    loss: float | None = Field(
        ..., description="Loss value (null if not finite, e.g. verl token-mean of nothing)."
    )
    metrics: dict[str, float | None] = Field(..., description="Peer-named metrics.")
    grad_logprobs: list[list[float]] = Field(..., description="d loss / d logp, 0 on masked tokens.")
    grad_entropy: list[list[float]] | None = Field(
        None, description="d loss / d entropy, when `entropy` was sent (0 on masked tokens)."
    )


def _other_flavor_fields(flavor: str, given: set[str], verl: set[str], trl: set[str]) -> set[str]:
    mine, other = (verl, trl) if flavor == "verl" else (trl, verl)
    return (given & other) - mine


def _config_from(opts: LossOptions) -> VerlLossConfig | TrlLossConfig:
    given = {k for k in opts.model_fields_set if getattr(opts, k) is not None} - {"flavor"}
    given &= _VERL_LOSS | _TRL_LOSS
    wrong = _other_flavor_fields(opts.flavor, given, _VERL_LOSS, _TRL_LOSS)
    if wrong:
        raise HTTPException(422, f"options {sorted(wrong)} do not belong to flavor {opts.flavor!r}")
    kwargs = {k: getattr(opts, k) for k in given}
    try:
        return VerlLossConfig(**kwargs) if opts.flavor == "verl" else TrlLossConfig(**kwargs)
    except GrpoConfigError as e:
        raise HTTPException(422, str(e)) from e


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _scalars(out: LossOutput) -> tuple[float | None, dict[str, float | None]]:
    """The loss and the metrics as JSON can carry them (NaN and inf as null)."""
    return _finite(float(out.loss)), {k: _finite(v) for k, v in out.metrics.items()}


def get_batcher(request: Request) -> LossBatcher:
    return batcher_of(request.app.state)


_BATCHER_LOCK = threading.Lock()


def batcher_of(state: Any) -> LossBatcher:
    """The app's loss batcher (created on first use; `app.state.grpo_batcher` may be preset). Thread-safe: the
    shared-memory socket's threads ask for it too."""
    with _BATCHER_LOCK:
        b = getattr(state, "grpo_batcher", None)
        if b is None:
            b = LossBatcher(device=default_device())
            state.grpo_batcher = b
        return b


@router.post("/grpo/advantages", response_model=AdvantagesResponse, response_model_exclude_none=True)
def grpo_advantages(req: AdvantagesRequest) -> AdvantagesResponse:
    """Group-relative advantages (verl estimators or TRL scale_rewards) from rewards or `/score` results."""
    if (req.rewards is None) == (req.results is None):
        raise HTTPException(422, "give exactly one of rewards or results")
    raw = req.rewards if req.rewards is not None else [r.reward for r in req.results or []]
    rewards = torch.tensor([math.nan if r is None else float(r) for r in raw], dtype=torch.float64)
    given = {k for k in req.model_fields_set if getattr(req, k) is not None}
    wrong = _other_flavor_fields(req.flavor, given, _VERL_ADV, _TRL_ADV)
    if wrong:
        raise HTTPException(422, f"options {sorted(wrong)} do not belong to flavor {req.flavor!r}")
    try:
        if req.flavor == "verl":
            cfg: VerlAdvantageConfig | TrlAdvantageConfig = VerlAdvantageConfig(
                **{k: getattr(req, k) for k in _VERL_ADV & given}
            )
        else:
            sr = req.scale_rewards
            sr = "group" if sr is True else "none" if sr is False else sr
            cfg = TrlAdvantageConfig(scale_rewards=sr) if sr is not None else TrlAdvantageConfig()
        adv = compute_advantages(
            rewards,
            cfg,
            group_ids=req.group_ids,
            group_size=req.group_size,
            lengths=torch.tensor(req.lengths) if req.lengths is not None else None,
            reward_baselines=torch.tensor(req.reward_baselines, dtype=torch.float64)
            if req.reward_baselines is not None
            else None,
        )
    except (GrpoConfigError, GrpoInputError) as e:
        raise HTTPException(422, str(e)) from e
    if adv.dim() == 2:
        lengths = req.lengths or []
        tok = [adv[i, : lengths[i]].tolist() for i in range(adv.shape[0])]
        return AdvantagesResponse(advantages=None, token_advantages=tok)
    return AdvantagesResponse(advantages=adv.tolist(), token_advantages=None)


_DEFAULT_MAX_BODY: int = Settings.model_fields["max_body_bytes"].default


def _body_limit(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return settings.max_body_bytes if isinstance(settings, Settings) else _DEFAULT_MAX_BODY


async def read_binary_body(request: Request, limit: int) -> bytes | memoryview:
    """The request body, copied chunk by chunk straight into one buffer sized by Content-Length.

    `request.body()` keeps every chunk and joins them at the end: a second full-size copy. Here each chunk is
    copied once, into a `torch.empty` buffer (torch's allocator reuses freed memory; a fresh zeroed
    `bytearray` of 27 MB costs ~20 ms of page faults on our VM). A declared length over `limit` is a 413
    before anything is read; a body that runs past or stops short of its declared length is a 400. Without
    Content-Length (chunked upload) the chunks are counted against `limit` and joined.
    """
    too_large = HTTPException(413, f"request body exceeds {limit} bytes (REFEREE_MAX_BODY_BYTES)")
    declared = request.headers.get("content-length")
    if declared is None:
        chunks, seen = [], 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)
    try:
        size = int(declared)
    except ValueError:
        raise HTTPException(400, "invalid Content-Length header") from None
    if size < 0:
        raise HTTPException(400, "invalid Content-Length header")
    if size > limit:
        raise too_large
    view = torch.empty(size, dtype=torch.uint8).numpy().data
    pos = 0
    async for chunk in request.stream():
        end = pos + len(chunk)
        if end > size:
            raise HTTPException(400, f"request body is longer than its Content-Length ({size} bytes)")
        view[pos:end] = chunk
        pos = end
    if pos != size:
        raise HTTPException(400, f"request body has {pos} bytes, its Content-Length says {size}")
    return view


class PartsResponse(Response):
    """A response whose body is sent as several ASGI chunks, never joined into one `bytes`.

    For the safetensors answer: the header piece, then a byte view of each tensor (`encode_parts`), so the
    8 MB gradient goes from its tensor to the server's transport without an extra copy.
    """

    def __init__(
        self,
        parts: list[bytes | memoryview],
        media_type: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.parts = parts
        length = sum(memoryview(p).nbytes for p in parts)
        super().__init__(
            content=None,
            status_code=status_code,
            headers={**(headers or {}), "content-length": str(length)},
            media_type=media_type,
            background=background,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
        if not self.parts:
            await send({"type": "http.response.body", "body": b""})
        if self.background is not None:
            await self.background()


def _tensor(x: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
    try:
        return torch.tensor(x, dtype=dtype)
    except (ValueError, TypeError) as e:
        raise HTTPException(422, f"{name} is not a rectangular numeric array: {e}") from e


_INPUTS = ("logp", "old_logp", "ref_logp", "advantages", "mask", "entropy")


def _named_inputs(tensors: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    """logp, old_logp, ref_logp, advantages, mask, entropy of a decoded body (None where absent)."""
    unknown = set(tensors) - set(_INPUTS)
    if unknown or "logp" not in tensors or "advantages" not in tensors:
        raise HTTPException(
            422,
            "tensors must be logp, advantages and optional old_logp, ref_logp, mask, entropy; "
            f"got {sorted(tensors)}",
        )
    return tuple(tensors.get(k) for k in _INPUTS)


class ShmLossRequest(BaseModel):
    """`Content-Type: application/vnd.referee.shm+json`: the tensors are in a registered shared-memory buffer."""

    model_config = ConfigDict(extra="forbid")
    buffer: str = Field(
        ..., pattern=r"^[0-9a-f]{32}$", description="The id the registration socket answered."
    )
    options: LossOptions = Field(default_factory=LossOptions)


def _shm_tensors(state: Any, buffer_id: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    registry: ShmRegistry | None = getattr(state, "grpo_shm", None)
    if registry is None:
        raise HTTPException(
            409,
            "the shared-memory channel is off on this service (set REFEREE_GRPO_SHM_SOCKET to a socket path)",
        )
    try:
        return loss_tensors(registry.get(buffer_id))
    except UnknownBuffer as e:
        raise HTTPException(404, str(e)) from e
    except ShmError as e:
        raise HTTPException(422, str(e)) from e


@router.post(
    "/grpo/loss",
    response_model=LossResponse,
    openapi_extra={
        "requestBody": {
            "content": {
                SAFETENSORS_MEDIA_TYPE: {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "safetensors with logp, old_logp?, ref_logp?, advantages, mask?; "
                    "options JSON in metadata key `options` or header X-Grpo-Options",
                },
                SHM_MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "required": ["buffer"],
                        "properties": {
                            "buffer": {"type": "string", "description": "id from the registration socket"},
                            "options": {
                                "type": "object",
                                "description": "the scalar options of the JSON form",
                            },
                        },
                    },
                    "description": "tensors in a registered shared-memory buffer (REFEREE_GRPO_SHM_SOCKET); "
                    "the answer is JSON {loss, metrics, written} and the gradients are written into the buffer",
                },
            }
        }
    },
)
async def grpo_loss(request: Request, response: Response) -> Any:
    """Loss, peer metrics and d loss / d logp per token (`logp.backward(grad_logprobs)`).

    The `Server-Timing` header says how long the computation took (`compute;dur=<ms>`), so a client can
    tell it from the transport.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    binary = ctype == SAFETENSORS_MEDIA_TYPE
    if binary:
        raw = await read_binary_body(request, _body_limit(request))
        try:
            tensors, meta = decode(raw)
        except WireError as e:
            raise HTTPException(400, str(e)) from e
        raw_opts = meta.get("options") or request.headers.get("x-grpo-options") or "{}"
        given = strict_loads(raw_opts, "options")
        try:
            opts = LossOptions.model_validate(given)
        except ValidationError as e:
            raise HTTPException(422, f"invalid options: {e}") from e
        logp, old, ref, adv, mask, entropy = _named_inputs(tensors)
    elif ctype == SHM_MEDIA_TYPE:
        try:
            shm_req = ShmLossRequest.model_validate(strict_loads(await request.body()))
        except ValidationError as e:
            raise unprocessable(e) from e
        job, outputs = _shm_job(request.app.state, shm_req)
        out = await get_batcher(request).submit(job)
        return JSONResponse(_shm_answer(out, outputs), headers=_timing(job))
    else:
        try:
            req = LossRequest.model_validate(strict_loads(await request.body()))
        except ValidationError as e:
            raise unprocessable(e) from e
        opts = req
        logp = _tensor(req.logp, "logp", torch.float64)
        old = _tensor(req.old_logp, "old_logp", torch.float64) if req.old_logp is not None else None
        ref = _tensor(req.ref_logp, "ref_logp", torch.float64) if req.ref_logp is not None else None
        adv = _tensor(req.advantages, "advantages", torch.float64)
        mask = _tensor(req.mask, "mask", torch.int64) if req.mask is not None else None
        entropy = _tensor(req.entropy, "entropy", torch.float64) if req.entropy is not None else None
    job = _checked_job(logp, old, ref, adv, mask, entropy, _config_from(opts))
    out = await get_batcher(request).submit(job)
    loss, metrics = _scalars(out)
    if binary:
        grads = {"grad_logprobs": out.grad}
        if out.grad_entropy is not None:
            grads["grad_entropy"] = out.grad_entropy
        parts = encode_parts(grads, {"loss": loss, "metrics": metrics})
        return PartsResponse(parts, media_type=SAFETENSORS_MEDIA_TYPE, headers=_timing(job))
    response.headers.update(_timing(job))
    grad_h = None if out.grad_entropy is None else out.grad_entropy.tolist()
    return LossResponse(loss=loss, metrics=metrics, grad_logprobs=out.grad.tolist(), grad_entropy=grad_h)


def _timing(job: LossJob) -> dict[str, str]:
    return {"server-timing": f"compute;dur={job.run_s * 1e3:.3f}"}


def _checked_job(
    logp: torch.Tensor,
    old: torch.Tensor | None,
    ref: torch.Tensor | None,
    adv: torch.Tensor,
    mask: torch.Tensor | None,
    entropy: torch.Tensor | None,
    cfg: VerlLossConfig | TrlLossConfig,
) -> LossJob:
    """The loss job for these inputs, after the checks that answer 422 before anything is queued."""
    if mask is None:
        mask = torch.ones(logp.shape, dtype=torch.bool)
    try:
        # shape checks before queueing; a zero-stride bool stand-in for the mask skips the full-size `mask != 0`
        # that prepare_inputs would compute and drop (1 ms at 512 x 4096; compute_loss converts it anyway)
        shape_only_mask = torch.zeros((), dtype=torch.bool).expand(mask.shape)
        prepare_inputs(logp, old, ref, adv, shape_only_mask, "cpu")
        if entropy is not None:
            check_entropy(entropy, logp.shape)
        if isinstance(cfg, VerlLossConfig) and cfg.use_kl_loss and ref is None:
            raise GrpoInputError("use_kl_loss needs ref_logp")
        if isinstance(cfg, TrlLossConfig) and cfg.beta != 0.0 and ref is None:
            raise GrpoInputError("beta != 0 needs ref_logp")
    except GrpoInputError as e:
        raise HTTPException(422, str(e)) from e
    return LossJob(logp, old, ref, adv, mask, cfg, entropy)


def _shm_job(state: Any, req: ShmLossRequest) -> tuple[LossJob, dict[str, torch.Tensor]]:
    """The job of a shared-memory call and the buffer's output tensors, which the job writes into (on the
    device thread, by the kernel itself where it can)."""
    tensors, outputs = _shm_tensors(state, req.buffer)
    logp, old, ref, adv, mask, entropy = _named_inputs(tensors)
    job = _checked_job(logp, old, ref, adv, mask, entropy, _config_from(req.options))
    job.grad_out, job.grad_entropy_out = outputs["grad_logprobs"], outputs.get("grad_entropy")
    return job, outputs


def _shm_answer(out: LossOutput, outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    loss, metrics = _scalars(out)
    return {"loss": loss, "metrics": metrics, "written": sorted(outputs)}


def socket_loss(state: Any, token: str | None, message: dict[str, Any]) -> dict[str, Any]:
    """`{"op": "loss", "buffer": id, "options": {...}, "token"?}` on the shared-memory socket (shm.py): the
    shared-memory form of `POST /grpo/loss` without HTTP, run on the caller's (the connection's) thread.

    Same checks, same errors (as `{"error": detail, "status": code}`) and same answer as the HTTP form, plus
    `compute_ms`; `token` must equal REFEREE_API_TOKEN when one is set (the HTTP form's bearer token)."""
    try:
        if token is not None and not hmac.compare_digest(
            str(message.get("token", "")).encode(), token.encode()
        ):
            raise HTTPException(401, 'missing or wrong token (send "token": REFEREE_API_TOKEN with the call)')
        job, outputs = _socket_job(state, {k: v for k, v in message.items() if k not in ("op", "token")})
        out = batcher_of(state).run_now(job)
    except HTTPException as e:
        return {"error": e.detail, "status": e.status_code}
    return {**_shm_answer(out, outputs), "compute_ms": round(job.run_s * 1e3, 3)}


def _socket_job(state: Any, call: dict[str, Any]) -> tuple[LossJob, dict[str, torch.Tensor]]:
    """`_shm_job` for a socket call (`{"buffer", "options"}`), from its message.

    A trainer sends the same options on the same layout call after call, so the last checked job is kept on its
    buffer with the header and the message it was checked against, and reused while both are the same: that
    skips validating the options and the shapes again, ~0.3 ms a call when the caches are cold (the loss before
    it streamed 35 MB through them), a tenth of a 512 x 4096 loss. Anything else takes the full path."""
    key = orjson.dumps(call, option=orjson.OPT_SORT_KEYS)
    registry: ShmRegistry | None = getattr(state, "grpo_shm", None)
    buffer_id = call.get("buffer")
    buf = registry.find(buffer_id) if registry is not None and isinstance(buffer_id, str) else None
    memo = buf.checked_call if buf is not None else None
    if buf is not None and memo is not None and memo[1] == key and memo[0] == header_bytes(buf):
        return dataclasses.replace(memo[2], run_s=0.0), memo[3]
    try:
        req = ShmLossRequest.model_validate(call)
    except ValidationError as e:
        raise unprocessable(e) from e
    job, outputs = _shm_job(state, req)
    layout = buf.layout if buf is not None else None
    if buf is not None and layout is not None and layout[1].get("logp") is job.logp:
        buf.checked_call = (layout[0], key, job, outputs)  # checked against that very layout
    return job, outputs
