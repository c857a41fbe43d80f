"""Process tests of agent calls from a native agent (issue 14): map-fanout
calls echo twice per input through the worker library's call API, with the
real broker, orchestrator and echo workers on loopback (mapclient.py)."""
import json
import signal

import pytest

from mapclient import Stack, wait_until

TERMINAL = ("run_done", "run_failed", "run_cancelled")


@pytest.fixture
def stack(request):
    s = Stack(echo_workers=1)
    yield s
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(s.procs.logs())
    s.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def start_fanout(stack, target="echo", log_level="info"):
    return stack.procs.start("map-fanout", "--broker", stack.endpoint, "--target", target,
                             "--heartbeat-ms", stack.heartbeat_ms, "--log-level", log_level)


def start_slow_echo(stack, agent, delay_ms):
    return stack.procs.start("map-echo", "--broker", stack.endpoint, "--agent", agent,
                             "--heartbeat-ms", stack.heartbeat_ms, env={"MAP_ECHO_DELAY_MS": str(delay_ms)})


def invoke(c, session, agent, content):
    return c.call("invoke", session_id=session, agent_id=agent, role="user", content=content,
                  follow=True)


def stored_events(c, run_id):
    status, doc = c.reply(c.call("events", run_id=run_id))
    assert status == 200
    return doc["events"]


def children(c, run_id):
    status, doc = c.reply(c.call("calls", run_id=run_id))
    assert status == 200 and doc["run_id"] == run_id
    return doc["calls"]


def calls_by_type(events, kind):
    return sorted((e["payload"]["call_id"], e["payload"]) for e in events if e["type"] == kind)


