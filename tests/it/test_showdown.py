"""The showdown's own code (bench/showdown/): the parsing of wrk's, h2load's and wsload's output
(recorded outputs), the statistics, the report and the claims made from a results.json built
here, README's claims section rewritten in place, and the contract checker against crest's demo
(which passes) and against a server that answers wrongly (which it must catch). The showdown's
measurements themselves are not a test (`make showdown`)."""

import http.server
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

sys.path.insert(0, os.path.join(ROOT, "bench", "showdown"))
import check as checker  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import stats  # noqa: E402
import run as runner  # noqa: E402
import workloads  # noqa: E402

T = Suite()

WRK_OUT = """Running 2s test @ http://127.0.0.1:8080/json
  1 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  512.00us  12.00ms   80.00%
    Req/Sec   120.00k     5.00k  130.00k    70.00%
  240000 requests in 2.00s, 30.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec: 120000.00
Transfer/sec:     15.00MB
WRKJSON {"requests":240123,"duration_us":2001000,"bytes":31457280,"errors":{"connect":0,"read":3,"write":0,"status":7,"timeout":2},"latency_us":{"mean":2100.5,"p50":1900,"p90":2800,"p99":6100,"max":12000}}
"""

WRK_PLAIN = """Running 1s test @ http://127.0.0.1:18420/nope
  1 threads and 4 connections
  51001 requests in 1.10s, 18.67MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 51001
Requests/sec:  46389.30
"""

H2LOAD_OUT = """finished in 41.96ms, 4766.44 req/s, 291.87KB/s
requests: 200 total, 200 started, 198 done, 190 succeeded, 8 failed, 2 errored, 0 timeout
status codes: 190 2xx, 1 3xx, 5 4xx, 2 5xx
traffic: 12.25KB (12541) total, 6.00KB (6145) headers (space savings 89.79%), 2.54KB (2600) data
"""

WSLOAD_OUT = """ready 64 connect_s=0.02
mode=echo conns=64 senders=64 window=16 msgs=400000 secs=2.00 msgs_per_s=200000 p50_us=310 p99_us=1200 closed=0 server_cpu_s=1.90 server_cpu_us_per_msg=4.750
"""


@T.case("wrk: the WRKJSON line gives exact counts and percentiles; Non-2xx comes from the summary")
def _():
    r = load.parse_wrk(WRK_OUT)
    eq(r["requests"], 240123, "requests")
    check(abs(r["rps"] - 240123 / 2.001) < 0.01, "rps %r" % r["rps"])
    eq((r["p50_us"], r["p99_us"], r["non2xx"]), (1900, 6100, 7), "percentiles, non-2xx")
    eq(r["errors"]["read"] + r["errors"]["timeout"], 5, "socket errors")


@T.case("wrk: without report.lua the plain summary is parsed (count, time unit, socket errors)")
def _():
    r = load.parse_wrk(WRK_PLAIN)
    eq((r["requests"], r["non2xx"]), (51001, 51001), "requests, non-2xx")
    check(abs(r["seconds"] - 1.10) < 1e-9, "seconds %r" % r["seconds"])
    eq(r["errors"], {"connect": 1, "read": 2, "write": 3, "timeout": 4}, "socket errors")
    try:
        load.parse_wrk("wrk: connection refused\n")
        fail("garbage parsed")
    except load.LoadError:
        pass


@T.case("h2load and wsload outputs are parsed, failures and closes included")
def _():
    r = load.parse_h2load(H2LOAD_OUT)
    check(abs(r["seconds"] - 0.04196) < 1e-9 and r["rps"] == 4766.44, "time, rate: %r" % r)
    eq((r["requests"], r["ok"], r["failed"], r["errored"], r["non2xx"]), (198, 190, 8, 2, 8),
       "counts")
    w = load.parse_kv(WSLOAD_OUT)
    eq((w["mode"], w["msgs_per_s"], w["p99_us"], w["closed"]), ("echo", 200000, 1200, 0),
       "wsload")
    eq(w["server_cpu_us_per_msg"], 4.75, "a float")


CHATREST_OUT = """step users=50 secs=3 rest=150 rest_p50_us=1800 rest_p99_us=6800 rest_errors=0 chat_sent=30 chat_expected=510 chat_got=510 chat_p50_us=1200 chat_p99_us=4600 closed=0 server_cpu_s=0.06 client_cpu_s=0.05
step users=100 secs=3 rest=300 rest_p50_us=40000 rest_p99_us=-1 rest_errors=0 chat_sent=60 chat_expected=1200 chat_got=1100 chat_p50_us=9000 chat_p99_us=-1 closed=0 server_cpu_s=2.95 client_cpu_s=0.10
result users=50 limit_ms=100 stopped=limit
"""


