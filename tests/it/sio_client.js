// npm socket.io-client 4.x, unchanged, against tests/it/sio_app.c (or its reference
// tests/it/sio_ref.js), for tests/it/test_sio.py.
// Usage: node sio_client.js URL SCENARIO [OPTIONS_JSON]; URL is http(s)://127.0.0.1:PORT (with
// https, NODE_EXTRA_CA_CERTS names the certificate to trust). Prints one JSON line of what it
// observed and exits 0, or prints why on stderr and exits 1 when an expectation broke. OPTIONS:
// {"transports": [...]} (default: socket.io-client's own, polling then the upgrade), and the
// scenario's own. socket.io-client comes from tests/e2e/node_modules (NODE_PATH).
"use strict";
const { io } = require("socket.io-client");

const [url, scenario, optText] = process.argv.slice(2);
const opts = optText ? JSON.parse(optText) : {};
const WAIT = 5000;

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}
function same(a, b, what) {
  const ja = JSON.stringify(a), jb = JSON.stringify(b);
  expect(ja === jb, `${what}: expected ${jb.slice(0, 300)}, got ${String(ja).slice(0, 300)}`);
}

// A socket (never multiplexed with another one, never reconnecting by itself); resolves when the
// namespace accepted it, rejects with the CONNECT_ERROR's message.
function connect(nsp, extra = {}) {
  const o = { forceNew: true, reconnection: false, ...extra };
  if (opts.transports && !extra.transports) o.transports = opts.transports;
  const s = io(url + nsp, o);
  s.first = s.io.engine.transport.name; // the transport the session opened with
  s.upgraded = null;
  s.io.engine.on("upgrade", (t) => { s.upgraded = t.name; });
  s.events = [];
  s.onAny((name, ...a) => s.events.push([name, ...a]));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no connect to ${nsp} in ${WAIT} ms`)), WAIT);
    s.once("connect", () => { clearTimeout(t); resolve(s); });
    s.once("connect_error", (e) => { clearTimeout(t); s.close(); reject(e); });
  });
}

// Emit with an ack; resolves with the ack's arguments (an array).
function call(s, name, ...args) {
  return new Promise((resolve, reject) => {
    s.timeout(WAIT).emit(name, ...args, (err, ...res) => (err ? reject(new Error(`no ack to ${name}: ${err.message}`)) : resolve(res)));
  });
}

// Resolves once pred() holds, checked on every event of socket s (and now).
function until(s, pred, what, ms = WAIT) {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const t = setTimeout(() => { s.offAny(check); reject(new Error(`timed out waiting for ${what}`)); }, ms);
    const check = () => { if (pred()) { clearTimeout(t); s.offAny(check); resolve(); } };
    s.onAny(check);
  });
}

function once(emitter, name, what, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms);
    emitter.once(name, (...a) => { clearTimeout(t); resolve(a); });
  });
}

const chats = (s, room) => s.events.filter((e) => e[0] === "chat" && (!room || e[1].room === room)).map((e) => e[1]);

const scenarios = {
  // Connect with auth, echo JSON of every type and Unicode text; report the transports.
  async basic() {
    const s = await connect("/", { auth: { name: "ann" } });
    if (!opts.transports) { // the default: polling first, then the upgrade to WebSocket
      if (!s.upgraded) await once(s.io.engine, "upgrade", "upgrade to WebSocket");
    }
    const mixed = [1, 2.5, -3, 0.1, 123456789012, 1e21, "str", "", true, false, null, [], {},
      [1, [2, [3]]], { a: { b: [1, "x", null] }, "key with \"quotes\"": "v" }];
    same(await call(s, "echo", ...mixed), mixed, "echo of mixed JSON");
    const text = "héllo wörld € 漢字 🎉 \u2028 \n\t\"\\ \u0001";
    same(await call(s, "echo", text), [text], "echo of Unicode text");
    same(await call(s, "echo"), [], "echo of no arguments");
    const out = { id: s.id, first: s.first, upgraded: s.upgraded, transport: s.io.engine.transport.name };
    s.close();
    return out;
  },

  // Bytes in, bytes out: alone, mixed with JSON, and in an event from the server with its ack.
  async binary() {
    const s = await connect("/", { auth: { name: "bo" } });
    const small = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const big = Buffer.alloc(50000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 255;
    const isBuf = (v, b, what) => {
      expect(Buffer.isBuffer(v), `${what}: not a Buffer but ${JSON.stringify(v).slice(0, 100)}`);
      expect(Buffer.compare(v, b) === 0, `${what}: bytes differ (${v.length} bytes, want ${b.length})`);
    };
    let r = await call(s, "bin", small);
    isBuf(r[0], small, "bin 256 bytes");
    r = await call(s, "bin", big);
    isBuf(r[0], big, "bin 50000 bytes");
    r = await call(s, "bin", Buffer.alloc(0));
    isBuf(r[0], Buffer.alloc(0), "bin 0 bytes");
    r = await call(s, "echo", "label", small, { k: 1, arr: [1, 2] }, big, 7);
    expect(r.length === 5, `mixed echo: ${r.length} arguments`);
    same([r[0], r[2], r[4]], ["label", { k: 1, arr: [1, 2] }, 7], "mixed echo's JSON");
    isBuf(r[1], small, "mixed echo's first bytes");
    isBuf(r[3], big, "mixed echo's second bytes");
    s.on("question", (x, ack) => ack(x, "and"));
    s.emit("ask", small);
    const [a, b] = await once(s, "answer", "answer");
    isBuf(a, small, "bytes through question and answer");
    same(b, "and", "answer's second argument");
    const out = { transport: s.io.engine.transport.name, acks: 5 };
    s.close();
    return out;
  },

  // Three clients: a and b in room r1, c not; everyone in "all" (the fences).
  async rooms() {
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((name) => connect("/", { auth: { name } })));
    for (const s of [a, b, c]) same(await call(s, "join", "all"), [{ room: "all", ok: true }], "join all");
    same(await call(a, "join", "r1"), [{ room: "r1", ok: true }], "a joins r1");
    same(await call(b, "join", "r1"), [{ room: "r1", ok: true }], "b joins r1");
    const N = 50;
    for (let i = 0; i < N; i++) a.emit("say", { room: "r1", text: "m" + i });
    const want = Array.from({ length: N }, (_, i) => ({ room: "r1", name: "a", text: "m" + i }));
    for (const [s, who] of [[a, "a"], [b, "b"]]) {
      await until(s, () => chats(s, "r1").length >= N, `${N} messages at ${who}`);
      same(chats(s, "r1"), want, `r1's messages at ${who} (sender included, in order)`);
    }
    // say-others then a fence from the same sender: the sender sees only the fence.
    b.emit("say-others", { room: "r1", text: "others" });
    b.emit("say", { room: "all", text: "fence1" });
    for (const s of [a, b, c]) await until(s, () => chats(s, "all").length >= 1, "fence1");
    same(chats(a, "r1").slice(N), [{ room: "r1", name: "b", text: "others" }], "say-others at a");
    same(chats(b, "r1").length, N, "r1's messages at b after its own say-others");
    // a leaves r1: b's next message to it reaches b alone.
    same(await call(a, "leave", "r1"), [{ room: "r1", ok: true }], "a leaves r1");
    b.emit("say", { room: "r1", text: "after leave" });
    b.emit("say", { room: "all", text: "fence2" });
    for (const s of [a, b, c]) await until(s, () => chats(s, "all").length >= 2, "fence2");
    same(chats(a, "r1").length, N + 1, "r1's messages at a after it left");
    same(chats(b, "r1").slice(N), [{ room: "r1", name: "b", text: "after leave" }], "r1's last at b");
    same(chats(c, "r1"), [], "r1's messages at c (never a member)");
    same(chats(c, "all").map((m) => m.text), ["fence1", "fence2"], "fences at c");
    const out = { a: chats(a).length, b: chats(b).length, c: chats(c).length };
    for (const s of [a, b, c]) s.close();
    return out;
  },

  // The server asks the client (an ack the other way) and says what it got.
  async ask() {
    const s = await connect("/", { auth: { name: "q" } });
    s.on("question", (x, ack) => ack({ got: x, from: "client" }));
    s.emit("ask", { q: 42, s: "ü" });
    const [answer] = await once(s, "answer", "answer");
    same(answer, { got: { q: 42, s: "ü" }, from: "client" }, "answer");
    s.close();
    return { answer };
  },

  // /admin with the right and a wrong token, and a namespace that does not exist.
  async namespaces() {
    const ok = await connect("/admin", { auth: { token: "secret" } });
    same(await call(ok, "whoami"), ["/admin"], "whoami");
    const refused = async (nsp, auth) => {
      try {
        const s = await connect(nsp, { auth });
        s.close();
      } catch (e) {
        return e.message;
      }
      throw new Error(`${nsp} accepted auth ${JSON.stringify(auth)}`);
    };
    const wrong = await refused("/admin", { token: "guess" });
    const none = await refused("/admin", {});
    const nope = await refused("/nope", { name: "x" });
    same(await call(ok, "whoami"), ["/admin"], "whoami after the refusals");
    ok.close();
    return { wrong, none, nope };
  },

  // "bye": the server disconnects the socket; the count of "/" goes down.
  async bye() {
    const a = await connect("/", { auth: { name: "a" } });
    const b = await connect("/", { auth: { name: "b" } });
    same(await call(a, "count"), [2], "count with two sockets");
    const gone = once(a, "disconnect", "disconnect after bye");
    a.emit("bye");
    const [reason] = await gone;
    let n;
    for (let i = 0; i < 100; i++) { // the server's disconnect handler runs after the packet left
      [n] = await call(b, "count");
      if (n === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    same(n, 1, "count after a left");
    b.close();
    return { reason, connected: a.connected };
  },

  // A message over max_payload (100000): the session is closed; the server stays up.
  async oversize() {
    const s = await connect("/", { auth: { name: "big" } });
    if (!opts.transports && !s.upgraded) await once(s.io.engine, "upgrade", "upgrade to WebSocket");
    const transport = s.io.engine.transport.name;
    const gone = once(s, "disconnect", "disconnect after 200 kB");
    let acked = false;
    s.emit("echo", "x".repeat(200000), () => { acked = true; });
    const [reason] = await gone;
    expect(!acked, "a 200 kB message was answered");
    const t = await connect("/", { auth: { name: "next" } });
    same(await call(t, "echo", "still here"), ["still here"], "echo on a new client");
    t.close();
    return { transport, reason };
  },

  // Many clients at once, each with round trips of its own.
  async many() {
    const clients = opts.clients || 20, rounds = opts.rounds || 20;
    const one = async (k) => {
      const s = await connect("/", { auth: { name: "c" + k } });
      for (let i = 0; i < rounds; i++) same(await call(s, "echo", k, i, "r" + i), [k, i, "r" + i], `echo ${k}/${i}`);
      const transport = s.io.engine.transport.name;
      s.close();
      return transport;
    };
    const transports = await Promise.all(Array.from({ length: clients }, (_, k) => one(k)));
    return { ok: transports.length, rounds, transports: [...new Set(transports)] };
  },
};

(async () => {
  const fn = scenarios[scenario];
  if (!fn) throw new Error("unknown scenario " + scenario);
  const timer = setTimeout(() => { console.error(`${scenario}: still running after 20 s`); process.exit(1); }, 20000);
  const out = await fn();
  clearTimeout(timer);
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => {
  console.error(`${scenario}: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
