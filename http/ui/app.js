// The queen-rs console: a single page over the documented HTTP API (docs/api.md). Every figure
// it shows and every action it takes is an ordinary API request carrying the user's token, so
// the page can do nothing a client could not. No build step: plain browser JavaScript.
//
// Rendering builds DOM nodes with textContent only (never innerHTML), so payloads, queue names
// and error texts are shown, not interpreted.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 3000;
const TOKEN_KEY = "queen.token";

// ---- state --------------------------------------------------------------------------------

const state = {
  role: "admin", // what the token may do; "admin" when auth is off
  authEnabled: false,
  needsToken: false, // auth is on and no token is set: nothing to fetch until one is
  timer: null,
  renderSeq: 0,
};

// ---- helpers ------------------------------------------------------------------------------

/** Creates an element: h("td", {class: "num"}, "12"). Children are nodes or text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (n) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"));
const bytes = (n) => (n === undefined || n === null ? "–" : n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const ago = (t) => {
  if (!t) return "–";
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
};
const seconds = (s) => (s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);
const enc = encodeURIComponent;
const can = (role) => ({ "read-only": 0, "read-write": 1, admin: 2 })[state.role] >= ({ "read-only": 0, "read-write": 1, admin: 2 })[role];

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

/** One API request; JSON in, JSON out; throws ApiError on a non-2xx answer. */
async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // The probes (/metrics, /health) live outside /api/v1.
  const url = path.startsWith("/metrics") || path.startsWith("/health") ? path : API + path;
  const r = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = { error: text };
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function toast(text) {
  const t = h("div", { class: "toast", role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 3000);
}

function banner(text) {
  const b = document.getElementById("banner");
  b.textContent = text || "";
  b.hidden = !text;
}

/** Runs an action (a button's click), reports its outcome and refreshes the view. */
async function act(label, fn) {
  try {
    await fn();
    toast(`${label}: done`);
  } catch (e) {
    toast(`${label}: ${e.message}`);
  }
  await render();
}

function table(columns, rows, onRow) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
    h(
      "tbody",
      {},
      rows.length === 0
        ? h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing here yet."))
        : rows.map((r) =>
            h(
              "tr",
              { class: onRow ? "clickable" : null, onclick: onRow ? () => onRow(r) : null },
              columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))
            )
          )
    )
  );
}

const card = (label, value, id) => h("div", { class: "card", "data-card": id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
const badge = (s) => h("span", { class: `badge ${s}` }, s);

// ---- charts -------------------------------------------------------------------------------

/** Draws the rate chart into `el`; the chart is kept on `view.charts` to be destroyed with it. */
function rateChart(view, el, series) {
  const pts = series.points || [];
  const step = series.intervalSeconds || 1;
  const xs = pts.map((p) => new Date(p.timestamp).getTime() / 1000);
  const per = (k) => pts.map((p) => p[k] / step);
  const opts = {
    width: Math.max(300, el.clientWidth - parseFloat(getComputedStyle(el).paddingLeft) - parseFloat(getComputedStyle(el).paddingRight)),
    height: 220,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "pushed/s", stroke: "#5b4fd6", width: 2 },
      { label: "popped/s", stroke: "#1f9d55", width: 2 },
      { label: "acked/s", stroke: "#c77c02", width: 2 },
    ],
    axes: [{}, { size: 60 }],
  };
  const chart = new uPlot(opts, [xs, per("pushed"), per("popped"), per("acked")], el);
  view.charts = [...(view.charts || []), chart];
}

// ---- views --------------------------------------------------------------------------------

