/* The platform's browser page: chat with an agent, watch its runs live.
 * This module wires the network to runs.js (the state) and view.js (the
 * DOM). It speaks only the public contract (SPEC §3 HTTP, §4 WebSocket) to
 * the edge that served it, same origin; no framework, no inline code (the
 * CSP forbids it).
 *
 * Reload-safe: runs and sends not yet accepted are written to
 * sessionStorage after every event, so a reloaded page shows each answer so
 * far and resumes each unfinished run from exactly the last seq it applied:
 * the answer appears once and whole. It also asks the edge for the
 * session's runs (GET /v1/sessions/{id}/runs); without that route (404) it
 * resumes the unfinished runs it kept. A run it never saw (another tab's)
 * shows up with its live events: the first one is a gap, so the page
 * resumes the run from 0.
 *
 * Sends carry a request_id and stay pending until invoke_accepted; pending
 * sends are sent again after a reconnect or a reload with the same
 * request_id, which the edge answers with the same run (SPEC §4).
 *
 * Agent calls (SPEC §7): child runs come on the session's socket like any
 * run, their events carrying parent_run_id. They are never chat turns; the
 * run list nests them under their parent, the call tree (data-testid
 * call-tree) shows the selected run's whole tree with each child's answer,
 * and the timeline nests each child's events under its parent's
 * agent_call_started row (GET /v1/runs/{id}/calls down the tree, then live).
 *
 * Bounds: at most MAX_RUNS runs per session in storage (the oldest finished
 * ones go first), MAX_PAGES pages of events per timeline, 100 messages of
 * history, MAX_SUB_RUNS calls nested in a timeline, a capped reconnect
 * backoff. */
"use strict";

import { PLACEHOLDER, Runs, isTerminal } from "./runs.js";
import * as view from "./view.js";

const MAX_RUNS = 100;          /* runs kept per session in sessionStorage */
const MAX_PAGES = 20;          /* timeline: pages of 1,000 events at most */
const MAX_SUB_RUNS = 32;       /* timeline: descendants whose events are nested */
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const HEALTH_EVERY_MS = 5000;
const REPLAY_STEP_MS = 25;
const ID_RE = /^[A-Za-z0-9._:~-]{1,128}$/;

const $ = view.$;
const params = new URLSearchParams(location.search);

function randomId(prefix) {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return prefix + Date.now().toString(36) + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/* ---- state ----------------------------------------------------------------- */

let session = params.get("session");
if (!session || !ID_RE.test(session)) {
  session = randomId("s_");
  params.set("session", session);
  history.replaceState(null, "", "/ui?" + params.toString());
}
const storeKey = "map.ui." + session;

const runs = new Runs();
const S = {
  apiKey: sessionStorage.getItem("map.apiKey") || "",
  pending: new Map(),   /* request_id -> {request_id, agent_id, content, t} */
  ws: null,
  wsGen: 0,             /* which socket a resume was asked on */
  helloOk: false,
  backoff: BACKOFF_MIN_MS,
  retryTimer: 0,
  askingKey: false,
  selected: "",         /* run shown in the timeline */
  pinned: false,        /* the user picked it; else the newest run is followed */
  tl: [],               /* its events, seq order */
  sub: new Map(),       /* its descendants' (calls') events: run_id -> events, seq order */
  tlDirty: false,
  replayTimer: 0,
  flushQueued: false,
  resumed: new Map(),   /* run_id -> "wsGen:lastSeq" of the last resume asked */
};

function load() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(storeKey) || "null");
  } catch (e) {
    saved = null;
  }
  if (!saved || saved.v !== 1)
    return;
  runs.restore(saved.runs);
  for (const p of Object.values(saved.pending || {}))
    if (p && typeof p.request_id === "string")
      S.pending.set(p.request_id, p);
}

