"""The SDK's agent calls (call.call / call.call_text, mapagent/calls.py)
on the wire: serve() in a thread of this process facing the conformance
suite's fake broker, which here also plays the orchestrator: the op `call`
body, the child's events in order with a gap filled by op `events` (pages
until the gap is closed; live events meanwhile wait, repeats dropped), a follow that ends before the terminal event, a
refusal, a failed child, cancel of the handler (CANCEL of the call), and an
invoke without a platform."""
import json
import os
import sys

import msgpack
import pytest
import zmq

from mapclient import CANCEL, ERROR, READY, REPLY, REQUEST, SERVICES, STREAM, V, free_port
from test_conformance import FakeBroker
from test_mapagent_serve import Served

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "agents", "python"))
from mapagent import Agent, CallError  # noqa: E402

SERVICE = "agent.caller"
TOKEN = "0123456789abcdef0123456789abcdef"
PLATFORM = {"token": TOKEN, "depth": 0, "root_run_id": "run_p"}

# The child's log, seq 1..7.
SCRIPT = [("run_started", {"agent_id": "echo"}),
          ("user_input", {"message": {"role": "user", "content": "hello"}}),
          ("agent_invoke_started", {"agent_id": "echo"}),
          ("agent_stream_delta", {"delta": "hel"}),
          ("agent_stream_delta", {"delta": "lo"}),
          ("agent_invoke_done", {"output": {"role": "assistant", "content": "hello"}}),
          ("run_done", {})]
WHOLE = "".join("%d:%s;" % (i + 1, t) for i, (t, _) in enumerate(SCRIPT))


def make_agent():
    agent = Agent("caller", capacity=4)

    @agent.handler
    async def handle(call):
        c = call.input["content"]
        try:
            if c == "events":
                async for ev in call.call("echo", "hello", call_id="c1",
                                          history=[{"role": "user", "content": "old"}]):
                    assert ev["run_id"] == "run_c" and ev["parent_run_id"] == "run_p"
                    yield "%d:%s;" % (ev["seq"], ev["type"])
            elif c == "text":
                yield "got:" + await call.call_text("echo", "hello", call_id="c2")
            elif c == "hang":
                async for ev in call.call("echo", "hello", call_id="c3"):
                    yield ev["type"]
        except CallError as e:
            yield "err:%s:%d" % (e.code, e.status)
    return agent


