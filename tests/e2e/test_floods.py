"""One client never makes another session wait or fail (issue 12): a
socket that floods resumes, or floods invokes into its session's queue,
gets clear errors (too many requests in flight on the connection,
too_many_runs) while another session's runs complete and /health stays ok;
the edge's memory stays bounded by the per-connection limits."""
import asyncio
import json

import websockets

TERMINAL = {"run_done", "run_failed", "run_cancelled"}


async def hello(ws, session):
    await ws.send(json.dumps({"type": "hello", "session_id": session}))
    m = json.loads(await ws.recv())
    assert m["type"] == "hello_ok", m


async def one_run(ws, request_id, content="other session goes on"):
    await ws.send(json.dumps({"type": "agent_invoke", "request_id": request_id, "agent_id": "echo",
                              "input_message": {"role": "user", "content": content}}))
    run_id, events = None, []
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if m["type"] == "invoke_accepted" and m["request_id"] == request_id:
            run_id = m["run_id"]
        elif m["type"] == "event" and m["event"]["run_id"] == run_id:
            events.append(m["event"])
            if m["event"]["type"] in TERMINAL:
                return events
        elif m["type"] == "error":
            raise AssertionError(m)


def test_resume_flood_on_one_socket(edge):
    st, doc, hdrs = edge.curl("POST", "/internal/invoke", json.dumps({
        "session_id": "flooder", "agent_id": "echo",
        "input_message": {"role": "user", "content": "a run to resume"}}), raw=True)
    run_id = hdrs["x-run-id"]

    async def go():
        flood = await websockets.connect(edge.ws_url(), max_size=2 ** 24)
        await hello(flood, "flooder")
        other = await websockets.connect(edge.ws_url())
        await hello(other, "calm")
        n = 20000
        for i in range(n):  # as fast as the socket takes them
            await flood.send(json.dumps({"type": "resume", "run_id": run_id, "after_seq": 0}))
        # Meanwhile another session's runs complete, whole.
        for i in range(3):
            events = await one_run(other, "c%d" % i)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[-1]["type"] == "run_done"
        st, doc, _ = edge.curl("GET", "/health")
        assert st == 200 and doc["status"] == "ok", doc
        # The flooder hears clear errors past its limit, and the run (a
        # socket sees each event of a run once however often it resumes).
        errors, ends = 0, 0
        while True:
            try:
                m = json.loads(await asyncio.wait_for(flood.recv(), 5))
            except asyncio.TimeoutError:
                break  # quiet: every answer is in
            if m["type"] == "error":
                assert m["code"] == "unavailable", m
                assert "too many requests in flight" in m["message"], m
                errors += 1
            elif m["type"] == "event" and m["event"]["type"] in TERMINAL:
                ends += 1
        assert errors > 0 and ends >= 1
        await flood.close()
        await other.close()
    asyncio.run(asyncio.wait_for(go(), 240))
    st, text, _ = edge.curl("GET", "/metrics", raw=True)
    assert "map_ingress_orchestrator_pending 0" in text or "map_ingress_orchestrator_pending 1" in text


def test_queue_flood_from_one_socket(edge):
    async def go():
        flood = await websockets.connect(edge.ws_url())
        await hello(flood, "queuer")
        other = await websockets.connect(edge.ws_url())
        await hello(other, "steady")
        # The slow agent holds the session; 300 more invokes queue behind it.
        await flood.send(json.dumps({"type": "agent_invoke", "request_id": "hold", "agent_id": "slow",
                                     "input_message": {"role": "user",
                                                       "content": " ".join(["w"] * 60)}}))
        n = 300
        for i in range(n):
            await flood.send(json.dumps({"type": "agent_invoke", "request_id": "q%d" % i,
                                         "agent_id": "echo",
                                         "input_message": {"role": "user", "content": "queued"}}))
        accepted, refused = 0, 0
        while accepted + refused < n + 1:
            m = json.loads(await asyncio.wait_for(flood.recv(), 30))
            if m["type"] == "invoke_accepted":
                accepted += 1
            elif m["type"] == "error":
                assert m["code"] in ("too_many_runs", "unavailable"), m
                refused += 1
        assert refused > 0 and accepted > 1
        # Another session is not made to wait or fail.
        for i in range(3):
            events = await one_run(other, "s%d" % i)
            assert events[-1]["type"] == "run_done"
        await flood.close()
        await other.close()
    asyncio.run(asyncio.wait_for(go(), 240))
