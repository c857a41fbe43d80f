"""Process tests of agent calls (issue 14, SPEC section 7) on the orchestrator
side: a real map-broker, map-orchestrator and map-echo on loopback. The
calling agents are Python workers of agent.<id> (mapclient peers); what
their agent code would do, send op `call` with the token of their invoke's
`platform`, the test does from a requester peer, as the worker library
and the edge do."""
import json
import signal
import sqlite3
import threading
import time

import msgpack
import pytest

from mapclient import CANCEL, ERROR, REPLY, REQUEST, STREAM, V, Peer, Stack, wait_until

TERMINAL = ("run_done", "run_failed", "run_cancelled")


class Agent(threading.Thread):
    """A worker of agent.<name> that keeps each invoke open until the test
    answers it (done) and records the cancels it gets."""

    def __init__(self, endpoint, name):
        super().__init__(daemon=True)
        self.peer = Peer(endpoint, "agent." + name, 16)
        self.seen = []  # (broker request id, invoke body)
        self.cancels = []
        self.lock = threading.Lock()
        self.out = []
        self.halt = False

    def run(self):
        while not self.halt:
            with self.lock:
                out, self.out = self.out, []
            for h, b in out:
                self.peer.send(h, b)
            try:
                h, body = self.peer.recv(timeout=0.05)
            except TimeoutError:
                continue
            if h[1] == REQUEST:
                self.seen.append((h[2], msgpack.unpackb(body)))
            elif h[1] == CANCEL:
                self.cancels.append(h[2])

    def invoke(self, i=0, timeout=10):
        wait_until(lambda: len(self.seen) > i, timeout=timeout, what="invoke %d" % i)
        return self.seen[i]

    def done(self, rid, content):
        with self.lock:
            self.out.append(([V, REPLY, rid], {"output": {"role": "assistant", "content": content}}))

    def delta(self, rid, text):
        with self.lock:
            self.out.append(([V, STREAM, rid], {"delta": text}))

    def stop(self):
        self.halt = True
        self.join(5)
        self.peer.close()


@pytest.fixture
def stack(request):
    stacks = []

    def make(**kw):
        s = Stack(**kw)
        stacks.append(s)
        return s
    yield make
    for s in stacks:
        for a in getattr(s, "agents", []):
            a.stop()
        s.close()


def agents(s, c, *names):
    s.agents = [Agent(s.endpoint, n) for n in names]
    for a in s.agents:
        a.start()
    for n in names:
        s.wait_agent(c, n)
    return s.agents


def invoke(c, session, agent, content):
    status, run = c.reply(c.call("invoke", session_id=session, agent_id=agent, role="user",
                                 content=content))
    assert status == 200, run
    return run


def call(c, inv, call_id, agent_id, content, token=None, **kw):
    p = inv["platform"]
    return c.call("call", run_id=inv["run_id"], token=token or p["token"], call_id=call_id,
                  agent_id=agent_id, role="user", content=content, **kw)


