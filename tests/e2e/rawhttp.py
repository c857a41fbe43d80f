"""HTTP/1.1 and WebSocket spoken byte by byte, for the tests that must not
share code (or mistakes) with the edge or a client library.

Responses are parsed strictly (RFC 9112): a status line, header fields, a
body delimited by Content-Length, chunked coding or the connection's close,
and nothing else. A parse error raises `ProtocolError`; the caller asserts on
it. Every read has a deadline, every loop a bound."""
import base64
import hashlib
import json
import os
import re
import socket
import struct
import time

STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x09\x20-\x7e\x80-\xff]*")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FIELD_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
MAX_HEAD = 64 << 10
LIST_FIELDS = ("connection", "cache-control", "vary", "allow", "transfer-encoding")
MAX_BODY = 64 << 20


class ProtocolError(AssertionError):
    """The peer sent bytes that are not a well-formed HTTP response."""


class Closed(ProtocolError):
    """The peer closed the connection where a response was expected."""


class Response:
    def __init__(self, status, reason, headers, body, framing):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value str)
        self.body = body
        self.framing = framing  # "length", "chunked", "close" or "none"

    def header(self, name):
        """The field's value; list-valued fields repeated are joined (RFC
        9110 §5.3), any other field repeated is an error."""
        vals = [v for k, v in self.headers if k == name.lower()]
        if len(vals) > 1:
            if name.lower() in LIST_FIELDS:
                return ", ".join(vals)
            raise ProtocolError("header %s repeated: %r" % (name, vals))
        return vals[0] if vals else None

    def json(self):
        """The body as exactly one JSON document (two concatenated raise)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as ex:
            raise ProtocolError("body is not one JSON document (%s): %r" % (ex, self.body[:400]))

    def error_code(self):
        doc = self.json()
        assert isinstance(doc, dict) and set(doc) == {"error"}, doc
        assert isinstance(doc["error"].get("code"), str), doc
        assert isinstance(doc["error"].get("message"), str), doc
        return doc["error"]["code"]

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.framing, self.body[:200])


class Conn:
    """One TCP connection to the edge with a buffered, deadline-bound reader."""

    def __init__(self, addr, timeout=15.0):
        host, port = addr.rsplit(":", 1)
        self.addr = addr
        self.timeout = timeout
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no byte from the edge in time; have %r" % self.buf[:200])
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no byte from the edge in time; have %r" % self.buf[:200])
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _line(self, deadline, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > limit:
                raise ProtocolError("line longer than %d bytes" % limit)
            if not self._fill(deadline):
                if self.buf:
                    raise ProtocolError("connection closed mid-line: %r" % self.buf[:200])
                raise Closed("connection closed")

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ProtocolError("connection closed %d bytes into a %d-byte body"
                                    % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False, timeout=None):
        """The next response, 1xx interim ones included (check .status)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        line = self._line(deadline)
        m = STATUS_LINE.fullmatch(line)
        if not m:
            raise ProtocolError("bad status line %r" % line[:200])
        status = int(m.group(1))
        reason = line[13:].decode("latin-1")
        headers = []
        total = 0
        for _ in range(200):
            f = self._line(deadline)
            total += len(f) + 2
            if total > MAX_HEAD:
                raise ProtocolError("header section over %d bytes" % MAX_HEAD)
            if f == b"":
                break
            name, sep, value = f.partition(b":")
            if not sep or not TOKEN.fullmatch(name):
                raise ProtocolError("bad header line %r" % f[:200])
            value = value.strip(b" \t")
            if not FIELD_VALUE.fullmatch(value):
                raise ProtocolError("bad header value %r" % f[:200])
            headers.append((name.decode().lower(), value.decode("latin-1")))
        else:
            raise ProtocolError("more than 200 header lines")
        r = Response(status, reason, headers, b"", "none")
        te = [v for k, v in headers if k == "transfer-encoding"]
        cl = [v for k, v in headers if k == "content-length"]
        if te and cl:
            raise ProtocolError("response has both Transfer-Encoding and Content-Length")
        if status < 200 or status in (204, 304) or head:
            if status < 200 and (te or cl):
                raise ProtocolError("a 1xx response with a body framing")
            return r
        if te:
            if len(te) != 1 or te[0].lower() != "chunked":
                raise ProtocolError("unexpected Transfer-Encoding %r" % te)
            r.body, r.framing = self._chunked(deadline), "chunked"
        elif cl:
            if len(set(cl)) != 1 or not re.fullmatch(r"[0-9]{1,12}", cl[0]):
                raise ProtocolError("bad Content-Length %r" % cl)
            n = int(cl[0])
            if n > MAX_BODY:
                raise ProtocolError("Content-Length %d too large" % n)
            r.body, r.framing = self._exact(n, deadline), "length"
        else:
            for _ in range(100000):
                if not self._fill(deadline):
                    break
            r.body, self.buf, r.framing = self.buf, b"", "close"
        return r

    def _chunked(self, deadline):
        body = b""
        for _ in range(1000000):
            line = self._line(deadline)
            size = line.split(b";", 1)[0].strip(b" \t")
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size):
                raise ProtocolError("bad chunk size line %r" % line[:100])
            n = int(size, 16)
            if n == 0:
                for _ in range(100):  # trailers
                    if self._line(deadline) == b"":
                        return body
                raise ProtocolError("too many trailer lines")
            body += self._exact(n, deadline)
            if len(body) > MAX_BODY:
                raise ProtocolError("chunked body too large")
            if self._exact(2, deadline) != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
        raise ProtocolError("too many chunks")

    def final_response(self, head=False, timeout=None):
        """The final (non-1xx) response, with the interim ones it skipped."""
        interim = []
        for _ in range(10):
            r = self.read_response(head=head, timeout=timeout)
            if r.status >= 200:
                r.interim = interim
                return r
            interim.append(r)
        raise ProtocolError("more than ten 1xx responses")

    def closed_cleanly(self, timeout=10.0):
        """True when the peer closes with no further byte; raises on bytes."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            if self.buf:
                raise ProtocolError("bytes after the last response: %r" % self.buf[:200])
            if not self._fill(deadline):
                return True
        raise ProtocolError("the connection kept sending")


def request(method, path, host, body=None, headers=(), chunked=False, length=True):
    """The bytes of one request. body bytes; chunked: a list of chunks."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    lines += list(headers)
    data = b""
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        for c in body:
            data += b"%x\r\n%s\r\n" % (len(c), c)
        data += b"0\r\n\r\n"
    elif body is not None:
        if length:
            lines.append("Content-Length: %d" % len(body))
        data = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def health_ok(addr, timeout=10.0):
    """GET /health on a new connection answers 200 status ok."""
    with Conn(addr, timeout) as c:
        c.send(request("GET", "/health", addr, headers=["Connection: close"]))
        r = c.final_response()
        return r.status == 200 and r.json().get("status") == "ok"


