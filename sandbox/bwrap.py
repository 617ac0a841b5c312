"""The bubblewrap backend: a pool of warm sandboxes, each a ``python3 -I -S`` fork server as pid 1.

Isolation of one sandbox (see docs/sandbox.md): new user, pid, net, ipc, uts, mount and cgroup
namespaces; only /usr (and the /bin, /lib* links into it) bound read-only; a size-capped private tmpfs
at /tmp (the workdir) and /dev/shm, everything else read-only; uid/gid 65534 with no capabilities;
an empty allow-listed environment; our own seccomp filter; per-run rlimits set in the forked child.
When the host runs us as root, each slot's bwrap runs as its own unprivileged host uid, so that an
escape lands as nobody and RLIMIT_NPROC counts that slot's processes only.

The killer lives outside: wall time and output caps are enforced by the host, which on overrun
SIGKILLs the outer bwrap; its pid-namespace init (the fork server) dies with it (``--die-with-parent``)
and the kernel then kills every process of the namespace, double-forked daemons included. Such a
sandbox is replaced by a fresh one, as is any sandbox whose server reports leftovers after a run.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox import seccomp
from sandbox.cgroups import SlotCgroup
from sandbox.flow import StepOutcome, StepRequest, run_program
from sandbox.io_pump import pump
from sandbox.pool import FifoPool, QueueFull, QueueTimeout
from sandbox.types import Execution, Limits, Program

log = logging.getLogger(__name__)

SERVER_SOURCE = (Path(__file__).with_name("_forkserver.py")).read_text()
SANDBOX_UID = 65534
UID_RANGE_START = 1_500_000
UID_STRIDE = 256
_instances = itertools.count()
PATH_ENV = "/usr/local/bin:/usr/bin:/bin"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class SandboxUnavailable(RuntimeError):
    """The backend cannot run here (bwrap missing, namespaces refused...)."""


@dataclass(frozen=True)
class BwrapConfig:
    """Knobs of the bwrap backend.

    Attributes:
        workers: number of warm sandboxes (runs in parallel); default: CPU cores.
        max_waiting: runs allowed to wait for a free sandbox before ``run`` answers sandbox_error.
        queue_timeout_s: longest a run waits for a sandbox.
        tmpfs_mb: size of the private /tmp (the workdir); /dev/shm gets a quarter of it.
        python: interpreter of the fork server (must live under /usr).
        uid_base: first host uid of the slots when started as root (slot i runs as uid_base + i);
            default: derived from our pid and a per-process counter, so runners do not share uids
            (RLIMIT_NPROC counts per uid).
        recycle_after: runs after which a sandbox is replaced anyway (hygiene, not a safety need).
        use_seccomp: load our seccomp filter (x86_64 only).
        use_cgroups: put each sandbox in its own memory/pids/cpu cgroup where the host allows it.
    """

    workers: int | None = None
    max_waiting: int = 1024
    queue_timeout_s: float = 300.0
    tmpfs_mb: int = 256
    python: str = "/usr/bin/python3"
    uid_base: int | None = None
    recycle_after: int = 1000
    use_seccomp: bool = True
    use_cgroups: bool = True
    bwrap: str = "bwrap"


def _sealed_memfd(name: str, data: bytes) -> int:
    """A read-only fd on a sealed memfd holding ``data``: the sandbox can read it, never grow it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    return ro


def _only_child(pid: int) -> int | None:
    """Host pid of the single child of ``pid`` (bwrap's namespace init), if it can be read."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if len(kids) == 1 else None


def _pack_files(files: dict[str, bytes]) -> bytes:
    """Files for the fork server's child: u32 header length, JSON [[name, size], ...], raw bytes."""
    header = json.dumps([[name, len(data)] for name, data in files.items()]).encode()
    return b"".join([len(header).to_bytes(4, "little"), header, *files.values()])


