// Socket.IO clients (npm socket.io-client 4.x, unchanged) on several servers of one cluster, for
// tests/it/test_sio_cluster.py, which decides what they do: one JSON command per line on stdin,
// one JSON answer per line on stdout, in order, each command finished before the next is read.
// Every answer has "ok" (false with "error" when the command failed); nothing else is printed
// on stdout. Commands ("id" names a client):
//   {op: "connect", id, url, name, transports?}  -> {first}: the transport it opened with
//   {op: "upgraded", id, ms?}                    -> {transport} once it runs on WebSocket
//   {op: "join", id, room}                       -> {ack}: the ack's (first) argument
//   {op: "leave", id, room}                      -> {} (the contract's leave has no ack)
//   {op: "chat", id, room, texts: [...]}         -> {} once every `chat` is handed to the client
//   {op: "blob", id, room, hex}                  -> {} (the bytes as hex)
//   {op: "wait", id, event, room?, prefix?, count, ms?} -> {events} once the client holds
//       `count` events of that name (chat: in that room, its text starting with prefix)
//   {op: "events", id}                           -> {events}: all it received so far
//   {op: "close", id}                            -> {}
//   {op: "publish", url, channel, uid, packet, opts} -> {receivers}: one message written as
//       @socket.io/redis-adapter writes it (its own encoder, notepack.io), PUBLISHed to Redis
// Events are kept as ["chat", {room, name, text, ts}] and ["blob", name, hex, isBuffer]; any
// other event as ["other", name]. socket.io-client and ioredis come from tests/e2e/node_modules
// (NODE_PATH).
"use strict";
const readline = require("readline");
const { io } = require("socket.io-client");

const WAIT = 5000;
const clients = new Map();

function client(id) {
  const s = clients.get(id);
  if (!s) throw new Error(`no client ${id}`);
  return s;
}

// Resolves once pred() holds, checked on every event of s (and now); rejects at the deadline.
function until(s, pred, what, ms) {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const check = () => {
      if (pred()) {
        clearTimeout(t);
        s.offAny(check);
        resolve();
      }
    };
    const t = setTimeout(() => {
      s.offAny(check);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    s.onAny(check);
  });
}

function matching(s, event, room, prefix) {
  const chatOk = (m) =>
    (room === undefined || m.room === room) && (prefix === undefined || m.text.startsWith(prefix));
  return s.events.filter((e) => e[0] === event && (event !== "chat" || chatOk(e[1])));
}

const ops = {
  connect(c) {
    const o = { forceNew: true, reconnection: false, auth: { name: c.name } };
    if (c.transports) o.transports = c.transports;
    const s = io(c.url, o);
    s.first = s.io.engine.transport.name;
    s.events = [];
    s.onAny((name, ...a) => {
      if (name === "chat") s.events.push(["chat", a[0]]);
      else if (name === "blob") {
        const bytes = Buffer.from(a[1] || []);
        s.events.push(["blob", a[0], bytes.toString("hex"), Buffer.isBuffer(a[1])]);
      }
      else s.events.push(["other", name]);
    });
    clients.set(c.id, s);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${c.id}: no connect to ${c.url}`)), WAIT);
      s.once("connect", () => {
        clearTimeout(t);
        resolve({ first: s.first });
      });
      s.once("connect_error", (e) => {
        clearTimeout(t);
        reject(new Error(`${c.id}: connect_error ${e.message}`));
      });
    });
  },

  upgraded(c) {
    const s = client(c.id);
    const engine = s.io.engine;
    if (engine.transport.name === "websocket") return { transport: "websocket" };
    return new Promise((resolve, reject) => {
      const ms = c.ms || WAIT;
      const t = setTimeout(() => reject(new Error(`${c.id}: no upgrade in ${ms} ms`)), ms);
      engine.once("upgrade", (tr) => {
        clearTimeout(t);
        resolve({ transport: tr.name });
      });
    });
  },

  async join(c) {
    const ack = await client(c.id).timeout(WAIT).emitWithAck("join", c.room);
    return { ack };
  },

  leave(c) {
    client(c.id).emit("leave", c.room);
    return {};
  },

  chat(c) {
    const s = client(c.id);
    for (const text of c.texts) s.emit("chat", { room: c.room, text });
    return {};
  },

  blob(c) {
    client(c.id).emit("blob", c.room, Buffer.from(c.hex, "hex"));
    return {};
  },

  async wait(c) {
    const s = client(c.id);
    const what = `${c.count} ${c.event} events` + (c.room ? ` in ${c.room}` : "") +
      (c.prefix ? ` starting "${c.prefix}"` : "") + ` at ${c.id}`;
    const got = () => matching(s, c.event, c.room, c.prefix);
    try {
      await until(s, () => got().length >= c.count, what, c.ms || WAIT);
    } catch (e) {
      e.message += ` (it has ${JSON.stringify(s.events).slice(0, 1500)})`;
      throw e;
    }
    return { events: got() };
  },

  events(c) {
    return { events: client(c.id).events };
  },

  close(c) {
    client(c.id).close();
    clients.delete(c.id);
    return {};
  },

  async publish(c) {
    const Redis = require("ioredis");
    const notepack = require("notepack.io"); // the adapter's encoder, installed with it
    const r = new Redis(c.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await r.connect();
      const receivers = await r.publish(c.channel, notepack.encode([c.uid, c.packet, c.opts]));
      return { receivers };
    } finally {
      r.disconnect();
    }
  },
};

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let answer;
    try {
      const c = JSON.parse(line);
      const op = ops[c.op];
      if (!op) throw new Error(`unknown op ${c.op}`);
      answer = { ok: true, ...(await op(c)) };
    } catch (e) {
      answer = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
  for (const s of clients.values()) s.close();
  process.exit(0);
}

main();
