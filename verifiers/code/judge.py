"""The trusted half of the harness inside the sandbox: runs the tests, never the candidate's code.

Self-contained script (``wire.py``'s source is prepended). Threat model in ``docs/code.md``. In short:

* This process never imports the candidate's program. The candidate runs in a separate process
  (``worker.py``), forked before the spec is read (later ones: a freshly exec'd interpreter), and
  talks to it over two private pipes; what comes
  back is tagged *data*, decoded here into exact built-in types. So no candidate object, patched
  builtin, patched ``math``, ``atexit`` hook, frame or ``sys.exit`` can act in this process.
* The spec (nonce, tests, worker source) arrives on stdin and is read fully before any
  candidate process exists; the worker gets ``/dev/null`` as stdin and stdout, no copy of the
  judge's secrets (forked before they were read, or exec'd) and none of its descriptors but its
  own pipes.
* Records go to a private duplicate of the original stdout, each line prefixed with a per-run
  random nonce that only this process knows; fd 1 itself is pointed at stderr so that test code
  printing cannot mix into the channel. The process marks itself non-dumpable, so a same-uid
  candidate can neither read its memory (``/proc/<pid>/mem``, ptrace) nor open its descriptors
  (``/proc/<pid>/fd``).
* Expected values of ``assert x == <literal>`` were removed from the test code outside and are
  compared outside; this process only ships the candidate-side value.
"""

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # inside the sandbox these names come from the prepended wire.py and worker.py
    from verifiers.code.wire import Unserializable, decode, encode, recv_frame, send_frame
    from verifiers.code.worker import serve

PROGRAM_FILE = "solution.py"  # the candidate's program, placed beside this one (harness.PROGRAM_FILE)


class _Abort(BaseException):  # noqa: N818 - BaseException so a test's `except Exception` cannot swallow it
    """The current test is already recorded as failed (timeout, crash, unserializable result)."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in exception type."""


class _Judge:
    def __init__(self, spec, emit):
        self.emit = emit
        self.worker_src = spec["worker"]
        self.program = spec["program"]
        self.call_timeout = float(spec["call_timeout_s"])
        self.pid = None
        self.popen = None
        self.rfd = self.wfd = -1
        self.names = []
        self.test = -1

    # -- the candidate's process -------------------------------------------------------------

    def adopt(self, pid, wfd, rfd):
        """Take over a worker forked before the spec was read; None when ready, else a failure record."""
        self.pid, self.popen, self.wfd, self.rfd = pid, None, wfd, rfd
        return self._await_ready()

    def spawn(self):
        """Start a fresh worker interpreter; None when ready, else a failure record."""
        import subprocess

        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": os.getcwd()}
        self.popen = subprocess.Popen(
            [sys.executable, "-I", "-c", self.worker_src, str(to_worker_r), str(from_worker_w), self.program],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(to_worker_r, from_worker_w),
            close_fds=True,
            start_new_session=True,
            env=env,
        )
        self.pid = self.popen.pid
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.wfd, self.rfd = to_worker_w, from_worker_r
        return self._await_ready()

    def _await_ready(self):
        import time

        try:
            send_frame(self.wfd, {"go": True})
            msg = recv_frame(self.rfd, time.monotonic() + self.call_timeout)
        except Exception:
            msg = None
        if isinstance(msg, dict) and isinstance(msg.get("ready"), list):
            self.names = [n for n in msg["ready"] if isinstance(n, str)]
            return None
        if isinstance(msg, dict) and "import_error" in msg:
            self.kill()
            return {"import_error": str(msg["import_error"])[-2000:], "syntax": msg.get("syntax") is True}
        timed_out = self._alive()
        self.kill()
        return {
            "import_error": "timeout" if timed_out else "the program exited while loading",
            "timeout": timed_out,
        }

    def _alive(self):
        if self.pid is None:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def kill(self):
        import signal

        if self.pid is not None:
            for kill in (
                lambda: os.killpg(self.pid, signal.SIGKILL),
                lambda: os.kill(self.pid, signal.SIGKILL),
            ):
                try:
                    kill()
                except OSError:
                    pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = self.popen = None
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = -1

    def call(self, fn, targs, tkwargs):
        """Call ``fn`` in the worker; returns ``("value", tagged) | ("raised", name, msg) | (kind, msg)``."""
        import time

        if self.pid is None:
            failure = self.spawn()
            if failure is not None:
                return ("crash", "the program could not be reloaded: " + str(failure.get("import_error")))
        try:
            send_frame(self.wfd, {"fn": fn, "args": targs, "kwargs": tkwargs})
            msg = recv_frame(self.rfd, time.monotonic() + self.call_timeout)
        except Exception as e:  # broken pipe, oversized or garbled frame
            self.kill()
            return ("crash", "bad reply from the program: " + str(e)[:200])
        if msg is None:
            kind = "timeout" if self._alive() else "crash"
            self.kill()
            return (kind, "no result within the time limit" if kind == "timeout" else "the program died")
        if isinstance(msg, dict) and "value" in msg:
            return ("value", msg["value"])
        if isinstance(msg, dict) and "raised" in msg:
            return ("raised", str(msg["raised"])[:100], str(msg.get("message", ""))[:500])
        self.kill()
        return ("crash", "malformed reply from the program")

    # -- assert-style tests ------------------------------------------------------------------

    def proxy(self, name):
        import builtins

        judge = self

        def candidate_function(*args, **kwargs):
            targs = [encode(a) for a in args]
            tkwargs = {str(k): encode(v) for k, v in kwargs.items()}
            if any(t[0] == "u" for t in targs) or any(t[0] == "u" for t in tkwargs.values()):
                raise TypeError("the test passes an argument that is not plain data")
            reply = judge.call(name, targs, tkwargs)
            if reply[0] == "value":
                try:
                    value = decode(reply[1])
                except Exception as e:
                    value = Unserializable("malformed: " + str(e)[:100])
                if isinstance(value, Unserializable) or _holds_unserializable(value):
                    judge.emit(
                        {
                            "test": judge.test,
                            "error": "returned a value that is not plain data: " + repr(value)[:200],
                            "kind": "unserializable",
                        }
                    )
                    raise _Abort()
                return value
            if reply[0] == "raised":
                exc_type = getattr(builtins, reply[1], None)
                if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
                    exc_type = CandidateError
                raise exc_type(reply[2])
            judge.emit({"test": judge.test, "error": reply[1], "kind": reply[0]})
            raise _Abort()

        candidate_function.__name__ = name
        return candidate_function

    def run_asserts(self, spec):
        import builtins

        def eq_site(site, value):
            self.emit({"test": self.test, "site": site, "value": encode(value)})

        def true_site(site, value):
            self.emit({"test": self.test, "site": site, "truth": bool(value)})

        entry = spec.get("entry_point")
        names = set(self.names)
        if entry:
            names.add(entry)
        base: dict = {"__name__": "__referee_test__", "__builtins__": builtins}
        for n in sorted(names):
            # Never let the candidate's names shadow builtins or the harness's own hooks.
            if not hasattr(builtins, n) and not n.startswith("__referee"):
                base[n] = self.proxy(n)
        base["__referee_eq__"] = eq_site
        base["__referee_true__"] = true_site
        if spec.get("setup"):
            self.test = -1
            try:
                exec(compile(spec["setup"], "<setup>", "exec"), base)
            except BaseException as e:  # noqa: BLE001
                self.emit({"setup_error": type(e).__name__ + ": " + str(e)[:500]})
                return
        for i, test in enumerate(spec["tests"]):
            self.test = i
            ns = dict(base)
            try:
                exec(compile(test["code"], "<test " + str(i) + ">", "exec"), ns)
                if test.get("call_check"):
                    ns["check"](base.get(entry) or self.proxy(entry))
                self.emit({"test": i, "done": True})
            except _Abort:
                pass
            except BaseException as e:  # noqa: BLE001 - any failure of the test code fails the test
                self.emit({"test": i, "error": type(e).__name__ + ": " + str(e)[:500], "kind": "test_error"})

    # -- function-call tests -----------------------------------------------------------------

    def run_calls(self, spec):
        for i, test in enumerate(spec["tests"]):
            self.test = i
            reply = self.call(test["fn"], test["args"], test.get("kwargs", {}))
            if reply[0] == "value":
                self.emit({"test": i, "value": reply[1]})
            elif reply[0] == "raised":
                self.emit({"test": i, "error": reply[1] + ": " + reply[2], "kind": "raised"})
            else:
                self.emit({"test": i, "error": reply[1], "kind": reply[0]})


