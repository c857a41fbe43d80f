"""End-to-end through the whole stack (ingress → orchestrator → broker →
bridge → external agent and back): the original design's commands with the
FastAPI demo agent, and every failure of SPEC §5 with faulty agents, while
the stack keeps serving other runs."""
import asyncio
import json
import os
import time

import pytest
import websockets

from conftest import Edge, parse_sse
from mapclient import free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


@pytest.fixture(scope="module")
def ext():
    e = Edge(bridge=True, orch_args=("--agent-timeout-ms", "1500"))
    demo_port, fault_port = free_port(), free_port()
    e.procs.start_argv(["/usr/bin/python3", os.path.join(ROOT, "agents", "demo", "demo_agent.py")],
                       env={"MAP_DEMO_AGENT_ADDR": "127.0.0.1:%d" % demo_port,
                            "MAP_DEMO_DELAY_MS": "5"}, name="demo")
    e.procs.start_argv(["/usr/bin/python3", os.path.join(ROOT, "tests", "proc", "fault_agents.py"),
                        str(fault_port)], name="faults")
    e.demo = "http://localhost:%d" % demo_port
    e.faults = "http://127.0.0.1:%d" % fault_port
    import urllib.request

    def up(url):
        try:
            return urllib.request.urlopen(url + "/health", timeout=1).status == 200
        except OSError:
            return False
    wait_until(lambda: up(e.demo) and up(e.faults), timeout=20, what="the external agents")
    yield e
    e.close()


def sse_run(ext, session, agent, content):
    st, text, hdrs = ext.curl("POST", "/internal/invoke",
                              {"session_id": session, "agent_id": agent,
                               "input_message": {"role": "user", "content": content}}, raw=True)
    assert st == 200, (st, text)
    return parse_sse(text), hdrs


def test_the_original_designs_commands(ext):
    st, doc, _ = ext.curl("GET", "/health")
    assert st == 200
    st, agent, _ = ext.curl("POST", "/v1/agents/register",
                            {"agent_id": "demo", "name": "Demo Agent", "endpoint": ext.demo})
    assert st in (200, 201) and agent["kind"] == "http" and agent["endpoint"] == ext.demo
    # `workers` counts the bridge processes serving HTTP agents (the
    # orchestrator refreshes it from the broker every second).
    wait_until(lambda: ext.curl("POST", "/v1/agents/register",
                                {"agent_id": "demo", "name": "Demo Agent",
                                 "endpoint": ext.demo})[1]["workers"] == 1,
               timeout=5, what="the bridge to be counted")
    events, hdrs = sse_run(ext, "s1", "demo", "hello")
    assert [e[1] for e in events] == ["run_started", "user_input", "agent_invoke_started",
                                      "agent_stream_delta", "agent_invoke_done", "run_done"]
    assert events[-2][2]["payload"]["output"] == {"role": "assistant", "content": "hello"}
    events, _ = sse_run(ext, "s1", "demo", "hello big world")
    assert "".join(e[2]["payload"]["delta"] for e in events if e[1] == "agent_stream_delta") == \
        "hello big world"
    st, doc, _ = ext.curl("GET", "/v1/sessions/s1/messages")
    assert [m["content"] for m in doc["messages"]] == ["hello", "hello", "hello big world",
                                                       "hello big world"]


@pytest.mark.parametrize("name,code", [
    ("error", "agent_error"), ("http500", "agent_unavailable"), ("json", "agent_error"),
    ("cut", "agent_error"), ("garbage", "agent_error"), ("stall", "agent_timeout"),
])
def test_failures_end_the_run_as_spec_says(ext, name, code):
    agent = "f-" + name
    st, _, _ = ext.curl("POST", "/v1/agents/register",
                        {"agent_id": agent, "name": name, "endpoint": "%s/%s" % (ext.faults, name)})
    assert st in (200, 201)
    # Another run is served meanwhile.
    t0 = time.monotonic()
    events, _ = sse_run(ext, "fail-" + name, agent, "hi there")
    assert events[-1][1] == "run_failed", events
    assert events[-1][2]["payload"]["error"]["code"] == code
    assert [int(e[0]) for e in events] == list(range(1, len(events) + 1))
    other, _ = sse_run(ext, "other-" + name, "echo", "still serving")
    assert other[-1][1] == "run_done"
    assert time.monotonic() - t0 < 20


def test_unreachable_agent(ext):
    port = free_port()  # nothing listens there
    ext.curl("POST", "/v1/agents/register",
             {"agent_id": "gone", "name": "gone", "endpoint": "http://127.0.0.1:%d" % port})
    events, _ = sse_run(ext, "gone1", "gone", "anyone?")
    assert events[-1][2]["payload"]["error"]["code"] == "agent_unavailable"


def test_history_reaches_the_external_agent(ext):
    ext.curl("POST", "/v1/agents/register",
             {"agent_id": "f-history", "name": "h", "endpoint": ext.faults + "/history"})
    sse_run(ext, "hist1", "f-history", "first")
    events, _ = sse_run(ext, "hist1", "f-history", "second")
    done = [e for e in events if e[1] == "agent_invoke_done"][0][2]["payload"]["output"]["content"]
    history = json.loads(done)
    assert history[0] == {"role": "user", "content": "first"}
    assert history[1]["role"] == "assistant" and len(history) == 2


def test_cancel_aborts_the_slow_agent_by_websocket(ext):
    ext.curl("POST", "/v1/agents/register",
             {"agent_id": "f-slow", "name": "slow", "endpoint": ext.faults + "/slow"})

    async def go():
        async with websockets.connect(ext.ws_url()) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "slowx"}))
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "agent_invoke", "request_id": "1", "agent_id": "f-slow",
                                      "input_message": {"role": "user", "content": "go"}}))
            acc = json.loads(await ws.recv())
            deltas = 0
            while deltas < 3:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                deltas += m.get("event", {}).get("type") == "agent_stream_delta"
            await ws.send(json.dumps({"type": "cancel", "run_id": acc["run_id"]}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m.get("event", {}).get("type") in ("run_cancelled", "run_done", "run_failed"):
                    return m["event"]["type"]
    assert asyncio.run(go()) == "run_cancelled"
    import urllib.request
    wait_until(lambda: json.load(urllib.request.urlopen(ext.faults + "/state"))
               ["disconnects"].get("slow", 0) >= 1, timeout=10,
               what="the slow agent to see the bridge hang up")
