// The ghostbridge dashboard: one page, hash routes, the JSON API polled
// every few seconds. No external code; every string from the server is
// escaped before it reaches the page.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;
const POLL_MS = 3000;
const $ = (s) => document.querySelector(s);

function esc(v) {
  return String(v == null ? "" : v).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function age(s) {
  if (s == null) return "-";
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}
function badge(t) { return `<span class="badge ${esc(t)}">${esc(t)}</span>`; }
function when(ms) { return ms ? new Date(ms).toLocaleString() : "-"; }

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { location.href = "/signin"; throw new Error("signed out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || r.statusText);
  return body;
}
async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body || {}),
  });
  if (r.status === 401) { location.href = "/signin"; throw new Error("signed out"); }
  const out = await r.json().catch(() => ({}));
  return { status: r.status, ok: r.ok, body: out };
}

function flash(text, bad) {
  const f = $("#flash");
  f.textContent = text;
  f.className = bad ? "bad" : "";
  f.hidden = false;
  clearTimeout(flash.t);
  flash.t = setTimeout(() => { f.hidden = true; }, 8000);
}

// ---- confirmation dialog ------------------------------------------------
let dialogOpen = false;
function confirmDialog({ title, body, needReason, extra, ok }) {
  $("#confirm-title").textContent = title;
  $("#confirm-body").innerHTML = body;
  $("#confirm-extra").innerHTML = extra || "";
  $("#confirm-reason").value = "";
  $("#confirm-reason-label").hidden = !needReason;
  $("#confirm-error").textContent = "";
  $("#confirm").hidden = false;
  dialogOpen = true;
  (needReason ? $("#confirm-reason") : $("#confirm-ok")).focus();
  return new Promise((resolve) => {
    const close = (v) => {
      $("#confirm").hidden = true; dialogOpen = false;
      $("#confirm-ok").onclick = null; $("#confirm-cancel").onclick = null;
      resolve(v);
    };
    $("#confirm-cancel").onclick = () => close(null);
    $("#confirm-ok").onclick = () => {
      const reason = $("#confirm-reason").value.trim();
      if (needReason && !reason) { $("#confirm-error").textContent = "Say why: a reason is required."; return; }
      const err = ok ? ok() : null;
      if (err) { $("#confirm-error").textContent = err; return; }
      close({ reason });
    };
  });
}

// ---- entry actions (one per entry, or on the selected rows shown) ------
const ACTIONS = {
  retry: { label: "Retry", from: ["stuck", "failed", "deferred"], to: "pending/" },
  hold: { label: "Hold", from: ["pending", "deferred"], to: "held/" },
  release: { label: "Release", from: ["held"], to: "pending/" },
  delete: { label: "Delete", from: ["pending", "deferred", "held", "done", "failed", "stuck"], to: "trash/", danger: true },
  restore: { label: "Restore", from: ["trash"], to: "pending/" },
};
function actionButtons(e) {
  return Object.entries(ACTIONS)
    .filter(([, a]) => a.from.includes(e.state))
    .map(([k, a]) => `<button type="button" class="act act-${k}${a.danger ? " danger" : ""}" data-act="${k}" data-target="${esc(e.target)}" data-name="${esc(e.name)}" data-state="${esc(e.state)}">${a.label}</button>`)
    .join(" ");
}
async function runAction(act, items) {
  const a = ACTIONS[act];
  const list = items.map((e) => `<li><code>${esc(e.target)}/${esc(e.state)}/${esc(e.name)}</code></li>`).join("");
  const c = await confirmDialog({
    title: `${a.label} ${items.length} entr${items.length === 1 ? "y" : "ies"} → ${a.to}`,
    body: `<p>This acts on exactly these entries:</p><ul>${list}</ul>`,
    needReason: true,
  });
  if (!c) return;
  const r = await post(`/api/v1/actions/${act}`, {
    entries: items.map((e) => ({ target: e.target, name: e.name })),
    reason: c.reason,
  });
  const results = (r.body && r.body.results) || [];
  const bad = results.filter((x) => !x.ok);
  if (r.ok && !bad.length) flash(`${a.label}: ${results.length} done.`);
  else flash(`${a.label}: ${r.body.done || 0} done; ` + (bad.map((x) => x.message).join("; ") || r.body.message || r.status), true);
  selected.clear();
  refresh();
}
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button.act");
  if (!b) return;
  runAction(b.dataset.act, [{ target: b.dataset.target, name: b.dataset.name, state: b.dataset.state }]);
});

