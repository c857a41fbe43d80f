"""deploy/supervisord.conf (what ./scripts/run.sh runs) starts the Python
echo agent next to map-echo, MAP_ECHO_WORKERS processes of each, and it
serves runs; supervisord's SIGTERM stops them all."""
import json
import os
import signal
import subprocess
import tempfile

import httpx

from mapclient import BUILD, free_port, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_supervisord_starts_py_echo():
    run_dir = tempfile.mkdtemp(prefix="map-pydeploy-")
    http = "127.0.0.1:%d" % free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAP_")}
    env.update({"MAP_BIN": os.path.join(BUILD, "bin"), "MAP_HOME": ROOT, "MAP_RUN_DIR": run_dir,
                "MAP_ECHO_WORKERS": "2", "MAP_BROKER": "tcp://127.0.0.1:%d" % free_port(),
                "MAP_TAP": "tcp://127.0.0.1:%d" % free_port(), "MAP_HTTP_ADDR": http,
                "MAP_DB": os.path.join(run_dir, "map.db"),
                "MAP_DEMO_AGENT_ADDR": "127.0.0.1:%d" % free_port(), "MAP_HEARTBEAT_MS": "250",
                "MAP_LOG_LEVEL": "warn"})
    conf = os.path.join(ROOT, "deploy", "supervisord.conf")
    sup = subprocess.Popen(["supervisord", "-n", "-c", conf], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = []
    client = httpx.Client(base_url="http://" + http, timeout=30)
    try:
        def listed():
            try:
                r = client.get("/v1/agents")
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and "py-echo" in [a["agent_id"] for a in r.json()["agents"]]
        wait_until(listed, timeout=40, step=0.2, what="py-echo to register")
        # a program is STARTING until it has been up for startsecs (1 s):
        # it may register with the broker before supervisord calls it RUNNING
        def py_echo_rows():
            status = subprocess.run(["supervisorctl", "-c", conf, "status"], env=env,
                                    capture_output=True, text=True, timeout=20).stdout
            return [l.split() for l in status.splitlines() if l.startswith("py-echo:")]
        wait_until(lambda: [r[1] for r in py_echo_rows()] == ["RUNNING", "RUNNING"],
                   timeout=20, step=0.2, what="both py-echo processes RUNNING")
        rows = py_echo_rows()
        pids = [int(r[3].rstrip(",")) for r in rows]
        r = client.post("/internal/invoke", json={
            "session_id": "pd1", "agent_id": "py-echo",
            "input_message": {"role": "user", "content": "hello from python"}})
        events = [json.loads(l[6:]) for l in r.text.splitlines() if l.startswith("data: ")]
        assert events[-1]["type"] == "run_done", events
        assert [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"] == \
            ["hello ", "from ", "python"]
    finally:
        client.close()
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid), "py-echo %d outlived supervisord" % pid
