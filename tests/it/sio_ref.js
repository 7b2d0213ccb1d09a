// The reference for tests/it/test_sio.py: tests/it/sio_app.c's app on Node.js socket.io 4, so
// that every case is checked against the real server first (SIO_REF=1) and then against crest.
// Flags as the C app takes them: --host H --port P (0: any), --fast-ping, --tls-cert F --tls-key
// F; --threads N and --quiet are accepted and ignored. Prints crest's listening line, exits 0 on
// SIGTERM. socket.io comes from tests/e2e/node_modules (NODE_PATH).
"use strict";
const fs = require("fs");
const { Server } = require("socket.io");

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const fast = args.includes("--fast-ping");
const cert = opt("--tls-cert", null);
const httpServer = cert
  ? require("https").createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(opt("--tls-key")) })
  : require("http").createServer();

httpServer.on("request", (req, res) => {
  if (req.url === "/sio-stats") { // what crest's /sio-stats says that Node can tell too
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ sessions: io.engine.clientsCount, sockets: io.of("/").sockets.size }));
  }
});

const io = new Server(httpServer, {
  path: "/socket.io/",
  pingInterval: fast ? 300 : 25000,
  pingTimeout: fast ? 200 : 20000,
  maxHttpBufferSize: 100000,
});

let connected = 0;
io.use((socket, next) => {
  socket.data.name = typeof socket.handshake.auth.name === "string" ? socket.handshake.auth.name : "";
  next();
});
io.on("connection", (socket) => {
  connected++;
  socket.on("disconnect", () => { connected--; });
  const echo = (...a) => { const ack = a.pop(); if (typeof ack === "function") ack(...a); };
  socket.on("echo", echo);
  socket.on("bin", echo);
  socket.on("join", (room, ack) => {
    if (typeof room !== "string" || !room) return;
    socket.join(room);
    if (typeof ack === "function") ack({ room, ok: true });
  });
  socket.on("leave", (room, ack) => {
    if (typeof room !== "string" || !room) return;
    const was = socket.rooms.has(room);
    socket.leave(room);
    if (typeof ack === "function") ack({ room, ok: was });
  });
  const say = (others) => (msg) => {
    if (!msg || typeof msg.room !== "string" || !msg.room) return;
    const out = { room: msg.room, name: socket.data.name, text: typeof msg.text === "string" ? msg.text : "" };
    (others ? socket.to(msg.room) : io.to(msg.room)).emit("chat", out);
  };
  socket.on("say", say(false));
  socket.on("say-others", say(true));
  socket.on("ask", (...a) => {
    if (typeof a[a.length - 1] === "function") a.pop();
    socket.timeout(5000).emit("question", ...a, (err, ...answer) => {
      if (!err) socket.emit("answer", ...answer);
    });
  });
  socket.on("bye", () => socket.disconnect());
  socket.on("count", (ack) => { if (typeof ack === "function") ack(connected); });
});

const admin = io.of("/admin");
admin.use((socket, next) => {
  next(socket.handshake.auth.token === "secret" ? undefined : new Error("not authorized"));
});
admin.on("connection", (socket) => {
  socket.on("whoami", (ack) => { if (typeof ack === "function") ack("/admin"); });
});

httpServer.listen(Number(opt("--port", process.env.PORT || "0")), opt("--host", "127.0.0.1"), () => {
  const scheme = cert ? "https" : "http";
  console.log(`crest listening on ${scheme}://127.0.0.1:${httpServer.address().port} (1 thread)`);
});

process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});
