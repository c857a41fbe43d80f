#!/usr/bin/python3
"""The original design's demo agent: an external agent speaking the platform's
`POST /invoke` contract (SPEC.md section 5) over HTTP + server-sent events.

POST /invoke  {"run_id","session_id","agent_id","input_message":{"role","content"},
               "messages":[...]}
  -> 200 text/event-stream: one `event: delta` per word of the input
     (`data: {"delta":"<word with the whitespace before it>"}`), a delay of
     MAP_DEMO_DELAY_MS (default 50) between words, then `event: done` with
     `data: {"output":{"role":"assistant","content":"<the whole input>"}}`.
  -> 400 {"error":{"code":"bad_request","message":...}} for a malformed body.
GET /health   -> {"status":"ok"}

Run: /usr/bin/python3 agents/demo/demo_agent.py [--addr HOST:PORT] [--delay-ms N]
(defaults from MAP_DEMO_AGENT_ADDR, 127.0.0.1:8000, and MAP_DEMO_DELAY_MS).
Needs Debian's python3-fastapi and python3-uvicorn.
"""
import argparse
import asyncio
import json
import os
import re
import sys

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

DEFAULT_ADDR = "127.0.0.1:8000"
WORD = re.compile(r"\s*\S+|\s+$")  # each word with the whitespace before it

app = FastAPI(title="MAP demo agent")
app.state.delay_ms = 50


def split_words(text):
    """The deltas of text: joined, they give text back exactly."""
    return WORD.findall(text)


def sse(event, payload):
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return "event: %s\ndata: %s\n\n" % (event, data)


def bad_request(message):
    return JSONResponse({"error": {"code": "bad_request", "message": message}}, status_code=400)


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.post("/invoke")
async def invoke(request: Request):
    try:
        body = await request.json()
    except ValueError:
        return bad_request("the body is not JSON")
    if not isinstance(body, dict):
        return bad_request("the body is not a JSON object")
    message = body.get("input_message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        return bad_request("input_message.content must be a string")
    words = split_words(message["content"])
    delay = app.state.delay_ms / 1000.0

    async def stream():
        sent = []
        for i, word in enumerate(words):
            if i and delay > 0:
                await asyncio.sleep(delay)
            sent.append(word)
            yield sse("delta", {"delta": word})
        yield sse("done", {"output": {"role": "assistant", "content": "".join(sent)}})

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def parse_addr(addr):
    """HOST:PORT (or [v6]:PORT) -> (host, port); raises ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, got %r" % addr)
    return host.strip("[]"), int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="demo_agent.py",
        description="MAP demo agent: word-by-word echo over POST /invoke (text/event-stream)")
    parser.add_argument("--addr", default=os.environ.get("MAP_DEMO_AGENT_ADDR", DEFAULT_ADDR),
                        help="HOST:PORT to listen on (env MAP_DEMO_AGENT_ADDR, default %s)"
                        % DEFAULT_ADDR)
    parser.add_argument("--delay-ms", default=os.environ.get("MAP_DEMO_DELAY_MS", "50"),
                        help="delay between words in ms (env MAP_DEMO_DELAY_MS, default 50)")
    parser.add_argument("--log-level", default=os.environ.get("MAP_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warn", "error"],
                        help="log level (env MAP_LOG_LEVEL, default info)")
    args = parser.parse_args(argv)
    try:
        host, port = parse_addr(args.addr)
    except ValueError as e:
        print("demo_agent.py: bad --addr/MAP_DEMO_AGENT_ADDR: %s" % e, file=sys.stderr)
        return 2
    try:
        delay_ms = int(args.delay_ms)
        if delay_ms < 0 or delay_ms > 60000:
            raise ValueError
    except ValueError:
        print("demo_agent.py: --delay-ms/MAP_DEMO_DELAY_MS must be an integer in 0..60000",
              file=sys.stderr)
        return 2
    app.state.delay_ms = delay_ms

    import uvicorn
    level = {"warn": "warning"}.get(args.log_level, args.log_level)
    # uvicorn exits with status 1 and one error line when it cannot bind.
    uvicorn.run(app, host=host, port=port, log_level=level, access_log=level == "debug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
