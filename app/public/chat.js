"use strict";
// One WebSocket to /ws/chat?room=R&name=N. Joins, leaves and messages of the room arrive as JSON;
// after a drop (a server restart, say) the page reconnects with a growing delay.
const $ = (id) => document.getElementById(id);
let ws = null, me = null, room = null, retry = 0, timer = null;

function add(cls, parts) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  for (const [c, text] of parts) {
    const s = document.createElement("span");
    if (c) s.className = c;
    s.textContent = text;          // never innerHTML: names and text come from other people
    li.appendChild(s);
  }
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
  log.appendChild(li);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function setStatus(text, online) {
  $("status").textContent = text;
  $("status").className = online ? "online" : "";
  $("text").disabled = $("send-btn").disabled = !online;
}

function connect() {
  clearTimeout(timer);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = proto + "//" + location.host + "/ws/chat?room=" + encodeURIComponent(room) +
              "&name=" + encodeURIComponent(me);
  const sock = new WebSocket(url);
  ws = sock;
  setStatus("connecting…", false);
  sock.onopen = () => { retry = 0; setStatus("in #" + room + " as " + me, true); $("text").focus(); };
  sock.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m.type === "message") {
      const t = new Date(m.ts).toLocaleTimeString();
      add(m.name === me ? "msg mine" : "msg", [["name", m.name], ["text", m.text], ["time", t]]);
    } else if (m.type === "join") {
      add("notice join", [[null, m.name + " joined #" + m.room]]);
    } else if (m.type === "leave") {
      add("notice leave", [[null, m.name + " left #" + m.room]]);
    } else if (m.type === "presence") {   // a large room: its member count, not each join
      setStatus("in #" + room + " as " + me + " (" + m.count + " members)", true);
    } else if (m.type === "error") {
      add("notice", [[null, "error: " + m.error]]);
    }
  };
  sock.onclose = () => {
    if (ws !== sock) return;       // replaced by a newer connection
    const delay = Math.min(500 * 2 ** retry++, 8000);
    setStatus("disconnected, retrying in " + Math.round(delay / 1000 * 10) / 10 + " s", false);
    timer = setTimeout(connect, delay);
  };
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  me = $("name").value.trim();
  room = $("room").value.trim() || "lobby";
  if (!me) return;
  // The server refuses names and rooms over 64 bytes of UTF-8 (or with control characters).
  const bytes = (s) => new TextEncoder().encode(s).length;
  if (bytes(me) > 64 || bytes(room) > 64) { add("notice", [[null, "name or room too long"]]); return; }
  if (ws) { const old = ws; ws = null; old.close(1000, "switching room"); }
  $("log").textContent = "";
  connect();
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ text }));
  $("text").value = "";
});

// ?name=..&room=.. in the page's own address joins at once (handy for links and tests).
const q = new URLSearchParams(location.search);
if (q.get("name")) {
  $("name").value = q.get("name");
  if (q.get("room")) $("room").value = q.get("room");
  $("join").requestSubmit();
}
