"""The tap tool against a real broker: it shows the frames of a request in
order, shows rejected frames instead of hiding them, and follows a call
tree with --run (with Python peers, then with the real orchestrator)."""
import json
import os
import re
import subprocess

import msgpack

from mapclient import ERROR, REPLY, REQUEST, STREAM, Orch, Peer, Procs, binary, free_port, wait_until


def broker_logged(broker, *lines):
    """Waits until the broker's log has every one of lines (bytes)."""
    def logged():
        with open(broker.log, "rb") as f:
            text = f.read()
        return all(l in text for l in lines)
    wait_until(logged, what="the broker to log %r" % (lines,))


def start_tap(procs, broker, tap, *args):
    """Starts map-tap with args, its output in a file; returns that file's
    path once the broker has logged the tap's subscription."""
    out_path = os.path.join(procs.dir, "tap.out")
    out = open(out_path, "wb")
    tapper = subprocess.Popen([binary("map-tap"), "--tap", tap, *args], stdout=out,
                              stderr=subprocess.STDOUT)
    procs.procs.append(tapper)
    tapper.log = out_path
    broker_logged(broker, b"tap.subscribers topics=1")
    return out_path

def test_tap_shows_a_request_in_order_and_rejected_frames():
    procs = Procs()
    try:
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        tap = "tcp://127.0.0.1:%d" % free_port()
        broker = procs.start("map-broker", "--endpoint", endpoint, "--tap", tap,
                             "--heartbeat-ms", 1000, "--log-level", "info")
        procs.start("map-echo", "--broker", endpoint, "--delay-ms", 0)
        out_path = start_tap(procs, broker, tap, "--json")
        client = Peer(endpoint, "tap-test", 0)
        # The echo worker announces itself (a request before that is unknown_service).
        broker_logged(broker, b"service.new service=agent.echo")
        inv = {"run_id": "run_tapped", "session_id": "s1", "agent_id": "echo",
               "input": {"role": "user", "content": "hello tap"}, "history": []}
        client.request("agent.echo", inv)
        while client.recv(5)[0][1] != REPLY:
            pass
        client.sock.send(b"\xff\xfegarbage")

        def lines():
            with open(out_path) as f:
                return [json.loads(l) for l in f if l.strip()]

        def seen_all():
            ls = lines()
            return any(l["type"] == "UNDECODABLE" for l in ls) and \
                any(l["type"] == "REPLY" and l["dir"] == "out" for l in ls)
        wait_until(seen_all, what="the request's frames and the garbage on the tap")
        ls = [l for l in lines() if l["type"] not in ("HEARTBEAT", "READY", "SERVICES")
              and not (l["type"] == "REPLY" and l["service"] == "")]
        request_frames = [(l["dir"], l["type"]) for l in ls if l.get("run_id") == "run_tapped"
                          or l["service"] == "agent.echo"]
        assert request_frames == [
            ("in", "REQUEST"), ("out", "REQUEST"),
            ("in", "STREAM"), ("out", "STREAM"), ("in", "STREAM"), ("out", "STREAM"),
            ("in", "REPLY"), ("out", "REPLY")], request_frames
        deltas = [l["body"]["delta"] for l in ls if l["type"] == "STREAM" and l["dir"] == "out"]
        assert deltas == ["hello", " tap"]
        assert [l["body"]["run_id"] for l in ls if l["type"] == "REQUEST"] == ["run_tapped"] * 2
        bad = [l for l in ls if l["type"] == "UNDECODABLE"]
        assert bad and bad[0]["note"].startswith("rejected:") and bad[0]["header_hex"] == "fffe67617262616765"
        # Human lines and filters work too.
        human = subprocess.run([binary("map-tap"), "--help"], capture_output=True, text=True)
        assert human.returncode == 0 and "--service" in human.stdout
        bad_flag = subprocess.run([binary("map-tap"), "--nope"], capture_output=True, text=True)
        assert bad_flag.returncode == 2 and "unknown flag" in bad_flag.stderr
    finally:
        procs.stop_all()


TOKEN = "0123456789abcdef0123456789abcdef"


