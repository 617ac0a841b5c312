"""The ``docker`` sandbox backend: a pool of warm, locked-down containers, one ``docker exec`` per run.

Each container is created once from the sandbox image (``containers/sandbox.Dockerfile``) with no network,
a read-only root, tmpfs scratch space, no capabilities, ``no-new-privileges``, uid 65534 and cgroup
limits on memory (swap equal to memory: none), processes and CPU. A run execs a small supervisor
(``_docker_driver.py``) inside it, which wipes the scratch space and kills every leftover process before
and after the program, applies rlimits and the wall-time and output caps. The host keeps its own
deadline: if the supervisor does not answer in time (a program stopped or killed it) the container is
killed and replaced, so nothing a program does can outlive its run.

Costs, measured on a 2-core machine: creating a container ~0.3-0.5 s (paid at start and on recycling),
one exec ~60-100 ms plus the program itself.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.types import Execution, Limits, Program

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "referee-sandbox:dev"
SANDBOX_UID = "65534:65534"
_DRIVER_SOURCE = (Path(__file__).with_name("_docker_driver.py")).read_text(encoding="utf-8")
# Headroom above the program's memory limit for the supervisor, the compiler and the tmpfs contents
# (tmpfs pages are charged to the container's memory cgroup).
_MEMORY_HEADROOM_MB = 192
# Processes beyond the program's own: the idle pid 1, the supervisor, ipcrm, runtime threads.
_EXTRA_PIDS = 32
# How long past the program's own time limits the host waits for the supervisor before it kills the
# whole container.
_HOST_SLACK_S = 5.0


class DockerSandboxError(RuntimeError):
    """The docker backend cannot work here (no daemon, no image); the message says what to do."""


@dataclass(frozen=True)
class _Language:
    source_name: str
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    memory_rlimit: str = "as"  # "data" for V8, which reserves huge address ranges up front
    memory_markers: tuple[str, ...] = ()


# Names and aliases follow the `RUNNERS` registry of the bwrap backend; kept here so this backend
# does not depend on how that one starts processes.
_PYTHON = _Language("main.py", ("python3", "-I", "main.py"), memory_markers=("MemoryError",))
_CPP = _Language(
    "main.cpp",
    ("./main",),
    compile=("g++", "-std=gnu++17", "-O2", "-pipe", "-o", "main", "main.cpp"),
    memory_markers=("std::bad_alloc", "Cannot allocate memory"),
)
_NODE = _Language(
    "main.js",
    ("node", "main.js"),
    memory_rlimit="data",
    memory_markers=("heap out of memory", "Cannot allocate memory", "std::bad_alloc"),
)
LANGUAGES: dict[str, _Language] = {
    **dict.fromkeys(("python", "py", "python3"), _PYTHON),
    **dict.fromkeys(("cpp", "c++", "cxx", "cpp17"), _CPP),
    **dict.fromkeys(("javascript", "js", "node", "nodejs"), _NODE),
}


@dataclass
class _Warm:
    container_id: str
    memory_mb: int
    pids: int


class DockerRunner:
    """``SandboxRunner`` on warm Docker containers. Thread-safe: ``pool_size`` runs at a time.

    Args:
        image: the sandbox image (built by ``.ci/build-images.sh``); default ``$REFEREE_SANDBOX_IMAGE``,
            else ``referee-sandbox:dev``.
        pool_size: warm containers, i.e. concurrent runs; callers beyond it wait for a free one.
            Default: ``workers``, else 2.
        workers: the name ``sandbox.make_runner`` passes the service's ``sandbox_workers`` under.
        cpus: CPU share of each container (``nano_cpus``).
        scratch_mb: size of the ``/sandbox`` tmpfs workdir.
        base_url: the Docker endpoint; default from the environment (``DOCKER_HOST`` or the socket).
        limits: limits the containers are created with; runs with other memory/process limits
            update the container's cgroup first.
    """

    name = "docker"

    def __init__(
        self,
        image: str | None = None,
        pool_size: int | None = None,
        *,
        workers: int | None = None,
        cpus: float = 1.0,
        scratch_mb: int = 128,
        base_url: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        try:
            import docker
        except ImportError as exc:  # pragma: no cover - the `docker` extra is not installed
            raise DockerSandboxError(
                "the docker backend needs the `docker` package (extra `docker`)"
            ) from exc
        image = image or os.environ.get("REFEREE_SANDBOX_IMAGE") or DEFAULT_IMAGE
        pool_size = pool_size or workers or 2
        self.image = image
        self.pool_size = pool_size
        self._cpus = cpus
        self._scratch_mb = scratch_mb
        self._default = limits or Limits()
        try:
            client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
            client.ping()
        except Exception as exc:
            raise DockerSandboxError(
                f"cannot reach the Docker daemon ({exc}); start it (.ci/docker-setup.sh)"
            ) from exc
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise DockerSandboxError(
                f"sandbox image {image!r} not found; build it with .ci/build-images.sh"
            ) from exc
        self._client = client
        self._api = client.api
        self._pool: queue.Queue[_Warm] = queue.Queue()
        self._all: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(pool_size):
            self._pool.put(self._create())

    # -- containers ---------------------------------------------------------------------------------

    def _create(self) -> _Warm:
        memory_mb = self._default.memory_mb + _MEMORY_HEADROOM_MB
        pids = self._default.max_processes + _EXTRA_PIDS
        tmpfs_opts = "rw,nosuid,nodev,uid=65534,gid=65534,mode=0700"
        container = self._client.containers.run(
            self.image,
            command=["sleep", "infinity"],
            detach=True,
            # No init: pid 1 is the idle `sleep`, which the kernel shields from every signal sent from
            # inside the container (a program's `kill -9 -1` included); tini would exit with its child.
            # The supervisor is the subreaper that reaps what programs leave behind.
            init=False,
            user=SANDBOX_UID,
            network_mode="none",
            read_only=True,
            tmpfs={
                "/sandbox": f"{tmpfs_opts},exec,size={self._scratch_mb}m",
                "/tmp": f"{tmpfs_opts},noexec,size=16m",
            },
            shm_size="16m",
            mem_limit=f"{memory_mb}m",
            memswap_limit=f"{memory_mb}m",
            pids_limit=pids,
            nano_cpus=int(self._cpus * 1e9),
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            ipc_mode="private",
            environment={},
            working_dir="/sandbox",
            hostname="sandbox",
            # owner: the host (or api container) that made it, so a crashed owner's leftovers can be found.
            labels={"org.referee.role": "sandbox", "org.referee.owner": socket.gethostname()},
            stop_signal="SIGKILL",
        )
        with self._lock:
            self._all.add(container.id)
        return _Warm(container.id, memory_mb, pids)

    def _discard(self, warm: _Warm) -> None:
        with self._lock:
            self._all.discard(warm.container_id)
        try:
            self._api.remove_container(warm.container_id, force=True)
        except Exception as exc:  # already gone, or the daemon is down: nothing left to clean here
            log.warning("removing sandbox container %s failed: %s", warm.container_id[:12], exc)

    def _fit(self, warm: _Warm, limits: Limits) -> None:
        """Give the container the cgroup limits ``limits`` asks for (no-op when they already match)."""
        memory_mb = limits.memory_mb + _MEMORY_HEADROOM_MB
        pids = limits.max_processes + _EXTRA_PIDS
        if (memory_mb, pids) == (warm.memory_mb, warm.pids):
            return
        # Memory and swap together (swap == memory: no swap); PidsLimit needs the raw endpoint.
        body = {"Memory": memory_mb << 20, "MemorySwap": memory_mb << 20, "PidsLimit": pids}
        url = self._api._url("/containers/{0}/update", warm.container_id)
        self._api._raise_for_status(self._api._post_json(url, data=body))
        warm.memory_mb, warm.pids = memory_mb, pids

    # -- runs -----------------------------------------------------------------------------------------

    def run(self, program: Program, limits: Limits) -> Execution:
        """Run ``program`` under ``limits`` in a warm container; never raises for the program's sake."""
        lang = LANGUAGES.get(program.language.strip().lower())
        if lang is None:
            return _error(f"unsupported language {program.language!r}; known: {sorted(set(LANGUAGES))}")
        if self._closed:
            return _error("the docker sandbox is closed")
        try:
            warm = self._pool.get(timeout=limits.wall_time_s + limits.compile_time_s + 60)
        except queue.Empty:
            return _error("no sandbox container became free in time")
        keep = False
        try:
            self._fit(warm, limits)
            execution, keep = self._exec(warm, program, limits, lang)
            return execution
        except Exception as exc:
            log.exception("docker sandbox run failed")
            return _error(f"docker backend: {type(exc).__name__}: {exc}")
        finally:
            self._give_back(warm, keep)

    def _give_back(self, warm: _Warm, keep: bool) -> None:
        if keep and not self._closed:
            self._pool.put(warm)
            return
        self._discard(warm)
        if self._closed:
            return
        try:
            self._pool.put(self._create())
        except Exception as exc:  # the pool shrinks; later runs wait for the remaining containers
            log.error("could not replace a sandbox container: %s", exc)

    def _exec(self, warm: _Warm, program: Program, limits: Limits, lang: _Language) -> tuple[Execution, bool]:
        nonce = secrets.token_hex(16)
        request = {
            "nonce": nonce,
            "source_name": lang.source_name,
            "source": _b64(program.source.encode()),
            "files": {name: _b64(data) for name, data in program.files.items()},
            "stdin": _b64(program.stdin.encode()),
            "compile": list(lang.compile) if lang.compile else None,
            "run": [*lang.run, *program.argv],
            "memory_rlimit": lang.memory_rlimit,
            "memory_markers": list(lang.memory_markers),
            "limits": {
                "wall_time_s": limits.wall_time_s,
                "cpu_time_s": limits.cpu_time_s,
                "memory_mb": limits.memory_mb,
                "max_output_bytes": limits.max_output_bytes,
                "max_file_bytes": limits.max_file_bytes,
                "compile_time_s": limits.compile_time_s,
            },
        }
        budget = limits.wall_time_s + (limits.compile_time_s if lang.compile else 0.0) + _HOST_SLACK_S
        started = time.monotonic()
        exec_id = self._api.exec_create(
            warm.container_id,
            ["python3", "-I", "-S", "-c", _DRIVER_SOURCE],
            stdin=True,
            user=SANDBOX_UID,
            workdir="/sandbox",
            environment={},
        )["Id"]
        sock = self._api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        try:
            raw.sendall(json.dumps(request).encode())
            raw.shutdown(socket.SHUT_WR)
            stdout, stderr = _read_frames(raw, started + budget)
        except TimeoutError:
            # The supervisor did not answer: the program stopped it or outran it. Kill the container.
            return (
                Execution(
                    status="timeout",
                    exit_code=None,
                    stdout="",
                    stderr="",
                    wall_time_s=time.monotonic() - started,
                    message="host deadline reached; the sandbox container was killed",
                ),
                False,
            )
        finally:
            raw.close()
        wall = time.monotonic() - started
        line = next((ln for ln in stdout.splitlines() if ln.startswith(nonce.encode() + b" ")), None)
        if line is None:
            # The supervisor died before answering: only a program can do that (kill -9 -1, or its
            # parent). The container is replaced; the run counts as the program's failure.
            return (
                Execution(
                    status="runtime_error",
                    exit_code=None,
                    stdout="",
                    stderr=stderr[-2000:].decode("utf-8", "replace"),
                    wall_time_s=wall,
                    message="the program killed the sandbox supervisor",
                ),
                False,
            )
        result = json.loads(line[len(nonce) + 1 :])
        return _to_execution(result), result.get("status") != "sandbox_error"

    def close(self) -> None:
        """Remove every container this runner created."""
        self._closed = True
        with self._lock:
            ids = list(self._all)
            self._all.clear()
        for cid in ids:
            try:
                self._api.remove_container(cid, force=True)
            except Exception as exc:
                log.warning("removing sandbox container %s failed: %s", cid[:12], exc)
        self._client.close()

    def __enter__(self) -> DockerRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_frames(raw: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """Read Docker's multiplexed exec stream (8-byte headers: stream, 0, 0, 0, big-endian length)."""
    streams = {1: bytearray(), 2: bytearray()}
    pending = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        raw.settimeout(left)
        try:
            chunk = raw.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise TimeoutError from exc
            raise
        if not chunk:
            break
        pending += chunk
        while len(pending) >= 8:
            kind, size = struct.unpack(">BxxxL", pending[:8])
            if len(pending) < 8 + size:
                break
            streams.setdefault(kind, bytearray()).extend(pending[8 : 8 + size])
            del pending[: 8 + size]
    return bytes(streams[1]), bytes(streams[2])


def _to_execution(result: dict[str, Any]) -> Execution:
    def text(key: str) -> str:
        return base64.b64decode(result.get(key, "")).decode("utf-8", "replace")

    return Execution(
        status=result["status"],
        exit_code=result.get("exit_code"),
        stdout=text("stdout"),
        stderr=text("stderr"),
        wall_time_s=float(result.get("wall_time_s", 0.0)),
        cpu_time_s=result.get("cpu_time_s"),
        peak_memory_mb=result.get("peak_memory_mb"),
        message=result.get("message", ""),
        compile_output=text("compile_output"),
        stdout_truncated=bool(result.get("stdout_truncated", False)),
        stderr_truncated=bool(result.get("stderr_truncated", False)),
    )


def _error(message: str) -> Execution:
    return Execution(
        status="sandbox_error", exit_code=None, stdout="", stderr="", wall_time_s=0.0, message=message
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
