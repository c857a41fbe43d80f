"""A broker peer in Python, written from proto/PROTOCOL.md and
proto/ORCHESTRATOR.md alone: frames are msgpack arrays
[version, type, ...] followed by an optional body part.

Used by the process-level tests to drive the orchestrator and agents
through a real broker, and to start/stop the real binaries on free ports.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import zmq

V = 1
READY, HEARTBEAT, DISCONNECT, REQUEST, STREAM, REPLY, ERROR, CANCEL, SERVICES = range(1, 10)

BUILD = os.environ.get("MAP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


def binary(name):
    """Path of a map-* binary: from MAP_BIN_<NAME> or the build tree."""
    env = os.environ.get("MAP_BIN_" + name.replace("map-", "").upper())
    if env:
        return env
    sub = {"map-broker": "broker", "map-tap": "broker", "map-keygen": "broker",
           "map-echo": "agents/echo", "map-fanout": "agents/fanout",
           "map-bridge": "agents/bridge", "map-orchestrator": "orchestrator",
           "map-ingress": "ingress"}[name]
    return os.path.join(BUILD, sub, name)


_GIVEN = set()


def free_port():
    """A loopback port nobody listens on, and not one this process handed
    out before: the kernel may give a just-closed port 0 again, so two calls
    in a row (a broker's port and an ingress's) could otherwise collide."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_until(cond, timeout=10.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


class Procs:
    """Processes of one test; stopped by PID whatever happens."""

    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="map-test-")

    def start(self, name, *args, env=None, log=None):
        return self.start_argv([binary(name)] + list(args), env=env, log=log, name=name)

    def start_argv(self, argv, env=None, log=None, name=None):
        """Any program (a Python agent, say), with the same clean MAP_ env."""
        name = name or os.path.basename(str(argv[0]))
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("MAP_") and not k.startswith("MAP_BIN_") and k != "MAP_BUILD_DIR":
                del e[k]
        e.update(env or {})
        log = log or os.path.join(self.dir, "%s-%d.log" % (name, len(self.procs)))
        f = open(log, "ab")
        p = subprocess.Popen([str(a) for a in argv], env=e, stdout=f, stderr=subprocess.STDOUT)
        p.log = log
        self.procs.append(p)
        return p

    def kill(self, p, sig=signal.SIGKILL):
        if p.poll() is None:
            p.send_signal(sig)
        p.wait(timeout=20)

    def stop_all(self, check=True):
        """SIGTERM (a clean stop, so sanitizers report leaks), SIGKILL after
        5 s; then fail if any process's log shows a sanitizer report."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not check:
            return
        for p in self.procs:
            with open(p.log, "rb") as f:
                text = f.read().decode(errors="replace")
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "Segmentation fault", "Assertion `"):
                if marker in text:
                    i = text.index(marker)
                    raise AssertionError("%s reported in %s:\n%s" % (marker, p.log, text[max(0, i - 500):i + 3000]))

    def logs(self):
        out = []
        for p in self.procs:
            with open(p.log, "rb") as f:
                out.append("== %s\n%s" % (p.args[0], f.read().decode(errors="replace")[-4000:]))
        return "\n".join(out)


class Peer:
    """One DEALER speaking the broker protocol as a requester (capacity 0)
    or a worker (capacity > 0)."""

    def __init__(self, endpoint, service="test-client", capacity=0):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.service, self.capacity = service, capacity
        self.next_id = 1
        self.disconnects = 0  # DISCONNECTs received: each one ended our requests
        self.send([V, READY, service, capacity])

    def send(self, header, body=None):
        parts = [msgpack.packb(header)]
        if body is not None:
            parts.append(body if isinstance(body, bytes) else msgpack.packb(body))
        self.sock.send_multipart(parts)

    def request(self, service, body):
        rid = self.next_id
        self.next_id += 1
        self.send([V, REQUEST, rid, service], body)
        return rid

    def cancel(self, rid):
        self.send([V, CANCEL, rid])

    def recv(self, timeout=10.0):
        """Next non-heartbeat frame: (header list, body bytes or None).
        Answers DISCONNECT by announcing again, as the protocol asks."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise TimeoutError("no frame within %.1fs" % timeout)
            parts = self.sock.recv_multipart()
            h = msgpack.unpackb(parts[0])
            if h[1] == HEARTBEAT:
                self.send([V, HEARTBEAT])
                continue
            if h[1] == DISCONNECT:
                self.disconnects += 1
                self.send([V, READY, self.service, self.capacity])
                continue
            return h, (parts[1] if len(parts) > 1 else None)

    def close(self):
        self.sock.close(0)


