"""HTTP/1.1 framing byte by byte (SPEC §3: any client framing is served,
every request gets exactly one response). A raw socket sends exact bytes;
responses are parsed strictly (rawhttp.py). After the responses a request
expects, a `GET /health` with `Connection: close` must be the very next
response and then the connection must end (or, when the last answer said
`Connection: close`, the connection must end with no further byte): a
doubled answer, a stray byte or a missing answer shows up as a parse error
or a wrong response. The keep-alive and pipelining tests also require the
connection to stay open: every request sent on it is answered."""
import json
import socket
import threading
import time

import rawhttp
from edgeutil import guarded_fixtures
from mapclient import wait_until
from rawhttp import Conn, request

_guard, edge = guarded_fixtures()

MAX_BODY = 1 << 20  # the edge's default maximum HTTP body (map-ingress --max-body)


def reg_body(agent_id, name="n"):
    return json.dumps({"agent_id": agent_id, "name": name,
                       "endpoint": "http://127.0.0.1:9"}).encode()


def exchange(edge, data, n, timeout=10):
    """Sends the bytes at once, reads n final responses, then proves that
    nothing else was sent (see end_of_exchange)."""
    with Conn(edge.http, timeout) as c:
        c.send(data)
        out = []
        for i in range(n):
            try:
                r = c.final_response()
            except rawhttp.Closed:
                raise AssertionError("the connection closed after %d of %d responses: %r" % (i, n, out))
            out.append(r)
            if closes(r) and i < n - 1:
                raise AssertionError("answer %d of %d said Connection: close, the rest were never "
                                     "answered: %r" % (i + 1, n, out))
        end_of_exchange(edge, c, out[-1])
        return out


def closes(r):
    return "close" in (r.header("connection") or "").lower()


def end_of_exchange(edge, c, last):
    """After the last expected response: if it announced Connection: close,
    the connection ends with no further byte; else the very next response
    is a sentinel GET /health's, and then the connection ends."""
    if closes(last):
        assert c.closed_cleanly(), "bytes after a Connection: close answer"
    else:
        sentinel_after(edge, c)


def sentinel_after(edge, c):
    c.send(request("GET", "/health", edge.http, headers=["Connection: close"]))
    r = c.final_response()
    assert r.status == 200 and r.json()["status"] == "ok", ("the sentinel's answer", r)
    assert c.closed_cleanly(), "bytes after the sentinel's answer"


def unknown_run(r, run_id):
    assert r.status == 404 and r.error_code() == "unknown_run", r
    assert run_id in r.json()["error"]["message"], r


def invoke_bytes(session, content):
    return json.dumps({"session_id": session, "agent_id": "echo",
                       "input_message": {"role": "user", "content": content}}).encode()


# ---- bodies ---------------------------------------------------------------------

def test_post_with_content_length_0(edge):
    r, = exchange(edge, request("POST", "/v1/runs/run_cl0/cancel", edge.http, body=b""), 1)
    unknown_run(r, "run_cl0")
    r, = exchange(edge, request("POST", "/internal/send", edge.http, body=b""), 1)
    assert r.status == 400 and r.error_code() in ("bad_json", "bad_request"), r


def test_post_without_content_length(edge):
    """No Content-Length and no Transfer-Encoding: the body is empty."""
    r, = exchange(edge, request("POST", "/v1/runs/run_nocl/cancel", edge.http), 1)
    unknown_run(r, "run_nocl")


def test_chunked_body_in_one_chunk(edge):
    r, = exchange(edge, request("POST", "/v1/agents/register", edge.http,
                                body=[reg_body("fr-one")], chunked=True), 1)
    assert r.status == 201 and r.json()["agent_id"] == "fr-one", r


