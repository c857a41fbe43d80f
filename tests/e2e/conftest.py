"""The whole stack on free ports for end-to-end tests: broker, orchestrator,
echo workers (fast `echo`, paced `slow`), ingress; stopped by PID."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from mapclient import Procs, free_port, wait_until  # noqa: E402


class Edge:
    def __init__(self, api_key=None, ingress_args=(), orch_args=(), bridge=False):
        self.orch_args = orch_args
        self.procs = Procs()
        try:
            self._start(api_key, ingress_args, bridge)
        except BaseException:
            self.procs.stop_all(check=False)  # no process outlives a failed start
            raise

    def _start(self, api_key, ingress_args, bridge):
        self.broker_ep = "tcp://127.0.0.1:%d" % free_port()
        self.http = "127.0.0.1:%d" % free_port()
        self.db = os.path.join(self.procs.dir, "map.db")
        self.api_key = api_key
        self.broker = self.procs.start("map-broker", "--endpoint", self.broker_ep, "--tap", "",
                                       "--heartbeat-ms", 250, "--log-level", "warn")
        self.orch = self.start_orchestrator()
        for _ in range(2):
            self.procs.start("map-echo", "--broker", self.broker_ep, "--delay-ms", 0,
                             "--heartbeat-ms", 250)
        self.procs.start("map-echo", "--broker", self.broker_ep, "--agent", "slow",
                         "--delay-ms", 30, "--heartbeat-ms", 250)
        if bridge:
            self.procs.start("map-bridge", "--broker", self.broker_ep, "--heartbeat-ms", 250,
                             "--public-url", "http://" + self.http)
        env = {"MAP_API_KEY": api_key} if api_key else {}
        self.ingress = self.procs.start("map-ingress", "--broker", self.broker_ep, "--http-addr",
                                        self.http, "--heartbeat-ms", 250, *ingress_args, env=env)
        wait_until(lambda: self.curl("GET", "/health")[0] == 200, timeout=15,
                   what="the stack to be healthy")
        wait_until(lambda: {"echo", "slow"} <= {a["agent_id"] for a in
                   self.curl("GET", "/v1/agents")[1].get("agents", [])}, timeout=15,
                   what="the agents to register")

    def start_orchestrator(self):
        return self.procs.start("map-orchestrator", "--broker", self.broker_ep, "--db", self.db,
                                "--heartbeat-ms", 250, *self.orch_args)

    def url(self, path):
        return "http://%s%s" % (self.http, path)

    def ws_url(self):
        return "ws://%s/ws" % self.http

    def curl(self, method, path, body=None, headers=(), raw=False, timeout=20):
        """(status, parsed JSON body or text, response headers) via curl."""
        args = ["curl", "-s", "-S", "-N", "-X", method, "-D", "-", "--max-time", str(timeout)]
        if self.api_key:
            args += ["-H", "Authorization: Bearer " + self.api_key]
        for h in headers:
            args += ["-H", h]
        if body is not None:
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        else:
            data = None
        r = subprocess.run(args + [self.url(path)], input=data.encode() if isinstance(data, str) else data,
                           capture_output=True, timeout=timeout + 5)
        out = r.stdout.decode(errors="replace")
        head, _, rest = out.partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP") else 0
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if raw:
            return status, rest, hdrs
        try:
            return status, json.loads(rest), hdrs
        except ValueError:
            return status, rest, hdrs

    def close(self):
        self.procs.stop_all()


def parse_sse(text):
    """SSE text → list of (id, event, data dict)."""
    out = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            k, _, v = line.partition(": ")
            fields[k] = v
        if "data" in fields:
            out.append((fields.get("id"), fields.get("event"), json.loads(fields["data"])))
    return out


@pytest.fixture(scope="module")
def edge():
    e = Edge()
    yield e
    e.close()
