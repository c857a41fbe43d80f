"""py-echo: the Python twin of map-echo, written with the mapagent SDK.
Streams its input back word by word, MAP_PY_ECHO_DELAY_MS (default 10) apart;
0 streams every word at once (what bench_py measures).

    PYTHONPATH=agents/python MAP_BROKER=tcp://127.0.0.1:5555 \
        /usr/bin/python3 agents/python/examples/py_echo.py
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mapagent import Agent, run  # noqa: E402

DELAY = int(os.environ.get("MAP_PY_ECHO_DELAY_MS") or "10") / 1000.0
agent = Agent(os.environ.get("MAP_PY_ECHO_AGENT") or "py-echo",
              capacity=int(os.environ.get("MAP_PY_ECHO_CAPACITY") or "8"))


@agent.handler
async def handle(call):
    words = call.input["content"].split(" ")
    for i, word in enumerate(words):
        if DELAY:
            await asyncio.sleep(DELAY)
        # The deltas join to the input exactly: a space after every word but the last.
        yield word + " " if i < len(words) - 1 else word


if __name__ == "__main__":
    run(agent)
