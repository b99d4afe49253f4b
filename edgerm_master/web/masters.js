// The dashboard's masters panel and standby banner (docs/operations.md, "On a standby").
//
// Before it opens the event stream the page asks /api/v1/masters, which every master answers
// (a standby too): the answer's `X-EdgeRM-Role` header says whether this master leads. On a
// standby the page shows a banner naming the leader, with a link to its dashboard, and the
// masters panel, and opens no stream (the API would answer 503); it asks again every few
// seconds, and a standby that wins the election starts the live view. The panel is refreshed
// every 10 s (masters change rarely: no stream for them).
"use strict";

const MASTERS_REFRESH_MS = 10000;
const STANDBY_RECHECK_MS = 3000;

const masters = { role: "", timer: null };

// Calls back onLeader() once this master leads; onAuth(message) on a refused token.
async function checkMasters(onLeader, onAuth) {
  clearTimeout(masters.timer);
  let response;
  try {
    response = await fetch("api/v1/masters", {
      headers: { Authorization: "Bearer " + token() }, cache: "no-store",
    });
  } catch (e) {
    masters.timer = setTimeout(() => checkMasters(onLeader, onAuth), STANDBY_RECHECK_MS);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    onAuth(body.message || "401 Unauthorized");
    return;
  }
  if (!response.ok) {  // e.g. etcd not answering: show the reason, go on with the live view
    renderMasters(null, body.message || ("the master answered " + response.status));
    if (masters.role !== "leader") { masters.role = "leader"; onLeader(); }
    masters.timer = setTimeout(() => checkMasters(onLeader, onAuth), MASTERS_REFRESH_MS);
    return;
  }
  const role = response.headers.get("X-EdgeRM-Role") || "leader";
  renderMasters(body, "");
  const was = masters.role;
  masters.role = role;
  if (role === "standby") {
    showStandby(body);
    masters.timer = setTimeout(() => checkMasters(onLeader, onAuth), STANDBY_RECHECK_MS);
    return;
  }
  $("standby").hidden = true;
  if (was !== "leader") onLeader();
  masters.timer = setTimeout(() => checkMasters(onLeader, onAuth), MASTERS_REFRESH_MS);
}

function leaderRow(doc) {
  return (doc.masters || []).find((m) => m.role === "leader") || null;
}

function showStandby(doc) {
  if (ui.controller) ui.controller.abort();
  $("main").hidden = true;
  setConn(false, "standby");
  const leader = leaderRow(doc);
  const banner = $("standby");
  const url = leader && leader.urls && leader.urls.http;
  if (!leader) {
    banner.replaceChildren("This master is a standby and no leader is known yet (an election ",
      "is under way); checking again…");
  } else if (url) {
    banner.replaceChildren("This master is a standby; the leader is ",
      el("a", { href: url.replace(/\/$/, "") + "/", id: "leader-link" }, `${leader.name} (${url})`),
      ". Open its dashboard to see the cluster.");
  } else {
    banner.replaceChildren(`This master is a standby; the leader is ${leader.name}, which `,
      "serves no dashboard (no http URL advertised).");
  }
  banner.hidden = false;
}

function renderMasters(doc, error) {
  const panel = $("masters-panel");
  panel.hidden = false;
  const body = $("masters").tBodies[0];
  if (!doc) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 4, class: "muted" }, error)));
    return;
  }
  body.replaceChildren(...(doc.masters || []).map((m) => {
    const http = m.urls && m.urls.http;
    return el("tr", { "data-master": m.name },
      el("td", {}, http ? el("a", { href: http.replace(/\/$/, "") + "/" }, m.name) : m.name),
      el("td", { class: "role-" + m.role }, m.role),
      el("td", {}, m.leader || "–"),
      el("td", {}, ...Object.entries(m.urls || {}).map(([k, v]) => el("span",
        { class: "chip" }, `${k} ${v}`))));
  }));
}
