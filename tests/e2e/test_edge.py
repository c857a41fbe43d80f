"""End-to-end: the external contract (SPEC §3, §4) with curl and a real
WebSocket client against the whole stack."""
import asyncio
import json
import random
import signal
import time

import websockets

from conftest import Edge, parse_sse
from mapclient import wait_until

TERMINAL = ("run_done", "run_failed", "run_cancelled")


def invoke_body(session, agent, content, **kw):
    b = {"session_id": session, "agent_id": agent,
         "input_message": {"role": "user", "content": content}}
    b.update(kw)
    return b


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def recv_json(ws, timeout=15):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until_terminal(ws, run_id=None):
    events = []
    while True:
        m = await recv_json(ws)
        if m["type"] != "event":
            continue
        if run_id and m["event"]["run_id"] != run_id:
            continue
        events.append(m["event"])
        if m["event"]["type"] in TERMINAL:
            return events


def check_gapless(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), [e["seq"] for e in events]
    assert sum(e["type"] in TERMINAL for e in events) == 1


# ---- SPEC §3 -------------------------------------------------------------

def test_the_three_commands_of_the_issue(edge):
    status, doc, _ = edge.curl("GET", "/health")
    assert status == 200 and doc == {"status": "ok",
                                     "components": {"broker": "ok", "orchestrator": "ok"}}
    status, text, hdrs = edge.curl("POST", "/internal/invoke", invoke_body("c3", "echo", "hello"),
                                   raw=True)
    assert status == 200 and hdrs["content-type"].startswith("text/event-stream")
    events = parse_sse(text)
    run_id = hdrs["x-run-id"]
    assert [e[1] for e in events] == ["run_started", "user_input", "agent_invoke_started",
                                      "agent_stream_delta", "agent_invoke_done", "run_done"]
    assert [int(e[0]) for e in events] == [e[2]["seq"] for e in events] == list(range(1, 7))
    assert all(e[2]["run_id"] == run_id for e in events)
    status, doc, _ = edge.curl("GET", "/v1/sessions/c3/messages")
    assert status == 200 and [(m["role"], m["content"]) for m in doc["messages"]] == [
        ("user", "hello"), ("assistant", "hello")]


def test_runs_events_replay_and_sse(edge):
    status, text, hdrs = edge.curl("POST", "/internal/invoke", invoke_body("r1", "echo", "a b c d"),
                                   raw=True)
    run_id = hdrs["x-run-id"]
    streamed = [e[2] for e in parse_sse(text)]
    status, run, _ = edge.curl("GET", "/v1/runs/" + run_id)
    assert status == 200 and run["status"] == "done" and run["session_id"] == "r1"
    assert set(run) == {"run_id", "session_id", "agent_id", "status", "created_at", "ended_at",
                        "parent_run_id", "root_run_id", "depth"}
    status, doc, _ = edge.curl("GET", "/v1/runs/%s/events" % run_id)
    assert status == 200 and doc["run_id"] == run_id and doc["events"] == streamed
    status, doc, _ = edge.curl("GET", "/v1/runs/%s/events?after_seq=2&limit=2" % run_id)
    assert doc["events"] == streamed[2:4]
    status, text, _ = edge.curl("GET", "/v1/runs/%s/events" % run_id,
                                headers=["Accept: text/event-stream"], raw=True)
    assert [e[2] for e in parse_sse(text)] == streamed
    status, text, _ = edge.curl("GET", "/v1/runs/%s/events" % run_id,
                                headers=["Last-Event-ID: 5"], raw=True)
    assert [e[2] for e in parse_sse(text)] == streamed[5:]


