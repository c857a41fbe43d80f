"""Python agents (the mapagent SDK) in the whole stack: map-broker,
map-orchestrator and map-ingress as real processes on free ports, agents
written with the SDK (agents/python/examples/py_echo.py and
conform_agent.py), driven over HTTP (/internal/invoke, SSE) and WebSocket
as a user would. Every process is stopped by PID, even on failure."""
import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest
import websockets

from mapclient import Procs, free_port, wait_until

HB = 250
LIVENESS = 3
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
PY_ECHO = os.path.join(ROOT, "agents", "python", "examples", "py_echo.py")
CONFORM = os.path.join(HERE, "conform_agent.py")
TERMINAL = ("run_done", "run_failed", "run_cancelled")


class Stack:
    def __init__(self):
        self.procs = Procs()
        try:
            self.ep = "tcp://127.0.0.1:%d" % free_port()
            self.http = "127.0.0.1:%d" % free_port()
            p = self.procs
            p.start("map-broker", "--endpoint", self.ep, "--tap", "", "--heartbeat-ms", HB,
                    "--liveness", LIVENESS, "--log-level", "warn")
            p.start("map-orchestrator", "--broker", self.ep, "--db",
                    os.path.join(p.dir, "map.db"), "--heartbeat-ms", HB)
            p.start("map-ingress", "--broker", self.ep, "--http-addr", self.http,
                    "--heartbeat-ms", HB)
            self.client = httpx.Client(base_url="http://" + self.http, timeout=30)
            wait_until(lambda: self._get("/health") == 200, timeout=15, what="the stack")
        except BaseException:
            self.procs.stop_all(check=False)
            raise

    def _get(self, path):
        try:
            return self.client.get(path).status_code
        except httpx.HTTPError:
            return 0

    def agent(self, script, name, capacity=4, env=None):
        e = {"MAP_BROKER": self.ep, "MAP_HEARTBEAT_MS": str(HB), "MAP_LIVENESS": str(LIVENESS),
             "MAP_CONFORM_AGENT": name, "MAP_CONFORM_CAPACITY": str(capacity),
             "MAP_PY_ECHO_AGENT": name, "MAP_PY_ECHO_CAPACITY": str(capacity),
             "MAP_PY_ECHO_DELAY_MS": "1"}
        e.update(env or {})
        return self.procs.start_argv(["/usr/bin/python3", script], env=e, name=name)

    def wait_agent(self, name):
        def listed():
            r = self.client.get("/v1/agents")
            return r.status_code == 200 and name in [a["agent_id"] for a in r.json()["agents"]]
        wait_until(listed, timeout=15, step=0.05, what="agent %s" % name)

    def invoke(self, session, agent, content):
        """(run_id, events) of one run over POST /internal/invoke (SSE)."""
        r = self.client.post("/internal/invoke", json={
            "session_id": session, "agent_id": agent,
            "input_message": {"role": "user", "content": content}})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = []
        for block in r.text.split("\n\n"):
            for line in block.splitlines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        return r.headers["x-run-id"], events

    def ws_url(self):
        return "ws://%s/ws" % self.http

    def close(self):
        self.client.close()
        self.procs.stop_all()


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    yield s
    s.close()


def log_text(p):
    with open(p.log, "rb") as f:
        return f.read().decode(errors="replace")


