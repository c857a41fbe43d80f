"""Process tests of map-bridge: a real map-broker and map-bridge on free
ports, the faulty agents of fault_agents.py and the FastAPI demo agent, the
bridge driven directly as a requester over the broker (frames written from
proto/frame.h: header [1, type, ...] + msgpack body).

Each failure must come back as the right ERROR code while the bridge's own
timeout is the default 30 s, so a failure not noticed promptly fails the
test by its wait deadline; other invokes keep being served meanwhile.

Binaries: MAP_BUILD_DIR (default ./build) /broker/map-broker and
/agents/bridge/map-bridge, or MAP_BIN_BROKER / MAP_BIN_BRIDGE. Python: Debian's
python3-zmq, python3-msgpack, python3-fastapi, python3-uvicorn, python3-pytest.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import pytest
import zmq

from mapclient import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("MAP_BUILD_DIR", os.path.join(ROOT, "build"))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

V = 1
READY, HEARTBEAT, DISCONNECT, REQUEST, STREAM, REPLY, ERROR, CANCEL, SERVICES = range(1, 10)

PUBLIC_URL = "http://edge.test:7070"  # the fixture bridge's --public-url (a trailing / is dropped)
TOKEN = "0123456789abcdef0123456789abcdef"
WAIT = 10.0  # seconds: a deadline for conditions, far below the bridge's 30 s timeout


def binary(name, sub):
    return os.environ.get("MAP_BIN_" + name.upper(), os.path.join(BUILD, sub, "map-" + name))


def wait_until(cond, timeout=WAIT, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


def http_get_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


def http_up(url):
    try:
        http_get_json(url)
        return True
    except OSError:
        return False


class Procs:
    """Processes of the tests; killed by PID whatever happens."""

    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="map-bridge-test-")

    def start(self, argv, env=None, name="proc"):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MAP_")}
        e.update(env or {})
        log = open(os.path.join(self.dir, "%s-%d.log" % (name, len(self.procs))), "ab")
        p = subprocess.Popen([str(a) for a in argv], env=e, stdout=log, stderr=subprocess.STDOUT)
        p.logpath = log.name
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class Requester:
    """A broker peer that only asks (capacity 0)."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.next_id = 1
        self.results = {}
        self.last_hb = 0.0
        self._send([V, READY, "bridge-test", 0])

    def close(self):
        self.sock.close(0)

    def _send(self, header, body=None):
        parts = [msgpack.packb(header)]
        if body is not None:
            parts.append(body if isinstance(body, bytes) else msgpack.packb(body))
        self.sock.send_multipart(parts)

    def _new(self):
        rid = self.next_id
        self.next_id += 1
        self.results[rid] = {"deltas": [], "final": None, "t0": time.monotonic(), "t_first": None}
        return rid

    def request(self, service, body):
        rid = self._new()
        self._send([V, REQUEST, rid, service], body)
        return rid

    def invoke(self, endpoint, content="hello big world", history=(), timeout_ms=None,
               run_id=None, extra=None):
        body = {"run_id": run_id or "run_%d" % self.next_id, "session_id": "s1",
                "agent_id": "demo", "input": {"role": "user", "content": content},
                "history": [{"role": r, "content": c} for r, c in history]}
        if endpoint is not None:
            body["endpoint"] = endpoint
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        body.update(extra or {})
        return self.request("bridge", body)

    def services(self):
        rid = self._new()
        self._send([V, SERVICES, rid])
        return rid

    def cancel(self, rid):
        self._send([V, CANCEL, rid])

    def pump(self, timeout=0.05):
        now = time.monotonic()
        if now - self.last_hb > 0.3:
            self._send([V, HEARTBEAT])
            self.last_hb = now
        if not self.sock.poll(int(timeout * 1000)):
            return
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            hdr = msgpack.unpackb(parts[0])
            body = msgpack.unpackb(parts[1]) if len(parts) > 1 else None
            kind = hdr[1]
            if kind not in (STREAM, REPLY, ERROR):
                continue
            res = self.results.get(hdr[2])
            if res is None:
                continue
            if kind == STREAM:
                if res["t_first"] is None:
                    res["t_first"] = time.monotonic()
                res["deltas"].append(body["delta"])
            elif kind == REPLY:
                res["final"] = ("reply", body)
                res["t_final"] = time.monotonic()
            else:
                res["final"] = ("error", hdr[3], hdr[4])
                res["t_final"] = time.monotonic()

    def until(self, cond, timeout=WAIT, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            self.pump()
        raise AssertionError("timed out waiting for " + what)

    def wait(self, rid, timeout=WAIT):
        return self.until(lambda: self.results[rid]["final"], timeout, "request %d" % rid)

    def wait_service(self, name):
        def known():
            rid = self.services()
            final = self.until(lambda: self.results[rid]["final"], what="SERVICES")
            return final[0] == "reply" and any(s[0] == name and s[1] > 0 for s in final[1])
        self.until(known, what="service " + name)


def start_broker(procs):
    """Starts a broker on a free port (no tap); returns its endpoint."""
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    procs.start([binary("broker", "broker"), "--endpoint", endpoint, "--tap", ""], name="broker")
    return endpoint


def start_faults(procs):
    """Starts fault_agents.py on a free port; returns its base URL once up."""
    port = free_port()
    procs.start([PY, os.path.join(HERE, "fault_agents.py"), port], name="faults")
    url = "http://127.0.0.1:%d" % port
    wait_until(lambda: http_up(url + "/health"), what="fault agents")
    return url


def release_holds(faults):
    """Lets every `hold` stream of the fault agents finish."""
    urllib.request.urlopen(urllib.request.Request(faults + "/release", data=b"", method="POST"),
                           timeout=10).read()


@pytest.fixture(scope="module")
def env():
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        bridge = procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep,
                              "--max-response", 65536, "--capacity", 64,
                              "--public-url", PUBLIC_URL + "/"],
                             env={"MAP_LOG_LEVEL": "info"}, name="bridge")
        faults = start_faults(procs)
        dport = free_port()
        procs.start([PY, os.path.join(ROOT, "agents/demo/demo_agent.py")], name="demo",
                    env={"MAP_DEMO_AGENT_ADDR": "127.0.0.1:%d" % dport, "MAP_DEMO_DELAY_MS": "5"})
        demo = "http://127.0.0.1:%d" % dport
        wait_until(lambda: http_up(demo + "/health"), what="demo agent")
        req = Requester(broker_ep)
        req.wait_service("bridge")
        yield {"procs": procs, "req": req, "faults": faults, "demo": demo,
               "broker": broker_ep, "bridge": bridge}
        req.close()
        assert bridge.poll() is None, "the bridge died:\n" + procs.log(bridge)
    finally:
        procs.stop_all()


