"""Operations: the real supervisord with deploy/supervisord.conf on free
ports; each component SIGKILLed in turn while runs stream; supervisord
restarts it, service resumes, and every run in the store ends with exactly
one terminal event after a gapless log. (The systemd units are generated at
install: tests/ops/test_install.py verifies the installed ones.)"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time

from mapclient import free_port, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MAP_BUILD_DIR", os.path.join(ROOT, "build"))


def sh(args, env, timeout=20):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def curl(http, method, path, body=None, timeout=20):
    args = ["curl", "-s", "-N", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--max-time",
            str(timeout), "http://%s%s" % (http, path)]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 5)
    text, _, code = r.stdout.rpartition("\n")
    return int(code or 0), text


def test_supervisor_restarts_every_component_and_nothing_is_lost():
    run_dir = tempfile.mkdtemp(prefix="map-deploy-")
    http = "127.0.0.1:%d" % free_port()
    env = dict(os.environ)
    env.update({"MAP_BIN": os.path.join(BUILD, "bin"), "MAP_HOME": ROOT, "MAP_RUN_DIR": run_dir,
                "MAP_ECHO_WORKERS": "2", "MAP_BROKER": "tcp://127.0.0.1:%d" % free_port(),
                "MAP_TAP": "tcp://127.0.0.1:%d" % free_port(), "MAP_HTTP_ADDR": http,
                "MAP_DB": os.path.join(run_dir, "map.db"),
                "MAP_DEMO_AGENT_ADDR": "127.0.0.1:%d" % free_port(),
                "MAP_DELEGATE_AGENT_ADDR": "127.0.0.1:%d" % free_port(), "MAP_HEARTBEAT_MS": "250",
                "MAP_LOG_LEVEL": "warn"})
    conf = os.path.join(ROOT, "deploy", "supervisord.conf")
    sup = subprocess.Popen(["supervisord", "-n", "-c", conf], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctl = ["supervisorctl", "-c", conf]
    try:
        wait_until(lambda: curl(http, "GET", "/health")[0] == 200, timeout=30, what="health")
        wait_until(lambda: '"demo"' in curl(http, "GET", "/v1/agents")[1] and
                   '"echo"' in curl(http, "GET", "/v1/agents")[1], timeout=30,
                   what="echo and the registered demo agent")

        def pid(name):
            out = sh(ctl + ["pid", name], env).stdout.strip()
            return int(out) if out.isdigit() else 0

        results = []

        def stream(i):
            code, text = curl(http, "POST", "/internal/invoke",
                              {"session_id": "kill-%d" % i, "agent_id": "echo",
                               "input_message": {"role": "user", "content": " ".join(["w"] * 80)}},
                              timeout=30)
            results.append((code, text))

        for n, name in enumerate(["echo:echo_00", "bridge", "ingress", "orchestrator", "broker"]):
            threads = [threading.Thread(target=stream, args=(n * 10 + i,)) for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.15)
            before = pid(name)
            assert before > 0, name
            os.kill(before, signal.SIGKILL)
            wait_until(lambda: pid(name) not in (0, before), timeout=20,
                       what="supervisord to restart " + name)
            for t in threads:
                t.join(40)
            wait_until(lambda: curl(http, "GET", "/health")[0] == 200, timeout=30,
                       what="health after killing " + name)

            def served():
                code, text = curl(http, "POST", "/internal/invoke",
                                  {"session_id": "after-%d" % n, "agent_id": "echo",
                                   "input_message": {"role": "user", "content": "back"}})
                return code == 200 and "run_done" in text
            wait_until(served, timeout=30, step=0.3, what="a run to complete after killing " + name)
        # The demo agent through the bridge still works after all that, once
        # the bridge is back on the restarted broker (each worker reconnects
        # at its own pace; until then its runs fail agent_unavailable).
        def demo_served():
            code, text = curl(http, "POST", "/internal/invoke",
                              {"session_id": "demo-end", "agent_id": "demo",
                               "input_message": {"role": "user", "content": "hello"}})
            if code == 200 and "run_done" in text:
                return True
            assert code == 200 and "agent_unavailable" in text, text
            return False
        wait_until(demo_served, timeout=30, step=0.3, what="the demo agent after the broker restart")
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
    # Everything supervisord started has stopped.
    left = subprocess.run(["pgrep", "-f", run_dir], capture_output=True, text=True).stdout.split()
    assert not [p for p in left if int(p) != os.getpid()], left
    # The store: every run gapless with exactly one terminal event.
    db = sqlite3.connect(env["MAP_DB"])
    runs = db.execute("select run_id, status from runs").fetchall()
    assert len(runs) >= 20
    for run_id, status in runs:
        rows = db.execute("select seq, type from events where run_id=? order by seq", (run_id,)).fetchall()
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), run_id
        terminal = [r[1] for r in rows if r[1] in ("run_done", "run_failed", "run_cancelled")]
        assert terminal == [rows[-1][1]] and status in ("done", "failed", "cancelled"), (run_id, rows)
    shutil.rmtree(run_dir, ignore_errors=True)
