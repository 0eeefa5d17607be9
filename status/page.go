package status

// page is the live status page. Its script polls the report (the same URL
// with ?json) every second and redraws; every string from a pool (method
// names come from workers, stderr from native code) is set as text, never
// as markup.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bulkhead status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.2em 0 .3em; }
#updated { color: #666; font-size: .9em; } #error { color: #b00; }
.summary span { margin-right: 1.2em; white-space: nowrap; } .summary b { font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 6px; margin: .6em 0; }
.worker { border-radius: 6px; padding: 6px 8px; font-size: 12px; border: 1px solid rgba(0,0,0,.15); min-height: 58px; }
.worker .pid { font-weight: 600; font-size: 13px; } .worker .call { font-family: ui-monospace, monospace; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.busy { background: #ffd27a; } .idle { background: #b9e6b3; } .spare { background: #bcd7f5; }
.starting { background: #eee; border-style: dashed; } .stopping { background: #d5d5d5; color: #555; }
.crashed { background: #f4a3a3; }
.legend span { display: inline-block; padding: 1px 8px; border-radius: 4px; margin-right: 4px; font-size: 12px; border: 1px solid rgba(0,0,0,.15); }
.legend span.starting { border-style: dashed; }
table { border-collapse: collapse; font-size: 12px; margin-top: .4em; } td, th { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
td:nth-child(-n+7) { white-space: nowrap; }
pre { margin: 0; max-height: 12em; overflow: auto; background: #fff; border: 1px solid #ddd; padding: 4px; font-size: 11px; max-width: 70em; }
</style></head>
<body>
<h1>bulkhead status</h1>
<div id="updated">loading…</div><div id="error"></div>
<div class="legend"><span class="busy">busy</span><span class="idle">idle</span><span class="spare">spare</span><span class="starting">starting</span><span class="stopping">stopping</span><span class="crashed">crashed (last 60 s)</span></div>
<div id="pools"></div>
<script>
"use strict";
const recent = 60; // seconds a crash stays on the grid
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function secs(s) { return s < 1 ? (s * 1000).toFixed(0) + " ms" : s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min"; }
function mib(b) { return (b / 1048576).toFixed(1) + " MiB"; }
function stat(box, name, value) {
  const s = el("span"); s.append(name + " "); const b = el("b", null, value); b.dataset.stat = name; s.append(b); box.append(s);
}
function cell(cls, lines) {
  const c = el("div", "worker " + cls); c.dataset.state = cls;
  lines.forEach((l, i) => c.append(el("div", i === 0 ? "pid" : (i === 1 ? "" : "call"), l)));
  return c;
}
function drawPool(p) {
  const sec = el("section", "pool"); sec.dataset.pool = p.name;
  const st = p.stats;
  sec.append(el("h2", null, "pool " + p.name));
  const sum = el("div", "summary");
  stat(sum, "calls", st.calls); stat(sum, "ok", st.calls_by_outcome.ok || 0);
  stat(sum, "crashed", (st.calls_by_outcome.crash_call || 0) + (st.calls_by_outcome.crash_idle || 0));
  stat(sum, "canceled", st.calls_by_outcome.canceled || 0);
  stat(sum, "in flight", st.in_flight); stat(sum, "waiting", st.waiting);
  stat(sum, "workers", st.workers); stat(sum, "busy", st.busy); stat(sum, "started", st.started);
  stat(sum, "recycled", st.recycled); stat(sum, "respawn p50", secs(st.respawn_p50_seconds));
  if (st.unhealthy) sum.append(el("span", "crashed", "UNHEALTHY: failing fast"));
  if (st.quarantined) stat(sum, "quarantined", st.quarantined);
  sec.append(sum);
  const grid = el("div", "grid");
  for (const w of p.workers) {
    const lines = ["pid " + w.pid, w.state + " · " + w.calls + " calls · " + secs(w.age_seconds) + " old",
      "cpu " + secs(w.cpu_seconds) + " · " + mib(w.rss_bytes)];
    if (w.current) lines.push(w.current.method + " #" + w.current.request_id + " " + secs(w.current.running_seconds));
    grid.append(cell(w.state, lines));
  }
  for (let i = 0; i < st.starting; i++) grid.append(cell("starting", ["new worker", "starting"]));
  for (const c of p.crashes) {
    if (c.ago_seconds > recent) break;
    grid.append(cell("crashed", ["pid " + c.pid, (c.signal || "exit " + c.exit_code) + " · " + c.phase + " · " + secs(c.ago_seconds) + " ago",
      c.method ? c.method + " #" + c.request_id : ""]));
  }
  sec.append(grid);
  if (p.crashes.length) {
    const t = el("table", "crashes");
    const h = el("tr"); ["when", "pid", "phase", "signal / exit", "in", "call", "fingerprint", "reason", "stderr"].forEach(x => h.append(el("th", null, x)));
    t.append(h);
    for (const c of p.crashes) {
      const r = el("tr");
      r.append(el("td", null, secs(c.ago_seconds) + " ago"), el("td", null, c.pid), el("td", null, c.phase),
        el("td", null, c.signal || "exit " + c.exit_code), el("td", null, c.function || ""), el("td", null, c.method ? c.method + " #" + c.request_id : ""),
        el("td", null, c.fingerprint || ""), el("td", null, c.reason));
      const td = el("td");
      if (c.stderr_head || c.stderr_tail) {
        const d = el("details"); d.append(el("summary", null, "head" + (c.stderr_tail ? " and tail" : "")));
        d.append(el("pre", null, c.stderr_head));
        if (c.stderr_tail) { d.append(el("div", null, "… " + c.stderr_elided + " …")); d.append(el("pre", null, c.stderr_tail)); }
        td.append(d);
      }
      r.append(td); t.append(r);
    }
    sec.append(el("h2", null, "latest crashes")); sec.append(t);
  }
  return sec;
}
function drawActivator(a) {
  const sec = el("section", "activator"); sec.dataset.activator = a.name;
  sec.append(el("h2", null, "activator " + a.name));
  const sum = el("div", "summary"), st = a.stats;
  stat(sum, "objects", st.objects); stat(sum, "sessions", st.sessions); stat(sum, "servers", st.servers);
  stat(sum, "starting", st.starting); stat(sum, "activations", st.activations); stat(sum, "launches", st.launches);
  stat(sum, "server crashes", st.server_crashes); stat(sum, "ROT entries", st.rot_entries);
  sec.append(sum);
  const grid = el("div", "grid");
  for (const s of a.servers) {
    grid.append(cell(s.state === "stopping" ? "stopping" : (s.objects > 0 ? "busy" : "idle"),
      ["pid " + s.pid + " · " + s.name, s.state + " · " + s.locks + " locks · " + s.objects + " objects", (s.classes || []).join(", ")]));
  }
  for (let i = 0; i < st.starting; i++) grid.append(cell("starting", ["new server", "starting"]));
  sec.append(grid);
  return sec;
}
let open = new Set();
async function refresh() {
  try {
    const res = await fetch(location.pathname + "?json", {cache: "no-store"});
    if (!res.ok) throw new Error(res.status + " " + res.statusText);
    const rep = await res.json();
    open = new Set([...document.querySelectorAll("details[open]")].map(d => d.closest("tr").rowIndex + d.closest("section").dataset.pool));
    const pools = document.getElementById("pools");
    pools.replaceChildren(...rep.pools.map(drawPool), ...(rep.activators || []).map(drawActivator));
    document.querySelectorAll("details").forEach(d => { if (open.has(d.closest("tr").rowIndex + d.closest("section").dataset.pool)) d.open = true; });
    document.getElementById("updated").textContent = "updated " + new Date(rep.time).toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot read the report: " + e.message;
  }
  setTimeout(refresh, 1000);
}
refresh();
</script>
</body></html>
`