def state(env):
    return http_get_json(env["faults"] + "/state")


def expect_error(env, rid, code, contains=""):
    final = env["req"].wait(rid)
    assert final[0] == "error", final
    assert final[1] == code, final
    assert contains in final[2], final
    return final


def test_demo_agent_word_by_word(env):
    req = env["req"]
    rid = req.invoke(env["demo"], "hello  big world")
    final = req.wait(rid)
    assert final == ("reply", {"output": {"role": "assistant", "content": "hello  big world"}})
    assert req.results[rid]["deltas"] == ["hello", "  big", " world"]


def test_request_body_and_history(env):
    req = env["req"]
    history = [("user", "earlier"), ("assistant", "an answer \u00e9")]
    rid = req.invoke(env["faults"] + "/history/", "now", history=history, run_id="run_hist")
    final = req.wait(rid)
    assert final[0] == "reply"
    assert json.loads(final[1]["output"]["content"]) == [
        {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "an answer \u00e9"}]
    sent = state(env)["requests"]["history"][-1]
    assert sent["accept"] == "text/event-stream"
    assert sent["content_type"] == "application/json"
    assert sent["body"] == {"run_id": "run_hist", "session_id": "s1", "agent_id": "demo",
                            "input_message": {"role": "user", "content": "now"},
                            "messages": [{"role": "user", "content": "earlier"},
                                         {"role": "assistant", "content": "an answer \u00e9"}]}
    assert json.loads(req.results[rid]["deltas"][0]) == sent["body"]