async function overview(view) {
  const [status, queues, series] = await Promise.all([
    api("/status"),
    api("/resources/queues"),
    api("/status/analytics"),
  ]);
  const m = status.messages;
  view.append(
    h("h1", {}, "Overview"),
    h(
      "div",
      { class: "cards" },
      card("Queues", fmt(status.queues), "queues"),
      card("Partitions", fmt(status.partitions), "partitions"),
      card("Pending", fmt(m.pending), "pending"),
      card("In flight", fmt(m.processing), "processing"),
      card("Dead letters", fmt(m.deadLetter), "dead-letters"),
      card("Consumer groups", fmt(status.consumerGroups), "groups"),
      card("Push/s", fmt(Math.round(status.throughput?.pushedPerSecond ?? 0)), "push-rate"),
      card("Pop/s", fmt(Math.round(status.throughput?.poppedPerSecond ?? 0)), "pop-rate")
    ),
    h("h2", {}, "Throughput"),
    h("div", { class: "panel chart", id: "rate-chart" }),
    h("h2", {}, "Queues"),
    h(
      "div",
      { class: "panel" },
      table(
        [
          { label: "Queue", cell: (q) => q.name },
          { label: "Namespace", cell: (q) => q.namespace || "" },
          { label: "Task", cell: (q) => q.task || "" },
          { label: "Partitions", num: true, cell: (q) => fmt(q.partitions) },
          { label: "Pending", num: true, cell: (q) => fmt(q.messages.pending) },
          { label: "In flight", num: true, cell: (q) => fmt(q.messages.processing) },
          { label: "Stored", num: true, cell: (q) => fmt(q.messages.total) },
          { label: "Dead letters", num: true, cell: (q) => fmt(q.deadLetter) },
        ],
        queues.queues,
        (q) => (location.hash = `#/queue/${enc(q.name)}`)
      )
    ),
    h("p", { class: "muted" }, `Figures as of ${when(status.asOf)}.`)
  );
  rateChart(view, view.querySelector("#rate-chart"), series.series);
}

async function queuePage(view, name) {
  const [q, groups] = await Promise.all([api(`/resources/queues/${enc(name)}`), api("/consumer-groups")]);
  const mine = groups.filter((g) => g.queueName === name);
  const opts = Object.entries(q.options || {}).filter(([, v]) => v !== null && v !== undefined);
  view.append(
    h("h1", {}, `Queue ${q.name}`),
    h(
      "div",
      { class: "cards" },
      card("Partitions", fmt(q.partitions.length)),
      card("Pending", fmt(q.totals.pending)),
      card("In flight", fmt(q.totals.processing)),
      card("Completed", fmt(q.totals.completed)),
      card("Dead letters", fmt(q.totals.deadLetter))
    ),
    h(
      "p",
      { class: "actions" },
      h("a", { href: `#/messages?queue=${enc(name)}` }, "Browse messages"),
      h("a", { href: `#/dlq?queue=${enc(name)}` }, "Dead letters")
    ),
    h("div", { class: "grid2" },
      h("div", {},
        h("h2", {}, "Options"),
        h("div", { class: "panel" }, table(
          [{ label: "Option", cell: (o) => o[0] }, { label: "Value", cell: (o) => String(o[1]) }],
          opts
        ))
      ),
      h("div", {},
        h("h2", {}, "Consumer groups"),
        h("div", { class: "panel" }, groupTable(mine))
      )
    ),
    h("h2", {}, "Partitions"),
    h(
      "div",
      { class: "panel" },
      table(
        [
          { label: "Partition", cell: (p) => p.name },
          { label: "Pending", num: true, cell: (p) => fmt(p.stats.pending) },
          { label: "In flight", num: true, cell: (p) => fmt(p.stats.processing) },
          { label: "Completed", num: true, cell: (p) => fmt(p.stats.completed) },
          { label: "Dead letters", num: true, cell: (p) => fmt(p.stats.deadLetter) },
          { label: "Newest message", cell: (p) => ago(p.newestMessage) },
        ],
        q.partitions.slice(0, 500),
        (p) => (location.hash = `#/messages?queue=${enc(name)}&partition=${enc(p.name)}`)
      ),
      q.partitions.length > 500 ? h("p", { class: "muted" }, `First 500 of ${fmt(q.partitions.length)} partitions.`) : null
    )
  );
}

