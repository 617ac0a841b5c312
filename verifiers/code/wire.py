"""Type-tagged values and message framing shared by the judge, the worker and the verifier.

This file is *self-contained* (standard library only, no ``from __future__``): its source text is
prepended to ``judge.py`` and ``worker.py`` to build the programs that run inside the sandbox, and
the verifier imports it normally to decode what comes back. Keep it that way.

A value is encoded as a small JSON list ``[tag, payload]``. Only exact built-in types are
encodable (``type(v) is int``, never a subclass), so an object with a rigged ``__eq__`` or a
subclass of ``int`` cannot travel: it becomes ``["u", type name]`` ("unserializable"), which the
comparison outside treats as unequal to everything.
"""

import json
import struct

MAX_DEPTH = 64
MAX_ITEMS = 200_000  # elements in one encoded value; beyond this it is "unserializable"
MAX_FRAME = 64 << 20  # bytes in one framed message


class WireError(ValueError):
    """A tagged value or a frame is malformed."""


class _Budget:
    def __init__(self, items: int) -> None:
        self.items = items


def encode(value, max_items=MAX_ITEMS):
    """Encode ``value`` as a tagged JSON-able list; anything not plain data becomes ``["u", name]``."""
    try:
        return _enc(value, 0, _Budget(max_items))
    except _TooBig as e:
        return ["u", str(e)]


class _TooBig(Exception):
    pass


def _enc(v, depth, budget):
    budget.items -= 1
    if budget.items < 0:
        raise _TooBig("value too large")
    if depth > MAX_DEPTH:
        raise _TooBig("value nested too deeply")
    t = type(v)
    if v is None:
        return ["n"]
    if t is bool:
        return ["b", v]
    if t is int:
        return ["i", hex(v)]  # hex: no int-to-str digit limit, exact for any size
    if t is float:
        return ["f", repr(v)]  # repr round-trips, and spells nan/inf/-inf
    if t is str:
        return ["s", v]
    if t is bytes:
        return ["y", v.hex()]
    if t is list:
        return ["l", [_enc(x, depth + 1, budget) for x in v]]
    if t is tuple:
        return ["t", [_enc(x, depth + 1, budget) for x in v]]
    if t is dict:
        return ["d", [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)] for k, x in v.items()]]
    if t is set:
        return ["S", [_enc(x, depth + 1, budget) for x in v]]
    if t is frozenset:
        return ["F", [_enc(x, depth + 1, budget) for x in v]]
    return ["u", _type_name(t)]


def _type_name(t):
    try:
        name = type.__getattribute__(t, "__qualname__")
        return name if type(name) is str else "?"
    except Exception:
        return "?"


class Unserializable:
    """Stands for a value that could not be encoded. Equal to nothing, not even itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = type_name

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    def __hash__(self):
        return id(self)

    def __repr__(self):
        return "<unserializable " + str(self.type_name) + ">"


def decode(tagged, depth=0):
    """Rebuild a plain Python value from its tagged form; raises ``WireError`` on malformed input."""
    if depth > MAX_DEPTH + 1:
        raise WireError("tagged value nested too deeply")
    if type(tagged) is not list or not tagged or type(tagged[0]) is not str:
        raise WireError("a tagged value must be a non-empty list starting with a tag")
    tag = tagged[0]
    if tag == "n" and len(tagged) == 1:
        return None
    if len(tagged) != 2:
        raise WireError("tagged value " + repr(tag) + " must have exactly one payload")
    p = tagged[1]
    try:
        if tag == "b" and type(p) is bool:
            return p
        if tag == "i" and type(p) is str:
            return int(p, 16)
        if tag == "f" and type(p) is str:
            return float(p)
        if tag == "s" and type(p) is str:
            return p
        if tag == "y" and type(p) is str:
            return bytes.fromhex(p)
        if tag == "u" and type(p) is str:
            return Unserializable(p)
        if type(p) is list:
            if tag == "l":
                return [decode(x, depth + 1) for x in p]
            if tag == "t":
                return tuple(decode(x, depth + 1) for x in p)
            if tag == "S":
                return {decode(x, depth + 1) for x in p}
            if tag == "F":
                return frozenset(decode(x, depth + 1) for x in p)
            if tag == "d":
                out = {}
                for pair in p:
                    if type(pair) is not list or len(pair) != 2:
                        raise WireError("dict items must be [key, value] pairs")
                    out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
                return out
    except (ValueError, TypeError) as e:  # bad hex/float text, unhashable set element or key
        if isinstance(e, WireError):
            raise
        raise WireError("bad payload for tag " + repr(tag) + ": " + str(e)) from None
    raise WireError("unknown tag or payload type: " + repr(tag))


def send_frame(fd, obj):
    """Write one length-prefixed JSON message to file descriptor ``fd``."""
    import os

    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_FRAME:
        data = json.dumps({"error": "message too large"}).encode("utf-8")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def recv_frame(fd, deadline=None):
    """Read one length-prefixed JSON message; ``None`` on EOF or when ``deadline`` (monotonic) passes.

    Raises ``WireError`` when the frame is oversized or not JSON.
    """
    header = _read_exact(fd, 4, deadline)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise WireError("frame too large")
    body = _read_exact(fd, size, deadline)
    if body is None:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise WireError("frame is not JSON: " + str(e)) from None


def _read_exact(fd, n, deadline):
    import os
    import select
    import time

    chunks = []
    while n > 0:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
