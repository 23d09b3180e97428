--- uring.inspect_page: the inspector's page (lua/uring/inspect.lua serves
-- it).  A Lua string, so it installs with the Lua files wherever they go.
-- Every figure has an id (the Chromium spec reads them from the DOM);
-- the script keeps the newest seconds of the trace and redraws the
-- timeline at each snapshot.
return [==[<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lua-uring inspector</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 12px 18px; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 6px; } h2 { font-size: 14px; margin: 14px 0 4px; }
.grid { display: grid; grid-template-columns: repeat(3, minmax(220px, 1fr)); gap: 14px; }
.box { background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 6px 10px; }
table { border-collapse: collapse; width: 100%; } td, th { padding: 1px 6px; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(odd) { background: #f4f4f4; }
.big { font-size: 22px; font-weight: 600; }
#status.live { color: #080; } #status.ended { color: #a00; }
svg { background: #fff; border: 1px solid #ddd; width: 100%; }
.req { fill: #4a7bd0; } .enter { stroke: #d04a4a; stroke-width: 1; }
.label { font-size: 10px; fill: #555; }
</style></head>
<body>
<h1>lua-uring inspector <small id="status">connecting</small>
  <small>(<span id="updates">0</span> updates)</small></h1>
<div class="grid">
 <div class="box"><h2>Batching</h2>
  <div><span class="big" id="rate-enters">-</span> enters/s</div>
  <div><span class="big" id="rate-sqes-per-enter">-</span> SQEs per enter</div>
  <table><tbody>
   <tr><td>enters</td><td class="n" id="stat-enters">-</td></tr>
   <tr><td>waits</td><td class="n" id="stat-waits">-</td></tr>
   <tr><td>SQEs</td><td class="n" id="stat-sqes">-</td></tr>
   <tr><td>CQEs</td><td class="n" id="stat-cqes">-</td></tr>
   <tr><td>in flight</td><td class="n" id="stat-inflight">-</td></tr>
   <tr><td>live tasks</td><td class="n" id="stat-tasks">-</td></tr>
   <tr><td>(of them the inspector's)</td><td class="n" id="own-tasks">-</td></tr>
  </tbody></table>
 </div>
 <div class="box"><h2>The loop's ring</h2>
  <table><thead><tr><th></th><th class="n">mapped</th><th class="n">fdinfo</th></tr></thead><tbody>
   <tr><td>SQ head (kernel writes)</td><td class="n" id="ring-sq_head">-</td><td class="n" id="kernel-SqHead">-</td></tr>
   <tr><td>SQ tail (we write)</td><td class="n" id="ring-sq_tail">-</td><td class="n" id="kernel-SqTail">-</td></tr>
   <tr><td>CQ head (we write)</td><td class="n" id="ring-cq_head">-</td><td class="n" id="kernel-CqHead">-</td></tr>
   <tr><td>CQ tail (kernel writes)</td><td class="n" id="ring-cq_tail">-</td><td class="n" id="kernel-CqTail">-</td></tr>
   <tr><td>CQ overflow</td><td class="n" id="ring-overflow">-</td><td class="n" id="kernel-CqOverflowList">-</td></tr>
   <tr><td>SQ / CQ entries</td><td class="n" id="ring-entries">-</td><td></td></tr>
   <tr><td>SQEs dropped</td><td class="n" id="ring-sq_dropped">-</td><td></td></tr>
  </tbody></table>
 </div>
 <div class="box"><h2>Requests in flight by op</h2>
  <table><thead><tr><th>op</th><th class="n">in flight</th></tr></thead><tbody id="ops"></tbody></table>
  <div>(and <span id="own-requests">-</span> of the inspector's own)</div>
 </div>
</div>
<h2>Tasks and what each waits on</h2>
<div class="box"><table><thead><tr><th class="n">task</th><th>status</th><th>waits on</th></tr></thead>
<tbody id="tasks"></tbody></table></div>
<h2>Trace: the last <span id="window">1</span> s (a bar per request from SQE to CQE, a red line per io_uring_enter)
  <span id="tracing"></span></h2>
<svg id="timeline" viewBox="0 0 1000 240" preserveAspectRatio="none" height="240"></svg>
<script>
"use strict";
const WINDOW = 1;                 // seconds of trace on screen
// ?updates=N: stop listening after N snapshots and keep the page still
// (a screenshot, a headless browser that waits for the network to rest)
const LIMIT = Number(new URLSearchParams(location.search).get("updates")) || 0;
const $ = (id) => document.getElementById(id);
const open = new Map();           // user_data -> {task, op, t0}: SQE seen, no CQE yet
let bars = [], enters = [], updates = 0, now = 0;

function text(id, v) { const e = $(id); if (e) e.textContent = v; }
function fixed(v, d) { return (v === undefined || v === null) ? "-" : Number(v).toFixed(d); }

function take(events) {
  for (const e of events) {
    const [kind, t] = e;
    if (kind === "enter") enters.push({ t: t, submitted: e[2] });
    else if (kind === "sqe") open.set(e[4], { task: e[2], op: e[3], t0: t });
    else if (kind === "cqe") {
      const o = open.get(e[4]);
      if (o) { open.delete(e[4]); bars.push({ task: o.task, op: o.op, t0: o.t0, t1: t }); }
    }
  }
}

function rows(tbody, list) {
  const b = $(tbody);
  b.replaceChildren(...list.map((cells) => {
    const tr = document.createElement("tr");
    tr.dataset.key = cells[0];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (typeof c === "number") td.className = "n";
      tr.appendChild(td);
    });
    return tr;
  }));
}

function draw() {
  const svg = $("timeline"), from = now - WINDOW;
  bars = bars.filter((b) => b.t1 >= from);
  enters = enters.filter((e) => e.t >= from);
  for (const [k, o] of open) if (o.t0 < from - 60) open.delete(k);
  const all = bars.concat([...open.values()].map((o) => ({ task: o.task, op: o.op, t0: o.t0, t1: now })));
  const tasks = [...new Set(all.map((b) => b.task))].sort((a, b) => a - b);
  const row = new Map(tasks.map((t, i) => [t, i]));
  // a row per task, all rows in a fixed height: a batch of a thousand
  // tasks reads as one stripe -- SQEs stacked up, then their CQEs
  const h = 240, rh = Math.min(12, (h - 10) / Math.max(1, tasks.length));
  const x = (t) => Math.max(0, (t - from) / WINDOW * 1000);
  const ns = "http://www.w3.org/2000/svg", kids = [];
  for (const b of all) {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("class", "req");
    r.setAttribute("x", x(b.t0).toFixed(1));
    r.setAttribute("width", Math.max(2, x(b.t1) - x(b.t0)).toFixed(1));
    r.setAttribute("y", (5 + rh * row.get(b.task)).toFixed(2));
    r.setAttribute("height", Math.max(0.5, rh * 0.8).toFixed(2));
    r.appendChild(document.createElementNS(ns, "title")).textContent = `task ${b.task} ${b.op}`;
    kids.push(r);
  }
  for (const e of enters) {
    const l = document.createElementNS(ns, "line");
    l.setAttribute("class", "enter");
    l.setAttribute("x1", x(e.t)); l.setAttribute("x2", x(e.t));
    l.setAttribute("y1", 0); l.setAttribute("y2", h);
    kids.push(l);
  }
  svg.replaceChildren(...kids);
  text("timeline-bars", all.length);
}

function show(s) {
  updates++;
  now = s.time;
  text("updates", updates);
  const st = s.stats;
  for (const k of ["enters", "waits", "sqes", "cqes", "inflight", "tasks"]) text("stat-" + k, st[k]);
  text("own-tasks", s.own_tasks);
  text("own-requests", s.own_requests);
  text("rate-enters", fixed(s.enters_per_s, 1));
  text("rate-sqes-per-enter", fixed(s.sqes_per_enter, 2));
  if (s.ring) {
    for (const k of ["sq_head", "sq_tail", "cq_head", "cq_tail", "overflow", "sq_dropped"]) text("ring-" + k, s.ring[k]);
    text("ring-entries", s.ring.sq_entries + " / " + s.ring.cq_entries);
  }
  if (s.fdinfo) for (const k of ["SqHead", "SqTail", "CqHead", "CqTail", "CqOverflowList"]) text("kernel-" + k, s.fdinfo[k]);
  rows("tasks", s.tasks.map((t) => [t.id, t.status, t.waiting_on]));
  rows("ops", Object.keys(s.inflight_ops).sort().map((op) => [op, s.inflight_ops[op]]));
  text("tracing", s.tracing ? "" : "(tracing is off)");
  take(s.events);
  draw();
  if (LIMIT && updates >= LIMIT) {
    source.close();
    $("status").textContent = "paused"; $("status").className = "";
  }
}

const source = new EventSource("/events");
let failures = 0;                 // reconnections in a row that failed
source.onopen = () => { failures = 0; $("status").textContent = "live"; $("status").className = "live"; };
source.onmessage = (m) => show(JSON.parse(m.data));
source.onerror = () => {
  // a stream ends every half minute and is taken up again; a server that
  // is gone (its run ended) is given up after a few tries
  if (++failures > 3) { source.close(); $("status").textContent = "gone"; }
  else $("status").textContent = "reconnecting";
  $("status").className = "ended";
};
// the inspector was closed or the run ended: no reconnecting
source.addEventListener("end", () => {
  source.close();
  $("status").textContent = "ended"; $("status").className = "ended";
});
</script>
<p><small><span id="timeline-bars">0</span> requests on the timeline</small></p>
</body></html>
]==]