function save() {
  const pending = {};
  for (const [k, p] of S.pending)
    pending[k] = p;
  try {
    sessionStorage.setItem(storeKey, JSON.stringify({ v: 1, runs: runs.dump(MAX_RUNS), pending: pending }));
  } catch (e) {
    /* storage full: the page still works; a reload replays from the store */
  }
}

/* ---- drawing, batched: at most one redraw per 16 ms ----------------------------- */

function flushSoon() {
  if (S.flushQueued)
    return;
  S.flushQueued = true;
  setTimeout(flush, 16);
}

function pick(id) {
  S.pinned = true;
  selectRun(id);
}

function flush() {
  S.flushQueued = false;
  const shownRoot = $("call-tree").dataset.rootRunId || "";
  let any = runs.treeChanged; /* the call tree is redrawn only when it changed */
  for (const id of runs.changed)
    any = any || !shownRoot || runs.rootOf(id) === shownRoot;
  for (const id of runs.changed) {
    const r = runs.get(id);
    if (r && !r.parent_run_id)
      view.renderTurn(r); /* the chat: client runs only */
    else if (r)
      view.removeTurn(id); /* a run first seen without its parent */
  }
  runs.changed.clear();
  let tree = null;
  const getTree = () => tree || (tree = runs.tree());
  if (runs.treeChanged) {
    runs.treeChanged = false;
    view.renderRunList(getTree(), S.selected, pick);
  }
  if (any || (S.selected && runs.rootOf(S.selected) !== shownRoot)) {
    const t = getTree();
    const rootId = S.selected ? runs.rootOf(S.selected) : (t.roots[0] && t.roots[0].run_id);
    view.renderCallTree(t, rootId ? runs.get(rootId) : null, S.selected, pick);
  }
  if (S.tlDirty && !S.replayTimer) {
    S.tlDirty = false;
    view.renderTimeline(S.tl, S.sub);
  }
  view.setStop(runs.active().length > 0 || S.pending.size > 0);
}

/* ---- HTTP and the API key --------------------------------------------------------- */

async function api(path, opts) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers || {});
  if (S.apiKey)
    headers.Authorization = "Bearer " + S.apiKey;
  const r = await fetch(path, Object.assign({}, opts, { headers: headers, cache: "no-store" }));
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    body = null;
  }
  if (r.status === 401)
    askKey();
  return { status: r.status, ok: r.ok, body: body };
}

function askKey() {
  if (S.askingKey)
    return;
  S.askingKey = true;
  if (S.apiKey) { /* the key we had is refused: forget it */
    S.apiKey = "";
    sessionStorage.removeItem("map.apiKey");
  }
  view.showKeyForm(true);
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key-input").value.trim();
  if (!key)
    return;
  S.apiKey = key;
  sessionStorage.setItem("map.apiKey", key);
  S.askingKey = false;
  view.showKeyForm(false);
  $("key-input").value = "";
  start();
});

async function pollHealth() {
  try {
    const r = await fetch("/health", { cache: "no-store" });
    const h = await r.json();
    const ok = r.ok && h.status === "ok";
    const down = Object.entries((h && h.components) || {}).filter(([, v]) => v !== "ok").map(([k]) => k);
    view.setHealth(ok, ok ? "health ok" : "down: " + (down.join(", ") || h.status));
  } catch (e) {
    view.setHealth(false, "edge unreachable");
  }
}

/* ---- WebSocket -------------------------------------------------------------------- */

function wsSend(obj) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN || !S.helloOk)
    return false;
  S.ws.send(JSON.stringify(obj));
  return true;
}

