"""The mapagent SDK's pieces without a broker: the strict header and body
decoders (every reason of PROTOCOL.md's rejection list), the API's checks,
the settings read from the environment, and run()'s one-line refusals."""
import os
import subprocess
import sys

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "agents", "python"))
from mapagent import Agent, Config, ConfigError  # noqa: E402
from mapagent import bodies, frames as F  # noqa: E402

PY_ECHO = os.path.join(HERE, "..", "..", "agents", "python", "examples", "py_echo.py")


def pk(x):
    return msgpack.packb(x)


@pytest.mark.parametrize("header,has_body,reason", [
    (b"", False, "empty"),
    (pk([1, 2, "x" * 1100]), False, "header too large"),
    (pk({"a": 1}), False, "not an array"),
    (pk([]), False, "not an array"),
    (pk([2, 2]), False, "version"),
    (pk([2, 99, 1, 2, 3]), False, "version"),           # the version is checked first
    (pk([1, 99]), False, "unknown type"),
    (pk([1, True]), False, "unknown type"),
    (pk([1, 2, 0]), False, "field count"),
    (pk([1, 5]), True, "field count"),
    (pk([1, 1, "agent.x"]), False, "field count"),
    (pk([1, 5, -1]), True, "field out of bounds"),
    (pk([1, 5, True]), True, "field type"),
    (pk([1, 5, 1.0]), True, "field type"),
    (pk([1, 5, "7"]), True, "field type"),
    (pk([1, 4, 7, b"agent.x"]), True, "field type"),     # bin is not str
    (pk([1, 4, 7, ""]), True, "field out of bounds"),
    (pk([1, 4, 7, "s" * 65]), True, "field out of bounds"),
    (pk([1, 1, "svc", 100001]), False, "field out of bounds"),
    (pk([1, 7, 7, "c" * 33, ""]), False, "field out of bounds"),
    (pk([1, 7, 7, "", ""]), False, "field out of bounds"),
    (pk([1, 7, 7, "code", "m" * 513]), False, "field out of bounds"),
    (pk([1, 2]) + b"\x00", False, "trailing bytes"),
    (pk([1, 5, 7])[:-1], True, "truncated or malformed"),
    (b"\xc1", False, "truncated or malformed"),
    (pk([1, 2]), True, "body where none belongs"),
    (pk([1, 5, 7]), False, "body missing"),
])
def test_header_rejections(header, has_body, reason):
    with pytest.raises(F.FrameError) as e:
        F.decode(header, has_body)
    assert str(e.value) == reason


def test_headers_accepted():
    assert F.decode(bytes.fromhex("930105cd0385"), True) == [1, 5, 901]
    assert F.decode(pk([1, 1, "s" * 64, 100000]), False) == [1, 1, "s" * 64, 100000]
    assert F.decode(pk([1, 5, (1 << 64) - 1]), True) == [1, 5, (1 << 64) - 1]
    assert F.decode(pk([1, 7, 3, "c" * 32, "é" * 256]), False)[4] == "é" * 256
    assert F.encode(F.STREAM, 901) == bytes.fromhex("930105cd0385")


def test_clip_utf8_never_cuts_a_character():
    assert F.clip_utf8("é" * 300, 512) == "é" * 256
    assert F.clip_utf8("aé" * 300, 512).encode() == ("aé" * 170 + "a").encode()
    assert len(F.clip_utf8("€" * 200, 512).encode()) == 510


def _raw_map(pairs):
    """A msgpack map with pairs as given (repeats allowed)."""
    out = bytes([0x80 | len(pairs)])
    for k, v in pairs:
        out += pk(k) + pk(v)
    return out


GOOD = [("run_id", "r1"), ("session_id", "s1"), ("agent_id", "a"),
        ("input", {"role": "user", "content": "hi"}),
        ("history", [{"role": "user", "content": "old"}])]


PLAT = {"token": "0123456789abcdef" * 2, "depth": 0, "root_run_id": "r1"}


def test_invoke_accepted():
    inv = bodies.decode_invoke(_raw_map(GOOD))
    assert inv == {"run_id": "r1", "session_id": "s1", "agent_id": "a",
                   "input": {"role": "user", "content": "hi"},
                   "history": [{"role": "user", "content": "old"}]}
    inv = bodies.decode_invoke(_raw_map(GOOD + [("timeout_ms", 5), ("endpoint", "http://x")]))
    assert inv["timeout_ms"] == 5 and inv["endpoint"] == "http://x"
    assert bodies.decode_invoke(bodies.encode_invoke("r", "s", "a", "c"))["input"]["content"] == "c"
    inv = bodies.decode_invoke(_raw_map(GOOD + [("platform", PLAT)]))
    assert inv["platform"] == PLAT
    child = {"token": "f" * 32, "depth": 2, "root_run_id": "r0", "parent_run_id": "r1"}
    assert bodies.decode_invoke(bodies.encode_invoke("r", "s", "a", "c", platform=child))[
        "platform"] == child
    assert "platform" not in bodies.decode_invoke(_raw_map(GOOD))


