"""CURVE: with a secret key and an allow directory the broker encrypts and
authenticates every peer; a worker whose key is not allowed, and a
plaintext one, never get in."""
import os
import shutil
import subprocess
import time

import msgpack
import zmq

from mapclient import Procs, binary, free_port, wait_until, V, READY, SERVICES, REQUEST, REPLY


def keygen(cert=None):
    args = [binary("map-keygen")] + (["--cert", cert] if cert else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    keys = dict(line.split("=", 1) for line in out.splitlines())
    return keys["public"], keys["secret"]


def peer(endpoint, keys=None, server=None):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if keys:
        s.curve_serverkey = server.encode()
        s.curve_publickey = keys[0].encode()
        s.curve_secretkey = keys[1].encode()
    s.connect(endpoint)
    s.send(msgpack.packb([V, READY, "curve-test", 0]))
    return s


def ask(s, header, body=None, timeout=3.0):
    s.send_multipart([msgpack.packb(header)] + ([msgpack.packb(body)] if body is not None else []))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not s.poll(int((deadline - time.monotonic()) * 1000) + 1):
            break
        parts = s.recv_multipart()
        h = msgpack.unpackb(parts[0])
        if h[1] in (REPLY, 7) and h[2] == header[2]:
            return h, (msgpack.unpackb(parts[1]) if len(parts) > 1 else None)
    return None, None


def test_only_allowed_keys_get_in():
    procs = Procs()
    try:
        d = procs.dir
        allow = os.path.join(d, "allow")
        os.makedirs(allow)
        broker_keys = keygen()
        client = keygen(os.path.join(d, "client.cert"))
        worker = keygen(os.path.join(d, "worker.cert"))
        stranger = keygen()
        for name in ("client.cert", "worker.cert"):  # public certificates only
            shutil.copy(os.path.join(d, name), allow)
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        procs.start("map-broker", "--endpoint", endpoint, "--tap", "",
                    "--curve-secret", broker_keys[1], "--curve-allow", allow, "--heartbeat-ms", 250)

        def env(keys):
            return {"MAP_CURVE_SERVER_KEY": broker_keys[0], "MAP_CURVE_PUBLIC_KEY": keys[0],
                    "MAP_CURVE_SECRET_KEY": keys[1]}
        procs.start("map-echo", "--broker", endpoint, "--delay-ms", 0, "--heartbeat-ms", 250,
                    env=env(worker))
        procs.start("map-echo", "--broker", endpoint, "--agent", "intruder", "--delay-ms", 0,
                    "--heartbeat-ms", 250, env=env(stranger))
        procs.start("map-echo", "--broker", endpoint, "--agent", "plain", "--delay-ms", 0,
                    "--heartbeat-ms", 250)
        c = peer(endpoint, client, broker_keys[0])

        def services():
            h, body = ask(c, [V, SERVICES, int(time.monotonic() * 1000) % 100000 + 1])
            return {row[0] for row in body} if h and h[1] == REPLY else set()
        wait_until(lambda: "agent.echo" in services(), timeout=10, what="the allowed worker")
        # Give the refused ones time to try, talking all along so this
        # requester stays alive (any frame is a heartbeat).
        for _ in range(5):
            seen = services()
            assert "agent.echo" in seen  # the answer is real, not a timeout
            assert seen & {"agent.intruder", "agent.plain"} == set()
            time.sleep(0.2)
        inv = {"run_id": "r", "session_id": "s", "agent_id": "echo",
               "input": {"role": "user", "content": "secret hello"}, "history": []}
        c.send_multipart([msgpack.packb([V, REQUEST, 77, "agent.echo"]), msgpack.packb(inv)])
        deadline, reply = time.monotonic() + 5, None
        while reply is None and time.monotonic() < deadline:
            if c.poll(200):
                parts = c.recv_multipart()
                h = msgpack.unpackb(parts[0])
                if h[1] == REPLY and h[2] == 77:
                    reply = msgpack.unpackb(parts[1])
        assert reply == {"output": {"role": "assistant", "content": "secret hello"}}
        # A plaintext requester and one with a stranger's key get nothing back.
        for keys in (None, stranger):
            s = peer(endpoint, keys, broker_keys[0])
            h, _ = ask(s, [V, SERVICES, 5], timeout=2.0)
            assert h is None
            s.close(0)
        c.close(0)
    finally:
        procs.stop_all()