@T.case("chatrest: steps parsed, -1 (never arrived) read as no figure, the result and why it "
        "stopped; the connection holders' last lines")
def _():
    r = load.parse_chatrest(CHATREST_OUT)
    eq((r["users"], r["limit_ms"], r["stopped"]), (50, 100, "limit"), "result")
    eq([s["users"] for s in r["steps"]], [50, 100], "steps")
    eq((r["steps"][0]["rest_p99_ms"], r["steps"][0]["chat_p99_ms"]), (6.8, 4.6), "p99 in ms")
    eq((r["steps"][1]["rest_p99_ms"], r["steps"][1]["chat_p99_ms"]), (None, None), "missing")
    eq(r["steps"][1]["chat_got"], 1100, "deliveries")
    try:
        load.parse_chatrest("step users=50 secs=3\n")
        fail("no result line parsed")
    except load.LoadError:
        pass
    eq(load.parse_held("ready 1000\ndone open=990 closed_by_server=10\n"),
       {"open": 990, "closed_by_server": 10}, "idleconn")
    eq(load.parse_held("ready 5 connect_s=0.01\nmembers 5 open 5 closed_by_server 0 presence 0 "
                       "other 0 errors 0 pings 0 first_ping_ns 0 last_ping_ns 0\nprobe 1 got 0"),
       {"open": 5, "closed_by_server": 0}, "wsmembers")
    eq(load.parse_held("ready 5\n"), None, "killed before it said")


@T.case("memory ramp: batches from cumulative steps, bytes per connection at the last step")
def _():
    eq(workloads.batches([1000, 2000, 5000, 10000]), [1000, 1000, 3000, 5000], "batches")
    try:
        workloads.batches([1000, 1000])
        fail("steps that do not rise accepted")
    except ValueError:
        pass
    eq(workloads.per_conn([(0, 1000), (1000, 2000), (2000, 2500)]), 1500 * 1024 / 2000,
       "(RSS at N - RSS at 0) / N")
    eq(workloads.per_conn([(0, 1000)]), None, "nothing held")


@T.case("run: the sessions of a peer (a memory workload on a fresh server) and the time "
        "budget, which QUICK keeps short")
def _():
    W = workloads.BY_NAME
    got = runner.sessions([W["plaintext"], W["conns"], W["json"], W["wsconns"]])
    eq([[w.name for w in s] for s in got], [["conns", "plaintext", "json"], ["wsconns"]],
       "sessions")
    eq([[w.name for w in s] for s in runner.sessions([W["json"]])], [["json"]], "no memory")

    class P:
        def __init__(self, name, stack, serves, warmup=0, workers_max=2, measure=None):
            self.name, self.stack, self.serves, self.warmup = name, stack, serves, warmup
            self.workers_max, self.measure = workers_max, measure
    peers = [P("crest", "C", ["plaintext", "json", "ws", "rooms", "todos"]),
             P("j", "Java", ["plaintext", "json"], warmup=3),
             P("r", "Python", ["rooms", "todos"], workers_max=1, measure=["chatrest"])]
    full = runner.plan(peers, runner.WORKLOADS, runner.FULL)
    quick = runner.plan(peers, runner.WORKLOADS, runner.QUICK)
    check(quick["total_s"] < full["total_s"] / 2, "quick %r full %r" % (quick, full))
    check("chatrest" in full["parts"] and "todos" in full["parts"], full["parts"])
    # todos: crest only (r serves it but is measured on chatrest alone)
    f = runner.FULL
    eq(round(full["parts"]["todos"], 1), round(f["repeats"] * (f["warmup"] + f["duration"] + 0.3), 1),
       "todos: crest's runs")
    check(abs(sum(full["parts"].values()) - full["total_s"]) < 1e-6, "parts add up")
    check(not W["todos"].serves(peers[2]) and W["chatrest"].serves(peers[2]),
          "peer.json measure")


@T.case("statistics: median, summary, ratio, bottleneck")
def _():
    eq(stats.median([3, 1, 2]), 2, "odd")
    eq(stats.median([4, 1, 3, 2]), 2.5, "even")
    eq(stats.median([None]), None, "empty")
    eq(stats.summary([5, None, 1, 9]), {"median": 5, "min": 1, "max": 9, "n": 3}, "summary")
    eq(stats.ratio(50, 100), 0.5, "higher is better")
    eq(stats.ratio(200, 100, higher_is_better=False), 0.5, "lower is better")
    eq(stats.ratio(None, 100), None, "missing")
    eq(stats.bottleneck(1.95, 1, 0.5, 2), "server", "server busy")
    eq(stats.bottleneck(0.5, 1, 1.9, 2), "client", "load generator busy")
    eq(stats.bottleneck(3.8, 2, 1.95, 2), "both", "both")
    eq(stats.bottleneck(0.2, 1, 0.2, 2), "neither", "latency-bound")


