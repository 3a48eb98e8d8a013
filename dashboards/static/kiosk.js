// Pitstop kiosk: the live centre board. Snapshot, then sequenced deltas; gaps ask for a resync;
// dropped connections come back with jittered exponential backoff.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || localStorage.getItem("pitstop.kioskToken");
if (params.get("token")) localStorage.setItem("pitstop.kioskToken", params.get("token"));

const state = { board: null, seq: -1, entries: new Map(), ranks: new Map() };
let socket = null;
let attempt = 0;
let lastMessageAt = 0;

const el = (id) => document.getElementById(id);
const ROLE_NAMES = { technician: "Technician", service_advisor: "Service advisor", support_agent: "Support agent",
  sales_executive: "Sales", dealer: "Dealer", manager: "Manager" };

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

function handle(msg) {
  switch (msg.type) {
    case "welcome": attempt = 0; setConnected(true); break;
    case "snapshot":
      state.board = msg.board; state.seq = msg.seq; state.entries.clear();
      for (const e of msg.entries) state.entries.set(e.staff_id, e);
      el("centre").textContent = msg.scope.name;
      el("season").textContent = seasonLabel(msg.season);
      render(new Set(), msg.as_of);
      break;
    case "delta": {
      if (msg.board !== state.board || msg.seq <= state.seq) return;            // old news
      if (msg.prev_seq > state.seq) { socket.send(JSON.stringify({ type: "resync" })); return; } // gap
      const changed = new Set();
      for (const e of msg.entries) {
        const before = state.entries.get(e.staff_id);
        if (before && e.points > before.points) ticker(`${e.name} +${e.points - before.points}`);
        else if (!before) ticker(`${e.name} +${e.points}`);
        else if (e.points < before.points) ticker(`${e.name} −${before.points - e.points}`);
        state.entries.set(e.staff_id, e); changed.add(e.staff_id);
      }
      state.seq = msg.seq;
      render(changed, msg.as_of);
      break;
    }
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
  const rows = ranked();
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

function ticker(text) {
  const t = el("ticker");
  t.textContent = [text, ...t.textContent.split("  ·  ").filter(Boolean)].slice(0, 8).join("  ·  ");
}

function seasonLabel(season) {
  const [y, m] = season.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, 1)).toLocaleString(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
}

function setConnected(on) { el("conn").className = on ? "dot on" : "dot off"; }

// A silent socket (no heartbeat for 40 s) is treated as dead.
setInterval(() => {
  if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessageAt > 40000) socket.close();
}, 5000);

connect();
