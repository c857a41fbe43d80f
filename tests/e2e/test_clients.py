"""Every REST path of SPEC §3 through two HTTP clients the edge was not
written against: Python's `http.client` (it sends `Content-Length: 0` on a
POST without a body) and `httpx`. Each answer is exactly one response with
exactly one JSON document (or one SSE stream), and one kept-alive
connection carries many requests in a row."""
import http.client
import json
import re
import threading

import httpx

import rawhttp
from edgeutil import guarded_fixtures

_guard, edge = guarded_fixtures()

TERMINAL = ("run_done", "run_failed", "run_cancelled")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
RUN_KEYS = {"run_id", "session_id", "agent_id", "status", "created_at", "ended_at"}
AGENT_KEYS = {"agent_id", "name", "endpoint", "kind", "workers", "created_at"}


def invoke_body(session, agent, content, **kw):
    b = {"session_id": session, "agent_id": agent,
         "input_message": {"role": "user", "content": content}}
    b.update(kw)
    return b


class HC:
    """One http.client connection; every answer read whole and checked."""

    def __init__(self, edge, timeout=20):
        host, port = edge.http.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.sock = None

    def call(self, method, path, body=None, headers=None):
        """(status, headers dict, body bytes)."""
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=data, headers=hdrs)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, raw

    def json(self, method, path, body=None, headers=None):
        """(status, the one JSON document of the body)."""
        st, hdrs, raw = self.call(method, path, body, headers)
        assert hdrs.get("content-type", "").startswith("application/json"), (path, hdrs)
        return st, one_json(raw)

    def close(self):
        self.conn.close()


def one_json(raw):
    """Exactly one JSON document: a second one (the doubled answer) raises."""
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as ex:
        raise AssertionError("not exactly one JSON document (%s): %r" % (ex, raw[:400]))


def error_code(doc):
    assert isinstance(doc, dict) and set(doc) == {"error"} and isinstance(doc["error"]["code"], str), doc
    assert isinstance(doc["error"]["message"], str), doc
    return doc["error"]["code"]


def sse_of(raw):
    events = rawhttp.sse_events(raw)
    for sid, typ, data in events:
        assert sid == str(data["seq"]) and typ == data["type"], (sid, typ, data)
    return [d for _, _, d in events]


def check_run_log(events, run_id, session):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert sum(e["type"] in TERMINAL for e in events) == 1 and events[-1]["type"] in TERMINAL
    for e in events:
        assert e["run_id"] == run_id and e["session_id"] == session, e
        assert isinstance(e["event_id"], int) and TIME.fullmatch(e["created_at"]), e


def hc_invoke(edge, session, agent, content):
    """A finished run through http.client's SSE: (run_id, events)."""
    c = HC(edge)
    try:
        st, hdrs, raw = c.call("POST", "/internal/invoke", invoke_body(session, agent, content))
        assert st == 200 and hdrs["content-type"].startswith("text/event-stream"), (st, hdrs, raw)
        run_id = hdrs["x-run-id"]
        events = sse_of(raw)
        check_run_log(events, run_id, session)
        return run_id, events
    finally:
        c.close()


# ---- each path ---------------------------------------------------------------

def test_health_with_both_clients(edge):
    c = HC(edge)
    try:
        st, doc = c.json("GET", "/health")
        assert st == 200 and doc == {"status": "ok",
                                     "components": {"broker": "ok", "orchestrator": "ok"}}
    finally:
        c.close()
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        r = x.get("/health")
        assert r.status_code == 200 and r.json() == doc
        assert x.head("/health").status_code in (200, 405)


def test_register_update_conflict_and_list(edge):
    c = HC(edge)
    try:
        ext = {"agent_id": "hc-ext", "name": "Ext", "endpoint": "http://127.0.0.1:9"}
        st, a = c.json("POST", "/v1/agents/register", ext)
        assert st == 201 and a["agent_id"] == "hc-ext" and a["kind"] == "http", a
        assert set(a) == AGENT_KEYS and TIME.fullmatch(a["created_at"]), a
        st, a = c.json("POST", "/v1/agents/register", dict(ext, name="Ext 2"))
        assert st == 200 and a["name"] == "Ext 2", a
        st, doc = c.json("POST", "/v1/agents/register", dict(ext, agent_id="echo"))
        assert st == 409 and error_code(doc) == "conflict"
        st, doc = c.json("POST", "/v1/agents/register", {"agent_id": "x"})
        assert st == 400 and error_code(doc) == "bad_request"
        st, doc = c.json("POST", "/v1/agents/register", b"{nope")
        assert st == 400 and error_code(doc) == "bad_json"
    finally:
        c.close()
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        r = x.post("/v1/agents/register", json={"agent_id": "hx-ext", "name": "X",
                                                "endpoint": "https://127.0.0.1:9/a"})
        assert r.status_code == 201 and r.json()["endpoint"] == "https://127.0.0.1:9/a"
        doc = x.get("/v1/agents").json()
    by_id = {a["agent_id"]: a for a in doc["agents"]}
    assert by_id["echo"]["kind"] == "native" and by_id["echo"]["workers"] >= 1
    assert by_id["hc-ext"]["kind"] == "http" and by_id["hc-ext"]["name"] == "Ext 2"
    assert "hx-ext" in by_id
    for a in doc["agents"]:
        assert set(a) == AGENT_KEYS and isinstance(a["agent_id"], str), a


