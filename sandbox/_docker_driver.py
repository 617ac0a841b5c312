"""The supervisor that runs *inside* a warm sandbox container and starts every program there.

This file is never imported by the service: ``sandbox/docker.py`` reads its source and starts it once
per container (one long-lived ``docker exec``) with ``python3 -I -S -c`` as uid 65534, so the sandbox
image needs nothing but python3 and the toolchains. Standard library only; it must run on the image's
Python (3.11).

Protocol, on the exec's stdin/stdout: the host sends a 4-byte big-endian length and a JSON request
(base64 for bytes); the supervisor answers each with one line on stdout, ``<nonce> <json>``. The nonce is random per run and lives only in this process's memory, which
the program cannot read (the supervisor makes itself non-dumpable, so ``/proc/<pid>/{mem,fd}`` are
closed to the same uid), so a program writing into our stdout cannot forge a result.

Per run: wipe every writable place and kill every other process of the container (``kill(-1)``
spares only pid 1, an idle ``sleep`` that the kernel shields from signals sent inside its own pid
namespace, and ourselves), write the files, compile if needed, run with rlimits in a new
session, enforce wall time / output caps from here, then kill and wipe again. Nothing survives a run.
"""

import base64
import ctypes
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import time

WORKDIR = "/sandbox"
# Every place a uid-65534 process can write to in the container (the root filesystem is read-only).
SCRATCH = ("/sandbox", "/tmp", "/dev/shm", "/dev/mqueue")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def oom_kills():
    """The container cgroup's OOM-kill counter (cgroup v2 or v1), or -1 when not readable."""
    for path in OOM_FILES:
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return -1


def kill_others():
    try:
        os.kill(-1, signal.SIGKILL)  # Linux: every process we may signal except pid 1 and the caller
    except ProcessLookupError:
        pass
    # We are the child subreaper: every descendant, orphaned or not, is ours to reap. Reap them all
    # (pid 1 is a plain `sleep` that never reaps, so zombies left to it would eat the pids limit).
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue


def remove_tree(path):
    # A program may leave directories without write or search permission at any depth: open them
    # up on the way down (os.walk lists a directory only after we chmod-ed it from its parent).
    os.chmod(path, 0o700)
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def wipe():
    """Empty every writable place; False if something could not be removed (the host then recycles)."""
    for top in SCRATCH:
        try:
            entries = os.listdir(top)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(top, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    remove_tree(path)
                else:
                    os.unlink(path)
            except OSError:
                pass
    # System V IPC objects outlive their processes (POSIX queues and shm live in /dev/{mqueue,shm}).
    # Start `ipcrm` only when there is something to remove: it is a process start per run otherwise.
    if any(sysv_ipc_in_use(kind) for kind in ("shm", "sem", "msg")):
        subprocess.run(["ipcrm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    clean = not any(sysv_ipc_in_use(kind) for kind in ("shm", "sem", "msg"))
    for top in SCRATCH:
        try:
            clean = clean and not os.listdir(top)
        except OSError:
            pass
    return clean


def sysv_ipc_in_use(kind):
    try:
        with open(f"/proc/sysvipc/{kind}") as fh:
            return len(fh.read().splitlines()) > 1  # a header line, then one line per object
    except OSError:
        return True  # cannot tell: clean up anyway


def safe_name(name):
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "" not in parts


def limiter(cpu_s, file_bytes, memory_bytes, memory_rlimit):
    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        if cpu_s is not None:
            soft = max(1, int(cpu_s + 0.999))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
        if memory_bytes:
            which = resource.RLIMIT_DATA if memory_rlimit == "data" else resource.RLIMIT_AS
            resource.setrlimit(which, (memory_bytes, memory_bytes))

    return apply


def run_step(argv, stdin_fd, wall_s, cap, preexec, cpu_limit_s=None):
    """Run ``argv``; returns (status, exit_code, stdout, stderr, out_trunc, err_trunc, wall, cpu, rss_mb)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORKDIR,
            env=ENV,
            preexec_fn=preexec,
            close_fds=True,
        )
    except OSError as exc:
        return "runtime_error", None, b"", str(exc).encode(), False, False, 0.0, None, None
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    trunc = dict.fromkeys(bufs, False)
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = started + wall_s
    status = None
    wait_status = None
    rusage = None
    exited_at = 0.0
    while True:
        now = time.monotonic()
        if wait_status is None:
            pid, ws, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                wait_status, rusage, exited_at = ws, ru, now
        open_fds = sel.get_map()
        # Done when the program exited and its pipes closed, or shortly after it exited if a
        # leftover grandchild keeps them open (kill_others below ends that one).
        if wait_status is not None and (not open_fds or now - exited_at > 0.05):
            break
        if now >= deadline and wait_status is None:
            status = "timeout"
            break
        if not open_fds:
            time.sleep(0.002)
            continue
        for key, _ in sel.select(timeout=min(0.05, max(0.0, deadline - now))):
            fd = key.fd
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(fd)
                continue
            buf = bufs[fd]
            room = cap - len(buf)
            if len(chunk) > room:
                buf += chunk[: max(0, room)]
                trunc[fd] = True
            else:
                buf += chunk
        if any(trunc.values()) and status is None:
            status = "output_limit"
            break
    if wait_status is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        _, wait_status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # we reaped it ourselves; keep Popen from trying again
    wall = time.monotonic() - started
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    cpu = rusage.ru_utime + rusage.ru_stime if rusage else None
    rss_mb = rusage.ru_maxrss / 1024.0 if rusage else None
    if os.WIFSIGNALED(wait_status):
        code = -os.WTERMSIG(wait_status)
        if status is None and os.WTERMSIG(wait_status) in (signal.SIGXCPU, signal.SIGXFSZ):
            status = "timeout" if os.WTERMSIG(wait_status) == signal.SIGXCPU else "runtime_error"
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one (soft + 1 s).
        if status is None and cpu is not None and cpu_limit_s is not None and cpu >= cpu_limit_s:
            status = "timeout"
    else:
        code = os.WEXITSTATUS(wait_status)
    fds = list(bufs)
    out, err = bytes(bufs[fds[0]]), bytes(bufs[fds[1]])
    return status, code, out, err, trunc[fds[0]], trunc[fds[1]], wall, cpu, rss_mb


def b64(data):
    return base64.b64encode(data).decode("ascii")


def handle(request):
    """Run one request; the result dict is what the host turns into an ``Execution``."""
    lim = request["limits"]
    result = {}
    try:
        # The previous run ended with kill_others() + wipe() (and the first started after them), so
        # the container is clean here; a supervisor that died mid-run took its container with it.
        files = dict(request["files"])
        files[request["source_name"]] = request["source"]
        for name, data in files.items():
            if not safe_name(name):
                return {"status": "sandbox_error", "message": f"refused file name {name!r}"}
            path = os.path.join(WORKDIR, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(base64.b64decode(data))
        cap = int(lim["max_output_bytes"])
        file_bytes = int(lim["max_file_bytes"])
        memory_bytes = int(lim["memory_mb"]) << 20
        compile_output = b""
        if request.get("compile"):
            null = os.open(os.devnull, os.O_RDONLY)
            st, code, out, err, _, _, wall, _, _ = run_step(
                request["compile"],
                null,
                float(lim["compile_time_s"]),
                cap,
                limiter(None, max(file_bytes, 256 << 20), None, "as"),
            )
            os.close(null)
            compile_output = out + err
            if st == "timeout" or code != 0:
                return {
                    "status": "compile_error",
                    "exit_code": code,
                    "wall_time_s": wall,
                    "compile_output": b64(compile_output[:cap]),
                    "message": "compilation timed out" if st == "timeout" else "compilation failed",
                }
            kill_others()
        stdin_fd = os.memfd_create("stdin")
        os.write(stdin_fd, base64.b64decode(request["stdin"]))
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        oom_before = oom_kills()
        st, code, out, err, out_tr, err_tr, wall, cpu, rss = run_step(
            request["run"],
            stdin_fd,
            float(lim["wall_time_s"]),
            cap,
            limiter(float(lim["cpu_time_s"]), file_bytes, memory_bytes, request.get("memory_rlimit", "as")),
            float(lim["cpu_time_s"]),
        )
        os.close(stdin_fd)
        oom = oom_kills() > oom_before >= 0
        text = err.decode("utf-8", "replace")
        if st is None:
            if oom or (code != 0 and any(m in text for m in request.get("memory_markers", ()))):
                st = "memory"
            elif code == -signal.SIGKILL and rss is not None and rss >= int(lim["memory_mb"]) * 0.95:
                st = "memory"
            else:
                st = "ok" if code == 0 else "runtime_error"
        result = {
            "status": st,
            "exit_code": code,
            "stdout": b64(out),
            "stderr": b64(err),
            "stdout_truncated": out_tr,
            "stderr_truncated": err_tr,
            "wall_time_s": wall,
            "cpu_time_s": cpu,
            "peak_memory_mb": rss,
            "compile_output": b64(compile_output[:cap]),
        }
    except Exception as exc:  # the supervisor failing is *our* failure, reported as such
        result = {"status": "sandbox_error", "message": f"supervisor: {type(exc).__name__}: {exc}"}
    finally:
        kill_others()
        if not wipe():
            result["recycle"] = True  # something survived the wipe: the host replaces the container
    return result


def read_exactly(n):
    data = bytearray()
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main():
    """Serve requests until stdin closes: 4-byte big-endian length + JSON in, one line out per request."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: /proc/<us>/{mem,fd,environ} closed to the program
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: double-forked daemons stay our children
    kill_others()
    wipe()
    while True:
        header = read_exactly(4)
        if header is None:
            return
        request = json.loads(read_exactly(int.from_bytes(header, "big")))
        result = handle(request)
        os.write(1, (request["nonce"] + " " + json.dumps(result) + "\n").encode())


if __name__ == "__main__":
    main()