def test_platform_becomes_calls_url(env):
    """An invoke with a run token: the agent gets platform{calls_url, token,
    depth}, the URL under --public-url; ids of the tree stay internal."""
    req = env["req"]
    platform = {"token": TOKEN, "depth": 2, "root_run_id": "run_root", "parent_run_id": "run_mid"}
    rid = req.invoke(env["faults"] + "/history", "now", run_id="run_child",
                     extra={"platform": platform})
    assert req.wait(rid)[0] == "reply"
    sent = state(env)["requests"]["history"][-1]["body"]
    assert sent["platform"] == {"calls_url": PUBLIC_URL + "/v1/runs/run_child/calls",
                                "token": TOKEN, "depth": 2}
    # Without one (an older orchestrator), no platform key at all.
    rid = req.invoke(env["faults"] + "/history", "now", run_id="run_plain")
    assert req.wait(rid)[0] == "reply"
    assert "platform" not in state(env)["requests"]["history"][-1]["body"]
    # A malformed platform map is a bad invoke, not a half-made body.
    bad = dict(platform, token="NOT-HEX")
    expect_error(env, req.invoke(env["faults"] + "/history", "x", extra={"platform": bad}),
                 "bad_request", "bad invoke body")


def test_public_url_defaults_to_the_edge_address():
    """No --public-url: http:// + MAP_HTTP_ADDR; a bad one is one line and
    a non-zero exit."""
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep],
                    env={"MAP_HTTP_ADDR": "127.0.0.1:18080"}, name="bridge")
        faults = start_faults(procs)
        req = Requester(broker_ep)
        req.wait_service("bridge")
        rid = req.invoke(faults + "/history", "now", run_id="run_d",
                         extra={"platform": {"token": TOKEN, "depth": 0, "root_run_id": "run_d"}})
        assert req.wait(rid)[0] == "reply"
        sent = http_get_json(faults + "/state")["requests"]["history"][-1]["body"]
        assert sent["platform"] == {"calls_url": "http://127.0.0.1:18080/v1/runs/run_d/calls",
                                    "token": TOKEN, "depth": 0}
        req.close()
    finally:
        procs.stop_all()
    out = subprocess.run([binary("bridge", "agents/bridge"), "--public-url", "ftp://x"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert "public URL" in out.stderr


def test_plain_text_deltas_and_empty_done(env):
    req = env["req"]
    rid = req.invoke(env["faults"] + "/plain")
    assert req.wait(rid) == ("reply", {"output": {"role": "assistant", "content": "hello world"}})
    assert req.results[rid]["deltas"] == ["hello", " world"]


def test_error_event(env):
    rid = env["req"].invoke(env["faults"] + "/error")
    expect_error(env, rid, "agent_error", "boom: the agent broke")
    assert env["req"].results[rid]["deltas"] == ["partial"]


def test_http_500_is_unavailable(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/http500"), "agent_unavailable", "HTTP 500")


def test_http_404_is_agent_error(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/nosuchagent"), "agent_error",
                 "HTTP 404 (client error)")


def test_wrong_content_type(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/json"), "agent_error",
                 "Content-Type application/json")


def test_closed_mid_stream(env):
    rid = env["req"].invoke(env["faults"] + "/cut")
    expect_error(env, rid, "agent_error", "closed the stream before done")
    assert env["req"].results[rid]["deltas"] == ["before the cut"]


def test_garbage_done(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/garbage"), "agent_error",
                 "malformed done event")


def test_delta_without_text(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/baddelta"), "agent_error",
                 "malformed delta event")


def test_connection_refused(env):
    expect_error(env, env["req"].invoke("http://127.0.0.1:%d" % free_port()), "agent_unavailable",
                 "cannot reach the agent")


def test_dns_failure(env):
    expect_error(env, env["req"].invoke("http://no-such-host.invalid:8000"), "agent_unavailable",
                 "cannot reach the agent")


def test_answer_too_large(env):
    expect_error(env, env["req"].invoke(env["faults"] + "/big"), "agent_error",
                 "larger than 65536 bytes")


def test_answers_past_the_frame_limit_fail_and_leak_nothing():
    """One limit, end to end: at its default maximum the bridge accepts an
    answer only as large as a frame between processes carries; a 2 MiB
    answer fails agent_error "answer too large" (before, 1-2 MiB answers
    leaked the bridge's credit at the broker and larger ones cut its
    connection). With capacity 2, six of them in a row and then a normal
    run: all answered, the bridge still serves."""
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        bridge = procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep,
                              "--capacity", 2], env={"MAP_LOG_LEVEL": "info"}, name="bridge")
        faults = start_faults(procs)
        req = Requester(broker_ep)
        try:
            req.wait_service("bridge")
            for _ in range(3):
                rids = [req.invoke(faults + "/huge"), req.invoke(faults + "/huge")]
                for rid in rids:
                    final = req.wait(rid)
                    assert final[0] == "error" and final[1] == "agent_error", final
                    assert "answer too large" in final[2], final
            final = req.wait(req.invoke(faults + "/ok"))
            assert final[0] == "reply", final
            assert bridge.poll() is None
            assert "worker.link_lost" not in procs.log(bridge) and "broker.lost" not in procs.log(bridge)
        finally:
            req.close()
    finally:
        procs.stop_all()


def test_bad_invokes(env):
    req = env["req"]
    expect_error(env, req.invoke(None), "bad_request", "no endpoint")
    expect_error(env, req.invoke("ftp://127.0.0.1/x"), "bad_request", "http:// or https://")
    expect_error(env, req.request("bridge", {"run_id": "r"}), "bad_request", "bad invoke body")
    expect_error(env, req.request("bridge", b"\xc1garbage"), "bad_request", "bad invoke body")
    expect_error(env, req.invoke(env["faults"] + "/ok", "x" * 70000), "bad_request",
                 "larger than 65536 bytes")


def test_stall_times_out_while_others_are_served(env):
    req = env["req"]
    stalled = req.invoke(env["faults"] + "/stall", timeout_ms=400)
    # Meanwhile, the bridge keeps serving.
    ok = [req.invoke(env["demo"], "one two three four") for _ in range(5)]
    for rid in ok:
        assert req.wait(rid)[0] == "reply"
    final = expect_error(env, stalled, "agent_timeout", "no byte from the agent for 400 ms")
    assert req.results[stalled]["deltas"] == ["then nothing"]
    assert final
    wait_until(lambda: state(env)["disconnects"].get("stall", 0) >= 1, what="stall agent sees the close")


def test_failures_concurrent_with_streams(env):
    req = env["req"]
    slow = req.invoke(env["faults"] + "/slow")
    req.until(lambda: req.results[slow]["deltas"], what="slow agent streaming")
    kinds = ["error", "http500", "cut", "garbage", "json", "ok", "plain"] * 4
    rids = {req.invoke(env["faults"] + "/" + k, "a b c"): k for k in kinds}
    want = {"error": "agent_error", "http500": "agent_unavailable", "cut": "agent_error",
            "garbage": "agent_error", "json": "agent_error"}
    for rid, kind in rids.items():
        final = req.wait(rid)
        if kind in want:
            assert final[0] == "error" and final[1] == want[kind], (kind, final)
        else:
            assert final[0] == "reply", (kind, final)
    assert req.results[slow]["final"] is None, "the slow stream goes on"
    n = len(req.results[slow]["deltas"])
    req.until(lambda: len(req.results[slow]["deltas"]) > n + 2, what="slow stream still flowing")
    req.cancel(slow)
    expect_error(env, slow, "cancelled")


def test_cancel_aborts_the_http_request(env):
    req = env["req"]
    before = state(env)["disconnects"].get("slow", 0)
    rid = req.invoke(env["faults"] + "/slow")
    req.until(lambda: len(req.results[rid]["deltas"]) >= 2, what="slow deltas")
    req.cancel(rid)
    expect_error(env, rid, "cancelled")
    wait_until(lambda: state(env)["disconnects"].get("slow", 0) > before,
               what="the slow agent to see the disconnect")
    wait_until(lambda: state(env)["active"].get("slow", 0) == 0, what="no slow stream left")
    # And the bridge goes on serving.
    rid = req.invoke(env["demo"], "still here")
    assert req.wait(rid) == ("reply", {"output": {"role": "assistant", "content": "still here"}})


def test_many_at_once(env):
    req = env["req"]
    rids = [req.invoke(env["demo"], "w%d x y z" % i) for i in range(60)]
    for i, rid in enumerate(rids):
        final = req.wait(rid)
        assert final == ("reply", {"output": {"role": "assistant", "content": "w%d x y z" % i}})
        assert "".join(req.results[rid]["deltas"]) == "w%d x y z" % i


def test_sigterm_fails_in_flight_with_worker_stopping():
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        bridge = procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep], name="bridge")
        faults = start_faults(procs)
        dport = free_port()
        procs.start([PY, os.path.join(ROOT, "agents/demo/demo_agent.py")], name="demo",
                    env={"MAP_DEMO_AGENT_ADDR": "127.0.0.1:%d" % dport, "MAP_DEMO_DELAY_MS": "0"})
        demo = "http://127.0.0.1:%d" % dport
        wait_until(lambda: http_up(demo + "/health"), what="demo agent")
        req = Requester(broker_ep)
        req.wait_service("bridge")
        # One after the other, the invokes of the demo agent share one
        # keep-alive connection (counted in the bridge's stop line).
        for i in range(5):
            assert req.wait(req.invoke(demo, "run %d" % i))[0] == "reply"
        rid = req.invoke(faults + "/slow")
        req.until(lambda: req.results[rid]["deltas"], what="slow deltas")
        bridge.send_signal(signal.SIGTERM)
        final = req.wait(rid)
        assert final[0] == "error" and final[1] == "worker_stopping", final
        assert bridge.wait(timeout=WAIT) == 0, procs.log(bridge)
        stop = [l for l in procs.log(bridge).splitlines() if " bridge.stop " in l]
        assert stop and "invokes=6 done=5 failed=1" in stop[0], procs.log(bridge)
        # Without reuse: 6. The demo's five share one connection, or two when
        # the next invoke starts while the last one's chunked end is in flight.
        connects = int(stop[0].split("connects=")[1].split()[0])
        assert 2 <= connects <= 3, stop[0]
        req.close()
    finally:
        procs.stop_all()


