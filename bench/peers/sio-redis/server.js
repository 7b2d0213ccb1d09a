// Node.js Socket.IO 4 peer for bench/redis.sh, the showdown (sio.peer.json) and the Node.js
// member of the cluster in tests/it/test_sio_cluster.py: the chat of crest's Socket.IO contract
// (the contract's "Socket.IO" section) in one process. With REDIS_URL, rooms span every process
// on that Redis through @socket.io/redis-adapter, as its documentation sets it up: an ioredis
// publisher and its duplicate() as subscriber, createAdapter() with its defaults (key prefix
// "socket.io", so crest instances on that Redis join the same rooms). Without REDIS_URL (unset or
// empty), Socket.IO's default in-memory adapter: one process serves its rooms alone, as a
// single-server deployment would.
//
//   PORT=8080 REDIS_URL=redis://127.0.0.1:6379 node server.js
//   PORT=8080 node server.js
//
// Handshake auth {name}; `join` (room, ack) -> ack {room, ok: true}; `leave` (room); `chat`
// ({room, text}) -> every member of the room on every process, the sender too, gets `chat`
// {room, name, text, ts}; `blob` (room, bytes) -> the same members get `blob` (name, bytes), the
// bytes as a binary attachment. Only a member of a room may send to it. Socket.IO's defaults
// otherwise (both transports, no permessage-deflate, ping every 25 s); nothing tuned. GET
// /healthz answers "ok" for the script's start check. PORT=0 takes a free port; the line
// "listening on PORT" names the one it got.
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const Redis = require("ioredis");

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST || "127.0.0.1";
const redisUrl = process.env.REDIS_URL || ""; // empty: the default in-memory adapter

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 3 });
    res.end("ok\n");
    return;
  }
  // Socket.IO answers its own path (/socket.io/) before this handler; anything else is unknown.
  if (!req.url.startsWith("/socket.io/")) {
    res.writeHead(404);
    res.end();
  }
});

async function main() {
  const clients = [];
  const opts = {};
  if (redisUrl) {
    const pubClient = new Redis(redisUrl);
    const subClient = pubClient.duplicate();
    clients.push(pubClient, subClient);
    for (const c of clients) c.on("error", (e) => console.error("redis: " + e.message));
    await Promise.all(clients.map((c) => c.ping()));
    opts.adapter = createAdapter(pubClient, subClient);
  }

  const io = new Server(httpServer, opts);
  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    const name = typeof auth.name === "string" && auth.name ? auth.name : "anonymous";
    socket.on("join", (room, ack) => {
      if (typeof room !== "string" || !room) return;
      socket.join(room);
      if (typeof ack === "function") ack({ room, ok: true });
    });
    socket.on("leave", (room) => {
      if (typeof room === "string") socket.leave(room);
    });
    socket.on("chat", (m) => {
      if (!m || typeof m.room !== "string" || typeof m.text !== "string") return;
      if (!socket.rooms.has(m.room)) return; // members only
      io.to(m.room).emit("chat", { room: m.room, name, text: m.text, ts: Date.now() });
    });
    socket.on("blob", (room, bytes) => {
      // socket.io-parser hands binary attachments over as Buffers.
      if (typeof room !== "string" || !Buffer.isBuffer(bytes)) return;
      if (!socket.rooms.has(room)) return; // members only
      io.to(room).emit("blob", name, bytes);
    });
  });
  httpServer.listen(port, host, () =>
    console.log("listening on " + httpServer.address().port));

  const stop = () => {
    io.close();
    for (const c of clients) c.disconnect();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
