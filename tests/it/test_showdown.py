"""The showdown's own code (bench/showdown/): the parsing of wrk's, h2load's, wsload's and
chatload's output (recorded outputs), the statistics, the report, the claims and the Socket.IO
targets made from a results.json built here, wsmembers' Socket.IO mode and the tool's
redis-server, README's claims section rewritten in place, and the contract checker against
crest's demo (which passes) and against a server that answers wrongly (which it must catch). The
showdown's measurements themselves are not a test (`make showdown`)."""

import atexit
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

sys.path.insert(0, os.path.join(ROOT, "bench", "showdown"))
import check as checker  # noqa: E402
import lib  # noqa: E402
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


CHATLOAD_OUT = """chatload: 1000 members joined in 0.70 s
chatload: sync done in 0.01 s (0 members missing a sender)
CHATLOAD {"proto":"sio","members":1000,"instances":2,"senders":10,"window":4,"rate":0,"size":0,"join_s":0.36,"sync":true,"sync_s":0.05,"unsynced_members":0,"seconds":2.000,"sent_measured":300,"msgs_per_s":150.0,"deliveries":300000,"deliveries_per_s":150000,"latency":{"n":300000,"p50_ms":20.500,"p99_ms":90.250,"p999_ms":95.000,"max_ms":99.000},"latency_same_instance":{"n":150000,"p50_ms":10.000,"p99_ms":50.000,"p999_ms":60.000,"max_ms":70.000},"latency_other_instance":{"n":0,"p50_ms":-1.000,"p99_ms":-1.000,"p999_ms":-1.000,"max_ms":0.000},"received_by_instance":[160000,160000],"sent":320,"expected":320000,"received":319990,"lost":10,"duplicates":2,"reordered":1,"stale":0,"stalls":3,"drain_s":0.20,"closed":1,"open_at_end":999,"server_cpu_s":0.30,"server_cpu_us_per_delivery":1.0000,"server_core_pct":15.0,"redis_cpu_s":0.01,"redis_cpu_us_per_msg":33.33,"client_core_pct":95.0,"cpu0_busy_pct":80.0,"cpu1_busy_pct":99.0}
"""


@T.case("chatload: the CHATLOAD line parsed (-1: a latency without samples, no figure); a "
        "sample from it: deliveries/s, CPU, latency, who was the limit, exactly-once failures")
def _():
    r = load.parse_chatload(CHATLOAD_OUT)
    eq((r["deliveries_per_s"], r["latency"]["p99_ms"], r["lost"]), (150000, 90.25, 10), "figures")
    eq(r["latency_other_instance"]["p99_ms"], None, "-1 read as no figure")
    eq(load.parse_chatload('CHATLOAD {"error":"only 3 of 10 members joined"}\n'),
       {"error": "only 3 of 10 members joined"}, "the join failure's line")
    try:
        load.parse_chatload("chatload: bad arguments\n")
        fail("no CHATLOAD line parsed")
    except load.LoadError:
        pass
    smp = workloads.chatload_sample(r, 1)
    eq((smp["rps"], smp["cpu_us"], smp["p50_ms"], smp["p99_ms"]), (150000, 1.0, 20.5, 90.25),
       "rate, CPU per delivery, latency")
    eq(smp["bottleneck"], "client", "chatload's core at 95 %, the servers' at 15 %")
    eq(smp["errors"], 13, "lost + duplicated + closed")
    eq(smp["p99_remote_ms"], None, "two instances: the remote p99, none here")
    eq(smp["redis_cpu_us"], 33.33, "Redis CPU per message")
    check("1 members closed by the server" in smp["problem"] and
          "10 of 320000 deliveries lost, 2 duplicated" in smp["problem"], smp["problem"])
    good = dict(r, lost=0, duplicates=0, closed=0, instances=1, client_core_pct=10.0,
                server_core_pct=97.0, server_cpu_s=1.94)
    smp = workloads.chatload_sample(good, 1)
    check("problem" not in smp and "p99_remote_ms" not in smp, "a clean run: %r" % smp)
    eq(smp["bottleneck"], "server", "the server's core at 97 %")
    smp = workloads.chatload_sample(dict(good, sync=False, unsynced_members=4), 1)
    check("4 members had not heard every sender" in smp.get("problem", ""), "sync: %r" % smp)
    smp = workloads.chatload_sample({"error": "only 3 of 10 members joined"}, 1)
    eq((smp["rps"], smp["problem"]), (None, "chatload: only 3 of 10 members joined"), "no join")
    both = workloads.with_fixed_rate(workloads.chatload_sample(good, 1),
                                     workloads.chatload_sample(dict(r, closed=0), 1), 20)
    eq((both["rps"], both["rate_rps"], both["rate_p99_ms"]), (150000, 150000, 90.25),
       "the fixed rate's figures beside the closed loop's")
    eq(both["problem"], "at 20 messages/s: 10 of 320000 deliveries lost, 2 duplicated",
       "the fixed rate's losses fail the sample")


