"""Protocol conformance (proto/PROTOCOL.md) of a worker, run against both
the C worker library (conform_agent.c) and the Python SDK
(conform_agent.py): the same scenarios and the same assertions, each test
parametrized over the two.

Most scenarios face a fake broker: a ROUTER in this process that speaks the
protocol frame by frame, so the test sees every byte the worker sends and
can go silent, disconnect or send what a real broker never would. Credit and
the broker restart use the real map-broker with a mapclient requester.
"""
import os
import time

import msgpack
import pytest
import zmq

from mapclient import (CANCEL, DISCONNECT, ERROR, HEARTBEAT, READY, REPLY, REQUEST,
                       SERVICES, STREAM, V, Peer, Procs, free_port, wait_until, BUILD)

HB = 200          # ms, the heartbeat of every peer here
LIVENESS = 3
SERVICE = "agent.conform"
HERE = os.path.dirname(os.path.abspath(__file__))


def invoke(content, run_id="run_1"):
    return msgpack.packb({"run_id": run_id, "session_id": "s1", "agent_id": "conform",
                          "input": {"role": "user", "content": content}, "history": []})


def agent_argv(impl):
    if impl == "c":
        return [os.path.join(BUILD, "tests", "proc", "conform_agent")]
    return ["/usr/bin/python3", os.path.join(HERE, "conform_agent.py")]


def log_text(p):
    with open(p.log, "rb") as f:
        return f.read().decode(errors="replace")


