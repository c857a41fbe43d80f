"""Retention (MAP_RETENTION) with the real broker, orchestrator and echo
workers: runs made old by rewriting their timestamps in the live database
are pruned with their events, messages and sessions while new runs stream;
a running run and the run queued behind it, as old, are untouched; no kept
run has a seq gap; the health op counts what went; a bad value is one line
and a non-zero exit."""
import json
import os
import sqlite3
import subprocess
import threading

import msgpack

from mapclient import REPLY, REQUEST, STREAM, V, Peer, Stack, binary, wait_until

TERMINAL = ("run_done", "run_failed", "run_cancelled")
OLD_RUNS = 200


def invoke(c, session, agent, content, **kw):
    return c.call("invoke", session_id=session, agent_id=agent, role="user", content=content,
                  follow=True, **kw)


class HoldAgent(threading.Thread):
    """agent.hold: streams one delta, then answers only when released."""

    def __init__(self, endpoint):
        super().__init__(daemon=True)
        self.peer = Peer(endpoint, "agent.hold", 4)
        self.held = []
        self.release = threading.Event()
        self.stop = False

    def run(self):
        while not self.stop:
            if self.release.is_set() and self.held:
                for rid in self.held:
                    self.peer.send([V, REPLY, rid], {"output": {"role": "assistant", "content": "x"}})
                self.held = []
            try:
                h, body = self.peer.recv(timeout=0.1)
            except TimeoutError:
                continue
            if h[1] == REQUEST:
                self.peer.send([V, STREAM, h[2]], {"delta": "held"})
                self.held.append(h[2])


def pump_until(c, cond, what):
    """Reads the client's frames until cond() holds (15 s at most)."""
    def step():
        if cond():
            return True
        try:
            c.pump(0.1)
        except TimeoutError:
            pass
        return cond()
    wait_until(step, timeout=15, what=what)


def health(c):
    status, doc = c.reply(c.call("health"))
    assert status == 200
    return doc


