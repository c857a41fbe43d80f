"""calls: a handler calls another agent (proto/PROTOCOL.md, "Calling
another agent"; SPEC §7). The same job as worker/call.c in C:

    async for event in call.call("echo", "text"):   # the child's events
        ...
    text = await call.call_text("echo", "text")     # its output content

call() sends op `call` to service `orchestrator` with the invoke's run_id
and platform token, and yields the child run's event objects (dicts, SPEC
§2) in seq order from 1, without gap or repeat: a seq past the next
expected one, or the follow's REPLY before the terminal event, is filled
with op `events` pages until the gap is closed (the live events meanwhile
wait in the call's queue; those a page brought already are dropped as
repeats). It yields the
terminal event too and then ends; it raises CallError for a refusal (the
orchestrator's status and code: forbidden, call_refused, ...) or an answer
that broke off (broker_lost, worker_lost, ...). call_text() raises
CallError also when the child failed (its error's code) or was cancelled
("cancelled").

Cancel: leaving the `async for` early, or the handler being cancelled,
sends CANCEL for the call (the orchestrator cancels the child); whatever
calls are still open when the handler ends are cancelled too.
"""
import asyncio
import json
import os

import msgpack

from . import frames as F

_PAGE = 1000
_TERMINAL = ("run_done", "run_failed", "run_cancelled")
_ids = 0


class CallError(Exception):
    """A call that did not give an answer: code (call_refused, forbidden,
    worker_lost, cancelled, broker_lost, ...), message, and status (the
    orchestrator's HTTP-like status for a refusal, else 0); child_run_id
    when a child was started."""

    def __init__(self, code, message, status=0, child_run_id=None):
        super().__init__("%s: %s" % (code, message))
        self.code, self.message, self.status = code, message, status
        self.child_run_id = child_run_id


def _new_call_id():
    global _ids
    _ids += 1
    return "call_%s_%d" % (os.urandom(6).hex(), _ids)


class Requests:
    """The runner's requests of ours: id -> queue of (frame type, payload)."""

    def __init__(self, link):
        self.link = link
        self.queues = {}

    def ask(self, service, body):
        rid = self.link.request(service, body)
        q = asyncio.Queue()
        self.queues[rid] = q
        return rid, q

    def cancel(self, rid):
        if self.queues.pop(rid, None) is not None:
            self.link.cancel_request(rid)

    def done(self, rid):
        self.queues.pop(rid, None)

    def on_answer(self, rid, kind, payload):
        q = self.queues.get(rid)
        if q is None:
            return  # cancelled by us: its late frames are nobody's
        if kind != F.STREAM:
            del self.queues[rid]
        q.put_nowait((kind, payload))


def _unpack(body):
    try:
        doc = msgpack.unpackb(body, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise CallError("internal", "the orchestrator's answer does not decode") from None
    if type(doc) is not dict:
        raise CallError("internal", "the orchestrator's answer is not a map")
    return doc


def _envelope(rep):
    try:
        err = json.loads(rep.get("json", "{}")).get("error", {})
        return err.get("code", "internal"), err.get("message", "")
    except (ValueError, AttributeError):
        return "internal", "the orchestrator's refusal does not decode"


async def _page(reqs, child, after):
    """One op `events` page: (events, has_more). Raises CallError."""
    rid, q = reqs.ask("orchestrator", msgpack.packb(
        {"op": "events", "run_id": child, "after_seq": after, "limit": _PAGE}))
    try:
        kind, payload = await q.get()
    except BaseException:
        reqs.cancel(rid)
        raise
    if kind == F.ERROR:
        raise CallError(payload[0], payload[1], child_run_id=child)
    rep = _unpack(payload)
    if rep.get("status") != 200:
        code, message = _envelope(rep)
        raise CallError(code, message, rep.get("status", 0), child)
    doc = json.loads(rep["json"])
    return doc.get("events", []), bool(doc.get("has_more"))


async def call_events(call, reqs, agent_id, content, call_id=None, history=None, role="user"):
    """The async generator behind Call.call (see the module's doc)."""
    platform = call.platform
    if not platform:
        raise CallError("bad_request", "the invoke carried no platform token: only runs "
                        "of the orchestrator can call agents")
    body = {"op": "call", "run_id": call.run_id, "token": platform["token"],
            "call_id": call_id or _new_call_id(), "agent_id": agent_id, "role": role,
            "content": content}
    if history:
        body["history"] = [{"role": h["role"], "content": h["content"]} for h in history]
    rid, q = reqs.ask("orchestrator", msgpack.packb(body))
    call._asked.add(rid)
    child, last, terminal, live = None, 0, False, True
    try:
        while True:
            if live:
                kind, payload = await q.get()
            else:
                kind = None  # the follow is over: only pages are left
            need = None      # fill until last >= need (None: until the terminal event)
            if kind == F.STREAM:
                st = _unpack(payload)
                if "accepted" in st:
                    child = child or st.get("run_id")
                    continue
                seq = st.get("seq", 0)
                if child is None or terminal or seq <= last:
                    continue
                if seq == last + 1:
                    ev = json.loads(st["event"])
                    last = seq
                    terminal = ev.get("type") in _TERMINAL
                    yield ev
                    continue
                need = seq
            elif kind == F.ERROR:
                live = False
                call._asked.discard(rid)
                if terminal:
                    return
                raise CallError(payload[0], payload[1], child_run_id=child)
            elif kind == F.REPLY:
                live = False
                call._asked.discard(rid)
                rep = _unpack(payload)
                if rep.get("status") != 200:
                    code, message = _envelope(rep)
                    raise CallError(code, message, rep.get("status", 0), child)
                child = child or rep.get("run_id")
                if terminal:
                    return
                if child is None:
                    raise CallError("internal", "the orchestrator answered without a child run")
            # Fill: pages after last until need (or the terminal event).
            empty = 0
            while not terminal and (need is None or last < need):
                events, more = await _page(reqs, child, last)
                before = last
                for ev in events:
                    if ev.get("seq") == last + 1 and not terminal:
                        last = ev["seq"]
                        terminal = ev.get("type") in _TERMINAL
                        yield ev
                if last == before and not more:
                    # One more page may be needed: the first may predate
                    # what it was asked for; two empty ones: give up.
                    empty += 1
                    if empty >= 2:
                        if live:
                            break  # wait for live events
                        raise CallError("internal", "the child's log ended without its end",
                                        child_run_id=child)
                else:
                    empty = 0
            if terminal and not live:
                return
    finally:
        if rid in call._asked:
            call._asked.discard(rid)
            reqs.cancel(rid)


async def call_text(call, reqs, agent_id, content, **kw):
    """The child's output content; CallError unless it ended run_done."""
    output, child = None, None
    async for ev in call_events(call, reqs, agent_id, content, **kw):
        child = ev.get("run_id", child)
        t = ev.get("type")
        if t == "agent_invoke_done":
            output = ev["payload"]["output"]["content"]
        elif t == "run_failed":
            err = ev["payload"].get("error", {})
            raise CallError(err.get("code", "internal"), err.get("message", ""),
                            child_run_id=child)
        elif t == "run_cancelled":
            raise CallError("cancelled", "the child run was cancelled", child_run_id=child)
    return output if output is not None else ""
