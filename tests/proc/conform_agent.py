"""conform_agent.py: the conformance suite's agent on the Python SDK
(agents/python/mapagent), the twin of conform_agent.c; the commands, log
lines and settings are the same (see conform_agent.c's top comment), plus
one the C library has no equivalent of:

    block S   blocks the asyncio loop for S seconds (time.sleep), then
              replies "unblocked" (logged "conform.unblocked run=<run_id>")
    spin MS   computes (a pure-Python busy loop holding the GIL) for MS ms in
              a thread (asyncio.to_thread), then replies "spun"
    stubborn  swallows every cancel (a handler that never stops)
    whoami    one delta: the JSON of call.run_id, session_id, agent_id,
              input and history
"""
import asyncio
import json
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "agents", "python"))
from mapagent import Agent, run  # noqa: E402

log = logging.getLogger("mapagent")
agent = Agent(os.environ.get("MAP_CONFORM_AGENT") or "conform",
              capacity=int(os.environ.get("MAP_CONFORM_CAPACITY") or "4"))
active = 0


def _arg(content, cmd):
    if not content.startswith(cmd):
        return None
    try:
        return int(content[len(cmd):], 10)
    except ValueError:
        return None


def _spin(ms):
    end = time.monotonic() + ms / 1000.0
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@agent.handler
async def handle(call):
    global active
    active += 1
    log.info("conform.request run=%s active=%d", call.run_id, active)
    try:
        c = call.input["content"]
        if _arg(c, "stream ") is not None:
            for i in range(_arg(c, "stream ")):
                yield "w%d " % i
        elif c == "fail":
            raise RuntimeError("boom")
        elif c == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log.info("conform.cancelled run=%s", call.run_id)
                raise
        elif _arg(c, "big ") is not None:
            yield "x" * _arg(c, "big ")
            call.output = {"role": "assistant", "content": "ok"}
        elif _arg(c, "hold ") is not None:
            yield "start"
            await asyncio.sleep(_arg(c, "hold ") / 1000.0)
            call.output = {"role": "assistant", "content": "done"}
        elif _arg(c, "block ") is not None:
            time.sleep(_arg(c, "block "))
            log.info("conform.unblocked run=%s", call.run_id)
            yield "unblocked"
        elif _arg(c, "spin ") is not None:
            await asyncio.to_thread(_spin, _arg(c, "spin "))
            yield "spun"
        elif c == "stubborn":
            yield "start"
            while True:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    log.info("conform.swallowed run=%s", call.run_id)
        elif c == "whoami":
            yield json.dumps({"run_id": call.run_id, "session_id": call.session_id,
                              "agent_id": call.agent_id, "input": call.input,
                              "history": call.history})
        else:
            yield c
    finally:
        active -= 1


if __name__ == "__main__":
    run(agent)
