"""Origin and Host policy (SPEC §3), session isolation (SPEC §4) and the
contract's small gaps (ids are strings, validated queries and session ids,
`created_at` of native agents), with raw HTTP and raw WebSocket frames."""
import json
import re
import signal
import time

from conftest import Edge
from edgeutil import EnvEdge, guarded_fixtures
from rawhttp import Conn, WS, request

_guard, edge = guarded_fixtures()

TERMINAL = ("run_done", "run_failed", "run_cancelled")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ALLOWED = "http://app.example,https://ui.example:8443"


def get(edge, path, headers=(), host=None, method="GET", body=None):
    """One request on its own connection: the final response."""
    with Conn(edge.http) as c:
        c.send(request(method, path, host or edge.http, body=body,
                       headers=["Connection: close"] + list(headers)))
        return c.final_response()


def forbidden(r, code="forbidden_origin"):
    assert r.status == 403, r
    if code:
        assert r.error_code() == code, r
    else:
        r.error_code()


def ws_upgrade(edge, headers=(), host=None):
    """A hand-made upgrade with extra headers; host replaces the Host line."""
    ws = WS.__new__(WS)
    ws.c = Conn(edge.http)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws.c.send(request("GET", "/ws", host or edge.http, headers=[
        "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
        "Sec-WebSocket-Version: 13"] + list(headers)))
    r = ws.c.read_response(head=True)
    if r.status != 101:
        n = r.header("content-length")
        if n is not None:
            r.body = ws.c._exact(int(n), time.monotonic() + 10)
    ws.handshake, ws.ok = r, r.status == 101
    return ws


def agents(edge):
    return {a["agent_id"]: a for a in get(edge, "/v1/agents").json()["agents"]}


def run_events(ws, run_id, limit=10000):
    out = []
    for _ in range(limit):
        m = ws.recv_json()
        if m["type"] == "event" and m["event"]["run_id"] == run_id:
            out.append(m["event"])
            if m["event"]["type"] in TERMINAL:
                return out
    raise AssertionError("no terminal event")


def opened(edge, session):
    ws = WS(edge.http)
    assert ws.ok, ws.handshake
    m = ws.hello(session)
    assert m == {"type": "hello_ok", "session_id": session}, m
    return ws


def invoke(ws, request_id, agent, words):
    ws.send_json({"type": "agent_invoke", "request_id": request_id, "agent_id": agent,
                  "input_message": {"role": "user", "content": " ".join(["w"] * words)}})
    for _ in range(1000):
        m = ws.recv_json()
        if m["type"] == "invoke_accepted":
            assert m["request_id"] == request_id, m
            return m["run_id"]
        assert m["type"] == "event", m
    raise AssertionError("no invoke_accepted")


def until_pong(ws):
    """Every message before the answer to a ping sent now."""
    ws.send_json({"type": "ping"})
    out = []
    for _ in range(100000):
        m = ws.recv_json()
        if m == {"type": "pong"}:
            return out
        out.append(m)
    raise AssertionError("no pong")


# ---- Origin ------------------------------------------------------------------------

def test_a_foreign_origin_is_refused_on_every_path(edge):
    evil = ["Origin: http://evil.example"]
    forbidden(get(edge, "/v1/agents", evil))
    forbidden(get(edge, "/health", evil))
    forbidden(get(edge, "/metrics", evil))
    forbidden(get(edge, "/v1/runs/run_x", evil))
    # A no-preflight text/plain POST may not re-register an agent.
    body = json.dumps({"agent_id": "pol-evil", "name": "evil",
                       "endpoint": "http://evil.example"}).encode()
    forbidden(get(edge, "/v1/agents/register", evil + ["Content-Type: text/plain"],
                  method="POST", body=body))
    assert "pol-evil" not in agents(edge)
    # Nor forge events to a session's sockets.
    ws = opened(edge, "pol-victim")
    try:
        forbidden(get(edge, "/internal/send", evil + ["Content-Type: text/plain"], method="POST",
                      body=b'{"session_id":"pol-victim","event":{"type":"forged"}}'))
        assert until_pong(ws) == []
    finally:
        ws.close()
    # Nor start runs.
    forbidden(get(edge, "/internal/invoke", evil + ["Content-Type: text/plain"], method="POST",
                  body=json.dumps({"session_id": "pol-victim", "agent_id": "echo",
                                   "input_message": {"role": "user", "content": "x"}}).encode()))
    for origin in ("null", "http://127.0.0.1.evil.example", "https://localhost.evil:1"):
        forbidden(get(edge, "/v1/agents", ["Origin: " + origin]))


def test_a_foreign_origin_is_refused_on_the_websocket_upgrade(edge):
    ws = ws_upgrade(edge, ["Origin: http://evil.example"])
    try:
        assert not ws.ok, "a page elsewhere opened /ws"
        forbidden(ws.handshake)
    finally:
        ws.c.close()


