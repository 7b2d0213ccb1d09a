// Browser test: two headless Chromium pages join one room of a real crest server and each sees
// the other's message. Prints TAP lines; exits non-zero on failure.
//   CREST_BIN=build/crest node tests/e2e/chat.test.js
//   CREST_E2E_TLS=1 CREST_BIN=build/crest node tests/e2e/chat.test.js    (over HTTPS and wss://)
// Needs Debian's chromium (/usr/bin/chromium) and npm playwright-core in tests/e2e/node_modules
// (tests/run.sh installs both); never downloads a browser. Over HTTPS the server gets a
// certificate made here with the openssl command line, and Chromium trusts that one certificate
// (its public key), not any certificate as --ignore-certificate-errors would.
"use strict";
const { execFileSync, spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "..", "..");
const bin = path.resolve(root, process.env.CREST_BIN || "build/crest");
const chrome = process.env.CHROMIUM || "/usr/bin/chromium";
const tls = process.env.CREST_E2E_TLS === "1";
let failed = 0, n = 0;
let certDir = null;

// A self-signed EC P-256 certificate for localhost and 127.0.0.1: the files, and the base64
// SHA-256 of its public key for --ignore-certificate-errors-spki-list.
function makeCert() {
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), "crest-e2e-tls."));
  const cert = path.join(certDir, "server.crt"), key = path.join(certDir, "server.key");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-days", "2", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                           "-keyout", key, "-out", cert], { stdio: "ignore" });
  const spki = new crypto.X509Certificate(fs.readFileSync(cert)).publicKey
    .export({ type: "spki", format: "der" });
  return { cert, key, spki: crypto.createHash("sha256").update(spki).digest("base64") };
}
const pair = tls ? makeCert() : null;

function tap(ok, name, detail) {
  n++;
  console.log((ok ? "ok - " : "not ok - ") + name);
  if (!ok) { failed++; if (detail) console.log("# " + String(detail).split("\n").join("\n# ")); }
}

function startServer(fixedPort) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crest-e2e."));
  const proc = spawn(bin, ["demo", "--host", "127.0.0.1", "--port", String(fixedPort || 0),
                           "--threads", "2", "--quiet",
                           "--db", "sqlite:" + path.join(dir, "demo.db"),
                           "--public", path.join(root, "app", "public"),
                           ...(tls ? ["--tls-cert", pair.cert, "--tls-key", pair.key] : [])],
                     { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr.on("data", (d) => { err += d; });
  const port = new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("no listening line; stderr: " + err)), 10000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && m[1] !== (tls ? "https" : "http")) { clearTimeout(t); reject(new Error(out)); }
      if (m) { clearTimeout(t); resolve(Number(m[2])); }
    });
    proc.on("exit", (code) => reject(new Error("server exited " + code + ": " + err)));
  });
  const stop = () => new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(proc.exitCode);
    const t = setTimeout(() => { proc.kill("SIGKILL"); }, 5000);
    proc.on("exit", (code) => { clearTimeout(t); fs.rmSync(dir, { recursive: true, force: true }); resolve(code); });
    proc.kill("SIGTERM");
  });
  return { port, stop };
}