def deltas(events):
    return [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def recv_json(ws, timeout=20):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ws_invoke(ws, session, agent, content, request_id="r1"):
    await ws.send(json.dumps({"type": "hello", "session_id": session}))
    assert (await recv_json(ws))["type"] == "hello_ok"
    await ws.send(json.dumps({"type": "agent_invoke", "request_id": request_id, "agent_id": agent,
                              "input_message": {"role": "user", "content": content}}))
    acc = await recv_json(ws)
    assert acc["type"] == "invoke_accepted", acc
    return acc["run_id"]


async def next_event(ws, run_id):
    while True:
        m = await recv_json(ws)
        if m["type"] == "event" and m["event"]["run_id"] == run_id:
            return m["event"]


async def until_terminal(ws, run_id):
    events = []
    while not events or events[-1]["type"] not in TERMINAL:
        events.append(await next_event(ws, run_id))
    return events


def test_http_run_and_call_fields(stack):
    a = stack.agent(PY_ECHO, "py-echo")
    b = stack.agent(CONFORM, "py-who")
    try:
        stack.wait_agent("py-echo")
        run_id, events = stack.invoke("h1", "py-echo", "hello big world")
        assert [e["type"] for e in events] == ["run_started", "user_input", "agent_invoke_started",
                                               "agent_stream_delta", "agent_stream_delta",
                                               "agent_stream_delta", "agent_invoke_done",
                                               "run_done"]
        assert deltas(events) == ["hello ", "big ", "world"]
        assert events[-2]["payload"] == {"output": {"role": "assistant",
                                                    "content": "hello big world"}}
        assert all(e["run_id"] == run_id for e in events)
        # call.run_id, session_id, agent_id, input and history as the handler sees them
        stack.wait_agent("py-who")
        stack.invoke("h2", "py-who", "first")
        run_id, events = stack.invoke("h2", "py-who", "whoami")
        who = json.loads("".join(deltas(events)))
        assert who == {"run_id": run_id, "session_id": "h2", "agent_id": "py-who",
                       "input": {"role": "user", "content": "whoami"},
                       "history": [{"role": "user", "content": "first"},
                                   {"role": "assistant", "content": "first"}]}
        # an exception in the handler fails the run agent_error with its message
        _, events = stack.invoke("h3", "py-who", "fail")
        assert events[-1]["type"] == "run_failed"
        assert events[-1]["payload"]["error"] == {"code": "agent_error", "message": "boom"}
        # a delta over the frame limit (1 MiB): agent_error "answer too large",
        # the agent stays connected and serves the next run
        _, events = stack.invoke("h4", "py-who", "big 1100000")
        assert events[-1]["type"] == "run_failed" and deltas(events) == []
        assert events[-1]["payload"]["error"] == {"code": "agent_error",
                                                  "message": "answer too large"}
        assert stack.invoke("h5", "py-who", "stream 2")[1][-1]["type"] == "run_done"
        assert "worker.link_lost" not in log_text(b)
    finally:
        stack.procs.kill(a, signal.SIGTERM)
        stack.procs.kill(b, signal.SIGTERM)


def test_websocket_run_and_cancel(stack):
    a = stack.agent(PY_ECHO, "py-ws")
    c = stack.agent(CONFORM, "py-cancel")
    try:
        stack.wait_agent("py-ws")
        stack.wait_agent("py-cancel")

        async def go():
            async with websockets.connect(stack.ws_url()) as ws:
                text = " ".join("w%d" % i for i in range(50))
                run_id = await ws_invoke(ws, "ws1", "py-ws", text)
                events = await until_terminal(ws, run_id)
                assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
                assert "".join(deltas(events)) == text and len(deltas(events)) == 50
                assert events[-1]["type"] == "run_done"
            async with websockets.connect(stack.ws_url()) as ws:
                run_id = await ws_invoke(ws, "ws2", "py-cancel", "hang")
                while (await next_event(ws, run_id))["type"] != "agent_invoke_started":
                    pass
                wait_until(lambda: "conform.request run=%s" % run_id in log_text(c),
                           what="the handler to start")
                await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
                events = await until_terminal(ws, run_id)
                assert events[-1]["type"] == "run_cancelled"
            return run_id
        run_id = run(go())
        wait_until(lambda: "conform.cancelled run=%s" % run_id in log_text(c),
                   what="the handler to see CancelledError")
        # the agent goes on serving
        assert stack.invoke("ws3", "py-cancel", "stream 2")[1][-1]["type"] == "run_done"
    finally:
        stack.procs.kill(a, signal.SIGTERM)
        stack.procs.kill(c, signal.SIGTERM)


def test_kill9_mid_stream_is_worker_lost(stack):
    a = stack.agent(CONFORM, "py-kill")
    try:
        stack.wait_agent("py-kill")

        async def go():
            async with websockets.connect(stack.ws_url()) as ws:
                run_id = await ws_invoke(ws, "k1", "py-kill", "hold 60000")
                while (await next_event(ws, run_id))["type"] != "agent_stream_delta":
                    pass
                stack.procs.kill(a)  # SIGKILL mid-stream
                return await until_terminal(ws, run_id)
        events = run(go())
        assert events[-1]["type"] == "run_failed"
        assert events[-1]["payload"]["error"]["code"] == "worker_lost"
    finally:
        stack.procs.kill(a)


def test_blocked_loop_is_worker_lost_not_a_hang(stack):
    """A handler that blocks the asyncio loop for 10 s: the watchdog stops
    the heartbeats, the broker reports worker_lost while the loop is still
    blocked; once it runs again the agent re-announces and serves."""
    a = stack.agent(CONFORM, "py-block")
    try:
        stack.wait_agent("py-block")
        run_id, events = stack.invoke("b1", "py-block", "block 10")
        assert events[-1]["type"] == "run_failed"
        assert events[-1]["payload"]["error"]["code"] == "worker_lost"
        assert "conform.unblocked" not in log_text(a), "lost while the loop was blocked"
        wait_until(lambda: "conform.unblocked" in log_text(a), timeout=20, what="the loop back")

        def serves():
            _, ev = stack.invoke("b2", "py-block", "stream 2")
            return ev[-1]["type"] == "run_done"
        wait_until(serves, timeout=20, step=0.2, what="the agent to serve again")
        assert "worker.loop_stalled" in log_text(a)
    finally:
        stack.procs.kill(a)


def test_heartbeats_go_on_while_handlers_compute(stack):
    """Two handlers computing for 3 s each (4 liveness windows) in threads,
    holding the GIL most of the time: the I/O thread still heartbeats, the
    runs end run_done."""
    a = stack.agent(CONFORM, "py-spin")
    try:
        stack.wait_agent("py-spin")
        results = _parallel_runs(stack, "py-spin", ["spin 3000"] * 2)
        assert [r[-1]["type"] for r in results] == ["run_done"] * 2, results
        assert [deltas(r) for r in results] == [["spun"]] * 2
        assert "worker.link_lost" not in log_text(a) and "loop_stalled" not in log_text(a)
    finally:
        stack.procs.kill(a, signal.SIGTERM)


def _parallel_runs(stack, agent, contents):
    """Runs each content in its own session, all at once; returns events per run."""
    results = [None] * len(contents)

    def one(i):
        results[i] = stack.invoke("par-%s-%d" % (agent, i), agent, contents[i])[1]
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results), "a run did not end"
    return results