function connect() {
  clearTimeout(S.retryTimer);
  if (S.ws)
    return;
  view.setWs("connecting");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  S.ws = ws;
  S.helloOk = false;
  S.wsGen++;
  const key = S.apiKey;
  ws.onopen = () => {
    const hello = { type: "hello", session_id: session };
    if (key)
      hello.api_key = key;
    ws.send(JSON.stringify(hello));
  };
  ws.onmessage = (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    onWsMessage(msg);
    flushSoon();
  };
  ws.onclose = (e) => {
    if (S.ws !== ws)
      return;
    S.ws = null;
    S.helloOk = false;
    if (e.code === 4401) {
      view.setWs("closed", "unauthorized");
      if (S.apiKey && S.apiKey !== key)
        connect(); /* a key was given meanwhile */
      else
        askKey(); /* the key form starts again */
      return;
    }
    const delay = S.backoff;
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
    view.setWs("closed", "retry in " + (delay / 1000).toFixed(1) + " s");
    S.retryTimer = setTimeout(connect, delay + Math.floor(Math.random() * 200));
  };
}

function onWsMessage(msg) {
  switch (msg.type) {
  case "hello_ok":
    S.helloOk = true;
    S.backoff = BACKOFF_MIN_MS;
    view.setWs("open");
    for (const p of S.pending.values())
      sendInvoke(p);
    for (const r of runs.unfinished())
      resume(r);
    break;
  case "invoke_accepted":
    accepted(msg.request_id, msg.run_id);
    break;
  case "event":
    if (msg.event && typeof msg.event.run_id === "string" && typeof msg.event.seq === "number")
      onEvent(msg.event);
    break;
  case "error":
    onWsError(msg);
    break;
  default:
    break;
  }
}

function onWsError(msg) {
  const p = msg.request_id && S.pending.get(msg.request_id);
  if (p) { /* the send was refused: its bubble says why */
    S.pending.delete(p.request_id);
    const r = runs.ensure(PLACEHOLDER + p.request_id, { agent_id: p.agent_id, input: p.content, t: p.t });
    r.status = "failed";
    r.error = { code: msg.code, message: msg.message };
    r.final = true;
    runs.touch(r, false);
    save();
    return;
  }
  const r = msg.request_id && runs.get(msg.request_id);
  if (r && msg.code === "unknown_run" && !isTerminal(r.status)) { /* a resume of a run the store lost */
    r.status = "failed";
    r.error = { code: msg.code, message: msg.message };
    runs.touch(r, true);
    save();
    return;
  }
  if (msg.code === "unauthorized")
    askKey();
}

function sendInvoke(p) {
  wsSend({ type: "agent_invoke", request_id: p.request_id, agent_id: p.agent_id,
    input_message: { role: "user", content: p.content } });
}

/* Asks for what came after the last seq applied, once per socket and seq. */
function resume(r) {
  const mark = S.wsGen + ":" + r.lastSeq;
  if (S.resumed.get(r.run_id) === mark)
    return;
  if (wsSend({ type: "resume", run_id: r.run_id, after_seq: r.lastSeq }))
    S.resumed.set(r.run_id, mark);
}

function accepted(requestId, runId) {
  const p = S.pending.get(requestId);
  if (!p || typeof runId !== "string")
    return;
  S.pending.delete(requestId);
  const r = runs.ensure(runId, { t: p.t });
  r.agent_id = r.agent_id || p.agent_id;
  r.input = r.input || p.content;
  r.t = Math.min(r.t, p.t);
  view.removeTurn(PLACEHOLDER + requestId);
  runs.touch(r, true);
  save();
  if (!S.pinned)
    selectRun(runId);
}

function onEvent(ev) {
  const { run, verdict } = runs.offer(ev);
  if (verdict === "gap")
    resume(run); /* joined late: the resume brings the rest in order */
  if (verdict !== "applied")
    return;
  if (S.selected === run.run_id && (!S.tl.length || S.tl[S.tl.length - 1].seq < ev.seq)) {
    S.tl.push(ev);
    S.tlDirty = true; /* a replay draws it when it gets there */
  } else if (S.selected && S.selected !== run.run_id && runs.isUnder(run.run_id, S.selected)) {
    const evs = S.sub.get(run.run_id) || [];
    if (!evs.length || evs[evs.length - 1].seq < ev.seq) {
      evs.push(ev); /* a call of the selected run: nested in its timeline */
      S.sub.set(run.run_id, evs);
      S.tlDirty = true;
    }
  }
  const p = ev.payload || {};
  if (ev.type.startsWith("agent_call_") && ev.type !== "agent_call_started" &&
      typeof p.child_run_id === "string" &&
      (S.selected === run.run_id || runs.isUnder(run.run_id, S.selected)))
    refreshSub(p.child_run_id); /* a call of the tree ended: its whole log, live or not */
  save();
}

