"""mapagent: native Python agents for the platform, over the broker's
ZeroMQ protocol (proto/PROTOCOL.md), from Debian's python3-zmq and
python3-msgpack only.

    from mapagent import Agent, run

    agent = Agent("py-echo", capacity=8)

    @agent.handler
    async def handle(call):
        for word in call.input["content"].split(" "):
            yield word + " "

    if __name__ == "__main__":
        run(agent)

Modules: frames (headers), bodies (agent bodies), link (the I/O thread:
the socket, heartbeats, reconnects, the watchdog), agent (Agent, Call,
serve, run), calls (Call.call / call_text: calling other agents).
"""
from .agent import Agent, Call, Config, run, serve
from .calls import CallError
from .link import ConfigError

__all__ = ["Agent", "Call", "CallError", "Config", "ConfigError", "run", "serve"]
