"""Observability of `crest demo`: request ids (X-Request-Id kept when valid, made otherwise), the
access log (--access-log: one JSON object per request, HTTP/1.1 and HTTP/2, nothing lost at
SIGTERM, reopened on SIGUSR1, to stdout with "-") and /metrics in the Prometheus text format
(duration histograms by route template, loop lag per loop thread, WebSocket messages)."""

import asyncio
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FIELDS = ("time", "remote", "method", "path", "route", "status", "bytes", "duration_ms",
          "request_id", "user_agent")



def obs_demo(tmp, *args):
    return demo("--db", "sqlite:%s/x.db" % tmp, "--threads", "2", "--quiet", *args)


def read_lines(path):
    """The file's complete lines, each parsed as JSON (a line cut short fails the case)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    check(lines[-1] == b"", "the log ends in the middle of a line: %r" % lines[-1][-200:])
    out = []
    for raw in lines[:-1]:
        try:
            out.append(json.loads(raw))
        except ValueError:
            fail("not a JSON line: %r" % raw[:300])
    return out


def wait_lines(path, n, timeout=5):
    wait_until(lambda: len(read_lines(path)) >= n, timeout, "%d lines in %s" % (n, path))
    got = read_lines(path)
    eq(len(got), n, "lines in %s" % path)
    return got


def check_line(e):
    eq(sorted(e.keys()), sorted(FIELDS), "fields of %r" % e)
    check(TIME_RE.match(e["time"]), "time %r" % e["time"])
    eq(e["remote"], "127.0.0.1", "remote")
    check(isinstance(e["status"], int) and isinstance(e["bytes"], int), "numbers in %r" % e)
    check(isinstance(e["duration_ms"], (int, float)) and 0 <= e["duration_ms"] < 5000,
          "duration_ms in %r" % e)


def burst(srv, n_conns, per_conn, paths, headers=None):
    """per_conn requests on each of n_conns keep-alive connections (pipelined two at a time);
    returns [(path, response)]."""
    def one(i):
        out = []
        with srv.connect() as c:
            for k in range(0, per_conn, 2):
                batch = [paths[(i + k + j) % len(paths)] for j in range(min(2, per_conn - k))]
                hdrs = list(headers or []) + [("User-Agent", "obs-test/%d" % i)]
                c.send(b"".join(build_request("GET", p, hdrs) for p in batch))
                for p in batch:
                    out.append((p, c.read_response("GET")))
        return out
    results = run_parallel(one, [(i,) for i in range(n_conns)])
    flat = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        flat.extend(r)
    return flat


@T.case("access log: every request of a burst over several connections, HTTP/1.1 and HTTP/2, "
        "and a rejected one, is one JSON line with its fields")
def _():
    with tmp_dir() as tmp:
        log = os.path.join(tmp, "access.log")
        with obs_demo(tmp, "--access-log", log) as srv:
            paths = ["/plaintext", "/api/todos/7", "/nope?x=1", "/json"]
            got = burst(srv, 4, 25, paths)
            with srv.connect() as c:  # rejected by the parser: 400, logged without a head
                c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
                r = c.read_response("GET")
                eq(r.status, 400, "bad request")
                bad_rid = r.headers.get("X-Request-Id")
                check(bad_rid and bad_rid not in [x.headers.get("X-Request-Id") for _, x in got],
                      "the rejection has a request id of its own: %r" % bad_rid)
            from test_h2 import H2
            with H2(srv.port) as h:
                st = h.get("/plaintext?h2=1", headers=[("user-agent", "h2-client")])
                eq(st.status, 200, "h2 status")
                h2_rid = st.header("x-request-id")
            lines = wait_lines(log, len(got) + 2)
            ids = {}
            for p, r in got:
                rid = r.headers.get("X-Request-Id")
                check(rid and rid not in ids, "a fresh request id: %r" % rid)
                ids[rid] = (p, r)
            by_id = {}
            for e in lines:
                check_line(e)
                if e["request_id"] is not None:
                    by_id[e["request_id"]] = e
            eq(len(by_id), len(got) + 2, "lines with ids (the rejection's too)")
            for rid, (p, r) in ids.items():
                e = by_id[rid]
                eq(e["method"], "GET", "method")
                eq(e["path"], p.split("?")[0], "path")
                eq(e["status"], r.status, "status of %s" % p)
                eq(e["bytes"], len(r.body), "bytes of %s" % p)
                check(e["user_agent"].startswith("obs-test/"), "user agent %r" % e["user_agent"])
                want = {"/plaintext": "/plaintext", "/json": "/json",
                        "/api/todos/7": "/api/todos/:id"}.get(p)
                eq(e["route"], want, "route of %s" % p)
            e = by_id[h2_rid]
            eq((e["path"], e["status"], e["bytes"], e["user_agent"]),
               ("/plaintext", 200, 13, "h2-client"), "the HTTP/2 line")
            bad = [e for e in lines if e["status"] == 400]
            eq(len(bad), 1, "the rejected request's line")
            eq((bad[0]["method"], bad[0]["path"], bad[0]["route"], bad[0]["request_id"]),
               (None, None, None, bad_rid), "400 line")
        eq(len(read_lines(log)), len(got) + 2, "lines after the stop")


@T.case("access log: SIGTERM right after a burst loses no line and cuts none")
def _():
    with tmp_dir() as tmp:
        log = os.path.join(tmp, "access.log")
        srv = obs_demo(tmp, "--access-log", log)
        try:
            got = burst(srv, 4, 100, ["/plaintext", "/json"])
            srv.stop(signal.SIGTERM)  # at once: most lines are still in the loops' blocks
        finally:
            srv.kill()
        lines = read_lines(log)
        eq(len(lines), len(got), "lines")
        eq(len({e["request_id"] for e in lines}), len(got), "distinct ids")


@T.case("access log: SIGUSR1 reopens the file (logrotate: rename, signal, new file)")
def _():
    with tmp_dir() as tmp:
        log = os.path.join(tmp, "access.log")
        with obs_demo(tmp, "--access-log", log) as srv:
            burst(srv, 2, 10, ["/plaintext"])
            wait_lines(log, 20)
            os.rename(log, log + ".1")
            srv.send_signal(signal.SIGUSR1)
            wait_until(lambda: os.path.exists(log), 5, "the log reopened at its path")
            burst(srv, 1, 6, ["/json"])
            new = wait_lines(log, 6)
            check(all(e["path"] == "/json" for e in new), "only new lines in the new file")
            eq(len(read_lines(log + ".1")), 20, "lines in the renamed file")


@T.case("access log to '-' writes JSON lines to standard output")
def _():
    with tmp_dir() as tmp:
        with obs_demo(tmp, "--access-log", "-") as srv:
            burst(srv, 1, 3, ["/plaintext"])

            def lines():
                out = []
                for raw in list(srv.stdout_lines):
                    if raw.startswith(b"{"):
                        out.append(json.loads(raw))
                return out
            wait_until(lambda: len(lines()) >= 3, 5, "3 log lines on stdout")
            for e in lines():
                check_line(e)
                eq(e["path"], "/plaintext", "path")


@T.case("X-Request-Id: a valid one is kept, an invalid one (too long, bad characters) replaced")
def _():
    with tmp_dir() as tmp, obs_demo(tmp) as srv, srv.connect() as c:
        for rid in ("abc-123", "A.b_c:d+e/f=", "x" * 128):
            r = c.request("GET", "/plaintext", [("X-Request-Id", rid)])
            eq(r.headers.get("X-Request-Id"), rid, "echoed")
        seen = set()
        for bad in ("x" * 129, "a b", "a;b", "\xe9", ""):
            r = c.request("GET", "/plaintext", [("X-Request-Id", bad)])
            rid = r.headers.get("X-Request-Id")
            check(rid and rid != bad and re.match(r"^[A-Za-z0-9._:+/=-]{1,128}$", rid),
                  "replaced %r by %r" % (bad, rid))
            seen.add(rid)
        r = c.request("GET", "/nope")
        eq(r.status, 404, "unmatched")
        seen.add(r.headers.get("X-Request-Id"))
        eq(len(seen), 6, "generated ids are distinct")


def parse_prom(text):
    """Parses the Prometheus text format strictly enough for a test: returns (types, samples)
    with samples as (name, {labels}, value); fails on a line that is neither."""
    types, samples = {}, []
    sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
    for line in text.split("\n"):
        if line == "":
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4, "TYPE line %r" % line)
            check(parts[2] not in types, "second TYPE for %s" % parts[2])
            types[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            continue
        m = sample_re.match(line)
        check(m, "not a sample line: %r" % line)
        labels, rest = {}, m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = label_re.match(rest, pos)
            check(lm, "bad labels in %r" % line)
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        v = m.group(3)
        samples.append((m.group(1), labels, float(v)))
    return types, samples


def family(types, name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return name


def check_prom(text):
    types, samples = parse_prom(text)
    hists = {}
    for name, labels, v in samples:
        fam = family(types, name)
        check(fam in types, "sample %s has no TYPE" % name)
        if types[fam] == "histogram":
            key = (fam, tuple(sorted((k, x) for k, x in labels.items() if k != "le")))
            h = hists.setdefault(key, {"buckets": [], "count": None})
            if name.endswith("_bucket"):
                h["buckets"].append((float(labels["le"]), v))
            elif name.endswith("_count"):
                h["count"] = v
    for key, h in hists.items():
        b = h["buckets"]
        check(b and b[-1][0] == float("inf"), "%r ends with +Inf" % (key,))
        check(all(b[i][0] < b[i + 1][0] and b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)),
              "buckets of %r in order and monotonic: %r" % (key, b))
        eq(b[-1][1], h["count"], "+Inf == _count of %r" % (key,))
    return types, samples, hists


@T.case("/metrics: Prometheus text; durations by route template; loop lag per loop; "
        "WebSocket messages in and out")
def _():
    with tmp_dir() as tmp, obs_demo(tmp) as srv:
        with srv.connect() as c:
            for _ in range(3):
                eq(c.request("GET", "/api/todos/7").status, 404, "unknown todo")
            eq(c.request("GET", "/plaintext").status, 200, "plaintext")
            eq(c.request("GET", "/no/such/path/42").status, 404, "unmatched")
            eq(c.request("GET", "/db").status, 200, "/db")
            eq(c.request("POST", "/work/hash?rounds=10", body=b"x").status, 200, "/work/hash")
            text0 = c.request("GET", "/metrics").body.decode()
        _, s0, _ = check_prom(text0)

        def value(samples, name, **labels):
            for n, l, v in samples:
                if n == name and all(l.get(k) == x for k, x in labels.items()):
                    return v
            return None

        async def echo():
            async with srv.ws_connect("/ws/echo") as ws:
                for i in range(5):
                    await ws.send("m%d" % i)
                    eq(await asyncio.wait_for(ws.recv(), IO_TIMEOUT), "m%d" % i, "echo")
        asyncio.run(echo())
        with srv.connect() as c:
            text = c.request("GET", "/metrics").body.decode()
        types, samples, hists = check_prom(text)
        dur = "crest_http_server_request_duration_seconds"
        eq(types.get(dur), "histogram", "duration type")
        eq(value(samples, dur + "_count", method="GET", route="/api/todos/:id"), 3.0,
           "todos by template")
        eq(value(samples, dur + "_count", method="GET", route="/plaintext"), 1.0, "plaintext")
        check(value(samples, dur + "_count", method="GET", route="") >= 1, "unmatched: route=\"\"")
        check(not any("/api/todos/7" in str(l) or "/no/such" in str(l) for _, l, _ in samples),
              "no raw path in labels")
        les = sorted({float(l["le"]) for n, l, _ in samples if n == dur + "_bucket"})
        eq(les, [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
                 float("inf")], "OpenTelemetry buckets")
        eq(sorted(l["loop"] for n, l, _ in samples if n == "crest_event_loop_lag_seconds"),
           ["0", "1"], "lag per loop thread")
        for name in ("crest_ws_messages_received_total", "crest_ws_messages_sent_total"):
            before = value(s0, name) or 0
            check(value(samples, name) >= before + 5, "%s moved by 5: %r -> %r"
                  % (name, before, value(samples, name)))
        check(value(samples, "crest_db_query_duration_seconds_count") >= 1, "a database batch")
        eq(value(samples, "crest_db_queries_in_flight"), 0.0, "no batch in flight")
        eq(value(samples, "crest_work_jobs_total"), 1.0, "one worker job")
        eq(value(samples, "crest_work_job_duration_seconds_count"), 1.0, "its time")
        for name in ("crest_requests_total", "crest_open_connections", "crest_redis_up",
                     "crest_pubsub_delivered_total", "crest_work_queued_jobs"):
            check(name in types, "%s listed" % name)


@T.case("an idle server takes no wake-ups: the loop-lag timer stops with the last connection")
def _():
    with tmp_dir() as tmp, obs_demo(tmp, "--threads", "2") as srv:
        with open(CREST_BIN, "rb") as f:
            if b"__tsan_init" in f.read():
                return  # ThreadSanitizer's own thread wakes up periodically
        with srv.connect() as c:
            eq(c.request("GET", "/plaintext").status, 200, "a request")

        def switches():
            total = 0
            for tid in os.listdir("/proc/%d/task" % srv.proc.pid):
                with open("/proc/%d/task/%s/status" % (srv.proc.pid, tid)) as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            total += int(line.split()[1])
            return total
        time.sleep(0.5)  # the lag timer's next tick sees no connection and stops
        before = switches()
        time.sleep(1.5)
        woke = switches() - before
        check(woke <= 2, "%d wake-ups of an idle server in 1.5 s" % woke)
        with srv.connect() as c:  # and it measures again once there is something to serve
            eq(c.request("GET", "/plaintext").status, 200, "a request after the idle time")
            time.sleep(0.3)
            check(re.search(r'crest_event_loop_lag_seconds\{loop="\d"\}',
                            c.request("GET", "/metrics").body.decode()), "lag reported")


if __name__ == "__main__":
    T.main(needs=("crest",))