/* A call's log from the store into the nested timeline, merged with the
 * live events it has. */
async function refreshSub(runId) {
  const selected = S.selected;
  const events = await fetchEvents(runId);
  if (S.selected !== selected)
    return;
  const bySeq = new Map();
  for (const e of events.concat(S.sub.get(runId) || []))
    bySeq.set(e.seq, e);
  S.sub.set(runId, Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq));
  for (const e of events)
    runs.offer(e);
  S.tlDirty = true;
  flushSoon();
}

/* ---- the timeline ------------------------------------------------------------------ */

async function fetchEvents(runId) {
  const out = [];
  let after = 0;
  for (let page = 0; page < MAX_PAGES; page++) {
    const r = await api("/v1/runs/" + encodeURIComponent(runId) + "/events?after_seq=" + after + "&limit=1000");
    if (!r.ok || !r.body || !Array.isArray(r.body.events))
      break;
    out.push(...r.body.events);
    if (!r.body.has_more || !r.body.events.length)
      break;
    after = r.body.next_after_seq || out[out.length - 1].seq;
  }
  return out;
}

async function selectRun(runId) {
  stopReplay();
  S.selected = runId;
  S.tl = [];
  S.sub = new Map();
  view.setTimelineHead(runId, false);
  view.renderTimeline(S.tl, S.sub);
  runs.treeChanged = true;
  flushSoon();
  const events = await fetchEvents(runId);
  if (S.selected !== runId)
    return;
  /* Live events may have come while the pages loaded: merge by seq. */
  const bySeq = new Map();
  for (const e of events.concat(S.tl))
    bySeq.set(e.seq, e);
  S.tl = Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq);
  S.tlDirty = true;
  flushSoon();
  await loadCalls(runId);
}

/* The selected run's calls (GET /v1/runs/{id}/calls, down the tree, at
 * most MAX_SUB_RUNS runs): their run objects, and their events for the
 * nested timeline, merged with the live ones that came meanwhile. */
async function loadCalls(runId) {
  const todo = [runId];
  let loaded = 0;
  while (todo.length && loaded < MAX_SUB_RUNS) {
    const parent = todo.shift();
    const calls = await api("/v1/runs/" + encodeURIComponent(parent) + "/calls");
    if (S.selected !== runId)
      return;
    if (!calls.ok || !calls.body || !Array.isArray(calls.body.calls))
      continue; /* 404 before the route exists */
    for (const c of calls.body.calls) {
      if (!runs.mergeRunObject(c) || loaded >= MAX_SUB_RUNS)
        continue;
      loaded++;
      await refreshSub(c.run_id); /* a child the page never saw live: its answer and status */
      if (S.selected !== runId)
        return;
      todo.push(c.run_id);
    }
    S.tlDirty = true;
    flushSoon();
  }
}

function stopReplay() {
  clearTimeout(S.replayTimer);
  S.replayTimer = 0;
  view.setTimelineHead(S.selected, false);
}

/* Replay: the selected run's log from the store again, event by event. */
$("replay-button").addEventListener("click", async () => {
  if (!S.selected)
    return;
  if (S.replayTimer) {
    stopReplay();
    view.renderTimeline(S.tl, S.sub);
    return;
  }
  const runId = S.selected;
  const events = await fetchEvents(runId);
  if (S.selected !== runId)
    return;
  S.tl = events;
  view.setTimelineHead(runId, true);
  let n = 0;
  const step = () => {
    n++;
    view.renderTimeline(S.tl.slice(0, n), S.sub);
    if (n >= S.tl.length) {
      stopReplay();
      return;
    }
    S.replayTimer = setTimeout(step, REPLAY_STEP_MS);
  };
  S.replayTimer = setTimeout(step, 0);
});

