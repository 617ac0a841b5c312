"""The candidate's process inside the sandbox: import the program, answer calls, send back data.

Self-contained script (``wire.py``'s source is prepended). The judge starts it as a fresh
interpreter (``python -I -c``), so nothing of the judge's memory (the record nonce, the tests)
exists here. Everything this process sends is treated as untrusted *data*: the candidate may
replace any of this code at import time, and that gains it nothing but choosing its own answers.

argv: ``[-c, <read fd>, <write fd>, <path of the candidate's program>]``.
"""

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # inside the sandbox these names come from wire.py's prepended source
    from verifiers.code.wire import decode, encode, recv_frame, send_frame


def _serve() -> None:
    import importlib.util
    import traceback
    import types

    rfd, wfd, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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


if __name__ == "__main__":
    _serve()