@pytest.mark.parametrize("body", [
    _raw_map(GOOD + [("extra", 1)]),                              # unknown key
    _raw_map(GOOD + [("run_id", "r2")]),                          # repeated key
    _raw_map(GOOD[:4]),                                           # missing history
    _raw_map([("run_id", "")] + GOOD[1:]),                        # empty id
    _raw_map([("run_id", "r" * 129)] + GOOD[1:]),                 # id too long
    _raw_map([("run_id", 7)] + GOOD[1:]),                         # id not a str
    _raw_map(GOOD[:3] + [("input", {"role": "user"})] + GOOD[4:]),
    _raw_map(GOOD[:3] + [("input", {"role": "r" * 33, "content": ""})] + GOOD[4:]),
    _raw_map(GOOD[:3] + [("input", {"role": "u", "content": "c", "x": 1})] + GOOD[4:]),
    _raw_map(GOOD[:3] + [("input", ["user", "hi"])] + GOOD[4:]),
    _raw_map(GOOD[:4] + [("history", {"role": "u"})]),
    _raw_map(GOOD[:4] + [("history", [{"role": "u", "content": "c"}] * 10001)]),
    _raw_map(GOOD + [("timeout_ms", -1)]),
    _raw_map(GOOD + [("timeout_ms", "5")]),
    _raw_map(GOOD + [("endpoint", "")]),
    _raw_map(GOOD + [("platform", {**PLAT, "x": 1})]),           # unknown key in platform
    _raw_map(GOOD + [("platform", {**PLAT, "token": "A" * 32})]), # not lowercase hex
    _raw_map(GOOD + [("platform", {**PLAT, "token": "a" * 31})]), # short token
    _raw_map(GOOD + [("platform", {"token": "a" * 32, "depth": 0})]),  # no root_run_id
    _raw_map(GOOD + [("platform", {**PLAT, "depth": -1})]),
    _raw_map(GOOD + [("platform", {**PLAT, "depth": 1})]),        # depth 1 needs a parent
    _raw_map(GOOD + [("platform", {**PLAT, "parent_run_id": "p"})]),  # depth 0 has none
    _raw_map(GOOD + [("platform", "t")]),
    _raw_map(GOOD) + b"\xc0",                                     # trailing bytes
    _raw_map(GOOD)[:-3],                                          # truncated
    pk([1, 2, 3]),                                                # not a map
    b"",
])
def test_invoke_rejections(body):
    with pytest.raises(bodies.BodyError):
        bodies.decode_invoke(body)


def test_api_checks():
    with pytest.raises(ValueError):
        Agent("")
    with pytest.raises(ValueError):
        Agent("n" * 59)
    with pytest.raises(ValueError):
        Agent("ok", capacity=0)
    with pytest.raises(ValueError):
        Agent("ok", capacity=100001)
    agent = Agent("n" * 58, capacity=100000)
    assert agent.service == "agent." + "n" * 58
    with pytest.raises(TypeError):
        agent.handler(lambda call: None)      # not async

    @agent.handler
    async def h(call):
        yield "x"
    assert agent._handler is h


def test_config_from_env():
    agent = Agent("e", capacity=3)
    cfg = Config.from_env(agent, {})
    assert (cfg.endpoint, cfg.heartbeat_ms, cfg.liveness, cfg.body_max, cfg.watchdog_ms) == \
        ("tcp://127.0.0.1:5555", 1000, 3, 1 << 20, 3000)
    cfg = Config.from_env(agent, {"MAP_BROKER": "ipc:///tmp/x", "MAP_HEARTBEAT_MS": "200",
                                  "MAP_LIVENESS": "5", "MAP_BODY_MAX": "4096"})
    assert (cfg.endpoint, cfg.heartbeat_ms, cfg.liveness, cfg.body_max, cfg.watchdog_ms) == \
        ("ipc:///tmp/x", 200, 5, 4096, 1000)
    for env in ({"MAP_HEARTBEAT_MS": "abc"}, {"MAP_HEARTBEAT_MS": "5"},
                {"MAP_LIVENESS": "0"}, {"MAP_CURVE_SERVER_KEY": "k" * 40}):
        with pytest.raises(ConfigError):
            Config.from_env(agent, env)


@pytest.mark.parametrize("env,words", [
    ({"MAP_HEARTBEAT_MS": "abc"}, "MAP_HEARTBEAT_MS must be an integer"),
    ({"MAP_LOG_LEVEL": "loud"}, "MAP_LOG_LEVEL must be"),
    ({"MAP_BROKER": "nope://x"}, "cannot connect to broker endpoint 'nope://x'"),
    ({"MAP_CURVE_SERVER_KEY": "short", "MAP_CURVE_PUBLIC_KEY": "p",
      "MAP_CURVE_SECRET_KEY": "s"}, "invalid CURVE key"),
])
def test_run_refuses_bad_settings_in_one_line(env, words):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAP_")}
    e.update(env)
    r = subprocess.run(["/usr/bin/python3", PY_ECHO], env=e, capture_output=True, timeout=20)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("py-echo: "), lines