// ---- charts (inline SVG) ----------------------------------------------
function chart(title, samples, f) {
  const w = 320, h = 90, pad = 4;
  const pts = samples.map((s) => [s.at_ms, f(s)]);
  if (pts.length < 2) return `<div class="chart"><div class="t">${esc(title)}</div><svg width="${w}" height="${h}"><text x="8" y="50" fill="#889" font-size="12">not enough history yet</text></svg></div>`;
  const x0 = pts[0][0], x1 = pts[pts.length - 1][0];
  const ymax = Math.max(1, ...pts.map((p) => p[1]));
  const xy = pts.map(([x, y]) =>
    `${(pad + (w - 2 * pad) * (x - x0) / Math.max(1, x1 - x0)).toFixed(1)},${(h - pad - (h - 2 * pad) * y / ymax).toFixed(1)}`).join(" ");
  const last = pts[pts.length - 1][1];
  return `<div class="chart"><div class="t">${esc(title)}: now ${esc(+last.toFixed(2))}, max ${esc(+ymax.toFixed(2))}</div>
    <svg width="${w}" height="${h}" role="img" aria-label="${esc(title)}"><rect width="${w}" height="${h}" fill="#fafbfc"/>
    <polyline fill="none" stroke="#2457c5" stroke-width="1.5" points="${xy}"/></svg></div>`;
}
const sum = (s, k) => Object.values(s.targets || {}).reduce((a, t) => a + (t[k] || 0), 0);

// ---- pages -------------------------------------------------------------
const selected = new Set();
let queueFilter = { state: "", target: "", id: "", min_age: "", max_age: "", page: 1 };
let stuckPage = 1;

