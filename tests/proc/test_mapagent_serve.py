"""What a handler's behaviour becomes on the wire: serve() of the mapagent
SDK in a thread of this process, facing the conformance suite's fake
broker. Covers the handler contract of README "Writing an agent in Python"
that the conformance agent does not exercise: call.output, a non-str
delta, an invalid output, a handler that swallows CancelledError, an
answer that outgrows the frame limit with and without call.output, an
exception without a message, a CancelledError the handler raises itself, a
str that cannot be encoded, a plain coroutine handler, draining, a handler
that never awaits and outruns the broker."""
import asyncio
import logging
import os
import sys
import threading
import time

import msgpack
import pytest
import zmq

from mapclient import (CANCEL, ERROR, HEARTBEAT, READY, REPLY, REQUEST, SERVICES, STREAM, V,
                       free_port)
from test_conformance import FakeBroker, invoke

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "agents", "python"))
from mapagent import Agent, Config, serve  # noqa: E402

SERVICE = "agent.unit"
seen = []  # what handlers observed, for the assertions
flags = {"quick": False}  # set by the "quick" handler once it has run
FLOOD_MAX = 5000000  # the flood's bound if "quick" never gets to run


def make_agent():
    agent = Agent("unit", capacity=4)

    @agent.handler
    async def handle(call):
        c = call.input["content"]
        if c == "setout":
            yield "a"
            call.output = {"role": "assistant", "content": "other"}
        elif c == "nonstr":
            yield 5
        elif c == "badout":
            call.output = {"content": 3}
        elif c == "badrole":
            call.output = {"role": "r" * 33, "content": "x"}
        elif c == "overflow":
            for _ in range(3):
                yield "y" * 30000
        elif c == "overflow-out":
            for _ in range(3):
                yield "y" * 30000
            call.output = {"role": "assistant", "content": "small"}
        elif c == "swallow":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen.append("swallowed")
            yield "after the cancel"
            seen.append("not stopped")
        elif c == "noname":
            raise KeyError()
        elif c == "selfcancel":
            raise asyncio.CancelledError()
        elif c == "surrogate":
            yield "\udc80"
        elif c == "flood":
            # Never awaits, and ends only once "quick" has run: only if the
            # SDK gives the loop to the other handler between its deltas.
            i = 0
            while not flags["quick"] and i < FLOOD_MAX:
                yield "%d " % i
                i += 1
            # The join is over 64 KiB: the output is set.
            call.output = {"role": "assistant", "content": "flooded %d" % i}
        elif c == "quick":
            yield "quick"
            flags["quick"] = True  # its REPLY is queued in this same turn of the loop
        elif c == "slow":
            yield "s"
            await asyncio.sleep(0.5)
        else:
            yield c
    return agent