def sio_fixture(crest_rps=700000.0, node_rps=50000.0, crest_bytes=2000.0, node_bytes=21000.0,
                redis_ok=True, crest_bottleneck="server"):
    res = results_fixture()
    res["workloads"] = {w: {"title": w, "unit": u, "better": b, "modes": ["1core"]}
                        for w, u, b in (("sio_rooms", "deliveries/s", "higher"),
                                        ("sio_conns", "bytes/conn", "lower"),
                                        ("sio_redis", "deliveries/s", "higher"))}
    res["peers"] = {"crest": {"title": "crest", "stack": "C", "serves": [], "versions": {},
                              "changed_defaults": []},
                    "sio": {"title": "Socket.IO 4", "stack": "Node.js", "serves": [],
                            "versions": {}, "changed_defaults": []}}
    res["meta"]["settings"].update(sio_rate=20, sio_members=1000)
    res["samples"] = []
    for rep in range(3):
        for peer, rps, b, bn in (("crest", crest_rps, crest_bytes, crest_bottleneck),
                                 ("sio", node_rps, node_bytes, "server")):
            base = {"mode": "1core", "peer": peer, "repeat": rep}
            res["samples"].append(dict(base, workload="sio_rooms", rps=rps, p99_ms=5.0,
                                       cpu_us=1e6 / rps, bottleneck=bn,
                                       rate_p99_ms=2.0 if peer == "crest" else 30.0))
            res["samples"].append(dict(base, workload="sio_conns", bytes_per_conn=b,
                                       rss_curve=[[0, 1024], [1000, 1024 + b * 1000 / 1024]]))
            smp = dict(base, workload="sio_redis", rps=rps / 2, p99_ms=9.0, bottleneck="server")
            if peer == "crest" and not redis_ok:
                smp = dict(base, workload="sio_redis", problem="10 of 20 deliveries lost")
            res["samples"].append(smp)
    return res


@T.case("Socket.IO targets: crest's advantage over Node.js socket.io against 10x (deliveries/s) "
        "and a tenth (memory); met, not met, capped by the load generator, or failed")
def _():
    res = sio_fixture()
    rows = {r[0]: r for r in report.sio_targets(res, report.summarize(res))}
    fan = rows["room fan-out, deliveries/s (one instance)"]
    eq((fan[1], fan[2], fan[3], fan[5]), (700000.0, 50000.0, 14.0, "met"), "14x")
    mem = rows["memory per idle Socket.IO connection, bytes"]
    eq((round(mem[3], 2), mem[5]), (10.5, "met"), "21,000 / 2,000 bytes: lower is better")
    eq(rows["room fan-out, p99 delivery latency ms (closed loop)"][5], "–", "no target for p99")
    eq(rows["room fan-out, p99 delivery latency ms at a fixed rate"][1:4], (2.0, 30.0, 15.0),
       "p99 at the fixed rate: lower is better")
    res = sio_fixture(crest_rps=400000.0, crest_bytes=2500.0, redis_ok=False,
                      crest_bottleneck="client")
    rows = {r[0]: r for r in report.sio_targets(res, report.summarize(res))}
    eq(rows["room fan-out, deliveries/s (one instance)"][5],
       "not met (capped by the load generator)", "8x, crest's runs client-bound")
    eq(rows["memory per idle Socket.IO connection, bytes"][5], "not met", "8.4x")
    eq(rows["fan-out over two instances on Redis, deliveries/s"][5],
       "failed: crest: 10 of 20 deliveries lost", "crest's Redis runs failed")
    text = report.sio_text(res)
    check("fixed rate: 20 messages/s in all to 1000 members" in text, "the settings named")
    check("| room fan-out, deliveries/s (one instance) | 400,000 | 50,000 | 8.0× | ≥ 10× | "
          "**not met (capped by the load generator)** |" in text, text[:1500])
    check("bytes per Socket.IO connection" in text and "p99 ms, other instance" in text,
          "the Socket.IO tables")
    md = report.render(res)
    check("## Socket.IO targets" in md, "the report has the targets")
    check("## Socket.IO targets" not in report.render(results_fixture()), "only with Socket.IO")
    eq(report.memory_curves(res)["sio_conns"]["sio"], [(0, 1.0), (1000, 1.0 + 21e6 / 2 ** 20)],
       "the Socket.IO memory curve")