const pages = {
  async overview() {
    const o = await api("/api/v1/overview");
    const h = o.health;
    if (!h) return `<section><p>The monitor has not written its health model yet.</p></section>`;
    const wd = (o.watchdog && o.watchdog.children) || {};
    const comps = Object.entries(h.components || {}).map(([n, c]) =>
      `<tr><td>${esc(n)}</td><td>${badge(c.state)}</td><td>${esc(c.status || "")}</td><td class="num">${c.age_s != null ? esc(c.age_s.toFixed(0)) + "s" : "-"}</td>
       <td class="num">${wd[n] ? esc(wd[n].restarts_total) : "-"}</td><td class="num">${c.cpu_percent != null ? esc(c.cpu_percent.toFixed(1)) + "%" : "-"}</td>
       <td class="num">${c.rss_bytes ? esc((c.rss_bytes / 1048576).toFixed(1)) + " MiB" : "-"}</td></tr>`).join("");
    const queues = Object.entries(h.targets || {}).flatMap(([t, th]) =>
      Object.entries(th.states).filter(([st, sh]) => sh.count > 0 || ["pending", "stuck", "failed"].includes(st)).map(([s, sh]) =>
        `<tr><td>${esc(t)}</td><td>${badge(s)}</td><td class="num">${esc(sh.count)}</td><td class="num">${age(sh.oldest_age_s)}</td></tr>`)).join("");
    const firing = (o.firing || []).map((e) =>
      `<tr><td>${badge(e.severity)}</td><td>${esc(e.title)}</td><td><code>${esc(e.fingerprint)}</code></td><td>${when(e.started_ms)}</td></tr>`).join("");
    const hr = o.history.hour, day = o.history.day;
    return `
      ${o.pause.paused ? `<section><h2>Intake is paused</h2><p>${esc(o.pause.causes.join("; ") || JSON.stringify(o.pause.record))} — <a href="#/logs">resume</a></p></section>` : ""}
      <section><h2>Components</h2><table><tr><th>component</th><th>heartbeat</th><th>status</th><th class="num">age</th><th class="num">restarts</th><th class="num">CPU</th><th class="num">memory</th></tr>${comps}</table></section>
      <section><h2>Queues</h2><table id="queues"><tr><th>target</th><th>state</th><th class="num">depth</th><th class="num">oldest</th></tr>${queues}</table></section>
      <section><h2>Last hour</h2><div class="charts">
        ${chart("applied per minute", hr, (s) => sum(s, "done_per_min"))}
        ${chart("pending", hr, (s) => sum(s, "pending"))}
        ${chart("failed per minute", hr, (s) => sum(s, "failed_per_min"))}
        ${chart("stuck", hr, (s) => sum(s, "stuck"))}</div>
      <h2>Last day</h2><div class="charts">
        ${chart("applied per minute", day, (s) => sum(s, "done_per_min"))}
        ${chart("pending", day, (s) => sum(s, "pending"))}
        ${chart("failed per minute", day, (s) => sum(s, "failed_per_min"))}
        ${chart("alerts firing", day, (s) => s.firing || 0)}</div></section>
      <section><h2>Firing alerts</h2>${firing ? `<table><tr><th>severity</th><th>title</th><th>fingerprint</th><th>since</th></tr>${firing}</table>` : `<p class="muted">None.</p>`}</section>`;
  },

  async stuck() {
    const r = await api(`/api/v1/entries?state=stuck,failed&page=${stuckPage}&limit=50`);
    return entryTable(r, "stuck", true) + pager(r, "stuck");
  },

  async queue() {
    const f = queueFilter;
    const qs = new URLSearchParams({ state: f.state || "all", page: f.page, limit: 50 });
    for (const k of ["target", "id", "min_age", "max_age"]) if (f[k]) qs.set(k, f[k]);
    const r = await api(`/api/v1/entries?${qs}`);
    const states = ["", "pending", "active", "deferred", "held", "done", "failed", "stuck", "trash"];
    return `<section><h2>Queue browser</h2><form class="filters" id="qfilter">
      <label>state<select name="state">${states.map((s) => `<option value="${s}"${s === f.state ? " selected" : ""}>${s || "all"}</option>`).join("")}</select></label>
      <label>target<input name="target" value="${esc(f.target)}" size="10"></label>
      <label>id (queue name or patch id, or its first or last 4+ characters)<input name="id" value="${esc(f.id)}" size="28"></label>
      <label>older than<input name="min_age" value="${esc(f.min_age)}" size="6" placeholder="10m"></label>
      <label>newer than<input name="max_age" value="${esc(f.max_age)}" size="6" placeholder="2h"></label>
      <button type="submit" class="primary">Filter</button></form>
      ${entryTable(r, "queue", true, true)}${pager(r, "queue")}</section>`;
  },

  async entry(target, name) {
    const r = await api(`/api/v1/entries/${encodeURIComponent(target)}/${encodeURIComponent(name)}`);
    const e = r.entry;
    const logs = (r.logs || []).map((l) => {
      const v = l.line || {};
      return `<tr><td>${esc(v.timestamp || "")}</td><td>${esc(l.component)}</td><td>${esc(v.level || "")}</td><td>${esc((v.fields && (v.fields.event || v.fields.message)) || v.event || v.message || v.text || JSON.stringify(v))}</td></tr>`;
    }).join("");
    return `<section><h2>Entry <code>${esc(e.name)}</code></h2>
      <p>${badge(e.state)} target <b>${esc(e.target)}</b>, patch <code>${esc(e.patch_id || "-")}</code>, age ${age(e.age_s)}, attempts ${esc(e.attempts ?? "-")}</p>
      ${e.reason ? `<p class="error">${esc(e.reason.kind)}: ${esc(e.reason.message)}${e.reason.hint ? " — " + esc(e.reason.hint) : ""}</p>` : ""}
      <p>${actionButtons(e)}</p></section>
      <section><h2>Summary</h2>${r.summary_markdown ? `<div class="md">${markdown(r.summary_markdown)}</div>` : `<p class="muted">No summary yet.</p>`}</section>
      <section><h2>Patch</h2>${r.patch_cut ? `<p class="muted">First part of ${esc(r.patch_bytes)} bytes.</p>` : ""}<pre>${esc(r.patch)}</pre></section>
      <section><h2>Record</h2><pre>${esc(JSON.stringify(r.record, null, 2))}</pre></section>
      <section><h2>Log lines</h2>${logs ? `<table><tr><th>time</th><th>component</th><th>level</th><th>line</th></tr>${logs}</table>` : `<p class="muted">None found.</p>`}</section>`;
  },

  async alerts() {
    const a = await api("/api/v1/alerts");
    const firing = a.firing.map((e) => `<tr data-fingerprint="${esc(e.fingerprint)}"><td>${badge(e.severity)}</td><td>${esc(e.title)}<div class="muted">${esc(e.message)}</div></td>
      <td><code>${esc(e.fingerprint)}</code></td><td>${when(e.started_ms)}</td><td>${e.acked_by ? "acknowledged by " + esc(e.acked_by) : ""}</td>
      <td><button type="button" class="ack" data-m="${esc(e.fingerprint)}"${e.acked_by ? " disabled" : ""}>Acknowledge</button>
      <button type="button" class="silence" data-m="${esc(e.fingerprint)}">Silence…</button></td></tr>`).join("");
    const resolved = a.resolved.map((e) => `<tr><td>${badge(e.severity)}</td><td>${esc(e.title)}</td><td><code>${esc(e.fingerprint)}</code></td><td>${when(e.started_ms)}</td><td>${when(e.resolved_ms)}</td></tr>`).join("");
    const sil = a.silences.map((s) => `<tr><td><code>${esc(s.matcher)}</code></td><td>${when(s.until_ms)}</td><td>${esc(s.by)}</td><td>${esc(s.reason)}</td></tr>`).join("");
    return `<section><h2>Firing</h2>${firing ? `<table><tr><th>severity</th><th>alert</th><th>fingerprint</th><th>since</th><th></th><th></th></tr>${firing}</table>` : `<p class="muted">Nothing firing.</p>`}</section>
      <section><h2>Silences</h2>${sil ? `<table><tr><th>matcher</th><th>until</th><th>by</th><th>why</th></tr>${sil}</table>` : `<p class="muted">None.</p>`}</section>
      <section><h2>Resolved</h2>${resolved ? `<table><tr><th>severity</th><th>alert</th><th>fingerprint</th><th>started</th><th>resolved</th></tr>${resolved}</table>` : `<p class="muted">None.</p>`}</section>`;
  },

  async logs() {
    const l = await api("/api/v1/logs");
    const rows = Object.entries(l.components).map(([c, v]) => {
      const g = v.logs || {};
      return `<tr><td>${esc(c)}</td><td>${badge(v.heartbeat)}</td><td>${v.logs ? (g.primary_ok ? badge("ok") : badge("failing")) : "-"}</td>
        <td>${esc(g.failing_since || "")}</td><td>${esc(g.fallback_path || "")}</td><td class="num">${esc(g.dropped_lines ?? "-")}</td>
        <td class="num">${esc(v.rotations_last_hour)}</td><td>${esc(g.last_error || "")}</td></tr>`;
    }).join("");
    const p = l.pause;
    return `<section><h2>Log health</h2><table><tr><th>component</th><th>heartbeat</th><th>primary log</th><th>failing since</th><th>fallback in use</th><th class="num">dropped lines</th><th class="num">rotations/h</th><th>last error</th></tr>${rows}</table></section>
      <section id="pause"><h2>Intake</h2>${p.paused
        ? `<p>${badge("critical")} paused: ${esc(p.causes.join("; ") || JSON.stringify(p.record))}</p><button type="button" id="resume" class="primary">Resume…</button>`
        : `<p>${badge("ok")} not paused.</p><button type="button" id="pause-btn" class="danger">Pause intake…</button>`}</section>`;
  },
};

