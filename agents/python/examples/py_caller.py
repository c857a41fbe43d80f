"""py-caller: a Python agent that calls another agent (SPEC §7) with the
mapagent SDK: it hands its input to MAP_PY_CALLER_TARGET (default "echo")
as a child run, streams the child's deltas as its own, and answers
"<target> said: <the child's output>". A refused or failed call is
answered too: "<target> failed: <code>".

    PYTHONPATH=agents/python MAP_BROKER=tcp://127.0.0.1:5555 \
        /usr/bin/python3 agents/python/examples/py_caller.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mapagent import Agent, CallError, run  # noqa: E402

TARGET = os.environ.get("MAP_PY_CALLER_TARGET") or "echo"
agent = Agent(os.environ.get("MAP_PY_CALLER_AGENT") or "py-caller",
              capacity=int(os.environ.get("MAP_PY_CALLER_CAPACITY") or "8"))


@agent.handler
async def handle(call):
    output = None
    try:
        async for event in call.call(TARGET, call.input["content"], call_id="delegate"):
            if event["type"] == "agent_stream_delta":
                yield event["payload"]["delta"]
            elif event["type"] == "agent_invoke_done":
                output = event["payload"]["output"]["content"]
            elif event["type"] == "run_failed":
                raise CallError(event["payload"]["error"]["code"], "the child failed")
        call.output = {"role": "assistant", "content": "%s said: %s" % (TARGET, output)}
    except CallError as e:
        call.output = {"role": "assistant", "content": "%s failed: %s" % (TARGET, e.code)}


if __name__ == "__main__":
    run(agent)
