"""agent: the asyncio side of the SDK. Agent names a service and its
handler; serve() runs it against the broker through a Link (the I/O thread,
link.py); run() is serve() configured from the environment, with SIGTERM
and SIGINT draining.

One asyncio task per request. The handler is an async generator: each
yielded str is one delta (STREAM {"delta": s}; empty strings are skipped);
when it returns, the output is the deltas joined, or call.output when the
handler set it, in one REPLY. Failures become ERROR frames, which the
orchestrator turns into run_failed:

    handler raises E              agent_error, message str(E) (or E's class name)
    handler yields a non-str      agent_error "the handler yielded <type>, not str"
    a delta or the output's body  agent_error "answer too large"
      is over body_max              (never sent: the broker would drop it)
    call.output is not a message  agent_error "call.output must be ..."

Cancellation (CANCEL from the broker, or the link lost) is
task.cancel(): the handler sees asyncio.CancelledError at its await; the
I/O thread has answered the broker already, so nothing more is sent. A
handler that swallows it and goes on yielding is stopped (aclose) at its
next yield.

Fairness. A handler that yields without awaiting never gives the loop
back; every _YIELD_EVERY deltas the driver awaits Link.drained(), so other
handlers, the watchdog's tick and the I/O thread get their turn, and a
handler faster than the broker reads is paused there (link.py,
Backpressure) instead of queueing without bound or being cut.

The joined output is kept only while it fits body_max: past it the answer
cannot be sent anyway, so memory stays bounded by the frame limit even for
a handler that streams without end (and still works if it sets
call.output).

Draining (stop set, e.g. SIGTERM): the broker has no way to take back
credit without ending what a worker serves, so new requests are answered
ERROR worker_stopping by the I/O thread (agent_unavailable for the run);
running handlers get drain_ms to finish; the rest is cancelled and failed
worker_stopping; then DISCONNECT.
"""
import asyncio
import inspect
import logging
import os
import signal
import sys
import time

from . import bodies
from . import calls as C
from . import frames as F
from .link import ConfigError, Link

log = logging.getLogger("mapagent")

NAME_MAX = F.SERVICE_MAX - len("agent.")
# A handler that yields without awaiting anything never gives the loop back:
# every this many deltas the driver awaits (the other handlers, the
# watchdog's tick and the I/O thread get their turn; see Link.drained).
_YIELD_EVERY = 64
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR}


class Call:
    """One run's request as the handler sees it. input and every history
    entry are {"role": str, "content": str}; set output to such a dict to
    answer something other than the joined deltas. platform is the
    invoke's {"token", "depth", "root_run_id", "parent_run_id"?} (None when
    the requester sent none); call() and call_text() call other agents with
    it (calls.py)."""

    __slots__ = ("run_id", "session_id", "agent_id", "input", "history", "timeout_ms",
                 "platform", "output", "cancelled", "_key", "_reqs", "_asked")

    def __init__(self, key, inv, reqs=None):
        self._key = key
        self._reqs = reqs
        self._asked = set()   # ids of this call's requests still open
        self.platform = inv.get("platform")
        self.run_id = inv["run_id"]
        self.session_id = inv["session_id"]
        self.agent_id = inv["agent_id"]
        self.input = inv["input"]
        self.history = inv["history"]
        self.timeout_ms = inv.get("timeout_ms", 0)
        self.output = None
        self.cancelled = False

    def __repr__(self):
        return "Call(run_id=%r, session_id=%r)" % (self.run_id, self.session_id)

    def call(self, agent_id, content, call_id=None, history=None):
        """Calls agent_id with content as a child run of this run: an async
        iterator of the child's events (dicts, SPEC §2) in seq order, the
        terminal one last. Raises CallError when refused or cut off."""
        return C.call_events(self, self._reqs, agent_id, content, call_id=call_id,
                             history=history)

    async def call_text(self, agent_id, content, call_id=None, history=None):
        """The child's output content. Raises CallError (with .code) when
        the call is refused, the child fails or is cancelled."""
        return await C.call_text(self, self._reqs, agent_id, content, call_id=call_id,
                                 history=history)


