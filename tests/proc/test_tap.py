"""The tap tool against a real broker: it shows the frames of a request in
order, and shows rejected frames instead of hiding them."""
import json
import os
import subprocess
import time

import msgpack

from mapclient import REPLY, Peer, Procs, binary, free_port, wait_until


def test_tap_shows_a_request_in_order_and_rejected_frames():
    procs = Procs()
    try:
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        tap = "tcp://127.0.0.1:%d" % free_port()
        broker = procs.start("map-broker", "--endpoint", endpoint, "--tap", tap,
                             "--heartbeat-ms", 1000, "--log-level", "info")
        procs.start("map-echo", "--broker", endpoint, "--delay-ms", 0)
        out_path = os.path.join(procs.dir, "tap.out")
        out = open(out_path, "wb")
        tapper = subprocess.Popen([binary("map-tap"), "--tap", tap, "--json"], stdout=out,
                                  stderr=subprocess.STDOUT)
        procs.procs.append(tapper)
        tapper.log = out_path
        # The broker logs when the tap's subscription reaches it.
        wait_until(lambda: b"tap.subscribers topics=1" in open(broker.log, "rb").read(),
                   what="the tap to subscribe")
        client = Peer(endpoint, "tap-test", 0)
        time.sleep(0.3)  # the echo worker announces itself
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