def test_tap_follows_a_call_tree():
    """`map-tap --run P` through a real broker: P's request, the op call P's
    agent sends, the child's and grandchild's invokes (named by their
    platform) and their answers; not another tree. The peers are Python
    (an `orchestrator` that answers calls, an agent that streams), so the
    tap's view is tested apart from the engine."""
    procs = Procs()
    peers = []
    try:
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        tap = "tcp://127.0.0.1:%d" % free_port()
        broker = procs.start("map-broker", "--endpoint", endpoint, "--tap", tap,
                             "--heartbeat-ms", 1000, "--log-level", "info")
        out_path = start_tap(procs, broker, tap, "--run", "run_P")
        agent = Peer(endpoint, "agent.tt", 8)
        orch = Peer(endpoint, "orchestrator", 8)
        client = Peer(endpoint, "tap-tree", 0)
        peers += [agent, orch, client]
        # The workers' READY reach the broker first.
        broker_logged(broker, b"service.new service=agent.tt", b"service.new service=orchestrator")

        def invoke(run, parent=None, root=None, depth=0):
            platform = {"token": TOKEN, "depth": depth, "root_run_id": root or run}
            if parent:
                platform["parent_run_id"] = parent
            return {"run_id": run, "session_id": "s1", "agent_id": "tt",
                    "input": {"role": "user", "content": "hi"}, "history": [],
                    "platform": platform}

        def serve(worker, n):
            """Answers n requests: a delta and a reply each."""
            for _ in range(n):
                while True:
                    h, _ = worker.recv(10)
                    if h[1] == REQUEST:
                        break
                worker.send([1, STREAM, h[2]], {"delta": "x"})
                worker.send([1, REPLY, h[2]], {"output": {"role": "assistant", "content": "x"}})

        def finish(rid):
            while True:
                h, _ = client.recv(10)
                if h[1] in (REPLY, ERROR) and h[2] == rid:
                    return

        for body in (invoke("run_P"), invoke("run_C", "run_P", "run_P", 1),
                     invoke("run_G", "run_C", "run_P", 2), invoke("run_Q"),
                     invoke("run_Q1", "run_Q", "run_Q", 1)):
            rid = client.request("agent.tt", body)
            serve(agent, 1)
            finish(rid)
        for parent, call_id in (("run_P", "c1"), ("run_Q", "c9")):
            rid = client.request("orchestrator", {
                "op": "call", "run_id": parent, "token": TOKEN, "call_id": call_id,
                "agent_id": "tt", "role": "user", "content": "hi"})
            serve(orch, 1)
            finish(rid)

        def lines():
            with open(out_path, encoding="utf-8") as f:
                return [l.rstrip("\n") for l in f if l.strip()]
        # P, C, G: REQUEST in and out, STREAM in and out, REPLY in and out;
        # the call: the same six. Q's tree: nothing.
        wait_until(lambda: sum(" call run_P \u2192 tt (c1)" in l for l in lines()) == 2 and
                   len(lines()) >= 24, what="the tree's frames on the tap")
        ls = lines()
        assert not any("run_Q" in l for l in ls), ls
        runs = [l.split(" run=")[1].split()[0] for l in ls]
        assert sorted(set(runs)) == ["run_C", "run_G", "run_P"], ls
        assert len(ls) == 24, ls
        reqs = [l for l in ls if " REQUEST " in l and "agent.tt" in l]
        assert sum(" run=run_C parent=run_P root=run_P depth=1" in l for l in reqs) == 2, reqs
        assert sum(" run=run_G parent=run_C root=run_P depth=2" in l for l in reqs) == 2, reqs
        assert not any(TOKEN in l for l in ls)  # the call token is not printed
    finally:
        for p in peers:
            p.close()
        procs.stop_all()


CALLER = os.path.join(os.path.dirname(__file__), "..", "e2e", "caller_agent.py")