def db_rows(path, sql, args=()):
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def check_gapless(path):
    """Every run in the store: seqs 1..n; an ended run has one terminal event, last."""
    runs = db_rows(path, "SELECT run_id, status FROM runs")
    for run_id, status in runs:
        rows = db_rows(path, "SELECT seq, type FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), (run_id, rows)
        terminal = [r[1] for r in rows if r[1] in TERMINAL]
        if status in ("done", "failed", "cancelled"):
            assert terminal == [rows[-1][1]], (run_id, rows)
        else:
            assert terminal == [], (run_id, rows)
    return len(runs)


def test_old_runs_pruned_while_new_runs_stream():
    s = Stack(echo_workers=2, orch_args=("--retention", "1d"))
    hold = HoldAgent(s.endpoint)
    hold.start()
    try:
        c = s.client()
        s.wait_agent(c, "echo", 2)
        s.wait_agent(c, "hold")
        assert health(c)["retention_s"] == 86400
        words = " ".join("w%d" % i for i in range(8))
        old = [invoke(c, "old%02d" % (i % 20), "echo", words) for i in range(OLD_RUNS)]
        old_ids = []
        for rid in old:
            status, run = c.reply(rid, timeout=60)
            assert run["status"] == "done"
            old_ids.append(run["run_id"])
        # As old, still running, and queued behind it.
        held = invoke(c, "held", "hold", "wait")
        queued = invoke(c, "held", "echo", "after the held run")
        wait_until(lambda: hold.held, timeout=15, what="the held run to reach its agent")
        pump_until(c, lambda: c.accepted(queued), "the queued run to be accepted")
        held_id, queued_id = c.accepted(held)["run_id"], c.accepted(queued)["run_id"]
        assert db_rows(s.db, "SELECT status FROM runs WHERE run_id = ?", (queued_id,)) == [("queued",)]
        old_events = db_rows(s.db, "SELECT count(*) FROM events e JOIN runs r USING (run_id)"
                                   " WHERE r.session_id LIKE 'old%'")[0][0]
        old_messages = db_rows(s.db, "SELECT count(*) FROM messages WHERE session_id LIKE 'old%'")[0][0]
        assert old_events >= OLD_RUNS * 10 and old_messages == OLD_RUNS * 2
        assert health(c)["pruned_runs"] == 0

        # Forty days ago, in the live database, under the orchestrator.
        db = sqlite3.connect(s.db, timeout=30)
        with db:
            db.execute("UPDATE runs SET created_at = '2020-01-01T00:00:00.000Z',"
                       " ended_at = CASE WHEN ended_at IS NULL THEN NULL"
                       " ELSE '2020-01-01T00:00:01.000Z' END"
                       " WHERE session_id LIKE 'old%' OR session_id = 'held'")
            db.execute("UPDATE events SET created_at = '2020-01-01T00:00:00.500Z' WHERE run_id IN"
                       " (SELECT run_id FROM runs WHERE created_at LIKE '2020%')")
        db.close()

        # New runs stream, round after round, until everything old is gone.
        new_runs = {}
        rounds = 0
        while health(c)["pruned_runs"] < OLD_RUNS:
            assert rounds < 200, health(c)
            rids = [invoke(c, "new%02d" % i, "echo", words + " r%d" % rounds) for i in range(10)]
            for rid in rids:
                status, run = c.reply(rid, timeout=60)
                assert run["status"] == "done"
                new_runs[run["run_id"]] = c.events(rid)
            rounds += 1
        assert rounds >= 1
        print("pruned %d old runs while %d rounds of 10 new runs streamed" % (OLD_RUNS, rounds))
        doc = health(c)
        assert doc["pruned_runs"] == OLD_RUNS, doc
        assert doc["pruned_events"] == old_events and doc["pruned_messages"] == old_messages, doc

        # The old runs are gone whole, their sessions too.
        marks = ",".join("?" * len(old_ids))
        for table in ("runs", "events", "messages"):
            assert db_rows(s.db, "SELECT count(*) FROM %s WHERE run_id IN (%s)" % (table, marks),
                           old_ids) == [(0,)], table
        assert db_rows(s.db, "SELECT count(*) FROM sessions WHERE session_id LIKE 'old%'") == [(0,)]
        status, doc = c.reply(c.call("events", run_id=old_ids[0]))
        assert status == 404
        status, doc = c.reply(c.call("messages", session_id="old00"))
        assert status == 200 and doc["messages"] == []
        # The running and the queued run, as old, are untouched.
        assert db_rows(s.db, "SELECT status FROM runs WHERE run_id = ?", (held_id,)) == [("running",)]
        assert db_rows(s.db, "SELECT status FROM runs WHERE run_id = ?", (queued_id,)) == [("queued",)]
        # Every new run: streamed gapless with its terminal event, stored the same.
        for run_id, events in new_runs.items():
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), run_id
            assert events[-1]["type"] == "run_done"
            status, doc = c.reply(c.call("events", run_id=run_id))
            assert doc["events"] == events
        # The held run ends now, then the queued one: both whole.
        hold.release.set()
        for rid in (held, queued):
            status, run = c.reply(rid, timeout=30)
            assert run["status"] == "done", run
        kept = check_gapless(s.db)
        assert kept == len(new_runs) + 2
    finally:
        hold.stop = True
        s.close()


def test_a_bad_retention_is_one_line_and_a_non_zero_exit():
    for args, env in ((["--retention", "10x"], {}), (["--retention", "0d"], {}),
                      ([], {"MAP_RETENTION": "30"}), ([], {"MAP_RETENTION": "forever"})):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MAP_")}
        e.update(env)
        r = subprocess.run([binary("map-orchestrator"), "--db", "/nonexistent/dir/x.db"] + args,
                           env=e, capture_output=True, text=True, timeout=20)
        assert r.returncode == 2, (args, env, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--retention (MAP_RETENTION)" in lines[0], r.stderr
        assert "is not a duration" in lines[0] and "30d" in lines[0]