def test_chunked_body_in_many_chunks(edge):
    body = reg_body("fr-many", "many chunks")
    r, = exchange(edge, request("POST", "/v1/agents/register", edge.http,
                                body=[body[i:i + 1] for i in range(len(body))], chunked=True), 1)
    assert r.status == 201 and r.json()["name"] == "many chunks", r
    # An invoke whose body comes in chunks streams the run of that input.
    body = invoke_bytes("fr-chunks", "chunked words here")
    r, = exchange(edge, request("POST", "/internal/invoke", edge.http,
                                body=[body[i:i + 7] for i in range(0, len(body), 7)],
                                chunked=True), 1)
    assert r.status == 200 and r.header("x-run-id"), r
    events = [d for _, _, d in rawhttp.sse_events(r.body)]
    assert events[-1]["type"] == "run_done", events
    assert events[1]["payload"]["message"]["content"] == "chunked words here"


def test_chunked_body_with_extensions_and_trailers(edge):
    body = reg_body("fr-ext", "extended")
    data = (b"POST /v1/agents/register HTTP/1.1\r\nHost: " + edge.http.encode() +
            b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Checksum\r\n\r\n" +
            b"%x;name=value\r\n%s\r\n" % (10, body[:10]) +
            b"%X;a;b=\"q s\"\r\n%s\r\n" % (len(body) - 10, body[10:]) +
            b"0;last\r\nX-Checksum: 1234\r\nX-Other: 2\r\n\r\n")
    r, = exchange(edge, data, 1)
    assert r.status == 201 and r.json()["name"] == "extended", r


def test_body_sent_in_pieces_with_pauses(edge):
    body = reg_body("fr-slow", "trickled")
    data = request("POST", "/v1/agents/register", edge.http, body=body)
    with Conn(edge.http) as c:
        for i in range(0, len(data), 9):
            c.send(data[i:i + 9])
            time.sleep(0.005)
        r = c.final_response()
        assert r.status == 201 and r.json()["name"] == "trickled", r
        end_of_exchange(edge, c, r)


def test_get_with_a_body(edge):
    """A body on a GET has no meaning here, but its framing still counts:
    it is read (or the request refused) and the connection goes on."""
    for data in (request("GET", "/v1/runs/run_gb1", edge.http, body=b'{"x":1}'),
                 request("GET", "/v1/runs/run_gb2", edge.http, body=[b'{"x"', b':1}'], chunked=True)):
        r, = exchange(edge, data, 1)
        assert r.status == 400 or (r.status == 404 and r.error_code() == "unknown_run"), (data, r)


def test_head_answers_carry_no_body(edge):
    """A HEAD answer has headers only (RFC 9110 §9.3.2); bytes of a body
    after it would be read as the next response."""
    for path in ("/health", "/v1/agents", "/v1/runs/run_head/cancel", "/nowhere"):
        with Conn(edge.http) as c:
            c.send(request("HEAD", path, edge.http))
            r = c.final_response(head=True)
            assert r.status in (200, 404, 405), (path, r)
            end_of_exchange(edge, c, r)


# ---- connections ------------------------------------------------------------------

# lws 4.1 (the edge's HTTP layer) reads a chunked body, or a POST without a
# Content-Length, as "everything until the connection ends", and hands a
# body pipelined behind another request back as that request's own head.
# The edge therefore answers such a request with `Connection: close` and
# ends the connection after it, and cuts a connection whose pipelined body
# it was handed that way (the client sends it again on a new connection,
# RFC 9112 §9.3.2). Everything else keeps the connection (README, limits).
CLOSES = ("chunked", "no length")