@pytest.fixture
def fb():
    b = FakeBroker("tcp://127.0.0.1:%d" % free_port())
    b.served = Served(make_agent(), b.sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    b.expect(lambda h, _: h[1] == READY, what="READY")
    b.expect(lambda h, _: h[1] == SERVICES, what="the probe")
    yield b
    b.served.stop()
    b.close()


def invoke(b, rid, content, platform=PLATFORM):
    body = {"run_id": "run_p", "session_id": "s1", "agent_id": "caller",
            "input": {"role": "user", "content": content}, "history": []}
    if platform is not None:
        body["platform"] = platform
    b.send([V, REQUEST, rid, SERVICE], msgpack.packb(body))


def orch_request(b, op):
    h, body = b.expect(lambda h, _: h[1] == REQUEST and h[3] == "orchestrator", what="op " + op)
    doc = msgpack.unpackb(body)
    assert doc["op"] == op, doc
    return h[2], doc


def event(seq, child="run_c"):
    t, payload = SCRIPT[seq - 1]
    return {"event_id": 100 + seq, "run_id": child, "session_id": "s1", "seq": seq, "type": t,
            "payload": payload, "parent_run_id": "run_p", "depth": 1}


def send_accepted(b, rid):
    b.send([V, STREAM, rid], msgpack.packb({"accepted": json.dumps({"run_id": "run_c"}),
                                            "run_id": "run_c", "run_status": "running",
                                            "session_id": "s1"}))


def send_event(b, rid, seq):
    ev = event(seq)
    b.send([V, STREAM, rid], msgpack.packb({"run_id": "run_c", "session_id": "s1", "seq": seq,
                                            "type": ev["type"],
                                            "terminal": ev["type"] == "run_done",
                                            "event": json.dumps(ev)}))


def send_reply(b, rid, status, doc):
    body = {"status": status, "json": json.dumps(doc)}
    if status == 200:
        body.update({"run_id": "run_c", "run_status": "done", "session_id": "s1"})
    b.send([V, REPLY, rid], msgpack.packb(body))


def send_page(b, rid, first, last, has_more=False):
    send_reply(b, rid, 200, {"run_id": "run_c",
                             "events": [event(s) for s in range(first, last + 1)],
                             "has_more": has_more, "next_after_seq": last})


def text_of(b, rid):
    """The parent's deltas joined, once its REPLY came (from every frame
    seen: the waits for the orchestrator's requests passed some by)."""
    h, _ = b.expect(lambda h, _: h[1] in (REPLY, ERROR) and h[2] == rid, what="answer")
    assert h[1] == REPLY, h
    return "".join(msgpack.unpackb(body)["delta"] for h, body in b.seen
                   if h[1] == STREAM and h[2] == rid)


def test_events_in_order_with_a_gap_filled(fb):
    invoke(fb, 1, "events")
    crid, doc = orch_request(fb, "call")
    assert doc == {"op": "call", "run_id": "run_p", "token": TOKEN, "call_id": "c1",
                   "agent_id": "echo", "role": "user", "content": "hello",
                   "history": [{"role": "user", "content": "old"}]}
    send_accepted(fb, crid)
    for s in (1, 2, 5):
        send_event(fb, crid, s)
    frid, q = orch_request(fb, "events")
    assert q["run_id"] == "run_c" and q["after_seq"] == 2 and q["limit"] > 0
    send_event(fb, crid, 6)  # live while filling: waits, delivered after the page
    send_page(fb, frid, 3, 4)  # a page read before 5 was stored: read again
    frid, q = orch_request(fb, "events")
    assert q["after_seq"] == 4
    send_page(fb, frid, 5, 6)  # brings 6 as well: the live 6 is a repeat
    send_event(fb, crid, 6)  # a repeat
    send_event(fb, crid, 7)
    send_reply(fb, crid, 200, {"run_id": "run_c"})
    assert text_of(fb, 1) == WHOLE


def test_call_text_after_a_short_follow(fb):
    invoke(fb, 2, "text")
    crid, doc = orch_request(fb, "call")
    assert doc["call_id"] == "c2" and "history" not in doc
    send_accepted(fb, crid)
    send_event(fb, crid, 1)
    send_reply(fb, crid, 200, {"run_id": "run_c"})  # the follow ended after one page
    frid, q = orch_request(fb, "events")
    assert q["after_seq"] == 1
    send_page(fb, frid, 2, 4, has_more=True)
    frid, q = orch_request(fb, "events")
    assert q["after_seq"] == 4
    send_page(fb, frid, 5, 7)
    assert text_of(fb, 2) == "got:hello"


def test_refused_and_failed_calls_raise_with_the_code(fb):
    invoke(fb, 3, "text")
    crid, _ = orch_request(fb, "call")
    send_reply(fb, crid, 409, {"error": {"code": "call_refused",
                                         "message": 'agent "echo" is already in the call chain'}})
    assert text_of(fb, 3) == "err:call_refused:409"
    invoke(fb, 4, "text")
    crid, _ = orch_request(fb, "call")
    send_accepted(fb, crid)
    send_event(fb, crid, 1)
    ev = {"event_id": 200, "run_id": "run_c", "session_id": "s1", "seq": 2, "type": "run_failed",
          "payload": {"error": {"code": "worker_lost", "message": "gone"}},
          "parent_run_id": "run_p", "depth": 1}
    fb.send([V, STREAM, crid], msgpack.packb({"run_id": "run_c", "session_id": "s1", "seq": 2,
                                              "type": "run_failed", "terminal": True,
                                              "event": json.dumps(ev)}))
    send_reply(fb, crid, 200, {"run_id": "run_c"})
    assert text_of(fb, 4) == "err:worker_lost:0"
    # An invoke without a platform cannot call: nothing is sent.
    invoke(fb, 5, "text", platform=None)
    assert text_of(fb, 5) == "err:bad_request:0"
    assert not [h for h, _ in fb.seen if h[1] == REQUEST and h[3] == "orchestrator"
                and h[2] > crid]


def test_cancel_of_the_handler_cancels_its_call(fb):
    invoke(fb, 6, "hang")
    crid, _ = orch_request(fb, "call")
    send_accepted(fb, crid)
    send_event(fb, crid, 1)
    fb.expect(lambda h, b: h[1] == STREAM and h[2] == 6, what="the parent's first delta")
    fb.send([V, CANCEL, 6])
    fb.expect(lambda h, _: h[1] == CANCEL and h[2] == crid, what="CANCEL of the call")
    # Late frames of the cancelled call reach nobody; the agent still serves.
    send_event(fb, crid, 2)
    fb.send([V, ERROR, crid, "cancelled", "cancelled by requester"])
    invoke(fb, 7, "text")
    crid2, _ = orch_request(fb, "call")
    assert crid2 > crid
    send_reply(fb, crid2, 403, {"error": {"code": "forbidden", "message": "no"}})
    assert text_of(fb, 7) == "err:forbidden:403"


# ---- with the real broker, orchestrator and echo --------------------------------

from mapclient import Stack, wait_until  # noqa: E402

PY_CALLER = os.path.join(HERE, "..", "..", "agents", "python", "examples", "py_caller.py")


@pytest.fixture
def stack():
    s = Stack(echo_workers=1)
    yield s
    s.close()


def start_caller(stack, target):
    env = {"MAP_BROKER": stack.endpoint, "MAP_HEARTBEAT_MS": str(stack.heartbeat_ms),
           "MAP_PY_CALLER_TARGET": target}
    return stack.procs.start_argv(["/usr/bin/python3", PY_CALLER], env=env, name="py-caller")


def test_a_python_agent_calls_echo(stack):
    start_caller(stack, "echo")
    c = stack.client()
    stack.wait_agent(c, "py-caller")
    stack.wait_agent(c, "echo")
    rid = c.call("invoke", session_id="sp", agent_id="py-caller", role="user",
                 content="hello big world", follow=True)
    status, run = c.reply(rid)
    assert status == 200 and run["status"] == "done", run
    events = c.events(rid)
    types = [e["type"] for e in events]
    assert types.count("agent_call_started") == 1 and types.count("agent_call_done") == 1
    started = [e for e in events if e["type"] == "agent_call_started"][0]["payload"]
    assert started["call_id"] == "delegate" and started["agent_id"] == "echo"
    deltas = "".join(e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta")
    assert deltas == "hello big world"
    done = [e for e in events if e["type"] == "agent_invoke_done"][0]["payload"]["output"]
    assert done["content"] == "echo said: hello big world"
    status, doc = c.reply(c.call("calls", run_id=run["run_id"]))
    assert [k["run_id"] for k in doc["calls"]] == [started["child_run_id"]]
    assert doc["calls"][0]["status"] == "done" and doc["calls"][0]["depth"] == 1


def test_cancelling_a_python_caller_cancels_its_child(stack):
    stack.procs.start("map-echo", "--broker", stack.endpoint, "--agent", "slowecho",
                      "--delay-ms", "300", "--heartbeat-ms", stack.heartbeat_ms)
    start_caller(stack, "slowecho")
    c = stack.client()
    stack.wait_agent(c, "py-caller")
    stack.wait_agent(c, "slowecho")
    rid = c.call("invoke", session_id="sq", agent_id="py-caller", role="user",
                 content=" ".join("w%d" % i for i in range(30)), follow=True)

    def child_streams():
        try:
            c.pump(0.2)
        except TimeoutError:
            pass
        return any(e["type"] == "agent_stream_delta" for e in c.events(rid))
    wait_until(child_streams, timeout=15, step=0, what="the child's first delta")
    parent = c.accepted(rid)["run_id"]
    status, _ = c.reply(c.call("cancel", run_id=parent))
    assert status in (200, 202)
    status, run = c.reply(rid)
    assert run["status"] == "cancelled", run
    status, doc = c.reply(c.call("calls", run_id=parent))
    assert len(doc["calls"]) == 1 and doc["calls"][0]["status"] == "cancelled"
    status, evs = c.reply(c.call("events", run_id=parent))
    types = [e["type"] for e in evs["events"]]
    assert "agent_call_cancelled" in types and types[-1] == "run_cancelled"
