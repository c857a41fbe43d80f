"""The WebSocket of SPEC §4 in raw frames (RFC 6455) over a plain socket:
the handshake by hand, masked client frames, fragmented messages, control
frames, close codes and the edge's size and type rules. No WebSocket
library on this side, so nothing is smoothed over."""
import json
import struct

import rawhttp
from conftest import Edge
from edgeutil import guarded_fixtures
from rawhttp import OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WS

_guard, edge = guarded_fixtures()

MAX_WS = 1 << 20  # the edge's default maximum WebSocket message (--max-ws-message)
TERMINAL = ("run_done", "run_failed", "run_cancelled")


def opened(edge, session=None):
    ws = WS(edge.http)
    assert ws.ok, ws.handshake
    if session is not None:
        m = ws.hello(session)
        assert m == {"type": "hello_ok", "session_id": session}, m
    return ws


def assert_alive(ws):
    """The socket still answers: a JSON ping gets its pong."""
    ws.send_json({"type": "ping"})
    m = ws.recv_json()
    assert m == {"type": "pong"}, m


def run_events(ws, run_id):
    out = []
    for _ in range(10000):
        m = ws.recv_json()
        if m["type"] == "event" and m["event"]["run_id"] == run_id:
            out.append(m["event"])
            if m["event"]["type"] in TERMINAL:
                return out
    raise AssertionError("no terminal event")


def test_handshake_by_hand(edge):
    ws = WS(edge.http)
    try:
        assert ws.handshake.status == 101
        assert ws.handshake.header("upgrade").lower() == "websocket"
        assert "upgrade" in ws.handshake.header("connection").lower()
        m = ws.hello("raw-hs")
        assert m == {"type": "hello_ok", "session_id": "raw-hs"}
        assert_alive(ws)
    finally:
        ws.close()


def test_fragmented_text_messages(edge):
    ws = opened(edge, "raw-frag")
    try:
        msg = json.dumps({"type": "ping"}).encode()
        ws.send_frame(OP_TEXT, msg[:3], fin=False)
        ws.send_frame(OP_CONT, msg[3:7], fin=False)
        ws.send_frame(OP_CONT, msg[7:], fin=True)
        assert ws.recv_json() == {"type": "pong"}
        # An invoke in many fragments, with a control frame between two.
        body = json.dumps({"type": "agent_invoke", "request_id": "f1", "agent_id": "echo",
                           "input_message": {"role": "user", "content": "in pieces"}}).encode()
        parts = [body[i:i + 10] for i in range(0, len(body), 10)]
        for i, p in enumerate(parts):
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
            if i == 2:
                ws.send_frame(OP_PING, b"mid")
        kind, payload = ws.read_message()
        assert (kind, payload) == ("pong", b"mid"), (kind, payload)
        acc = ws.recv_json()
        assert acc["type"] == "invoke_accepted" and acc["request_id"] == "f1", acc
        events = run_events(ws, acc["run_id"])
        assert events[-1]["type"] == "run_done"
        assert events[1]["payload"]["message"]["content"] == "in pieces"
        # Empty fragments are fragments too.
        ws.send_frame(OP_TEXT, b"", fin=False)
        ws.send_frame(OP_CONT, msg, fin=False)
        ws.send_frame(OP_CONT, b"", fin=True)
        assert ws.recv_json() == {"type": "pong"}
    finally:
        ws.close()


def test_ping_frames_get_pongs_with_the_same_payload(edge):
    ws = opened(edge, "raw-ping")
    try:
        for payload in (b"", b"abc123", bytes(range(125))):
            ws.send_frame(OP_PING, payload)
            kind, got = ws.read_message()
            assert (kind, got) == ("pong", payload)
        # An unsolicited pong is ignored.
        ws.send_frame(OP_PONG, b"nobody asked")
        assert_alive(ws)
    finally:
        ws.close()


def test_client_close_1000_is_answered(edge):
    ws = opened(edge, "raw-close")
    try:
        ws.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        kind, (code, _) = ws.read_message()
        assert kind == "close" and code in (1000, None), (kind, code)
        assert ws.c.closed_cleanly()
    finally:
        ws.close()
    assert rawhttp.health_ok(edge.http)