def test_tap_follows_a_real_call():
    """The whole stack: `caller` (tests/e2e/caller_agent.py) calls `echo`
    through the orchestrator's op call. `map-tap --run P`, started once P is
    accepted, shows P's frames, the call, the child's invoke with its
    platform's parent/root and the child's answers; another session's run at
    the same time is left out; no token is printed."""
    procs = Procs()
    client = None
    try:
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        tap = "tcp://127.0.0.1:%d" % free_port()
        gate = os.path.join(procs.dir, "gate")
        broker = procs.start("map-broker", "--endpoint", endpoint, "--tap", tap,
                             "--heartbeat-ms", 250, "--log-level", "info")
        procs.start("map-orchestrator", "--broker", endpoint, "--db",
                    os.path.join(procs.dir, "map.db"), "--heartbeat-ms", 250)
        procs.start("map-echo", "--broker", endpoint, "--delay-ms", 0, "--heartbeat-ms", 250)
        procs.start_argv(["/usr/bin/python3", CALLER, endpoint, "caller", "echo", gate])
        client = Orch(endpoint)

        def registered():
            rid = client.call("agents")
            kind, body = client.wait_final(rid)[-1]
            return kind == REPLY and {"caller", "echo"} <= {
                a["agent_id"] for a in json.loads(body["json"])["agents"]}
        wait_until(registered, timeout=15, step=0.1, what="caller and echo to register")
        rid = client.call("invoke", session_id="tree", agent_id="caller", role="user",
                          content="hello tree", follow=True)
        accepted = wait_until(lambda: client.pump(10) is not None and client.accepted(rid),
                              timeout=15, what="the parent run accepted")
        parent = accepted["run_id"]
        out_path = start_tap(procs, broker, tap, "--run", parent)
        other = client.call("invoke", session_id="elsewhere", agent_id="echo", role="user",
                            content="not in the tree", follow=True)
        client.wait_final(other)
        other_run = client.accepted(other)["run_id"]
        open(gate, "w").close()  # the caller may call now
        got = client.wait_final(rid, timeout=20)
        assert got[-1][0] == REPLY and json.loads(got[-1][1]["json"])["status"] == "done", got
        lst = client.call("calls", run_id=parent)
        status, doc = client.reply(lst)
        assert status == 200 and len(doc["calls"]) == 1, doc
        child = doc["calls"][0]["run_id"]

        def lines():
            with open(out_path, encoding="utf-8") as f:
                return [l.rstrip("\n") for l in f if l.strip()]
        # The end of the tree on the tap: the orchestrator's REPLY to the
        # test client for P's invoke, after everything else of the tree.
        final = lambda l: " REPLY " in l and "broker \u2192" in l and "orchestrator" in l and \
            (" run=%s " % parent) in l and "caller=" not in l
        wait_until(lambda: any(final(l) for l in lines()), timeout=15,
                   what="the parent's final REPLY on the tap")
        ls = lines()
        with open(os.path.join(procs.dir, "tree.txt"), "w") as f:  # for a look by hand
            f.write("\n".join(ls) + "\n")
        assert not any(other_run in l or "not in the tree" in l for l in ls), ls
        runs = {l.split(" run=")[1].split()[0] for l in ls if " run=" in l}
        assert runs == {parent, child}, (runs, ls)
        call = [l for l in ls if " REQUEST " in l and "orchestrator" in l and
                (" call %s \u2192 echo (c1)" % parent) in l]
        assert len(call) == 2, ls  # in from the caller, out to the orchestrator
        inv = [l for l in ls if " REQUEST " in l and "agent.echo" in l]
        assert len(inv) == 2 and all((" run=%s parent=%s root=%s depth=1" % (child, parent, parent))
                                     in l for l in inv), ls
        assert any(" STREAM " in l and "agent.echo" in l and (" run=%s " % child) in l for l in ls)
        assert any(("run=%s caller=%s" % (child, parent)) in l for l in ls), ls  # the call's answers
        # P's own events as the orchestrator streams them to the client (P's
        # REQUEST to the caller came before the tap, so the caller's bodiless
        # deltas cannot be told to be P's: only frames naming P are).
        assert any(" STREAM " in l and "orchestrator" in l and (" run=%s {" % parent) in l for l in ls)
        assert not any(TOKEN in l for l in ls) and any('"token":"<token>"' in l for l in ls)
        assert all(not re_token(l) for l in ls), ls
    finally:
        if client:
            client.peer.close()
        procs.stop_all()


def re_token(line):
    """A 32-hex run token anywhere in a line (none may be printed)."""
    return re.search(r'"token":"[0-9a-f]{32}"', line)
