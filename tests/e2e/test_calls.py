"""Agent calls at the edge (SPEC §7), the whole stack as real processes:
the `delegate` agent (agents/demo/delegate_agent.py, behind the bridge)
calling `echo` through its platform.calls_url, seen over /internal/invoke and
over a session's WebSocket; and the scope of a run token, with a `holder`
agent (in this process) that hands the test its run's token and keeps the
run running until released."""
import asyncio
import http.client
import http.server
import json
import os
import socket
import threading
import time
import urllib.parse

import pytest
import websockets

from conftest import Edge, parse_sse
from mapclient import free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


class Holder:
    """An external agent: records each /invoke body (its platform map), then
    streams a delta a second until its run's content is released (60 s at
    most), then done."""

    def __init__(self):
        self.bodies = {}   # input content -> the /invoke body
        self.released = set()
        holder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["input_message"]["content"]
                holder.bodies[key] = body
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for _ in range(600):
                        if key in holder.released:
                            break
                        self.wfile.write(b'event: delta\ndata: {"delta":"."}\n\n')
                        self.wfile.flush()
                        for _ in range(10):
                            if key in holder.released:
                                break
                            time.sleep(0.1)
                    self.wfile.write(b"event: done\ndata: {}\n\n")
                    self.wfile.flush()
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.add(None)
        for k in list(self.bodies):
            self.released.add(k)
        self.server.shutdown()
        self.server.server_close()


def start_delegate(e):
    port = free_port()
    e.procs.start_argv(["/usr/bin/python3", os.path.join(ROOT, "agents", "demo", "delegate_agent.py")],
                       env={"MAP_DELEGATE_AGENT_ADDR": "127.0.0.1:%d" % port}, name="delegate")
    url = "http://127.0.0.1:%d" % port

    def up():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        except OSError:
            return False
    wait_until(up, timeout=20, what="the delegate agent")
    return url


def register(e, agent_id, endpoint):
    st, doc, _ = e.curl("POST", "/v1/agents/register",
                        {"agent_id": agent_id, "name": agent_id, "endpoint": endpoint})
    assert st in (200, 201), (st, doc)


@pytest.fixture(scope="module")
def calls():
    e = Edge(bridge=True)
    try:
        e.holder = Holder()
        register(e, "delegate", start_delegate(e))
        register(e, "holder", e.holder.url)
        yield e
    finally:
        if getattr(e, "holder", None):
            e.holder.close()
        e.close()


def raw(e, method, path, body=None, headers=None, timeout=20):
    """(status, headers dict lower-case, body text) with http.client: exactly
    the headers given (no API key added)."""
    host, port = e.http.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    h = dict(headers or {})
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, text


def invoke(e, session, agent, content):
    st, text, hdrs = e.curl("POST", "/internal/invoke",
                            {"session_id": session, "agent_id": agent,
                             "input_message": {"role": "user", "content": content}}, raw=True)
    assert st == 200, (st, text)
    return parse_sse(text), hdrs


def types(events):
    return [ev for _, ev, _ in events]


def get(e, path):
    st, doc, _ = e.curl("GET", path)
    assert st == 200, (st, path, doc)
    return doc