def log(c, run_id):
    status, doc = c.reply(c.call("events", run_id=run_id, limit=10000))
    assert status == 200, doc
    events = doc["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return events


def types(events):
    return [e["type"] for e in events]


def run_of(c, run_id):
    status, run = c.reply(c.call("run", run_id=run_id))
    assert status == 200, run
    return run


def accepted_id(c, rid, timeout=10):
    deadline = time.monotonic() + timeout
    while c.accepted(rid) is None:
        got = c.frames.get(rid, [])
        if got and got[-1][0] in (REPLY, ERROR):
            raise AssertionError("refused: %r" % (got,))
        c.pump(max(0.05, deadline - time.monotonic()))
    return c.accepted(rid)["run_id"]


def pump(c):
    try:
        c.pump(0.3)
    except TimeoutError:
        pass


def refusal(c, rid):
    status, doc = c.reply(rid)
    return status, doc["error"]["code"], doc["error"]["message"]


def test_parent_calls_echo(stack):
    s = stack(echo_workers=1, echo_delay_ms=0)
    c = s.client()
    s.wait_agent(c, "echo")
    (ca,) = agents(s, c, "ca")
    root = invoke(c, "sc1", "ca", "please delegate")
    rid, inv = ca.invoke()
    p = inv["platform"]
    assert p["depth"] == 0 and p["root_run_id"] == root["run_id"] and len(p["token"]) == 32
    assert "parent_run_id" not in p
    req = call(c, inv, "c1", "echo", "hello child", history=[{"role": "user", "content": "ctx"}])
    frames = c.wait_final(req)
    acc = c.accepted(req)
    child = acc["run_id"]
    assert acc["status"] == "running" and acc["parent_run_id"] == root["run_id"]
    events = c.events(req)
    t = types(events)
    assert t[:3] == ["run_started", "user_input", "agent_invoke_started"], t
    assert t[-2:] == ["agent_invoke_done", "run_done"] and set(t[3:-2]) == {"agent_stream_delta"}
    assert "".join(e["payload"]["delta"] for e in events[3:-2]) == "hello child"
    assert all(e["parent_run_id"] == root["run_id"] and e["depth"] == 1 for e in events)
    assert frames[-1][0] == REPLY and frames[-1][1]["run_status"] == "done"
    # The child's run object; the same from the store.
    run = run_of(c, child)
    assert (run["parent_run_id"], run["root_run_id"], run["depth"]) == (root["run_id"], root["run_id"], 1)
    assert run["session_id"] == "sc1" and run["status"] == "done"
    stored = log(c, child)
    assert stored == events
    # The parent's log: the call started and done, with the child's output.
    plog = log(c, root["run_id"])
    assert types(plog) == ["run_started", "user_input", "agent_invoke_started",
                           "agent_call_started", "agent_call_done"]
    assert plog[3]["payload"] == {"call_id": "c1", "child_run_id": child, "agent_id": "echo",
                                  "depth": 1}
    assert plog[4]["payload"] == {"call_id": "c1", "child_run_id": child,
                                  "output": {"role": "assistant", "content": "hello child"}}
    assert "parent_run_id" not in plog[0] and "depth" not in plog[0]
    # op calls lists it; the session's runs hold both; messages: the parent's only.
    status, calls = c.reply(c.call("calls", run_id=root["run_id"]))
    assert status == 200 and [r["run_id"] for r in calls["calls"]] == [child]
    ca.done(rid, "delegated: hello child")
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "done", what="parent done")
    status, msgs = c.reply(c.call("messages", session_id="sc1"))
    assert [(m["role"], m["run_id"]) for m in msgs["messages"]] == [
        ("user", root["run_id"]), ("assistant", root["run_id"])]
    status, health = c.reply(c.call("health"))
    assert health["calls_done"] == 1


def test_repeat_token_and_refusals(stack):
    s = stack(echo_workers=1, echo_delay_ms=0, orch_args=("--max-calls-per-run", "2"))
    c = s.client()
    s.wait_agent(c, "echo")
    ca, cb = agents(s, c, "ca", "cb")
    root = invoke(c, "sc2", "ca", "x")
    rid, inv = ca.invoke()
    first = call(c, inv, "c1", "echo", "one")
    c.wait_final(first)
    child = c.accepted(first)["run_id"]
    # The same call_id: the same child, every event from seq 1, nothing new.
    again = call(c, inv, "c1", "echo", "ignored")
    c.wait_final(again)
    assert c.accepted(again)["run_id"] == child
    assert c.events(again) == c.events(first) and c.events(again)[-1]["type"] == "run_done"
    status, calls = c.reply(c.call("calls", run_id=root["run_id"]))
    assert len(calls["calls"]) == 1
    # Wrong token, another run's token, an unknown run: one 403.
    bad = dict(inv, platform=dict(inv["platform"], token="0" * 32))
    assert refusal(c, call(c, bad, "c9", "echo", "x"))[:2] == (403, "forbidden")
    assert refusal(c, c.call("call", run_id="run_nope", token=inv["platform"]["token"],
                             call_id="c9", agent_id="echo", role="user", content="x"))[:2] == (403, "forbidden")
    # A→B→A: the child B calling A is refused, B goes on.
    breq = call(c, inv, "c2", "cb", "to b")
    b_run = accepted_id(c, breq)
    brid, binv = cb.invoke()
    assert binv["platform"]["parent_run_id"] == root["run_id"] and binv["platform"]["depth"] == 1
    status, code, msg = refusal(c, call(c, binv, "back", "ca", "loop"))
    assert (status, code, msg) == (409, "call_refused", 'agent "ca" is already in the call chain')
    assert run_of(c, b_run)["status"] == "running"
    # Calls per run (2): c1 and c2 used, a third is refused; the repeat is not a new call.
    status, code, msg = refusal(c, call(c, inv, "c3", "echo", "three"))
    assert (status, code, msg) == (409, "call_refused", "calls per run limit (2) reached")
    c.wait_final(call(c, inv, "c1", "echo", "still the first"))
    cb.done(brid, "b done")
    c.wait_final(breq)
    assert types(log(c, b_run))[-1] == "run_done" and "agent_call_started" not in types(log(c, b_run))
    assert run_of(c, root["run_id"])["status"] == "running"
    ca.done(rid, "root done")
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "done", what="root done")
    # An ended parent: its token opens nothing any more.
    assert refusal(c, call(c, inv, "c4", "echo", "late"))[:2] == (403, "forbidden")
    status, health = c.reply(c.call("health"))
    assert health["calls_refused"] == 2 and health["calls_done"] == 2