def test_help_and_bad_flag():
    out = subprocess.run([binary("bridge", "agents/bridge"), "--help"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0 and "--max-response" in out.stdout
    assert "--public-url" in out.stdout and "MAP_PUBLIC_URL" in out.stdout
    out = subprocess.run([binary("bridge", "agents/bridge"), "--capacity", "0"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([binary("bridge", "agents/bridge"), "--broker", "nope://x"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and out.stderr.strip()


def test_256_streams_at_once():
    """One bridge with its default capacity holds 256 HTTP streams open at
    once (one thread, no thread per request); the broker queues the rest,
    which start as streams end; every answer is whole."""
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        bridge = procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep], name="bridge")
        faults = start_faults(procs)
        req = Requester(broker_ep)
        req.wait_service("bridge")
        rids = [req.invoke(faults + "/hold", "n%d" % i, timeout_ms=60000) for i in range(300)]
        req.until(lambda: sum(1 for r in rids if req.results[r]["deltas"]) == 256, timeout=60,
                  what="256 streams under way")
        assert state_of(faults)["active"].get("hold", 0) == 256
        for _ in range(6):  # the other 44 wait at the broker
            req.pump(0.05)
            assert sum(1 for r in rids if req.results[r]["deltas"]) == 256
        release_holds(faults)
        for i, rid in enumerate(rids):
            assert req.wait(rid) == ("reply", {"output": {"role": "assistant", "content": "held n%d" % i}})
        assert bridge.poll() is None
        req.close()
    finally:
        procs.stop_all()


def test_bridges_side_by_side():
    """Bridges scale like any worker: two processes of capacity 5 hold 10
    streams at once between them, and each served its share."""
    procs = Procs()
    try:
        broker_ep = start_broker(procs)
        bridges = [procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep, "--capacity", 5],
                               name="bridge%d" % i) for i in range(2)]
        faults = start_faults(procs)
        req = Requester(broker_ep)
        req.until(lambda: any(s[0] == "bridge" and s[1] == 2 for s in
                              req.wait(req.services())[1]), what="both bridges known")
        rids = [req.invoke(faults + "/hold", "n%d" % i, timeout_ms=60000) for i in range(12)]
        req.until(lambda: sum(1 for r in rids if req.results[r]["deltas"]) == 10, what="10 streams")
        assert state_of(faults)["active"].get("hold", 0) == 10
        release_holds(faults)
        for i, rid in enumerate(rids):
            assert req.wait(rid) == ("reply", {"output": {"role": "assistant", "content": "held n%d" % i}})
        req.close()
        served = []
        for b in bridges:
            b.send_signal(signal.SIGTERM)
            assert b.wait(timeout=WAIT) == 0, procs.log(b)
            stop = [l for l in procs.log(b).splitlines() if " bridge.stop " in l]
            assert stop, procs.log(b)
            served.append(int(stop[0].split("done=")[1].split()[0]))
        assert sum(served) == 12 and min(served) >= 5, served
    finally:
        procs.stop_all()


def test_capacity_and_broker_restart():
    """--capacity bounds the HTTP requests in flight (the broker queues the
    rest); losing the broker aborts the HTTP requests of every invoke; a
    restarted broker is served again without restarting the bridge;
    --timeout-ms is the default idle timeout."""
    procs = Procs()
    try:
        port = free_port()
        broker_ep = "tcp://127.0.0.1:%d" % port
        broker_argv = [binary("broker", "broker"), "--endpoint", broker_ep, "--tap", "",
                       "--heartbeat-ms", 200]
        broker = procs.start(broker_argv, name="broker")
        bridge = procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep,
                              "--capacity", 2, "--heartbeat-ms", 200, "--timeout-ms", 700],
                             name="bridge")
        faults = start_faults(procs)
        req = Requester(broker_ep)
        req.wait_service("bridge")

        rids = [req.invoke(faults + "/slow") for _ in range(3)]
        req.until(lambda: sum(1 for r in rids if req.results[r]["deltas"]) == 2, what="two streams")
        for _ in range(10):  # the third waits at the broker, not at the agent
            req.pump(0.05)
            assert state_of(faults)["active"].get("slow", 0) <= 2
        assert sum(1 for r in rids if req.results[r]["deltas"]) == 2
        req.cancel(rids[0])
        req.until(lambda: req.results[rids[2]]["deltas"], what="the third starts after a cancel")
        wait_until(lambda: state_of(faults)["disconnects"].get("slow", 0) == 1, what="the cancelled one closed")
        assert state_of(faults)["active"].get("slow", 0) == 2

        before = state_of(faults)["disconnects"].get("slow", 0)
        broker.kill()
        broker.wait(timeout=WAIT)
        wait_until(lambda: state_of(faults)["disconnects"].get("slow", 0) == before + 2,
                   what="the bridge to abort its HTTP requests when the broker is lost")
        assert state_of(faults)["active"].get("slow", 0) == 0
        req.close()

        procs.start(broker_argv, name="broker2")
        req = Requester(broker_ep)
        req.wait_service("bridge")
        rid = req.invoke(faults + "/ok", "back again")
        assert req.wait(rid) == ("reply", {"output": {"role": "assistant", "content": "back again"}})
        # --timeout-ms applies when the invoke names no timeout_ms (the slow
        # agent above, a delta every 50 ms, never met it).
        expect_error({"req": req}, req.invoke(faults + "/stall"), "agent_timeout",
                     "no byte from the agent for 700 ms")
        assert bridge.poll() is None
        req.close()
    finally:
        procs.stop_all()


