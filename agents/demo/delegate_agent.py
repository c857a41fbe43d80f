#!/usr/bin/python3
"""delegate: an external agent that hands part of its answer to another
agent through the platform (SPEC section 7), over the same `POST /invoke`
contract as demo_agent.py (SPEC section 5).

POST /invoke  {"run_id", "input_message":{"role","content"}, ...,
               "platform":{"calls_url","token","depth"}}
  -> 200 text/event-stream:
     1. its own preface as a delta: "delegate asked <agent>: "
     2. POST {calls_url} (Authorization: Bearer {token}) with
        {"call_id":"delegate-1","agent_id":<agent>,"input_message":{"role":"user",
        "content":<the rest of the input>}}, read as SSE while it streams: every
        `agent_stream_delta` of the child run is relayed at once as a delta of
        this run (so the parent is never silent for its timeout);
     3. on the child's `run_done`: `event: done` with the whole answer
        (preface + the child's output).
     The input names the agent to delegate to with a leading "@agent " (e.g.
     "@demo hello"); without one it is MAP_DELEGATE_TO (default "echo") and the
     whole input goes to it. A refused call (its status and error envelope), a
     child that fails or is cancelled, or an invoke without `platform` (an
     older platform) ends with `event: error` {"code","message"}: the run fails
     `agent_error` naming why.
  -> 400 {"error":{"code":"bad_request","message":...}} for a malformed body.
GET /health   -> {"status":"ok"}

The call_id is fixed per run ("delegate-1"): the platform makes a repeated
call_id of one run stream the same child, so a retried call starts nothing.
When the platform stops this stream (the run was cancelled), the call's
HTTP request closes with it at the next thing written (a delta, or an SSE
comment of the child stream, passed on as one), and the platform cancels
the child (it also cancels a cancelled run's children itself).

Run: /usr/bin/python3 agents/demo/delegate_agent.py [--addr HOST:PORT]
(default MAP_DELEGATE_AGENT_ADDR, 127.0.0.1:8001). Needs Debian's
python3-fastapi, python3-uvicorn and python3-httpx.
"""
import argparse
import json
import os
import sys

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

DEFAULT_ADDR = "127.0.0.1:8001"
CALL_ID = "delegate-1"
MAX_EVENT = 1 << 20  # bytes of one SSE event of the child stream

app = FastAPI(title="MAP delegate agent")
app.state.default_agent = "echo"


def sse(event, payload):
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return "event: %s\ndata: %s\n\n" % (event, data)


def bad_request(message):
    return JSONResponse({"error": {"code": "bad_request", "message": message}}, status_code=400)


def split_target(content, default_agent):
    """("@agent rest" | "text") -> (agent, the text it gets)."""
    if content.startswith("@"):
        head, _, rest = content[1:].partition(" ")
        if head:
            return head, rest
    return default_agent, content


async def sse_events(response):
    """The (event, data) pairs of an SSE response, as they come."""
    event, data, size = None, [], 0
    async for line in response.aiter_lines():
        line = line.rstrip("\r\n")  # httpx before 0.24 keeps the line ending
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data, size = None, [], 0
            continue
        size += len(line)
        if size > MAX_EVENT:
            raise ValueError("an event of the child stream is over %d bytes" % MAX_EVENT)
        if line.startswith(":"):
            yield "comment", None
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


