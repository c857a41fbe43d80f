"""Process-level tests of the orchestrator (issue 4): real map-broker,
map-orchestrator and map-echo processes on loopback, driven over the
broker with the documented protocol (mapclient.py)."""
import json
import signal
import sqlite3
import threading
import time

import msgpack
import pytest

from mapclient import (CANCEL, ERROR, REPLY, REQUEST, STREAM, V, Orch, Peer, Stack,
                       wait_until)

TERMINAL = ("run_done", "run_failed", "run_cancelled")


@pytest.fixture
def stack(request):
    s = Stack(echo_workers=2)
    yield s
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(s.procs.logs())
    s.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def invoke(c, session, agent, content, **kw):
    return c.call("invoke", session_id=session, agent_id=agent, role="user", content=content, **kw)


def check_run_events(events, run_id):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e["run_id"] == run_id for e in events)
    assert sum(e["type"] in TERMINAL for e in events) == 1
    assert events[-1]["type"] in TERMINAL
    for e in events:
        assert e["created_at"].endswith("Z") and len(e["created_at"]) == 24


class FakeAgent(threading.Thread):
    """A worker of service agent.<name> whose behaviour the test chooses."""

    def __init__(self, endpoint, name, behave):
        super().__init__(daemon=True)
        self.peer = Peer(endpoint, "agent." + name, 4)
        self.behave = behave
        self.seen = []
        self.cancels = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                h, body = self.peer.recv(timeout=0.2)
            except TimeoutError:
                continue
            if h[1] == REQUEST:
                inv = msgpack.unpackb(body)
                self.seen.append(inv)
                self.behave(self, h[2], inv)
            elif h[1] == CANCEL:
                self.cancels.append(h[2])

    def stream(self, rid, delta):
        self.peer.send([V, STREAM, rid], {"delta": delta})

    def done(self, rid, content):
        self.peer.send([V, REPLY, rid], {"output": {"role": "assistant", "content": content}})