class Served:
    """serve(agent) in a thread with its own loop; stop() drains it."""

    def __init__(self, agent, endpoint, **kw):
        self.cfg = Config(agent.service, agent.capacity, endpoint=endpoint, heartbeat_ms=200,
                          body_max=65536, **kw)
        self.loop = asyncio.new_event_loop()
        self.stop_ev = None
        ready = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)

            async def go():
                self.stop_ev = asyncio.Event()
                ready.set()
                await serve(agent, self.cfg, self.stop_ev)
            self.loop.run_until_complete(go())
            self.loop.close()
        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_ev.set)
            self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def fb():
    b = FakeBroker("tcp://127.0.0.1:%d" % free_port())
    b.served = Served(make_agent(), b.sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    b.expect(lambda h, _: h[1] == READY, what="READY")
    b.expect(lambda h, _: h[1] == SERVICES, what="the probe")
    seen.clear()
    flags["quick"] = False
    yield b
    b.served.stop()
    b.close()


def ask(b, rid, content):
    b.send([V, REQUEST, rid, SERVICE], invoke(content))
    deltas, h, body = b.final(rid)
    return deltas, h, (msgpack.unpackb(body)["output"]["content"] if h[1] == REPLY else None)


def test_output_and_failures(fb):
    assert ask(fb, 1, "setout") == (["a"], [V, REPLY, 1], "other")
    assert ask(fb, 2, "nonstr")[1] == [V, ERROR, 2, "agent_error", "the handler yielded int, not str"]
    assert ask(fb, 3, "badout")[1] == [V, ERROR, 3, "agent_error",
                                       'call.output must be {"role": str (1 to 32 bytes), '
                                       '"content": str}']
    assert ask(fb, 13, "badrole")[1][:4] == [V, ERROR, 13, "agent_error"]
    deltas, h, _ = ask(fb, 4, "overflow")
    assert [len(d) for d in deltas] == [30000] * 3
    assert h == [V, ERROR, 4, "agent_error", "answer too large"]
    deltas, h, out = ask(fb, 5, "overflow-out")
    assert len(deltas) == 3 and h == [V, REPLY, 5] and out == "small"
    assert ask(fb, 6, "noname")[1] == [V, ERROR, 6, "agent_error", "KeyError"]
    assert ask(fb, 7, "") == ([], [V, REPLY, 7], "")
    # a CancelledError the handler raises itself (no cancel of ours) still ends the run
    assert ask(fb, 8, "selfcancel")[1] == [V, ERROR, 8, "agent_error", "CancelledError"]
    # a str msgpack cannot encode (a lone surrogate) is the handler's failure
    assert ask(fb, 9, "surrogate")[1][:4] == [V, ERROR, 9, "agent_error"]
    assert ask(fb, 10, "still serving")[1] == [V, REPLY, 10]


def test_a_handler_that_swallows_the_cancel_is_stopped(fb):
    fb.send([V, REQUEST, 11, SERVICE], invoke("swallow"))
    fb.pump(0.3)
    fb.send([V, CANCEL, 11])
    deltas, h, _ = fb.final(11)
    assert deltas == [] and h[:4] == [V, ERROR, 11, "cancelled"]
    assert ask(fb, 12, "next") == (["next"], [V, REPLY, 12], "next")
    assert seen == ["swallowed"], "stopped at its next yield: nothing after it ran or was sent"
    assert not [h for h, _ in fb.seen if h[1] != ERROR and len(h) > 2 and h[2] == 11]


def test_drain_finishes_running_and_refuses_new(fb):
    fb.send([V, REQUEST, 21, SERVICE], invoke("slow"))
    fb.expect(lambda h, _: h[:3] == [V, 5, 21], what="the first delta")
    fb.served.loop.call_soon_threadsafe(fb.served.stop_ev.set)
    fb.pump(0.1)
    fb.send([V, REQUEST, 22, SERVICE], invoke("late"))
    assert fb.final(22)[1][:4] == [V, ERROR, 22, "worker_stopping"]
    assert fb.final(21)[1] == [V, REPLY, 21]
    fb.expect(lambda h, _: h == [V, 3], what="DISCONNECT")


def test_coroutine_handler():
    b = FakeBroker("tcp://127.0.0.1:%d" % free_port())
    agent = Agent("unit", capacity=1)

    @agent.handler
    async def whole(call):
        await asyncio.sleep(0)
        return call.input["content"].upper()
    s = Served(agent, b.sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    try:
        b.expect(lambda h, _: h[1] == READY, what="READY")
        b.expect(lambda h, _: h[1] == SERVICES, what="the probe")
        assert ask(b, 1, "shout") == ([], [V, REPLY, 1], "SHOUT")
    finally:
        s.stop()
        b.close()


def test_a_handler_that_never_awaits_shares_the_loop(fb, caplog):
    """A handler that yields without an await, faster than the broker reads:
    while the broker reads nothing (it heartbeats only) the agent's socket
    fills and the handler is paused, not cut; a request sent then (within
    the capacity of 4) is served, which alone ends the flood; every delta
    arrives, in order, and the quick answer comes first."""
    caplog.set_level(logging.DEBUG, logger="mapagent")
    fb.send([V, REQUEST, 31, SERVICE], invoke("flood"))
    fb.expect(lambda h, _: h[:3] == [V, STREAM, 31], what="the flood's first delta")

    def warned():
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    def waiting():
        return any(r.getMessage().startswith("worker.send_wait") for r in caplog.records)
    deadline = time.monotonic() + 60
    while not waiting():
        assert not warned(), "the flood was cut, not paused"
        assert time.monotonic() < deadline, "the agent's socket never filled"
        fb.send([V, HEARTBEAT])  # alive, but reading nothing
        time.sleep(0.05)
    fb.send([V, REQUEST, 32, SERVICE], invoke("quick"))
    order, deltas, quick, outputs = [], [], [], {}
    while len(order) < 2:
        h, body = fb.expect(lambda h, _: h[1] in (STREAM, REPLY, ERROR), timeout=60,
                            what="answers")
        if h[1] == STREAM:
            (deltas if h[2] == 31 else quick).append(msgpack.unpackb(body)["delta"])
        else:
            order.append(h[:3])
            if h[1] == REPLY:
                outputs[h[2]] = msgpack.unpackb(body)["output"]["content"]
    assert order == [[V, REPLY, 32], [V, REPLY, 31]]
    assert quick == ["quick"] and outputs[32] == "quick"
    n = len(deltas) + 1  # the first was taken above
    assert outputs[31] == "flooded %d" % n and n < FLOOD_MAX
    assert deltas == ["%d " % i for i in range(1, n)]
    assert not warned(), "nothing refused, lost or stalled"
