/* runs: what the page knows of the session's runs, by SPEC §2's rules. No
 * DOM, no network: app.js feeds it events, history and run objects, view.js
 * draws it.
 *
 * A run here: its input, the answer so far, its status, the error of a
 * failed run, its place in the call tree (parent_run_id, call_id), and lastSeq, the
 * last seq applied. Every event is applied once, in seq order (offer):
 * one at or below lastSeq is a duplicate; one past lastSeq + 1 means the
 * socket joined the run late, and the caller resumes from lastSeq (the
 * resume brings that event again, in order). agent_invoke_done's output and
 * the session's stored messages are the whole answer: once one is applied
 * (final), later deltas change nothing. A child run (a call, SPEC §7) gets
 * its answer from its own events or from the parent's agent_call_done,
 * whichever comes first; it is never a chat turn (app.js draws turns for
 * runs without parent_run_id only), so its deltas never reach the parent's
 * bubble.
 *
 * Sends not yet accepted are drawn as placeholder turns whose id starts with
 * PLACEHOLDER; they are never runs (not resumed, not listed, not stopped). */
"use strict";

export const PLACEHOLDER = "req:";
const STATUS_OF = { run_done: "done", run_failed: "failed", run_cancelled: "cancelled" };
const KEPT = ["run_id", "agent_id", "input", "text", "status", "error", "lastSeq", "t",
  "parent_run_id", "depth", "final", "call_id"];
const CALL_END = { agent_call_done: "done", agent_call_failed: "failed", agent_call_cancelled: "cancelled" };
const MAX_TREE_DEPTH = 16;     /* walks up or down a call tree stop here */

export function isTerminal(status) {
  return status === "done" || status === "failed" || status === "cancelled";
}

export function newRun(runId, init) {
  return Object.assign({
    run_id: runId, agent_id: "", input: "", text: "", status: "queued", error: null,
    lastSeq: 0, t: Date.now(), parent_run_id: null, depth: 0, final: false, call_id: "",
  }, init || {});
}

function isReal(r) {
  return !r.run_id.startsWith(PLACEHOLDER);
}

export class Runs {
  constructor() {
    this.map = new Map();      /* run_id -> run */
    this.changed = new Set();  /* runs whose turn must be redrawn */
    this.treeChanged = false;  /* the run list must be redrawn */
  }

  get(id) { return this.map.get(id); }
  has(id) { return this.map.has(id); }
  values() { return this.map.values(); }
  delete(id) { this.map.delete(id); this.treeChanged = true; }

  touch(r, tree) {
    this.changed.add(r.run_id);
    if (tree)
      this.treeChanged = true;
  }

  ensure(id, init) {
    let r = this.map.get(id);
    if (!r) {
      r = newRun(id, init);
      this.map.set(id, r);
      this.touch(r, true);
    }
    return r;
  }

  /* One event from the socket: {run, verdict}, verdict "applied", "dup"
   * (seen already) or "gap" (resume the run from run.lastSeq). */
  offer(ev) {
    const r = this.ensure(ev.run_id, {
      t: Date.parse(ev.created_at) || Date.now(),
      parent_run_id: ev.parent_run_id || null,
      depth: ev.depth || 0,
    });
    if (ev.seq <= r.lastSeq)
      return { run: r, verdict: "dup" };
    if (ev.seq > r.lastSeq + 1)
      return { run: r, verdict: "gap" };
    r.lastSeq = ev.seq;
    this.apply(r, ev);
    return { run: r, verdict: "applied" };
  }

  /* What one event changes in its run (and, for a call, in its child). */
  apply(r, ev) {
    const p = ev.payload || {};
    if (ev.parent_run_id && !r.parent_run_id) {
      r.parent_run_id = ev.parent_run_id;
      r.depth = ev.depth || 1;
      this.treeChanged = true;
    }
    switch (ev.type) {
    case "run_started":
      if (!isTerminal(r.status))
        r.status = "running";
      r.agent_id = p.agent_id || r.agent_id;
      this.treeChanged = true;
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
      if (typeof p.child_run_id === "string") {
        const child = this.ensure(p.child_run_id, { t: Date.parse(ev.created_at) || Date.now() });
        child.parent_run_id = r.run_id;
        child.agent_id = child.agent_id || p.agent_id || "";
        child.depth = p.depth || (r.depth || 0) + 1;
        child.call_id = p.call_id || child.call_id;
        this.treeChanged = true;
      }
      break;
    case "agent_call_done":
    case "agent_call_failed":
    case "agent_call_cancelled":
      /* The parent's record of how its call ended: the child's whole
       * answer or error, even when the child's own events were missed. */
      if (typeof p.child_run_id === "string") {
        const child = this.ensure(p.child_run_id, { t: Date.parse(ev.created_at) || Date.now() });
        child.parent_run_id = child.parent_run_id || r.run_id;
        child.call_id = p.call_id || child.call_id;
        if (p.output && typeof p.output.content === "string") {
          child.text = p.output.content;
          child.final = true;
        }
        if (p.error)
          child.error = p.error;
        if (!isTerminal(child.status))
          child.status = CALL_END[ev.type];
        this.touch(child, true);
      }
      break;
    default:
      if (STATUS_OF[ev.type]) {
        r.status = STATUS_OF[ev.type];
        if (ev.type === "run_failed")
          r.error = p.error || { code: "internal", message: "" };
        this.treeChanged = true;
      }
    }
    this.touch(r, false);
  }

