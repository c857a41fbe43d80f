"""map-admin with the real broker, orchestrator and echo workers: a backup
made while runs stream (the orchestrator keeps committing during the copy)
opens, passes `map-admin check`, and holds every run that had ended before
it started, each whole; the restore procedure of the README brings the
orchestrator back on the copy; damaged and foreign files, existing
destinations and bad flags get one line and a non-zero exit."""
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

from mapclient import ERROR, REPLY, Orch, Stack, binary, wait_until

TERMINAL = ("run_done", "run_failed", "run_cancelled")


def admin(*args, timeout=120):
    r = subprocess.run([binary("map-admin")] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


class Load(threading.Thread):
    """Keeps `inflight` echo runs streaming through the broker and the
    orchestrator; records when each ended (its REPLY arrived)."""

    def __init__(self, endpoint, inflight=16, words=40):
        super().__init__(daemon=True)
        self.c = Orch(endpoint)
        self.inflight, self.text = inflight, " ".join("w%d" % i for i in range(words))
        self.ended = []  # (monotonic time, run_id), in order
        self.lock = threading.Lock()
        self.stop = False
        self.error = None

    def run(self):
        try:
            pending = set()
            n = 0
            deadline = time.monotonic() + 240
            while not self.stop and time.monotonic() < deadline:
                while len(pending) < self.inflight:
                    pending.add(self.c.call("invoke", session_id="load%02d" % (n % 32),
                                            agent_id="echo", role="user", content=self.text,
                                            follow=True))
                    n += 1
                try:
                    rid = self.c.pump(1.0)
                except TimeoutError:
                    continue
                frames = self.c.frames.get(rid, [])
                if rid in pending and frames and frames[-1][0] in (REPLY, ERROR):
                    pending.discard(rid)
                    status, run = self.c.reply(rid)
                    assert status == 200 and run["status"] == "done", run
                    with self.lock:
                        self.ended.append((time.monotonic(), run["run_id"]))
                    del self.c.frames[rid]
        except BaseException as e:  # reported by the test
            self.error = e

    def ended_ids(self):
        with self.lock:
            return [r for _, r in self.ended]

    def ended_between(self, t0, t1):
        with self.lock:
            return [r for t, r in self.ended if t0 <= t <= t1]


def copy_runs(path):
    """run_id -> (status, [(seq, type)]) of a database file."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        runs = {r: (s, []) for r, s in db.execute("SELECT run_id, status FROM runs")}
        for run_id, seq, typ in db.execute("SELECT run_id, seq, type FROM events ORDER BY run_id, seq"):
            runs[run_id][1].append((seq, typ))
        return runs
    finally:
        db.close()


def test_backup_under_load_then_restore():
    s = Stack(echo_workers=2, echo_delay_ms=1)
    load = None
    try:
        c = s.client()
        s.wait_agent(c, "echo", 2)
        load = Load(s.endpoint)
        load.start()
        wait_until(lambda: len(load.ended_ids()) >= 300 or load.error, timeout=120, step=0.1,
                   what="300 runs through the stack")
        assert load.error is None, load.error
        copy = os.path.join(s.procs.dir, "backup.db")
        ended_before = set(load.ended_ids())
        t0 = time.monotonic()
        rc, out, err = admin("backup", copy, "--db", s.db, "--step-pages", 4, "--step-sleep-ms", 2)
        t1 = time.monotonic()
        during = load.ended_between(t0, t1)
        assert rc == 0, err
        assert "written to '%s'" % copy in out and " 0 restarts" in out, out
        steps = int(out.split(" steps")[0].rsplit(" ", 1)[1])
        assert steps > 20, out  # a copy in many steps, not one
        print("%s; %d runs ended while it was made" % (out.strip(), len(during)))
        # The orchestrator committed runs while the copy was being made.
        assert len(during) > 0, (t1 - t0, out)
        assert load.error is None, load.error
        load.stop = True
        load.join(30)

        rc, out, err = admin("check", "--db", copy)
        assert rc == 0 and "is ok" in out and "integrity ok" in out, (out, err)
        assert not os.path.exists(copy + "-wal")  # one self-contained file
        runs = copy_runs(copy)
        missing = ended_before - set(runs)
        assert not missing, sorted(missing)[:5]
        for run_id, (status, events) in runs.items():
            assert [e[0] for e in events] == list(range(1, len(events) + 1)), run_id
            terminal = [t for _, t in events if t in TERMINAL]
            if run_id in ended_before or status != "running" and status != "queued":
                assert status == "done" and terminal == [events[-1][1]], (run_id, status, events)
            else:
                assert terminal == [], (run_id, status, events)
        # Runs that ended after the copy started are in the live store only.
        after = [r for r in load.ended_ids() if r not in runs]
        assert after, "no run ended after the copy started"

        # Restore (README): stop the orchestrator, check the copy, replace
        # the file and its -wal/-shm, start it again.
        s.procs.kill(s.orch, signal.SIGTERM)
        assert s.orch.returncode == 0
        for suffix in ("-wal", "-shm"):
            if os.path.exists(s.db + suffix):
                os.remove(s.db + suffix)
        shutil.copyfile(copy, s.db)
        s.orch = s.start_orchestrator()
        c2 = Orch(s.endpoint)
        s.wait_agent(c2, "echo", 2)
        some = sorted(ended_before)[0]
        status, run = c2.reply(c2.call("run", run_id=some))
        assert status == 200 and run["status"] == "done"
        status, doc = c2.reply(c2.call("events", run_id=some))
        assert [e["seq"] for e in doc["events"]] == [e[0] for e in runs[some][1]]
        status, _ = c2.reply(c2.call("run", run_id=after[-1]))
        assert status == 404  # the store is the copy
        status, run = c2.reply(c2.call("invoke", session_id="after-restore", agent_id="echo",
                                       role="user", content="still here", follow=True))
        assert status == 200 and run["status"] == "done"
    finally:
        if load:
            load.stop = True
        s.close()


def test_refusals_are_one_line():
    s = Stack(echo_workers=0)
    try:
        c = s.client()
        wait_until(lambda: c.wait_final(c.call("health"))[-1][0] == REPLY, timeout=15, step=0.1,
                   what="the orchestrator to serve")
        d = s.procs.dir
        # An existing destination is left alone.
        existing = os.path.join(d, "exists.db")
        with open(existing, "w") as f:
            f.write("mine")
        cases = [
            (("backup", existing, "--db", s.db), 1, "already exists"),
            (("backup", os.path.join(d, "x.db"), "--db", os.path.join(d, "none.db")), 1,
             "No such file"),
            (("backup", os.path.join(d, "no/such/dir/x.db"), "--db", s.db), 1, "cannot create"),
            (("check", "--db", os.path.join(d, "none.db")), 1, "No such file"),
            (("check", "--db", existing), 1, "not a database"),
            (("backup",), 2, "needs the PATH"),
            (("check", "--frob"), 2, "unknown flag '--frob'"),
            (("check", "--db"), 2, "needs a value"),
            (("backup", os.path.join(d, "y.db"), "--step-pages", "0"), 2, "--step-pages"),
            (("restore",), 2, "unknown command 'restore'"),
            ((), 2, "a command is needed"),
        ]
        for args, code, text in cases:
            rc, out, err = admin(*args)
            lines = err.strip().splitlines()
            assert rc == code and len(lines) == 1 and text in lines[0], (args, rc, out, err)
        with open(existing) as f:
            assert f.read() == "mine"
        # A damaged copy fails the check.
        good = os.path.join(d, "good.db")
        rc, out, err = admin("backup", good, "--db", s.db)
        assert rc == 0, err
        assert admin("check", "--db", good)[0] == 0
        size = os.path.getsize(good)
        with open(good, "r+b") as f:  # the schema page's cells
            f.seek(100)
            f.write(b"\xff" * 400)
        rc, out, err = admin("check", "--db", good)
        assert rc == 1 and len(err.strip().splitlines()) == 1 and "good.db" in err, (rc, err, size)
        for args in (("--help",), ("backup", "--help"), ("check", "--help")):
            rc, out, err = admin(*args)
            assert rc == 0 and "usage: map-admin backup PATH" in out, (args, out, err)
    finally:
        s.close()
