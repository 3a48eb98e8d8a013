// Pitstop kiosk: a live league board. Snapshot, then sequenced deltas; gaps ask for a resync; dropped
// connections come back with jittered exponential backoff and a fresh snapshot.
//
// URL: /kiosk?token=T[&view=centre|region|state|nation][&role=technician][&rotate=centre,region,nation&every=30]
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || localStorage.getItem("pitstop.kioskToken");
if (params.get("token")) localStorage.setItem("pitstop.kioskToken", params.get("token"));
const ROLE = params.get("role") || "all";
const ROTATE = (params.get("rotate") || params.get("view") || "centre").split(",").filter(Boolean);
const EVERY_S = Math.max(10, Number(params.get("every")) || 30);
const MOVERS_WINDOW_MS = 3600 * 1000;

const state = { board: null, seq: -1, entries: new Map(), ranks: new Map(), views: null, viewIndex: 0 };
const gains = [];  // [time, staff_id, name, points gained] from deltas, for the top movers
let socket = null;
let attempt = 0;
let lastMessageAt = 0;

const el = (id) => document.getElementById(id);
const ROLE_NAMES = { technician: "Technician", service_advisor: "Service advisor", support_agent: "Support agent",
  sales_executive: "Sales", dealer: "Dealer", manager: "Manager" };
const VIEW_NAMES = { centre: "", region: "region", state: "state", nation: "" };

function connect() {
  if (!token) { el("centre").textContent = "No kiosk token: open this page with ?token=…"; return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => { socket.send(JSON.stringify({ type: "auth", token })); };
  socket.onmessage = (ev) => { lastMessageAt = Date.now(); handle(JSON.parse(ev.data)); };
  socket.onclose = (ev) => {
    setConnected(false);
    if (ev.code === 4401 || ev.code === 4403) { el("centre").textContent = `Access refused: ${ev.reason}`; return; }
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random());
    attempt += 1;
    setTimeout(connect, delay);
  };
}

function showView() {  // the gateway starts every kiosk on its centre's board; ask for another view if wanted
  const view = ROTATE[state.viewIndex % ROTATE.length];
  if (!state.views || !state.views[view]) return;
  if (view === "centre" && ROLE === "all" && state.board && state.board.includes(":centre:")) return;
  socket.send(JSON.stringify({ type: "subscribe", resource: `${state.views[view]}:${ROLE}` }));
}

function handle(msg) {
  switch (msg.type) {
    case "welcome":
      attempt = 0; setConnected(true);
      if (msg.title) { el("title").textContent = msg.title; document.title = msg.title; }
      state.views = msg.views || null;
      break;
    case "snapshot":
      state.board = msg.board; state.seq = msg.seq; state.entries.clear(); state.ranks.clear();
      for (const e of msg.entries) state.entries.set(e.staff_id, e);
      el("centre").textContent = msg.scope.name;
      el("view").textContent = [VIEW_NAMES[msg.scope.kind], msg.role !== "all" ? ROLE_NAMES[msg.role] : ""]
        .filter(Boolean).join(" · ");
      el("season").textContent = seasonLabel(msg.season);
      render(new Set(), msg.as_of);
      if (ROTATE.length > 1 || ROTATE[0] !== "centre" || ROLE !== "all") {
        if (!state.shown) { state.shown = true; showView(); }
      }
      break;
    case "delta": {
      if (msg.board !== state.board || msg.seq <= state.seq) return;            // old news
      if (msg.prev_seq > state.seq) { socket.send(JSON.stringify({ type: "resync" })); return; } // gap
      const changed = new Set();
      for (const e of msg.entries) {
        const before = state.entries.get(e.staff_id);
        const gained = e.points - (before ? before.points : 0);
        if (gained > 0) gains.push([Date.now(), e.staff_id, e.name, gained]);
        state.entries.set(e.staff_id, e); changed.add(e.staff_id);
      }
      state.seq = msg.seq;
      render(changed, msg.as_of);
      renderMovers();
      break;
    }
    case "ticker": for (const item of msg.items) ticker(item); break;
    case "heartbeat": break;
    default: break;
  }
}