def test_depth_limit(stack):
    s = stack(echo_workers=1, orch_args=("--max-call-depth", "2", "--allow-reentry"))
    c = s.client()
    s.wait_agent(c, "echo")
    (ca,) = agents(s, c, "ca")
    root = invoke(c, "sc3", "ca", "deep")
    r0, inv0 = ca.invoke(0)
    q1 = call(c, inv0, "d", "ca", "level 1")  # reentry allowed
    run1 = accepted_id(c, q1)
    r1, inv1 = ca.invoke(1)
    q2 = call(c, inv1, "d", "ca", "level 2")
    run2 = accepted_id(c, q2)
    r2, inv2 = ca.invoke(2)
    assert inv2["platform"]["depth"] == 2 and inv2["platform"]["root_run_id"] == root["run_id"]
    status, code, msg = refusal(c, call(c, inv2, "d", "ca", "level 3"))
    assert (status, code, msg) == (409, "call_refused", "call depth limit (2) reached")
    # The shallower runs end as their agents say.
    ca.done(r2, "two")
    c.wait_final(q2)
    ca.done(r1, "one")
    c.wait_final(q1)
    ca.done(r0, "zero")
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "done", what="root done")
    assert [run_of(c, r)["status"] for r in (run1, run2)] == ["done", "done"]
    assert run_of(c, run2)["depth"] == 2 and run_of(c, run2)["parent_run_id"] == run1
    assert types(log(c, run2)) == ["run_started", "user_input", "agent_invoke_started",
                                   "agent_invoke_done", "run_done"]
    assert types(log(c, run1))[-4:] == ["agent_call_started", "agent_call_done", "agent_invoke_done",
                                       "run_done"]


def test_cancel_root_while_grandchild_streams(stack):
    s = stack(echo_workers=1, echo_delay_ms=20)
    c = s.client()
    s.wait_agent(c, "echo")
    ca, cb = agents(s, c, "ca", "cb")
    root = invoke(c, "sc4", "ca", "tree")
    r0, inv0 = ca.invoke()
    q1 = call(c, inv0, "k", "cb", "middle")
    child = accepted_id(c, q1)
    r1, inv1 = cb.invoke()
    text = " ".join("w%d" % i for i in range(400))
    q2 = call(c, inv1, "g", "echo", text)
    grand = accepted_id(c, q2)
    wait_until(lambda: pump(c) or
               sum(e["type"] == "agent_stream_delta" for e in c.events(q2)) >= 3,
               timeout=10, what="the grandchild streams")
    t0 = time.monotonic()
    status, doc = c.reply(c.call("cancel", run_id=root["run_id"]))
    assert status == 202
    c.wait_final(q2)
    c.wait_final(q1)
    assert time.monotonic() - t0 < 2.0
    for r in (root["run_id"], child, grand):
        assert run_of(c, r)["status"] == "cancelled"
        assert types(log(c, r))[-1] == "run_cancelled"
    assert types(log(c, child))[-2:] == ["agent_call_cancelled", "run_cancelled"]
    assert types(log(c, root["run_id"]))[-2:] == ["agent_call_cancelled", "run_cancelled"]
    # The grandchild's worker and the child's were told to stop.
    wait_until(lambda: r1 in cb.cancels, what="cb cancelled")
    assert run_of(c, grand)["root_run_id"] == root["run_id"]