function entryTable(r, page, bulk, showState) {
  if (!r.entries.length) return `<p class="muted" id="${page}-empty">Nothing here.</p>`;
  const shown = new Set(r.entries.map((e) => `${e.target}/${e.name}`));
  for (const k of [...selected]) if (!shown.has(k.split("|")[0])) selected.delete(k);
  const rows = r.entries.map((e) => {
    const key = `${e.target}/${e.name}`;
    const reason = e.reason ? `${e.reason.kind}: ${e.reason.message}` : (e.last_error || "");
    return `<tr class="entry" data-name="${esc(e.name)}" data-state="${esc(e.state)}">
      ${bulk ? `<td><input type="checkbox" class="sel" data-key="${esc(key)}" data-state="${esc(e.state)}"${[...selected].some((k) => k.startsWith(key + "|")) ? " checked" : ""}></td>` : ""}
      <td>${esc(e.target)}</td><td>${badge(e.state)}</td>
      <td><a href="#/entry/${encodeURIComponent(e.target)}/${encodeURIComponent(e.name)}"><code>${esc(e.name)}</code></a></td>
      <td><code>${esc(e.patch_id || "-")}</code></td><td class="num">${age(e.age_s)}</td><td class="num">${esc(e.attempts ?? "-")}</td>
      <td>${esc(reason)}</td><td>${e.has_summary ? `<a href="#/entry/${encodeURIComponent(e.target)}/${encodeURIComponent(e.name)}">summary</a>` : ""}</td>
      <td>${actionButtons(e)}</td></tr>`;
  }).join("");
  const bulkBar = bulk ? `<div class="filters">Selected (only rows shown on this page):
      ${Object.entries(ACTIONS).map(([k, a]) => `<button type="button" class="bulk" data-act="${k}">${a.label} selected</button>`).join(" ")}</div>` : "";
  return `${bulkBar}<table id="${page}-table"><tr>${bulk ? `<th><input type="checkbox" class="selall"></th>` : ""}<th>target</th><th>state</th><th>queue name</th><th>patch id</th><th class="num">age</th><th class="num">attempts</th><th>reason / last error</th><th></th><th>actions</th></tr>${rows}</table>`;
}
function pager(r, page) {
  return `<div class="pager"><button type="button" class="page" data-p="${page}" data-n="${r.page - 1}"${r.page <= 1 ? " disabled" : ""}>‹ newer</button>
    page ${esc(r.page)} of ${esc(r.pages)} (${esc(r.total)} entries)
    <button type="button" class="page" data-p="${page}" data-n="${r.page + 1}"${r.page >= r.pages ? " disabled" : ""}>older ›</button></div>`;
}