def test_invoke_sse_with_http_client(edge):
    run_id, events = hc_invoke(edge, "hc-inv", "echo", "one two three")
    assert [e["type"] for e in events] == ["run_started", "user_input", "agent_invoke_started",
                                           "agent_stream_delta", "agent_stream_delta",
                                           "agent_stream_delta", "agent_invoke_done", "run_done"]
    assert "".join(e["payload"]["delta"] for e in events
                   if e["type"] == "agent_stream_delta") == "one two three"
    # Errors of the same path are single JSON documents.
    c = HC(edge)
    try:
        st, doc = c.json("POST", "/internal/invoke", {"session_id": "hc-inv",
                                                      "input_message": {"role": "user", "content": "x"}})
        assert st == 400 and error_code(doc) == "bad_request"
        st, doc = c.json("POST", "/internal/invoke", b"[1,")
        assert st == 400 and error_code(doc) == "bad_json"
    finally:
        c.close()


def test_invoke_sse_with_httpx_streaming(edge):
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        with x.stream("POST", "/internal/invoke", json=invoke_body("hx-inv", "slow", "a b c d e")) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            run_id = r.headers["x-run-id"]
            raw = b"".join(r.iter_bytes())
        events = sse_of(raw)
        check_run_log(events, run_id, "hx-inv")
        assert events[-1]["type"] == "run_done"
        # An unknown agent still makes a run, which fails unknown_agent.
        with x.stream("POST", "/internal/invoke", json=invoke_body("hx-inv", "ghost", "hi")) as r:
            assert r.status_code == 200
            ghost = sse_of(b"".join(r.iter_bytes()))
        assert ghost[-1]["type"] == "run_failed"
        assert ghost[-1]["payload"]["error"]["code"] == "unknown_agent"


def test_run_object_with_both_clients(edge):
    run_id, _ = hc_invoke(edge, "hc-run", "echo", "hi")
    c = HC(edge)
    try:
        st, run = c.json("GET", "/v1/runs/" + run_id)
        assert st == 200 and run["run_id"] == run_id and run["status"] == "done", run
        assert RUN_KEYS <= set(run) and run["session_id"] == "hc-run" and run["agent_id"] == "echo"
        assert TIME.fullmatch(run["created_at"]) and TIME.fullmatch(run["ended_at"]), run
        st, doc = c.json("GET", "/v1/runs/run_nope")
        assert st == 404 and error_code(doc) == "unknown_run"
    finally:
        c.close()
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        assert x.get("/v1/runs/" + run_id).json() == run