def test_delegate_calls_echo_over_internal_invoke(calls):
    events, hdrs = invoke(calls, "cs-invoke", "delegate", "hello big world")
    parent = hdrs["x-run-id"]
    t = types(events)
    assert t[0] == "run_started" and t[-1] == "run_done", t
    started = [d["payload"] for _, ev, d in events if ev == "agent_call_started"]
    done = [d["payload"] for _, ev, d in events if ev == "agent_call_done"]
    assert len(started) == 1 and len(done) == 1, t
    child = started[0]["child_run_id"]
    assert started[0] == {"call_id": "delegate-1", "child_run_id": child, "agent_id": "echo",
                          "depth": 1}
    assert done[0] == {"call_id": "delegate-1", "child_run_id": child,
                       "output": {"role": "assistant", "content": "hello big world"}}
    assert t.index("agent_call_started") < t.index("agent_call_done") < t.index("agent_invoke_done")
    deltas = [d["payload"]["delta"] for _, ev, d in events if ev == "agent_stream_delta"]
    assert "".join(deltas) == "delegate asked echo: hello big world"
    out = [d["payload"]["output"] for _, ev, d in events if ev == "agent_invoke_done"]
    assert out == [{"role": "assistant", "content": "delegate asked echo: hello big world"}]
    # The parent's own events carry no parent: it is a client's run.
    assert all("parent_run_id" not in d for _, _, d in events), events[0]

    run = get(calls, "/v1/runs/" + child)
    assert run["parent_run_id"] == parent and run["root_run_id"] == parent and run["depth"] == 1
    assert run["session_id"] == "cs-invoke" and run["agent_id"] == "echo"
    assert run["status"] == "done"
    top = get(calls, "/v1/runs/" + parent)
    assert top["depth"] == 0 and top["parent_run_id"] is None and top["status"] == "done"
    listed = get(calls, "/v1/runs/%s/calls" % parent)
    assert listed["run_id"] == parent and [r["run_id"] for r in listed["calls"]] == [child]
    assert listed["calls"][0]["parent_run_id"] == parent
    assert get(calls, "/v1/runs/%s/calls" % child)["calls"] == []
    st, doc, _ = calls.curl("GET", "/v1/runs/run_nope/calls")
    assert st == 404 and doc["error"]["code"] == "unknown_run", doc

    # The child's log, read back: gapless, with its parent and depth.
    log = get(calls, "/v1/runs/%s/events" % child)["events"]
    assert [ev["seq"] for ev in log] == list(range(1, len(log) + 1))
    assert log[-1]["type"] == "run_done"
    assert all(ev["parent_run_id"] == parent and ev["depth"] == 1 for ev in log)
    assert "".join(ev["payload"]["delta"] for ev in log if ev["type"] == "agent_stream_delta") \
        == "hello big world"

    # Messages: the parent's input and answer only; the child wrote none.
    msgs = get(calls, "/v1/sessions/cs-invoke/messages")["messages"]
    assert [(m["role"], m["content"], m["run_id"]) for m in msgs] == [
        ("user", "hello big world", parent),
        ("assistant", "delegate asked echo: hello big world", parent)]

    # /metrics counts the call.
    st, text, _ = calls.curl("GET", "/metrics", raw=True)
    assert st == 200
    line = [l for l in text.splitlines() if l.startswith('map_calls_total{outcome="done"}')]
    assert line and int(line[0].split()[1]) >= 1, text
    for outcome in ("failed", "cancelled", "refused"):
        assert 'map_calls_total{outcome="%s"}' % outcome in text


def test_session_websocket_sees_child_events_live(calls):
    async def run():
        async with websockets.connect(calls.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "cs-ws"}))
            assert json.loads(await ws.recv())["type"] == "hello_ok"
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "w1",
                                      "agent_id": "delegate",
                                      "input_message": {"role": "user",
                                                        "content": "@slow one two three four"}}))
            parent, got = None, []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if m["type"] == "invoke_accepted":
                    parent = m["run_id"]
                    continue
                assert m["type"] == "event", m
                got.append(m["event"])
                ev = m["event"]
                if ev["run_id"] == parent and ev["type"] == "run_done":
                    return parent, got
            raise AssertionError("no end of the parent run: %r" % got)

    parent, got = asyncio.run(run())
    child_events = [ev for ev in got if ev["run_id"] != parent]
    assert child_events, got
    child = child_events[0]["run_id"]
    assert all(ev["run_id"] == child for ev in child_events)
    assert all(ev["parent_run_id"] == parent and ev["depth"] == 1 for ev in child_events)
    assert all(ev["session_id"] == "cs-ws" for ev in got)
    assert [ev["seq"] for ev in child_events] == list(range(1, len(child_events) + 1))
    assert child_events[-1]["type"] == "run_done"
    # Live: the child (`slow`, 30 ms a word) was seen streaming, not only
    # its end: its first delta came before the parent's log recorded the
    # call's end, and the parent relayed each word after the child's.
    order = [(ev["run_id"], ev["type"]) for ev in got]
    assert order.index((child, "agent_stream_delta")) < order.index((parent, "agent_call_done"))
    assert order.index((child, "run_done")) < order.index((parent, "run_done"))
    relayed = [ev["payload"]["delta"] for ev in got
               if ev["run_id"] == parent and ev["type"] == "agent_stream_delta"]
    assert "".join(relayed) == "delegate asked slow: one two three four"
    assert all("parent_run_id" not in ev for ev in got if ev["run_id"] == parent)


def start_held(e, session, key):
    """Starts a holder run in the background; returns (thread, result dict,
    its /invoke body once the agent has it)."""
    result = {}

    def go():
        result["events"], result["hdrs"] = invoke(e, session, "holder", key)
    th = threading.Thread(target=go, daemon=True)
    th.start()
    body = wait_until(lambda: e.holder.bodies.get(key), timeout=20, what="the holder's invoke")
    return th, result, body