def results_fixture():
    peers = {
        "crest": ("C", "crest"), "node-http": ("Node.js", "Node.js http"),
        "fastapi": ("Python", "FastAPI"), "aiohttp": ("Python", "aiohttp"),
        "jdk-httpserver": ("Java", "JDK HttpServer"), "broken": ("Node.js", "Broken"),
    }
    res = {"meta": {"machine": {"cpu": "test CPU", "cores": 2, "mem_mib": 1024, "kernel": "6.0",
                                "debian": "12", "date": "2026-11-30 12:00:00 UTC"},
                    "tools": {"wrk": "4.1"}, "command": "make showdown", "quick": False,
                    "settings": {"repeats": 3, "duration": 6, "warmup": 2, "idle_conns": 10000,
                                 "members": 1000},
                    "cpus": {"server": "0", "client": "1", "both": "0,1"}},
           "peers": {n: {"title": t, "stack": s, "serves": [], "versions": {"v": "1"},
                         "changed_defaults": []} for n, (s, t) in peers.items()},
           "workloads": {w: {"title": w, "unit": "req/s", "better": "higher",
                             "modes": ["1core", "2core"] if w == "hash_parallel" else ["1core"]}
                         for w in ("json", "db", "todos", "conns", "coldstart", "rooms",
                                   "healthz_cpu", "hash_parallel")},
           "samples": []}

    def add(w, peer, mode="1core", **kv):
        for rep, jitter in enumerate((0.98, 1.0, 1.03)):
            s = {k: (v * jitter if isinstance(v, float) else v) for k, v in kv.items()}
            s.update({"workload": w, "mode": mode, "peer": peer, "repeat": rep})
            res["samples"].append(s)
    for p, j, d in (("crest", 300000.0, 60000.0), ("node-http", 60000.0, 15000.0),
                    ("fastapi", 9000.0, 4000.0), ("aiohttp", 12000.0, 5000.0),
                    ("jdk-httpserver", 55000.0, 20000.0)):
        add("json", p, rps=j, cpu_us=1e6 / j, bottleneck="server")
        add("db", p, rps=d, cpu_us=1e6 / d)
    add("json", "broken", problem="no request completed")
    add("todos", "crest", rps=40000.0)
    add("todos", "node-http", rps=10000.0)
    add("todos", "fastapi", rps=3000.0)
    for p, b in (("crest", 400.0), ("node-http", 3000.0), ("fastapi", 9000.0),
                 ("aiohttp", 7000.0)):
        add("conns", p, bytes_per_conn=b, conns_in_1gib=int(2 ** 30 / b))
    for p, ms, rss in (("crest", 5.0, 6.0), ("node-http", 60.0, 45.0),
                       ("fastapi", 700.0, 60.0), ("jdk-httpserver", 400.0, 120.0)):
        add("coldstart", p, start_ms=ms, idle_rss_mib=rss)
    add("rooms", "crest", rps=900000.0, p99_ms=3.0)
    add("rooms", "aiohttp", rps=80000.0, p99_ms=40.0)
    add("healthz_cpu", "crest", p99_ms=1.0, rps=50.0)
    add("healthz_cpu", "node-http", p99_ms=3.0, rps=40.0)
    for p, one, two in (("crest", 100.0, 198.0), ("jdk-httpserver", 90.0, 175.0),
                        ("fastapi", 80.0, 150.0)):
        add("hash_parallel", p, rps=one)
        add("hash_parallel", p, mode="2core", rps=two)
    return res


@T.case("report: tables rank peers with median (min-max) and the ratio to crest; a failing "
        "peer is shown FAILED, not left out")
def _():
    md = report.render(results_fixture())
    check("| **crest** | C | 300,000 (294,000–309,000) | 1.00× |" in md, "crest's json row: %s"
          % [l for l in md.splitlines() if "**crest**" in l][:1])
    check("| Node.js http | Node.js | 60,000 (58,800–61,800) | 0.20× |" in md, "ratio to crest")
    broken = [l for l in md.splitlines() if l.startswith("| Broken |")]
    check(broken and "**FAILED**: no request completed" in broken[0], "failing row: %r" % broken)
    check("test CPU" in md and "Linux 6.0" in md and "2026-11-30" in md,
          "machine, kernel and date named")


@T.case("claims: verdicts follow from the data (connections, CRUD, database, memory, cold "
        "start, real time, CPU work) with crest's figure beside each")
