/* The platform's browser page: chat with an agent, watch its runs live.
 *
 * It speaks only the public contract (SPEC §3 HTTP, §4 WebSocket) to the
 * edge that served it, same origin, no framework, no inline code (the CSP
 * forbids it).
 *
 * State and why:
 *   runs     run_id -> what the page knows of a run: its input, the answer so
 *            far, its status, and lastSeq, the last seq applied. Every event
 *            is applied once, in seq order: an event at or below lastSeq is
 *            a duplicate and dropped; one past lastSeq + 1 means the socket
 *            joined the run late, so the page asks `resume` from lastSeq and
 *            drops it (the resume brings it again, in order).
 *   storage  runs and sends not yet accepted are written to sessionStorage
 *            after every event, so a reload shows the answer so far and
 *            resumes each unfinished run from exactly its lastSeq: the
 *            answer appears once and whole. agent_invoke_done's output then
 *            replaces the streamed text, as does the history from /messages.
 *   pending  sends awaiting invoke_accepted, keyed by their request_id; they
 *            are sent again (same request_id: the edge starts nothing new)
 *            after a reconnect or a reload.
 *
 * Bounds: at most MAX_RUNS runs per session in storage (the oldest finished
 * ones go first), MAX_PAGES pages of events per timeline, 100 messages of
 * history, a capped backoff. */
"use strict";

