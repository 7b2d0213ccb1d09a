// Browser test of the Socket.IO chat page (app/public/sio.html): socket.io-client's own browser
// bundle, default options, in two headless Chromium pages against a real crest server, once with
// one loop thread and once with two (polling requests and the upgrade then land on either loop
// and are moved to their session's). Prints TAP lines; exits non-zero on failure.
//   CREST_BIN=build/crest node tests/e2e/sio.test.js
// Needs Debian's chromium (/usr/bin/chromium) and npm playwright-core and socket.io-client in
// tests/e2e/node_modules (tests/run.sh installs them); never downloads a browser. The bundle is
// put in app/public/vendor by scripts/sio-bundle.sh first, as `make run` does.
"use strict";
const { execFileSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const { root, chrome, tap, finish, startServer } = require("./lib");
const pub = path.join(root, "app", "public");
const WAIT = { timeout: 10000 };

// The texts of the chat messages a page shows, in order.
const texts = (page) => page.$$eval("li.msg:not(.blob) .text", (els) => els.map((e) => e.textContent));

async function joinAs(page, name, room) {
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join-btn");
  await page.waitForSelector("#status.online", WAIT);
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

// One server with `threads` loop threads, two people chatting.
async function chatRun(browser, threads) {
  const tag = "[--threads " + threads + "] ";
  let srv = startServer(["--public", pub], { threads });
  const contexts = [];
  const errors = [];
  // The loops that opened sessions (from the handshake's X-Request-Id, "<prefix><loop>-<n>"); the
  // sessions that polled, and those that upgraded to WebSocket.
  const loops = new Set();
  const polled = new Set(), upgraded = new Set();
  const newPage = async () => {
    const ctx = await browser.newContext();
    contexts.push(ctx);
    const page = await ctx.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("websocket", (ws) => {
      const u = new URL(ws.url());
      if (u.pathname === "/socket.io/" && u.searchParams.get("transport") === "websocket")
        upgraded.add(u.searchParams.get("sid"));
    });
    page.on("response", async (r) => {
      const u = new URL(r.url());
      if (u.pathname !== "/socket.io/" || u.searchParams.get("transport") !== "polling") return;
      let sid = u.searchParams.get("sid");
      if (sid === null && r.request().method() === "GET") {
        const m = /"sid":"([^"]+)"/.exec(await r.text().catch(() => ""));
        const l = /(\d+)-[0-9a-f]+$/.exec(r.headers()["x-request-id"] || "");
        sid = m && m[1];
        if (sid && l) loops.add(l[1]);
      }
      if (sid) polled.add(sid);
    });
    return page;
  };
  try {
    const port = await srv.port;
    const base = "http://127.0.0.1:" + port + "/";
    const a = await newPage(), b = await newPage();

    const seen = [];
    a.on("response", (r) => seen.push([new URL(r.url()).pathname, r.status()]));
    const res = await a.goto(base + "sio.html");
    tap(res.status() === 200 && (await a.title()) === "crest chat (Socket.IO)" &&
        seen.some(([p, s]) => p === "/vendor/socket.io.min.js" && s === 200) &&
        (await a.evaluate(() => typeof io === "function" && typeof io.Manager === "function")),
        tag + "sio.html loads socket.io-client's bundle from the public folder", JSON.stringify(seen));
    await b.goto(base + "sio.html");

    // Join through the form as a person would; alice says something at once, which may go over
    // polling or while the upgrade is under way.
    await joinAs(b, "bob", "e2e");
    await joinAs(a, "alice", "e2e");
    await say(a, "m0");
    tap(true, tag + "both pages join #e2e (the join is acknowledged)");

    for (const p of [a, b])
      await p.waitForSelector('#transport[data-transport="websocket"]', WAIT);
    const sids = await Promise.all([a, b].map((p) => p.evaluate(() => socket.io.engine.id)));
    tap(sids.every((s) => polled.has(s) && upgraded.has(s)),
        tag + "each page polled first, then upgraded its session to WebSocket",
        JSON.stringify({ sids, polled: [...polled], upgraded: [...upgraded] }));

    // Several messages in a row: both pages show all of them, in the order typed.
    const want = ["m0", "m1", "m2", "m3", "m4", "m5"];
    for (const t of want.slice(1)) await say(a, t);
    for (const p of [a, b]) await p.waitForSelector("li.msg >> text=m5", WAIT);
    const [ta, tb] = await Promise.all([a, b].map(texts));
    tap(JSON.stringify(ta.filter((t) => want.includes(t))) === JSON.stringify(want) &&
        JSON.stringify(tb.filter((t) => want.includes(t))) === JSON.stringify(want),
        tag + "alice's messages reach both pages in the order typed", JSON.stringify({ ta, tb }));
    tap((await a.$$("li.mine >> text=m3")).length === 1 && (await b.$$("li.mine")).length === 0,
        tag + "only alice's own page marks her messages as hers");

    await say(b, "<b id=injected>hi alice</b>");
    await a.waitForSelector("li.msg >> text=<b id=injected>hi alice</b>", WAIT);
    tap((await a.$("#injected")) === null, tag + "bob's message reaches alice, shown as text");

    // A few bytes from a file picked in alice's page reach bob's byte for byte.
    const bytes = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x0a, 0x0d, 0x22, 0x5c, 0];
    await a.setInputFiles("#file", { name: "bytes.bin", mimeType: "application/octet-stream",
                                     buffer: Buffer.from(bytes) });
    const link = await b.waitForSelector("li.blob a.blob", WAIT);
    const got = await link.evaluate(async (el) =>
      Array.from(new Uint8Array(await (await fetch(el.href)).arrayBuffer())));
    tap(JSON.stringify(got) === JSON.stringify(bytes) &&
        (await b.textContent("li.blob .name")) === "alice",
        tag + "a binary blob from alice's page reaches bob's byte-exact", JSON.stringify(got));

    // Bob leaves, then joins another room on the same connection (its acknowledgement comes after
    // the leave, which has none). Alice's message to #e2e must not reach him; her next one, in the
    // other room, does, and one sender's messages arrive in order, so the first is not late.
    await b.click("#leave-btn");
    await b.waitForSelector("#status:not(.online)", WAIT);
    await joinAs(b, "bob", "e2e-other");
    await say(a, "after bob left");
    await a.waitForSelector("li.msg >> text=after bob left", WAIT);
    await joinAs(a, "alice", "e2e-other");
    await say(a, "in the other room");
    await b.waitForSelector("li.msg >> text=in the other room", WAIT);
    const tb2 = await texts(b);
    tap(!tb2.includes("after bob left") && tb2.includes("m5"),
        tag + "after bob leaves #e2e its messages no longer reach him", JSON.stringify(tb2));
    tap((await a.getAttribute("#transport", "data-transport")) === "websocket" &&
        (await b.getAttribute("#transport", "data-transport")) === "websocket",
        tag + "both pages still on WebSocket at the end");

    if (threads === 1) {
      // A server restart: socket.io-client reconnects by itself and the page joins its room again.
      const code = await srv.stop();
      tap(code === 0, tag + "server exits 0 on SIGTERM with Socket.IO sessions open", "exit code " + code);
      for (const p of [a, b]) await p.waitForSelector("#status:not(.online)", WAIT);
      srv = startServer(["--public", pub], { port, threads });
      await srv.port;
      for (const p of [a, b]) await p.waitForSelector("#status.online", { timeout: 20000 });
      await say(a, "back after the restart");
      await b.waitForSelector("li.msg >> text=back after the restart", WAIT);
      tap(true, tag + "after a server restart both pages reconnect, rejoin and chat");
    } else {
      // Each new context opens new connections, each accepted by either loop; a few more pages
      // (at most ten) in alice's and bob's room until sessions were opened on both loops, so that
      // some message in that room crossed from one loop to the other. (A polling request or upgrade
      // reaching the other loop is moved to its session's before the chain runs, so its
      // X-Request-Id names the session's loop: those moves are not visible from here.)
      const both = () => loops.has("0") && loops.has("1");
      for (let i = 0; i < 10 && !both(); i++) {
        const p = await newPage();
        await p.goto(base + "sio.html?name=extra" + i + "&room=e2e-other");
        await p.waitForSelector("#status.online", WAIT);
        await p.waitForSelector('#transport[data-transport="websocket"]', WAIT);
        await say(p, "extra " + i);
        for (const q of [p, a, b]) await q.waitForSelector("li.msg >> text=extra " + i, WAIT);
      }
      tap(both(), tag + "sessions were opened on both loops, and their pages chat across them",
          JSON.stringify([...loops]));
    }
    tap(errors.length === 0, tag + "no script errors in the pages", errors.join("\n"));
  } catch (e) {
    tap(false, tag + "browser chat over Socket.IO", e && e.stack ? e.stack : e);
  } finally {
    for (const c of contexts) await c.close();
    const code = await srv.stop();
    tap(code === 0, tag + "server exits 0 on SIGTERM", "exit code " + code);
  }
}