def state_of(faults):
    return http_get_json(faults + "/state")


class FakeCalls:
    """The edge's POST /v1/runs/{run}/calls for the delegate agent, in a
    thread: records each call, answers by the child's input: "refuse" → 409
    call_refused; "fail ..." → a child that fails; "hold ..." → one delta,
    then keep-alive comments until the caller leaves (recorded); anything
    else → a child echoing its input word by word."""

    def __init__(self):
        import http.server
        import threading
        calls = self.calls = []
        self.left = []
        left = self.left

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                calls.append({"path": self.path, "auth": self.headers.get("Authorization"),
                              "body": body})
                text = body["input_message"]["content"]
                if text == "refuse":
                    doc = json.dumps({"error": {"code": "call_refused",
                                                "message": "agent \"delegate\" is already in the call chain"}}).encode()
                    self.send_response(409)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(doc)))
                    self.end_headers()
                    self.wfile.write(doc)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("X-Run-Id", "run_child")
                self.send_header("Connection", "close")
                self.end_headers()
                seq = [0]

                def event(type_, payload):
                    seq[0] += 1
                    ev = {"event_id": seq[0], "run_id": "run_child", "session_id": "s1",
                          "seq": seq[0], "type": type_, "payload": payload,
                          "created_at": "2026-12-02T00:00:00.000Z",
                          "parent_run_id": "run_parent", "depth": 1}
                    self.wfile.write(("id: %d\nevent: %s\ndata: %s\n\n"
                                      % (seq[0], type_, json.dumps(ev))).encode())
                    self.wfile.flush()
                event("run_started", {"agent_id": body["agent_id"]})
                event("user_input", {"message": body["input_message"]})
                words = text.split(" ")
                if words[0] == "hold":
                    event("agent_stream_delta", {"delta": "held"})
                    try:
                        for _ in range(400):  # 20 s at most
                            time.sleep(0.05)
                            self.wfile.write(b": keep-alive\n\n")
                            self.wfile.flush()
                    except OSError:
                        left.append(body["call_id"])
                    return
                for i, w in enumerate(words):
                    event("agent_stream_delta", {"delta": (" " if i else "") + w})
                if words[0] == "fail":
                    event("run_failed", {"error": {"code": "agent_error", "message": "boom"}})
                else:
                    event("agent_invoke_done", {"output": {"role": "assistant", "content": text}})
                    event("run_done", {})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_delegate_agent_calls_through_platform():
    """agents/demo/delegate_agent.py behind the bridge: it streams its
    preface, calls the agent the input names through platform.calls_url with
    the run token, relays the child's deltas as its own, and finishes with
    the whole answer; a refused or failed child ends the invoke agent_error
    with the reason; a cancelled invoke closes the call (the edge then
    cancels the child); no platform map: agent_error, no call."""
    procs = Procs()
    fake = FakeCalls()
    try:
        broker_ep = start_broker(procs)
        procs.start([binary("bridge", "agents/bridge"), "--broker", broker_ep,
                     "--public-url", fake.url], name="bridge")
        port = free_port()
        procs.start([PY, os.path.join(ROOT, "agents/demo/delegate_agent.py")], name="delegate",
                    env={"MAP_DELEGATE_AGENT_ADDR": "127.0.0.1:%d" % port})
        delegate = "http://127.0.0.1:%d" % port
        wait_until(lambda: http_up(delegate + "/health"), what="delegate agent")
        req = Requester(broker_ep)
        req.wait_service("bridge")
        platform = {"token": TOKEN, "depth": 0, "root_run_id": "run_parent"}

        rid = req.invoke(delegate, "hello big world", run_id="run_parent",
                         extra={"platform": platform})
        final = req.wait(rid)
        assert final == ("reply", {"output": {"role": "assistant",
                                              "content": "delegate asked echo: hello big world"}})
        assert req.results[rid]["deltas"] == ["delegate asked echo: ", "hello", " big", " world"]
        call = fake.calls[-1]
        assert call["path"] == "/v1/runs/run_parent/calls"
        assert call["auth"] == "Bearer " + TOKEN
        assert call["body"] == {"call_id": "delegate-1", "agent_id": "echo",
                                "input_message": {"role": "user", "content": "hello big world"}}

        # "@agent rest": the rest goes to that agent.
        rid = req.invoke(delegate, "@demo two words", run_id="run_p2", extra={"platform": platform})
        assert req.wait(rid)[1]["output"]["content"] == "delegate asked demo: two words"
        assert fake.calls[-1]["body"]["agent_id"] == "demo"
        assert fake.calls[-1]["path"] == "/v1/runs/run_p2/calls"

        rid = req.invoke(delegate, "refuse", extra={"platform": platform})
        final = expect_error({"req": req}, rid, "agent_error", "already in the call chain")
        assert "409" in final[2]

        rid = req.invoke(delegate, "fail now", extra={"platform": platform})
        expect_error({"req": req}, rid, "agent_error", "echo failed: boom (agent_error)")
        assert req.results[rid]["deltas"] == ["delegate asked echo: ", "fail", " now"]

        n = len(fake.calls)
        rid = req.invoke(delegate, "no platform here")
        expect_error({"req": req}, rid, "agent_error", "no platform.calls_url")
        assert len(fake.calls) == n

        rid = req.invoke(delegate, "hold on", extra={"platform": platform})
        req.until(lambda: req.results[rid]["deltas"][-1:] == ["held"], what="the held delta")
        req.cancel(rid)
        expect_error({"req": req}, rid, "cancelled")
        wait_until(lambda: fake.left == ["delegate-1"], what="the call to be closed")
        req.close()
    finally:
        procs.stop_all()
        fake.close()