// A small Markdown renderer for summaries: headings, tables, lists, code.
function markdown(md) {
  const out = [];
  let table = null, list = false, code = false;
  const inline = (t) => esc(t).replace(/`([^`]*)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
  const endBlocks = () => {
    if (table) { out.push("<table>" + table.join("") + "</table>"); table = null; }
    if (list) { out.push("</ul>"); list = false; }
  };
  for (const line of md.split("\n")) {
    if (line.startsWith("```")) { endBlocks(); out.push(code ? "</pre>" : "<pre>"); code = !code; continue; }
    if (code) { out.push(esc(line) + "\n"); continue; }
    if (/^\|.*\|\s*$/.test(line)) {
      if (/^\|[\s:|-]+\|\s*$/.test(line)) continue;
      const cells = line.trim().slice(1, -1).split("|").map((c) => c.trim());
      const tag = table ? "td" : "th";
      table = table || [];
      table.push("<tr>" + cells.map((c) => `<${tag}>${inline(c)}</${tag}>`).join("") + "</tr>");
      continue;
    }
    if (/^[-*] /.test(line)) { if (table) endBlocks(); if (!list) { out.push("<ul>"); list = true; } out.push(`<li>${inline(line.slice(2))}</li>`); continue; }
    endBlocks();
    const m = /^(#{1,4}) (.*)$/.exec(line);
    if (m) out.push(`<h${m[1].length + 1}>${inline(m[2])}</h${m[1].length + 1}>`);
    else if (line.trim()) out.push(`<p>${inline(line)}</p>`);
  }
  endBlocks();
  if (code) out.push("</pre>");
  return out.join("");
}

