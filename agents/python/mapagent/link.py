"""link: the I/O thread. One DEALER to the broker, owned by one thread; the
asyncio loop only sees two queues (proto/PROTOCOL.md is the byte truth,
worker/worker.c the same job in C; this module follows it step by step).

Announce. READY [service, capacity], then a SERVICES probe whose id has
bit 63 set. Only the probe's answer brings the link up: a HEARTBEAT may be
one the previous broker queued before it died. Until then REQUEST and
CANCEL are served (a broker may hand us work right after READY) and the
rest is dropped. READY is sent once per loss, not every heartbeat: a READY
from a known peer resets it at the broker and would end fresh work. A
broker that does not know us answers any frame with DISCONNECT, which makes
us announce again. ZMQ_IMMEDIATE: a READY the socket refuses (no
connection yet) is retried with a backoff of 10 ms up to one heartbeat, and
POLLOUT is watched while it waits.

Liveness. HEARTBEAT every heartbeat_ms. The broker is lost after liveness x
heartbeat_ms of silence, or on DISCONNECT: every request being served is
reported cancelled to the loop (the broker has forgotten it; nothing is
answered), then READY again. An unanswered READY is repeated after the same
silence.

Keys, not broker ids. Each accepted REQUEST gets a local key that is never
reused; the loop names requests by key. A restarted broker numbers its
requests from 1 again, so a late delta of a handler cancelled by a link
loss could otherwise land in a new request that reuses the old id. A
command for a key that is no longer served is dropped.

Watchdog. The loop writes loop_alive (monotonic seconds) on a short tick.
When it is older than watchdog_ms, the loop hangs (a handler blocked it):
this thread stops heartbeating and answering, so the broker reports
worker_lost for what we serve instead of waiting forever on a live-looking
peer. When the loop comes back, heartbeats resume; the broker, which has
forgotten us, answers DISCONNECT and we announce again.

Requests of ours (agent calls, proto/PROTOCOL.md "Calling another agent").
The loop numbers them (request() returns the id; ids never reused and
below bit 63, so never a probe's); the thread sends REQUEST and posts every
STREAM, REPLY and ERROR for an id it has in flight as ("answer", id, type,
body or (code, message)). A request that cannot be sent (no link) gets
ERROR broker_lost at once; a link loss ends every one in flight the same
way, as worker.c does. cancel_request() sends CANCEL; the broker's ERROR
cancelled (or the final frame that won the race) ends it.

Cancel. A CANCEL is answered here at once with ERROR cancelled, which
frees the broker's credit whatever the handler does; the handler is then
cancelled in the loop.

Queues. Loop -> thread: a deque of commands and a pipe byte written when the
deque went from idle to armed (one write per batch, not per command).
Thread -> loop: a deque of events and one call_soon_threadsafe per batch.
The commands' deque is bounded softly: past _BACKLOG_MAX, handlers wait in
drained() until the thread caught up, so memory stays bounded whatever a
handler streams; the socket's own queue is bounded by its HWM.

Backpressure. A send the socket refuses (its HWM reached: the broker reads
slower than handlers write; or no connection) is not an end: the command
stays at the head of the deque, the thread stops taking commands and
watches POLLOUT, and the deque filling past _BACKLOG_MAX pauses the
handlers in drained(). Nothing is dropped and nothing grows without bound;
the thread goes on reading the socket (requests, cancels, heartbeats) all
the while. A heartbeat or one of the thread's own answers (ERROR cancelled,
worker_stopping, ...) that finds the socket full is sent first once there
is room: the frames queued ahead of it reach the broker anyway, and any
frame is a sign of life. Commands are taken at most _CMD_BATCH per turn so
a handler streaming as fast as the thread sends cannot starve the reads.
If the room never comes back (the connection is gone), the link is lost
after liveness x heartbeat_ms of silence and what was queued for the lost
requests is dropped unsent.
"""
import asyncio
import collections
import logging
import os
import threading
import time

