# mypy: ignore-errors
# (runs inside the sandbox as a script under Debian's python3; checked by tests, not by mypy)
"""The warm fork server that runs *inside* a bubblewrap sandbox as its pid 1.

Stdlib only: the host passes this file's text to ``python3 -I -S -c``. Being pid 1 of the sandbox's
pid namespace, the program cannot kill or stop it (the kernel drops SIGKILL/SIGSTOP sent to a
namespace's init from inside), and ``kill(-1, SIGKILL)`` from here ends every other process.

Protocol over the SOCK_SEQPACKET socket whose fd number is argv[1]: one JSON message per step from the
host with fds attached [payload, stdin, stdout, stderr] (payload only when ``setup``). The server never
reads the payload, the stdin, or the output itself: the forked child reads the payload (a sealed memfd)
and the host reads the output pipes. So no program's data ever lands in this process's memory, and
nothing of one run can be found by the next one in a heap the children inherit.
"""

import atexit  # noqa: F401  (pre-imported: the forked child then pays nothing for them)
import ctypes
import io
import json
import os
import resource
import signal
import socket
import stat
import sys
import time
import traceback  # noqa: F401
import types

WORKDIR = "/tmp/run"
SCRUB = ("/tmp", "/dev/shm")
CTRL = socket.socket(fileno=int(sys.argv[1]))


try:
    LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    LIBC = None


def _set_dumpable(flag):
    # The server is non-dumpable: same-uid children cannot open /proc/1/mem, /proc/1/fd or ptrace
    # it. Its children are made dumpable again so a program can read its own /proc/self/*.
    if LIBC is not None:
        LIBC.prctl(4, flag, 0, 0, 0)  # PR_SET_DUMPABLE = 4


def _send(obj):
    CTRL.send(json.dumps(obj).encode())


def _set_limits(lim):
    def cap(res, value):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass

    cpu = max(1, int(lim["cpu_s"] + 0.999))
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        pass
    mem = lim["memory_bytes"]
    if lim["memory_kind"] == "as":
        cap(resource.RLIMIT_AS, mem)
    else:
        cap(resource.RLIMIT_DATA, mem)
    cap(resource.RLIMIT_FSIZE, lim["file_bytes"])
    cap(resource.RLIMIT_NOFILE, lim["nofile"])
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_STACK, lim["stack_bytes"])
    cap(resource.RLIMIT_NPROC, lim["nproc"])
    cap(resource.RLIMIT_MEMLOCK, 0)
    cap(resource.RLIMIT_MSGQUEUE, 0)


def _write_payload(fd):
    """Write the workdir's files: payload = u32 header length, JSON [[name, size], ...], raw bytes."""
    with open(fd, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:4], "little")
    pos = 4 + n
    os.makedirs(WORKDIR, exist_ok=True)
    for name, size in json.loads(raw[4:pos]):
        path = os.path.join(WORKDIR, name)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as out:
            out.write(raw[pos : pos + size])
        pos += size


def _close_other_fds():
    # Listing /proc/self/fd is far cheaper than closing 65536 numbers one by one.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def _run_python(path, argv):
    """Run ``path`` as ``__main__`` in this (freshly forked) interpreter, like ``python3 -I -S path``."""
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(path))
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    rc = 0
    try:
        with open(path, "rb") as f:
            src = f.read()
        exec(compile(src, path, "exec"), main.__dict__)
    except SystemExit as e:
        code = e.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code & 0xFF
        else:
            try:
                sys.stderr.write(str(code) + "\n")
            except Exception:
                pass
            rc = 1
    except BaseException as e:
        try:  # drop our own frame, so the traceback reads as a plain interpreter's would
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            traceback.print_exception(type(e), e, tb)
        except BaseException:
            pass
        rc = 1
    # What interpreter shutdown would do: join non-daemon threads, run atexit, flush.
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(rc)


def _child(req, fds):
    try:
        os.setsid()
        _set_dumpable(1)
        try:  # make the program, not this server, the OOM killer's first choice
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        except OSError:
            pass
        CTRL.close()
        if req.get("setup"):
            payload = fds.pop(0)
            _write_payload(payload)
        stdin, stdout, stderr = fds
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        _close_other_fds()
        os.chdir(WORKDIR)
        _set_limits(req["limits"])
        if req["mode"] == "python":
            _run_python(os.path.join(WORKDIR, req["argv"][0]), req["argv"][1:])
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.execve(req["argv"][0], req["argv"], dict(os.environ))
    except BaseException as e:
        try:
            os.write(2, f"referee-sandbox: cannot start program: {e!r}\n".encode())
        except BaseException:
            pass
        os._exit(127)


def _kill_all():
    """SIGKILL every process but us (pid 1), reap, and say whether none is left."""
    for _ in range(500):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]:
            return True
        time.sleep(0.001)
    return False


def _rm_tree(path):
    """Remove ``path`` without ever following a symlink (links, fifos and files are unlinked)."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.chmod(path, 0o700)  # a program may have made its directories unreadable
        except OSError:
            pass
        for name in os.listdir(path):
            _rm_tree(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


def _scrub():
    """Empty every writable place; say whether it is clean afterwards. Never raises."""
    clean = True
    for top in SCRUB:
        try:
            os.chmod(top, 0o755)  # a program may have locked us out of the top directory itself
            for name in os.listdir(top):
                try:
                    _rm_tree(os.path.join(top, name))
                except Exception:
                    clean = False
            if os.listdir(top):
                clean = False
        except Exception:
            clean = False
    for kind in ("shm", "sem", "msg"):
        try:
            with open("/proc/sysvipc/" + kind) as f:
                if len(f.read().splitlines()) > 1:
                    clean = False
        except OSError:
            pass
    return clean


def _fresh_workdir():
    """Scrub and recreate the workdir; False if the sandbox cannot be trusted to be empty."""
    clean = _scrub()
    try:
        os.makedirs(WORKDIR)
    except Exception:
        return False
    return clean


def main():
    _set_dumpable(0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _fresh_workdir()
    _send({"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(CTRL, 1 << 16, 8)
        except OSError:
            return
        if not msg:
            return
        t_recv = time.monotonic()
        req = json.loads(msg)
        if req.get("setup") and not _fresh_workdir():
            for fd in fds:
                os.close(fd)
            _send({"error": "sandbox not clean before the run"})
            continue
        pid = os.fork()
        if pid == 0:
            _child(req, list(fds))
        for fd in fds:
            os.close(fd)
        _, status, ru = os.wait4(pid, 0)
        t_exit = time.monotonic()
        try:
            alone = _kill_all()
        except Exception:
            alone = False
        clean = _fresh_workdir() if req.get("final") else True
        _send(
            {
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "maxrss_kb": ru.ru_maxrss,
                "clean": bool(alone and clean),
                # where the server's time went, for diagnostics: run (fork to exit) and cleanup
                "ms": [round((t_exit - t_recv) * 1e3, 2), round((time.monotonic() - t_exit) * 1e3, 2)],
            }
        )


main()
