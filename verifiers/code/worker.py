"""The candidate's process inside the sandbox: import the program, answer calls, send back data.

Self-contained (``wire.py``'s source is prepended). The judge forks the first worker *before* it
reads its spec from stdin, and starts any later one as a fresh interpreter (``python -I -c``), so
nothing of the judge's secrets (the record nonce, the tests) is ever in this process's memory. Everything this process sends is treated as untrusted *data*: the candidate may
replace any of this code at import time, and that gains it nothing but choosing its own answers.

Entry points: ``serve(read_fd, write_fd, path)``, or ``serve_from_argv()`` with argv
``[-c, <read fd>, <write fd>, <path of the candidate's program>]``.
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # inside the sandbox these names come from wire.py's prepended source
    from verifiers.code.wire import decode, encode, recv_frame, send_frame


def serve_from_argv() -> None:
    """Entry point of a worker started as ``python -I -c <source> <rfd> <wfd> <path>``."""
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])


def serve(rfd: int, wfd: int, path: str) -> None:
    """Load the candidate's program from ``path`` and answer call requests until EOF."""
    import importlib.util
    import traceback
    import types

    # Wait for the judge's go: it comes only once the judge has drained its stdin (the spec), so
    # the candidate can never race it for those bytes (e.g. through /proc/<judge>/fd/0).
    go = recv_frame(rfd)
    if not (isinstance(go, dict) and go.get("go") is True):
        return
    try:
        spec = importlib.util.spec_from_file_location("solution", path)
        if spec is None or spec.loader is None:
            raise ImportError("cannot load " + path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["solution"] = module
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - SyntaxError, SystemExit, anything: report and stop
        tb = traceback.format_exception_only(type(e), e)
        send_frame(wfd, {"import_error": "".join(tb)[-2000:], "syntax": isinstance(e, SyntaxError)})
        return
    names = [
        n for n, v in vars(module).items() if isinstance(v, types.FunctionType) and not n.startswith("__")
    ]
    send_frame(wfd, {"ready": names})
    while True:
        msg = recv_frame(rfd)
        if msg is None:
            return
        try:
            fn = getattr(module, msg["fn"])
            args = [decode(a) for a in msg["args"]]
            kwargs = {k: decode(a) for k, a in msg["kwargs"].items()}
            result = fn(*args, **kwargs)
            reply = {"value": encode(result)}
        except BaseException as e:  # noqa: BLE001 - the candidate's exception is an answer, not our crash
            reply = {"raised": type(e).__name__, "message": str(e)[:500]}
        send_frame(wfd, reply)
