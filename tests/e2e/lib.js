// What the browser tests share: TAP lines and a crest demo started on a free loopback port.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const bin = path.resolve(root, process.env.CREST_BIN || "build/crest");
const chrome = process.env.CHROMIUM || "/usr/bin/chromium";

const counts = { n: 0, failed: 0 };

function tap(ok, name, detail) {
  counts.n++;
  console.log((ok ? "ok - " : "not ok - ") + name);
  if (!ok) {
    counts.failed++;
    if (detail) console.log("# " + String(detail).split("\n").join("\n# "));
  }
}

// The plan line, then the exit status: non-zero when a line failed.
function finish() {
  console.log("1.." + counts.n);
  process.exit(counts.failed ? 1 : 0);
}

// `crest demo` with its own database file and extra flags, on `port` (0: a free one), speaking
// TLS with tls = {cert, key}: { port (a promise of the port it listens on), stop() -> a promise
// of its exit status }. SIGTERM, then SIGKILL after 5 s.
function startServer(args, { port = 0, tls = null, threads = 1 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crest-e2e."));
  const proc = spawn(bin, ["demo", "--host", "127.0.0.1", "--port", String(port),
                           "--threads", String(threads), "--quiet",
                           "--db", "sqlite:" + path.join(dir, "demo.db"),
                           ...(tls ? ["--tls-cert", tls.cert, "--tls-key", tls.key] : []),
                           ...args],
                     { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr.on("data", (d) => { err += d; });
  const scheme = tls ? "https" : "http";
  const listening = new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("no listening line; stderr: " + err)), 10000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && m[1] !== scheme) { clearTimeout(t); reject(new Error(out)); }
      if (m) { clearTimeout(t); resolve(Number(m[2])); }
    });
    proc.on("exit", (code) => { clearTimeout(t); reject(new Error("server exited " + code + ": " + err)); });
  });
  const stop = () => new Promise((resolve) => {
    const done = (code) => { fs.rmSync(dir, { recursive: true, force: true }); resolve(code); };
    if (proc.exitCode !== null) return done(proc.exitCode);
    const t = setTimeout(() => { proc.kill("SIGKILL"); }, 5000);
    proc.on("exit", (code) => { clearTimeout(t); done(code); });
    proc.kill("SIGTERM");
  });
  return { port: listening, stop };
}

module.exports = { root, bin, chrome, tap, finish, startServer };
