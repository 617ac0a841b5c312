"""The ``docker`` sandbox backend: a pool of warm, locked-down containers with a supervisor in each.

Each container is created once from the sandbox image (``containers/sandbox.Dockerfile``) with no network,
a read-only root, tmpfs scratch space, no capabilities, ``no-new-privileges``, uid 65534 and cgroup
limits on memory (swap equal to memory: none), processes and CPU. One long-lived ``docker exec`` per
container runs a small supervisor (``_docker_driver.py``); each run is a request to it. It wipes the
scratch space and kills every leftover process before and after the program, applies rlimits and the
wall-time and output caps. The host keeps its own
deadline: if the supervisor does not answer in time (a program stopped or killed it) the container is
killed and replaced, so nothing a program does can outlive its run.

Costs, measured on a 2-core machine: creating a container and its supervisor ~0.3-0.5 s (paid at start
and on recycling); a run then costs one round trip to the supervisor plus the program itself.
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


_SUPERVISOR_DIED = "the program killed the sandbox supervisor"


@dataclass
class _Warm:
    container_id: str
    memory_mb: int
    pids: int
    supervisor: _Stream | None = None  # the long-lived exec the runs are sent to


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
        try:
            for _ in range(pool_size):
                self._pool.put(self._create())
        except Exception as exc:
            self.close()  # the containers made so far must not outlive a runner that never started
            raise DockerSandboxError(f"could not start sandbox containers from {image!r}: {exc}") from exc

    # -- containers ---------------------------------------------------------------------------------

    def _create(self) -> _Warm:
        memory_mb = self._default.memory_mb + _MEMORY_HEADROOM_MB
        pids = self._default.max_processes + _EXTRA_PIDS
        tmpfs_opts = "rw,nosuid,nodev,uid=65534,gid=65534,mode=0700"
        # create, record, then start: a container that fails to start must still be ours to remove.
        container = self._client.containers.create(
            self.image,
            command=["sleep", "infinity"],
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
        warm = _Warm(container.id, memory_mb, pids)
        try:
            container.start()
            warm.supervisor = self._start_supervisor(container.id)
        except Exception:
            self._discard(warm)
            raise
        return warm

    def _start_supervisor(self, container_id: str) -> _Stream:
        """One exec per container for its whole life: runs cost a round trip, not an exec + interpreter."""
        exec_id = self._api.exec_create(
            container_id,
            ["python3", "-I", "-S", "-c", _DRIVER_SOURCE],
            stdin=True,
            user=SANDBOX_UID,
            workdir="/sandbox",
            environment={},
        )["Id"]
        sock = self._api.exec_start(exec_id, socket=True)
        return _Stream(getattr(sock, "_sock", sock))

    def _discard(self, warm: _Warm) -> None:
        if warm.supervisor is not None:
            warm.supervisor.close()
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
        execution = self._run_once(program, limits, lang)
        if execution.message == _SUPERVISOR_DIED:
            # Ambiguous: a hostile program kills the supervisor, but so (rarely, and not yet explained:
            # seen on the first run of a serving process) does something on our side. A fresh
            # container decides: a program that kills it again is the program's failure.
            log.warning("sandbox supervisor died during a run; running it once more in a fresh container")
            execution = self._run_once(program, limits, lang, fresh=True)
        return execution

    def _run_once(
        self, program: Program, limits: Limits, lang: _Language, *, fresh: bool = False
    ) -> Execution:
        """One run on a pooled container, or (``fresh``) on a new one made for it and removed after."""
        if fresh:
            try:
                warm = self._create()
            except Exception as exc:
                return _error(f"docker backend: could not create a container: {exc}")
            try:
                self._fit(warm, limits)
                return self._exec(warm, program, limits, lang)[0]
            except Exception as exc:
                log.exception("docker sandbox run failed")
                return _error(f"docker backend: {type(exc).__name__}: {exc}")
            finally:
                self._discard(warm)
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
        stream = warm.supervisor
        assert stream is not None
        body = json.dumps(request).encode()
        try:
            stream.send(len(body).to_bytes(4, "big") + body)
            line = stream.read_line(nonce.encode() + b" ", started + budget)
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
        except OSError:
            line = None  # the exec's connection broke: the supervisor is gone
        wall = time.monotonic() - started
        if line is None:
            # The supervisor died before answering: only a program can do that (kill -9 -1, or its
            # parent). The container is replaced; the run counts as the program's failure.
            return (
                Execution(
                    status="runtime_error",
                    exit_code=None,
                    stdout="",
                    stderr=stream.stderr_tail().decode("utf-8", "replace"),
                    wall_time_s=wall,
                    message=_SUPERVISOR_DIED,
                ),
                False,
            )
        result = json.loads(line)
        keep = result.get("status") != "sandbox_error" and not result.get("recycle", False)
        return _to_execution(result), keep

    def containers(self) -> frozenset[str]:
        """Ids of the containers this runner holds now (replaced ones drop out)."""
        with self._lock:
            return frozenset(self._all)

    def close(self) -> None:
        """Remove every container this runner created."""
        self._closed = True
        with self._lock:
            ids = list(self._all)
            self._all.clear()
        while True:
            try:
                warm = self._pool.get_nowait()
            except queue.Empty:
                break
            if warm.supervisor is not None:
                warm.supervisor.close()
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


class _Stream:
    """The host end of a supervisor's exec: Docker's multiplexed stream (8-byte frame headers: stream
    id, three zero bytes, big-endian length) read frame by frame, stdout split into lines."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._pending = bytearray()
        self._stdout = bytearray()
        self._stderr = bytearray()

    def send(self, data: bytes) -> None:
        self._sock.settimeout(_HOST_SLACK_S)
        self._sock.sendall(data)

    def read_line(self, prefix: bytes, deadline: float) -> bytes | None:
        """The next stdout line starting with ``prefix`` (without it); ``None`` at end of stream.

        Raises:
            TimeoutError: no such line before ``deadline`` (``time.monotonic()``).
        """
        while True:
            while (end := self._stdout.find(b"\n")) >= 0:
                line = bytes(self._stdout[:end])
                del self._stdout[: end + 1]
                if line.startswith(prefix):
                    return line[len(prefix) :]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 16)  # raises TimeoutError (socket.timeout) at the deadline
            if not chunk:
                return None
            self._pending += chunk
            while len(self._pending) >= 8:
                kind, size = struct.unpack(">BxxxL", self._pending[:8])
                if len(self._pending) < 8 + size:
                    break
                target = self._stdout if kind == 1 else self._stderr
                target += self._pending[8 : 8 + size]
                del self._pending[: 8 + size]
            del self._stderr[:-4096]  # the supervisor's own stderr: keep the tail for diagnostics

    def stderr_tail(self) -> bytes:
        return bytes(self._stderr[-2000:])

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


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