def test_events_json_pages_and_sse(edge):
    run_id, streamed = hc_invoke(edge, "hc-ev", "echo", "a b c d e f g")
    c = HC(edge)
    try:
        st, doc = c.json("GET", "/v1/runs/%s/events" % run_id)
        assert st == 200 and doc["run_id"] == run_id and doc["events"] == streamed
        pages, after = [], 0
        for _ in range(len(streamed) + 2):
            st, doc = c.json("GET", "/v1/runs/%s/events?after_seq=%d&limit=3" % (run_id, after))
            assert st == 200, doc
            if not doc["events"]:
                break
            pages.append(doc["events"])
            after = doc["events"][-1]["seq"]
        assert [len(p) for p in pages[:-1]] == [3] * (len(pages) - 1)
        assert [e for p in pages for e in p] == streamed
        st, doc = c.json("GET", "/v1/runs/run_nope/events")
        assert st == 404 and error_code(doc) == "unknown_run"
    finally:
        c.close()
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        with x.stream("GET", "/v1/runs/%s/events" % run_id,
                      headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert sse_of(b"".join(r.iter_bytes())) == streamed
        with x.stream("GET", "/v1/runs/%s/events" % run_id, headers={"Last-Event-ID": "4"}) as r:
            assert sse_of(b"".join(r.iter_bytes())) == streamed[4:]


def test_events_pages_say_has_more_and_next_after_seq(edge):
    run_id, streamed = hc_invoke(edge, "hc-ev2", "echo", "a b c d e")
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        doc = x.get("/v1/runs/%s/events" % run_id, params={"limit": 3}).json()
        assert doc["has_more"] is True and doc["next_after_seq"] == 3
        doc = x.get("/v1/runs/%s/events" % run_id,
                    params={"after_seq": 3, "limit": 1000}).json()
        assert doc["has_more"] is False and doc["events"] == streamed[3:]


def test_cancel_unknown_three_times_with_content_length_0(edge):
    """http.client sends `Content-Length: 0`: three cancels of an unknown run
    on one connection each get one 404, and the edge lives on."""
    c = HC(edge)
    try:
        for _ in range(3):
            st, hdrs, raw = c.call("POST", "/v1/runs/run_nope/cancel")
            assert st == 404 and error_code(one_json(raw)) == "unknown_run", (st, raw)
        st, doc = c.json("GET", "/health")
        assert st == 200 and doc["status"] == "ok"
    finally:
        c.close()
    assert rawhttp.health_ok(edge.http)


def test_cancel_with_an_empty_body_from_curl_and_httpx(edge):
    """`curl -X POST -d ''` (Content-Length: 0, a form Content-Type) and httpx
    with empty content: the orchestrator's answer, not a 503."""
    st, doc, _ = edge.curl("POST", "/v1/runs/run_nope/cancel", body="")
    assert st == 404 and error_code(doc) == "unknown_run", (st, doc)
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        for _ in range(3):
            r = x.post("/v1/runs/run_nope/cancel", content=b"")
            assert r.status_code == 404 and error_code(one_json(r.content)) == "unknown_run"


def test_cancel_running_then_ended(edge):
    box = {}
    with httpx.Client(base_url="http://" + edge.http, timeout=30) as x:
        with x.stream("POST", "/internal/invoke",
                      json=invoke_body("hc-cancel", "slow", " ".join(["w"] * 200))) as r:
            assert r.status_code == 200
            run_id = r.headers["x-run-id"]

            def drain():
                box["raw"] = b"".join(r.iter_bytes())
            t = threading.Thread(target=drain, daemon=True)
            t.start()
            c = HC(edge)
            try:
                st, hdrs, raw = c.call("POST", "/v1/runs/%s/cancel" % run_id)
                assert st == 202, (st, raw)
                if raw:
                    doc = one_json(raw)
                    assert "error" not in doc, doc
                t.join(30)
                assert not t.is_alive(), "the stream did not end after the cancel"
                events = sse_of(box["raw"])
                check_run_log(events, run_id, "hc-cancel")
                assert events[-1]["type"] == "run_cancelled"
                # Once ended: 409 conflict, one document.
                st, hdrs, raw = c.call("POST", "/v1/runs/%s/cancel" % run_id)
                assert st == 409 and error_code(one_json(raw)) == "conflict", (st, raw)
                st, run = c.json("GET", "/v1/runs/" + run_id)
                assert run["status"] == "cancelled"
            finally:
                c.close()


def test_messages_of_a_session(edge):
    run1, _ = hc_invoke(edge, "hc-msg", "echo", "first words")
    run2, _ = hc_invoke(edge, "hc-msg", "echo", "second words")
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        r = x.get("/v1/sessions/hc-msg/messages")
        assert r.status_code == 200
        doc = one_json(r.content)
        assert doc["session_id"] == "hc-msg"
        assert [(m["run_id"], m["role"], m["content"]) for m in doc["messages"]] == [
            (run1, "user", "first words"), (run1, "assistant", "first words"),
            (run2, "user", "second words"), (run2, "assistant", "second words")]
        for m in doc["messages"]:
            assert set(m) == {"message_id", "run_id", "role", "content", "created_at"}, m
            assert isinstance(m["message_id"], str), m  # SPEC: every id is a string
            assert TIME.fullmatch(m["created_at"]), m
        assert len({m["message_id"] for m in doc["messages"]}) == 4
        r = x.get("/v1/sessions/hc-msg-nobody/messages")
        assert r.status_code == 200 and one_json(r.content)["messages"] == []
    c = HC(edge)
    try:
        st, doc = c.json("GET", "/v1/sessions/hc-msg/messages?limit=2")
        assert st == 200 and [m["content"] for m in doc["messages"]] == ["second words"] * 2
    finally:
        c.close()


def test_messages_pages_before_and_after(edge):
    for i in range(3):
        hc_invoke(edge, "hc-msgp", "echo", "m%d" % i)
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        last = x.get("/v1/sessions/hc-msgp/messages", params={"limit": 2}).json()
        assert [m["content"] for m in last["messages"]] == ["m2", "m2"] and last["has_more"] is True
        back = x.get("/v1/sessions/hc-msgp/messages",
                     params={"limit": 10, "before": last["messages"][0]["message_id"]}).json()
        assert [m["content"] for m in back["messages"]] == ["m0", "m0", "m1", "m1"]
        assert back["has_more"] is False
        fwd = x.get("/v1/sessions/hc-msgp/messages",
                    params={"limit": 2, "after": back["messages"][1]["message_id"]}).json()
        assert [m["content"] for m in fwd["messages"]] == ["m1", "m1"] and fwd["has_more"] is True


def test_internal_send_reaches_the_sessions_sockets(edge):
    a = rawhttp.WS(edge.http)
    b = rawhttp.WS(edge.http)
    try:
        assert a.hello("hc-push")["type"] == "hello_ok"
        assert b.hello("hc-other")["type"] == "hello_ok"
        c = HC(edge)
        try:
            st, doc = c.json("POST", "/internal/send", {"session_id": "hc-push",
                                                        "event": {"type": "note", "n": 7}})
            assert st == 202 and doc == {"delivered": 1}, doc
            st, doc = c.json("POST", "/internal/send", {"session_id": "hc-nobody", "event": {}})
            assert st == 202 and doc == {"delivered": 0}, doc
            st, doc = c.json("POST", "/internal/send", {"session_id": "hc-push"})
            assert st == 400 and error_code(doc) == "bad_request"
        finally:
            c.close()
        assert a.recv_json() == {"type": "event", "event": {"type": "note", "n": 7}}
        b.send_json({"type": "ping"})
        assert b.recv_json() == {"type": "pong"}  # b got nothing before its pong
    finally:
        a.close()
        b.close()


def test_metrics_is_prometheus_text(edge):
    with httpx.Client(base_url="http://" + edge.http, timeout=20) as x:
        r = x.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    sample = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.eE+-]+|[+-]?Inf|NaN)( -?[0-9]+)?")
    names = set()
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"# (HELP|TYPE) [a-zA-Z_:]", line), line
            continue
        assert sample.fullmatch(line), line
        names.add(line.split("{")[0].split()[0])
    assert "map_ingress_events_sent_total" in names, names