class Orch:
    """Requests to the `orchestrator` service; collects answers by id."""

    def __init__(self, endpoint):
        self.peer = Peer(endpoint, "test-edge", 0)
        self.frames = {}  # request id -> list of (type, decoded body)
        self.sent_at = {}  # request id -> the peer's DISCONNECT count when it was sent

    def call(self, op, **args):
        body = {"op": op}
        body.update({k: v for k, v in args.items() if v is not None})
        rid = self.peer.request("orchestrator", body)
        self.sent_at[rid] = self.peer.disconnects
        return rid

    def pump(self, timeout=10.0):
        h, body = self.peer.recv(timeout)
        rid = h[2]
        decoded = None
        if h[1] == ERROR:
            decoded = {"code": h[3], "message": h[4]}
        elif body is not None:
            decoded = msgpack.unpackb(body)
        self.frames.setdefault(rid, []).append((h[1], decoded))
        return rid

    def wait_final(self, rid, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.frames.get(rid, [])
            if got and got[-1][0] in (REPLY, ERROR):
                return got
            if self.peer.disconnects > self.sent_at.get(rid, self.peer.disconnects):
                # The broker forgot this peer (a restart, or liveness x
                # heartbeat without a frame from it: a starved test process)
                # and with it the request: say so now, not at the timeout.
                raise ConnectionError("request %d died with the link (DISCONNECT from the broker); "
                                      "frames: %r" % (rid, got))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request %d did not end; frames: %r" % (rid, got))
            self.pump(left)

    def reply(self, rid, timeout=15.0):
        """(status, parsed JSON) of a REPLY."""
        got = self.wait_final(rid, timeout)
        kind, body = got[-1]
        assert kind == REPLY, got
        return body["status"], json.loads(body["json"])

    def stream_bodies(self, rid):
        """STREAM event bodies for a request in order, a watch's batches
        ({"events": [...]}, proto/ORCHESTRATOR.md) opened up."""
        out = []
        for k, b in self.frames.get(rid, []):
            if k != STREAM:
                continue
            if "events" in b:
                assert set(b) == {"events"} and b["events"], b
                out.extend(b["events"])
            elif "event" in b:
                out.append(b)
        return out

    def events(self, rid):
        """Event objects streamed for a request (accepted bodies left out)."""
        return [json.loads(b["event"]) for b in self.stream_bodies(rid)]

    def accepted(self, rid):
        for k, b in self.frames.get(rid, []):
            if k == STREAM and "accepted" in b:
                return json.loads(b["accepted"])
        return None


class Stack:
    """broker + orchestrator + N echo workers on free ports."""

    # 500 ms: liveness (3 beats) is 1.5 s, so a test process starved on a
    # loaded 2-core machine keeps its link; peers killed are seen in 1.5 s.
    def __init__(self, echo_workers=2, echo_delay_ms=0, heartbeat_ms=500, orch_args=(),
                 db=None):
        self.procs = Procs()
        self.port = free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        self.tap = "tcp://127.0.0.1:%d" % free_port()
        self.db = db or os.path.join(self.procs.dir, "map.db")
        self.heartbeat_ms = heartbeat_ms
        self.broker = self.start_broker()
        self.orch = self.start_orchestrator(*orch_args)
        self.echos = [self.start_echo(echo_delay_ms) for _ in range(echo_workers)]

    def start_broker(self):
        return self.procs.start("map-broker", "--endpoint", self.endpoint, "--tap", self.tap,
                                "--heartbeat-ms", self.heartbeat_ms, "--log-level", "warn")

    def start_orchestrator(self, *args):
        return self.procs.start("map-orchestrator", "--broker", self.endpoint, "--db", self.db,
                                "--heartbeat-ms", self.heartbeat_ms, *args)

    def start_echo(self, delay_ms=0, *args):
        return self.procs.start("map-echo", "--broker", self.endpoint, "--delay-ms", delay_ms,
                                "--heartbeat-ms", self.heartbeat_ms, *args)

    def client(self):
        return Orch(self.endpoint)

    def wait_agent(self, client, agent_id, workers=1):
        def ready():
            rid = client.call("agents")
            kind, body = client.wait_final(rid)[-1]
            if kind == ERROR:  # the orchestrator has not announced itself yet
                return False
            doc = json.loads(body["json"])
            for a in doc["agents"]:
                if a["agent_id"] == agent_id and a["workers"] >= workers:
                    return True
            return False
        wait_until(ready, timeout=15, step=0.1, what="agent %s with %d workers" % (agent_id, workers))

    def close(self):
        self.procs.stop_all()