@T.case("run: sio_conns measures a fresh server; sio_redis starts its own servers, in the "
        "plan once per repeat for each peer serving it, in no session")
def _():
    W = workloads.BY_NAME
    got = runner.sessions([W["sio_rooms"], W["sio_conns"], W["wsconns"]])
    eq([[w.name for w in s] for s in got], [["sio_conns", "sio_rooms"], ["wsconns"]],
       "sessions")

    class P:
        def __init__(self, name, stack, serves, workers_max=2):
            self.name, self.stack, self.serves, self.warmup = name, stack, serves, 0
            self.workers_max, self.measure = workers_max, None
    peers = [P("crest", "C", ["sio", "sio_redis"]), P("sio", "Node.js", ["sio", "sio_redis"], 1),
             P("ws", "Node.js", ["ws", "rooms"], 1)]
    wls = [W["sio_rooms"], W["sio_conns"], W["sio_redis"]]
    pl = runner.plan(peers, wls, runner.FULL)
    one = runner._run_s(W["sio_redis"], peers[1], runner.FULL)
    eq(round(pl["parts"]["sio_redis"], 3), round(3 * (runner._run_s(W["sio_redis"], peers[0],
                                                                   runner.FULL) + one), 3),
       "two peers x 3 repeats")
    check(one > runner._run_s(W["sio_rooms"], peers[1], runner.FULL), "two starts more")
    check(not W["sio_redis"].serves(peers[2]) and W["sio_redis"].own_servers and
          not W["sio_rooms"].own_servers, "serves, own_servers")


TOOLS = {}


def tool(name):
    """bench/tools/NAME.c built once into a scratch folder (as lib.build_tools does)."""
    if name not in TOOLS:
        d = tempfile.mkdtemp(prefix="crest-showdown-tools-")
        atexit.register(shutil.rmtree, d, True)
        lib.run_quiet(["gcc", "-std=c11", "-O2", "-Wall", "-Werror",
                       "-I" + os.path.join(ROOT, "src"), "-I" + os.path.join(ROOT, "include"),
                       "-o", os.path.join(d, name),
                       os.path.join(ROOT, "bench", "tools", name + ".c"),
                       os.path.join(ROOT, "src", "codec", "ws_frame.c"),
                       os.path.join(ROOT, "src", "core", "utf8.c"), "-lm"])
        TOOLS[name] = os.path.join(d, name)
    return TOOLS[name]


@T.case("wsmembers -s holds idle Socket.IO connections on crest's demo (open once CONNECTed), "
        "and does not count a WebSocket that never speaks Engine.IO")
def _():
    with demo(tls=False) as srv:
        p = subprocess.run([tool("wsmembers"), "-s", "-p", str(srv.port), "-n", "20", "-H", "1",
                            "-t", "10"], capture_output=True, timeout=30)
        out = p.stdout.decode()
        eq(p.returncode, 0, "exit status (%s)" % p.stderr.decode()[-300:])
        check(out.startswith("ready 20 "), out[:200])
        eq(load.parse_held(out), {"open": 20, "closed_by_server": 0}, "held")
        # /ws/echo upgrades but sends no Engine.IO open packet: no member gets to CONNECT.
        p = subprocess.run([tool("wsmembers"), "-s", "-u", "/ws/echo", "-p", str(srv.port),
                            "-n", "3", "-t", "1"], capture_output=True, timeout=30)
        eq(p.returncode, 1, "exit status")
        check("only 0 of 3 members opened" in p.stderr.decode(), p.stderr.decode()[-300:])


@T.case("lib.Redis: a redis-server on a free loopback port answers PING, and is gone once "
        "stopped")
def _():
    if not shutil.which("redis-server"):
        print("  (skipped: no redis-server; Debian's redis-server package)")
        return
    with tempfile.TemporaryDirectory() as d:
        with lib.Redis(d) as r:
            check(r.ping() and r.url == "redis://127.0.0.1:%d" % r.port, "PING %s" % r.url)
            check(r.version[0].isdigit(), "version %r" % r.version)
        check(r.proc.poll() is not None and not r.ping(), "stopped")


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
