// Node.js `ws` client cases for tests/it/test_ws_node.py: prints one TAP line per case and
// exits non-zero on failure. Usage: node ws_node_client.js BASE, BASE being ws://127.0.0.1:PORT
// or wss://... (then NODE_EXTRA_CA_CERTS names the certificate to trust), crest started with
// --threads 2 --ws-max-message 64k. `ws` comes from tests/e2e/node_modules (NODE_PATH).
"use strict";
const WebSocket = require("ws");
const base = process.argv[2];
let failed = 0;

function tap(ok, name, detail) {
  console.log((ok ? "ok - " : "not ok - ") + name);
  if (!ok) { failed++; if (detail) console.log("# " + String(detail).replace(/\n/g, "\n# ")); }
}

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, { perMessageDeflate: false });
    const queue = [], waiters = [];
    ws.on("message", (data, isBinary) => {
      const m = { data, isBinary };
      if (waiters.length) waiters.shift()(m); else queue.push(m);
    });
    ws.next = (ms = 5000) => new Promise((res, rej) => {
      if (queue.length) return res(queue.shift());
      const t = setTimeout(() => rej(new Error("no message in " + ms + " ms")), ms);
      waiters.push((m) => { clearTimeout(t); res(m); });
    });
    ws.closed = new Promise((res) => ws.on("close", (code, reason) => res({ code, reason: reason.toString() })));
    ws.on("open", () => resolve(ws));
    ws.on("error", reject);
  });
}

async function caseRun(name, fn) {
  try { await fn(); tap(true, name); } catch (e) { tap(false, name, e && e.stack ? e.stack : e); }
}

function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b))
    throw new Error(what + ": expected " + JSON.stringify(b) + ", got " + JSON.stringify(a));
}

async function main() {
  await caseRun("node ws: echo text and binary", async () => {
    const ws = await open("/ws/echo");
    ws.send("héllo €");
    let m = await ws.next();
    eq([m.data.toString(), m.isBinary], ["héllo €", false], "text");
    const bin = Buffer.from([0, 1, 2, 255]);
    ws.send(bin);
    m = await ws.next();
    eq([Buffer.compare(m.data, bin), m.isBinary], [0, true], "binary");
    ws.close(1000);
    eq((await ws.closed).code, 1000, "close code");
  });
  await caseRun("node ws: fragmented message (fin: false) and ping/pong", async () => {
    const ws = await open("/ws/echo");
    ws.send("frag", { fin: false });
    ws.send("ment", { fin: false });
    ws.send("ed", { fin: true });
    eq((await ws.next()).data.toString(), "fragmented", "reassembled");
    const pong = new Promise((res) => ws.once("pong", (d) => res(d.toString())));
    ws.ping("p!");
    eq(await pong, "p!", "pong payload");
    ws.close(4001, "custom");
    eq((await ws.closed).code, 4001, "echoed code");
  });
  await caseRun("node ws: invalid UTF-8 -> 1007", async () => {
    const ws = await open("/ws/echo");
    ws.send(Buffer.from([0x61, 0xff]), { binary: false });
    eq((await ws.closed).code, 1007, "close code");
  });
  await caseRun("node ws: message over the limit -> 1009", async () => {
    const ws = await open("/ws/echo");
    ws.send(Buffer.alloc(64 * 1024 + 1, 0x61));
    eq((await ws.closed).code, 1009, "close code");
  });
  await caseRun("node ws: chat fan-out across 2 threads, per-sender order", async () => {
    const n = 8, per = 50;
    const socks = [];
    for (let i = 0; i < n; i++) socks.push(await open("/ws/chat?room=node&name=n" + i));
    // Wait until everyone has seen the last join.
    for (const ws of socks) {
      for (;;) {
        const m = JSON.parse((await ws.next()).data);
        if (m.type === "join" && m.name === "n" + (n - 1)) break;
      }
    }
    socks.forEach((ws, i) => { for (let k = 0; k < per; k++) ws.send(JSON.stringify({ text: "n" + i + " " + k })); });
    for (const ws of socks) {
      const seen = {};
      let got = 0;
      while (got < n * per) {
        const m = JSON.parse((await ws.next()).data);
        if (m.type !== "message") continue;
        const [who, k] = m.text.split(" ");
        eq(Number(k), seen[who] || 0, "order of " + who);
        seen[who] = Number(k) + 1;
        got++;
      }
    }
    for (const ws of socks) ws.close();
    await Promise.all(socks.map((ws) => ws.closed));
  });
  process.exit(failed ? 1 : 0);
}

main();