// Without the bundle (a public folder with the page but no vendor/), the page says so.
async function missingRun(browser) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crest-e2e-pub."));
  for (const f of ["sio.html", "sio.js", "chat.css"]) fs.copyFileSync(path.join(pub, f), path.join(dir, f));
  const srv = startServer(["--public", dir]);
  const ctx = await browser.newContext();
  try {
    const port = await srv.port;
    const page = await ctx.newPage();
    await page.goto("http://127.0.0.1:" + port + "/sio.html");
    const status = await page.waitForSelector("#status.error", WAIT);
    const text = await status.textContent();
    tap(/socket\.io\.min\.js/.test(text) && /missing/.test(text) &&
        (await page.isDisabled("#join-btn")) && (await page.isDisabled("#text")),
        "without the bundle the page says it is missing and offers no join", text);
  } catch (e) {
    tap(false, "the page without the bundle", e && e.stack ? e.stack : e);
  } finally {
    await ctx.close();
    const code = await srv.stop();
    tap(code === 0, "server without the bundle exits 0 on SIGTERM", "exit code " + code);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const guard = setTimeout(() => { tap(false, "browser test finished in time"); process.exit(1); }, 90000);
  let browser;
  try {
    execFileSync(path.join(root, "scripts", "sio-bundle.sh"), { stdio: ["ignore", "ignore", "inherit"] });
    browser = await chromium.launch({
      executablePath: chrome,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    await chatRun(browser, 1);
    await chatRun(browser, 2);
    await missingRun(browser);
  } catch (e) {
    tap(false, "Socket.IO browser test", e && e.stack ? e.stack : e);
  } finally {
    if (browser) await browser.close();
    clearTimeout(guard);
  }
  finish();
}

main();