class Agent:
    """Agent(name, capacity): served as the native agent `name` (service
    agent.<name>), running at most capacity handlers at once; the broker
    queues the rest (credit)."""

    def __init__(self, name, capacity=8):
        if type(name) is not str or not 1 <= len(name.encode()) <= NAME_MAX:
            raise ValueError("the agent name must be a str of 1 to %d bytes" % NAME_MAX)
        if type(capacity) is not int or not 1 <= capacity <= F.CAPACITY_MAX:
            raise ValueError("capacity must be an int from 1 to %d" % F.CAPACITY_MAX)
        self.name = name
        self.capacity = capacity
        self.service = "agent." + name
        self._handler = None

    def handler(self, fn):
        """Decorator: fn(call) is an async generator of str deltas (or an
        async function returning the output's content)."""
        if not (inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn)):
            raise TypeError("the handler must be an async generator function "
                            "(async def with yield) or an async function")
        self._handler = fn
        return fn


class Config:
    """Everything serve() needs; from_env reads the MAP_* variables."""

    def __init__(self, service, capacity, endpoint="tcp://127.0.0.1:5555", heartbeat_ms=1000,
                 liveness=3, body_max=F.BODY_MAX_DEFAULT, watchdog_ms=None, drain_ms=5000,
                 curve_server_key=None, curve_public_key=None, curve_secret_key=None):
        self.service = service
        self.capacity = capacity
        self.endpoint = endpoint
        self.heartbeat_ms = heartbeat_ms
        self.liveness = liveness
        self.body_max = body_max
        # The loop counts as hung once it has been stuck longer than the
        # broker waits for a silent peer.
        self.watchdog_ms = watchdog_ms or heartbeat_ms * liveness
        self.drain_ms = drain_ms
        self.curve_server_key = curve_server_key
        self.curve_public_key = curve_public_key
        self.curve_secret_key = curve_secret_key
        if curve_server_key and not (curve_public_key and curve_secret_key):
            raise ConfigError("a CURVE server key needs our public and secret keys too "
                              "(MAP_CURVE_PUBLIC_KEY, MAP_CURVE_SECRET_KEY)")
        if not endpoint:
            raise ConfigError("the broker endpoint is empty")

    @classmethod
    def from_env(cls, agent, env=None):
        env = os.environ if env is None else env

        def num(name, default, lo, hi):
            raw = env.get(name, "")
            if raw == "":
                return default
            try:
                value = int(raw, 10)
            except ValueError:
                raise ConfigError("%s must be an integer, not %r" % (name, raw)) from None
            if not lo <= value <= hi:
                raise ConfigError("%s must be from %d to %d, not %d" % (name, lo, hi, value))
            return value

        hb = num("MAP_HEARTBEAT_MS", 1000, 10, 60000)
        return cls(agent.service, agent.capacity,
                   endpoint=env.get("MAP_BROKER") or "tcp://127.0.0.1:5555",
                   heartbeat_ms=hb,
                   liveness=num("MAP_LIVENESS", 3, 1, 100),
                   body_max=num("MAP_BODY_MAX", F.BODY_MAX_DEFAULT, 1024, 1 << 30),
                   watchdog_ms=num("MAP_WATCHDOG_MS", 0, 0, 3600000),
                   drain_ms=num("MAP_DRAIN_MS", 5000, 0, 3600000),
                   curve_server_key=env.get("MAP_CURVE_SERVER_KEY") or None,
                   curve_public_key=env.get("MAP_CURVE_PUBLIC_KEY") or None,
                   curve_secret_key=env.get("MAP_CURVE_SECRET_KEY") or None)


class _Stopping(Exception):
    """Why a handler was cancelled while the agent drains."""


