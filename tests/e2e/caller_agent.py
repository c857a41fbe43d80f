"""caller: a test agent that calls another agent (SPEC §7) the way a native
worker does, from proto/ORCHESTRATOR.md's op `call` alone: it serves
`agent.<id>` on the broker, and for each invoke sends op `call` to the
`orchestrator` service with the run id and token of the invoke's
`platform`, reads the child's events (STREAM) and end (REPLY), then
answers "caller heard: <the child's answer>".

    caller_agent.py <broker endpoint> <agent id> <callee agent id> [gate file]

With a gate file, each call waits until that file exists (a test opens the
gate when it is ready to watch the call, no sleeping on either side).

One request at a time (capacity 1), two DEALERs (the worker, and a
requester for the calls), heartbeats on both every 200 ms. A CANCEL of the
invoke cancels the call. Runs until killed (SIGTERM, by PID)."""
import json
import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from mapclient import (CANCEL, DISCONNECT, ERROR, HEARTBEAT, READY, REPLY, REQUEST,  # noqa: E402
                       STREAM, V)

PREFIX = "caller heard: "
HEARTBEAT_S = 0.2
MAX_LIFE_S = 3600  # a test agent never outlives its test by much


def main():
    endpoint, agent_id, callee = sys.argv[1], sys.argv[2], sys.argv[3]
    gate = sys.argv[4] if len(sys.argv) > 4 else None
    ctx = zmq.Context.instance()

    def dealer(service, capacity):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart([msgpack.packb([V, READY, service, capacity])])
        return s, service, capacity

    worker = dealer("agent." + agent_id, 1)
    calls = dealer(agent_id + "-calls", 0)

    def send(peer, header, body=None):
        parts = [msgpack.packb(header)]
        if body is not None:
            parts.append(msgpack.packb(body))
        peer[0].send_multipart(parts)

    poller = zmq.Poller()
    poller.register(worker[0], zmq.POLLIN)
    poller.register(calls[0], zmq.POLLIN)
    job = None  # the invoke being served: {"id", "rid", "deltas", "output"}
    next_rid = 1
    last_hb = 0.0
    born = time.monotonic()

    def fail(message):
        nonlocal job
        send(worker, [V, ERROR, job["id"], "agent_error", message[:500]])
        print("caller: failed:", message, flush=True)
        job = None

    def on_invoke(rid, inv):
        nonlocal job, next_rid
        platform = inv.get("platform") if isinstance(inv, dict) else None
        job = {"id": rid, "rid": next_rid, "deltas": "", "output": None, "inv": inv,
               "waiting": True}
        if not isinstance(platform, dict) or "token" not in platform:
            fail("the invoke has no platform token")
            return
        next_rid += 1
        send(worker, [V, STREAM, rid], {"delta": PREFIX})

    def start_call():
        inv = job["inv"]
        job["waiting"] = False
        send(calls, [V, REQUEST, job["rid"], "orchestrator"], {
            "op": "call", "run_id": inv["run_id"], "token": inv["platform"]["token"],
            "call_id": "c1", "agent_id": callee, "role": "user", "content": inv["input"]["content"]})
        print("caller: run %s calls %s" % (inv["run_id"], callee), flush=True)

    def on_call_frame(h, body):
        nonlocal job
        if job is None or h[2] != job["rid"]:
            return
        if h[1] == STREAM:
            b = msgpack.unpackb(body)
            if "event" in b:
                ev = json.loads(b["event"])
                p = ev.get("payload") or {}
                if ev["type"] == "agent_stream_delta":
                    job["deltas"] += p.get("delta", "")
                elif ev["type"] == "agent_invoke_done":
                    job["output"] = p["output"]["content"]
        elif h[1] == REPLY:
            b = msgpack.unpackb(body)
            doc = json.loads(b["json"])
            if b["status"] != 200:
                fail("call refused: %d %s" % (b["status"], json.dumps(doc)))
                return
            if doc.get("status") != "done":
                fail("the child run ended %s" % doc.get("status"))
                return
            text = job["output"] if job["output"] is not None else job["deltas"]
            send(worker, [V, STREAM, job["id"]], {"delta": text})
            send(worker, [V, REPLY, job["id"]], {"output": {"role": "assistant",
                                                            "content": PREFIX + text}})
            job = None
        elif h[1] == ERROR:
            fail("call failed: %s %s" % (h[3], h[4]))

    while time.monotonic() - born < MAX_LIFE_S:
        now = time.monotonic()
        if now - last_hb >= HEARTBEAT_S:
            for peer in (worker, calls):
                send(peer, [V, HEARTBEAT])
            last_hb = now
        if job is not None and job["waiting"] and (gate is None or os.path.exists(gate)):
            start_call()
        for sock, _ in poller.poll(50):
            parts = sock.recv_multipart()
            h = msgpack.unpackb(parts[0])
            body = parts[1] if len(parts) > 1 else None
            peer = worker if sock is worker[0] else calls
            if h[1] == DISCONNECT:
                send(peer, [V, READY, peer[1], peer[2]])
            elif h[1] == HEARTBEAT:
                pass
            elif peer is worker and h[1] == REQUEST:
                if job is not None:
                    send(worker, [V, ERROR, h[2], "overloaded", "one at a time"])
                else:
                    on_invoke(h[2], msgpack.unpackb(body))
            elif peer is worker and h[1] == CANCEL:
                if job is not None and job["id"] == h[2]:
                    if not job["waiting"]:
                        send(calls, [V, CANCEL, job["rid"]])
                    send(worker, [V, ERROR, h[2], "cancelled", "cancelled"])
                    job = None
            elif peer is calls:
                on_call_frame(h, body)


if __name__ == "__main__":
    main()
