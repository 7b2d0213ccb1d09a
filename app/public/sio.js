"use strict";
// The chat of index.html over Socket.IO (CONTRACT.md "Socket.IO") with socket.io-client's browser
// bundle and its default options: long-polling first, then the upgrade to WebSocket, and its own
// reconnection. The bundle (vendor/socket.io.min.js) is copied from npm socket.io-client by
// `make run` and is not in the repository, so the page checks that it loaded and says so if not.
const $ = (id) => document.getElementById(id);
const MAX_FILE = 256 * 1024; // well under the server's 1 MB message limit, base64 over polling too
let socket = null, me = null, room = null;

function add(cls, parts) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  for (const part of parts) {
    if (part instanceof Node) { li.appendChild(part); continue; }
    const s = document.createElement("span");
    if (part[0]) s.className = part[0];
    s.textContent = part[1];       // never innerHTML: names and text come from other people
    li.appendChild(s);
  }
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 40;
  log.appendChild(li);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// `inRoom`: the room's join was acknowledged, so sending makes sense.
function setStatus(text, inRoom, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : inRoom ? "online" : "";
  $("text").disabled = $("send-btn").disabled = $("file").disabled = $("leave-btn").disabled = !inRoom;
}

// The transport in use ("polling" or "websocket"), shown and kept in data-transport.
function showTransport() {
  const e = socket && socket.io.engine;
  const t = e && e.transport && socket.connected ? e.transport.name : "";
  $("transport").textContent = t;
  $("transport").dataset.transport = t;
}

function joinRoom() {
  const r = room;
  setStatus("joining #" + r + "…", false);
  socket.timeout(5000).emit("join", r, (err, res) => {
    if (r !== room) return;        // left or switched meanwhile
    if (err || !res || res.ok !== true) {
      setStatus("could not join #" + r, false, true);
      return;
    }
    setStatus("in #" + r + " as " + me, true);
    $("text").focus();
  });
}

function connect() {
  // Same origin, path /socket.io/, every other option socket.io-client's default.
  const s = io({ auth: { name: me } });
  socket = s;
  setStatus("connecting…", false);
  // A new Engine.IO session (each reconnection makes one) starts on polling and may upgrade.
  s.io.on("open", () => { if (socket === s) s.io.engine.on("upgrade", showTransport); });
  s.on("connect", () => {
    if (socket !== s) return;
    showTransport();
    if (room) joinRoom();          // the first time, or again after a reconnection
    else setStatus("connected as " + me + ", in no room", false);
  });
  s.on("disconnect", (reason) => {
    if (socket !== s) return;
    showTransport();
    setStatus("disconnected (" + reason + "), reconnecting…", false);
  });
  s.on("connect_error", (err) => {
    if (socket !== s) return;
    // Refused by the server (s.active is false): socket.io-client does not try again.
    setStatus((s.active ? "cannot connect, retrying: " : "refused: ") + err.message, false, !s.active);
  });
  s.on("chat", (m) => {
    if (!m || typeof m !== "object") return;
    const t = new Date(m.ts).toLocaleTimeString();
    add(m.name === me ? "msg mine" : "msg", [["name", m.name], ["text", m.text], ["time", t]]);
  });
  s.on("blob", (name, bytes) => {
    // An ArrayBuffer in the browser, over either transport.
    const u8 = new Uint8Array(bytes instanceof ArrayBuffer ? bytes : new ArrayBuffer(0));
    const hex = Array.from(u8.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([u8]));
    a.download = "from-" + name + ".bin";
    a.className = "blob";
    a.dataset.size = String(u8.length);
    a.textContent = "save";
    add(name === me ? "msg blob mine" : "msg blob",
        [["name", name], ["text", "sent " + u8.length + " bytes"],
         ["bytes", hex + (u8.length > 16 ? " …" : "")], a]);
  });
}

function bundleMissing() {
  setStatus("Socket.IO client missing: vendor/socket.io.min.js did not load. `make run` copies it " +
            "from npm socket.io-client (tests/e2e/node_modules).", false, true);
  $("join-btn").disabled = true;
  add("notice", [[null, "This page needs socket.io-client's browser bundle at " +
                  "vendor/socket.io.min.js; the plain WebSocket chat (index.html) does not."]]);
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  if (typeof io !== "function") return bundleMissing();
  const name = $("name").value.trim();
  const next = $("room").value.trim() || "lobby";
  if (!name) return;
  // The server takes names and rooms of at most 64 bytes of UTF-8.
  const bytes = (s) => new TextEncoder().encode(s).length;
  if (bytes(name) > 64 || bytes(next) > 64) { add("notice", [[null, "name or room too long"]]); return; }
  if (socket && name === me && socket.connected) {
    // Same name: the same connection moves to the other room.
    if (room && room !== next) socket.emit("leave", room);
    if (room !== next) add("notice", [[null, "now in #" + next]]);
    room = next;
    joinRoom();
    return;
  }
  // A new name is a new handshake (the name travels in its auth).
  if (socket) { const old = socket; socket = null; old.disconnect(); }
  me = name;
  room = next;
  $("log").textContent = "";
  connect();
});

$("leave-btn").addEventListener("click", () => {
  if (!socket || !room) return;
  socket.emit("leave", room);
  add("notice", [[null, "you left #" + room]]);
  room = null;
  setStatus("connected as " + me + ", in no room", false);
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !socket || !room) return;
  socket.emit("chat", { room, text });
  $("text").value = "";
});

$("file").addEventListener("change", async () => {
  const f = $("file").files[0];
  $("file").value = "";
  if (!f || !socket || !room) return;
  if (f.size > MAX_FILE) { add("notice", [[null, f.name + " is over " + MAX_FILE / 1024 + " KiB"]]); return; }
  const r = room;
  const data = new Uint8Array(await f.arrayBuffer());
  socket.emit("blob", r, data);
});

if (typeof io !== "function") {
  bundleMissing();
} else {
  // ?name=..&room=.. in the page's own address joins at once (handy for links and tests).
  const q = new URLSearchParams(location.search);
  if (q.get("name")) {
    $("name").value = q.get("name");
    if (q.get("room")) $("room").value = q.get("room");
    $("join").requestSubmit();
  }
}
