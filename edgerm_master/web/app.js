// The EdgeRM dashboard: one page, no build step, no dependencies.
//
// It reads the master's JSON API (/api/v1, docs/operations.md) with the operator token as a
// bearer header. Live updates: one Server-Sent-Event stream (/api/v1/events, read with fetch so
// the token travels in a header, not in the URL); the master pushes a snapshot of the summary
// and of the page on screen whenever its state changed (at most two a second), so the page
// never polls. Tables are paged on the master (50 rows a page) and filtered there, so 10,000
// agents cost the browser one page. masters.js: the masters panel and, on a standby master, a
// banner linking to the leader instead of the live view.
"use strict";

const TOKEN_KEY = "edgerm.operatorToken";
const PAGE = 50;
const AGENT_STATES = ["active", "unreachable", "lost"];
const TASK_STATES = ["STAGING", "STARTING", "RUNNING", "KILLING", "FINISHED", "FAILED", "KILLED",
  "ERROR", "LOST", "UNREACHABLE", "DROPPED"];

const ui = {
  view: "agents", q: "", state: "", offset: 0, task: null, taskFramework: "",
  controller: null, retry: null, clockSkew: 0, snapshot: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

// ------------------------------------------------------------------------------ auth

function showAuth(message) {
  if (ui.controller) ui.controller.abort();
  clearTimeout(masters.timer);
  $("main").hidden = true;
  $("standby").hidden = true;
  $("masters-panel").hidden = true;
  $("forget").hidden = true;
  $("auth").hidden = false;
  $("auth-message").textContent = message || "";
  setConn(false, "not connected");
  $("token").focus();
}

function onAuthSubmit(ev) {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  $("auth-message").textContent = "";
  start();
}

function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  showAuth("Token forgotten. Enter an operator token to connect again.");
}

function refused(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showAuth("The master refused this operator token (" + message
    + "). Enter one of the master's operator_tokens.");
}

function start() {
  $("auth").hidden = true;
  $("forget").hidden = false;
  masters.role = "";
  // Only a leader has the cluster to show (masters.js): the live view starts once this
  // master is known to lead.
  checkMasters(() => {
    $("main").hidden = false;
    setupControls();
    connect();
  }, refused);
}

// ------------------------------------------------------------------------------ the stream

function setConn(live, text) {
  const c = $("conn");
  c.textContent = text;
  c.className = "conn " + (live ? "live" : "off");
}

function streamUrl() {
  const p = new URLSearchParams({ view: ui.view, limit: String(PAGE), offset: String(ui.offset) });
  if (ui.q) p.set("q", ui.q);
  if (ui.state) p.set("state", ui.state);
  if (ui.task) {
    p.set("task", ui.task);
    if (ui.taskFramework) p.set("task_framework", ui.taskFramework);
  }
  return "api/v1/events?" + p.toString();
}

async function connect() {
  if (ui.controller) ui.controller.abort();
  clearTimeout(ui.retry);
  const controller = new AbortController();
  ui.controller = controller;
  setConn(false, "connecting…");
  let response;
  try {
    response = await fetch(streamUrl(), {
      headers: { Authorization: "Bearer " + token(), Accept: "text/event-stream" },
      signal: controller.signal, cache: "no-store",
    });
  } catch (e) {
    if (!controller.signal.aborted) retryLater("cannot reach the master");
    return;
  }
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    refused(body.message || "401 Unauthorized");
    return;
  }
  if (response.status === 503) {  // became a standby meanwhile: the banner names the leader
    masters.role = "standby";
    start();
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    showError(body.message || ("the master answered " + response.status));
    setConn(false, "error");
    return;
  }
  showError("");
  setConn(true, "live");
  try {
    await readEvents(response.body, controller.signal);
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  if (!controller.signal.aborted) retryLater("the master closed the stream");
}

function retryLater(why) {
  setConn(false, why + "; retrying…");
  ui.retry = setTimeout(connect, 2000);
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (event === "snapshot" && data.length) render(JSON.parse(data.join("\n")));
    }
  }
}

function showError(text) {
  $("error").hidden = !text;
  $("error").textContent = text;
}

// ------------------------------------------------------------------------------ controls

let controlsReady = false;
function setupControls() {
  if (controlsReady) return;
  controlsReady = true;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => {
      ui.view = b.dataset.view;
      ui.offset = 0;
      ui.state = "";
      for (const o of document.querySelectorAll("#tabs button")) {
        o.classList.toggle("active", o === b);
      }
      fillStates();
      connect();
    });
  }
  let timer = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      ui.q = $("filter").value.trim();
      ui.offset = 0;
      connect();
    }, 250);
  });
  $("state-filter").addEventListener("change", () => {
    ui.state = $("state-filter").value;
    ui.offset = 0;
    connect();
  });
  $("prev").addEventListener("click", () => {
    ui.offset = Math.max(0, ui.offset - PAGE);
    connect();
  });
  $("next").addEventListener("click", () => {
    const page = ui.snapshot && ui.snapshot.page;
    if (page && page.next_offset !== null) {
      ui.offset = page.next_offset;
      connect();
    }
  });
  $("detail-close").addEventListener("click", () => {
    ui.task = null;
    $("detail").hidden = true;
    connect();
  });
  fillStates();
  setInterval(tickTimes, 1000);
}