def _bind_args() -> list[str]:
    """Read-only binds of the runtime only: /usr, and /bin, /lib* as links (merged /usr) or binds."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(top), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    for etc in ("/etc/alternatives", "/etc/ld.so.cache"):
        args += ["--ro-bind-try", etc, etc]
    return args


class WarmSandbox:
    """One bwrap sandbox with its fork server; used by one run at a time."""

    def __init__(
        self,
        cfg: BwrapConfig,
        host_uid: int | None,
        filter_bytes: bytes | None,
        cgroup: SlotCgroup | None = None,
    ) -> None:
        self.cfg = cfg
        self.cgroup = cgroup
        self.runs = 0
        self.dead = False
        host_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctrl = host_sock
        tmpfs = cfg.tmpfs_mb << 20
        argv = [
            cfg.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            *_bind_args(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(max(tmpfs // 4, 1 << 20)),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(tmpfs),
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--hostname",
            "sandbox",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "PATH",
            PATH_ENV,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "TMPDIR",
            "/tmp",
            "--chdir",
            "/tmp",
        ]
        pass_fds = [child_sock.fileno()]
        seccomp_fd = None
        if filter_bytes is not None:
            seccomp_fd = seccomp.filter_fd(filter_bytes)
            os.set_inheritable(seccomp_fd, True)
            argv += ["--seccomp", str(seccomp_fd)]
            pass_fds.append(seccomp_fd)
        argv += [cfg.python, "-I", "-S", "-c", SERVER_SOURCE, str(child_sock.fileno())]
        ids: dict[str, object] = {}
        if cgroup is not None:
            procs = cgroup.procs_files()

            def enter() -> None:
                # In the child before exec, still root: join the slot's cgroups, then drop to the
                # slot's uid (Popen's own user= switch would run before this and forbid the join).
                me = str(os.getpid()).encode()
                for path in procs:
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.write(fd, me)
                    finally:
                        os.close(fd)
                if host_uid is not None:
                    os.setgroups([])
                    os.setresgid(host_uid, host_uid, host_uid)
                    os.setresuid(host_uid, host_uid, host_uid)

            ids["preexec_fn"] = enter
        elif host_uid is not None:
            ids = {"user": host_uid, "group": host_uid, "extra_groups": []}
        try:
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                start_new_session=True,
                env={"PATH": PATH_ENV, "LANG": "C.UTF-8"},
                **ids,  # type: ignore[arg-type]
            )
        finally:
            child_sock.close()
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        host_sock.settimeout(15.0)
        try:
            hello = host_sock.recv(1 << 16)
        except OSError:
            hello = b""
        host_sock.settimeout(None)
        if not hello:
            err = self._stderr_tail()
            self.kill()
            raise SandboxUnavailable(f"bwrap sandbox did not start: {err or 'no message'}")
        info = json.loads(hello)
        self.server_pid_inside = info.get("pid")
        self.init_host_pid = _only_child(self.proc.pid)

    def _stderr_tail(self) -> str:
        try:
            assert self.proc.stderr is not None
            return (self.proc.stderr.read(8192) or b"").decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        """End the whole sandbox: SIGKILL to the outer bwrap; the namespace's init dies with it."""
        self.dead = True
        # Kill the namespace's init: the kernel then kills every process in the namespace, and the
        # outer bwrap reaps init and exits. Killing the outer bwrap first would orphan init to the
        # host's pid 1, whose zombie may linger and keep counting against the slot's RLIMIT_NPROC.
        if self.init_host_pid is not None:
            try:
                os.kill(self.init_host_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                log.error("bwrap pid %s did not exit after its init was killed", self.proc.pid)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("bwrap pid %s did not die after SIGKILL", self.proc.pid)
        self._ctrl.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def step(self, req: StepRequest) -> StepOutcome:
        """Run one step; on timeout/overflow/any doubt the sandbox is killed (``dead``) and must go."""
        self.runs += 1
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        send_fds: list[int] = [out_w, err_w]
        try:
            stdin_fd = _sealed_memfd("stdin", req.stdin)
            send_fds.insert(0, stdin_fd)
            if req.files is not None:
                send_fds.insert(0, _sealed_memfd("payload", _pack_files(req.files)))
            msg = {
                "setup": req.files is not None,
                "final": req.final,
                "mode": req.step.mode,
                "argv": list(req.step.argv),
                "limits": req.limits_json(),
            }
            oom_before = 0
            if self.cgroup is not None:
                self.cgroup.limit(req.memory_bytes, req.nproc + 2)
                oom_before = self.cgroup.oom_kills()
            t0 = time.monotonic()
            try:
                socket.send_fds(self._ctrl, [json.dumps(msg).encode()], send_fds)
            except OSError as e:
                self.kill()
                return StepOutcome(kind="sandbox_error", message=f"sandbox gone before the run: {e}")
        finally:
            for fd in send_fds:
                os.close(fd)
        try:
            got = pump(out_r, err_r, req.output_cap, t0 + req.wall_s, control_fd=self._ctrl.fileno())
        finally:
            os.close(out_r)
            os.close(err_r)
        wall = time.monotonic() - t0
        base = StepOutcome(kind="exited", stdout=bytes(got.stdout), stderr=bytes(got.stderr), wall_s=wall)
        if got.overflow:
            self.kill()
            return replace(base, kind="output_limit", message="output cap reached; run killed")
        if got.control is None:
            self.kill()
            if got.control_eof and base.oom_killed:
                # the OOM killer took the fork server itself: the program's memory, not our failure
                return replace(
                    base, kind="exited", signal_no=signal.SIGKILL, message="killed by the OOM killer"
                )
            if got.control_eof:
                return replace(base, kind="sandbox_error", message="sandbox died during the run")
            return replace(base, kind="timeout", message="wall time limit reached; run killed")
        oom = self.cgroup is not None and self.cgroup.oom_kills() > oom_before
        base = replace(base, oom_killed=oom)
        res = json.loads(got.control)
        if "error" in res:
            self.kill()
            return StepOutcome(kind="sandbox_error", message=f"sandbox gone before the run: {res['error']}")
        self.last_server_ms = res.get("ms")
        if got.deadline_hit or not res.get("clean", False):
            # Pipes held open past the result, or leftovers the server could not remove: never reuse.
            self.kill()
        elif self.runs >= self.cfg.recycle_after and req.final:
            self.kill()
        return replace(
            base,
            exit_code=res.get("exit"),
            signal_no=res.get("signal"),
            cpu_s=float(res.get("cpu_s") or 0.0),
            peak_mb=round(float(res.get("maxrss_kb") or 0) / 1024.0, 2),
        )


class BwrapRunner:
    """``SandboxRunner`` on bubblewrap: a FIFO pool of warm sandboxes, safe to call from many threads."""

    name = "bwrap"

    def __init__(self, config: BwrapConfig | None = None, **overrides: object) -> None:
        cfg = config or BwrapConfig()
        if overrides:
            cfg = BwrapConfig(**{**cfg.__dict__, **overrides})  # type: ignore[arg-type]
        self.cfg = cfg
        if shutil.which(cfg.bwrap) is None:
            raise SandboxUnavailable(
                f"bubblewrap ({cfg.bwrap!r}) is not installed: `apt-get install -y bubblewrap`, "
                "or choose the docker backend; unsafe-local must be asked for explicitly"
            )
        if not os.path.exists(cfg.python):
            raise SandboxUnavailable(f"sandbox interpreter {cfg.python} not found (Debian: python3)")
        self.workers = cfg.workers or os.cpu_count() or 1
        self.uid_base = cfg.uid_base
        if self.uid_base is None:
            n = next(_instances)
            self.uid_base = UID_RANGE_START + ((os.getpid() * 16 + n) % 65536) * max(UID_STRIDE, self.workers)
        self._root = os.geteuid() == 0
        self._filter = seccomp.build_filter() if cfg.use_seccomp else None
        self._closed = False
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bwrap-spawner")
        self._slots: list[_Slot] = [_Slot(i) for i in range(self.workers)]
        for slot in self._slots:
            if cfg.use_cgroups:
                slot.cgroup = SlotCgroup.create(f"referee-sandbox-{os.getpid()}-{slot.index}")
        self._pool: FifoPool[_Slot] = FifoPool(self._slots, cfg.max_waiting)
        for slot in self._slots:
            self._respawn(slot)
        # Fail loudly at construction if sandboxes cannot start here: never a silent fallback.
        try:
            for slot in self._slots:
                assert slot.future is not None
                slot.sandbox = slot.future.result()
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict[str, object]:
        """What isolation this runner applies on this host (for logs, /health and docs)."""
        return {
            "backend": self.name,
            "workers": self.workers,
            "namespaces": "user,pid,net,ipc,uts,mount,cgroup",
            "seccomp": self._filter is not None,
            "cgroup": (
                "v1 memory+pids(+cpu) per sandbox, re-limited before each run"
                if all(s.cgroup is not None for s in self._slots)
                else "none: per-process rlimits only"
            ),
            "host_uid": f"per-slot {self.uid_base}+i" if self._root else f"own uid {os.getuid()}",
            "tmpfs_mb": self.cfg.tmpfs_mb,
        }

    def _host_uid(self, slot: _Slot) -> int | None:
        assert self.uid_base is not None
        return self.uid_base + slot.index if self._root else None

    def _respawn(self, slot: _Slot) -> None:
        slot.sandbox = None
        slot.future = self._spawner.submit(
            WarmSandbox, self.cfg, self._host_uid(slot), self._filter, slot.cgroup
        )

    def _nproc_base(self) -> int:
        """Tasks already owned by the uid the sandbox runs as (RLIMIT_NPROC counts per host uid)."""
        if self._root:
            return 2  # outer bwrap + fork server, alone under the slot's uid
        uid, n = os.getuid(), 0
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    st = os.stat(f"/proc/{p}/task")
                except OSError:
                    continue
                if st.st_uid == uid:
                    n += max(st.st_nlink - 2, 1)
        return n + 2

    def run(self, program: Program, limits: Limits) -> Execution:
        """Run ``program`` in a warm sandbox. Blocking; thread-safe; FIFO across callers."""
        if self._closed:
            return _sandbox_error("runner closed")
        try:
            slot = self._pool.acquire(self.cfg.queue_timeout_s)
        except (QueueFull, QueueTimeout) as e:
            return _sandbox_error(f"sandbox pool busy: {e}")
        try:
            return self._run_in(slot, program, limits)
        finally:
            self._pool.release(slot)

    def _run_in(self, slot: _Slot, program: Program, limits: Limits) -> Execution:
        for attempt in range(2):
            try:
                sb = slot.get()
            except Exception as e:  # start-up failure: ours, not the program's
                self._respawn(slot)
                return _sandbox_error(f"could not start a sandbox: {e}")
            if not sb.alive():
                self._respawn(slot)
                continue
            started = sb.runs
            result = run_program(program, limits, sb.step, nproc_base=self._nproc_base())
            if not sb.alive():
                self._respawn(slot)
            if (
                result.status == "sandbox_error"
                and sb.runs == started + 1
                and result.message.startswith("sandbox gone before")
                and attempt == 0
            ):
                continue  # it died while idle: retry once on a fresh one
            return result
        return _sandbox_error("sandbox kept dying before the run")

    def close(self) -> None:
        """Kill every sandbox. Runs still in flight get up to 5 s to finish."""
        if self._closed:
            return
        self._closed = True
        for slot in self._pool.drain():
            try:
                sb = slot.get()
            except Exception:
                continue
            if not sb.dead:
                sb.kill()
        self._spawner.shutdown(wait=True)
        for slot in self._slots:
            if slot.cgroup is not None:
                slot.cgroup.remove()


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.sandbox: WarmSandbox | None = None
        self.future: concurrent.futures.Future[WarmSandbox] | None = None
        self.cgroup: SlotCgroup | None = None
        self._lock = threading.Lock()

    def get(self) -> WarmSandbox:
        if self.sandbox is None:
            assert self.future is not None
            self.sandbox = self.future.result()
        return self.sandbox


def _sandbox_error(message: str) -> Execution:
    return Execution(
        status="sandbox_error", exit_code=None, stdout="", stderr="", wall_time_s=0.0, message=message
    )