def test_keep_alive_one_request_after_another(edge):
    """Every framing in turn, each read before the next: one connection
    serves them all, but for the framings that end it (CLOSES), after which
    the client goes on on a new one."""
    steps = [
        (request("GET", "/health", edge.http), 200, None),
        (request("POST", "/v1/runs/run_ka1/cancel", edge.http, body=b""), 404, None),
        (request("POST", "/v1/agents/register", edge.http, body=reg_body("fr-ka")), None, None),
        (request("POST", "/v1/runs/run_ka2/cancel", edge.http), 404, "no length"),
        (request("POST", "/v1/agents/register", edge.http, body=[reg_body("fr-ka", "chunked")],
                 chunked=True), 200, "chunked"),
        (request("GET", "/v1/runs/run_ka3", edge.http), 404, None),
        (request("GET", "/nowhere", edge.http), 404, None),
        (request("POST", "/internal/send", edge.http,
                 body=b'{"session_id":"fr-nobody","event":{"a":1}}'), 202, None),
        (request("GET", "/metrics", edge.http), 200, None),
    ]
    c = Conn(edge.http)
    kept = 0
    try:
        for round_ in range(3):
            for data, want, closes in steps:
                c.send(data)
                r = c.final_response()
                assert want is None or r.status == want, (round_, data[:60], r)
                close = "close" in (r.header("connection") or "").lower()
                assert close == (closes in CLOSES), (data[:60], r)
                if (r.header("content-type") or "").startswith("application/json"):
                    r.json()
                if close:
                    assert c.closed_cleanly(), "bytes after a Connection: close answer"
                    c.close()
                    c = Conn(edge.http)
                else:
                    kept += 1
        assert kept == 3 * 7
        sentinel_after(edge, c)
    finally:
        c.close()


def test_pipelined_requests_answered_once_each_in_order(edge):
    """Requests without a body and with a Content-Length one: all answered,
    once each, in order, on the one connection."""
    reqs = [request("GET", "/v1/runs/run_p%d" % i, edge.http) for i in range(5)]
    reqs.insert(2, request("POST", "/v1/runs/run_pc/cancel", edge.http, body=b""))
    reqs.append(request("POST", "/v1/runs/run_pn/cancel", edge.http, body=b""))
    out = exchange(edge, b"".join(reqs), len(reqs))
    unknown_run(out[0], "run_p0")
    unknown_run(out[1], "run_p1")
    unknown_run(out[2], "run_pc")
    for i in range(2, 5):
        unknown_run(out[i + 1], "run_p%d" % i)
    unknown_run(out[6], "run_pn")


def test_pipelined_chunked_request_ends_the_connection(edge):
    """A chunked request with more pipelined after it: it is answered with
    Connection: close, and nothing after it is (the client sends that
    again); the edge goes on serving. (Behind another request, it is the
    case of test_pipelined_get_then_post_with_a_body.)"""
    reqs = [request("POST", "/v1/agents/register", edge.http,
                    body=[reg_body("fr-pipe", "piped")], chunked=True),
            request("GET", "/v1/runs/run_q1", edge.http)]
    with Conn(edge.http) as c:
        c.send(b"".join(reqs))
        r = c.final_response()
        assert r.status in (200, 201) and r.json()["name"] == "piped", r
        assert "close" in (r.header("connection") or "").lower()
        assert c.closed_cleanly(), "an answer after Connection: close"
    assert rawhttp.health_ok(edge.http)


def test_pipelined_get_then_post_with_a_body(edge):
    """A GET and a POST with a Content-Length body in one send: the GET is
    answered, the POST is answered or its connection cut (CLOSES), and the
    edge goes on serving everyone: this pair wedged the whole edge (no
    connection was served any more). Sent again alone, the POST works."""
    data = (request("GET", "/v1/runs/run_gp", edge.http) +
            request("POST", "/v1/agents/register", edge.http, body=reg_body("fr-gp", "after a get")))
    with Conn(edge.http) as c:
        c.send(data)
        unknown_run(c.final_response(), "run_gp")
        try:
            second = c.final_response()
        except rawhttp.Closed:
            second = None
    assert rawhttp.health_ok(edge.http, timeout=5), "the edge stopped serving"
    if second is None:
        r, = exchange(edge, request("POST", "/v1/agents/register", edge.http,
                                    body=reg_body("fr-gp", "after a get")), 1)
        second = r
    assert second.status in (200, 201) and second.json()["name"] == "after a get", second


