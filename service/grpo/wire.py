"""Tensor wire codec: safetensors bodies (`Content-Type: application/vnd.safetensors`).

A body is a standard safetensors file: named tensors plus a string-to-string `__metadata__` map. Scalar
options travel as JSON in the metadata key `options` (or in the `X-Grpo-Options` header); the response puts
`loss` and `metrics` (JSON) in its metadata and the gradient as tensor `grad`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024


class WireError(ValueError):
    """A binary body that is not a valid safetensors file (maps to HTTP 400)."""


def encode(tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> bytes:
    """Serialise tensors (made contiguous, on CPU) and JSON-able metadata values to safetensors bytes."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)


def read_metadata(body: bytes) -> dict[str, str]:
    """The `__metadata__` map of a safetensors body (without loading tensors)."""
    if len(body) < 8:
        raise WireError("body too short for safetensors")
    (n,) = struct.unpack("<Q", body[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(body):
        raise WireError("safetensors header length is out of range")
    try:
        header = json.loads(body[8 : 8 + n])
    except ValueError as e:
        raise WireError(f"safetensors header is not JSON: {e}") from e
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise WireError("safetensors __metadata__ must be a map")
    return {str(k): str(v) for k, v in meta.items()}


def decode(body: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors body.

    Raises:
        WireError: malformed body.
    """
    meta = read_metadata(body)
    try:
        tensors = st_load(body)
    except Exception as e:  # safetensors raises its own error type for any malformed body
        raise WireError(f"invalid safetensors body: {e}") from e
    return tensors, meta