import zmq

from . import bodies
from . import frames as F

log = logging.getLogger("mapagent")

_BATCH = 1000          # messages handled per wake-up
_HWM = 100000          # messages queued each way, as the C library
_READY_RETRY_MIN = 10  # ms
_PROBE_BIT = 1 << 63
_CLOSE_LINGER = 200    # ms the last frames may take to leave
_BACKLOG_MAX = 10000   # commands queued for the thread before handlers wait
_CMD_BATCH = 4000      # commands taken per turn before the socket is read again
_HELD_MAX = 1024       # the thread's own answers held while the socket is full
_DONTWAIT = int(zmq.DONTWAIT)
_DONTWAIT_MORE = int(zmq.DONTWAIT | zmq.SNDMORE)


class ConfigError(ValueError):
    """A setting the link cannot use; str(err) is one sentence."""


def _ms():
    return time.monotonic() * 1000.0


class Link:
    """The DEALER and its thread. on_events(list) runs in the asyncio loop
    with batches of ("request", key, invoke dict), ("cancel", key),
    ("answer", request id, frame type, body or (code, message)) and
    ("link", up) tuples."""

    def __init__(self, cfg, loop, on_events):
        self.cfg = cfg
        self.loop = loop
        self.on_events = on_events
        self.loop_alive = time.monotonic()
        self.stats = collections.Counter()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        s = self._sock
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, _HWM)
        s.setsockopt(zmq.RCVHWM, _HWM)
        s.setsockopt(zmq.IMMEDIATE, 1)
        try:
            if cfg.curve_server_key:
                s.curve_serverkey = cfg.curve_server_key.encode()
                s.curve_publickey = cfg.curve_public_key.encode()
                s.curve_secretkey = cfg.curve_secret_key.encode()
        except zmq.ZMQError as e:
            self._close_now()
            raise ConfigError("invalid CURVE key (40 z85 characters expected): %s" % e) from None
        try:
            s.connect(cfg.endpoint)
        except zmq.ZMQError as e:
            self._close_now()
            raise ConfigError("cannot connect to broker endpoint '%s': %s" % (cfg.endpoint, e)) from None
        # send(data, flags, copy) of pyzmq's backend socket, without the
        # sugar layer's keyword handling (see _send).
        backend_send = getattr(zmq.backend.Socket, "send", None)
        self._raw_send = (backend_send.__get__(s) if backend_send is not None else
                          lambda data, flags, copy=True: s.send(data, flags, copy))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._cmds = collections.deque()
        self._wake_armed = False
        self._inbox = collections.deque()
        self._inbox_armed = False
        self._out = []                  # events of this turn, posted at its end
        self._serving = {}              # broker id -> key
        self._keys = {}                 # key -> (broker id, STREAM header)
        self._next_key = 0
        self._asked = set()             # ids of our requests in flight (thread side)
        self._next_request = 0          # the last id request() gave (loop side)
        self._refusing = False          # stopping: new requests get worker_stopping
        self._closing = False
        self._closed = False            # close() returned: the loop sends nothing more
        self.linked = False
        self._ready_sent = False
        self._probe_id = 0
        self._probes = 0
        self._ready_retry = _READY_RETRY_MIN
        now = _ms()
        self._next_ready = now
        self._next_heartbeat = now + cfg.heartbeat_ms
        self._expiry = now + cfg.heartbeat_ms * cfg.liveness
        self._stalled = False
        self._blocked = False           # the socket refused a send: wait for POLLOUT
        self._hb_owed = False           # a heartbeat found the socket full
        self._held = collections.deque()  # the thread's own answers the socket refused
        self._close_by = None           # monotonic deadline of close(): then unsent is dropped
        self._reject_window = 0
        self._rejects_logged = 0
        self._wait_logged = 0
        self._drop_logged = 0
        self._ready_hdr = F.encode(F.READY, cfg.service, cfg.capacity)
        self._hb_hdr = F.encode(F.HEARTBEAT)
        self._thread = threading.Thread(target=self._main, name="mapagent-io", daemon=True)

    def _close_now(self):
        self._sock.close(0)
        self._ctx.term()

    # ---- the loop's side (call only from the asyncio loop's thread) --------

    def start(self):
        self._thread.start()

    def alive(self):
        """False once the I/O thread has ended (closed, or failed)."""
        return self._thread.is_alive()

    async def drained(self):
        """Gives the loop a turn, then waits while more than _BACKLOG_MAX
        commands wait for the I/O thread: a handler that streams faster
        than the socket sends is slowed down instead of growing memory."""
        await asyncio.sleep(0)
        while len(self._cmds) > _BACKLOG_MAX and self._thread.is_alive():
            await asyncio.sleep(0.001)

    def stream(self, key, body):
        self._command(("stream", key, body))

    def reply(self, key, body):
        self._command(("reply", key, body))

    def fail(self, key, code, message):
        self._command(("fail", key, code, message))

    def request(self, service, body):
        """Sends a request of ours; returns its id. Its answers arrive as
        ("answer", id, ...) events, the last a REPLY or an ERROR."""
        self._next_request += 1
        rid = self._next_request
        self._command(("ask", rid, service, body))
        return rid

    def cancel_request(self, rid):
        self._command(("unask", rid))

    def refuse(self):
        """From now on new requests are answered ERROR worker_stopping. A
        flag, not a command: it must not wait behind frames the socket has
        no room for."""
        self._refusing = True

    def close(self, timeout=5.0):
        """Flushes the commands, sends DISCONNECT, closes; waits for the thread."""
        if self._thread.is_alive():
            # A socket that stays full would hold the close command forever.
            self._close_by = time.monotonic() + timeout / 2.0
            self._command(("close",))
            try:
                os.write(self._wake_w, b"x")  # wakes a thread that waits for POLLOUT
            except (BlockingIOError, OSError):
                pass
            self._thread.join(timeout)
        self._closed = True  # later commands are dropped: the pipe's fds may be reused
        if not self._thread.is_alive():
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _command(self, cmd):
        if self._closed:
            return
        self._cmds.append(cmd)
        if not self._wake_armed:
            self._wake_armed = True
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # a byte is already waiting: the thread wakes anyway

    def _on_inbox(self):
        self._inbox_armed = False
        batch = []
        while self._inbox:
            batch.extend(self._inbox.popleft())
        if batch:
            self.on_events(batch)

    # ---- the thread --------------------------------------------------------

    def _post(self):
        if not self._out:
            return
        self._inbox.append(self._out)
        self._out = []
        if not self._inbox_armed:
            self._inbox_armed = True
            try:
                self.loop.call_soon_threadsafe(self._on_inbox)
            except RuntimeError:
                pass  # the loop is closed: nobody listens any more

    def _send(self, parts):
        """Sends one message (header, body?) without blocking. Returns
        False when the socket refused it. This is the hot path, one call per
        delta: two plain sends of the backend's socket with the flags as
        plain ints (send_multipart, the sugar layer and the flag enum's
        __or__ cost more than the send itself, measured with cProfile)."""
        send = self._raw_send
        try:
            if len(parts) == 1:
                send(parts[0], _DONTWAIT)
            else:
                send(parts[0], _DONTWAIT_MORE)
                # Once the first part is accepted, the rest of the message is too.
                send(parts[1], _DONTWAIT, len(parts[1]) < 65536)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as e:
            log.warning("worker.send error=%s", e)
            return False

    def _error_parts(self, bid, code, message):
        return [F.encode(F.ERROR, bid, code, F.clip_utf8(message, F.MESSAGE_MAX))]

    def _answer(self, bid, code, message):
        """Sends an ERROR of the thread's own (it frees the broker's credit).
        One the socket refuses is held and sent first once there is room;
        past _HELD_MAX held (a broker that sends but does not read) it is
        dropped and counted."""
        parts = self._error_parts(bid, code, message)
        if not self._blocked and self._send(parts):
            return
        self._wait_room()
        if len(self._held) >= _HELD_MAX:
            self.stats["answers_dropped"] += 1
            second = int(time.monotonic())
            if second != self._drop_logged:  # at most a line a second
                self._drop_logged = second
                log.warning("worker.answer_dropped id=%d code=%s held=%d", bid, code,
                            len(self._held))
            return
        self._held.append(parts)

    def _wait_room(self):
        if not self._blocked:
            self._blocked = True
            self.stats["send_waits"] += 1
            # A debug line at most once a second: backpressure is normal.
            second = int(time.monotonic())
            if second != self._wait_logged:
                self._wait_logged = second
                log.debug("worker.send_wait queued=%d", len(self._cmds))

    def _flush(self):
        """Sends what waits, in order: an owed heartbeat, the thread's own
        answers, then up to _CMD_BATCH commands. Stops at the first send
        the socket refuses (then POLLOUT is watched)."""
        if self._hb_owed and not self._stalled:
            if not self._send([self._hb_hdr]):
                self._wait_room()
                return
        self._hb_owed = False
        held = self._held
        while held:
            if not self._send(held[0]):
                self._wait_room()
                return
            held.popleft()
        cmds = self._cmds
        for _ in range(_CMD_BATCH):
            if not cmds:
                return
            cmd = cmds.popleft()
            if not self._on_command(cmd):
                cmds.appendleft(cmd)  # the loop only appends on the right: order holds
                self._wait_room()
                return

    def _send_ready(self, now):
        if self._send([self._ready_hdr]):
            self._ready_sent = True
            self._next_heartbeat = now + self.cfg.heartbeat_ms
            self._expiry = now + self.cfg.heartbeat_ms * self.cfg.liveness
            self._probes += 1
            self._probe_id = _PROBE_BIT | self._probes
            self._send([F.encode(F.SERVICES, self._probe_id)])
            return
        self._next_ready = now + self._ready_retry
        self._ready_retry = min(self._ready_retry * 2, self.cfg.heartbeat_ms)

    def _forget_all(self):
        for key in self._keys:
            self._out.append(("cancel", key))
        self._serving.clear()
        self._keys.clear()
        for rid in sorted(self._asked):
            self._out.append(("answer", rid, F.ERROR,
                              ("broker_lost", "the link to the broker was lost")))
        self._asked.clear()

    def _lost(self, reason, now):
        was = self.linked
        self.linked = False
        self._ready_sent = False
        self._ready_retry = _READY_RETRY_MIN
        self._next_ready = now
        # The broker forgot us: what waits for room is dropped unsent (the
        # commands of forgotten keys at the next flush, which must run: the
        # room may never come back on a dead connection).
        self._held.clear()
        self._hb_owed = False
        self._blocked = False
        if was or self._keys or self._asked:
            log.warning("worker.link_lost endpoint=%s reason=%s active=%d", self.cfg.endpoint,
                        reason, len(self._keys))
            self.stats["link_lost"] += 1
            self._forget_all()
            self._out.append(("link", False))
        self._send_ready(now)

    def _up(self, now):
        self.linked = True
        self._expiry = now + self.cfg.heartbeat_ms * self.cfg.liveness
        log.info("worker.link_up endpoint=%s service=%s capacity=%d", self.cfg.endpoint,
                 self.cfg.service, self.cfg.capacity)
        self._out.append(("link", True))

    def _reject(self, reason, size):
        """Counts a dropped frame; logs at most 10 a second (a flood of
        garbage must not become a flood of log lines)."""
        self.stats["rejected"] += 1
        second = int(time.monotonic())
        if second != self._reject_window:
            self._reject_window, self._rejects_logged = second, 0
        self._rejects_logged += 1
        if self._rejects_logged <= 10:
            log.warning("frame.reject endpoint=%s reason=%s size=%d", self.cfg.endpoint, reason,
                        size)

    def _on_request(self, bid, body):
        if self._refusing:
            self._answer(bid, "worker_stopping", "the agent is stopping")
            return
        if bid in self._serving:
            self._reject("duplicate request id=%d" % bid, len(body))
            return
        if len(self._serving) >= F.CAPACITY_MAX:  # a broker past our credit: bounded anyway
            self._answer(bid, "overloaded", "the worker holds too many requests")
            return
        try:
            inv = bodies.decode_invoke(body)
        except bodies.BodyError as e:
            self._answer(bid, "bad_request", "invoke body: %s" % e)
            return
        self._next_key += 1
        key = self._next_key
        self._serving[bid] = key
        self._keys[key] = (bid, F.encode(F.STREAM, bid))
        self._out.append(("request", key, inv))

    def _on_cancel(self, bid):
        key = self._serving.pop(bid, None)
        if key is None:
            return  # answered already: our final frame is on its way
        del self._keys[key]
        if not self._stalled:
            self._answer(bid, "cancelled", "cancelled by requester")
        self._out.append(("cancel", key))

    def _on_message(self, parts, now):
        hdr = parts[0]
        size = sum(len(p) for p in parts)
        self._expiry = now + self.cfg.heartbeat_ms * self.cfg.liveness  # any frame is life
        if len(parts) > 2:
            self._reject("more than two parts", size)
            return
        body = parts[1] if len(parts) == 2 else None
        if body is not None and len(body) > self.cfg.body_max:
            self._reject("body too large", size)
            # A request too large for us is answered so its credit comes back.
            try:
                h = F.decode(hdr, True)
            except F.FrameError:
                return
            if h[1] == F.REQUEST and self._ready_sent:
                self._answer(h[2], "too_large", "body over the worker's maximum")
            return
        try:
            h = F.decode(hdr, body is not None)
        except F.FrameError as e:
            self._reject(str(e), size)
            return
        t = h[1]
        if t == F.DISCONNECT:
            self._lost("disconnect", now)
            return
        if not self.linked:
            if not self._ready_sent:
                return  # sent before the broker could know us
            if t in (F.REPLY, F.ERROR) and h[2] == self._probe_id:
                self._up(now)
                return
            if t not in (F.REQUEST, F.CANCEL):
                return  # maybe from the broker before: only the probe's answer counts
        if t == F.HEARTBEAT:
            return
        if t == F.REQUEST:
            self._on_request(h[2], body)
        elif t == F.CANCEL:
            self._on_cancel(h[2])
        elif t in (F.STREAM, F.REPLY, F.ERROR):
            rid = h[2]
            if rid not in self._asked:
                return  # a late answer: to an old probe, or to a request lost with the link
            if t == F.STREAM:
                self._out.append(("answer", rid, t, body))
            else:
                self._asked.discard(rid)
                self._out.append(("answer", rid, t, body if t == F.REPLY else (h[3], h[4])))
        else:
            self._reject("unexpected type", size)

    def _on_command(self, cmd):
        """Carries out one command. False when the socket refused its frame:
        the command is to be tried again once there is room."""
        kind = cmd[0]
        if kind == "close":
            self._closing = True
            return True
        if kind == "ask":
            rid, service, body = cmd[1], cmd[2], cmd[3]
            if not self.linked:
                self._out.append(("answer", rid, F.ERROR,
                                  ("broker_lost", "no link to the broker")))
                return True
            if len(body) > self.cfg.body_max:
                self._out.append(("answer", rid, F.ERROR,
                                  ("too_large", "body over the worker's maximum")))
                return True
            if not self._send([F.encode(F.REQUEST, rid, service), body]):
                return False
            self._asked.add(rid)
            return True
        if kind == "unask":
            if cmd[1] in self._asked and self.linked:
                return self._send([F.encode(F.CANCEL, cmd[1])])
            return True
        entry = self._keys.get(cmd[1])
        if entry is None or not self._ready_sent:
            return True  # cancelled, lost or already answered
        bid, stream_hdr = entry
        if kind == "stream":
            return self._send([stream_hdr, cmd[2]])
        if kind == "reply":
            ok = self._send([F.encode(F.REPLY, bid), cmd[2]])
        else:
            ok = self._send(self._error_parts(bid, cmd[2], cmd[3]))
        if ok:
            del self._keys[cmd[1]]
            del self._serving[bid]
        return ok

    def _timers(self, now):
        if not self.linked and not self._ready_sent and now >= self._next_ready:
            self._send_ready(now)
        if self.linked and now >= self._expiry:
            self._lost("silent", now)
        elif not self.linked and self._ready_sent and now >= self._expiry:
            log.debug("worker.ready_again endpoint=%s", self.cfg.endpoint)
            self._ready_sent = False
            self._send_ready(now)
        stalled = (time.monotonic() - self.loop_alive) * 1000.0 > self.cfg.watchdog_ms
        if stalled != self._stalled:
            self._stalled = stalled
            if stalled:
                self._hb_owed = False
                log.error("worker.loop_stalled ms=%d: heartbeats stop until the asyncio loop "
                          "runs again", self.cfg.watchdog_ms)
                self.stats["stalls"] += 1
            else:
                log.warning("worker.loop_back")
        if self._ready_sent and now >= self._next_heartbeat:
            if not stalled:
                if self._blocked:
                    self._hb_owed = True
                elif not self._send([self._hb_hdr]):
                    self._hb_owed = True
                    self._wait_room()
            self._next_heartbeat = now + self.cfg.heartbeat_ms

    def _timeout(self, now):
        if self._cmds and not self._blocked:
            return 0  # a batch was cut short: read, then go on
        nxt = self._next_heartbeat if self._ready_sent else self._next_ready
        if self._ready_sent and self._expiry < nxt:
            nxt = self._expiry
        if self._close_by is not None:
            nxt = min(nxt, now + (self._close_by - time.monotonic()) * 1000.0)
        # The watchdog is checked at least every heartbeat, so it is late by
        # at most one.
        return max(0, int(nxt - now) + 1)

    def _main(self):
        try:
            self._loop()
        except Exception:
            log.exception("worker.io_thread_failed")
        finally:
            self._out.append(("link", False))
            self._post()
            if self._ready_sent:
                self._send([F.encode(F.DISCONNECT)])
            self._sock.setsockopt(zmq.LINGER, _CLOSE_LINGER)
            self._sock.close()
            self._ctx.term()

    def _loop(self):
        sock = self._sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        watching_out = False
        self._send_ready(_ms())
        while not self._closing:
            if self._close_by is not None and time.monotonic() >= self._close_by:
                log.warning("worker.close_unsent commands=%d", len(self._cmds))
                break  # the socket stayed full: what is left is dropped
            want_out = not self._ready_sent or self._blocked
            if want_out != watching_out:
                poller.modify(sock, zmq.POLLIN | (zmq.POLLOUT if want_out else 0))
                watching_out = want_out
            events = dict(poller.poll(self._timeout(_ms())))
            if events.get(self._wake_r):
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if want_out and events.get(sock, 0) & zmq.POLLOUT:
                self._next_ready = 0
                self._blocked = False
            if not self._blocked:
                # Disarmed before the deque is read: a command appended after
                # the read writes the pipe. While blocked the pipe stays armed
                # (no wake-up per command); POLLOUT wakes us instead.
                self._wake_armed = False
                self._flush()
            now = _ms()
            for _ in range(_BATCH):
                try:
                    parts = sock.recv_multipart(zmq.DONTWAIT, copy=True)
                except zmq.Again:
                    break
                self._on_message(parts, now)
            self._timers(_ms())
            self._post()