class _Runner:
    def __init__(self, agent, cfg, loop):
        self.agent = agent
        self.cfg = cfg
        self.tasks = {}   # key -> (task, call)
        self.stopping = False
        self.served = self.failed = self.cancelled = 0
        self.link = Link(cfg, loop, self._on_events)
        self.reqs = C.Requests(self.link)
        self.loop = loop
        self.gen = inspect.isasyncgenfunction(agent._handler)

    def _on_events(self, batch):
        for ev in batch:
            kind = ev[0]
            if kind == "answer":
                self.reqs.on_answer(ev[1], ev[2], ev[3])
            elif kind == "request":
                call = Call(ev[1], ev[2], self.reqs)
                task = self.loop.create_task(self._serve(call))
                self.tasks[ev[1]] = (task, call)
            elif kind == "cancel":
                entry = self.tasks.get(ev[1])
                if entry:
                    entry[1].cancelled = True
                    entry[0].cancel()
            elif kind == "link":
                log.debug("agent.link up=%s running=%d", ev[1], len(self.tasks))

    def _fail(self, call, code, message):
        self.failed += 1
        log.info("agent.run_failed run=%s code=%s message=%s", call.run_id, code, message)
        self.link.fail(call._key, code, message)

    async def _serve(self, call):
        try:
            await self._drive(call)
        except Exception as e:  # ours, not the handler's: the run still gets its final frame
            log.exception("agent.internal run=%s", call.run_id)
            self._fail(call, "agent_error", "%s: %s" % (type(e).__name__, e))
        finally:
            self.tasks.pop(call._key, None)
            for rid in list(call._asked):  # calls the handler left open
                self.reqs.cancel(rid)
            call._asked.clear()

    async def _drive(self, call):
        body_max = self.cfg.body_max
        parts, kept, over, sent = [], 0, False, 0
        gen = None
        try:
            if self.gen:
                gen = self.agent._handler(call)
                async for delta in gen:
                    if call.cancelled:
                        break
                    if type(delta) is not str:
                        raise TypeError("the handler yielded %s, not str" % type(delta).__name__)
                    if not delta:
                        continue
                    body = bodies.encode_delta(delta)
                    if len(body) > body_max:
                        self._fail(call, "agent_error", "answer too large")
                        return
                    self.link.stream(call._key, body)
                    sent += 1
                    if sent % _YIELD_EVERY == 0:
                        await self.link.drained()
                    if not over:
                        kept += len(body)
                        if kept > body_max:
                            over, parts = True, []
                        else:
                            parts.append(delta)
            else:
                result = await self.agent._handler(call)
                if result is not None:
                    if type(result) is not str:
                        raise TypeError("the handler returned %s, not str" % type(result).__name__)
                    parts = [result]
        except asyncio.CancelledError:
            if call.cancelled:
                self.cancelled += 1
                log.info("agent.run_cancelled run=%s", call.run_id)
                return
            if self.stopping:
                self._fail(call, "worker_stopping", "the agent stopped before the answer")
            else:  # raised by the handler itself, not a cancel of ours
                self._fail(call, "agent_error", "CancelledError")
            return
        except Exception as e:  # the handler's failure is the run's, never the agent's
            message = str(e) or type(e).__name__
            log.debug("agent.handler_error run=%s", call.run_id, exc_info=True)
            self._fail(call, "agent_error", message)
            return
        finally:
            if gen is not None:
                await _aclose(gen)
        if call.cancelled:
            self.cancelled += 1
            log.info("agent.run_cancelled run=%s", call.run_id)
            return
        out = call.output
        if out is None:
            if over:
                self._fail(call, "agent_error", "answer too large")
                return
            body = bodies.encode_done("".join(parts))
        else:
            role = out.get("role", "assistant") if type(out) is dict else None
            if (type(out) is not dict or type(out.get("content")) is not str or
                    type(role) is not str or not 1 <= len(role.encode()) <= bodies.ROLE_MAX or
                    not set(out) <= {"role", "content"}):
                self._fail(call, "agent_error", 'call.output must be {"role": str (1 to 32 '
                           'bytes), "content": str}')
                return
            body = bodies.encode_done(out["content"], out.get("role", "assistant"))
        if len(body) > body_max:
            self._fail(call, "agent_error", "answer too large")
            return
        self.served += 1
        self.link.reply(call._key, body)


