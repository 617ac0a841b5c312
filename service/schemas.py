"""HTTP request and response models of the native routes (documented in the OpenAPI page)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from verifiers.types import Status

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Weights(BaseModel):
    """How much each reward component counts; the reward is the weighted sum of the components that apply."""

    model_config = _STRICT

    accuracy: float | None = Field(None, description="Weight of the answer's correctness (math, code, ...).")
    format: float | None = Field(
        None, description="Weight of the `<think>…</think><answer>…</answer>` layout."
    )
    language: float | None = Field(None, description="Weight of the chain of thought's language consistency.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    role: str = Field(description="`system`, `user` or `assistant`.")
    content: str = Field(description="The message text.")


class ScoreItem(BaseModel):
    """One completion to score."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "id": "q1-0",
                    "completion": "<think>3*4=12, 2+12=14</think> <answer>14</answer>",
                    "answer": "14",
                }
            ]
        },
    )

    id: str | int | None = Field(None, description="Echoed back in the result; any string or integer.")
    completion: str = Field(description="The model's output (the response only, not the prompt).")
    answer: str | int | float | None = Field(
        None,
        description="Gold final answer; routes the item to the `math` verifier unless `verifier` is set.",
    )
    tests: dict[str, Any] | None = Field(
        None,
        description=(
            "Code tests; routes the item to the `code` verifier. Shapes: "
            '`{"language","cases":[{"stdin","stdout"}]}`, `{"fn_name","cases":[{"args","expected"}]}`, '
            '`{"assert","entry_point"}`, or verl\'s `{"inputs","outputs","fn_name"?}`.'
        ),
    )
    verifier: str | None = Field(
        None, description="Accuracy verifier by name (see GET /verifiers); overrides the routing by field."
    )
    reference: Any = Field(
        None, description="Reference for verifiers other than math/code (e.g. countdown numbers and target)."
    )
    language: str | None = Field(
        None, description="Target language of the chain of thought (ISO 639-1, e.g. `en`, `zh`)."
    )
    prompt: str | list[ChatMessage] | None = Field(
        None, description="The prompt; used to derive the target language when `language` is not given."
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Per-verifier options, keyed by verifier name, e.g. `{"format": {"mode": "lenient"}}`.',
    )
    weights: Weights | None = Field(None, description="Overrides the request's weights for this item.")


class ScoreRequest(BaseModel):
    """A batch of completions. An empty batch is valid."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "q1-0",
                            "completion": "<think>3*4=12, 2+12=14</think> <answer>14</answer>",
                            "answer": "14",
                        },
                        {
                            "id": "q2-0",
                            "completion": "```python\nprint(sum(map(int, input().split())))\n```",
                            "tests": {"language": "python", "cases": [{"stdin": "1 2\n", "stdout": "3\n"}]},
                        },
                    ],
                    "weights": {"accuracy": 1.0, "format": 0.1, "language": 0.2},
                }
            ]
        },
    )

    items: list[ScoreItem] = Field(description="Completions to score; the response keeps their order.")
    weights: Weights | None = Field(
        None,
        description="Defaults: accuracy 1.0, format 0.1, language 0.2 when a target language is known, else 0.",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Default per-verifier options for every item (items may override keys).",
    )
    format_gate: bool = Field(
        False, description="If true, an item whose format fails gets accuracy 0 and `status: format_error`."
    )


class Components(BaseModel):
    accuracy: float | None = Field(None, description="0..1, or null where no accuracy verifier applies.")
    format: float | None = Field(None, description="0..1 (1 = layout satisfied).")
    language: float | None = Field(
        None, description="0..1 share of target-language words; null if no target."
    )


class ItemResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "q1-0",
                    "reward": 1.1,
                    "status": "ok",
                    "components": {"accuracy": 1.0, "format": 1.0, "language": None},
                    "extracted": "14",
                    "details": {"accuracy": {"rule": "exact_integer"}},
                    "elapsed_ms": 0.8,
                    "cached": False,
                }
            ]
        }
    )

    id: str | int | None = Field(description="The request item's id.")
    reward: float = Field(description="Weighted sum of the components that apply.")
    status: Status = Field(
        description=(
            "ok | wrong | no_answer | format_error | timeout | sandbox_error | invalid. "
            "timeout and sandbox_error are infrastructure outcomes: mask or retry them, don't train on their 0."
        )
    )
    components: Components
    extracted: str | None = Field(None, description="What was judged (the final answer, the program).")
    details: dict[str, Any] = Field(default_factory=dict, description="How each component was decided.")
    elapsed_ms: float = Field(description="Time spent on this item inside the service.")
    cached: bool = Field(False, description="Whether the verdicts came from the cache.")


class ScoreResponse(BaseModel):
    results: list[ItemResult]


class VerifierInfo(BaseModel):
    name: str
    component: Literal["accuracy", "format", "language"]
    version: str
    runs_in: Literal["pool", "sandbox"]
    description: str
    options: dict[str, str] = Field(description="Option name → type and default.")


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]]