def sse_events(body):
    """A text/event-stream body → list of (id, event, data dict), strictly."""
    text = body.decode("utf-8")
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            k, sep, v = line.partition(":")
            if not sep:
                raise ProtocolError("SSE line without a colon: %r" % line)
            fields.setdefault(k, []).append(v[1:] if v.startswith(" ") else v)
        if "data" in fields:
            out.append(((fields.get("id") or [None])[0], (fields.get("event") or [None])[0],
                        json.loads("\n".join(fields["data"]))))
    return out


# ---- WebSocket (RFC 6455), client side ----------------------------------------

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def ws_frame(opcode, payload, fin=True, rsv=0):
    """One masked client frame."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        _mask_fast(payload, mask)
    return head + mask + masked


def _mask_fast(payload, mask):
    n = len(payload)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big")


class WS:
    """A WebSocket opened by hand over a socket: frames in, frames out."""

    def __init__(self, addr, path="/ws", headers=(), timeout=15.0):
        self.c = Conn(addr, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.c.send(request("GET", path, addr, headers=[
            "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
            "Sec-WebSocket-Version: 13"] + list(headers)))
        self.handshake = self.c.read_response(head=True)
        self.ok = self.handshake.status == 101
        if self.ok:
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            if self.handshake.header("sec-websocket-accept") != accept:
                raise ProtocolError("bad Sec-WebSocket-Accept")
        else:
            # Read the refusal's body (by its framing) for the caller.
            cl = self.handshake.header("content-length")
            if cl is not None:
                self.handshake.body = self.c._exact(int(cl), time.monotonic() + timeout)
            elif (self.handshake.header("transfer-encoding") or "").lower() == "chunked":
                self.handshake.body = self.c._chunked(time.monotonic() + timeout)

    def send_frame(self, opcode, payload, fin=True, rsv=0):
        self.c.send(ws_frame(opcode, payload, fin, rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def read_frame(self, timeout=None):
        """(fin, opcode, payload) of the next server frame (must be unmasked)."""
        deadline = time.monotonic() + (timeout or self.c.timeout)
        h = self.c._exact(2, deadline)
        fin, rsv, op = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 15
        if rsv:
            raise ProtocolError("server frame with RSV bits %d" % rsv)
        if h[1] & 0x80:
            raise ProtocolError("server frame is masked")
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.c._exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.c._exact(8, deadline))[0]
        if op >= 8 and (n > 125 or not fin):
            raise ProtocolError("bad control frame")
        return fin, op, self.c._exact(n, deadline)

    def read_message(self, timeout=None, answer_pings=True):
        """The next data message as ("text"|"binary", bytes), or ("close",
        (code, reason)), or ("pong", payload); pings are answered."""
        deadline = time.monotonic() + (timeout or self.c.timeout)
        parts, kind = [], None
        for _ in range(100000):
            fin, op, payload = self.read_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                return "pong", payload
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return "close", (code, payload[2:].decode("utf-8", "replace"))
            if op in (OP_TEXT, OP_BIN):
                if kind is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                kind = "text" if op == OP_TEXT else "binary"
            elif op == OP_CONT:
                if kind is None:
                    raise ProtocolError("continuation frame with no message")
            else:
                raise ProtocolError("reserved opcode %d" % op)
            parts.append(payload)
            if fin:
                return kind, b"".join(parts)
        raise ProtocolError("too many frames")

    def recv_json(self, timeout=None):
        """The next text message as a JSON object (control frames skipped)."""
        deadline = time.monotonic() + (timeout or self.c.timeout)
        for _ in range(1000):
            kind, data = self.read_message(max(0.01, deadline - time.monotonic()))
            if kind == "pong":
                continue
            if kind != "text":
                raise ProtocolError("expected a text message, got %s %r" % (kind, data))
            return json.loads(data.decode("utf-8"))
        raise ProtocolError("no text message")

    def hello(self, session_id=None, api_key=None):
        m = {"type": "hello"}
        if session_id is not None:
            m["session_id"] = session_id
        if api_key is not None:
            m["api_key"] = api_key
        self.send_json(m)
        return self.recv_json()

    def close(self):
        self.c.close()
