// Node.js `ws` chat members for tests/it/test_redis.py. Usage: node redis_node_member.js URL N K
// opens N members at URL (ws://.../ws/chat?room=R&name=...; "#" in URL becomes the member's
// number), prints "ready" once all are in, then waits for K chat messages at each member (or 10 s)
// and prints one JSON line per member: the [name, text] pairs it got, in order.
"use strict";
const WebSocket = require("ws");
const [url, n, k] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];

function member(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace("#", String(i)), { perMessageDeflate: false });
    const got = [];
    let done;
    const finished = new Promise((res) => { done = res; });
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === "message") {
        got.push([m.name, m.text]);
        if (got.length >= k) done();
      }
    });
    ws.on("open", () => resolve({ ws, got, finished }));
    ws.on("error", reject);
  });
}

(async () => {
  const members = [];
  for (let i = 0; i < n; i++) members.push(await member(i));
  console.log("ready");
  await Promise.race([Promise.all(members.map((m) => m.finished)),
                      new Promise((res) => setTimeout(res, 10000))]);
  await new Promise((res) => setTimeout(res, 300)); // a duplicate would show up now
  for (const m of members) {
    console.log(JSON.stringify(m.got));
    m.ws.close();
  }
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