function fillStates() {
  const select = $("state-filter");
  select.replaceChildren(el("option", { value: "" }, "any state"));
  const states = ui.view === "agents" ? AGENT_STATES : ui.view === "tasks" ? TASK_STATES : [];
  for (const s of states) select.append(el("option", { value: s }, s));
  select.hidden = states.length === 0;
}

// ------------------------------------------------------------------------------ rendering

function serverNow() { return Date.now() / 1000 + ui.clockSkew; }

function ago(t) {
  if (!t) return "–";
  const s = Math.max(0, serverNow() - t);
  if (s < 60) return s.toFixed(0) + " s ago";
  if (s < 3600) return (s / 60).toFixed(0) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}

function tickTimes() {
  for (const cell of document.querySelectorAll("[data-time]")) {
    cell.textContent = ago(Number(cell.dataset.time));
  }
}

function timeCell(t) { return el("td", { "data-time": String(t || 0) }, ago(t)); }

function num(v) { return Number(v || 0); }
function fmt(v) { return String(Math.round(num(v) * 100) / 100); }

function render(snap) {
  ui.snapshot = snap;
  ui.clockSkew = snap.now - Date.now() / 1000;
  renderSummary(snap.summary);
  if (snap.view !== ui.view) return;  // a snapshot of the view just left
  const page = snap.page;
  const items = page[snap.view] || [];
  const first = page.total ? page.offset + 1 : 0;
  $("range").textContent = `${first}–${page.offset + items.length} of ${page.total}`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = page.next_offset === null;
  const [head, row] = TABLES[snap.view];
  $("table").tHead.replaceChildren(el("tr", {}, ...head.map((h) => el("th", {}, h))));
  const body = $("table").tBodies[0];
  if (!items.length) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: head.length, class: "muted" },
      ui.q || ui.state ? "nothing matches the filter" : "none yet")));
  } else {
    body.replaceChildren(...items.map(row));
  }
  if (snap.task) renderTask(snap.task);
}

function renderSummary(s) {
  const states = Object.entries(s.agents).map(([k, v]) => `${v} ${k}`).join(", ");
  const running = (s.tasks.RUNNING || 0);
  $("summary").replaceChildren(
    el("span", {}, el("b", {}, s.agents_total), " agents", states ? ` (${states})` : ""),
    el("span", {}, el("b", {}, s.frameworks), " frameworks (", s.frameworks_connected,
      " connected)"),
    el("span", {}, el("b", {}, s.tasks_total), " tasks (", running, " running)"),
    el("span", {}, el("b", {}, s.offers), " offers"));
}

function attr(a) {
  if (a.text !== undefined) return `${a.name}=${a.text}`;
  if (a.scalar !== undefined) return `${a.name}=${a.scalar}`;
  if (a.set) return `${a.name}={${(a.set.items || []).join(",")}}`;
  return a.name;
}

function kindOf(agent) {
  const os = (agent.attributes || []).find((a) => a.name === "os");
  let kind = os && os.text ? os.text.split("-")[0] : "";
  if (kind) kind = kind.charAt(0).toUpperCase() + kind.slice(1);
  if (kind === "Micropython") kind = "MicroPython";
  const ex = (agent.executors || []).join(", ");
  return [kind || "agent", ex ? ` (${ex})` : ""].join("");
}

function chips(list) {
  const td = el("td");
  if (!list.length) td.append(el("span", { class: "muted" }, "–"));
  for (const c of list) td.append(el("span", { class: "chip" }, c));
  return td;
}

function devices(agent, kind) {
  const used = new Set(((agent.used || {}).devices || []).map((d) => d.name));
  return ((agent.total || {}).devices || []).filter((d) => (d.kind || "") === kind)
    .map((d) => d.name + (d.unit ? ` [${d.unit}]` : "") + (used.has(d.name) ? " (in use)" : ""));
}

const LABEL_SKIP = new Set(["os", "arch", "executors"]);