// ---- page events -------------------------------------------------------
document.addEventListener("change", (ev) => {
  const t = ev.target;
  if (t.classList.contains("sel")) {
    const k = `${t.dataset.key}|${t.dataset.state}`;
    t.checked ? selected.add(k) : selected.delete(k);
  } else if (t.classList.contains("selall")) {
    document.querySelectorAll("input.sel").forEach((c) => {
      c.checked = t.checked;
      const k = `${c.dataset.key}|${c.dataset.state}`;
      t.checked ? selected.add(k) : selected.delete(k);
    });
  }
});
document.addEventListener("click", async (ev) => {
  const t = ev.target;
  if (t.classList.contains("bulk")) {
    const act = t.dataset.act;
    const items = [...selected].map((k) => {
      const [key, state] = k.split("|");
      const i = key.indexOf("/");
      return { target: key.slice(0, i), name: key.slice(i + 1), state };
    });
    if (!items.length) { flash("Select the entries first.", true); return; }
    const wrong = items.filter((e) => !ACTIONS[act].from.includes(e.state));
    if (wrong.length) { flash(`${ACTIONS[act].label} does not apply to ${wrong.length} selected entr${wrong.length === 1 ? "y" : "ies"} (state ${wrong.map((e) => e.state).join(", ")}).`, true); return; }
    runAction(act, items);
  } else if (t.classList.contains("page")) {
    const n = Math.max(1, +t.dataset.n);
    if (t.dataset.p === "stuck") stuckPage = n; else queueFilter.page = n;
    refresh();
  } else if (t.classList.contains("ack")) {
    const c = await confirmDialog({ title: "Acknowledge", body: `<p>No more reminders for <code>${esc(t.dataset.m)}</code>; the resolved message still comes.</p>` });
    if (!c) return;
    const r = await post("/api/v1/alerts/ack", { matcher: t.dataset.m });
    flash(r.ok ? "Acknowledged: the monitor takes it in at its next cycle." : r.body.message, !r.ok);
    refresh();
  } else if (t.classList.contains("silence")) {
    const c = await confirmDialog({
      title: "Silence", needReason: true,
      body: `<p>Nothing is sent about <code>${esc(t.dataset.m)}</code> until the silence ends.</p>`,
      extra: `<label>For how long<input id="silence-for" value="2h"></label>`,
    });
    if (!c) return;
    const r = await post("/api/v1/alerts/silence", { matcher: t.dataset.m, for: $("#silence-for") ? $("#silence-for").value : "2h", reason: c.reason });
    flash(r.ok ? "Silence requested." : r.body.message, !r.ok);
    refresh();
  } else if (t.id === "resume") {
    const c = await confirmDialog({ title: "Resume intake", body: "<p>The bridge accepts patches again and the executor claims them. The pause record is kept.</p>" });
    if (!c) return;
    const r = await post("/api/v1/resume", {});
    flash(r.ok ? "Resumed." : r.body.message, !r.ok);
    refresh();
  } else if (t.id === "pause-btn") {
    const c = await confirmDialog({ title: "Pause intake", body: "<p>The bridge answers 503 and the inbox waits; the executor goes on with what is queued.</p>", needReason: true });
    if (!c) return;
    const r = await post("/api/v1/pause", { reason: c.reason });
    flash(r.ok ? "Intake paused." : r.body.message, !r.ok);
    refresh();
  } else if (t.id === "signout") {
    await post("/signout", {});
    location.href = "/signin";
  }
});
document.addEventListener("submit", (ev) => {
  if (ev.target.id !== "qfilter") return;
  ev.preventDefault();
  const fd = new FormData(ev.target);
  queueFilter = { ...queueFilter, page: 1 };
  for (const k of ["state", "target", "id", "min_age", "max_age"]) queueFilter[k] = (fd.get(k) || "").trim();
  refresh();
});

// ---- routing and polling ----------------------------------------------
function route() {
  const parts = (location.hash || "#/overview").slice(2).split("/").map(decodeURIComponent);
  return pages[parts[0]] ? parts : ["overview"];
}
let busy = false;
async function refresh() {
  if (busy || dialogOpen) return;
  // Do not rebuild a form the person is typing in.
  const a = document.activeElement;
  if (a && a.closest && a.closest("#qfilter") && !refresh.force) return;
  busy = true;
  const [name, ...args] = route();
  document.querySelectorAll("nav a").forEach((n) => n.classList.toggle("on", n.dataset.page === name));
  try {
    $("#main").innerHTML = await pages[name](...args);
    $("#status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#status").textContent = "cannot update: " + e.message;
  } finally {
    busy = false;
  }
}
window.addEventListener("hashchange", () => { refresh.force = true; refresh().then(() => { refresh.force = false; }); });
refresh();
setInterval(refresh, POLL_MS);