def test_errors_and_unknown_ids(edge):
    for method, path, body, code, status in [
        ("GET", "/v1/runs/run_nope", None, "unknown_run", 404),
        ("GET", "/v1/runs/run_nope/events", None, "unknown_run", 404),
        ("POST", "/v1/runs/run_nope/cancel", None, "unknown_run", 404),
        ("GET", "/nowhere", None, "not_found", 404),
        ("POST", "/internal/invoke", "{bad json", "bad_json", 400),
        ("POST", "/internal/invoke", {"session_id": "x", "input_message": {"role": "user", "content": "x"}},
         "bad_request", 400),
        ("POST", "/internal/invoke", {"session_id": 5, "agent_id": "echo"}, "bad_request", 400),
        ("POST", "/v1/agents/register", {"agent_id": "x"}, "bad_request", 400),
        ("POST", "/v1/agents/register", {"agent_id": "x", "endpoint": "ftp://nope"}, "bad_request", 400),
    ]:
        st, doc, _ = edge.curl(method, path, body)
        assert st == status and doc["error"]["code"] == code, (path, st, doc)
        assert set(doc["error"]) == {"code", "message"}
    st, doc, _ = edge.curl("DELETE", "/health")
    assert st == 405
    big = {"session_id": "x", "agent_id": "echo",
           "input_message": {"role": "user", "content": "y" * (2 << 20)}}
    st, doc, _ = edge.curl("POST", "/internal/invoke", big)
    assert st == 413 and doc["error"]["code"] == "too_large"
    # An unknown agent still makes a run, which fails.
    st, text, hdrs = edge.curl("POST", "/internal/invoke", invoke_body("u1", "ghost", "hi"), raw=True)
    events = parse_sse(text)
    assert st == 200 and events[-1][1] == "run_failed"
    assert events[-1][2]["payload"]["error"]["code"] == "unknown_agent"


def test_register_and_list_agents(edge):
    st, a, _ = edge.curl("POST", "/v1/agents/register",
                         {"agent_id": "ext1", "name": "Ext", "endpoint": "http://127.0.0.1:9"})
    assert st == 201 and a["agent_id"] == "ext1" and a["kind"] == "http"
    st, a, _ = edge.curl("POST", "/v1/agents/register",
                         {"agent_id": "ext1", "name": "Ext 2", "endpoint": "http://127.0.0.1:9"})
    assert st == 200 and a["name"] == "Ext 2"
    st, doc, _ = edge.curl("POST", "/v1/agents/register",
                           {"agent_id": "echo", "name": "x", "endpoint": "http://127.0.0.1:9"})
    assert st == 409
    st, doc, _ = edge.curl("GET", "/v1/agents")
    kinds = {a["agent_id"]: a["kind"] for a in doc["agents"]}
    assert kinds["echo"] == "native" and kinds["ext1"] == "http"
    for a in doc["agents"]:
        assert set(a) == {"agent_id", "name", "endpoint", "kind", "workers", "created_at"}


def test_busy_reject_and_cancel_by_rest(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "busy1"}))
            assert (await recv_json(ws))["type"] == "hello_ok"
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "a", "agent_id": "slow",
                                      "input_message": {"role": "user", "content": " ".join(["w"] * 60)}}))
            acc = await recv_json(ws)
            assert acc["type"] == "invoke_accepted"
            st, doc, _ = edge.curl("POST", "/internal/invoke",
                                   invoke_body("busy1", "echo", "x", if_busy="reject"))
            assert st == 409 and doc["error"]["code"] == "busy"
            assert doc["error"]["run_id"] == acc["run_id"]
            st, doc, _ = edge.curl("POST", "/v1/runs/%s/cancel" % acc["run_id"])
            assert st == 202
            events = await until_terminal(ws, acc["run_id"])
            assert events[-1]["type"] == "run_cancelled"
    run(go())


