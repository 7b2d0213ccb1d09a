// Browser test of CORS: a page on one crest (origin A) calls fetch() on other crest servers
// (origin B: another port of 127.0.0.1, so another origin) and Chromium itself decides, from
// crest's answers, whether the page may read them. Prints TAP lines; exits non-zero on failure.
//   CREST_BIN=build/crest node tests/e2e/cors.test.js
// Needs Debian's chromium (/usr/bin/chromium) and npm playwright-core in tests/e2e/node_modules
// (tests/run.sh installs both); never downloads a browser.
"use strict";
const { chromium } = require("playwright-core");
const { chrome, tap, finish, startServer } = require("./lib");

// fetch() in the page; resolves to {status, body, origin header} or {error: "TypeError: ..."}.
function pageFetch(page, url, init) {
  return page.evaluate(async ([u, i]) => {
    try {
      const r = await fetch(u, i);
      // Access-Control-Allow-Origin itself is not readable by the page: reading the body at all
      // is the proof that the browser accepted it.
      return { status: r.status, body: await r.text(), ratelimit: r.headers.get("ratelimit") };
    } catch (e) {
      return { error: e.name + ": " + e.message };
    }
  }, [url, init || {}]);
}

async function main() {
  const guard = setTimeout(() => { tap(false, "browser test finished in time"); process.exit(1); }, 60000);
  const a = startServer([]);
  let servers = [a];
  let browser;
  try {
    const portA = await a.port;
    const originA = "http://127.0.0.1:" + portA;
    // B lists A (with credentials), C allows any origin ("*", credentials asked but never given
    // with it), D lists only another origin, E lists A without credentials.
    const b = startServer(["--cors-origin", originA, "--cors-credentials", "--rate-limit", "1000"]);
    const c = startServer(["--cors-origin", "*", "--cors-credentials"]);
    const d = startServer(["--cors-origin", "http://elsewhere.test"]);
    const e = startServer(["--cors-origin", originA]);
    servers = servers.concat([b, c, d, e]);
    const [portB, portC, portD, portE] = await Promise.all([b.port, c.port, d.port, e.port]);
    const urlB = "http://127.0.0.1:" + portB, urlC = "http://127.0.0.1:" + portC;
    const urlD = "http://127.0.0.1:" + portD, urlE = "http://127.0.0.1:" + portE;

    browser = await chromium.launch({
      executablePath: chrome,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    const page = await (await browser.newContext()).newPage();
    const res = await page.goto(originA + "/plaintext");
    tap(res.status() === 200 && (await page.evaluate(() => location.origin)) === originA,
        "the page is on origin A", await page.evaluate(() => location.origin));

    let r = await pageFetch(page, urlB + "/json");
    tap(r.status === 200 && r.body === '{"message":"Hello, World!"}',
        "fetch to B, which lists A: allowed", JSON.stringify(r));
    tap(r.ratelimit !== null && /^"default";r=\d+;t=\d+$/.test(r.ratelimit),
        "the page reads the exposed RateLimit header", JSON.stringify(r));
    r = await pageFetch(page, urlB + "/json", { credentials: "include" });
    tap(r.status === 200, "fetch to B with credentials: 'include' (listed, --cors-credentials)",
        JSON.stringify(r));
    // A JSON POST is not a simple request: the browser sends a preflight first, and crest's
    // answer (the route's methods, the asked-for headers) must satisfy it.
    r = await pageFetch(page, urlB + "/api/todos", {
      method: "POST", headers: { "Content-Type": "application/json", "X-Trace": "e2e" },
      body: JSON.stringify({ title: "from another origin", done: false }),
    });
    tap(r.status === 201 && JSON.parse(r.body).title === "from another origin",
        "a JSON POST to B passes its preflight", JSON.stringify(r));
    r = await pageFetch(page, urlB + "/api/todos/1", { method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title: "changed", done: true }) });
    tap(r.status === 200 && JSON.parse(r.body).done === true, "a PUT to B passes its preflight",
        JSON.stringify(r));
    // DELETE is not a CORS-safelisted method: the preflight's method list decides (POST would
    // pass any list, the browser then reads the route's 405).
    r = await pageFetch(page, urlB + "/json", { method: "DELETE" });
    tap(r.error && r.error.startsWith("TypeError"),
        "a DELETE to a GET-only route of B is refused at the preflight", JSON.stringify(r));
    r = await pageFetch(page, urlB + "/api/todos/1", { method: "DELETE" });
    tap(r.status === 204, "a DELETE to a route of B that has it passes its preflight",
        JSON.stringify(r));

    r = await pageFetch(page, urlC + "/json");
    tap(r.status === 200, "fetch to C (*): allowed", JSON.stringify(r));
    r = await pageFetch(page, urlC + "/json", { credentials: "include" });
    tap(r.error && r.error.startsWith("TypeError"),
        "fetch to C (*) with credentials: refused (never credentials with *)", JSON.stringify(r));

    r = await pageFetch(page, urlD + "/json");
    tap(r.error && r.error.startsWith("TypeError"), "fetch to D, which does not list A: refused",
        JSON.stringify(r));
    r = await pageFetch(page, urlE + "/json");
    tap(r.status === 200, "fetch to E, which lists A without --cors-credentials: allowed",
        JSON.stringify(r));
    r = await pageFetch(page, urlE + "/json", { credentials: "include" });
    tap(r.error && r.error.startsWith("TypeError"),
        "fetch to E with credentials: 'include': refused", JSON.stringify(r));
    r = await pageFetch(page, urlD + "/api/todos", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: "{}" });
    tap(r.error && r.error.startsWith("TypeError"), "a preflighted POST to D: refused",
        JSON.stringify(r));
  } catch (e) {
    tap(false, "browser CORS", e && e.stack ? e.stack : e);
  } finally {
    if (browser) await browser.close();
    const codes = await Promise.all(servers.map((s) => s.stop()));
    tap(codes.every((c) => c === 0), "servers exit 0 on SIGTERM", "exit codes " + codes);
    clearTimeout(guard);
  }
  finish();
}

main();
