#!/usr/bin/python3
"""Faulty external agents for the bridge's process tests: one HTTP server,
one agent per path prefix, each speaking (or breaking) SPEC.md section 5.

    POST /<name>/invoke   the agent <name> (endpoint http://HOST:PORT/<name>)
    GET  /health          {"status":"ok"}
    GET  /state           what the agents saw: {"requests":{name: [request...]},
                          "disconnects":{name: n}, "active":{name: n}}
    POST /release         lets every `hold` stream finish

Agents:
    ok        a delta per word of the input, then done with the output
    error     one delta, then `event: error` {"code":"boom","message":"the agent broke"}
    http500   HTTP 500 with an HTML body
    json      HTTP 200 with Content-Type application/json
    cut       one delta, then half an event, then closes the connection
    garbage   `event: done` whose data is not JSON
    baddelta  a delta event whose JSON has no delta/content/text
    stall     headers and one delta, then nothing (until the client goes)
    slow      a delta every 50 ms for 30 s (counts client disconnects)
    hold      one delta, then waits for POST /release (at most 30 s), then
              a second delta and done: many streams open at once
    big       200 KiB of deltas, then done
    plain     plain-text deltas (unnamed events), CRLF line ends, a BOM,
              comments, then `event: done` with no data
    history   echoes what it received: a delta with the JSON request, and
              done whose content is the JSON of `messages`

Run: fault_agents.py PORT (127.0.0.1). Standard library only.
"""
import json
import select
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
RELEASE = threading.Event()
STATE = {"requests": {}, "disconnects": {}, "active": {}}


def bump(kind, name, delta=1):
    with LOCK:
        STATE[kind][name] = STATE[kind].get(name, 0) + delta


def ev(event, data):
    if not isinstance(data, str):
        data = json.dumps(data, separators=(",", ":"))
    return ("event: %s\ndata: %s\n\n" % (event, data)).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_GET(self):
        if self.path == "/health":
            self.reply_json(200, {"status": "ok"})
        elif self.path == "/state":
            with LOCK:
                body = json.loads(json.dumps(STATE))
            self.reply_json(200, body)
        else:
            self.reply_json(404, {"error": "not found"})

    def reply_json(self, status, obj, ctype="application/json"):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self):
        if self.path == "/release":
            RELEASE.set()
            self.reply_json(200, {"released": True})
            return
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[1] != "invoke":
            self.reply_json(404, {"error": "no such agent"})
            return
        name = parts[0]
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with LOCK:
            STATE["requests"].setdefault(name, []).append(
                {"body": body, "accept": self.headers.get("Accept"),
                 "content_type": self.headers.get("Content-Type")})
        handler = getattr(self, "agent_" + name, None)
        if handler is None:
            self.reply_json(404, {"error": "no such agent"})
            return
        bump("active", name)
        try:
            handler(body)
        except (BrokenPipeError, ConnectionResetError):
            bump("disconnects", name)
        finally:
            bump("active", name, -1)

    def wait_close(self, seconds):
        """Sends nothing until the client closes (counted) or seconds pass."""
        ready, _, _ = select.select([self.connection], [], [], seconds)
        if ready and not self.connection.recv(1):
            bump("disconnects", self.path.strip("/").split("/")[0])

    def content(self, body):
        try:
            return body["input_message"]["content"]
        except (TypeError, KeyError):
            return ""

    def agent_ok(self, body):
        self.start_stream()
        words = self.content(body).split()
        for i, w in enumerate(words):
            self.send(ev("delta", {"delta": (" " if i else "") + w}))
        self.send(ev("done", {"output": {"role": "assistant", "content": " ".join(words)}}))

    def agent_error(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": "partial"}))
        self.send(ev("error", {"code": "boom", "message": "the agent broke"}))

    def agent_http500(self, body):
        data = b"<html>internal error</html>"
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def agent_json(self, body):
        self.reply_json(200, {"output": {"role": "assistant", "content": "not a stream"}})

    def agent_cut(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": "before the cut"}))
        self.send(b"event: delta\ndata: {\"delta\":\"half")
        # return: the server closes the connection (Connection: close)

    def agent_garbage(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": "x"}))
        self.send(b"event: done\ndata: {this is not json\n\n")
        time.sleep(5)  # the bridge must not wait for the close

    def agent_baddelta(self, body):
        self.start_stream()
        self.send(ev("delta", {"tokens": [1, 2]}))
        time.sleep(5)

    def agent_stall(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": "then nothing"}))
        self.wait_close(30)

    def agent_slow(self, body):
        self.start_stream()
        deadline = time.monotonic() + 30
        i = 0
        while time.monotonic() < deadline:
            self.send(ev("delta", {"delta": "w%d " % i}))
            i += 1
            time.sleep(0.05)
        self.send(ev("done", {}))

    def agent_hold(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": "held "}))
        RELEASE.wait(30)
        self.send(ev("delta", {"delta": self.content(body)}))
        self.send(ev("done", {}))

    def agent_big(self, body):
        self.start_stream()
        chunk = ev("delta", {"delta": "x" * 1000})
        for _ in range(200):
            self.send(chunk)
        self.send(ev("done", {}))

    def agent_huge(self, body):  # 2 MiB of deltas: past the frame limit between processes
        self.start_stream()
        chunk = ev("delta", {"delta": "h" * 4096})
        for _ in range(512):
            self.send(chunk)
        self.send(ev("done", {}))

    def agent_plain(self, body):
        self.start_stream()
        self.send(b"\xef\xbb\xbf: a comment\r\ndata: hello\r\n\r\n")
        self.send(b"data:  world\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n")
        self.send(b"event: done\r\n\r\n")

    def agent_history(self, body):
        self.start_stream()
        self.send(ev("delta", {"delta": json.dumps(body, sort_keys=True)}))
        messages = body.get("messages") if isinstance(body, dict) else None
        self.send(ev("done", {"output": {"role": "assistant", "content": json.dumps(messages)}}))


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: fault_agents.py PORT", file=sys.stderr)
        return 2
    ThreadingHTTPServer.request_queue_size = 512  # many invokes connect at once
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