class FakeBroker:
    """A ROUTER speaking the broker's side to one worker. Heartbeats every HB
    while pumping unless silent; answers the SERVICES probe unless silent."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.peer = None
        self.silent = False
        self.next_hb = 0.0
        self.seen = []            # every (header, body) received, in order

    def send(self, header, body=None, raw_header=None):
        parts = [self.peer, raw_header if raw_header is not None else msgpack.packb(header)]
        if body is not None:
            parts.append(body)
        self.sock.send_multipart(parts)

    def pump(self, timeout):
        """One frame from the worker, or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if not self.silent and self.peer is not None and now >= self.next_hb:
                self.send([V, HEARTBEAT])
                self.next_hb = now + HB / 1000.0
            left = deadline - now
            if left <= 0:
                return None
            wait = min(left, max(0.0, self.next_hb - now) if self.peer else left)
            if not self.sock.poll(max(1, int(wait * 1000))):
                continue
            parts = self.sock.recv_multipart()
            h = msgpack.unpackb(parts[1])
            body = parts[2] if len(parts) > 2 else None
            if h[1] == READY:
                self.peer = parts[0]
            self.seen.append((h, body))
            if h[1] == SERVICES and not self.silent:
                self.send([V, REPLY, h[2]], msgpack.packb([]))
            return h, body

    def expect(self, pred, timeout=10.0, what="a frame"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.pump(deadline - time.monotonic())
            if got and pred(*got):
                return got
        raise AssertionError("no %s within %.0f s; seen: %r" % (what, timeout, self.seen[-20:]))

    def until(self, cond, timeout=10.0, what="condition"):
        """wait_until that keeps the broker's side alive meanwhile (pumping,
        heartbeating): a worker left without heartbeats would lose the link."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for " + what)
            self.pump(0.02)

    def final(self, rid, timeout=10.0):
        """STREAM bodies and the final frame of request rid."""
        deltas = []
        while True:
            h, body = self.expect(lambda h, b: h[1] in (STREAM, REPLY, ERROR) and h[2] == rid,
                                  timeout, "answer to %d" % rid)
            if h[1] == STREAM:
                deltas.append(msgpack.unpackb(body)["delta"])
            else:
                return deltas, h, body

    def close(self):
        self.sock.close(0)


@pytest.fixture(params=["c", "py"])
def impl(request):
    return request.param


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.stop_all()


def start_agent(procs, impl, endpoint, capacity=4, body_max=None):
    env = {"MAP_BROKER": endpoint, "MAP_HEARTBEAT_MS": str(HB), "MAP_LIVENESS": str(LIVENESS),
           "MAP_CONFORM_CAPACITY": str(capacity)}
    if body_max:
        env["MAP_BODY_MAX"] = str(body_max)
    return procs.start_argv(agent_argv(impl), env=env, name="conform-" + impl)


@pytest.fixture
def fake(impl, procs):
    """A fake broker and an agent announced to it: (broker, agent process)."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    fb = FakeBroker(ep)
    agent = start_agent(procs, impl, ep, body_max=65536)
    h, _ = fb.expect(lambda h, b: h[1] == READY, what="READY")
    assert h == [V, READY, SERVICE, 4]
    fb.expect(lambda h, b: h[1] == SERVICES, what="the SERVICES probe")
    yield fb, agent
    fb.close()


def test_announce_probe_heartbeat(fake):
    fb, _ = fake
    ready = [h for h, _ in fb.seen if h[1] == READY]
    assert ready == [[V, READY, SERVICE, 4]]
    assert fb.seen[0][0][1] == READY, "READY must be the first frame"
    probe = [h for h, _ in fb.seen if h[1] == SERVICES][0]
    assert probe[2] >> 63 == 1, "the probe's id has bit 63 set"
    for _ in range(3):
        h, body = fb.expect(lambda h, b: h[1] == HEARTBEAT, what="a HEARTBEAT")
        assert h == [V, HEARTBEAT] and body is None


def test_stream_and_reply(fake):
    fb, _ = fake
    fb.send([V, REQUEST, 901, SERVICE], invoke("stream 5"))
    deltas, h, body = fb.final(901)
    assert deltas == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert h == [V, REPLY, 901]
    assert msgpack.unpackb(body) == {"output": {"role": "assistant", "content": "w0 w1 w2 w3 w4 "}}
    # The bytes of PROTOCOL.md's worked example: [1, 5, 901] and [1, 6, 901].
    raw = [msgpack.packb(hh) for hh, _ in fb.seen if hh[1] in (STREAM, REPLY)]
    assert raw[0] == bytes.fromhex("930105cd0385") and raw[-1] == bytes.fromhex("930106cd0385")


def test_agent_error_and_bad_request(fake):
    fb, _ = fake
    fb.send([V, REQUEST, 7, SERVICE], invoke("fail"))
    deltas, h, _ = fb.final(7)
    assert deltas == [] and h == [V, ERROR, 7, "agent_error", "boom"]
    fb.send([V, REQUEST, 8, SERVICE], b"\x81\xa3bad\xc0")  # a map, but not an invoke
    _, h, _ = fb.final(8)
    assert h[:4] == [V, ERROR, 8, "bad_request"]
    fb.send([V, REQUEST, 9, SERVICE], invoke("stream 1"))
    assert fb.final(9)[1] == [V, REPLY, 9]


def test_invoke_with_platform(fake):
    """The orchestrator's invoke carries platform (the call token, SPEC §7):
    served; a platform that breaks its rules is a bad_request, like any
    other bad key."""
    fb, _ = fake
    plat = {"token": "0123456789abcdef" * 2, "depth": 1, "root_run_id": "run_r",
            "parent_run_id": "run_r"}

    def with_platform(p):
        return msgpack.packb({"run_id": "run_1", "session_id": "s1", "agent_id": "conform",
                              "input": {"role": "user", "content": "stream 2"}, "history": [],
                              "platform": p})
    fb.send([V, REQUEST, 61, SERVICE], with_platform(plat))
    deltas, h, _ = fb.final(61)
    assert deltas == ["w0 ", "w1 "] and h == [V, REPLY, 61]
    for i, bad in enumerate([dict(plat, extra=1), dict(plat, token="X" * 32),
                             {k: v for k, v in plat.items() if k != "parent_run_id"}]):
        fb.send([V, REQUEST, 62 + i, SERVICE], with_platform(bad))
        assert fb.final(62 + i)[1][:4] == [V, ERROR, 62 + i, "bad_request"], bad


def test_cancel(fake):
    fb, agent = fake
    fb.send([V, REQUEST, 21, SERVICE], invoke("hang", "run_hang"))
    fb.until(lambda: "conform.request run=run_hang" in log_text(agent), what="the request")
    fb.send([V, CANCEL, 21])
    _, h, _ = fb.final(21)
    assert h[:4] == [V, ERROR, 21, "cancelled"]
    fb.until(lambda: "conform.cancelled run=run_hang" in log_text(agent),
               what="the handler to see the cancel")
    fb.send([V, CANCEL, 21])  # a second cancel of an ended request: nothing
    fb.send([V, REQUEST, 22, SERVICE], invoke("stream 2"))
    deltas, h, _ = fb.final(22)
    assert deltas == ["w0 ", "w1 "] and h == [V, REPLY, 22]
    assert len([hh for hh, _ in fb.seen if hh[1] == ERROR and hh[2] == 21]) == 1, \
        "one final frame per request"


def test_heartbeat_loss(fake):
    """A silent broker is lost after liveness x heartbeat: what the worker
    served is cancelled without an answer, then READY again."""
    fb, agent = fake
    fb.send([V, REQUEST, 31, SERVICE], invoke("hang", "run_lost"))
    fb.until(lambda: "conform.request run=run_lost" in log_text(agent), what="the request")
    fb.silent = True
    mark = len(fb.seen)
    fb.expect(lambda h, b: h[1] == READY, timeout=15, what="READY after the silence")
    fb.until(lambda: "conform.cancelled run=run_lost" in log_text(agent),
               what="the served request to be cancelled")
    assert not [h for h, _ in fb.seen[mark:] if h[1] == ERROR and h[2] == 31], \
        "a lost broker is not answered"
    fb.silent = False
    # The probe that followed READY may have come while we were silent:
    # answer the last one, as a broker would have; else pump answers it.
    probes = [h for h, _ in fb.seen[mark:] if h[1] == SERVICES]
    if probes:
        fb.send([V, REPLY, probes[-1][2]], msgpack.packb([]))
    else:
        fb.expect(lambda h, b: h[1] == SERVICES, what="the new probe")
    fb.send([V, REQUEST, 32, SERVICE], invoke("stream 1"))
    assert fb.final(32)[1] == [V, REPLY, 32]


def test_disconnect_reannounces(fake):
    fb, agent = fake
    fb.send([V, REQUEST, 41, SERVICE], invoke("hang", "run_dis"))
    fb.until(lambda: "conform.request run=run_dis" in log_text(agent), what="the request")
    fb.send([V, DISCONNECT])
    h, _ = fb.expect(lambda h, b: h[1] == READY, what="READY after DISCONNECT")
    assert h == [V, READY, SERVICE, 4]
    fb.expect(lambda h, b: h[1] == SERVICES, what="the new probe")  # answered, as a broker does
    fb.until(lambda: "conform.cancelled run=run_dis" in log_text(agent),
               what="the served request to be cancelled")
    fb.send([V, REQUEST, 42, SERVICE], invoke("stream 1"))
    assert fb.final(42)[1] == [V, REPLY, 42]


def test_oversized_frames(fake):
    """The frame limit (MAP_BODY_MAX 64 KiB here) holds both ways, and the
    connection stays: a request too large is answered too_large, an answer
    too large fails the run agent_error "answer too large"."""
    fb, _ = fake
    readies = len([h for h, _ in fb.seen if h[1] == READY])
    fb.send([V, REQUEST, 51, SERVICE], invoke("x" * 100000))
    _, h, _ = fb.final(51)
    assert h[:4] == [V, ERROR, 51, "too_large"]
    fb.send([V, REQUEST, 52, SERVICE], invoke("big 100000"))
    deltas, h, _ = fb.final(52)
    assert deltas == [] and h == [V, ERROR, 52, "agent_error", "answer too large"]
    fb.send([V, REQUEST, 53, SERVICE], invoke("big 60000"))
    deltas, h, _ = fb.final(53)
    assert [len(d) for d in deltas] == [60000] and h == [V, REPLY, 53]
    fb.send([V, REQUEST, 54, SERVICE], invoke("stream 2"))
    assert fb.final(54)[1] == [V, REPLY, 54]
    assert len([h for h, _ in fb.seen if h[1] == READY]) == readies, "no reconnect"
    # Garbage headers from the broker's side are dropped, not fatal.
    fb.send(None, raw_header=b"\xc1")
    fb.send(None, raw_header=msgpack.packb([2, HEARTBEAT]))
    fb.send([V, REQUEST, 55, SERVICE], invoke("stream 1"))
    assert fb.final(55)[1] == [V, REPLY, 55]


# ---- with the real broker ---------------------------------------------------

def start_broker(procs, endpoint):
    return procs.start("map-broker", "--endpoint", endpoint, "--tap", "", "--heartbeat-ms", HB,
                       "--liveness", LIVENESS, "--log-level", "warn")


def collect(peer, rids, timeout=20.0):
    """Runs each rid to its final frame; returns {rid: (deltas, final header)}
    and the most requests seen started (a STREAM) but not ended at once."""
    out, started, most = {}, set(), 0
    deltas = {r: [] for r in rids}
    deadline = time.monotonic() + timeout
    while len(out) < len(rids):
        h, body = peer.recv(max(0.1, deadline - time.monotonic()))
        rid = h[2]
        if rid not in deltas or rid in out:
            continue
        if h[1] == STREAM:
            deltas[rid].append(msgpack.unpackb(body)["delta"])
            started.add(rid)
            most = max(most, len(started))
        elif h[1] in (REPLY, ERROR):
            started.discard(rid)
            out[rid] = (deltas[rid], h)
    return out, most


def served(peer, content="stream 3", timeout=20.0):
    """Asks until one request is answered with REPLY (the agent may still be
    finding the broker); returns the deltas."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rid = peer.request(SERVICE, invoke(content))
        res, _ = collect(peer, [rid], timeout)
        deltas, h = res[rid]
        if h[1] == REPLY:
            return deltas
        assert h[3] == "unknown_service", h
        time.sleep(0.05)
    raise AssertionError("never served")


def test_credit(impl, procs):
    """capacity 2: at most two requests at once on the worker, the rest wait
    at the broker, all are served."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    start_broker(procs, ep)
    agent = start_agent(procs, impl, ep, capacity=2)
    peer = Peer(ep)
    try:
        served(peer)
        rids = [peer.request(SERVICE, invoke("hold 300", "run_c%d" % i)) for i in range(6)]
        res, most = collect(peer, rids)
        assert all(h[1] == REPLY for _, h in res.values()), res
        assert most == 2, "the broker hands out the announced credit, no more"
        actives = [int(l.rsplit("active=", 1)[1]) for l in log_text(agent).splitlines()
                   if "conform.request run=run_c" in l]
        assert len(actives) == 6 and max(actives) == 2
    finally:
        peer.close()


def test_broker_restart(impl, procs):
    """kill -9 of the broker (no DISCONNECT): the worker notices the silence,
    re-announces to the new broker on the same endpoint and serves again."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    broker = start_broker(procs, ep)
    start_agent(procs, impl, ep)
    peer = Peer(ep)
    try:
        assert served(peer) == ["w0 ", "w1 ", "w2 "]
        procs.kill(broker)
        start_broker(procs, ep)
        peer.close()
        peer = Peer(ep)
        assert served(peer, timeout=30) == ["w0 ", "w1 ", "w2 "]
    finally:
        peer.close()


def test_worker_started_before_the_broker(impl, procs):
    """No broker yet (READY refused by the socket, retried): once the broker
    binds, the worker announces and serves."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    start_agent(procs, impl, ep)
    time.sleep(0.5)  # the worker is up and retrying; not a timing assertion
    start_broker(procs, ep)
    peer = Peer(ep)
    try:
        assert served(peer, timeout=20) == ["w0 ", "w1 ", "w2 "]
    finally:
        peer.close()


def test_work_handed_over_at_ready_is_answered(impl, procs):
    """A worker that joins a busy service gets a queued request at once,
    before the broker has answered its probe (PROTOCOL.md, "When the link is
    up"): it must serve it, answer included."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    start_broker(procs, ep)
    start_agent(procs, impl, ep, capacity=1)
    peer = Peer(ep)
    try:
        served(peer)
        busy = peer.request(SERVICE, invoke("hold 8000", "run_busy"))
        h, _ = peer.recv()
        assert h[:3] == [V, STREAM, busy]  # the only worker is busy now
        queued = peer.request(SERVICE, invoke("stream 3", "run_queued"))
        time.sleep(0.2)  # let the broker queue it; not a timing assertion
        joiner = start_agent(procs, impl, ep, capacity=1)  # takes it at READY
        res, _ = collect(peer, [busy, queued], timeout=12)
        deltas, h = res[queued]
        assert h == [V, REPLY, queued] and deltas == ["w0 ", "w1 ", "w2 "]
        assert "run=run_queued" in log_text(joiner), "served by the worker that joined"
    finally:
        peer.close()