def test_invoke_streams_persisted_events_in_order(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    rid = invoke(c, "s1", "echo", "hello big  world", follow=True)
    status, run = c.reply(rid)
    assert status == 200 and run["status"] == "done" and run["ended_at"]
    acc = c.accepted(rid)
    assert acc["run_id"] == run["run_id"] and acc["session_id"] == "s1"
    events = c.events(rid)
    check_run_events(events, run["run_id"])
    types = [e["type"] for e in events]
    assert types[:3] == ["run_started", "user_input", "agent_invoke_started"]
    assert types[-2:] == ["agent_invoke_done", "run_done"]
    assert events[0]["payload"] == {"agent_id": "echo"}
    assert events[1]["payload"] == {"message": {"role": "user", "content": "hello big  world"}}
    deltas = [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"]
    assert deltas == ["hello", " big", "  world"]
    assert events[-2]["payload"] == {"output": {"role": "assistant", "content": "hello big  world"}}
    # The same events, replayed from the store, are identical.
    status, doc = c.reply(c.call("events", run_id=run["run_id"]))
    assert status == 200 and doc["events"] == events
    status, doc = c.reply(c.call("events", run_id=run["run_id"], after_seq=2, limit=3))
    assert doc["events"] == events[2:5]
    f = c.call("follow", run_id=run["run_id"], after_seq=4)
    c.reply(f)
    assert c.events(f) == events[4:]
    # Messages: the input and the output, oldest first.
    status, doc = c.reply(c.call("messages", session_id="s1"))
    assert [(m["role"], m["content"]) for m in doc["messages"]] == [
        ("user", "hello big  world"), ("assistant", "hello big  world")]
    assert all(m["run_id"] == run["run_id"] for m in doc["messages"])
    status, got = c.reply(c.call("run", run_id=run["run_id"]))
    assert got == run


def test_history_reaches_the_agent(stack):
    def behave(agent, rid, inv):
        agent.done(rid, json.dumps(inv["history"]))
    agent = FakeAgent(stack.endpoint, "hist", behave)
    agent.start()
    c = stack.client()
    stack.wait_agent(c, "hist")
    status, first = c.reply(invoke(c, "h1", "hist", "first question", follow=True))
    assert first["status"] == "done"
    status, second = c.reply(invoke(c, "h1", "hist", "second question", follow=True))
    assert agent.seen[0]["history"] == []
    assert agent.seen[1]["history"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "[]"}]
    assert agent.seen[1]["input"] == {"role": "user", "content": "second question"}
    assert agent.seen[1]["session_id"] == "h1" and agent.seen[1]["run_id"] == second["run_id"]
    agent.stop = True


def test_a_session_ending_all_at_once_is_freed_once():
    """The running run, the queued ones and the session's watch all end in
    one loop turn (one burst of cancels): the session is freed once, after
    its runs (it was freed with the watch and then used again)."""
    s = Stack(echo_workers=1, echo_delay_ms=30)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        for round_ in range(5):
            session = "burst%d" % round_
            w = c.call("watch", session_id=session)
            runs = [c.reply(invoke(c, session, "echo", "one two three four five six"))[1]["run_id"]
                    for _ in range(3)]
            cancels = [c.call("cancel", run_id=r) for r in runs]
            c.peer.cancel(w)
            for rid in cancels:
                status, run = c.reply(rid)
                assert status in (200, 202) and run["status"] == "cancelled", (status, run)
        # The orchestrator still serves (and, stopped, reports no sanitizer error).
        status, run = c.reply(invoke(c, "after", "echo", "still here"))
        assert status == 200
    finally:
        s.close()


def test_runs_of_a_session_run_one_at_a_time_in_order():
    s = Stack(echo_workers=1, echo_delay_ms=30)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        w = c.call("watch", session_id="q1")
        sent = [invoke(c, "q1", "echo", "one two three %d" % i) for i in range(4)]
        runs = []
        for rid in sent:
            status, run = c.reply(rid)
            assert status == 200
            runs.append(run)
        assert runs[0]["status"] == "running"
        assert all(r["status"] == "queued" for r in runs[1:])
        def all_ended():
            ev = c.events(w)
            return sum(e["type"] in TERMINAL for e in ev) == 4 or c.pump(5) and False
        wait_until(all_ended, timeout=20, what="four runs to end")
        ev = c.events(w)
        order = [(e["run_id"], e["type"]) for e in ev if e["type"] in ("run_started",) + TERMINAL]
        expected = []
        for r in runs:
            expected += [(r["run_id"], "run_started"), (r["run_id"], "run_done")]
        assert order == expected
        for r in runs:
            check_run_events([e for e in ev if e["run_id"] == r["run_id"]], r["run_id"])
        # Each run saw the history of the one before: messages grow in order.
        status, doc = c.reply(c.call("messages", session_id="q1"))
        assert [m["content"] for m in doc["messages"] if m["role"] == "user"] == [
            "one two three %d" % i for i in range(4)]
    finally:
        s.close()


def test_busy_reject_names_the_running_run():
    s = Stack(echo_workers=1, echo_delay_ms=100)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        status, first = c.reply(invoke(c, "b2", "echo", "a b c d e f g h"))
        status, doc = c.reply(invoke(c, "b2", "echo", "hi", if_busy="reject"))
        assert status == 409 and doc["error"]["code"] == "busy"
        assert doc["error"]["run_id"] == first["run_id"]
        assert first["run_id"] in doc["error"]["message"]
        # Nothing was created for the refused invoke.
        db = sqlite3.connect(s.db)
        assert db.execute("select count(*) from runs where session_id='b2'").fetchone()[0] == 1
    finally:
        s.close()


def test_retries_that_meet_the_run_ending_are_answered(stack):
    """Retries of an invoke (same request_id, follow) sent while its run
    ends: those read in the loop turn where the run ends must be answered
    too (they were once left waiting on a run that had just ended)."""
    c = stack.client()
    stack.wait_agent(c, "echo")
    for round_ in range(5):
        first = invoke(c, "rr%d" % round_, "echo", "a b c", request_id="x", follow=True)
        retries = [invoke(c, "rr%d" % round_, "echo", "a b c", request_id="x", follow=True)
                   for _ in range(40)]
        status, run = c.reply(first, timeout=10)
        for f in retries:
            status, again = c.reply(f, timeout=10)
            assert status == 200 and again["run_id"] == run["run_id"] and again["status"] == "done"
            check_run_events(c.events(f), run["run_id"])


def test_repeated_request_id_returns_the_same_run(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    status, a = c.reply(invoke(c, "r1", "echo", "once", request_id="c1"))
    status, b = c.reply(invoke(c, "r1", "echo", "once", request_id="c1"))
    assert a["run_id"] == b["run_id"]
    f = invoke(c, "r1", "echo", "once", request_id="c1", follow=True)
    status, run = c.reply(f)
    assert run["run_id"] == a["run_id"] and run["status"] == "done"
    check_run_events(c.events(f), a["run_id"])
    # Another session may use the same request id for its own run.
    status, other = c.reply(invoke(c, "r2", "echo", "once", request_id="c1"))
    assert other["run_id"] != a["run_id"]
    db = sqlite3.connect(stack.db)
    assert db.execute("select count(*) from runs where session_id='r1'").fetchone()[0] == 1


def test_unknown_agent_fails_the_run(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    rid = invoke(c, "u1", "nobody", "hi", follow=True)
    status, run = c.reply(rid)
    assert run["status"] == "failed"
    events = c.events(rid)
    check_run_events(events, run["run_id"])
    assert [e["type"] for e in events] == ["run_started", "user_input", "run_failed"]
    assert events[-1]["payload"]["error"]["code"] == "unknown_agent"


def test_agent_timeout():
    s = Stack(echo_workers=0, orch_args=("--agent-timeout-ms", "400"))
    try:
        agent = FakeAgent(s.endpoint, "mute", lambda a, rid, inv: None)
        agent.start()
        c = s.client()
        s.wait_agent(c, "mute")
        rid = invoke(c, "t1", "mute", "hello?", follow=True)
        status, run = c.reply(rid)
        assert run["status"] == "failed"
        events = c.events(rid)
        assert events[-1]["payload"]["error"]["code"] == "agent_timeout"
        check_run_events(events, run["run_id"])
        wait_until(lambda: agent.cancels, timeout=5, what="the agent to be told to stop")
        agent.stop = True
    finally:
        s.close()


def test_worker_lost():
    s = Stack(echo_workers=0)
    try:
        victim = s.start_echo(500)
        c = s.client()
        s.wait_agent(c, "echo")
        rid = invoke(c, "w1", "echo", "a b c d e f g h i j", follow=True)
        wait_until(lambda: any(e["type"] == "agent_stream_delta" for e in c.events(rid))
                   or c.pump(5) and False, timeout=10, what="a delta")
        s.procs.kill(victim)
        status, run = c.reply(rid, timeout=10)
        events = c.events(rid)
        assert run["status"] == "failed"
        assert events[-1]["payload"]["error"]["code"] == "worker_lost"
        check_run_events(events, run["run_id"])
    finally:
        s.close()


def test_cancel_running_and_queued():
    s = Stack(echo_workers=0)
    try:
        seen = []
        agent = FakeAgent(s.endpoint, "slow", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "slow")
        running = invoke(c, "c1", "slow", "go", follow=True)
        queued = invoke(c, "c1", "slow", "later", follow=True)
        wait_until(lambda: c.accepted(queued) or c.pump(5) and False, what="second accepted")
        q_id = c.accepted(queued)["run_id"]
        r_id = c.accepted(running)["run_id"]
        status, doc = c.reply(c.call("cancel", run_id=q_id))
        assert status == 202 and doc["status"] == "cancelled"
        status, run = c.reply(queued)
        assert run["status"] == "cancelled"
        assert [e["type"] for e in c.events(queued)] == ["run_cancelled"]
        status, doc = c.reply(c.call("cancel", run_id=r_id))
        assert status == 202
        status, run = c.reply(running)
        assert run["status"] == "cancelled"
        events = c.events(running)
        check_run_events(events, r_id)
        assert events[-1]["type"] == "run_cancelled" and events[-1]["payload"] == {}
        wait_until(lambda: agent.cancels, timeout=5, what="the agent to be told to stop")
        # Cancelling again: the run has ended.
        status, doc = c.reply(c.call("cancel", run_id=r_id))
        assert status == 409 and doc["error"]["code"] == "conflict"
        status, doc = c.reply(c.call("cancel", run_id="run_nope"))
        assert status == 404 and doc["error"]["code"] == "unknown_run"
        agent.stop = True
    finally:
        s.close()


def test_bad_requests_are_answered_and_change_nothing(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    # Not a map, unknown key, wrong type: ERROR bad_request from the orchestrator.
    for body in (b"\x01", msgpack.packb({"op": "run", "nope": 1}), msgpack.packb({"op": 5})):
        rid = c.peer.request("orchestrator", body)
        got = c.wait_final(rid)
        assert got[-1][0] == ERROR and got[-1][1]["code"] == "bad_request"
    status, doc = c.reply(c.call("frobnicate"))
    assert status == 400 and doc["error"]["code"] == "bad_request"
    status, doc = c.reply(c.call("invoke", session_id="x1", role="user", content="hi"))
    assert status == 400 and "agent_id" in doc["error"]["message"]
    status, doc = c.reply(invoke(c, "bad/session", "echo", "hi"))
    assert status == 400
    status, doc = c.reply(invoke(c, "x1", "echo", "hi", if_busy="maybe"))
    assert status == 400
    status, doc = c.reply(c.call("run", run_id="run_unknown"))
    assert status == 404 and doc["error"]["code"] == "unknown_run"
    status, doc = c.reply(c.call("events", run_id="run_unknown"))
    assert status == 404
    status, doc = c.reply(c.call("follow", run_id="run_unknown"))
    assert status == 404
    status, doc = c.reply(c.call("messages", session_id="never-seen"))
    assert status == 200 and doc["messages"] == []
    db = sqlite3.connect(stack.db)
    assert db.execute("select count(*) from runs").fetchone()[0] == 0


def test_agent_registry(stack):
    c = stack.client()
    stack.wait_agent(c, "echo", workers=2)
    status, a = c.reply(c.call("register", agent_id="ext", name="Ext", endpoint="http://127.0.0.1:9/"))
    assert status == 201 and a["kind"] == "http" and a["endpoint"] == "http://127.0.0.1:9"
    status, b = c.reply(c.call("register", agent_id="ext", name="Ext 2", endpoint="http://127.0.0.1:10"))
    assert status == 200 and b["name"] == "Ext 2" and b["created_at"] == a["created_at"]
    status, doc = c.reply(c.call("register", agent_id="echo", name="x", endpoint="http://127.0.0.1:9"))
    assert status == 409 and doc["error"]["code"] == "conflict"
    for bad in ("ftp://x", "http://", "not a url", "http:///path"):
        status, doc = c.reply(c.call("register", agent_id="bad", name="b", endpoint=bad))
        assert status == 400, bad
    status, doc = c.reply(c.call("agents"))
    by_id = {x["agent_id"]: x for x in doc["agents"]}
    assert by_id["echo"]["kind"] == "native" and by_id["echo"]["workers"] == 2
    assert by_id["ext"]["kind"] == "http" and by_id["ext"]["name"] == "Ext 2"
    assert "bad" not in by_id


def test_crash_recovery_loses_no_shown_event():
    s = Stack(echo_workers=2, echo_delay_ms=20)
    try:
        c = s.client()
        s.wait_agent(c, "echo", workers=2)
        text = " ".join("w%d" % i for i in range(60))
        reqs = [invoke(c, "crash%d" % i, "echo", text, follow=True) for i in range(50)]
        # Let them stream for a while, then kill -9 the orchestrator.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                c.pump(0.2)
            except TimeoutError:
                pass
        s.procs.kill(s.orch, signal.SIGKILL)
        # Drain what was already on its way.
        while True:
            try:
                c.pump(0.5)
            except TimeoutError:
                break
        shown = {}
        for r in reqs:
            for e in c.events(r):
                shown.setdefault(e["run_id"], []).append(e)
        assert sum(len(v) for v in shown.values()) > 100, "the runs did not stream"
        s.orch = s.start_orchestrator()
        c2 = s.client()
        s.wait_agent(c2, "echo", workers=2)
        for run_id, events in shown.items():
            status, doc = c2.reply(c2.call("events", run_id=run_id, limit=10000), timeout=20)
            stored = doc["events"]
            check_run_events(stored, run_id)
            by_seq = {e["seq"]: e for e in stored}
            for e in events:
                assert by_seq[e["seq"]] == e, "shown event not stored as shown"
            status, run = c2.reply(c2.call("run", run_id=run_id))
            assert run["status"] in ("done", "failed")
            if run["status"] == "failed":
                assert stored[-1]["payload"]["error"]["code"] == "internal"
        db = sqlite3.connect(s.db)
        assert db.execute("select count(*) from runs where status in ('queued','running')").fetchone()[0] == 0
    finally:
        s.close()


def test_sigterm_fails_in_flight_runs_and_exits_cleanly():
    s = Stack(echo_workers=0, orch_args=("--drain-ms", "300"))
    try:
        agent = FakeAgent(s.endpoint, "mute", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "mute")
        rid = invoke(c, "term1", "mute", "hello", follow=True)
        wait_until(lambda: any(e["type"] == "agent_stream_delta" for e in c.events(rid))
                   or c.pump(5) and False, what="the run to stream")
        t0 = time.monotonic()
        s.orch.send_signal(signal.SIGTERM)
        assert s.orch.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        db = sqlite3.connect(s.db)
        rows = db.execute("select seq, type, payload from events order by seq").fetchall()
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert rows[-1][1] == "run_failed" and json.loads(rows[-1][2])["error"]["code"] == "internal"
        assert db.execute("select status from runs").fetchone()[0] == "failed"
        agent.stop = True
    finally:
        s.close()


def raw_final(c, rid):
    """The decoded msgpack body of a request's REPLY (typed fields included)."""
    kind, body = c.wait_final(rid)[-1]
    assert kind == REPLY, body
    return body


def test_answers_about_a_run_carry_it_typed():
    """Every answer about one run names it, its status and its session as
    msgpack fields, so the edge routes answers without parsing the JSON
    (issue 11 item 4); the run JSON has SPEC §3's call fields."""
    s = Stack(echo_workers=0)
    try:
        agent = FakeAgent(s.endpoint, "slow", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "slow")
        first = raw_final(c, invoke(c, "ty1", "slow", "go"))
        run = json.loads(first["json"])
        assert first["run_id"] == run["run_id"] and first["run_status"] == "running"
        assert first["session_id"] == "ty1"
        assert run["parent_run_id"] is None and run["root_run_id"] is None and run["depth"] == 0
        f = invoke(c, "ty1", "slow", "later", follow=True)
        wait_until(lambda: c.accepted(f) or c.pump(5) and False, what="accepted")
        acc = [b for k, b in c.frames[f] if k == STREAM and "accepted" in b][0]
        assert acc["run_status"] == "queued" and acc["session_id"] == "ty1"
        assert acc["run_id"] == json.loads(acc["accepted"])["run_id"]
        busy = raw_final(c, invoke(c, "ty1", "slow", "no", if_busy="reject"))
        assert busy["status"] == 409 and busy["run_id"] == run["run_id"]
        assert busy["run_status"] == "running" and busy["session_id"] == "ty1"
        got = raw_final(c, c.call("run", run_id=run["run_id"]))
        assert got["run_id"] == run["run_id"] and got["run_status"] == "running"
        cancel = raw_final(c, c.call("cancel", run_id=acc["run_id"]))
        assert cancel["status"] == 202 and cancel["run_id"] == acc["run_id"]
        assert cancel["run_status"] == "cancelled"
        final = raw_final(c, f)
        assert final["run_id"] == acc["run_id"] and final["run_status"] == "cancelled"
        assert final["session_id"] == "ty1"
        again = raw_final(c, c.call("cancel", run_id=acc["run_id"]))
        assert again["status"] == 409 and again["run_status"] == "cancelled"
        # Answers about no run have none of the fields.
        unknown = raw_final(c, c.call("run", run_id="run_nope"))
        assert unknown["status"] == 404 and "run_id" not in unknown and "run_status" not in unknown
        agent.stop = True
    finally:
        s.close()


def test_message_ids_are_strings(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    status, run = c.reply(invoke(c, "mid1", "echo", "hi there", follow=True))
    status, doc = c.reply(c.call("messages", session_id="mid1"))
    ids = [m["message_id"] for m in doc["messages"]]
    assert len(ids) == 2 and all(isinstance(i, str) and i.isdigit() for i in ids)


def test_native_agents_have_a_created_at_and_keep_their_id():
    """A native agent is recorded when its first worker is seen: its
    created_at survives its workers leaving and the orchestrator
    restarting, and its id cannot be registered as an HTTP agent while
    its workers are away (issue 12 item 5)."""
    s = Stack(echo_workers=1)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        status, doc = c.reply(c.call("agents"))
        echo = {a["agent_id"]: a for a in doc["agents"]}["echo"]
        assert echo["kind"] == "native" and echo["created_at"].endswith("Z")
        for p in s.echos:
            s.procs.kill(p)
        s.procs.kill(s.orch, signal.SIGTERM)
        s.orch = s.start_orchestrator()
        c2 = s.client()
        def listed_without_workers():
            kind, body = c2.wait_final(c2.call("agents"))[-1]
            if kind != REPLY:
                return None
            by_id = {a["agent_id"]: a for a in json.loads(body["json"])["agents"]}
            echo = by_id.get("echo")
            # The broker forgets a killed worker after its heartbeats stop.
            return echo if echo and echo["workers"] == 0 else None
        got = wait_until(listed_without_workers, timeout=15, what="echo listed without workers")
        assert got["kind"] == "native" and got["workers"] == 0
        assert got["created_at"] == echo["created_at"]
        status, doc = c2.reply(c2.call("register", agent_id="echo", name="x",
                                       endpoint="http://127.0.0.1:9"))
        assert status == 409 and doc["error"]["code"] == "conflict"
        db = sqlite3.connect(s.db)
        assert db.execute("select kind, endpoint from agents where agent_id='echo'").fetchall() == [
            ("native", "")]
    finally:
        s.close()


def read_all_events(c, run_id, limit=None):
    """Every event of a run, page by page; returns (events, pages)."""
    events, pages, after = [], 0, 0
    while True:
        status, doc = c.reply(c.call("events", run_id=run_id, after_seq=after, limit=limit),
                              timeout=30)
        assert status == 200, doc
        pages += 1
        assert pages < 100
        events += doc["events"]
        if doc["events"]:
            assert doc["next_after_seq"] == doc["events"][-1]["seq"]
        else:
            assert doc["next_after_seq"] == after
        after = doc["next_after_seq"]
        if not doc["has_more"]:
            return events, pages


def test_a_long_run_reads_back_page_by_page():
    """6,000 events: a page holds at most `limit` (default 1000) and is cut
    by bytes so the answer fits a frame (a 10,000 read of it was once over
    the frame limit and dropped: the edge answered 503); has_more and
    next_after_seq walk it whole. follow replays one page only."""
    s = Stack(echo_workers=1)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        words = " ".join("w%d" % i for i in range(6000))
        status, run = c.reply(invoke(c, "long1", "echo", words, follow=True), timeout=60)
        assert run["status"] == "done"
        events, pages = read_all_events(c, run["run_id"])
        assert pages == 7 and len(events) == 6005
        check_run_events(events, run["run_id"])
        status, first = c.reply(c.call("events", run_id=run["run_id"]))
        assert len(first["events"]) == 1000 and first["has_more"] and first["next_after_seq"] == 1000
        status, big = c.reply(c.call("events", run_id=run["run_id"], limit=10000), timeout=30)
        assert status == 200 and big["has_more"] and 1000 < len(big["events"]) < 6005
        assert len(c.wait_final(c.call("events", run_id=run["run_id"], limit=10000))[-1][1]["json"]) < 1 << 20
        bigger, pages = read_all_events(c, run["run_id"], limit=10000)
        assert bigger == events and pages >= 2
        status, last = c.reply(c.call("events", run_id=run["run_id"], after_seq=6005))
        assert last["events"] == [] and not last["has_more"] and last["next_after_seq"] == 6005
        f = c.call("follow", run_id=run["run_id"])
        status, again = c.reply(f, timeout=30)
        assert again["status"] == "done"
        assert c.events(f) == events[:1000]
    finally:
        s.close()


def test_one_huge_message_leaves_reads_working():
    """One 600,000-character word: its events and its session's messages
    read back (each page holds what fits; has_more says more is there)."""
    s = Stack(echo_workers=1)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        word = "x" * 600000
        status, run = c.reply(invoke(c, "huge1", "echo", word, follow=True), timeout=60)
        assert run["status"] == "done", run
        events, pages = read_all_events(c, run["run_id"])
        check_run_events(events, run["run_id"])
        assert pages >= 3
        assert [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"] == [word]
        status, doc = c.reply(c.call("messages", session_id="huge1"), timeout=30)
        assert status == 200 and doc["has_more"] and len(doc["messages"]) == 1
        newest = doc["messages"][0]
        assert newest["role"] == "assistant" and newest["content"] == word
        status, older = c.reply(c.call("messages", session_id="huge1", before=newest["message_id"]))
        assert [m["role"] for m in older["messages"]] == ["user"] and not older["has_more"]
        assert older["messages"][0]["content"] == word
        # An input whose event cannot fit a page is refused, nothing stored.
        status, doc = c.reply(invoke(c, "huge2", "echo", "\x01" * 180000), timeout=30)
        assert status == 413 and doc["error"]["code"] == "too_large"
        status, doc = c.reply(c.call("session_runs", session_id="huge2"))
        assert doc["runs"] == []
    finally:
        s.close()


def test_messages_and_session_runs_page(stack):
    c = stack.client()
    stack.wait_agent(c, "echo")
    runs = []
    for i in range(5):
        status, run = c.reply(invoke(c, "pg1", "echo", "m%d" % i, follow=True))
        runs.append(run)
    # Without a cursor: the last `limit` messages, oldest first.
    status, doc = c.reply(c.call("messages", session_id="pg1", limit=3))
    assert [m["content"] for m in doc["messages"]] == ["m3", "m4", "m4"] and doc["has_more"]
    status, back = c.reply(c.call("messages", session_id="pg1", limit=3,
                                  before=doc["messages"][0]["message_id"]))
    assert [m["content"] for m in back["messages"]] == ["m2", "m2", "m3"] and back["has_more"]
    status, rest = c.reply(c.call("messages", session_id="pg1", limit=3,
                                  before=back["messages"][0]["message_id"]))
    assert [m["content"] for m in rest["messages"]] == ["m0", "m1", "m1"] and rest["has_more"]
    status, first = c.reply(c.call("messages", session_id="pg1", limit=3,
                                   before=rest["messages"][0]["message_id"]))
    assert [(m["role"], m["content"]) for m in first["messages"]] == [("user", "m0")]
    assert not first["has_more"]
    status, fwd = c.reply(c.call("messages", session_id="pg1", limit=4,
                                 after=rest["messages"][-1]["message_id"]))
    assert [m["content"] for m in fwd["messages"]] == ["m2", "m2", "m3", "m3"] and fwd["has_more"]
    status, end = c.reply(c.call("messages", session_id="pg1",
                                 after=fwd["messages"][-1]["message_id"]))
    assert [m["content"] for m in end["messages"]] == ["m4", "m4"] and not end["has_more"]
    status, doc = c.reply(c.call("messages", session_id="pg1"))
    assert len(doc["messages"]) == 10 and not doc["has_more"]
    for bad in ({"before": "x1"}, {"after": "-3"}, {"before": "1", "after": "2"}):
        status, doc = c.reply(c.call("messages", session_id="pg1", **bad))
        assert status == 400 and doc["error"]["code"] == "bad_request", bad
    # session_runs: newest first, paged by before.
    status, doc = c.reply(c.call("session_runs", session_id="pg1", limit=2))
    assert [r["run_id"] for r in doc["runs"]] == [runs[4]["run_id"], runs[3]["run_id"]]
    assert doc["has_more"] and doc["runs"][0] == runs[4]
    status, more = c.reply(c.call("session_runs", session_id="pg1", limit=2,
                                  before=doc["runs"][-1]["run_id"]))
    assert [r["run_id"] for r in more["runs"]] == [runs[2]["run_id"], runs[1]["run_id"]]
    status, last = c.reply(c.call("session_runs", session_id="pg1",
                                  before=more["runs"][-1]["run_id"]))
    assert [r["run_id"] for r in last["runs"]] == [runs[0]["run_id"]] and not last["has_more"]
    status, none = c.reply(c.call("session_runs", session_id="never"))
    assert status == 200 and none == {"session_id": "never", "runs": [], "has_more": False}


def pump_for(c, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            c.pump(min(0.2, max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            pass


def test_a_lock_held_elsewhere_for_8s_delays_runs_and_fails_none():
    """An external connection holds BEGIN IMMEDIATE for 8 s mid-run. The
    orchestrator waits a fraction of the heartbeat per turn (it waited 5 s
    inside its loop, the broker dropped it and every run failed), keeps its
    broker link, and afterwards every run, including one invoked during
    the lock in another session, ends once, done, with no gap."""
    s = Stack(echo_workers=2, echo_delay_ms=5)
    try:
        c = s.client()
        s.wait_agent(c, "echo", workers=2)
        text = " ".join("w%d" % i for i in range(300))
        reqs = [invoke(c, "lk%d" % i, "echo", text, follow=True) for i in range(3)]
        wait_until(lambda: all(any(e["type"] == "agent_stream_delta" for e in c.events(r))
                               for r in reqs) or c.pump(5) and False, what="the runs to stream")
        db = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            during = invoke(c, "lk-other", "echo", "invoked during the lock", follow=True)
            pump_for(c, 8)
            assert s.orch.poll() is None
        finally:
            db.execute("COMMIT")
            db.close()
        reqs.append(during)
        runs = [c.reply(r, timeout=30)[1] for r in reqs]
        assert [r["status"] for r in runs] == ["done"] * 4, runs
        for r, run in zip(reqs, runs):
            check_run_events(c.events(r), run["run_id"])
            stored, _ = read_all_events(c, run["run_id"])
            assert stored == c.events(r)
        with open(s.orch.log) as f:
            log = f.read()
        assert "broker.lost" not in log and "store.locked" in log and "store.unlocked" in log
    finally:
        s.close()


def test_a_full_disk_fails_the_runs_it_caught_once_and_shows_nothing_unstored():
    """A file-size limit on the orchestrator stands in for a full disk:
    commits fail. The runs caught end, once the store writes again, with
    exactly one run_failed/internal and no seq gap (a failed commit once
    left them running with a seq consumed); every event a client was shown
    is stored as shown; later runs work."""
    import resource
    s = Stack(echo_workers=1, echo_delay_ms=10)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        text = " ".join("w%d" % i for i in range(400))
        reqs = [invoke(c, "df%d" % i, "echo", text, follow=True) for i in range(3)]
        wait_until(lambda: all(any(e["type"] == "agent_stream_delta" for e in c.events(r))
                               for r in reqs) or c.pump(5) and False, what="the runs to stream")
        # The soft limit only: raising it back needs no privilege.
        hard = resource.prlimit(s.orch.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(s.orch.pid, resource.RLIMIT_FSIZE, (4096, hard))
        try:
            pump_for(c, 1.5)
            # Invoked while nothing can be written: refused visibly.
            refused = invoke(c, "df-during", "echo", "hello")
            kind, body = c.wait_final(refused, timeout=10)[-1]
            assert kind == ERROR and body["code"] == "internal", body
            assert s.orch.poll() is None
        finally:
            resource.prlimit(s.orch.pid, resource.RLIMIT_FSIZE, (hard, hard))
        pump_for(c, 1)
        c2 = s.client()
        failed = 0
        for r in reqs:
            acc = c.accepted(r)
            run_id = acc["run_id"]
            def ended():
                st, run = c2.reply(c2.call("run", run_id=run_id))
                return run if run["status"] in ("done", "failed") else None
            run = wait_until(ended, timeout=15, what="run %s to end" % run_id)
            stored, _ = read_all_events(c2, run_id)
            check_run_events(stored, run_id)
            by_seq = {e["seq"]: e for e in stored}
            for e in c.events(r):
                assert by_seq[e["seq"]] == e, "shown event not stored as shown"
            if run["status"] == "failed":
                failed += 1
                assert stored[-1]["payload"]["error"]["code"] == "internal"
        assert failed >= 1
        status, run = c2.reply(invoke(c2, "df-after", "echo", "after the disk", follow=True))
        assert run["status"] == "done"
        db = sqlite3.connect(s.db)
        assert db.execute("select count(*) from runs where session_id='df-during'").fetchone()[0] == 0
        assert db.execute("select count(*) from runs where status in ('queued','running')").fetchone()[0] == 0
    finally:
        s.close()


def test_a_queue_flood_in_one_session_is_refused_and_others_go_on():
    """One session queues its maximum (MAP_MAX_QUEUED_RUNS, 64 by default):
    the next invoke is 429 too_many_runs (100,000 queued invokes once hit
    the global limit and every other session failed); another session's
    runs complete meanwhile; queued runs start in order with their input
    read back from the store."""
    s = Stack(echo_workers=1)
    try:
        agent = FakeAgent(s.endpoint, "hold", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "hold")
        s.wait_agent(c, "echo")
        first = raw_final(c, invoke(c, "flood", "hold", "running"))
        assert first["run_status"] == "running"
        sent = [invoke(c, "flood", "hold", "queued %d" % i) for i in range(64)]
        assert all(raw_final(c, r)["run_status"] == "queued" for r in sent)
        status, doc = c.reply(invoke(c, "flood", "hold", "one too many"))
        assert status == 429 and doc["error"]["code"] == "too_many_runs"
        for i in range(3):
            status, run = c.reply(invoke(c, "calm%d" % i, "echo", "still served", follow=True))
            assert run["status"] == "done"
        # Cancel the running one: the first queued starts, with its input.
        c.reply(c.call("cancel", run_id=first["run_id"]))
        wait_until(lambda: len(agent.seen) >= 2, what="the next queued run to start")
        assert agent.seen[1]["input"]["content"] == "queued 0"
        status, doc = c.reply(invoke(c, "flood", "hold", "room again"))
        assert status == 200
        db = sqlite3.connect(s.db)
        assert db.execute("select count(*) from runs where session_id='flood'").fetchone()[0] == 66
        agent.stop = True
    finally:
        s.close()


def test_follows_of_one_run_are_bounded():
    s = Stack(echo_workers=0, orch_args=("--max-follows-per-run", "3"))
    try:
        agent = FakeAgent(s.endpoint, "hold", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "hold")
        own = invoke(c, "fl1", "hold", "go", follow=True)
        wait_until(lambda: c.accepted(own) or c.pump(5) and False, what="accepted")
        run_id = c.accepted(own)["run_id"]
        follows = [c.call("follow", run_id=run_id) for _ in range(2)]
        wait_until(lambda: all(c.accepted(f) for f in follows) or c.pump(5) and False,
                   what="two follows accepted")
        status, doc = c.reply(c.call("follow", run_id=run_id))
        assert status == 429 and doc["error"]["code"] == "too_many_follows"
        c.peer.cancel(follows[0])
        again = c.call("follow", run_id=run_id)
        wait_until(lambda: c.accepted(again) or c.pump(5) and False, what="a follow after a cancel")
        c.reply(c.call("cancel", run_id=run_id))
        for f in (own, follows[1], again):
            status, run = c.reply(f)
            assert run["status"] == "cancelled"
        agent.stop = True
    finally:
        s.close()


def test_invalid_utf8_from_an_agent_is_replaced_before_it_is_stored():
    """An agent's delta and output with invalid UTF-8: stored with U+FFFD,
    so the session's next run gets a history that encodes (it once could
    not: every later HTTP-agent run of the session failed)."""
    bad = b"A\xff\xfeB"
    def behave(agent, rid, inv):
        agent.peer.send([V, STREAM, rid], b"\x81\xa5delta\xa4" + bad)
        agent.peer.send([V, REPLY, rid],
                        b"\x81\xa6output\x82\xa4role\xa9assistant\xa7content\xa4" + bad)
    s = Stack(echo_workers=0)
    try:
        agent = FakeAgent(s.endpoint, "bad8", behave)
        agent.start()
        hist = FakeAgent(s.endpoint, "hist8", lambda a, rid, inv: a.done(rid, "ok"))
        hist.start()
        c = s.client()
        s.wait_agent(c, "bad8")
        s.wait_agent(c, "hist8")
        f = invoke(c, "u8", "bad8", "first", follow=True)
        status, run = c.reply(f)
        assert run["status"] == "done"
        events = c.events(f)
        assert [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"] == [
            "A\ufffd\ufffdB"]
        status, run2 = c.reply(invoke(c, "u8", "hist8", "second", follow=True))
        assert run2["status"] == "done"
        assert hist.seen[0]["history"] == [{"role": "user", "content": "first"},
                                           {"role": "assistant", "content": "A\ufffd\ufffdB"}]
        db = sqlite3.connect(s.db)
        assert [r[0] for r in db.execute("select content from messages order by message_id")] == [
            "first", "A\ufffd\ufffdB", "second", "ok"]
        agent.stop = hist.stop = True
    finally:
        s.close()


def test_a_burst_of_large_invokes_keeps_the_broker_link():
    """64 invokes of 500,000 characters at once: the orchestrator spreads
    them over short turns (each at most a quarter of the heartbeat) instead
    of one long one; it took longer than the link's liveness, the library
    counted it as silence and every run failed worker_lost."""
    s = Stack(echo_workers=1)
    try:
        agent = FakeAgent(s.endpoint, "hold", lambda a, rid, inv: a.stream(rid, "x"))
        agent.start()
        c = s.client()
        s.wait_agent(c, "hold")
        s.wait_agent(c, "echo")
        first = raw_final(c, invoke(c, "burst", "hold", "running"))
        big = "y" * 500000
        sent = [invoke(c, "burst", "hold", big) for _ in range(64)]
        other = invoke(c, "beside", "echo", "served meanwhile", follow=True)
        answers = [raw_final(c, r) for r in sent]
        assert all(a["status"] == 200 and a["run_status"] == "queued" for a in answers), [
            a.get("status") for a in answers]
        status, run = c.reply(other, timeout=30)
        assert run["status"] == "done"
        status, doc = c.reply(c.call("run", run_id=first["run_id"]))
        assert doc["status"] == "running"
        with open(s.orch.log) as f:
            assert "link_lost" not in f.read()
        agent.stop = True
    finally:
        s.close()


def test_a_watch_gets_every_event_in_order_as_stored():
    """A watch's STREAMs (batches of one loop turn each, or lone events)
    carry every event of the session's runs once, in seq order per run,
    each exactly as the store gives it back, typed fields matching."""
    s = Stack(echo_workers=2, echo_delay_ms=0)
    try:
        c = s.client()
        s.wait_agent(c, "echo")
        w = c.call("watch", session_id="wb")
        words = " ".join("w%d" % i for i in range(40))
        sent = [invoke(c, "wb", "echo", words) for _ in range(3)]
        runs = [c.reply(rid)[1]["run_id"] for rid in sent]

        def all_ended():
            c.pump(5)
            return sum(e["type"] in TERMINAL for e in c.events(w)) == 3
        wait_until(all_ended, timeout=30, what="three runs to end on the watch")
        kinds = [k for k, b in c.frames[w]]
        assert all(k == STREAM for k in kinds)
        for b in c.stream_bodies(w):
            ev = json.loads(b["event"])
            assert (b["run_id"], b["session_id"], b["seq"], b["type"]) == (
                ev["run_id"], ev["session_id"], ev["seq"], ev["type"])
            assert b["terminal"] == (ev["type"] in TERMINAL)
        got = c.events(w)
        for rid in runs:
            mine = [e for e in got if e["run_id"] == rid]
            check_run_events(mine, rid)
            status, doc = c.reply(c.call("events", run_id=rid, limit=1000))
            assert status == 200 and doc["events"] == mine
        c.peer.cancel(w)
    finally:
        s.close()