def test_the_edges_own_origin_and_no_origin_are_allowed(edge):
    own = "http://" + edge.http
    assert get(edge, "/v1/agents", ["Origin: " + own]).status == 200
    assert get(edge, "/v1/agents").status == 200
    for origin in (own, None):
        ws = ws_upgrade(edge, ["Origin: " + origin] if origin else [])
        try:
            assert ws.ok, ws.handshake
            ws.send_json({"type": "hello", "session_id": "pol-own"})
            assert ws.recv_json()["type"] == "hello_ok"
        finally:
            ws.c.close()


def test_map_allowed_origins_adds_origins():
    e = EnvEdge(ingress_env={"MAP_ALLOWED_ORIGINS": ALLOWED})
    try:
        for origin in ("http://app.example", "https://ui.example:8443", "http://" + e.http):
            r = get(e, "/v1/agents", ["Origin: " + origin])
            assert r.status == 200, (origin, r)
            ws = ws_upgrade(e, ["Origin: " + origin])
            try:
                assert ws.ok, (origin, ws.handshake)
            finally:
                ws.c.close()
        for origin in ("http://evil.example", "https://app.example", "http://app.example:81",
                       "http://app.example.evil", "https://ui.example"):
            forbidden(get(e, "/v1/agents", ["Origin: " + origin]))
            ws = ws_upgrade(e, ["Origin: " + origin])
            try:
                assert not ws.ok, origin
                forbidden(ws.handshake)
            finally:
                ws.c.close()
    finally:
        e.close()


# ---- Host (DNS rebinding) -------------------------------------------------------------