  /* A run object of SPEC §3 (/v1/runs/{id}, a session's runs, calls). */
  mergeRunObject(o) {
    if (!o || typeof o.run_id !== "string")
      return null;
    const r = this.ensure(o.run_id, { t: Date.parse(o.created_at) || Date.now() });
    r.agent_id = r.agent_id || o.agent_id || "";
    if (o.parent_run_id) {
      r.parent_run_id = o.parent_run_id;
      r.depth = o.depth || 1;
    }
    if (isTerminal(o.status) && !isTerminal(r.status) && (r.final || r.parent_run_id))
      r.status = o.status; /* the whole answer is here already, or a child's (no turn of its own) */
    else if ((o.status === "queued" || o.status === "running") && !isTerminal(r.status))
      r.status = o.status; /* unfinished: a resume brings the rest */
    this.touch(r, true);
    return r;
  }

  /* A stored message (/messages): the user's input or the whole answer. */
  mergeMessage(m) {
    if (!m || typeof m.run_id !== "string" || typeof m.content !== "string")
      return;
    const r = this.ensure(m.run_id, { t: Date.parse(m.created_at) || Date.now() });
    if (m.role === "user") {
      r.input = m.content;
    } else {
      r.text = m.content;
      r.final = true;
      if (!isTerminal(r.status))
        r.status = "done"; /* stored once the invoke is done */
    }
    this.touch(r, true);
  }

  /* Client runs still going: what Stop cancels. */
  active() {
    return Array.from(this.map.values()).filter((r) => isReal(r) && !r.parent_run_id && !isTerminal(r.status));
  }

  /* Runs to resume after a (re)connect. */
  unfinished() {
    return Array.from(this.map.values()).filter((r) => isReal(r) && !isTerminal(r.status));
  }

  /* The call tree: roots newest first, each run's children in start order. */
  tree() {
    const children = new Map();
    const roots = [];
    for (const r of this.map.values()) {
      if (!isReal(r))
        continue;
      if (r.parent_run_id && this.map.has(r.parent_run_id)) {
        if (!children.has(r.parent_run_id))
          children.set(r.parent_run_id, []);
        children.get(r.parent_run_id).push(r);
      } else {
        roots.push(r);
      }
    }
    roots.sort((a, b) => b.t - a.t);
    for (const list of children.values())
      list.sort((a, b) => a.t - b.t);
    return { roots: roots, children: children };
  }

  /* The top of the call tree run id belongs to (itself for a client run). */
  rootOf(id) {
    let r = this.map.get(id);
    for (let i = 0; r && r.parent_run_id && this.map.has(r.parent_run_id) && i < MAX_TREE_DEPTH; i++)
      r = this.map.get(r.parent_run_id);
    return r ? r.run_id : id;
  }

  /* Whether run id sits under ancestor in the call tree. */
  isUnder(id, ancestor) {
    let r = this.map.get(id);
    for (let i = 0; r && r.parent_run_id && i < MAX_TREE_DEPTH; i++) {
      if (r.parent_run_id === ancestor)
        return true;
      r = this.map.get(r.parent_run_id);
    }
    return false;
  }

  /* For sessionStorage: at most max runs, the oldest finished ones dropped
   * first (unfinished ones are kept: a reload must resume them). */
  dump(max) {
    const all = Array.from(this.map.values()).sort((a, b) => a.t - b.t);
    let extra = all.length - max;
    const out = {};
    for (const r of all) {
      if (extra > 0 && isTerminal(r.status)) {
        extra--;
        continue;
      }
      const kept = {};
      for (const k of KEPT)
        kept[k] = r[k];
      out[r.run_id] = kept;
    }
    return out;
  }

  restore(saved) {
    for (const r of Object.values(saved || {}))
      if (r && typeof r.run_id === "string" && typeof r.lastSeq === "number")
        this.map.set(r.run_id, newRun(r.run_id, r));
    this.treeChanged = true;
  }
}

/* Timeline rows from a run's events: one per event, each run of
 * consecutive deltas folded into one row with their text. */
export function foldTimeline(events) {
  const rows = [];
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    const row = { type: ev.type, seq: String(ev.seq), first: ev.seq, count: 1,
      time: (ev.created_at || "").slice(11, 23), payload: "", child: "" };
    if (ev.type.startsWith("agent_call_") && ev.payload && typeof ev.payload.child_run_id === "string")
      row.child = ev.payload.child_run_id;
    if (ev.type === "agent_stream_delta") {
      let j = i, text = "";
      while (j < events.length && events[j].type === "agent_stream_delta") {
        text += (events[j].payload && events[j].payload.delta) || "";
        j++;
      }
      row.count = j - i;
      if (row.count > 1)
        row.seq = ev.seq + "–" + events[j - 1].seq;
      row.payload = "×" + row.count + " " + JSON.stringify(text);
      i = j - 1;
    } else {
      row.payload = JSON.stringify(ev.payload || {});
    }
    if (row.payload.length > 400)
      row.payload = row.payload.slice(0, 400) + "…";
    rows.push(row);
  }
  return rows;
}