function groupTable(groups) {
  return table(
    [
      { label: "Group", cell: (g) => g.name },
      { label: "Queue", cell: (g) => g.queueName },
      { label: "State", cell: (g) => badge(g.state) },
      { label: "Lag (messages)", num: true, cell: (g) => fmt(g.totalLag) },
      { label: "Max time lag", num: true, cell: (g) => seconds(g.maxTimeLag) },
      { label: "Partitions", num: true, cell: (g) => fmt(g.partitions) },
      { label: "Last consumed", cell: (g) => ago(g.lastConsumedAt) },
      {
        label: "",
        cell: (g) =>
          h(
            "span",
            { class: "actions" },
            can("read-write") &&
              h("button", { onclick: (e) => { e.stopPropagation(); seek(g, true); } }, "Seek to end"),
            can("read-write") &&
              h("button", { onclick: (e) => { e.stopPropagation(); seek(g, false); } }, "Seek to time…"),
            can("admin") &&
              h("button", { class: "danger", onclick: (e) => { e.stopPropagation(); deleteGroup(g); } }, "Delete")
          ),
      },
    ],
    groups
  );
}

function seek(g, toEnd) {
  let body = { toEnd: true };
  if (!toEnd) {
    const t = prompt("Replay from (RFC 3339 time)", new Date(Date.now() - 3600e3).toISOString());
    if (!t) return;
    body = { timestamp: t };
  }
  act(`Seek ${g.name}`, () => api(`/consumer-groups/${enc(g.name)}/queues/${enc(g.queueName)}/seek`, { method: "POST", body }));
}

function deleteGroup(g) {
  if (!confirm(`Delete consumer group ${g.name} on ${g.queueName}? Its positions are lost.`)) return;
  act(`Delete ${g.name}`, () => api(`/consumer-groups/${enc(g.name)}/queues/${enc(g.queueName)}`, { method: "DELETE" }));
}

async function groupsPage(view) {
  const groups = await api("/consumer-groups");
  view.append(h("h1", {}, "Consumer groups"), h("div", { class: "panel" }, groupTable(groups)));
}

function params() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1));
}

function filterForm(fields, p, route) {
  const inputs = {};
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        const q = new URLSearchParams();
        for (const [k, el] of Object.entries(inputs)) if (el.value) q.set(k, el.value);
        location.hash = `${route}?${q}`;
      },
    },
    fields.map(([k, label, options]) => {
      inputs[k] = options
        ? h("select", { name: k }, options.map((o) => h("option", { value: o, selected: p.get(k) === o }, o || "any")))
        : h("input", { name: k, value: p.get(k) || "" });
      return h("label", {}, label, inputs[k]);
    }),
    h("button", { type: "submit", class: "primary" }, "Filter")
  );
  return form;
}