def test_a_foreign_host_is_refused_without_an_api_key(edge):
    port = edge.http.rsplit(":", 1)[1]
    for host in ("evil.example", "evil.example:" + port, "127.0.0.2:" + port, "localhost.evil:" + port):
        forbidden(get(edge, "/v1/agents", host=host), code=None)
        ws = ws_upgrade(edge, host=host)
        try:
            assert not ws.ok, host
            forbidden(ws.handshake, code=None)
        finally:
            ws.c.close()
    for host in (edge.http, "localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port, "localhost"):
        assert get(edge, "/v1/agents", host=host).status == 200, host


def test_a_foreign_host_is_served_with_an_api_key():
    e = Edge(api_key="pol-key")
    try:
        r = get(e, "/v1/agents", ["Authorization: Bearer pol-key"], host="platform.example")
        assert r.status == 200, r
        r = get(e, "/v1/agents", host="platform.example")
        assert r.status == 401 and r.error_code() == "unauthorized", r
    finally:
        e.close()


# ---- isolation -------------------------------------------------------------------------

def test_cancel_of_another_sessions_run_is_unknown_and_the_run_goes_on(edge):
    a = opened(edge, "pol-iso-a")
    b = opened(edge, "pol-iso-b")
    try:
        run_id = invoke(a, "r1", "slow", 30)
        b.send_json({"type": "cancel", "run_id": run_id})
        try:
            m = b.recv_json(timeout=10)
        except TimeoutError:
            raise AssertionError("no error for a cancel of another session's run")
        assert m["type"] == "error" and m["code"] == "unknown_run", m
        events = run_events(a, run_id)
        assert events[-1]["type"] == "run_done", events[-1]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert get(edge, "/v1/runs/" + run_id).json()["status"] == "done"
        assert until_pong(b) == []
    finally:
        a.close()
        b.close()


def test_a_refused_resume_leaves_nothing_behind():
    """b's refused resume of a's run must not follow that run: after the
    orchestrator restarts (every watch is lost and refilled), b gets none of
    its events."""
    e = Edge()
    try:
        a = opened(e, "pol-res-a")
        b = opened(e, "pol-res-b")
        try:
            run_id = invoke(a, "r1", "slow", 60)
            seen = []
            while len(seen) < 3:
                m = a.recv_json()
                if m["type"] == "event":
                    seen.append(m["event"])
            b.send_json({"type": "resume", "run_id": run_id, "after_seq": 0})
            m = b.recv_json()
            assert m["type"] == "error" and m["code"] == "unknown_run", m
            e.procs.kill(e.orch, signal.SIGKILL)
            e.orch = e.start_orchestrator()
            rest = [ev for ev in run_events(a, run_id)]
            assert rest[-1]["type"] in TERMINAL
            # b's own run after the restart: its watch is back.
            got = []
            for attempt in range(100):
                b.send_json({"type": "agent_invoke", "request_id": "b%d" % attempt, "agent_id": "echo",
                             "input_message": {"role": "user", "content": "mine"}})
                m = b.recv_json()
                while m["type"] == "event":
                    got.append(m["event"])
                    m = b.recv_json()
                if m["type"] == "invoke_accepted":
                    break
                assert m["type"] == "error" and m["code"] == "unavailable", m
                time.sleep(0.1)
            assert m["type"] == "invoke_accepted", m
            got += run_events(b, m["run_id"])
            got += [x["event"] for x in until_pong(b) if x["type"] == "event"]
            foreign = [ev for ev in got if ev.get("run_id") == run_id or ev.get("session_id") != "pol-res-b"]
            assert foreign == [], foreign
        finally:
            a.close()
            b.close()
    finally:
        e.close()


def test_resume_after_a_disconnect_mid_run_is_exactly_once(edge):
    for i in range(3):
        session = "pol-resume%d" % i
        ws = opened(edge, session)
        try:
            run_id = invoke(ws, "r", "slow", 40)
            seen = []
            while len(seen) < 4 + i:
                m = ws.recv_json()
                if m["type"] == "event" and m["event"]["run_id"] == run_id:
                    seen.append(m["event"])
        finally:
            ws.close()
        ws = opened(edge, session)
        try:
            after = seen[-1]["seq"]
            ws.send_json({"type": "resume", "run_id": run_id, "after_seq": after})
            rest = run_events(ws, run_id)
            tail = [m for m in until_pong(ws) if m["type"] == "event"]
            assert tail == [], ("events after the terminal one", tail)
            seqs = [ev["seq"] for ev in rest]
            assert seqs == list(range(after + 1, after + 1 + len(rest))), seqs
            assert rest[-1]["type"] == "run_done"
        finally:
            ws.close()
        # Once more, after the end: the whole log once, nothing after it.
        ws = opened(edge, session)
        try:
            ws.send_json({"type": "resume", "run_id": run_id, "after_seq": 0})
            again = run_events(ws, run_id)
            assert [ev["seq"] for ev in again] == list(range(1, len(again) + 1))
            assert again == seen + rest
            assert [m for m in until_pong(ws) if m["type"] == "event"] == []
        finally:
            ws.close()


# ---- validation ----------------------------------------------------------------------

def test_bad_after_seq_and_limit_are_400(edge):
    ws = opened(edge, "pol-q")
    try:
        run_id = invoke(ws, "r", "echo", 3)
        run_events(ws, run_id)
        for q in ("after_seq=-1", "limit=-1", "limit=abc", "after_seq=abc", "after_seq=1x",
                  "after_seq=18446744073709551617", "limit=0x10"):
            r = get(edge, "/v1/runs/%s/events?%s" % (run_id, q))
            assert r.status == 400 and r.error_code() == "bad_request", (q, r)
        for q in ("after_seq=2", "limit=2", "after_seq=0&limit=10000"):
            r = get(edge, "/v1/runs/%s/events?%s" % (run_id, q))
            assert r.status == 200, (q, r)
        r = get(edge, "/v1/sessions/pol-q/messages?limit=-1")
        assert r.status == 400 and r.error_code() == "bad_request", r
        ws.send_json({"type": "resume", "run_id": run_id, "after_seq": -1})
        m = ws.recv_json()
        assert m["type"] == "error" and m["code"] == "bad_request", m
    finally:
        ws.close()


def test_hello_refuses_session_ids_the_orchestrator_refuses(edge):
    for bad in ("a?b", "a#b", "a%b", "x" * 129, "a b", "a/b", 'a"b', "a\\b"):
        ws = WS(edge.http)
        try:
            m = ws.hello(bad)
            assert m["type"] == "error" and m["code"] == "bad_request", (bad, m)
            # The socket stays open and a valid hello then works.
            good = "pol-ok-" + str(len(bad))
            assert ws.hello(good) == {"type": "hello_ok", "session_id": good}
        finally:
            ws.close()
    ws = WS(edge.http)
    try:
        good = "Ok.session_1:2-" + "x" * 113
        assert len(good) == 128
        assert ws.hello(good) == {"type": "hello_ok", "session_id": good}
        run_id = invoke(ws, "r", "echo", 2)
        assert run_events(ws, run_id)[-1]["type"] == "run_done"
    finally:
        ws.close()


# ---- contract gaps -----------------------------------------------------------------------

def test_native_agents_have_a_string_created_at(edge):
    listed = agents(edge)
    for agent_id in ("echo", "slow"):
        a = listed[agent_id]
        assert a["kind"] == "native" and isinstance(a["created_at"], str), a
        assert TIME.fullmatch(a["created_at"]), a


def test_ids_in_answers_are_strings(edge):
    ws = opened(edge, "pol-ids")
    try:
        run_id = invoke(ws, "r", "echo", 2)
        events = run_events(ws, run_id)
    finally:
        ws.close()
    assert isinstance(run_id, str)
    for ev in events:
        assert isinstance(ev["event_id"], int)  # the one number
        assert isinstance(ev["run_id"], str) and isinstance(ev["session_id"], str)
    doc = get(edge, "/v1/sessions/pol-ids/messages").json()
    assert len(doc["messages"]) == 2
    for m in doc["messages"]:
        assert isinstance(m["message_id"], str), m
        assert isinstance(m["run_id"], str), m