def test_internal_send_and_metrics(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as a, websockets.connect(edge.ws_url()) as b:
            for ws in (a, b):
                await ws.send(json.dumps({"type": "hello", "session_id": "push1"}))
                await recv_json(ws)
            st, doc, _ = edge.curl("POST", "/internal/send",
                                   {"session_id": "push1", "event": {"type": "note", "n": 1}})
            assert st == 202 and doc == {"delivered": 2}
            for ws in (a, b):
                assert await recv_json(ws) == {"type": "event", "event": {"type": "note", "n": 1}}
    run(go())
    st, doc, _ = edge.curl("POST", "/internal/send", {"session_id": "nobody", "event": {"x": 1}})
    assert st == 202 and doc == {"delivered": 0}
    st, text, hdrs = edge.curl("GET", "/metrics", raw=True)
    assert st == 200 and "map_ingress_events_sent_total" in text and "# TYPE" in text


# ---- SPEC §4 -------------------------------------------------------------

def test_websocket_protocol(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "x"}))
            m = await recv_json(ws)
            assert m["type"] == "error" and m["code"] == "not_hello"
            await ws.send(json.dumps({"type": "hello"}))
            hello = await recv_json(ws)
            assert hello["type"] == "hello_ok" and hello["session_id"]
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
            body = {"type": "agent_invoke", "request_id": "c1", "agent_id": "echo",
                    "input_message": {"role": "user", "content": "one two three"}}
            await ws.send(json.dumps(body))
            acc = await recv_json(ws)
            assert acc == {"type": "invoke_accepted", "request_id": "c1", "run_id": acc["run_id"]}
            events = await until_terminal(ws, acc["run_id"])
            check_gapless(events)
            assert "".join(e["payload"]["delta"] for e in events
                           if e["type"] == "agent_stream_delta") == "one two three"
            assert all(e["session_id"] == hello["session_id"] for e in events)
            # The same request id again: the same run, nothing new.
            await ws.send(json.dumps(body))
            again = await recv_json(ws)
            assert again["run_id"] == acc["run_id"]
            # Errors keep the socket open.
            for bad, code in [("{nope", "bad_json"), (json.dumps({"type": "dance"}), "bad_request"),
                              (json.dumps({"type": "agent_invoke", "request_id": "c9", "agent_id": 3}),
                               "bad_request"),
                              (json.dumps({"type": "resume", "run_id": "run_nope"}), "unknown_run"),
                              (json.dumps({"type": "cancel", "run_id": "run_nope"}), "unknown_run")]:
                await ws.send(bad)
                m = await recv_json(ws)
                assert m["type"] == "error" and m["code"] == code, (bad, m)
            await ws.send("x" * (2 << 20))
            m = await recv_json(ws)
            assert m["code"] == "too_large"
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
    run(go())


def test_thousand_malformed_messages_keep_the_socket_up(edge):
    rnd = random.Random(7)

    async def go():
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "fuzz1"}))
            await recv_json(ws)
            for i in range(1000):
                kind = i % 4
                if kind == 0:
                    msg = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64))).decode("latin-1")
                elif kind == 1:
                    msg = json.dumps({"type": rnd.choice(["agent_invoke", "resume", "cancel", "x", 5]),
                                      "run_id": rnd.choice([None, 3, "", "r"]),
                                      "after_seq": rnd.choice([-1, "a", 1.5])})
                elif kind == 2:
                    msg = "[" * rnd.randrange(1, 300)
                else:
                    msg = json.dumps({"type": "agent_invoke", "request_id": "", "agent_id": "",
                                      "input_message": rnd.choice([None, {}, {"role": 1}])})
                await ws.send(msg)
                m = await recv_json(ws)
                assert m["type"] == "error", (msg, m)
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
    run(go())
    assert edge.curl("GET", "/health")[0] == 200


def test_sessions_are_isolated(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as a, websockets.connect(edge.ws_url()) as b, \
                websockets.connect(edge.ws_url()) as a2:
            for ws, s in ((a, "iso-a"), (b, "iso-b"), (a2, "iso-a")):
                await ws.send(json.dumps({"type": "hello", "session_id": s}))
                await recv_json(ws)
            await a.send(json.dumps({"type": "agent_invoke", "request_id": "1", "agent_id": "echo",
                                     "input_message": {"role": "user", "content": "for a only"}}))
            acc = await recv_json(a)
            ev_a = await until_terminal(a, acc["run_id"])
            ev_a2 = await until_terminal(a2, acc["run_id"])
            assert ev_a == ev_a2  # every socket of the session
            # b saw nothing of it, and cannot resume it.
            await b.send(json.dumps({"type": "resume", "run_id": acc["run_id"], "after_seq": 0}))
            m = await recv_json(b)
            assert m["type"] == "error" and m["code"] == "unknown_run"
            await b.send(json.dumps({"type": "ping"}))
            assert await recv_json(b) == {"type": "pong"}
    run(go())


def test_resume_after_disconnect_mid_run(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "res1"}))
            await recv_json(ws)
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "r", "agent_id": "slow",
                                      "input_message": {"role": "user", "content": " ".join(["w"] * 40)}}))
            acc = await recv_json(ws)
            seen = []
            while len(seen) < 5:
                m = await recv_json(ws)
                if m["type"] == "event":
                    seen.append(m["event"])
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "res1"}))
            await recv_json(ws)
            await ws.send(json.dumps({"type": "resume", "run_id": acc["run_id"],
                                      "after_seq": seen[-1]["seq"]}))
            rest = await until_terminal(ws, acc["run_id"])
            check_gapless(seen + rest)
    run(go())