def _holds_unserializable(value):
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Unserializable):
            return True
        if type(v) in (list, tuple, set, frozenset):
            stack.extend(v)
        elif type(v) is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
    return False


def _make_undumpable():
    """PR_SET_DUMPABLE=0: same-uid processes lose ptrace and /proc/<pid>/{mem,fd,environ} access."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)
    except Exception:
        pass


def _find_program(name):
    here = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    for d in (here, os.getcwd()):
        if d and os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return os.path.join(os.getcwd(), name)


def _fork_worker(program):
    """Fork the first worker now, while this process holds no secret yet (cheaper than exec)."""
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the judge's code
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)  # the judge's stdin (the spec) is gone before the candidate loads
            os.dup2(devnull, 1)  # and so is the record channel
            for fd in range(3, 256):
                if fd not in (to_worker_r, from_worker_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            serve(to_worker_r, from_worker_w, program)
        finally:
            os._exit(0)
    os.close(to_worker_r)
    os.close(from_worker_w)
    return pid, to_worker_w, from_worker_r


def main():
    _make_undumpable()
    # Nothing written in the workdir (by a candidate) may be imported by this process later on.
    cwd = os.getcwd()
    here = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else cwd
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) not in (cwd, here)]
    program = _find_program(PROGRAM_FILE)
    first_worker = _fork_worker(program)
    spec = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    nonce = spec.pop("nonce")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed from here on goes to stderr, never into the record channel
    os.set_inheritable(out_fd, False)

    def emit(record):
        data = (nonce + " " + json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(out_fd, view) :]

    spec["program"] = program
    judge = _Judge(spec, emit)
    failure = judge.adopt(*first_worker)
    if failure is not None:
        emit(failure)
        return
    try:
        if spec["kind"] == "call":
            judge.run_calls(spec)
        else:
            judge.run_asserts(spec)
    finally:
        judge.kill()
    emit({"finished": True})


if __name__ == "__main__":
    main()