def check_log(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert sum(e["type"] in TERMINAL for e in events) == 1 and events[-1]["type"] in TERMINAL


def test_fanout_calls_echo_twice_and_merges(stack):
    start_fanout(stack)
    c = stack.client()
    stack.wait_agent(c, "fanout")
    stack.wait_agent(c, "echo")
    rid = invoke(c, "s1", "fanout", "hello big world")
    status, run = c.reply(rid)
    assert status == 200 and run["status"] == "done", run
    assert run["depth"] == 0 and run.get("parent_run_id") is None
    events = c.events(rid)
    check_log(events)
    assert events == stored_events(c, run["run_id"])
    done = [e for e in events if e["type"] == "agent_invoke_done"]
    assert done[0]["payload"]["output"] == {
        "role": "assistant", "content": "c1: hello big world\nc2: world big hello"}
    # Progress deltas: one line per child as it ends.
    deltas = sorted(e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta")
    assert deltas == ["c1: hello big world\n", "c2: world big hello\n"]
    started = calls_by_type(events, "agent_call_started")
    ended = calls_by_type(events, "agent_call_done")
    assert [k for k, _ in started] == ["c1", "c2"] and [k for k, _ in ended] == ["c1", "c2"]
    assert all(p["agent_id"] == "echo" and p["depth"] == 1 for _, p in started)
    assert ended[0][1]["output"]["content"] == "hello big world"
    assert ended[1][1]["output"]["content"] == "world big hello"
    # Each started call is before its end in the parent's log.
    seq = {(e["type"], e["payload"].get("call_id")): e["seq"] for e in events}
    for k in ("c1", "c2"):
        assert seq[("agent_call_started", k)] < seq[("agent_call_done", k)]
    kids = children(c, run["run_id"])
    assert [k["run_id"] for k in kids] == [p["child_run_id"] for _, p in started]
    for k in kids:
        assert k["depth"] == 1 and k["status"] == "done"
        assert k["parent_run_id"] == run["run_id"] and k["root_run_id"] == run["run_id"]
        assert k["session_id"] == "s1"
        kev = stored_events(c, k["run_id"])
        check_log(kev)
        assert kev[-1]["type"] == "run_done"
        assert all(e["parent_run_id"] == run["run_id"] and e["depth"] == 1 for e in kev)
    # Only the client's run wrote messages.
    status, doc = c.reply(c.call("messages", session_id="s1"))
    assert [(m["role"], m["content"]) for m in doc["messages"]] == [
        ("user", "hello big world"),
        ("assistant", "c1: hello big world\nc2: world big hello")]


def wait_calls_started(c, rid, n):
    def poll():
        try:
            c.pump(0.2)
        except TimeoutError:
            pass
        return sum(e["type"] == "agent_call_started" for e in c.events(rid)) >= n
    wait_until(poll, timeout=15, step=0, what="%d agent_call_started" % n)


def test_kill_of_the_calling_worker_cancels_its_children(stack):
    fan = start_fanout(stack, target="slowecho")
    start_slow_echo(stack, "slowecho", 300)
    c = stack.client()
    stack.wait_agent(c, "fanout")
    stack.wait_agent(c, "slowecho")
    rid = invoke(c, "s2", "fanout", " ".join("w%d" % i for i in range(30)))  # 9 s of echo
    wait_calls_started(c, rid, 2)
    stack.procs.kill(fan, signal.SIGKILL)
    status, run = c.reply(rid, timeout=20)
    assert status == 200 and run["status"] == "failed", run
    events = stored_events(c, run["run_id"])
    check_log(events)
    assert events[-1]["type"] == "run_failed"
    assert events[-1]["payload"]["error"]["code"] == "worker_lost"
    assert [k for k, _ in calls_by_type(events, "agent_call_cancelled")] == ["c1", "c2"]
    kids = children(c, run["run_id"])
    assert len(kids) == 2
    for k in kids:
        assert k["status"] == "cancelled"
        kev = stored_events(c, k["run_id"])
        check_log(kev)
        assert kev[-1]["type"] == "run_cancelled"
    # Every agent_call_cancelled comes before the parent's own end.
    cancelled_seqs = [e["seq"] for e in events if e["type"] == "agent_call_cancelled"]
    assert max(cancelled_seqs) < events[-1]["seq"]


def test_kill_of_a_child_worker_fails_the_call_and_fanout_answers(stack):
    start_fanout(stack, target="slowecho")
    slow = start_slow_echo(stack, "slowecho", 300)
    c = stack.client()
    stack.wait_agent(c, "fanout")
    stack.wait_agent(c, "slowecho")
    rid = invoke(c, "s3", "fanout", " ".join("w%d" % i for i in range(30)))
    wait_calls_started(c, rid, 2)
    stack.procs.kill(slow, signal.SIGKILL)
    status, run = c.reply(rid, timeout=20)
    assert status == 200 and run["status"] == "done", run
    events = stored_events(c, run["run_id"])
    check_log(events)
    failed = calls_by_type(events, "agent_call_failed")
    assert [k for k, _ in failed] == ["c1", "c2"]
    assert all(p["error"]["code"] == "worker_lost" for _, p in failed)
    out = [e for e in events if e["type"] == "agent_invoke_done"][0]["payload"]["output"]["content"]
    assert out.startswith("c1 failed (worker_lost") and "\nc2 failed (worker_lost" in out
    for k in children(c, run["run_id"]):
        assert k["status"] == "failed"


def test_cancel_of_the_fanout_run_cancels_its_calls(stack):
    fan = start_fanout(stack, target="slowecho", log_level="debug")
    start_slow_echo(stack, "slowecho", 300)
    c = stack.client()
    stack.wait_agent(c, "fanout")
    stack.wait_agent(c, "slowecho")
    rid = invoke(c, "s4", "fanout", " ".join("w%d" % i for i in range(30)))
    wait_calls_started(c, rid, 2)
    parent = c.accepted(rid)["run_id"]
    status, _ = c.reply(c.call("cancel", run_id=parent))
    assert status in (200, 202)
    status, run = c.reply(rid, timeout=20)
    assert run["status"] == "cancelled", run
    events = stored_events(c, parent)
    check_log(events)
    assert [k for k, _ in calls_by_type(events, "agent_call_cancelled")] == ["c1", "c2"]
    assert all(k["status"] == "cancelled" for k in children(c, parent))
    # The fanout saw its invoke cancelled and dropped the job with its calls
    # (the cancel reaches it after the run's reply: wait for it).
    def fanout_cancelled():
        with open(fan.log) as f:
            return "fanout.cancelled" in f.read()
    wait_until(fanout_cancelled, timeout=10, step=0.05, what="the fanout to see the cancel")
    stack.procs.kill(fan, signal.SIGTERM)
    with open(fan.log) as f:
        text = f.read()
    assert "fanout.stop started=1 answered=0 failed=0 cancelled=1" in text, text


def test_a_refused_call_is_a_line_of_the_answer():
    """With one call per run allowed, fanout's second call is refused 409
    call_refused: the worker library reports it, fanout answers anyway."""
    s = Stack(echo_workers=1, orch_args=("--max-calls-per-run", "1"))
    try:
        start_fanout(s)
        c = s.client()
        s.wait_agent(c, "fanout")
        s.wait_agent(c, "echo")
        status, run = c.reply(invoke(c, "s5", "fanout", "one two"))
        assert status == 200 and run["status"] == "done", run
        events = stored_events(c, run["run_id"])
        check_log(events)
        out = [e for e in events if e["type"] == "agent_invoke_done"][0]["payload"]["output"]
        lines = out["content"].split("\n")
        assert lines[0] == "c1: one two", lines
        assert lines[1].startswith("c2 failed (call_refused: calls per run limit (1) reached"), lines
        assert [k for k, _ in calls_by_type(events, "agent_call_started")] == ["c1"]
        assert len(children(c, run["run_id"])) == 1
    finally:
        s.close()
