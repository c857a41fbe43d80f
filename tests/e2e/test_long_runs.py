"""Runs of any length read back whole (SPEC §3, §4; issue 12): a
100,000-event run by JSON pages, by an SSE client that reads slowly (curl
with a rate limit) and by a slow WebSocket client resuming from seq 0;
one 600,000-character message. Each reader gets every event once, in
order, ending with the run's terminal event."""
import asyncio
import json
import subprocess
import time

import websockets

from conftest import parse_sse
from mapclient import wait_until

TERMINAL = {"run_done", "run_failed", "run_cancelled"}
WORDS = 100000


def invoke(edge, session, content):
    body = json.dumps({"session_id": session, "agent_id": "echo",
                       "input_message": {"role": "user", "content": content}})
    st, text, hdrs = edge.curl("POST", "/internal/invoke", body, raw=True, timeout=300)
    assert st == 200, (st, text[:300])
    return hdrs["x-run-id"], parse_sse(text)


def pages(edge, run_id, limit):
    events, after = [], 0
    for _ in range(1000):
        st, doc, _ = edge.curl("GET", "/v1/runs/%s/events?after_seq=%d&limit=%d" % (run_id, after, limit))
        assert st == 200, doc
        events += doc["events"]
        if not doc["has_more"]:
            return events
        assert doc["next_after_seq"] == events[-1]["seq"]
        after = doc["next_after_seq"]
    raise AssertionError("no end of pages")


def check_whole(events, n_deltas):
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "not gapless or not once each"
    assert events[-1]["type"] == "run_done"
    assert sum(e["type"] in TERMINAL for e in events) == 1
    assert sum(e["type"] == "agent_stream_delta" for e in events) == n_deltas


def test_a_long_run_read_back_every_way(edge):
    content = " ".join("w%d" % (i % 10) for i in range(WORDS))
    run_id, streamed = invoke(edge, "long1", content)
    # The live SSE answer of /internal/invoke: the whole run, once each.
    check_whole([e[2] for e in streamed], WORDS)

    # JSON pages, at the maximum page size and the default one.
    check_whole(pages(edge, run_id, 10000), WORDS)
    assert len(pages(edge, run_id, 1000)) == len(streamed)

    # SSE replay read slowly (curl at 4 MB/s: the edge paces the replay by
    # the socket, never queuing it whole).
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "240", "--limit-rate", "4M",
                          "-H", "Accept: text/event-stream", edge.url("/v1/runs/%s/events" % run_id)],
                         capture_output=True, check=True).stdout.decode()
    check_whole([e[2] for e in parse_sse(out)], WORDS)
    # Last-Event-ID: from there on.
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "120", "-H", "Last-Event-ID: 99990",
                          edge.url("/v1/runs/%s/events" % run_id)],
                         capture_output=True, check=True).stdout.decode()
    tail = [e[2] for e in parse_sse(out)]
    assert [e["seq"] for e in tail] == list(range(99991, len(streamed) + 1))

    # A slow WebSocket client resumes from 0: every event once, in order.
    async def slow_resume():
        async with websockets.connect(edge.ws_url(), max_queue=4, read_limit=2 ** 14,
                                      max_size=2 ** 22) as ws:
            await ws.send(json.dumps({"type": "hello", "session_id": "long1"}))
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "resume", "run_id": run_id, "after_seq": 0}))
            got = []
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if m["type"] != "event":
                    continue
                got.append(m["event"])
                if len(got) % 5000 == 0:
                    await asyncio.sleep(0.2)  # a slow reader
                if m["event"]["type"] in TERMINAL:
                    return got
    got = asyncio.run(asyncio.wait_for(slow_resume(), 240))
    check_whole(got, WORDS)
    st, text, _ = edge.curl("GET", "/metrics", raw=True)
    assert "map_ingress_slow_clients_closed_total 0" in text


def test_one_600000_character_message(edge):
    word = "y" * 600000
    run_id, streamed = invoke(edge, "big1", word)
    events = [e[2] for e in streamed]
    check_whole(events, 1)
    assert events[-2]["payload"]["output"]["content"] == word
    check_whole(pages(edge, run_id, 1000), 1)
    # Two 600,000-character messages do not fit one answer: pages, back.
    got, before = [], ""
    for _ in range(10):
        st, doc, _ = edge.curl("GET", "/v1/sessions/big1/messages" + before)
        assert st == 200 and doc["messages"], doc
        got = doc["messages"] + got
        assert all(isinstance(m["message_id"], str) for m in doc["messages"])
        if not doc["has_more"]:
            break
        before = "?before=" + doc["messages"][0]["message_id"]
    assert [(m["role"], m["content"]) for m in got] == [("user", word), ("assistant", word)]
    # The session stays readable, and runs after it work.
    run2, streamed2 = invoke(edge, "big1", "after")
    check_whole([e[2] for e in streamed2], 1)
