"""bodies: the agent bodies of services agent.<id> (proto/agent.h).

    invoke (REQUEST)  {"run_id", "session_id", "agent_id": str 1..128,
                       "input": {"role": str 1..32, "content": str},
                       "history": [{"role", "content"}, ... at most 10,000],
                       "endpoint": str 1..2048 (optional),
                       "timeout_ms": uint (optional),
                       "platform": {"token": 32 lowercase hex, "depth": uint,
                                    "root_run_id": str 1..128,
                                    "parent_run_id": str 1..128 (exactly when
                                    depth >= 1)} (optional)}
    delta  (STREAM)   {"delta": str}
    done   (REPLY)    {"output": {"role": str, "content": str}}

decode_invoke is strict like proto/agent.c: unknown or repeated keys, a
missing key, a value of the wrong type or out of its bounds, trailing bytes
all raise BodyError. Maps are read as key/value pairs (object_pairs_hook),
so a repeated key is seen instead of silently overwriting the first.
"""
import msgpack

ID_MAX = 128
TOKEN_LEN = 32
_HEX = frozenset("0123456789abcdef")
ROLE_MAX = 32
ENDPOINT_MAX = 2048
HISTORY_MAX = 10000
UINT64_MAX = (1 << 64) - 1


class BodyError(ValueError):
    """A body that does not decode; str(err) is the reason."""


class _Map(list):
    """A msgpack map as its (key, value) pairs, in order."""


def _fields(value, required, optional=()):
    if type(value) is not _Map:
        raise BodyError("not a map")
    out = {}
    for k, v in value:
        if type(k) is not str or (k not in required and k not in optional):
            raise BodyError("unknown key %r" % (k,))
        if k in out:
            raise BodyError("repeated key %r" % k)
        out[k] = v
    for k in required:
        if k not in out:
            raise BodyError("missing key %r" % k)
    return out


def _str(value, name, hi=None, nonempty=False):
    if type(value) is not str:
        raise BodyError("%s: not a str" % name)
    if nonempty or hi is not None:
        n = len(value.encode())
        if (nonempty and n == 0) or (hi is not None and n > hi):
            raise BodyError("%s: out of range" % name)
    return value


def _message(value, name):
    m = _fields(value, ("role", "content"))
    return {"role": _str(m["role"], name + ".role", ROLE_MAX, True),
            "content": _str(m["content"], name + ".content")}


def decode_invoke(body):
    """The invoke as a dict: run_id, session_id, agent_id, input, history,
    and endpoint / timeout_ms when present. Raises BodyError."""
    try:
        top = msgpack.unpackb(body, raw=False, use_list=True, object_pairs_hook=_Map,
                              strict_map_key=False)
    except msgpack.ExtraData:
        raise BodyError("trailing bytes") from None
    except (ValueError, TypeError, msgpack.UnpackException):
        raise BodyError("malformed or truncated") from None
    m = _fields(top, ("run_id", "session_id", "agent_id", "input", "history"),
                ("endpoint", "timeout_ms", "platform"))
    inv = {k: _str(m[k], k, ID_MAX, True) for k in ("run_id", "session_id", "agent_id")}
    inv["input"] = _message(m["input"], "input")
    history = m["history"]
    if type(history) is not list:
        raise BodyError("history: not an array")
    if len(history) > HISTORY_MAX:
        raise BodyError("history: out of range")
    inv["history"] = [_message(h, "history") for h in history]
    if "endpoint" in m:
        inv["endpoint"] = _str(m["endpoint"], "endpoint", ENDPOINT_MAX, True)
    if "timeout_ms" in m:
        t = m["timeout_ms"]
        if type(t) is not int or t < 0 or t > UINT64_MAX:
            raise BodyError("timeout_ms: not a uint")
        inv["timeout_ms"] = t
    if "platform" in m:
        inv["platform"] = _platform(m["platform"])
    return inv


def _platform(value):
    """The invoke's platform map, as strict as proto/agent.c's."""
    p = _fields(value, ("token", "depth", "root_run_id"), ("parent_run_id",))
    token = _str(p["token"], "platform.token")
    if len(token) != TOKEN_LEN or not set(token) <= _HEX:
        raise BodyError("platform.token: not 32 lowercase hex digits")
    depth = p["depth"]
    if type(depth) is not int or depth < 0 or depth > UINT64_MAX:
        raise BodyError("platform.depth: not a uint")
    out = {"token": token, "depth": depth,
           "root_run_id": _str(p["root_run_id"], "platform.root_run_id", ID_MAX, True)}
    if depth >= 1 and "parent_run_id" not in p:
        raise BodyError("missing key 'parent_run_id'")
    if depth == 0 and "parent_run_id" in p:
        raise BodyError("platform.parent_run_id: only when depth >= 1")
    if "parent_run_id" in p:
        out["parent_run_id"] = _str(p["parent_run_id"], "platform.parent_run_id", ID_MAX, True)
    return out


def encode_invoke(run_id, session_id, agent_id, content, history=(), role="user",
                  platform=None):
    """An invoke body (tests and requesters)."""
    body = {"run_id": run_id, "session_id": session_id, "agent_id": agent_id,
            "input": {"role": role, "content": content},
            "history": [{"role": h["role"], "content": h["content"]} for h in history]}
    if platform is not None:
        body["platform"] = platform
    return msgpack.packb(body)


_DELTA_PREFIX = b"\x81\xa5delta"  # fixmap of 1, fixstr "delta": {"delta": ...}


def encode_delta(text):
    """{"delta": text}, built from its fixed prefix (the hot path: one per delta)."""
    return _DELTA_PREFIX + msgpack.packb(text)


def encode_done(content, role="assistant"):
    return msgpack.packb({"output": {"role": role, "content": content}})