def test_caller_death_cancels_its_call(stack):
    s = stack(echo_workers=1, echo_delay_ms=20)
    c = s.client()
    s.wait_agent(c, "echo")
    (ca,) = agents(s, c, "ca")
    root = invoke(c, "sc5", "ca", "x")
    r0, inv = ca.invoke()
    # The caller: its own peer, which dies without a word (no DISCONNECT).
    caller = Peer(s.endpoint, "caller", 0)
    p = inv["platform"]
    body = {"op": "call", "run_id": inv["run_id"], "token": p["token"], "call_id": "k",
            "agent_id": "echo", "role": "user", "content": " ".join("w%d" % i for i in range(300))}
    caller.request("orchestrator", body)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        h, b = caller.recv(timeout=5)
        if h[1] == STREAM:
            got.append(msgpack.unpackb(b))
    child = got[0]["run_id"]
    caller.close()  # silent: the broker finds it dead after its liveness
    wait_until(lambda: run_of(c, child)["status"] == "cancelled", timeout=10, what="child cancelled")
    plog = log(c, root["run_id"])
    assert types(plog)[-2:] == ["agent_call_started", "agent_call_cancelled"]
    # The parent goes on: its agent finishes it.
    assert run_of(c, root["run_id"])["status"] == "running"
    ca.done(r0, "fine without it")
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "done", what="root done")


def test_kill_orchestrator_mid_tree(stack):
    s = stack(echo_workers=1, echo_delay_ms=20)
    c = s.client()
    s.wait_agent(c, "echo")
    ca, cb = agents(s, c, "ca", "cb")
    root = invoke(c, "sc6", "ca", "tree")
    r0, inv0 = ca.invoke()
    q1 = call(c, inv0, "k", "cb", "middle")
    child = accepted_id(c, q1)
    r1, inv1 = cb.invoke()
    q2 = call(c, inv1, "g", "echo", " ".join("w%d" % i for i in range(400)))
    grand = accepted_id(c, q2)
    wait_until(lambda: pump(c) or len(c.events(q2)) >= 5, what="grandchild streams")
    s.procs.kill(s.orch, signal.SIGKILL)
    s.orch = s.start_orchestrator()
    c2 = s.client()
    s.wait_agent(c2, "echo")
    db = sqlite3.connect(s.db)
    assert db.execute("select count(*) from runs where status in ('queued','running')").fetchone()[0] == 0
    for r in (root["run_id"], child, grand):
        events = log(c2, r)
        assert events[-1]["type"] == "run_failed" and sum(e["type"] in TERMINAL for e in events) == 1
        assert events[-1]["payload"]["error"]["code"] == "internal"
    assert types(log(c2, child))[-2:] == ["agent_call_failed", "run_failed"]
    assert types(log(c2, root["run_id"]))[-2:] == ["agent_call_failed", "run_failed"]
    assert log(c2, grand)[0]["parent_run_id"] == child and log(c2, grand)[0]["depth"] == 2


