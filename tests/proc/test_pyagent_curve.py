"""CURVE with the Python SDK: a py-echo holding an allowed key (from
MAP_CURVE_*) gets in and serves; one with a stranger's key never appears."""
import os
import shutil
import time

import msgpack

from mapclient import Procs, free_port, wait_until, V, SERVICES, REQUEST, REPLY
from test_curve import ask, keygen, peer

PY_ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "agents",
                       "python", "examples", "py_echo.py")


def test_py_agent_over_curve():
    procs = Procs()
    try:
        d = procs.dir
        allow = os.path.join(d, "allow")
        os.makedirs(allow)
        broker_keys = keygen()
        client = keygen(os.path.join(d, "client.cert"))
        worker = keygen(os.path.join(d, "worker.cert"))
        stranger = keygen()
        for name in ("client.cert", "worker.cert"):
            shutil.copy(os.path.join(d, name), allow)
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        procs.start("map-broker", "--endpoint", endpoint, "--tap", "",
                    "--curve-secret", broker_keys[1], "--curve-allow", allow, "--heartbeat-ms", 250)

        def env(name, keys):
            return {"MAP_BROKER": endpoint, "MAP_HEARTBEAT_MS": "250", "MAP_PY_ECHO_AGENT": name,
                    "MAP_PY_ECHO_DELAY_MS": "0", "MAP_CURVE_SERVER_KEY": broker_keys[0],
                    "MAP_CURVE_PUBLIC_KEY": keys[0], "MAP_CURVE_SECRET_KEY": keys[1]}
        procs.start_argv(["/usr/bin/python3", PY_ECHO], env=env("py-secure", worker))
        procs.start_argv(["/usr/bin/python3", PY_ECHO], env=env("py-intruder", stranger))
        c = peer(endpoint, client, broker_keys[0])
        n = [0]

        def services():
            n[0] += 1
            h, body = ask(c, [V, SERVICES, n[0]])
            return {row[0] for row in body} if h and h[1] == REPLY else set()
        wait_until(lambda: "agent.py-secure" in services(), timeout=15, what="the allowed agent")
        for _ in range(5):
            seen = services()
            assert "agent.py-secure" in seen and "agent.py-intruder" not in seen
            time.sleep(0.2)
        inv = {"run_id": "r", "session_id": "s", "agent_id": "py-secure",
               "input": {"role": "user", "content": "secret hello"}, "history": []}
        c.send_multipart([msgpack.packb([V, REQUEST, 77, "agent.py-secure"]), msgpack.packb(inv)])
        deadline, reply = time.monotonic() + 10, None
        while reply is None and time.monotonic() < deadline:
            if c.poll(200):
                parts = c.recv_multipart()
                h = msgpack.unpackb(parts[0])
                if h[1] == REPLY and h[2] == 77:
                    reply = msgpack.unpackb(parts[1])
        assert reply == {"output": {"role": "assistant", "content": "secret hello"}}
        c.close(0)
    finally:
        procs.stop_all()