def call_body(call_id, agent="echo", content="a b c", **extra):
    return dict({"call_id": call_id, "agent_id": agent,
                 "input_message": {"role": "user", "content": content}}, **extra)


def test_run_token_scope(calls):
    th1, res1, b1 = start_held(calls, "cs-tok1", "hold-1")
    th2, res2, b2 = start_held(calls, "cs-tok2", "hold-2")
    p1, p2 = b1["platform"], b2["platform"]
    assert p1["depth"] == 0 and len(p1["token"]) == 32 and p1["token"] != p2["token"]
    url = urllib.parse.urlsplit(p1["calls_url"])
    assert url.netloc == calls.http and url.path == "/v1/runs/%s/calls" % b1["run_id"]
    path = url.path
    auth1 = {"Authorization": "Bearer " + p1["token"]}

    # No bearer, or not a token: 401.
    st, _, text = raw(calls, "POST", path, call_body("c1"))
    assert st == 401 and json.loads(text)["error"]["code"] == "unauthorized", text
    st, _, text = raw(calls, "POST", path, call_body("c1"), {"Authorization": "Bearer nope"})
    assert st == 401, text
    # Another run's token, a made-up run: 403, and no child was made.
    st, _, text = raw(calls, "POST", path, call_body("c1"), {"Authorization": "Bearer " + p2["token"]})
    assert st == 403 and json.loads(text)["error"]["code"] == "forbidden", text
    st, _, text = raw(calls, "POST", "/v1/runs/run_madeup/calls", call_body("c1"), auth1)
    assert st == 403 and json.loads(text)["error"]["code"] == "forbidden", text
    assert get(calls, "/v1/runs/%s/calls" % b1["run_id"])["calls"] == []
    # A bad body: 400 naming what.
    st, _, text = raw(calls, "POST", path, {"agent_id": "echo"}, auth1)
    assert st == 400 and "call_id" in json.loads(text)["error"]["message"], text

    # The right token: the child's events as SSE, X-Run-Id the child.
    st, hdrs, text = raw(calls, "POST", path, call_body("c1", messages=[
        {"role": "user", "content": "before"}]), auth1)
    assert st == 200 and hdrs["content-type"].startswith("text/event-stream"), (st, text)
    child = hdrs["x-run-id"]
    evs = parse_sse(text)
    assert [int(i) for i, _, _ in evs] == list(range(1, len(evs) + 1))
    assert evs[-1][1] == "run_done" and all(d["run_id"] == child for _, _, d in evs)
    assert all(d["parent_run_id"] == b1["run_id"] and d["depth"] == 1 for _, _, d in evs)
    assert "".join(d["payload"]["delta"] for _, ev, d in evs if ev == "agent_stream_delta") == "a b c"
    # The same call_id again: the same child, from seq 1, nothing new.
    st, hdrs2, text2 = raw(calls, "POST", path, call_body("c1"), auth1)
    assert st == 200 and hdrs2["x-run-id"] == child
    assert [(i, ev) for i, ev, _ in parse_sse(text2)] == [(i, ev) for i, ev, _ in evs]
    assert [r["run_id"] for r in get(calls, "/v1/runs/%s/calls" % b1["run_id"])["calls"]] == [child]

    # The run ends: its token is over (403), the other run's still works.
    calls.holder.released.add("hold-1")
    th1.join(30)
    assert types(res1["events"])[-1] == "run_done"
    st, _, text = raw(calls, "POST", path, call_body("c2"), auth1)
    assert st == 403 and json.loads(text)["error"]["code"] == "forbidden", text
    st, hdrs, text = raw(calls, "POST", "/v1/runs/%s/calls" % b2["run_id"], call_body("c9"),
                         {"Authorization": "Bearer " + p2["token"]})
    assert st == 200 and parse_sse(text)[-1][1] == "run_done", text
    calls.holder.released.add("hold-2")
    th2.join(30)
    parent_log = [ev for _, ev, _ in res2["events"]]
    assert parent_log.count("agent_call_started") == 1 and parent_log.count("agent_call_done") == 1
    assert parent_log[-1] == "run_done"


