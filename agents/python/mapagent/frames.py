"""frames: the broker protocol's headers (proto/PROTOCOL.md, "Frames").

A header is a msgpack array [version, type, fields...] of at most 1,024
bytes; REQUEST, STREAM and REPLY carry a body part, nothing else does.
decode() is strict in the way proto/frame.c is: the version is checked
first, then the type, the field count, every field's type and bounds, and
trailing bytes. A rejected header raises FrameError with one reason.

Integers are unsigned (bool is not an integer here), strings are msgpack
str (bin is rejected), as the document says.
"""
import msgpack

V = 1
READY, HEARTBEAT, DISCONNECT, REQUEST, STREAM, REPLY, ERROR, CANCEL, SERVICES = range(1, 10)
NAMES = {READY: "READY", HEARTBEAT: "HEARTBEAT", DISCONNECT: "DISCONNECT", REQUEST: "REQUEST",
         STREAM: "STREAM", REPLY: "REPLY", ERROR: "ERROR", CANCEL: "CANCEL",
         SERVICES: "SERVICES"}

HEADER_MAX = 1024
SERVICE_MAX = 64
CAPACITY_MAX = 100000
CODE_MAX = 32
MESSAGE_MAX = 512
BODY_MAX_DEFAULT = 1 << 20
UINT64_MAX = (1 << 64) - 1

_WITH_BODY = frozenset((REQUEST, STREAM, REPLY))

# Field kinds per type: ("id",) a uint64, ("str", lo, hi) a str of lo..hi
# bytes, ("uint", hi) a uint up to hi.
_ID = ("uint", UINT64_MAX)
_SHAPES = {
    READY: (("str", 1, SERVICE_MAX), ("uint", CAPACITY_MAX)),
    HEARTBEAT: (),
    DISCONNECT: (),
    REQUEST: (_ID, ("str", 1, SERVICE_MAX)),
    STREAM: (_ID,),
    REPLY: (_ID,),
    ERROR: (_ID, ("str", 1, CODE_MAX), ("str", 0, MESSAGE_MAX)),
    CANCEL: (_ID,),
    SERVICES: (_ID,),
}


class FrameError(ValueError):
    """A header the protocol rejects; str(err) is the reason."""


def _check_field(value, kind):
    if kind[0] == "uint":
        if type(value) is not int or value < 0 or value > kind[1]:
            raise FrameError("field out of bounds" if type(value) is int else "field type")
        return
    if type(value) is not str:
        raise FrameError("field type")
    n = len(value.encode())
    if n < kind[1] or n > kind[2]:
        raise FrameError("field out of bounds")


def decode(header, has_body):
    """The header's list [version, type, fields...], checked. has_body says
    whether a body part followed it. Raises FrameError."""
    if not header:
        raise FrameError("empty")
    if len(header) > HEADER_MAX:
        raise FrameError("header too large")
    try:
        h = msgpack.unpackb(header, raw=False, use_list=True, strict_map_key=False)
    except msgpack.ExtraData:
        raise FrameError("trailing bytes") from None
    except (ValueError, TypeError, msgpack.UnpackException):
        raise FrameError("truncated or malformed") from None
    if type(h) is not list or not h:
        raise FrameError("not an array")
    if type(h[0]) is not int or h[0] != V:
        raise FrameError("version")
    if len(h) < 2 or type(h[1]) is not int or h[1] not in _SHAPES:
        raise FrameError("unknown type")
    shape = _SHAPES[h[1]]
    if len(h) != 2 + len(shape):
        raise FrameError("field count")
    for value, kind in zip(h[2:], shape):
        _check_field(value, kind)
    if has_body != (h[1] in _WITH_BODY):
        raise FrameError("body where none belongs" if has_body else "body missing")
    return h


def encode(*fields):
    """The header bytes of [V, *fields] (no checks: our own frames)."""
    return msgpack.packb((V,) + fields)


def clip_utf8(text, limit):
    """text cut to at most limit bytes of UTF-8, never inside a character."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return raw.decode("utf-8")
    return raw[:limit].decode("utf-8", "ignore")
