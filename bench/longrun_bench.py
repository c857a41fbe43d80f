#!/usr/bin/python3
"""bench_longrun: one long run read back every way, with the edge's and the
orchestrator's memory watched (issue 12: reads of any length, bounded
memory). Real processes from the build (Release via ./scripts/bench.sh):
broker, orchestrator, 2 echo workers (no delay), ingress. Phases:

  invoke   a WORDS-word run through POST /internal/invoke (SSE, live)
  pages    GET .../events pages of 10000 until has_more is false
  sse      GET .../events as SSE, read by curl at --rate bytes/s
  resume   a WebSocket resume from seq 0 by a client that reads slowly

Each phase checks every event once, in order; the RSS of map-ingress and
map-orchestrator is sampled every 50 ms. Prints one line per phase, then
one JSON object.
  usage: bench_longrun [--words N] [--rate BYTES]"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The build writes the source and build folders in (configure_file @ONLY).
SRC = os.environ.get("MAP_SOURCE_DIR", "@CMAKE_SOURCE_DIR@")
if SRC.startswith("@"):
    SRC = os.path.join(HERE, "..")
os.environ.setdefault("MAP_BUILD_DIR", "@CMAKE_BINARY_DIR@" if not "@CMAKE_BINARY_DIR@".startswith("@")
                      else os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "support"))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
from mapclient import Procs, free_port, wait_until  # noqa: E402
import websockets  # noqa: E402

TERMINAL = {"run_done", "run_failed", "run_cancelled"}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Watch(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = pids, {p: 0 for p in pids}, False

    def run(self):
        while not self.stop:
            for p in self.pids:
                try:
                    self.peak[p] = max(self.peak[p], rss_kb(p))
                except OSError:
                    pass
            time.sleep(0.05)

    def take(self):
        out = dict(self.peak)
        self.peak = {p: 0 for p in self.pids}
        return out


def sse_events(text):
    for block in text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                yield json.loads(line[6:])


def check(events, n):
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "not gapless or not once each"
    assert events[-1]["type"] == "run_done", events[-1]
    assert sum(e["type"] == "agent_stream_delta" for e in events) == n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--words", type=int, default=100000)
    ap.add_argument("--rate", type=int, default=8 << 20)
    a = ap.parse_args()
    procs = Procs()
    try:
        broker = "tcp://127.0.0.1:%d" % free_port()
        http = "127.0.0.1:%d" % free_port()
        db = os.path.join(procs.dir, "map.db")
        procs.start("map-broker", "--endpoint", broker, "--tap", "", "--log-level", "warn")
        orch = procs.start("map-orchestrator", "--broker", broker, "--db", db, "--log-level", "warn")
        for _ in range(2):
            procs.start("map-echo", "--broker", broker, "--delay-ms", 0, "--log-level", "warn")
        ing = procs.start("map-ingress", "--broker", broker, "--http-addr", http, "--log-level", "warn")
        url = "http://" + http

        def curl(*args, timeout=600):
            return subprocess.run(["curl", "-sS", "-N", "--max-time", str(timeout)] + list(args),
                                  capture_output=True, check=True).stdout.decode()
        wait_until(lambda: '"ok"' in subprocess.run(["curl", "-s", url + "/health"],
                   capture_output=True).stdout.decode(), timeout=20, what="the stack")
        wait_until(lambda: '"echo"' in curl(url + "/v1/agents"), timeout=20, what="echo")
        w = Watch([ing.pid, orch.pid])
        idle = {p: rss_kb(p) for p in w.pids}
        w.start()
        figures = {"words": a.words, "idle_rss_kb": {"ingress": idle[ing.pid],
                                                    "orchestrator": idle[orch.pid]}}

        def phase(name, fn):
            t0 = time.monotonic()
            events = fn()
            dt = time.monotonic() - t0
            check(events, a.words)
            peak = w.take()
            row = {"events": len(events), "seconds": round(dt, 3),
                   "events_per_s": round(len(events) / dt),
                   "peak_rss_kb": {"ingress": peak[ing.pid], "orchestrator": peak[orch.pid]}}
            figures[name] = row
            print("%-7s %7d events in %6.2f s (%8d/s)  peak RSS ingress %6.1f MB, orchestrator %6.1f MB"
                  % (name, len(events), dt, row["events_per_s"], peak[ing.pid] / 1024,
                     peak[orch.pid] / 1024), flush=True)
            return events

        body = json.dumps({"session_id": "bench", "agent_id": "echo",
                           "input_message": {"role": "user",
                                             "content": " ".join("w%d" % (i % 10) for i in range(a.words))}})
        run = {}

        def invoke():
            out = subprocess.run(["curl", "-sS", "-N", "-D", "-", "--max-time", "600", "-X", "POST",
                                  "--data-binary", "@-", "-H", "Content-Type: application/json",
                                  url + "/internal/invoke"], input=body.encode(),
                                 capture_output=True, check=True).stdout.decode()
            head, _, rest = out.partition("\r\n\r\n")
            run["id"] = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
                         if l.lower().startswith("x-run-id:")][0]
            return list(sse_events(rest))
        phase("invoke", invoke)

        def pages():
            events, after = [], 0
            while True:
                doc = json.loads(curl("%s/v1/runs/%s/events?after_seq=%d&limit=10000" % (url, run["id"], after)))
                events += doc["events"]
                if not doc["has_more"]:
                    return events
                after = doc["next_after_seq"]
        phase("pages", pages)
        phase("sse", lambda: list(sse_events(curl("--limit-rate", str(a.rate), "-H",
                                                  "Accept: text/event-stream",
                                                  "%s/v1/runs/%s/events" % (url, run["id"])))))

        async def resume():
            async with websockets.connect("ws://%s/ws" % http, max_queue=4, read_limit=2 ** 14,
                                          max_size=2 ** 22) as ws:
                await ws.send(json.dumps({"type": "hello", "session_id": "bench"}))
                await ws.recv()
                await ws.send(json.dumps({"type": "resume", "run_id": run["id"], "after_seq": 0}))
                got = []
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if m["type"] != "event":
                        continue
                    got.append(m["event"])
                    if len(got) % 5000 == 0:
                        await asyncio.sleep(0.05)
                    if m["event"]["type"] in TERMINAL:
                        return got
        phase("resume", lambda: asyncio.run(resume()))
        w.stop = True
        print(json.dumps(figures))
    finally:
        procs.stop_all(check=False)


if __name__ == "__main__":
    main()
