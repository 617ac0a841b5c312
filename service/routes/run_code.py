"""``POST /run_code``: SandboxFusion's request and response shapes, so verl's and ROLL's
``sandbox_fusion.url`` can point at Referee unchanged.

Mapping of our ``Execution`` onto SandboxFusion's result:

* ``ok`` → ``Success``, ``run_result.status = Finished``, return code 0.
* ``runtime_error`` / ``memory`` / ``output_limit`` → ``Failed``, ``Finished`` with the return code.
* ``timeout`` → ``Failed``, ``run_result.status = TimeLimitExceeded``.
* ``compile_error`` → ``Failed``, ``compile_result`` ``Finished`` with a non-zero code, no run.
* ``sandbox_error``, a bad request field (unknown language, bad base64, bad file name) →
  ``SandboxError`` with a message, HTTP 200 as SandboxFusion does: never a silent 0.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import posixpath
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox.types import Execution, Limits, Program, SandboxRunner

router = APIRouter(tags=["compat"])

# SandboxFusion language names (and a few spellings people use) -> the sandbox's language names.
LANGUAGES: dict[str, str] = {
    "python": "python",
    "python3": "python",
    "cpp": "cpp",
    "c++": "cpp",
    "nodejs": "javascript",
    "javascript": "javascript",
    "js": "javascript",
}
DEFAULT_MEMORY_MB = 1024  # what memory_limit_MB=-1 ("no limit" in SandboxFusion) gets here
MAX_MEMORY_MB = 8192
MAX_TIMEOUT_S = 300.0
_PROGRAM_HAS_FETCH = any(f.name == "fetch_files" for f in dataclasses.fields(Program))


class RunCodeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    language: str = "python"
    stdin: str | None = ""
    compile_timeout: float = Field(10, gt=0)
    run_timeout: float = Field(10, gt=0)
    memory_limit_MB: int = -1  # noqa: N815 - SandboxFusion's field name
    files: dict[str, str | None] = Field(default_factory=dict)
    fetch_files: list[str] = Field(default_factory=list)


class CommandRunResult(BaseModel):
    status: Literal["Finished", "Error", "TimeLimitExceeded"]
    execution_time: float | None = None
    return_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class RunCodeResponse(BaseModel):
    status: Literal["Success", "Failed", "SandboxError"]
    message: str = ""
    compile_result: CommandRunResult | None = None
    run_result: CommandRunResult | None = None
    executor_pod_name: str | None = None
    files: dict[str, str] = Field(default_factory=dict)


class _BadRequest(ValueError):
    pass


def _safe_name(name: str) -> str:
    norm = posixpath.normpath(name)
    if not name or name.startswith("/") or norm.startswith("..") or "\x00" in name or norm in (".", ""):
        raise _BadRequest(f"file name {name!r} must be a relative path inside the workdir")
    return norm


def _decode_files(files: dict[str, str | None]) -> dict[str, bytes]:
    out = {}
    for name, data in files.items():
        try:
            out[_safe_name(name)] = base64.b64decode(data or "", validate=True)
        except (binascii.Error, ValueError) as e:
            if isinstance(e, _BadRequest):
                raise
            raise _BadRequest(f"files[{name!r}] is not valid base64") from None
    return out


def build_program(req: RunCodeRequest) -> tuple[Program, Limits]:
    """Translate a SandboxFusion request into our ``Program`` and ``Limits``."""
    language = LANGUAGES.get(req.language)
    if language is None:
        raise _BadRequest(f"unsupported language {req.language!r}; supported: {', '.join(sorted(LANGUAGES))}")
    memory = DEFAULT_MEMORY_MB if req.memory_limit_MB <= 0 else min(req.memory_limit_MB, MAX_MEMORY_MB)
    run_timeout = min(req.run_timeout, MAX_TIMEOUT_S)
    extra: dict[str, Any] = {}
    if req.fetch_files:
        if not _PROGRAM_HAS_FETCH:
            raise _BadRequest("fetch_files is not supported by this sandbox backend")
        extra["fetch_files"] = tuple(_safe_name(n) for n in req.fetch_files)
    program = Program(
        language=language, source=req.code, stdin=req.stdin or "", files=_decode_files(req.files), **extra
    )
    limits = Limits(
        wall_time_s=run_timeout,
        cpu_time_s=run_timeout,
        memory_mb=memory,
        compile_time_s=min(req.compile_timeout, MAX_TIMEOUT_S),
    )
    return program, limits


def to_response(ex: Execution, compiled: bool) -> RunCodeResponse:
    """Translate our ``Execution`` into SandboxFusion's response."""
    if ex.status == "sandbox_error":
        return RunCodeResponse(status="SandboxError", message=ex.message or "sandbox failure")
    files = {name: base64.b64encode(data).decode("ascii") for name, data in ex.files.items()}
    if ex.status == "compile_error":
        failed_compile = CommandRunResult(
            status="TimeLimitExceeded" if "timeout" in ex.message.lower() else "Finished",
            execution_time=ex.wall_time_s,
            return_code=ex.exit_code if ex.exit_code not in (None, 0) else 1,
            stdout="",
            stderr=ex.compile_output or ex.message,
        )
        return RunCodeResponse(
            status="Failed", message=ex.message, compile_result=failed_compile, files=files
        )
    compile_result: CommandRunResult | None = (
        CommandRunResult(
            status="Finished", execution_time=None, return_code=0, stdout="", stderr=ex.compile_output
        )
        if compiled
        else None
    )
    run_result = CommandRunResult(
        status="TimeLimitExceeded" if ex.status == "timeout" else "Finished",
        execution_time=ex.wall_time_s,
        return_code=ex.exit_code if ex.exit_code is not None else (0 if ex.status == "ok" else -9),
        stdout=ex.stdout,
        stderr=ex.stderr,
    )
    ok = ex.status == "ok" and run_result.return_code == 0
    message = "" if ok else (ex.message or ex.status)
    return RunCodeResponse(
        status="Success" if ok else "Failed",
        message=message,
        compile_result=compile_result,
        run_result=run_result,
        files=files,
    )


@router.post("/run_code", response_model=RunCodeResponse)
async def run_code(req: RunCodeRequest, request: Request) -> RunCodeResponse:
    """Run one program, SandboxFusion style (``status``: Success / Failed / SandboxError)."""
    try:
        program, limits = build_program(req)
    except _BadRequest as e:
        return RunCodeResponse(status="SandboxError", message=str(e))
    runner: SandboxRunner | None = getattr(request.app.state, "sandbox", None)
    if runner is None:
        return RunCodeResponse(status="SandboxError", message="no sandbox is configured on this server")
    try:
        ex = await anyio.to_thread.run_sync(runner.run, program, limits)
    except Exception as e:  # a backend bug must still answer in SandboxFusion's shape
        return RunCodeResponse(status="SandboxError", message=f"sandbox failure: {type(e).__name__}: {e}")
    return to_response(ex, compiled=program.language == "cpp")
