"""The edge pings WebSocket clients and closes one that stops answering; it
refuses to listen beyond loopback without an API key."""
import base64
import os
import socket
import subprocess
import time

from conftest import Edge
from mapclient import binary, free_port


def test_a_client_that_never_answers_pings_is_closed():
    e = Edge(ingress_args=("--ws-ping-secs", "1"))
    try:
        host, port = e.http.split(":")
        s = socket.create_connection((host, int(port)), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (e.http, key)).encode())
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        # Read (never answer) until the server closes: pings arrive first.
        s.settimeout(20)
        got, t0 = b"", time.monotonic()
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        elapsed = time.monotonic() - t0
        assert b"\x89" in got  # a ping frame (FIN + opcode 9)
        assert elapsed < 15, elapsed
        # A client that answers is kept (Python's websockets answers pings).
        import asyncio
        import json
        import websockets

        async def go():
            async with websockets.connect(e.ws_url()) as ws:
                await ws.send(json.dumps({"type": "hello"}))
                await ws.recv()
                await asyncio.sleep(4)
                await ws.send(json.dumps({"type": "ping"}))
                return json.loads(await ws.recv())
        assert asyncio.run(go()) == {"type": "pong"}
    finally:
        e.close()


def test_no_remote_listening_without_a_key():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAP_")}
    r = subprocess.run([binary("map-ingress"), "--http-addr", "0.0.0.0:%d" % free_port(),
                        "--broker", "tcp://127.0.0.1:%d" % free_port()],
                       capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode != 0 and "API key" in r.stderr
    r = subprocess.run([binary("map-ingress"), "--http-addr", "nonsense"], capture_output=True,
                       text=True, timeout=10, env=env)
    assert r.returncode != 0 and "host:port" in r.stderr