async def delegate(platform, agent, text):
    """The deltas of this run: ("delta", str) ... then ("done", None) or
    ("error", {"code","message"})."""
    body = {"call_id": CALL_ID, "agent_id": agent,
            "input_message": {"role": "user", "content": text}}
    headers = {"Authorization": "Bearer " + platform["token"],
               "Accept": "text/event-stream"}
    # No read timeout of our own: the child's agent timeout bounds its silence.
    timeout = httpx.Timeout(10.0, read=None)
    client = httpx.AsyncClient(timeout=timeout)
    try:
        async with client.stream("POST", platform["calls_url"], json=body,
                                 headers=headers) as r:
            if r.status_code != 200:
                raw = await r.aread()
                try:
                    err = json.loads(raw)["error"]
                    why = "%s (%s)" % (err["message"], err["code"])
                except (ValueError, KeyError, TypeError):
                    why = raw[:200].decode(errors="replace")
                yield "error", {"code": "call_refused" if r.status_code == 409 else "call_failed",
                                "message": "the call to %s was refused: HTTP %d %s"
                                % (agent, r.status_code, why)}
                return
            async for event, data in sse_events(r):
                if event == "comment":
                    yield "keep-alive", None
                    continue
                ev = json.loads(data)
                if event == "agent_stream_delta":
                    yield "delta", ev["payload"]["delta"]
                elif event == "run_done":
                    yield "done", None
                    return
                elif event == "run_failed":
                    err = ev["payload"].get("error", {})
                    yield "error", {"code": "call_failed",
                                    "message": "%s failed: %s (%s)" % (
                                        agent, err.get("message", ""), err.get("code", "?"))}
                    return
                elif event == "run_cancelled":
                    yield "error", {"code": "call_cancelled",
                                    "message": "the call to %s was cancelled" % agent}
                    return
            yield "error", {"code": "call_failed",
                            "message": "the child stream of %s ended before its run did" % agent}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        yield "error", {"code": "call_failed",
                        "message": "the call to %s failed: %s" % (agent, e)}
    finally:
        # Cancelled (our caller left), anyio cancels every await of the
        # cleanup too: shielded, the connection really closes, which is what
        # makes the platform cancel the child.
        with anyio.CancelScope(shield=True):
            await client.aclose()


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
    platform = body.get("platform")
    agent, text = split_target(message["content"], app.state.default_agent)

    async def stream():
        if not (isinstance(platform, dict) and isinstance(platform.get("calls_url"), str)
                and isinstance(platform.get("token"), str)):
            yield sse("error", {"code": "no_platform",
                                "message": "the invoke has no platform.calls_url: "
                                           "this platform cannot make calls"})
            return
        preface = "delegate asked %s: " % agent
        parts = [preface]
        yield sse("delta", {"delta": preface})
        async for kind, value in delegate(platform, agent, text):
            if kind == "delta":
                parts.append(value)
                yield sse("delta", {"delta": value})
            elif kind == "keep-alive":
                # Passed on: a write is how this server learns that its own
                # caller left (the call then closes, and the child is
                # cancelled), and it keeps the caller's idle timer fed.
                yield ": keep-alive\n\n"
            elif kind == "done":
                yield sse("done", {"output": {"role": "assistant", "content": "".join(parts)}})
            else:
                yield sse("error", value)

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
        prog="delegate_agent.py",
        description="MAP delegate agent: answers by calling another agent through "
                    "platform.calls_url, relaying its deltas as they come")
    parser.add_argument("--addr", default=os.environ.get("MAP_DELEGATE_AGENT_ADDR", DEFAULT_ADDR),
                        help="HOST:PORT to listen on (env MAP_DELEGATE_AGENT_ADDR, default %s)"
                        % DEFAULT_ADDR)
    parser.add_argument("--to", default=os.environ.get("MAP_DELEGATE_TO", "echo"),
                        help="the agent to call when the input names none "
                             "(env MAP_DELEGATE_TO, default echo)")
    parser.add_argument("--log-level", default=os.environ.get("MAP_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warn", "error"],
                        help="log level (env MAP_LOG_LEVEL, default info)")
    args = parser.parse_args(argv)
    try:
        host, port = parse_addr(args.addr)
    except ValueError as e:
        print("delegate_agent.py: bad --addr/MAP_DELEGATE_AGENT_ADDR: %s" % e, file=sys.stderr)
        return 2
    if not args.to or any(c in args.to for c in " /?#%\"'"):
        print("delegate_agent.py: --to/MAP_DELEGATE_TO must be an agent id", file=sys.stderr)
        return 2
    app.state.default_agent = args.to

    import uvicorn
    level = {"warn": "warning"}.get(args.log_level, args.log_level)
    uvicorn.run(app, host=host, port=port, log_level=level, access_log=level == "debug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