function ranked() {
  return [...state.entries.values()].sort((a, b) => b.points - a.points || a.staff_id.localeCompare(b.staff_id));
}

function render(changed, asOf) {
  const tbody = el("rows");
  const before = new Map([...tbody.children].map((tr) => [tr.dataset.staff, tr.getBoundingClientRect().top]));
  const rows = ranked().slice(0, 15);
  let rank = 0, prevPoints = null;
  const frag = document.createDocumentFragment();
  rows.forEach((e, i) => {
    if (e.points !== prevPoints) { rank = i + 1; prevPoints = e.points; }
    const tr = document.createElement("tr");
    tr.dataset.staff = e.staff_id;
    tr.dataset.rank = String(rank);
    const old = state.ranks.get(e.staff_id);
    if (changed.has(e.staff_id)) tr.classList.add("bump");
    if (old !== undefined && rank < old) tr.classList.add("moved-up");
    tr.innerHTML = `<td class="rank"></td><td class="name"></td><td class="role"></td><td class="pts"></td>`;
    tr.children[0].textContent = rank;
    tr.children[1].textContent = e.name;
    tr.children[2].textContent = ROLE_NAMES[e.role] || e.role || "";
    tr.children[3].textContent = e.points.toLocaleString();
    frag.appendChild(tr);
    state.ranks.set(e.staff_id, rank);
  });
  tbody.replaceChildren(frag);
  // FLIP: slide rows from their old position to the new one.
  for (const tr of tbody.children) {
    const top = before.get(tr.dataset.staff);
    if (top === undefined) continue;
    const dy = top - tr.getBoundingClientRect().top;
    if (dy) { tr.style.transition = "none"; tr.style.transform = `translateY(${dy}px)`;
      requestAnimationFrame(() => { tr.style.transition = ""; tr.style.transform = ""; }); }
  }
  el("empty").hidden = rows.length > 0;
  if (asOf) el("asof").textContent = `as of ${new Date(asOf).toLocaleTimeString()}`;
}

function renderMovers() {  // the most points gained in the last hour, as this screen saw them
  const since = Date.now() - MOVERS_WINDOW_MS;
  while (gains.length && gains[0][0] < since) gains.shift();
  const totals = new Map();
  for (const [, staff, name, points] of gains) {
    const t = totals.get(staff) || { name, points: 0 };
    t.points += points; totals.set(staff, t);
  }
  const top = [...totals.values()].sort((a, b) => b.points - a.points).slice(0, 5);
  el("movers").replaceChildren(...top.map((m) => {
    const li = document.createElement("li");
    const gain = document.createElement("span"); gain.className = "gain"; gain.textContent = `+${m.points}`;
    li.append(document.createTextNode(m.name), gain);
    return li;
  }));
  el("no-movers").hidden = top.length > 0;
}

function ticker(item) {  // the newest awards on this board, with their why
  const span = document.createElement("span");
  const who = document.createElement("b"); who.textContent = `${item.name} +${item.points}`;
  span.append(who, document.createTextNode(` ${item.why}${item.badge ? ` · badge: ${item.badge}` : ""}`));
  const t = el("ticker");
  t.prepend(span);
  while (t.children.length > 6) t.lastChild.remove();
}

function seasonLabel(season) {
  const [y, m] = season.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleString(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
}

function setConnected(on) { el("conn").className = on ? "dot on" : "dot off"; if (!on) state.shown = false; }

// A silent socket (no heartbeat for 40 s) is treated as dead.
setInterval(() => {
  if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessageAt > 40000) socket.close();
}, 5000);
// Rotating kiosks move to the next view every EVERY_S seconds.
if (ROTATE.length > 1) setInterval(() => {
  if (socket && socket.readyState === WebSocket.OPEN) { state.viewIndex += 1; showView(); }
}, EVERY_S * 1000);
setInterval(renderMovers, 60000);

connect();
