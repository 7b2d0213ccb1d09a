// Node.js peer for bench/ws.sh: the same /ws/echo and /ws/chat as crest's demo, written as a
// competent `ws` user would: one process, rooms as Sets, each broadcast serialised once and
// sent to every member. permessage-deflate off (ws's default for servers), as in crest, unless
// WS_DEFLATE=1 (bench/abuse.sh's compression bomb, against crest --ws-deflate): then ws's
// `perMessageDeflate: true`, its defaults otherwise. GET /healthz answers "ok" for
// bench/abuse.sh's bystander. Also the showdown's `ws` peer (ws.peer.json): env HOST
// (127.0.0.1) and PORT (8080); one process, since its rooms live in that process's memory.
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || "127.0.0.1";
const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 3 });
    res.end("ok\n");
    return;
  }
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 1 << 20,
  perMessageDeflate: process.env.WS_DEFLATE === "1",
});
const rooms = new Map();

function broadcast(room, obj) {
  const data = JSON.stringify(obj);
  for (const ws of rooms.get(room) || []) if (ws.readyState === 1) ws.send(data);
}

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/ws/echo" && url.pathname !== "/ws/chat") return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (url.pathname === "/ws/echo") {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    const room = url.searchParams.get("room") || "lobby";
    const name = url.searchParams.get("name") || "anonymous";
    if (!rooms.has(room)) rooms.set(room, new Set());
    rooms.get(room).add(ws);
    broadcast(room, { type: "join", room, name });
    ws.on("message", (data) => {
      let m;
      try { m = JSON.parse(data); } catch (e) { return; }
      if (typeof m.text !== "string") return;
      broadcast(room, { type: "message", room, name, text: m.text, ts: Date.now() });
    });
    ws.on("close", () => {
      rooms.get(room).delete(ws);
      broadcast(room, { type: "leave", room, name });
    });
  });
});

server.listen(port, host, () => console.log("listening on " + port));
process.on("SIGTERM", () => process.exit(0));