async def _aclose(gen):
    try:
        await gen.aclose()
    except (Exception, asyncio.CancelledError):
        pass  # a generator that misbehaves while closing changes nothing sent


async def _tick(link, period):
    """The watchdog's proof that the loop runs (see link.py)."""
    while True:
        link.loop_alive = time.monotonic()
        await asyncio.sleep(period)


async def serve(agent, cfg, stop=None):
    """Serves agent until stop (an asyncio.Event) is set, then drains.
    Raises ConfigError for a bad endpoint or keys."""
    if agent._handler is None:
        raise ConfigError("the agent %s has no handler (use @agent.handler)" % agent.name)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    runner = _Runner(agent, cfg, loop)
    link = runner.link
    period = min(cfg.heartbeat_ms / 4.0, 100.0) / 1000.0
    log.info("agent.start broker=%s service=%s capacity=%d heartbeat_ms=%d watchdog_ms=%d",
             cfg.endpoint, cfg.service, cfg.capacity, cfg.heartbeat_ms, cfg.watchdog_ms)
    left = []
    link.start()
    ticker = loop.create_task(_tick(link, period))
    try:
        while not stop.is_set():
            if not link.alive():
                raise RuntimeError("the I/O thread stopped (see the log above)")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        runner.stopping = True
        link.refuse()
        deadline = time.monotonic() + cfg.drain_ms / 1000.0
        while runner.tasks and time.monotonic() < deadline:
            await asyncio.sleep(min(period, max(0.0, deadline - time.monotonic())))
        left = [(t, c) for t, c in runner.tasks.values()]
        for t, _ in left:
            t.cancel()
        if left:
            # Bounded: a handler that swallows every cancel must not hold
            # the agent up; its run is failed here instead.
            await asyncio.wait([t for t, _ in left], timeout=1.0)
            for t, call in left:
                if not t.done():
                    runner._fail(call, "worker_stopping", "the handler ignored its cancel")
    finally:
        ticker.cancel()
        for t, _ in list(runner.tasks.values()):
            t.cancel()
        link.close()
        log.info("agent.stop served=%d failed=%d cancelled=%d stopped=%d", runner.served,
                 runner.failed, runner.cancelled, len(left))


class _Formatter(logging.Formatter):
    """The C processes' line: time level component[pid] tag fields."""

    def __init__(self, component):
        super().__init__()
        self.component = component

    def format(self, record):
        t = time.gmtime(record.created)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % int(record.msecs)
        line = "%s %s %s[%d] %s" % (when, record.levelname[0], self.component, os.getpid(),
                                    record.getMessage())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _setup_logging(component, level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(component))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def run(agent):
    """Serves agent with the settings of the environment (MAP_BROKER,
    MAP_HEARTBEAT_MS, MAP_LIVENESS, MAP_BODY_MAX, MAP_WATCHDOG_MS,
    MAP_DRAIN_MS, MAP_CURVE_*, MAP_LOG_LEVEL) until SIGTERM or SIGINT, then
    drains. A bad setting prints one line and exits 2."""
    level = os.environ.get("MAP_LOG_LEVEL") or "info"
    if level not in _LEVELS:
        print("%s: MAP_LOG_LEVEL must be debug, info, warn or error" % agent.name,
              file=sys.stderr)
        sys.exit(2)
    _setup_logging(agent.name, _LEVELS[level])
    try:
        cfg = Config.from_env(agent)
    except ConfigError as e:
        print("%s: %s" % (agent.name, e), file=sys.stderr)
        sys.exit(2)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(agent, cfg, stop)

    # Not asyncio.run: it waits without end for tasks that ignore their
    # cancel, and a stopping agent must stop.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    except ConfigError as e:
        print("%s: %s" % (agent.name, e), file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:
        log.error("agent.failed error=%s", e)
        sys.exit(1)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.close()