def test_cancel_by_websocket(edge):
    async def go():
        async with websockets.connect(edge.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "wscancel"}))
            await recv_json(ws)
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "r", "agent_id": "slow",
                                      "input_message": {"role": "user", "content": " ".join(["w"] * 60)}}))
            acc = await recv_json(ws)
            await ws.send(json.dumps({"type": "cancel", "run_id": acc["run_id"]}))
            events = await until_terminal(ws, acc["run_id"])
            check_gapless(events)
            assert events[-1]["type"] == "run_cancelled"
    run(go())


def test_slow_reader_catches_up_while_others_go_on():
    """A socket that stops reading while its runs stream is not closed and
    does not grow the edge's memory: it falls behind, and once it reads it
    gets every run whole, gapless and once, from the store (SPEC §4)."""
    e = Edge(ingress_args=("--max-outq", "65536"))
    try:
        async def go():
            slow = await websockets.connect(e.ws_url(), max_queue=1, read_limit=2 ** 12)
            await slow.send(json.dumps({"type": "hello", "session_id": "slowpoke"}))
            await recv_json(slow)
            fast = await websockets.connect(e.ws_url())
            await fast.send(json.dumps({"type": "hello", "session_id": "quick"}))
            await recv_json(fast)
            # 3 runs of 400 words of 200 characters (about 150 KB of events
            # each, the socket's queue holds 64 KB) that the slow one does
            # not read while they stream.
            text = " ".join(["x" * 200] * 400)
            for i in range(3):
                await slow.send(json.dumps({"type": "agent_invoke", "request_id": str(i),
                                            "agent_id": "echo",
                                            "input_message": {"role": "user", "content": text}}))
            await asyncio.sleep(1.0)
            await fast.send(json.dumps({"type": "agent_invoke", "request_id": "f", "agent_id": "echo",
                                        "input_message": {"role": "user", "content": "still here"}}))
            acc = await recv_json(fast)
            check_gapless(await until_terminal(fast, acc["run_id"]))
            # Now it reads: every run whole, each event once.
            runs, ended = {}, set()
            while len(ended) < 3:
                m = await recv_json(slow, timeout=30)
                if m["type"] != "event":
                    continue
                ev = m["event"]
                runs.setdefault(ev["run_id"], []).append(ev)
                if ev["type"] in TERMINAL:
                    ended.add(ev["run_id"])
            assert len(runs) == 3
            for events in runs.values():
                check_gapless(events)
                assert events[-1]["type"] == "run_done"
                assert sum(ev["type"] == "agent_stream_delta" for ev in events) == 400
            await fast.close()
            await slow.close()
        run(go())
        st, text, _ = e.curl("GET", "/metrics", raw=True)
        assert "map_ingress_slow_clients_closed_total 0" in text  # never closed as slow
        assert "map_ingress_gap_fills_total 0" not in text        # it caught up from the store
    finally:
        e.close()


def test_api_key():
    e = Edge(api_key="sekrit")
    try:
        # health is open; everything else needs the key.
        r = e.curl  # curl sends the key when the Edge has one
        e.api_key = None
        st, doc, _ = r("GET", "/health")
        assert st == 200
        st, doc, _ = r("GET", "/v1/agents")
        assert st == 401 and doc["error"]["code"] == "unauthorized"
        st, doc, _ = r("GET", "/v1/agents", headers=["Authorization: Bearer wrong"])
        assert st == 401
        e.api_key = "sekrit"
        st, doc, _ = r("GET", "/v1/agents")
        assert st == 200

        async def go():
            async with websockets.connect(e.ws_url()) as ws:
                await ws.send(json.dumps({"type": "hello", "session_id": "k", "api_key": "nope"}))
                m = await recv_json(ws)
                assert m["code"] == "unauthorized"
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                    assert False, "the socket should be closed"
                except websockets.ConnectionClosed as ex:
                    assert ex.rcvd.code == 4401
            async with websockets.connect(e.ws_url()) as ws:
                await ws.send(json.dumps({"type": "hello", "session_id": "k", "api_key": "sekrit"}))
                assert (await recv_json(ws))["type"] == "hello_ok"
        run(go())
    finally:
        e.close()