def test_many_pipelined_requests(edge):
    n = 40
    data = b"".join(request("GET", "/v1/runs/run_m%02d" % i, edge.http) for i in range(n))
    out = exchange(edge, data, n, timeout=30)
    for i, r in enumerate(out):
        unknown_run(r, "run_m%02d" % i)


def test_expect_100_continue(edge):
    body = reg_body("fr-expect", "expected")
    head = request("POST", "/v1/agents/register", edge.http, body=body,
                   headers=["Expect: 100-continue"])[:-len(body)]
    with Conn(edge.http) as c:
        c.send(head)
        # The client waits for 100 Continue (or a final answer) before the body.
        first = c.read_response(timeout=10)
        assert first.status == 100, first
        c.send(body)
        r = c.final_response()
        assert r.status == 201 and r.json()["name"] == "expected", r
        end_of_exchange(edge, c, r)


def test_expect_100_continue_for_a_body_past_the_maximum(edge):
    """The edge may refuse at once (413, no 100) or let the body come."""
    with Conn(edge.http) as c:
        c.send(("POST /v1/agents/register HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                "Expect: 100-continue\r\n\r\n" % (edge.http, MAX_BODY + 1)).encode())
        r = c.read_response(timeout=10)
        if r.status == 100:
            _send_quietly(c, b"x" * (MAX_BODY + 1))
            r = c.final_response()
        assert r.status == 413 and r.error_code() == "too_large", r
    assert rawhttp.health_ok(edge.http)


# ---- limits -----------------------------------------------------------------------

def _send_quietly(c, data):
    """Sends in a thread: the edge may answer (and close) before it read all."""
    def go():
        try:
            c.sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_body_past_the_maximum_is_413(edge):
    for framing in ("length", "chunked"):
        big = b'{"agent_id":"' + b"x" * (MAX_BODY + 16) + b'"}'
        if framing == "length":
            data = request("POST", "/v1/agents/register", edge.http, body=big)
        else:
            data = request("POST", "/v1/agents/register", edge.http,
                           body=[big[i:i + 65536] for i in range(0, len(big), 65536)], chunked=True)
        with Conn(edge.http, 20) as c:
            t = _send_quietly(c, data)
            r = c.final_response()
            assert r.status == 413 and r.error_code() == "too_large", (framing, r)
            t.join(20)
    # A body of exactly the maximum is read (and judged on its content).
    exact = b'{"agent_id":"' + b"y" * (MAX_BODY - 16) + b'"}'
    exact = exact + b" " * (MAX_BODY - len(exact))
    r, = exchange(edge, request("POST", "/v1/agents/register", edge.http, body=exact), 1, timeout=30)
    assert r.status == 400 and r.error_code() == "bad_request", r
    assert rawhttp.health_ok(edge.http)


# ---- bad framing --------------------------------------------------------------------

def _refused(edge, data):
    """A request with bad framing: answered 400 (or 413/431 for sizes), or
    the connection is closed; at most one response, then the end (the bytes
    after a request the edge could not frame are not a second request).
    Returns the response or None."""
    what = data if len(data) <= 160 else data[:100] + b"..." + data[-40:]
    with Conn(edge.http, 10) as c:
        t = _send_quietly(c, data)
        try:
            try:
                r = c.final_response()
            except (rawhttp.Closed, ConnectionResetError):
                return None
            assert r.status in (400, 413, 431), (what, r)
            if (r.header("content-type") or "").startswith("application/json"):
                r.error_code()
            try:
                assert c.closed_cleanly(), what
            except ConnectionResetError:
                pass
            return r
        except TimeoutError as ex:
            raise AssertionError("neither answered nor closed: %r (%s)" % (what, ex))
        except rawhttp.ProtocolError as ex:
            raise AssertionError("%r: %s" % (what, ex))
        finally:
            t.join(15)


def test_both_content_length_and_transfer_encoding(edge):
    """Request smuggling: the part after the chunked body is no request."""
    body = b'{"session_id":"fr-smuggle","event":{"a":1}}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    smuggled = request("GET", "/v1/runs/run_smuggled", edge.http)
    data = (b"POST /internal/send HTTP/1.1\r\nHost: " + edge.http.encode() +
            b"\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(chunked) +
            chunked + smuggled)
    r = _refused(edge, data)
    assert r is None or r.status == 400, r
    assert rawhttp.health_ok(edge.http)


def test_bad_chunk_sizes(edge):
    for bad in (b"zz\r\n{}\r\n0\r\n\r\n", b"-1\r\n{}\r\n0\r\n\r\n",
                b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n",
                b"\r\n\r\n", b"fffffffffffff\r\n"):  # the last: nothing follows, decidable now
        data = (b"POST /v1/agents/register HTTP/1.1\r\nHost: " + edge.http.encode() +
                b"\r\nTransfer-Encoding: chunked\r\n\r\n" + bad)
        r = _refused(edge, data)
        assert r is None or r.status in (400, 413), (bad, r)
    assert rawhttp.health_ok(edge.http)


def test_bad_content_lengths(edge):
    for cl in (b"Content-Length: abc", b"Content-Length: -5",
               b"Content-Length: 2\r\nContent-Length: 7", b"Content-Length: 1e3",
               b"Content-Length: 99999999999999999999999"):
        data = (b"POST /v1/agents/register HTTP/1.1\r\nHost: " + edge.http.encode() +
                b"\r\n" + cl + b"\r\n\r\n{}")
        r = _refused(edge, data)
        assert r is None or r.status in (400, 413), (cl, r)
    assert rawhttp.health_ok(edge.http)


def test_oversize_header(edge):
    for data in (request("GET", "/health", edge.http, headers=["X-Big: " + "a" * 100000]),
                 request("GET", "/health", edge.http,
                         headers=["X-H%d: %s" % (i, "b" * 100) for i in range(1000)]),
                 b"GET /" + b"p" * 100000 + b" HTTP/1.1\r\nHost: " + edge.http.encode() + b"\r\n\r\n"):
        _refused(edge, data)
    assert rawhttp.health_ok(edge.http)


def test_garbage_request_lines(edge):
    for data in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"G\xffT /health HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n"):
        with Conn(edge.http, 15) as c:
            c.send(data)
            try:
                r = c.final_response()
            except (rawhttp.Closed, ConnectionResetError):
                continue
            assert 400 <= r.status < 600 and r.status != 500, (data, r)
    assert rawhttp.health_ok(edge.http)


# ---- clients that leave ---------------------------------------------------------------

def test_clients_that_close_before_the_answer(edge):
    """Requests whose client leaves while the orchestrator works: the
    answers are dropped, the edge serves the others, /health stays ok."""
    addr = edge.http.rsplit(":", 1)
    keeper = Conn(edge.http)  # a kept-alive client that must be served throughout
    try:
        keeper.send(request("GET", "/health", edge.http))
        assert keeper.final_response().status == 200
        kinds = [
            request("GET", "/v1/runs/run_gone", edge.http),
            request("POST", "/v1/runs/run_gone/cancel", edge.http, body=b""),
            request("POST", "/v1/runs/run_gone/cancel", edge.http),
            request("GET", "/v1/agents", edge.http),
            request("GET", "/v1/sessions/fr-gone/messages", edge.http),
            request("POST", "/internal/invoke", edge.http, body=invoke_bytes("fr-gone", "a b c")),
            request("GET", "/v1/runs/run_gone/events", edge.http, headers=["Accept: text/event-stream"]),
            request("POST", "/v1/agents/register", edge.http, body=reg_body("fr-gone"))[:-5],
            request("POST", "/v1/agents/register", edge.http, body=[reg_body("fr-gone")],
                    chunked=True)[:-7],
            request("GET", "/health", edge.http)[:20],
        ]
        for i in range(120):
            s = socket.create_connection((addr[0], int(addr[1])), timeout=5)
            try:
                s.sendall(kinds[i % len(kinds)])
                if i % 3 == 0:  # a reset, not a FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            finally:
                s.close()
            if i % 10 == 9:
                keeper.send(request("GET", "/v1/runs/run_keeper%d" % i, edge.http))
                unknown_run(keeper.final_response(), "run_keeper%d" % i)
        # Pipelined requests whose client leaves after the first answer.
        for i in range(10):
            with Conn(edge.http) as c:
                c.send(b"".join(request("POST", "/v1/runs/run_pl%d/cancel" % j, edge.http, body=b"")
                                for j in range(4)))
                unknown_run(c.final_response(), "run_pl0")
        for i in range(20):
            keeper.send(request("POST", "/v1/runs/run_after%d/cancel" % i, edge.http, body=b""))
            unknown_run(keeper.final_response(), "run_after%d" % i)
        sentinel_after(edge, keeper)
    finally:
        keeper.close()
    assert rawhttp.health_ok(edge.http)
    assert edge.ingress.poll() is None


def test_a_client_that_leaves_a_streaming_invoke(edge):
    """An SSE stream whose reader leaves mid-run: the run still ends, and
    its events can be read back."""
    with Conn(edge.http) as c:
        c.send(request("POST", "/internal/invoke", edge.http,
                       body=json.dumps({"session_id": "fr-leave", "agent_id": "slow",
                                        "input_message": {"role": "user",
                                                          "content": " ".join(["w"] * 30)}}).encode()))
        deadline = time.monotonic() + 15
        head = b""
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            chunk = c.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        run_id = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
                  if l.lower().startswith(b"x-run-id:")][0].decode()

    def ended():
        with Conn(edge.http) as c:
            c.send(request("GET", "/v1/runs/" + run_id, edge.http, headers=["Connection: close"]))
            r = c.final_response()
            assert r.status == 200, ("GET /v1/runs/" + run_id, r)
            return r.json()["status"] in ("done", "failed", "cancelled")
    wait_until(ended, timeout=20, step=0.1, what="the left run to end")
    assert rawhttp.health_ok(edge.http)