def test_calls_with_an_api_key():
    """With MAP_API_KEY: /calls is the run token's, never the key's; the
    listing still needs the key."""
    e = Edge(api_key="k3y-calls", bridge=True)
    holder = Holder()
    try:
        e.holder = holder
        register(e, "holder", holder.url)
        th, res, body = start_held(e, "ck-1", "hold-key")
        path = urllib.parse.urlsplit(body["platform"]["calls_url"]).path
        token = {"Authorization": "Bearer " + body["platform"]["token"]}
        st, _, text = raw(e, "POST", path, call_body("k1"), {"Authorization": "Bearer k3y-calls"})
        assert st == 401, text
        st, hdrs, text = raw(e, "POST", path, call_body("k1"), token)
        assert st == 200 and parse_sse(text)[-1][1] == "run_done", text
        st, _, text = raw(e, "GET", path, None, token)
        assert st == 401, text
        st, _, text = raw(e, "GET", path, None, {"Authorization": "Bearer k3y-calls"})
        assert st == 200 and [r["run_id"] for r in json.loads(text)["calls"]] == [hdrs["x-run-id"]]
        # The Origin rule holds for calls too.
        st, _, text = raw(e, "POST", path, call_body("k2"),
                          dict(token, Origin="https://evil.example"))
        assert st == 403 and json.loads(text)["error"]["code"] == "forbidden_origin", text
        holder.released.add("hold-key")
        th.join(30)
        assert types(res["events"])[-1] == "run_done"
    finally:
        holder.close()
        e.close()


def test_a_caller_that_leaves_cancels_its_child(calls):
    """The HTTP client of /calls goes away mid-stream: the child run ends
    run_cancelled and the parent's log says agent_call_cancelled; the
    parent goes on."""
    th, res, body = start_held(calls, "cs-leave", "hold-leave")
    url = urllib.parse.urlsplit(body["platform"]["calls_url"])
    host, port = calls.http.split(":")
    words = " ".join("w%d" % i for i in range(300))  # `slow`: 30 ms a word, 9 s
    data = json.dumps(call_body("leave", "slow", words)).encode()
    sock = socket.create_connection((host, int(port)), timeout=20)
    try:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (url.path.encode(), calls.http.encode(),
                        body["platform"]["token"].encode(), len(data), data))
        seen = b""
        deadline = time.monotonic() + 20
        while b"agent_stream_delta" not in seen and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
    finally:
        sock.close()  # leaves mid-stream
    head = seen.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200"), head
    child = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
             if l.lower().startswith("x-run-id:")][0]
    wait_until(lambda: get(calls, "/v1/runs/" + child)["status"] == "cancelled", timeout=10,
               what="the child to be cancelled")
    log = get(calls, "/v1/runs/%s/events" % child)["events"]
    assert log[-1]["type"] == "run_cancelled"
    parent = get(calls, "/v1/runs/%s/events" % body["run_id"])["events"]
    ends = [ev for ev in parent if ev["type"].startswith("agent_call_") and ev["type"] != "agent_call_started"]
    assert [(ev["type"], ev["payload"]) for ev in ends] == [
        ("agent_call_cancelled", {"call_id": "leave", "child_run_id": child})]
    assert get(calls, "/v1/runs/" + body["run_id"])["status"] == "running"
    calls.holder.released.add("hold-leave")
    th.join(30)
    assert types(res["events"])[-1] == "run_done"


def test_cancelling_the_parent_cancels_the_delegated_child(calls):
    """A WebSocket cancels a delegate run while its child streams: the child
    ends run_cancelled, the parent's log has agent_call_cancelled and then
    run_cancelled, last."""
    words = " ".join("w%d" % i for i in range(300))

    async def run():
        async with websockets.connect(calls.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "cs-cancel"}))
            assert json.loads(await ws.recv())["type"] == "hello_ok"
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "x1",
                                      "agent_id": "delegate",
                                      "input_message": {"role": "user", "content": "@slow " + words}}))
            parent, child, got = None, None, []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if m["type"] == "invoke_accepted":
                    parent = m["run_id"]
                    continue
                ev = m["event"]
                got.append(ev)
                if ev["run_id"] != parent and ev["type"] == "agent_stream_delta" and child is None:
                    child = ev["run_id"]
                    await ws.send(json.dumps({"type": "cancel", "run_id": parent}))
                if ev["run_id"] == parent and ev["type"] in ("run_done", "run_failed", "run_cancelled"):
                    return parent, child, got
            raise AssertionError("the parent did not end: %r" % got[-5:])

    parent, child, got = asyncio.run(run())
    assert child
    wait_until(lambda: get(calls, "/v1/runs/" + child)["status"] == "cancelled", timeout=10,
               what="the child to be cancelled")
    plog = get(calls, "/v1/runs/%s/events" % parent)["events"]
    t = [ev["type"] for ev in plog]
    assert t[-1] == "run_cancelled" and t.count("agent_call_cancelled") == 1, t
    assert t.index("agent_call_cancelled") < len(t) - 1
    assert get(calls, "/v1/runs/%s/events" % child)["events"][-1]["type"] == "run_cancelled"