/* ---- sending, stopping, sessions ---------------------------------------------------- */

function drawPending(p) {
  view.renderTurn({ run_id: PLACEHOLDER + p.request_id, agent_id: p.agent_id, input: p.content, text: "",
    status: "queued", error: null, t: p.t });
}

function send() {
  const input = $("message-input");
  const content = input.value;
  const agent = $("agent-select").value;
  if (!content.trim() || !agent)
    return;
  const p = { request_id: randomId("c_"), agent_id: agent, content: content, t: Date.now() };
  S.pending.set(p.request_id, p);
  save();
  input.value = "";
  drawPending(p);
  sendInvoke(p); /* not open yet: hello_ok sends it */
  flushSoon();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
$("message-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

$("stop-button").addEventListener("click", () => {
  for (const r of runs.active())
    if (!wsSend({ type: "cancel", run_id: r.run_id }))
      api("/v1/runs/" + encodeURIComponent(r.run_id) + "/cancel", { method: "POST" });
});

$("new-session").addEventListener("click", () => {
  const q = new URLSearchParams();
  q.set("session", randomId("s_"));
  if ($("agent-select").value)
    q.set("agent", $("agent-select").value);
  location.href = "/ui?" + q.toString();
});

$("agent-select").addEventListener("change", () => {
  params.set("agent", $("agent-select").value);
  history.replaceState(null, "", "/ui?" + params.toString());
});

/* ---- loading ------------------------------------------------------------------------- */

async function loadAgents() {
  let want = params.get("agent") || $("agent-select").value;
  if (want && !ID_RE.test(want))
    want = "";
  const r = await api("/v1/agents");
  const agents = ((r.ok && r.body && r.body.agents) || []).filter((a) => a && typeof a.agent_id === "string");
  view.renderAgents(agents, want || (agents[0] && agents[0].agent_id) || "");
}

async function loadHistory() {
  const r = await api("/v1/sessions/" + encodeURIComponent(session) + "/messages?limit=100");
  if (r.ok && r.body && Array.isArray(r.body.messages))
    for (const m of r.body.messages)
      runs.mergeMessage(m);
}

/* The session's runs (SPEC §3): which are still going, and finished ones
 * this tab never saw (another tab's, or failed runs, which leave no
 * messages): their log gives input, answer and outcome. */
async function loadRuns() {
  const r = await api("/v1/sessions/" + encodeURIComponent(session) + "/runs?limit=50");
  if (!r.ok || !r.body || !Array.isArray(r.body.runs))
    return; /* 404 before the route exists: the kept runs are resumed */
  const fill = [];
  for (const o of r.body.runs) {
    const known = runs.has(o.run_id);
    const run = runs.mergeRunObject(o);
    if (run && !known && isTerminal(o.status))
      fill.push(run);
  }
  for (const run of fill.slice(0, 20))
    for (const ev of await fetchEvents(run.run_id))
      runs.offer(ev);
}

let started = false;
async function start() {
  await loadAgents();
  await loadHistory();
  await loadRuns();
  save();
  for (const r of runs.values())
    runs.touch(r, true);
  flush();
  for (const p of S.pending.values())
    drawPending(p);
  const newest = runs.tree().roots[0];
  if (!S.selected && newest)
    selectRun(newest.run_id); /* the timeline follows the newest run until one is picked */
  if (!started) {
    started = true;
    setInterval(pollHealth, HEALTH_EVERY_MS);
  }
  if (S.ws && S.helloOk) {
    for (const r of runs.unfinished())
      resume(r);
  } else if (!S.askingKey) { /* else the key form starts again */
    connect();
  }
}

$("session-id").textContent = session;
load();
pollHealth();
start();