async function main() {
  let srv = startServer();
  let browser;
  const guard = setTimeout(() => { tap(false, "browser test finished in time"); process.exit(1); }, 60000);
  try {
    const port = await srv.port;
    browser = await chromium.launch({
      executablePath: chrome,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             ...(tls ? ["--ignore-certificate-errors-spki-list=" + pair.spki] : [])],
    });
    const base = (tls ? "https://localhost:" : "http://127.0.0.1:") + port + "/";
    const ctxA = await browser.newContext(), ctxB = await browser.newContext();
    const a = await ctxA.newPage(), b = await ctxB.newPage();

    // The page and its assets come from the public folder (static files): each with a
    // validator, so that a reload revalidates them (304, no body) instead of fetching them again.
    const seen = [];
    a.on("response", (r) => seen.push([new URL(r.url()).pathname, r.status()]));
    const res = await a.goto(base);
    tap(res.status() === 200 && (await a.title()) === "crest chat", "GET / serves the chat page");
    const assets = ["/chat.css", "/chat.js"];
    tap(assets.every((p) => seen.some(([q, s]) => q === p && s === 200)) &&
        (await a.evaluate(() => getComputedStyle(document.body).display)) === "flex" &&
        (await a.evaluate(() => typeof $ === "function")),
        "the page's stylesheet and script load and apply", JSON.stringify(seen));
    // Chromium reports a revalidated page as its cached 200; the server's count of 304s says
    // what went over the wire.
    const count304 = () => a.evaluate(async () => {
      const text = await (await fetch("/metrics")).text();
      const m = /^crest_requests_total\{status="304"\} (\d+)$/m.exec(text);
      return m ? Number(m[1]) : 0;
    });
    const before = await count304();
    seen.length = 0;
    await a.reload();
    const after = await count304();
    tap(assets.every((p) => seen.some(([q, s]) => q === p && s === 304)) && after - before === 3,
        "a reload revalidates the page and its assets: three 304s", JSON.stringify(seen) +
        " 304s: " + (after - before));
    if (tls) {
      const sec = await res.securityDetails();
      tap(sec !== null && /^TLS 1\.[23]$/.test(sec.protocol) && sec.subjectName === "localhost" &&
          (await a.evaluate(() => window.isSecureContext)),
          "the page comes over TLS with the test's certificate, a secure context",
          JSON.stringify(sec));
      const proto = await a.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
      tap(proto === "h2", "the page comes over HTTP/2 (ALPN h2)", proto);
      // An event stream in the page, over the same HTTP/2 connection: it must see the chat.
      await a.evaluate(() => {
        window.sseSeen = [];
        window.sse = new EventSource("/events");
        window.sse.addEventListener("message", (e) => window.sseSeen.push(e.data));
      });
    }

    // Join through the form, as a person would.
    for (const [page, name] of [[a, "alice"], [b, "bob"]]) {
      if (page !== a) await page.goto(base);
      await page.fill("#name", name);
      await page.fill("#room", "e2e");
      await page.click("#join-btn");
      await page.waitForSelector("#status.online", { timeout: 10000 });
    }
    await a.waitForSelector("text=bob joined #e2e", { timeout: 10000 });
    tap(true, "alice sees bob join");

    await a.fill("#text", "hello from alice");
    await a.click("#send-btn");
    await b.fill("#text", "hi alice, bob here");
    await b.press("#text", "Enter");
    await b.waitForSelector("li.msg >> text=hello from alice", { timeout: 10000 });
    tap(true, "bob sees alice's message");
    await a.waitForSelector("li.msg >> text=hi alice, bob here", { timeout: 10000 });
    tap(true, "alice sees bob's message");
    await a.waitForSelector("li.mine >> text=hello from alice", { timeout: 10000 });
    tap(true, "alice sees her own message marked as hers");
    if (tls) {
      await a.waitForFunction(() => window.sseSeen.some((d) => d.includes("hello from alice")),
                              null, { timeout: 10000 });
      tap(true, "an EventSource in the page (HTTP/2, the page's connection) gets the chat");
    }

    // Names and text are shown as text, never as markup.
    await b.fill("#text", "<b id=injected>bold?</b>");
    await b.click("#send-btn");
    await a.waitForSelector("li.msg >> text=<b id=injected>bold?</b>", { timeout: 10000 });
    tap((await a.$("#injected")) === null, "message text is not interpreted as HTML");

    await ctxB.close();
    await a.waitForSelector("text=bob left #e2e", { timeout: 10000 });
    tap(true, "alice sees bob leave");
    await a.screenshot({ path: path.join(os.tmpdir(), "crest-chat.png") });

    // A server restart: the page notices, reconnects by itself and chats again.
    const code = await srv.stop();
    tap(code === 0, "server exits 0 on SIGTERM with a browser connected", "exit code " + code);
    await a.waitForSelector("#status:not(.online)", { timeout: 10000 });
    srv = startServer(port);
    await srv.port;
    await a.waitForSelector("#status.online", { timeout: 20000 });
    await a.fill("#text", "back after the restart");
    await a.click("#send-btn");
    await a.waitForSelector("li.msg >> text=back after the restart", { timeout: 10000 });
    tap(true, "the page reconnects after a server restart");
  } catch (e) {
    tap(false, "browser chat", e && e.stack ? e.stack : e);
  } finally {
    if (browser) await browser.close();
    const code = await srv.stop();
    tap(code === 0, "server exits 0 on SIGTERM", "exit code " + code);
    clearTimeout(guard);
    if (certDir) fs.rmSync(certDir, { recursive: true, force: true });
  }
  console.log("1.." + n);
  process.exit(failed ? 1 : 0);
}

main();