def _():
    res = results_fixture()
    got = {c: (v, ev, cr) for c, v, ev, cr in report.claims(res, report.summarize(res))}
    want = {
        "Node.js handles 10k+ concurrent connections on one thread, easily": "confirmed",
        "Python handles about 1k connections, even with async frameworks": "refuted",
        "For a CRUD API the difference between Node.js and FastAPI is under 20%": "refuted",
        "Response time is dominated by the database: query time is 10-50x the language "
        "overhead": "refuted",
        "Node.js has the fastest cold start (serverless)": "confirmed",
        "Node.js hosting is cheap, Java needs more RAM": "confirmed",
        "A Python real-time dashboard chokes at 50 concurrent users while Node.js handles "
        "50,000": "refuted",
        "CPU-heavy work blocks Node.js's event loop": "depends",
        "Java excels at CPU-parallel work, Python's GIL kills it": "refuted",
    }
    for claim, verdict in want.items():
        check(claim in got, "claim missing: %s (have %s)" % (claim, list(got)))
        eq(got[claim][0], verdict, claim)
    check("70% apart" in got["For a CRUD API the difference between Node.js and FastAPI is "
                             "under 20%"][1], "evidence names the gap")
    eq(got["Node.js has the fastest cold start (serverless)"][2], "5.00 ms", "crest's figure")
    # Less data: the verdict moves with it.
    res["samples"] = [s for s in res["samples"] if not (s["workload"] == "todos" and
                                                        s["peer"] == "fastapi")]
    res["samples"].append({"workload": "todos", "mode": "1core", "peer": "fastapi",
                           "repeat": 0, "rps": 9000.0})
    got = {c: v for c, v, _, _ in report.claims(res, report.summarize(res))}
    eq(got["For a CRUD API the difference between Node.js and FastAPI is under 20%"],
       "confirmed", "10,000 vs 9,000 req/s")


@T.case("report: a figure capped by the load generator is marked, the mark explained; the "
        "memory curves are the medians per count")
def _():
    res = results_fixture()
    for smp in res["samples"]:
        if smp["workload"] == "json" and smp["peer"] == "crest":
            smp["bottleneck"] = "client"
    md = report.render(res)
    row = [l for l in md.splitlines() if l.startswith("| **crest** | C | 300,000")]
    check(row and "‡" in row[0], "crest's capped json row: %r" % row)
    check("‡ capped by the load generator" in md, "legend")
    node = [l for l in md.splitlines() if l.startswith("| Node.js http | Node.js | 60,000")]
    check(node and "‡" not in node[0], "a server-bound row is not marked: %r" % node)
    res["samples"] += [
        {"workload": "wsconns", "mode": "1core", "peer": "crest", "repeat": r,
         "rss_curve": [[0, 1024], [1000, 1024 + 1024 * m]], "bytes_per_conn": 1000.0}
        for r, m in enumerate((1, 3, 2))]
    eq(report.memory_curves(res)["wsconns"]["crest"], [(0, 1.0), (1000, 3.0)], "median per N")
    check("conns" not in report.memory_curves(res), "conns samples without curves: none")


@T.case("README's claims section is rewritten between its markers, nothing else touched")
def _():
    res = results_fixture()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "README.md")
        with open(path, "w") as f:
            f.write("# x\n\nbefore\n\n%s\nold table\n%s\n\nafter\n" % (report.README_BEGIN,
                                                                       report.README_END))
        report.write_readme(res, path)
        report.write_readme(res, path)  # again: still one section
        text = open(path).read()
    eq(text.count(report.README_BEGIN), 1, "one section")
    check("old table" not in text and "before" in text and "after" in text, text[:300])
    check("| Node.js has the fastest cold start (serverless) | **confirmed** |" in text,
          "the claims table: %r" % text[:600])


class WrongHandler(http.server.BaseHTTPRequestHandler):
    """Answers /healthz, but /plaintext with another body and /json with the wrong type."""

    def do_GET(self):
        body, ctype = {"/healthz": (b"ok", "text/plain"), "/plaintext": (b"Hello World", "text/plain"),
                       "/json": (b'{"message":"Hello, World!"}', "text/plain")}.get(
            self.path, (b"no", "text/plain"))
        self.send_response(200 if body != b"no" else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@T.case("check.py: crest's demo (SQLite) passes every workload; a server answering wrongly is "
        "caught")
def _():
    with demo() as srv:
        probs = checker.check(srv.url(""), list(checker.WORKLOADS))
        eq(probs, [], "crest demo's problems")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WrongHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        probs = checker.check("http://127.0.0.1:%d" % httpd.server_address[1], ["plaintext", "json"])
    finally:
        httpd.shutdown()
    check(any("/plaintext: body" in p for p in probs), "wrong body caught: %r" % probs)
    check(any("/json: Content-Type" in p for p in probs), "wrong type caught: %r" % probs)


if __name__ == "__main__":
    T.main()