def test_orchestrator_down_then_back():
    e = Edge()
    try:
        e.procs.kill(e.orch, signal.SIGKILL)
        wait_until(lambda: e.curl("GET", "/health")[0] == 503, timeout=10, what="health to say 503")
        st, doc, _ = e.curl("GET", "/health")
        assert doc["components"]["orchestrator"] == "down"
        st, doc, _ = e.curl("GET", "/v1/agents")
        assert st == 503 and doc["error"]["code"] == "unavailable"
        e.orch = e.start_orchestrator()
        wait_until(lambda: e.curl("GET", "/health")[0] == 200, timeout=15, what="health to recover")
        wait_until(lambda: "echo" in {a["agent_id"] for a in e.curl("GET", "/v1/agents")[1].get("agents", [])},
                   timeout=15, what="agents after the restart")
        st, text, hdrs = e.curl("POST", "/internal/invoke", invoke_body("back", "echo", "hi again"), raw=True)
        assert parse_sse(text)[-1][1] == "run_done"
        e.procs.kill(e.broker, signal.SIGKILL)
        wait_until(lambda: e.curl("GET", "/health")[0] == 503, timeout=10, what="503 without a broker")
        st, doc, _ = e.curl("GET", "/health")
        assert doc["components"]["broker"] == "down"
    finally:
        e.close()


def test_socket_keeps_its_session_across_an_orchestrator_restart():
    """WebSockets that stay connected while the orchestrator is killed and
    restarted get the rest of their runs without a gap (crash recovery ends
    them with run_failed), and the events of the runs they invoke
    afterwards. Three sessions: one watch comes back first (the probe), the
    others follow it."""
    e = Edge()
    try:
        async def start(ws, session):
            await ws.send(json.dumps({"type": "hello", "session_id": session}))
            await recv_json(ws)
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "r1", "agent_id": "slow",
                                      "input_message": {"role": "user", "content": " ".join(["w"] * 40)}}))
            acc = await recv_json(ws)
            assert acc["type"] == "invoke_accepted", acc
            seen = []
            while len(seen) < 3:
                m = await recv_json(ws)
                if m["type"] == "event":
                    seen.append(m["event"])
            return acc["run_id"], seen

        async def finish(ws, run_id, seen):
            rest = await until_terminal(ws, run_id)
            check_gapless(seen + rest)
            assert rest[-1]["type"] == "run_failed"
            # The same socket invokes again once the orchestrator answers.
            for attempt in range(50):
                await ws.send(json.dumps({"type": "agent_invoke", "request_id": "r2-%d" % attempt,
                                          "agent_id": "echo",
                                          "input_message": {"role": "user", "content": "after the restart"}}))
                m = await recv_json(ws)
                while m["type"] == "event":
                    m = await recv_json(ws)
                if m["type"] == "invoke_accepted":
                    break
                assert m["type"] == "error" and m["code"] == "unavailable", m
                await asyncio.sleep(0.2)
            assert m["type"] == "invoke_accepted", m
            events = await until_terminal(ws, m["run_id"])
            check_gapless(events)
            assert events[-1]["type"] == "run_done"

        async def go():
            socks = [await websockets.connect(e.ws_url()) for _ in range(3)]
            try:
                runs = [await start(ws, "crash%d" % i) for i, ws in enumerate(socks)]
                e.procs.kill(e.orch, signal.SIGKILL)
                e.orch = e.start_orchestrator()
                await asyncio.gather(*(finish(ws, rid, seen) for ws, (rid, seen) in zip(socks, runs)))
            finally:
                for ws in socks:
                    await ws.close()
        run(go())
        # The rest came by a fill from the store after the watch was lost.
        st, text, _ = e.curl("GET", "/metrics", raw=True)
        counters = dict(line.split() for line in text.splitlines() if line.startswith("map_ingress_"))
        assert int(counters["map_ingress_watches_lost_total"]) >= 3, text
        assert int(counters["map_ingress_gap_fills_total"]) >= 1, text
    finally:
        e.close()