def test_a_message_past_the_maximum_is_too_large_and_the_socket_stays(edge):
    ws = opened(edge, "raw-big")
    try:
        ws.send_text(b'{"type":"ping","pad":"' + b"x" * MAX_WS + b'"}')
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "too_large", m
        assert_alive(ws)
        # The same in fragments, none of them large.
        piece = b"y" * (64 << 10)
        ws.send_frame(OP_TEXT, b'{"type":"ping","pad":"', fin=False)
        for _ in range(MAX_WS // len(piece) + 1):
            ws.send_frame(OP_CONT, piece, fin=False)
        ws.send_frame(OP_CONT, b'"}', fin=True)
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "too_large", m
        assert_alive(ws)
        # A message of exactly the maximum is read (and judged on its content).
        exact = b'{"type":"ping","pad":"' + b"z" * (MAX_WS - 24) + b'"}'
        ws.send_text(exact + b" " * (MAX_WS - len(exact)))
        m = ws.recv_json()
        assert m == {"type": "pong"} or (m["type"] == "error" and m["code"] == "bad_request"), m
        assert_alive(ws)
    finally:
        ws.close()


def test_a_binary_frame_is_bad_request(edge):
    ws = opened(edge, "raw-bin")
    try:
        ws.send_frame(OP_BIN, json.dumps({"type": "ping"}).encode())
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "bad_request", m
        assert_alive(ws)
        # Before hello too: an error, the socket stays.
        fresh = opened(edge)
        try:
            fresh.send_frame(OP_BIN, b"\x00\x01")
            m = fresh.recv_json()
            assert m["type"] == "error" and m["code"] in ("bad_request", "not_hello"), m
            assert fresh.hello("raw-bin2")["type"] == "hello_ok"
        finally:
            fresh.close()
    finally:
        ws.close()


def test_protocol_violations_close_the_socket_not_the_edge(edge):
    """A reserved opcode, a continuation with no message, a fragmented ping,
    an RSV bit: the edge closes that socket (RFC 6455 says 1002), serves the
    others, and lives. (An unmasked client frame is left out: libwebsockets
    neither answers nor closes it, an lws matter.)"""
    other = opened(edge, "raw-viol-other")
    try:
        frames = [
            rawhttp.ws_frame(3, b"x"),                           # reserved opcode
            rawhttp.ws_frame(OP_CONT, b"x"),                     # nothing to continue
            rawhttp.ws_frame(OP_PING, b"x", fin=False),          # fragmented control frame
            rawhttp.ws_frame(OP_TEXT, b"{}", rsv=4),             # RSV bit without extension
        ]
        for f in frames:
            ws = opened(edge, "raw-viol")
            try:
                ws.c.send(f)
                for _ in range(100):
                    try:
                        kind, data = ws.read_message(timeout=10)
                    except rawhttp.ProtocolError:  # closed, mid-frame or not
                        break
                    except TimeoutError:
                        raise AssertionError("neither closed nor answered after %r" % f)
                    if kind == "close":
                        assert data[0] in (1002, 1003, 1007, None), (f, data)
                        break
                    # An error message before the close is acceptable.
                    assert kind == "text" and json.loads(data)["type"] == "error", (f, kind, data)
                else:
                    raise AssertionError("socket not closed after %r" % f)
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                ws.close()
            assert_alive(other)
    finally:
        other.close()
    assert rawhttp.health_ok(edge.http)


def test_unauthorized_hello_closes_4401():
    e = Edge(api_key="raw-secret")
    try:
        ws = WS(e.http)
        try:
            assert ws.ok, ws.handshake
            m = ws.hello("raw-auth", api_key="wrong")
            assert m["type"] == "error" and m["code"] == "unauthorized", m
            kind, (code, _) = ws.read_message()
            assert (kind, code) == ("close", 4401), (kind, code)
        finally:
            ws.close()
        ws = WS(e.http)
        try:
            ws.send_json({"type": "hello", "session_id": "raw-auth"})  # no key at all
            m = ws.recv_json()
            assert m["type"] == "error" and m["code"] == "unauthorized", m
            kind, (code, _) = ws.read_message()
            assert (kind, code) == ("close", 4401), (kind, code)
        finally:
            ws.close()
        ws = WS(e.http)
        try:
            m = ws.hello("raw-auth", api_key="raw-secret")
            assert m == {"type": "hello_ok", "session_id": "raw-auth"}, m
            assert_alive(ws)
        finally:
            ws.close()
    finally:
        e.close()