const TABLES = {
  agents: [
    ["ID", "Name", "Kind", "State", "Link", "Last seen", "CPUs used / free",
      "Memory MB used / free", "Sensors", "Actuators", "Labels"],
    (a) => {
      const total = a.total || {}, used = a.used || {};
      return el("tr", {},
        el("td", { class: "num" }, a.agent_id), el("td", {}, a.name || ""),
        el("td", {}, kindOf(a)),
        el("td", { class: "st-" + a.state }, a.state || "?"), el("td", {}, a.transport || "–"),
        timeCell(a.last_seen),
        el("td", { class: "num" }, `${fmt(used.cpus)} / ${fmt(num(total.cpus) - num(used.cpus))}`),
        el("td", { class: "num" },
          `${fmt(used.mem_mb)} / ${fmt(num(total.mem_mb) - num(used.mem_mb))}`),
        chips(devices(a, "SENSOR")), chips(devices(a, "ACTUATOR")),
        chips((a.attributes || []).filter((x) => !LABEL_SKIP.has(x.name)).map(attr)));
    }],
  frameworks: [
    ["ID", "Name", "Principal", "Role", "Connected", "Active tasks", "Weight", "Dominant share"],
    (f) => el("tr", {}, el("td", {}, f.framework_id), el("td", {}, f.name || ""),
      el("td", {}, f.principal || "–"), el("td", {}, f.role || "–"), el("td", {}, f.connected ? "yes" : "no"),
      el("td", { class: "num" }, num(f.tasks)), el("td", { class: "num" }, fmt(f.weight)),
      el("td", { class: "num" }, num(f.dominant_share).toFixed(3)))],
  tasks: [
    ["Task", "Framework", "Agent", "Name", "Executor", "State", "Reason", "Message"],
    (t) => {
      const tr = el("tr", { class: "clickable", title: "show history and outputs" },
        el("td", {}, t.task_id), el("td", {}, t.framework_id), el("td", { class: "num" },
          num(t.agent_id)), el("td", {}, t.name || ""), el("td", {}, t.executor || "–"),
        el("td", { class: "st-" + t.state, "data-task-state": t.state }, shortState(t.state)),
        el("td", {}, t.reason ? t.reason.replace(/^REASON_/, "") : "–"),
        el("td", {}, (t.message || "").slice(0, 80)));
      tr.dataset.taskId = t.task_id;
      tr.addEventListener("click", () => {
        ui.task = t.task_id;
        ui.taskFramework = t.framework_id;
        connect();
      });
      return tr;
    }],
  offers: [
    ["Offer", "Agent", "CPUs", "Memory MB", "Disk MB", "Devices", "Expires in"],
    (o) => {
      const r = o.resources || {};
      return el("tr", {}, el("td", {}, o.offer_id), el("td", {},
        `${num(o.agent_id)} ${o.agent_name || ""}`), el("td", { class: "num" }, fmt(r.cpus)),
        el("td", { class: "num" }, fmt(r.mem_mb)), el("td", { class: "num" }, fmt(r.disk_mb)),
        chips((r.devices || []).map((d) => d.name)),
        el("td", { class: "num" }, num(o.expires_in_s).toFixed(1) + " s"));
    }],
};

function shortState(s) { return s || "?"; }

function when(t) { return new Date(t * 1000).toLocaleTimeString(); }

function renderTask(d) {
  $("detail").hidden = false;
  if (d.error) {
    $("detail-title").textContent = `Task ${ui.task}`;
    $("detail-body").replaceChildren(el("p", { class: "muted" }, d.message));
    return;
  }
  const t = d.task;
  $("detail-title").replaceChildren(`Task ${t.task_id} `,
    el("span", { class: "st-" + t.state, id: "detail-state" }, shortState(t.state)));
  const history = el("table", {}, el("tr", {}, ...["Time", "State", "Reason", "Message"]
    .map((h) => el("th", {}, h))), ...d.history.map((h) => el("tr", {},
    el("td", {}, when(h.time)), el("td", { class: "st-" + h.state }, shortState(h.state)),
    el("td", {}, h.reason === "REASON_UNSPECIFIED" ? "–" : h.reason.replace(/^REASON_/, "")),
    el("td", {}, h.message || ""))));
  const outputs = d.outputs.length ? el("table", { id: "outputs" }, el("tr", {},
    ...["Time", "#", "Topic", "Data"].map((h) => el("th", {}, h))),
    ...d.outputs.map((o) => el("tr", {}, el("td", {}, when(o.time)),
      el("td", { class: "num" }, o.seq), el("td", {}, o.topic || "–"),
      el("td", {}, o.shown))))
    : el("p", { class: "muted" }, "no outputs");
  $("detail-body").replaceChildren(
    el("p", {}, `framework ${t.framework_id}, agent ${num(t.agent_id)}, `,
      `${t.executor || "?"}, ${d.outputs_total} outputs in all`),
    el("h3", {}, "State history"), history,
    el("h3", {}, "Last outputs"), outputs,
    el("h3", {}, "Log tail (the agent's last message)"),
    el("pre", { id: "log-tail" }, t.message || "(none)"));
}

// ------------------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("auth-form").addEventListener("submit", onAuthSubmit);
  $("forget").addEventListener("click", forget);
  if (token()) start(); else showAuth("");
});