(function () {
  const MAX_RUNS = 100;          /* runs kept per session in sessionStorage */
  const MAX_PAGES = 20;          /* timeline: pages of 1,000 events at most */
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const HEALTH_EVERY_MS = 5000;
  const REPLAY_STEP_MS = 25;
  const TERMINAL = { run_done: "done", run_failed: "failed", run_cancelled: "cancelled" };
  const ID_RE = /^[A-Za-z0-9._:~-]{1,128}$/;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  function randomId(prefix) {
    const b = new Uint8Array(8);
    crypto.getRandomValues(b);
    return prefix + Date.now().toString(36) + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function isTerminal(status) {
    return status === "done" || status === "failed" || status === "cancelled";
  }

  /* ---- state --------------------------------------------------------------- */

  let session = params.get("session");
  if (!session || !ID_RE.test(session)) {
    session = randomId("s_");
    params.set("session", session);
    history.replaceState(null, "", "/ui?" + params.toString());
  }
  const storeKey = "map.ui." + session;

  const S = {
    apiKey: sessionStorage.getItem("map.apiKey") || "",
    runs: new Map(),      /* run_id -> run (see above) */
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
    replayTimer: 0,
    dirty: new Set(),     /* turns to redraw */
    listDirty: false,
    tlDirty: false,       /* the timeline has new events to draw */
    flushQueued: false,
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
    for (const r of Object.values(saved.runs || {}))
      S.runs.set(r.run_id, Object.assign(newRun(r.run_id), r, { resumedOn: -1 }));
    for (const p of Object.values(saved.pending || {}))
      S.pending.set(p.request_id, p);
  }

  function save() {
    const all = Array.from(S.runs.values()).sort((a, b) => a.t - b.t);
    /* Drop the oldest finished runs past the bound; unfinished ones stay. */
    let extra = all.length - MAX_RUNS;
    const runs = {};
    for (const r of all) {
      if (extra > 0 && isTerminal(r.status)) {
        extra--;
        continue;
      }
      runs[r.run_id] = {
        run_id: r.run_id, agent_id: r.agent_id, input: r.input, text: r.text, status: r.status,
        error: r.error, lastSeq: r.lastSeq, t: r.t, parent_run_id: r.parent_run_id, depth: r.depth,
        final: r.final,
      };
    }
    const pending = {};
    for (const [k, p] of S.pending)
      pending[k] = p;
    try {
      sessionStorage.setItem(storeKey, JSON.stringify({ v: 1, runs: runs, pending: pending }));
    } catch (e) {
      /* storage full: the page still works, a reload replays from the store */
    }
  }

  function newRun(runId) {
    return {
      run_id: runId, agent_id: "", input: "", text: "", status: "queued", error: null,
      lastSeq: 0, t: Date.now(), parent_run_id: null, depth: 0, final: false, resumedOn: -1,
    };
  }

  function getRun(runId, init) {
    let r = S.runs.get(runId);
    if (!r) {
      r = Object.assign(newRun(runId), init || {});
      S.runs.set(runId, r);
      S.listDirty = true;
    }
    return r;
  }

  /* ---- HTTP ----------------------------------------------------------------- */

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
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key)
      return;
    S.apiKey = key;
    sessionStorage.setItem("map.apiKey", key);
    S.askingKey = false;
    $("key-form").hidden = true;
    $("key-input").value = "";
    start();
  });

  /* ---- connection status ----------------------------------------------------- */

  function setWs(state, detail) {
    const el = $("connection-status");
    el.dataset.ws = state;
    $("ws-state").textContent = "WebSocket " + state + (detail ? " (" + detail + ")" : "");
  }

  async function pollHealth() {
    const el = $("connection-status");
    try {
      const r = await fetch("/health", { cache: "no-store" });
      const h = await r.json();
      const down = Object.entries((h && h.components) || {}).filter(([, v]) => v !== "ok").map(([k]) => k);
      el.dataset.health = r.ok && h.status === "ok" ? "ok" : "down";
      $("health-state").textContent = r.ok && h.status === "ok" ? "health ok" : "down: " + (down.join(", ") || h.status);
    } catch (e) {
      el.dataset.health = "down";
      $("health-state").textContent = "edge unreachable";
    }
  }

  /* ---- WebSocket ------------------------------------------------------------- */

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
    setWs("connecting");
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    S.ws = ws;
    S.helloOk = false;
    S.wsGen++;
    ws.key = S.apiKey;
    ws.onopen = () => {
      const hello = { type: "hello", session_id: session };
      if (S.apiKey)
        hello.api_key = S.apiKey;
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
    };
    ws.onclose = (e) => {
      if (S.ws !== ws)
        return;
      S.ws = null;
      S.helloOk = false;
      if (e.code === 4401) {
        setWs("closed", "unauthorized");
        if (S.apiKey && S.apiKey !== ws.key) {
          connect(); /* a key was given meanwhile */
          return;
        }
        askKey();
        return; /* the key form reconnects */
      }
      const delay = S.backoff;
      S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
      setWs("closed", "retry in " + (delay / 1000).toFixed(1) + " s");
      S.retryTimer = setTimeout(connect, delay + Math.floor(Math.random() * 200));
    };
  }

  function onWsMessage(msg) {
    switch (msg.type) {
    case "hello_ok":
      S.helloOk = true;
      S.backoff = BACKOFF_MIN_MS;
      setWs("open");
      for (const p of S.pending.values())
        sendInvoke(p);
      resumeUnfinished();
      break;
    case "invoke_accepted":
      accepted(msg.request_id, msg.run_id);
      break;
    case "event":
      if (msg.event)
        onEvent(msg.event);
      break;
    case "error":
      onWsError(msg);
      break;
    default:
      break;
    }
    flushSoon();
  }

  function onWsError(msg) {
    const p = msg.request_id && S.pending.get(msg.request_id);
    if (p) { /* the send was refused: show why on its bubble */
      S.pending.delete(p.request_id);
      const r = getRun("req:" + p.request_id, { agent_id: p.agent_id, input: p.content, t: p.t });
      r.status = "failed";
      r.error = { code: msg.code, message: msg.message };
      r.final = true;
      S.dirty.add(r.run_id);
      save();
      return;
    }
    const r = msg.request_id && S.runs.get(msg.request_id);
    if (r && msg.code === "unknown_run" && !isTerminal(r.status)) {
      r.status = "failed";
      r.error = { code: msg.code, message: msg.message };
      S.dirty.add(r.run_id);
      S.listDirty = true;
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

  /* Asks each unfinished run for what came after the last seq applied. */
  function resumeUnfinished() {
    for (const r of S.runs.values())
      if (!isTerminal(r.status) && !r.run_id.startsWith("req:"))
        resume(r);
  }

  function resume(r) {
    if (r.resumedOn === S.wsGen && r.resumedAt === r.lastSeq)
      return; /* already asked on this socket from here */
    if (wsSend({ type: "resume", run_id: r.run_id, after_seq: r.lastSeq })) {
      r.resumedOn = S.wsGen;
      r.resumedAt = r.lastSeq;
    }
  }

  function accepted(requestId, runId) {
    const p = S.pending.get(requestId);
    if (!p)
      return;
    S.pending.delete(requestId);
    const r = getRun(runId, { t: p.t });
    r.agent_id = r.agent_id || p.agent_id;
    r.input = r.input || p.content;
    r.t = Math.min(r.t, p.t);
    const el = document.querySelector('.turn[data-run-id="req:' + requestId + '"]');
    if (el)
      el.remove();
    S.dirty.add(runId);
    S.listDirty = true;
    save();
    if (!S.pinned)
      selectRun(runId);
  }

  /* ---- events ------------------------------------------------------------------ */

  function onEvent(ev) {
    if (typeof ev.run_id !== "string" || typeof ev.seq !== "number")
      return;
    const r = getRun(ev.run_id, {
      t: Date.parse(ev.created_at) || Date.now(),
      parent_run_id: ev.parent_run_id || null,
      depth: ev.depth || 0,
    });
    if (ev.seq <= r.lastSeq)
      return; /* seen */
    if (ev.seq > r.lastSeq + 1) {
      resume(r); /* joined late: the resume brings the rest in order */
      return;
    }
    r.lastSeq = ev.seq;
    apply(r, ev);
    if (S.selected === r.run_id && (!S.tl.length || S.tl[S.tl.length - 1].seq < ev.seq)) {
      S.tl.push(ev);
      if (!S.replayTimer) /* a replay draws it when it gets there */
        S.tlDirty = true;
    }
    S.dirty.add(r.run_id);
    save();
  }

  function apply(r, ev) {
    const p = ev.payload || {};
    if (ev.parent_run_id && !r.parent_run_id) {
      r.parent_run_id = ev.parent_run_id;
      r.depth = ev.depth || 1;
      S.listDirty = true;
    }
    switch (ev.type) {
    case "run_started":
      if (!isTerminal(r.status))
        r.status = "running";
      r.agent_id = p.agent_id || r.agent_id;
      S.listDirty = true;
      break;
    case "user_input":
      if (p.message && typeof p.message.content === "string")
        r.input = p.message.content;
      break;
    case "agent_stream_delta":
      if (!r.final && typeof p.delta === "string")
        r.text += p.delta;
      break;
    case "agent_invoke_done":
      if (p.output && typeof p.output.content === "string") {
        r.text = p.output.content;
        r.final = true;
      }
      break;
    case "agent_call_started":
      if (p.child_run_id) {
        const child = getRun(p.child_run_id, { t: Date.parse(ev.created_at) || Date.now() });
        child.parent_run_id = r.run_id;
        child.agent_id = child.agent_id || p.agent_id || "";
        child.depth = p.depth || (r.depth || 0) + 1;
        S.listDirty = true;
      }
      break;
    default:
      if (TERMINAL[ev.type]) {
        r.status = TERMINAL[ev.type];
        if (ev.type === "run_failed")
          r.error = p.error || { code: "internal", message: "" };
        S.listDirty = true;
      }
    }
  }

  /* ---- rendering ---------------------------------------------------------------- */

  function flushSoon() {
    if (S.flushQueued)
      return;
    S.flushQueued = true;
    setTimeout(flush, 16);
  }

  function flush() {
    S.flushQueued = false;
    for (const id of S.dirty) {
      const r = S.runs.get(id);
      if (r && !r.parent_run_id)
        renderTurn(r);
    }
    S.dirty.clear();
    if (S.listDirty) {
      S.listDirty = false;
      renderRunList();
    }
    if (S.tlDirty && !S.replayTimer) {
      S.tlDirty = false;
      renderTimeline();
    }
    updateStop();
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls)
      e.className = cls;
    if (text !== undefined)
      e.textContent = text;
    return e;
  }

  function badge(status) {
    const b = el("span", "badge", status);
    b.dataset.status = status;
    return b;
  }

  /* One turn per top-level run: the user's message and the answer bubble,
   * placed by creation time. */
  function renderTurn(r) {
    const box = $("messages");
    let turn = box.querySelector('.turn[data-run-id="' + CSS.escape(r.run_id) + '"]');
    if (!turn) {
      turn = el("div", "turn");
      turn.dataset.runId = r.run_id;
      turn.dataset.t = String(r.t);
      turn.append(el("div", "bubble user"));
      const a = el("div", "bubble assistant");
      const meta = el("div", "meta");
      meta.append(el("span", "agent"), badge(r.status), el("code", "rid"));
      a.append(meta, el("div", "text"), el("div", "error"));
      turn.append(a);
      let before = null;
      for (const other of box.children)
        if (Number(other.dataset.t) > r.t) {
          before = other;
          break;
        }
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      box.insertBefore(turn, before);
      if (atBottom)
        box.scrollTop = box.scrollHeight;
    }
    turn.dataset.status = r.status;
    turn.querySelector(".bubble.user").textContent = r.input;
    turn.querySelector(".agent").textContent = r.agent_id || "";
    const b = turn.querySelector(".badge");
    b.textContent = r.status;
    b.dataset.status = r.status;
    turn.querySelector(".rid").textContent = r.run_id.startsWith("req:") ? "" : r.run_id;
    const text = turn.querySelector(".text");
    if (text.textContent !== r.text) {
      const box2 = $("messages");
      const atBottom = box2.scrollHeight - box2.scrollTop - box2.clientHeight < 40;
      text.textContent = r.text;
      if (atBottom)
        box2.scrollTop = box2.scrollHeight;
    }
    turn.querySelector(".error").textContent = r.error ? r.error.code + ": " + (r.error.message || "") : "";
  }

  function renderPending(p) {
    const r = getRun("req:" + p.request_id, { agent_id: p.agent_id, input: p.content, t: p.t });
    S.runs.delete(r.run_id); /* a placeholder, not a run: drawn, not kept */
    renderTurn(r);
  }

  /* The session's runs newest first, each run's calls nested under it. */
  function renderRunList() {
    const list = $("run-list");
    const runs = Array.from(S.runs.values()).filter((r) => !r.run_id.startsWith("req:"));
    const children = new Map();
    const roots = [];
    for (const r of runs) {
      if (r.parent_run_id && S.runs.has(r.parent_run_id)) {
        if (!children.has(r.parent_run_id))
          children.set(r.parent_run_id, []);
        children.get(r.parent_run_id).push(r);
      } else {
        roots.push(r);
      }
    }
    roots.sort((a, b) => b.t - a.t);
    const item = (r, depth) => {
      const li = el("li");
      li.dataset.runId = r.run_id;
      li.dataset.status = r.status;
      if (r.parent_run_id)
        li.dataset.parentRunId = r.parent_run_id;
      const row = el("div", "run-item" + (r.run_id === S.selected ? " selected" : ""));
      row.append(el("span", "agent", r.agent_id || "?"), badge(r.status), el("code", "", r.run_id));
      row.addEventListener("click", () => {
        S.pinned = true;
        selectRun(r.run_id);
      });
      li.append(row);
      const kids = (children.get(r.run_id) || []).sort((a, b) => a.t - b.t);
      if (kids.length && depth < 16) {
        const ul = el("ul");
        for (const k of kids)
          ul.append(item(k, depth + 1));
        li.append(ul);
      }
      return li;
    };
    list.replaceChildren(...roots.map((r) => item(r, 0)));
  }

  /* Timeline rows: one per event, a run of consecutive deltas folded into one. */
  function renderTimeline(upto) {
    const ol = $("timeline");
    const events = upto === undefined ? S.tl : S.tl.slice(0, upto);
    const rows = [];
    for (let i = 0; i < events.length; i++) {
      const ev = events[i];
      const li = el("li", "ev");
      li.dataset.type = ev.type;
      li.dataset.seq = String(ev.seq);
      let seq = String(ev.seq), payload;
      if (ev.type === "agent_stream_delta") {
        let j = i, text = "";
        while (j < events.length && events[j].type === "agent_stream_delta") {
          text += (events[j].payload && events[j].payload.delta) || "";
          j++;
        }
        if (j - i > 1) {
          li.classList.add("folded");
          li.dataset.count = String(j - i);
          seq = ev.seq + "–" + events[j - 1].seq;
        }
        payload = "×" + (j - i) + " " + JSON.stringify(text);
        i = j - 1;
      } else {
        payload = JSON.stringify(ev.payload || {});
      }
      if (payload.length > 400)
        payload = payload.slice(0, 400) + "…";
      li.append(el("span", "seq", seq), el("span", "time", (ev.created_at || "").slice(11, 23)),
        el("span", "type", ev.type), el("span", "payload", payload));
      rows.push(li);
    }
    ol.replaceChildren(...rows);
  }

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
    $("timeline-run").textContent = runId;
    $("replay-button").disabled = false;
    S.listDirty = true;
    flushSoon();
    renderTimeline();
    const events = await fetchEvents(runId);
    if (S.selected !== runId)
      return;
    /* Live events may have come while the pages loaded: merge by seq. */
    const bySeq = new Map();
    for (const e of events.concat(S.tl))
      bySeq.set(e.seq, e);
    S.tl = Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq);
    renderTimeline();
    const calls = await api("/v1/runs/" + encodeURIComponent(runId) + "/calls");
    if (calls.ok && calls.body && Array.isArray(calls.body.calls)) {
      for (const c of calls.body.calls)
        mergeRunObject(c);
      flushSoon();
    }
  }

  function stopReplay() {
    clearTimeout(S.replayTimer);
    S.replayTimer = 0;
    $("replay-button").textContent = "Replay";
  }

  /* Replay: the selected run's log from the store, event by event. */
  $("replay-button").addEventListener("click", async () => {
    if (!S.selected)
      return;
    if (S.replayTimer) {
      stopReplay();
      renderTimeline();
      return;
    }
    const runId = S.selected;
    const events = await fetchEvents(runId);
    if (S.selected !== runId)
      return;
    S.tl = events;
    $("replay-button").textContent = "Stop replay";
    let n = 0;
    const step = () => {
      n++;
      renderTimeline(n);
      if (n >= S.tl.length) {
        stopReplay();
        return;
      }
      S.replayTimer = setTimeout(step, REPLAY_STEP_MS);
    };
    S.replayTimer = setTimeout(step, 0);
  });

  /* ---- sending and stopping ---------------------------------------------------- */

  function activeRuns() {
    return Array.from(S.runs.values()).filter((r) => !r.parent_run_id && !isTerminal(r.status) && !r.run_id.startsWith("req:"));
  }

  function updateStop() {
    $("stop-button").disabled = activeRuns().length === 0 && S.pending.size === 0;
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
    renderPending(p);
    sendInvoke(p); /* not open yet: hello_ok sends it */
    updateStop();
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
    for (const r of activeRuns()) {
      if (!wsSend({ type: "cancel", run_id: r.run_id }))
        api("/v1/runs/" + encodeURIComponent(r.run_id) + "/cancel", { method: "POST" });
    }
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

  /* ---- loading -------------------------------------------------------------------- */

  async function loadAgents() {
    const sel = $("agent-select");
    const want = params.get("agent") || sel.value;
    const r = await api("/v1/agents");
    const agents = (r.ok && r.body && r.body.agents) || [];
    const opts = agents.map((a) => {
      const o = el("option", "", a.agent_id + (a.kind === "native" ? " (native, " + a.workers + ")" : " (http)"));
      o.value = a.agent_id;
      return o;
    });
    if (want && ID_RE.test(want) && !agents.some((a) => a.agent_id === want)) {
      const o = el("option", "", want + " (not registered)");
      o.value = want;
      opts.unshift(o);
    }
    sel.replaceChildren(...opts);
    if (want && opts.some((o) => o.value === want))
      sel.value = want;
  }

  function mergeRunObject(o) {
    if (!o || typeof o.run_id !== "string")
      return null;
    const r = getRun(o.run_id, { t: Date.parse(o.created_at) || Date.now() });
    r.agent_id = r.agent_id || o.agent_id || "";
    if (o.parent_run_id) {
      r.parent_run_id = o.parent_run_id;
      r.depth = o.depth || 1;
    }
    if (isTerminal(o.status) && !isTerminal(r.status) && r.final)
      r.status = o.status; /* the whole answer is here already */
    else if ((o.status === "queued" || o.status === "running") && !isTerminal(r.status))
      r.status = o.status; /* unfinished: the resume brings the rest */
    S.dirty.add(r.run_id);
    S.listDirty = true;
    return r;
  }

  /* The session's history: each message joins its run's turn. */
  async function loadHistory() {
    const r = await api("/v1/sessions/" + encodeURIComponent(session) + "/messages?limit=100");
    if (!r.ok || !r.body || !Array.isArray(r.body.messages))
      return;
    for (const m of r.body.messages) {
      if (typeof m.run_id !== "string")
        continue;
      const run = getRun(m.run_id, { t: Date.parse(m.created_at) || Date.now() });
      if (m.role === "user") {
        run.input = m.content;
      } else {
        run.text = m.content;
        run.final = true;
        if (!isTerminal(run.status))
          run.status = "done";
      }
      S.dirty.add(run.run_id);
    }
  }

  /* The session's runs (SPEC §3): which are still going. Without the route
   * (404) the page resumes the unfinished runs it kept in sessionStorage. */
  async function loadRuns() {
    const r = await api("/v1/sessions/" + encodeURIComponent(session) + "/runs?limit=50");
    if (!r.ok || !r.body || !Array.isArray(r.body.runs))
      return;
    const fill = [];
    for (const o of r.body.runs) {
      const known = S.runs.has(o.run_id);
      const run = mergeRunObject(o);
      if (run && !known && isTerminal(o.status))
        fill.push(run);
    }
    /* Finished runs this tab never saw (another tab's, or failed ones with
     * no messages): their log gives input, answer and outcome. */
    for (const run of fill.slice(0, 20)) {
      for (const ev of await fetchEvents(run.run_id)) {
        if (ev.seq === run.lastSeq + 1) {
          run.lastSeq = ev.seq;
          apply(run, ev);
        }
      }
      S.dirty.add(run.run_id);
    }
  }

  let started = false;
  async function start() {
    await loadAgents();
    await loadHistory();
    await loadRuns();
    save();
    for (const id of S.runs.keys())
      S.dirty.add(id);
    S.listDirty = true;
    flush();
    for (const p of S.pending.values())
      renderPending(p);
    if (!started) {
      started = true;
      setInterval(pollHealth, HEALTH_EVERY_MS);
    }
    if (S.ws && S.helloOk)
      resumeUnfinished();
    else if (!S.askingKey) /* else the key form starts again */
      connect();
  }

  $("session-id").textContent = session;
  load();
  pollHealth();
  start();
})();