def test_large_answers_on_connections_that_close_arrive_whole(edge):
    """Answers far larger than one socket write, on connections the edge
    ends after them (the client's Connection: close, a chunked POST): every
    byte arrives before the close. A run with 600 KB events, read back as one
    JSON page and streamed as SSE."""
    big = "b" * 600000  # one word: echo sends it as one 600 KB delta
    with Conn(edge.http, timeout=60) as c:
        c.send(request("POST", "/internal/invoke", edge.http, body=[invoke_bytes("fr-big", big)],
                       chunked=True))
        r = c.final_response(timeout=60)
        assert r.status == 200 and closes(r), r
        evs = rawhttp.sse_events(r.body)
        assert [e for _, e, _ in evs][-1] == "run_done", [e for _, e, _ in evs]
        done = [d for _, e, d in evs if e == "agent_invoke_done"][0]
        assert done["payload"]["output"]["content"] == big
        run_id = r.header("x-run-id")
        assert c.closed_cleanly(), "bytes after a Connection: close answer"
    events, after = [], 0
    for _ in range(10):  # pages of at most 1 MiB: 600 KB events come one or two a page
        with Conn(edge.http, timeout=60) as c:
            c.send(request("GET", "/v1/runs/%s/events?after_seq=%d" % (run_id, after), edge.http,
                           headers=["Connection: close"]))
            r = c.final_response(timeout=60)
            assert r.status == 200, r
            page = r.json()
            assert c.closed_cleanly(), "bytes after the answer to a Connection: close request"
        events += page["events"]
        after = page["next_after_seq"]
        if not page["has_more"]:
            break
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_done"
    assert events[1]["payload"]["message"]["content"] == big
    assert [e["payload"]["delta"] for e in events if e["type"] == "agent_stream_delta"] == [big]