def test_deadlines_follow_the_tree(stack):
    """A parent waiting on a streaming child is not silent; once the child is
    done and the parent is silent, it times out; a silent tree times out at
    its root, whose descendants are cancelled."""
    s = stack(echo_workers=1, echo_delay_ms=100, orch_args=("--agent-timeout-ms", "700"))
    c = s.client()
    s.wait_agent(c, "echo")
    ca, cb = agents(s, c, "ca", "cb")
    root = invoke(c, "sc7", "ca", "wait on a child")
    r0, inv = ca.invoke()
    q = call(c, inv, "slow", "echo", " ".join("w%d" % i for i in range(25)))  # ~2.5 s
    c.wait_final(q, timeout=20)
    # The child streamed ~2.5 s, past the parent's 0.7 s timeout, and ended
    # done: had the parent timed out meanwhile, its end would have
    # cancelled the child. (No check of the parent's status here: on a
    # loaded machine its own 0.7 s may already be over.)
    assert c.events(q)[-1]["type"] == "run_done"
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "failed", timeout=10,
               what="the silent parent times out")
    assert log(c, root["run_id"])[-1]["payload"]["error"]["code"] == "agent_timeout"

    root = invoke(c, "sc8", "ca", "a silent tree")
    r1, inv = ca.invoke(1)
    q = call(c, inv, "k", "cb", "say nothing")
    child = accepted_id(c, q)
    c.wait_final(q, timeout=10)
    assert run_of(c, child)["status"] == "cancelled"
    plog = log(c, root["run_id"])
    assert types(plog)[-3:] == ["agent_call_started", "agent_call_cancelled", "run_failed"]
    assert plog[-1]["payload"]["error"]["code"] == "agent_timeout"


def test_child_worker_killed(stack):
    """SIGKILL of a child's worker: the child fails worker_lost, the parent's
    log says agent_call_failed with it, and the parent goes on."""
    s = stack(echo_workers=0)
    victim = s.start_echo(50, "--agent", "slowecho")
    c = s.client()
    s.wait_agent(c, "slowecho")
    (ca,) = agents(s, c, "ca")
    root = invoke(c, "sc9", "ca", "x")
    r0, inv = ca.invoke()
    q = call(c, inv, "k", "slowecho", " ".join("w%d" % i for i in range(200)))
    child = accepted_id(c, q)
    wait_until(lambda: pump(c) or len(c.events(q)) >= 5, what="the child streams")
    s.procs.kill(victim)
    c.wait_final(q, timeout=15)
    assert c.events(q)[-1]["type"] == "run_failed"
    assert c.events(q)[-1]["payload"]["error"]["code"] == "worker_lost"
    plog = log(c, root["run_id"])
    assert plog[-1]["type"] == "agent_call_failed"
    assert plog[-1]["payload"]["child_run_id"] == child
    assert plog[-1]["payload"]["error"]["code"] == "worker_lost"
    assert run_of(c, root["run_id"])["status"] == "running"
    ca.done(r0, "went on")
    wait_until(lambda: run_of(c, root["run_id"])["status"] == "done", what="root done")


def test_stop_ends_the_tree(stack):
    """SIGTERM mid-tree: after the drain the root fails internal and every
    descendant ends cancelled first, each recorded in its parent's log."""
    s = stack(echo_workers=1, echo_delay_ms=20, orch_args=("--drain-ms", "300"))
    c = s.client()
    s.wait_agent(c, "echo")
    ca, cb = agents(s, c, "ca", "cb")
    root = invoke(c, "sc10", "ca", "tree")
    r0, inv0 = ca.invoke()
    child = accepted_id(c, call(c, inv0, "k", "cb", "middle"))
    r1, inv1 = cb.invoke()
    q2 = call(c, inv1, "g", "echo", " ".join("w%d" % i for i in range(400)))
    grand = accepted_id(c, q2)
    wait_until(lambda: pump(c) or len(c.events(q2)) >= 5, what="grandchild streams")
    s.orch.send_signal(signal.SIGTERM)
    assert s.orch.wait(timeout=20) == 0
    db = sqlite3.connect(s.db)
    status = dict(db.execute("select run_id, status from runs where session_id = 'sc10'"))
    assert status == {root["run_id"]: "failed", child: "cancelled", grand: "cancelled"}

    def stored(run_id):
        return [(t, json.loads(p)) for t, p in db.execute(
            "select type, payload from events where run_id = ? order by seq", (run_id,))]
    assert [t for t, _ in stored(grand)][-1] == "run_cancelled"
    assert [t for t, _ in stored(child)][-2:] == ["agent_call_cancelled", "run_cancelled"]
    rlog = stored(root["run_id"])
    assert [t for t, _ in rlog][-2:] == ["agent_call_cancelled", "run_failed"]
    assert rlog[-1][1]["error"]["code"] == "internal"