def test_capacity_respected(stack):
    a = stack.agent(CONFORM, "py-cap", capacity=2)
    try:
        stack.wait_agent("py-cap")
        results = _parallel_runs(stack, "py-cap", ["hold 400"] * 6)
        assert [r[-1]["type"] for r in results] == ["run_done"] * 6
        actives = [int(l.rsplit("active=", 1)[1]) for l in log_text(a).splitlines()
                   if "conform.request" in l]
        assert len(actives) == 6 and max(actives) == 2, actives
    finally:
        stack.procs.kill(a, signal.SIGTERM)


def test_several_workers_share_the_load(stack):
    workers = [stack.agent(CONFORM, "py-pool", capacity=1) for _ in range(3)]
    try:
        def all_announced():
            return all("worker.link_up" in log_text(w) for w in workers)
        wait_until(all_announced, timeout=15, what="three workers")
        stack.wait_agent("py-pool")
        results = _parallel_runs(stack, "py-pool", ["hold 300"] * 6)
        assert [r[-1]["type"] for r in results] == ["run_done"] * 6
        served = [log_text(w).count("conform.request") for w in workers]
        assert sum(served) == 6 and min(served) >= 1, served
    finally:
        for w in workers:
            stack.procs.kill(w, signal.SIGTERM)


def test_sigterm_drains(stack):
    """SIGTERM: the run in progress finishes, then the agent leaves."""
    a = stack.agent(CONFORM, "py-drain")
    try:
        stack.wait_agent("py-drain")

        async def go():
            async with websockets.connect(stack.ws_url()) as ws:
                run_id = await ws_invoke(ws, "d1", "py-drain", "hold 1000")
                while (await next_event(ws, run_id))["type"] != "agent_stream_delta":
                    pass
                a.send_signal(signal.SIGTERM)
                return await until_terminal(ws, run_id)
        events = run(go())
        assert events[-1]["type"] == "run_done"
        assert events[-2]["payload"]["output"]["content"] == "done"
        a.wait(timeout=15)
        assert a.returncode == 0
        assert "agent.stop served=1" in log_text(a)
    finally:
        stack.procs.kill(a)


def test_sigterm_stops_even_a_handler_that_swallows_cancels(stack):
    a = stack.agent(CONFORM, "py-stubborn", env={"MAP_DRAIN_MS": "300"})
    try:
        stack.wait_agent("py-stubborn")

        async def go():
            async with websockets.connect(stack.ws_url()) as ws:
                run_id = await ws_invoke(ws, "st1", "py-stubborn", "stubborn")
                while (await next_event(ws, run_id))["type"] != "agent_stream_delta":
                    pass
                a.send_signal(signal.SIGTERM)
                return await until_terminal(ws, run_id)
        events = run(go())
        assert events[-1]["type"] == "run_failed"
        assert events[-1]["payload"]["error"]["code"] == "agent_unavailable"  # worker_stopping
        a.wait(timeout=15)
        assert a.returncode == 0 and "conform.swallowed" in log_text(a)
    finally:
        stack.procs.kill(a)


def test_the_readme_agent_runs_as_printed(stack):
    """The agent of README "Writing an agent in Python", copied as it is."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Writing an agent in Python"):]
    code = section[section.index("```python\n") + 10:section.index("\n```\n")]
    assert 'Agent("py-echo", capacity=8)' in code
    # Its own name: py-echo was served by an earlier test's agent, now gone.
    code = code.replace('Agent("py-echo"', 'Agent("py-readme"')
    path = os.path.join(stack.procs.dir, "readme_agent.py")
    with open(path, "w") as f:
        f.write(code)
    env = {"MAP_BROKER": stack.ep, "MAP_HEARTBEAT_MS": str(HB),
           "PYTHONPATH": os.path.join(ROOT, "agents", "python")}
    a = stack.procs.start_argv(["/usr/bin/python3", path], env=env, name="readme-agent")
    try:
        stack.wait_agent("py-readme")
        _, events = stack.invoke("readme", "py-readme", "hello world")
        assert deltas(events) == ["hello ", "world "]
        assert events[-2]["payload"]["output"]["content"] == "hello world "
        assert events[-1]["type"] == "run_done"
    finally:
        stack.procs.kill(a, signal.SIGTERM)
