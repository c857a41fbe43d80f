/* view: draws the page from the state in runs.js. Text goes in with
 * textContent only (never HTML), so nothing an agent or a user writes can
 * become markup. Tests read the page through the data-testid and data-*
 * attributes set here (data-run-id, data-status, data-type, data-seq,
 * data-count, data-child-run-id, data-agent-id, data-call-id, data-depth). */
"use strict";

import { PLACEHOLDER, foldTimeline } from "./runs.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
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

/* Keeps the chat scrolled to the end while the user is at the end. */
function keepBottom(box, change) {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  change();
  if (atBottom)
    box.scrollTop = box.scrollHeight;
}

function findTurn(id) {
  return $("messages").querySelector('.turn[data-run-id="' + CSS.escape(id) + '"]');
}

/* One turn per client run: the user's message and the answer bubble with
 * its status badge and error, placed by creation time. */
export function renderTurn(r) {
  const box = $("messages");
  let turn = findTurn(r.run_id);
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
    keepBottom(box, () => box.insertBefore(turn, before));
  }
  turn.dataset.status = r.status;
  turn.querySelector(".bubble.user").textContent = r.input;
  turn.querySelector(".agent").textContent = r.agent_id || "";
  const b = turn.querySelector(".badge");
  b.textContent = r.status;
  b.dataset.status = r.status;
  turn.querySelector(".rid").textContent = r.run_id.startsWith(PLACEHOLDER) ? "" : r.run_id;
  const text = turn.querySelector(".text");
  if (text.textContent !== r.text)
    keepBottom(box, () => { text.textContent = r.text; });
  turn.querySelector(".error").textContent = r.error ? r.error.code + ": " + (r.error.message || "") : "";
}

export function removeTurn(id) {
  const turn = findTurn(id);
  if (turn)
    turn.remove();
}

/* The run list: the call tree of runs.tree(), a click picks a run. */
export function renderRunList(tree, selected, onPick) {
  const item = (r, depth) => {
    const li = el("li");
    li.dataset.runId = r.run_id;
    li.dataset.status = r.status;
    if (r.parent_run_id)
      li.dataset.parentRunId = r.parent_run_id;
    const row = el("div", "run-item" + (r.run_id === selected ? " selected" : ""));
    row.append(el("span", "agent", r.agent_id || "?"), badge(r.status), el("code", "", r.run_id));
    row.addEventListener("click", () => onPick(r.run_id));
    li.append(row);
    const kids = tree.children.get(r.run_id) || [];
    if (kids.length && depth < 16) {
      const ul = el("ul");
      for (const k of kids)
        ul.append(item(k, depth + 1));
      li.append(ul);
    }
    return li;
  };
  $("run-list").replaceChildren(...tree.roots.map((r) => item(r, 0)));
}

/* The call tree of one client run: each run with its agent, status, call
 * id and answer (or error), its calls nested under it; a click picks a run. */
export function renderCallTree(tree, rootRun, selected, onPick) {
  const box = $("call-tree");
  $("call-tree-root").textContent = rootRun ? rootRun.run_id : "";
  const kids0 = rootRun ? tree.children.get(rootRun.run_id) || [] : [];
  box.dataset.rootRunId = rootRun ? rootRun.run_id : "";
  if (!kids0.length) {
    box.replaceChildren(el("p", "none", rootRun ? "no calls" : ""));
    return;
  }
  const node = (r, depth) => {
    const li = el("li", "call-node");
    li.dataset.runId = r.run_id;
    li.dataset.status = r.status;
    li.dataset.agentId = r.agent_id || "";
    li.dataset.depth = String(depth);
    if (r.call_id)
      li.dataset.callId = r.call_id;
    const row = el("div", "call-row" + (r.run_id === selected ? " selected" : ""));
    row.append(el("span", "agent", r.agent_id || "?"), badge(r.status));
    if (r.call_id)
      row.append(el("span", "call-id", r.call_id));
    row.append(el("code", "", r.run_id));
    row.addEventListener("click", () => onPick(r.run_id));
    li.append(row, el("div", "answer", r.text));
    if (r.error)
      li.append(el("div", "error", r.error.code + ": " + (r.error.message || "")));
    const kids = tree.children.get(r.run_id) || [];
    if (kids.length && depth < 16) {
      const ul = el("ul");
      for (const k of kids)
        ul.append(node(k, depth + 1));
      li.append(ul);
    }
    return li;
  };
  const ul = el("ul");
  ul.append(node(rootRun, 0));
  box.replaceChildren(ul);
}

/* Timeline rows of events; a call's row carries the child's run id, and
 * with sub (run id -> that child's events) the child's rows nested under
 * its agent_call_started row, and so on down the tree. */
function timelineRows(events, sub, depth) {
  return foldTimeline(events).map((row) => {
    const li = el("li", "ev" + (row.count > 1 ? " folded" : ""));
    li.dataset.type = row.type;
    li.dataset.seq = String(row.first);
    if (row.count > 1)
      li.dataset.count = String(row.count);
    if (row.child)
      li.dataset.childRunId = row.child;
    li.append(el("span", "seq", row.seq), el("span", "time", row.time), el("span", "type", row.type),
      el("span", "payload", row.payload));
    const kid = row.type === "agent_call_started" && row.child && sub && sub.get(row.child);
    if (kid && kid.length && depth < 16) {
      const ol = el("ol", "timeline nested");
      ol.dataset.runId = row.child;
      ol.replaceChildren(...timelineRows(kid, sub, depth + 1));
      li.append(ol);
    }
    return li;
  });
}

/* The selected run's events (deltas folded), its calls' nested. */
export function renderTimeline(events, sub) {
  $("timeline").replaceChildren(...timelineRows(events, sub, 0));
}

export function setTimelineHead(runId, replaying) {
  $("timeline-run").textContent = runId;
  $("replay-button").disabled = !runId;
  $("replay-button").textContent = replaying ? "Stop replay" : "Replay";
}

export function setWs(state, detail) {
  $("connection-status").dataset.ws = state;
  $("ws-state").textContent = "WebSocket " + state + (detail ? " (" + detail + ")" : "");
}

export function setHealth(ok, text) {
  $("connection-status").dataset.health = ok ? "ok" : "down";
  $("health-state").textContent = text;
}

/* The agent picker: the registered agents, and the one the URL names even
 * when nobody serves it (its runs then fail unknown_agent, visibly). */
export function renderAgents(agents, want) {
  const sel = $("agent-select");
  const opts = agents.map((a) => {
    const o = el("option", "", a.agent_id + (a.kind === "native" ? " (native, " + a.workers + ")" : " (http)"));
    o.value = a.agent_id;
    return o;
  });
  if (want && !agents.some((a) => a.agent_id === want)) {
    const o = el("option", "", want + " (not registered)");
    o.value = want;
    opts.unshift(o);
  }
  sel.replaceChildren(...opts);
  if (want)
    sel.value = want;
}

export function setStop(enabled) {
  $("stop-button").disabled = !enabled;
}

export function showKeyForm(show) {
  $("key-form").hidden = !show;
  if (show)
    $("key-input").focus();
}