async function messagesPage(view) {
  const p = params();
  const q = new URLSearchParams();
  for (const k of ["queue", "partition", "status", "ns", "task", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("limit", "50");
  const page = await api(`/messages?${q}`);
  const next = new URLSearchParams(p);
  if (page.nextCursor) next.set("cursor", page.nextCursor);
  view.append(
    h("h1", {}, "Messages"),
    filterForm(
      [
        ["queue", "Queue"],
        ["partition", "Partition"],
        ["status", "Status", ["", "pending", "processing", "completed", "dead_letter"]],
        ["ns", "Namespace"],
        ["task", "Task"],
      ],
      p,
      "#/messages"
    ),
    h(
      "div",
      { class: "panel" },
      table(
        [
          { label: "Created", cell: (m) => when(m.createdAt) },
          { label: "Queue", cell: (m) => m.queue },
          { label: "Partition", cell: (m) => m.partition },
          { label: "Transaction", cell: (m) => m.transactionId },
          { label: "Status", cell: (m) => badge(m.status) },
        ],
        page.messages,
        (m) => (location.hash = `#/message/${enc(m.partitionId)}/${enc(m.transactionId)}`)
      ),
      h(
        "p",
        { class: "actions" },
        p.get("cursor") && h("a", { href: "#/messages?" + new URLSearchParams([...p].filter(([k]) => k !== "cursor")) }, "First page"),
        page.nextCursor && h("a", { href: `#/messages?${next}` }, "Next page")
      )
    )
  );
}

async function messagePage(view, pid, txid) {
  const [m, traces] = await Promise.all([
    api(`/messages/${enc(pid)}/${enc(txid)}`),
    api(`/traces/${enc(pid)}/${enc(txid)}`),
  ]);
  const { payload, ...fields } = m;
  view.append(
    h("h1", {}, `Message ${txid}`),
    h(
      "p",
      { class: "actions" },
      m.status === "dead_letter" && can("read-write") &&
        h("button", { class: "primary", onclick: () => act("Retry", () => api(`/messages/${enc(pid)}/${enc(txid)}/retry`, { method: "POST" })) }, "Retry"),
      can("read-write") &&
        h("button", {
          class: "danger",
          onclick: () => {
            if (confirm("Delete this message?")) act("Delete", async () => { await api(`/messages/${enc(pid)}/${enc(txid)}`, { method: "DELETE" }); history.back(); });
          },
        }, "Delete")
    ),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Payload"), h("pre", { id: "payload" }, JSON.stringify(payload, null, 2))),
      h("div", {}, h("h2", {}, "Fields"), h("pre", {}, JSON.stringify(fields, null, 2)))
    ),
    h("h2", {}, "Trace timeline"),
    traces.traces.length === 0
      ? h("p", { class: "muted" }, "No trace events recorded for this message.")
      : h("ul", { class: "timeline" }, traces.traces.map((t) =>
          h("li", {}, h("strong", {}, t.event_type || "event"), " ", h("span", { class: "muted" }, when(t.created_at)),
            (t.trace_names || []).length ? ` [${t.trace_names.join(", ")}]` : "",
            h("pre", {}, JSON.stringify(t.data, null, 2)))))
  );
}

async function dlqPage(view) {
  const p = params();
  const q = new URLSearchParams();
  for (const k of ["queue", "consumerGroup", "partition", "before"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("limit", "50");
  const page = await api(`/dlq?${q}`);
  const next = new URLSearchParams(p);
  if (page.nextCursor) next.set("before", page.nextCursor);
  view.append(
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, `Matching: ${fmt(page.total)}.`),
    filterForm([["queue", "Queue"], ["consumerGroup", "Consumer group"], ["partition", "Partition"]], p, "#/dlq"),
    h(
      "div",
      { class: "panel" },
      table(
        [
          { label: "Failed", cell: (d) => when(d.failedAt) },
          { label: "Queue", cell: (d) => d.queue },
          { label: "Partition", cell: (d) => d.partition },
          { label: "Transaction", cell: (d) => d.transactionId },
          { label: "Group", cell: (d) => d.consumerGroup },
          { label: "Error", cell: (d) => d.errorMessage || "" },
          {
            label: "",
            cell: (d) =>
              h(
                "span",
                { class: "actions" },
                h("button", { onclick: (e) => { e.stopPropagation(); location.hash = `#/message/${enc(d.partitionId)}/${enc(d.transactionId)}`; } }, "Inspect"),
                can("read-write") &&
                  h("button", { class: "primary", "data-action": "retry", onclick: (e) => { e.stopPropagation(); act("Retry", () => api(`/messages/${enc(d.partitionId)}/${enc(d.transactionId)}/retry`, { method: "POST" })); } }, "Retry"),
                can("read-write") &&
                  h("button", { class: "danger", onclick: (e) => { e.stopPropagation(); if (confirm("Delete this message?")) act("Delete", () => api(`/messages/${enc(d.partitionId)}/${enc(d.transactionId)}`, { method: "DELETE" })); } }, "Delete")
              ),
          },
        ],
        page.messages
      ),
      page.nextCursor && h("p", {}, h("a", { href: `#/dlq?${next}` }, "Older"))
    )
  );
}

async function serverPage(view) {
  const [metrics, buffers] = await Promise.all([api("/metrics"), api("/status/buffers")]);
  const modes = can("admin")
    ? await Promise.all([api("/system/maintenance"), api("/system/maintenance/pop")])
    : null;
  const db = metrics.database;
  const toggle = (label, path, on) =>
    h("label", { class: "actions" },
      h("input", {
        type: "checkbox",
        checked: on,
        disabled: !can("admin"),
        onchange: (e) => act(label, () => api(path, { method: "POST", body: { enabled: e.target.checked } })),
      }),
      label);
  view.append(
    h("h1", {}, "Server"),
    h(
      "div",
      { class: "cards" },
      card("Uptime", seconds(metrics.uptimeSeconds)),
      card("Pool connected", `${db.connected} / ${db.poolSize}`),
      card("Pool in flight", fmt(db.inFlight)),
      card("Long polls waiting", fmt(metrics.longPolls.waiting)),
      card("Requests", fmt(metrics.requests.total)),
      card("p99 latency", `${(metrics.requests.latencyMicros.p99 / 1000).toFixed(1)} ms`)
    ),
    h("h2", {}, "Disk buffer"),
    h(
      "div",
      { class: "cards" },
      card("Enabled", buffers.enabled ? "yes" : "no"),
      card("Pending", fmt(buffers.pending)),
      card("Bytes", fmt(buffers.bytes)),
      card("Quarantined", fmt(buffers.quarantined)),
      card("Replayed", fmt(buffers.replayed)),
      card("Database", buffers.dbHealthy ? "healthy" : "down")
    ),
    h("h2", {}, "Maintenance"),
    h(
      "div",
      { class: "panel" },
      modes
        ? [
            toggle("Push maintenance (every push goes to the disk buffer)", "/system/maintenance", modes[0].enabled),
            h("br"),
            toggle("Pop maintenance (pops answer empty)", "/system/maintenance/pop", modes[1].enabled),
          ]
        : h("p", { class: "muted" }, "Maintenance modes need an admin token.")
    )
  );
}

/** The ephemeral (in-memory) queues: budgets, every queue with its drops, reset and delete. */
async function ephemeralPage(view) {
  const list = await api("/ephemeral/queues");
  const lossy = (what, q) =>
    confirm(`${what} ephemeral queue ${q}? Its messages live only in this server's memory: they are gone for good.`);
  view.append(
    h("h1", {}, "Ephemeral queues"),
    h("p", { class: "muted" }, "In memory on this server: they survive no restart. Declared queues come back configured and empty."),
    h(
      "div",
      { class: "cards" },
      card("Queues", fmt(list.count), "ephemeral-queues"),
      card("Held", bytes(list.serverBytes), "ephemeral-bytes"),
      card("Budget", bytes(list.serverMaxBytes))
    ),
    h("div", { class: "panel" }, table(
      [
        { label: "Queue", cell: (q) => q.queue },
        { label: "Tier", cell: (q) => badge(q.tier) },
        { label: "Depth", num: true, cell: (q) => fmt(q.depth) },
        { label: "Held", num: true, cell: (q) => bytes(q.bytes) },
        { label: "Partitions", num: true, cell: (q) => fmt(q.partitions) },
        { label: "Groups", num: true, cell: (q) => fmt(q.groups) },
        { label: "Dropped (bounds / ttl / retries)", num: true, cell: (q) => `${fmt(q.drops.bounds)} / ${fmt(q.drops.ttl)} / ${fmt(q.drops.retry)}` },
        { label: "Bounds", cell: (q) => `${fmt(q.options.maxLength)} msgs, ${bytes(q.options.maxBytes)}, ${q.options.policy}` },
        {
          label: "",
          cell: (q) =>
            can("read-write") &&
            h(
              "span",
              { class: "actions" },
              h("button", { "data-action": "reset", onclick: (e) => { e.stopPropagation(); if (lossy("Empty", q.queue)) act("Reset", () => api("/ephemeral/reset", { method: "POST", body: { queue: q.queue } })); } }, "Reset"),
              h("button", { class: "danger", "data-action": "delete", onclick: (e) => { e.stopPropagation(); if (lossy("Delete", q.queue)) act("Delete", () => api(`/ephemeral/queue/${enc(q.queue)}`, { method: "DELETE" })); } }, "Delete")
            ),
        },
      ],
      list.queues,
      (q) => { location.hash = `#/ephemeral/${enc(q.queue)}`; }
    ))
  );
}

/** One ephemeral queue: pending per partition and per consumer group. */
async function ephemeralQueuePage(view, name) {
  const d = await api(`/ephemeral/queues/${enc(name)}/depth`);
  view.append(
    h("h1", {}, `Ephemeral queue ${name}`),
    h(
      "div",
      { class: "cards" },
      card("Tier", d.tier),
      card("Messages held", fmt(d.depth), "ephemeral-depth"),
      card("Held", bytes(d.bytes)),
      card("Partitions pending", fmt(d.partitionsPending))
    ),
    h("h2", {}, "Consumer groups"),
    table(
      [
        { label: "Group", cell: (g) => g.group === null ? "(queue mode)" : g.group },
        { label: "Pending", num: true, cell: (g) => fmt(g.pending) },
        { label: "In flight", num: true, cell: (g) => fmt(g.inFlight) },
        { label: "Skipped (dropped before delivery)", num: true, cell: (g) => fmt(g.skipped) },
      ],
      d.groups
    ),
    h("h2", {}, "Partitions"),
    table(
      [
        { label: "Partition", cell: (p) => p.partition },
        { label: "Messages", num: true, cell: (p) => fmt(p.depth) },
        { label: "Held", num: true, cell: (p) => bytes(p.bytes) },
      ],
      d.partitions
    )
  );
}

// ---- routing ------------------------------------------------------------------------------

function route() {
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case undefined: return ["overview", (v) => overview(v)];
    case "queue": return ["overview", (v) => queuePage(v, parts[1])];
    case "messages": return ["messages", (v) => messagesPage(v)];
    case "message": return ["messages", (v) => messagePage(v, parts[1], parts[2])];
    case "dlq": return ["dlq", (v) => dlqPage(v)];
    case "groups": return ["groups", (v) => groupsPage(v)];
    case "server": return ["server", (v) => serverPage(v)];
    case "ephemeral": return ["ephemeral", (v) => (parts[1] === undefined ? ephemeralPage(v) : ephemeralQueuePage(v, parts[1]))];
    default: return ["overview", (v) => { v.append(h("h1", {}, "Not found")); }];
  }
}

/** Draws the current view into a fresh node and swaps it in, so a refresh never flickers. */
async function render() {
  const seq = ++state.renderSeq;
  const [name, draw] = route();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name);
  const next = h("main", { id: "view-next" });
  Object.assign(next.style, { position: "absolute", left: "0", right: "0", visibility: "hidden" });
  const drop = (el) => {
    for (const c of el.charts || []) c.destroy();
    el.remove();
  };
  document.body.append(next);
  const live = document.getElementById("live");
  if (state.needsToken) {
    banner("This server requires a token: set one with the Token button.");
    live.classList.add("stale");
    next.remove();
    return;
  }
  try {
    await draw(next);
    if (seq !== state.renderSeq) return drop(next);
    banner("");
    live.classList.remove("stale");
  } catch (e) {
    if (seq !== state.renderSeq) return drop(next);
    if (e.status === 401 || e.status === 403) {
      banner(`${e.message} — set a token with the Token button.`);
    } else {
      banner(`Could not load this view: ${e.message}`);
    }
    live.classList.add("stale");
    drop(next);
    return;
  }
  const old = document.getElementById("view");
  const scroll = window.scrollY;
  for (const c of old.charts || []) c.destroy();
  old.replaceWith(next);
  next.id = "view";
  Object.assign(next.style, { position: "", left: "", right: "", visibility: "" });
  window.scrollTo(0, scroll);
}

/** Which role the current token carries (the page hides actions it may not take). */
async function whoami() {
  try {
    const me = await api("/whoami");
    state.role = me.role || "read-only";
    state.authEnabled = me.authEnabled;
    state.needsToken = false;
    document.getElementById("who").textContent = me.authEnabled ? `${me.sub || "token"} · ${state.role}` : "auth off";
  } catch (e) {
    state.role = "read-only";
    state.needsToken = e.status === 401;
    document.getElementById("who").textContent = e.status === 401 ? (token() ? "token refused" : "no token") : "";
  }
}

function setupToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-button").addEventListener("click", () => {
    input.value = token();
    dialog.showModal();
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue === "save") sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    if (dialog.returnValue === "clear") sessionStorage.removeItem(TOKEN_KEY);
    await whoami();
    await render();
  });
}

async function main() {
  setupToken();
  await whoami();
  window.addEventListener("hashchange", render);
  await render();
  // Live: redraw the current view on a timer, except while the user is typing in a form.
  state.timer = setInterval(() => {
    const a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
    if (document.querySelector("dialog[open]")) return;
    render();
  }, REFRESH_MS);
}

main();