# ---- one connection, many requests ----------------------------------------------

def test_one_http_client_connection_for_many_requests(edge):
    """Sixty requests of every path in a row on one kept-alive connection:
    one response each, the socket never replaced, never told to close."""
    run_id, _ = hc_invoke(edge, "hc-ka", "echo", "kept alive")
    c = HC(edge)
    try:
        c.call("GET", "/health")
        sock = c.conn.sock
        assert sock is not None
        plan = [
            ("GET", "/health", None, 200),
            ("GET", "/v1/agents", None, 200),
            ("GET", "/v1/runs/" + run_id, None, 200),
            ("GET", "/v1/runs/%s/events?after_seq=1&limit=2" % run_id, None, 200),
            ("POST", "/v1/runs/run_nope/cancel", None, 404),
            ("POST", "/v1/runs/%s/cancel" % run_id, None, 409),
            ("GET", "/v1/sessions/hc-ka/messages", None, 200),
            ("POST", "/internal/send", {"session_id": "hc-ka-none", "event": {"x": 1}}, 202),
            ("POST", "/v1/agents/register", {"agent_id": "hc-ka", "name": "k",
                                             "endpoint": "http://127.0.0.1:9"}, None),
            ("GET", "/nowhere", None, 404),
            ("POST", "/internal/invoke", b"{bad", 400),
            ("GET", "/metrics", None, 200),
        ]
        for i in range(5):
            for method, path, body, want in plan:
                st, hdrs, raw = c.call(method, path, body)
                assert want is None or st == want, (i, method, path, st, raw)
                if hdrs.get("content-type", "").startswith("application/json"):
                    one_json(raw)
                assert "close" not in hdrs.get("connection", "").lower(), (path, hdrs)
                assert c.conn.sock is sock, "http.client had to open a new connection after " + path
    finally:
        c.close()


def test_one_httpx_connection_for_many_requests(edge):
    seen = set()
    with httpx.Client(base_url="http://" + edge.http, timeout=20,
                      limits=httpx.Limits(max_connections=1)) as x:
        for i in range(40):
            for path in ("/health", "/v1/agents", "/v1/runs/run_nope"):
                r = x.get(path)
                one_json(r.content)
                stream = r.extensions.get("network_stream")
                if stream is not None:
                    seen.add(stream.get_extra_info("client_addr"))
            r = x.post("/v1/runs/run_nope/cancel")
            assert r.status_code == 404 and error_code(one_json(r.content)) == "unknown_run"
    assert len(seen) <= 1, seen
