"""The showdown's workloads: what each one sends, to which peers (those whose peer.json serves
it), and what it records per run. Every function takes the run's context and a started server
and returns one sample (a dict of numbers, plus "problem" when the peer failed it: errors,
non-2xx answers or lost messages are shown, never dropped).

A sample's keys: rps (requests or messages per second), cpu_us (the server's CPU time per
request or message, user + system over the run), p50_ms / p99_ms (latency, where the tool
measures it per request), errors, bottleneck ("server", "client": the load generator, "both",
"neither"), and workload-specific figures documented with each."""

import json
import os
import subprocess
import time

import stats
from lib import CLK_TCK, ROOT
from load import LoadError, wrk, wsload

BENCH = os.path.join(ROOT, "bench")
HERE = os.path.dirname(os.path.abspath(__file__))


class Workload:
    def __init__(self, name, title, run, needs, unit="req/s", better="higher", modes=("1core",),
                 db=False):
        self.name = name
        self.title = title
        self.run = run
        self.needs = needs  # the peer.json `serves` entries it needs
        self.unit = unit
        self.better = better
        self.modes = modes  # "1core": the server on CPU 0; "2core": on both (WORKERS=2)
        self.db = db

    def serves(self, peer):
        return all(n in peer.serves for n in self.needs)


def _problem(r, total):
    """A run's failure, if any: socket errors or non-2xx answers (over 0.1 % of requests, or any
    at all on fewer requests), as a short text."""
    errs = sum(v for v in r.get("errors", {}).values())
    bad = errs + r.get("non2xx", 0)
    if total == 0:
        return "no request completed"
    if bad > max(0, total // 1000):
        kinds = ", ".join("%s %d" % (k, v) for k, v in r.get("errors", {}).items() if v)
        return "%d of %d failed (%s%snon-2xx %d)" % (bad, total, kinds, ", " if kinds else "",
                                                     r.get("non2xx", 0))
    return None


def _http(ctx, server, path, conns=256, script=None, script_args=(), latency=True):
    url = server.url(path)
    # Warm-up (JITs, pools, caches), not counted; a JVM peer asks for more (peer.json "warmup").
    wrk(url, max(ctx.warmup, server.peer.warmup), conns, script, script_args,
        cpus=ctx.client_cpus)
    r = wrk(url, ctx.duration, conns, script, script_args, cpus=ctx.client_cpus, server=server)
    cores = len(server.cpus.split(","))
    out = {"rps": r["rps"], "requests": r["requests"], "seconds": r["seconds"],
           "cpu_us": r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else None,
           "errors": sum(r["errors"].values()) + r["non2xx"],
           "bottleneck": stats.bottleneck(r["cpu_s"], cores, r["client_cpu_s"], r["seconds"]),
           "server_cpu_pct": 100 * r["cpu_s"] / r["seconds"] if r["seconds"] else None,
           "client_cpu_pct": 100 * r["client_cpu_s"] / r["seconds"] if r["seconds"] else None}
    if latency:
        out["p50_ms"] = r["p50_us"] / 1000 if r["p50_us"] is not None else None
        out["p99_ms"] = r["p99_us"] / 1000 if r["p99_us"] is not None else None
    p = _problem(r, r["requests"])
    if p:
        out["problem"] = p
    return out


def plaintext(ctx, server):
    return _http(ctx, server, "/plaintext")


def json_(ctx, server):
    return _http(ctx, server, "/json")


def pipelined(ctx, server):
    # wrk times whole batches when pipelining: no per-request latency (BENCH.md).
    return _http(ctx, server, "/plaintext", script=os.path.join(BENCH, "pipeline.lua"),
                 script_args=(16,), latency=False)


def db(ctx, server):
    return _http(ctx, server, "/db", conns=64)


def queries(ctx, server):
    return _http(ctx, server, "/queries?queries=20", conns=64)


def fortunes(ctx, server):
    return _http(ctx, server, "/fortunes", conns=64)


def updates(ctx, server):
    return _http(ctx, server, "/updates?queries=20", conns=64)


def todos(ctx, server):
    return _http(ctx, server, "/api/todos", conns=64, script=os.path.join(HERE, "todos.lua"))


def ws_echo(ctx, server):
    r = wsload(ctx.tools, server.port, "echo", ctx.duration, ctx.warmup, 64,
               ["-w", 16, "-s", 64], server_pid=server.pid, cpus=ctx.client_cpus)
    out = {"rps": r["msgs_per_s"], "cpu_us": r.get("server_cpu_us_per_msg"),
           "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
           "errors": r.get("closed", 0)}
    if r.get("closed", 0):
        out["problem"] = "%d connections closed by the server" % r["closed"]
    return out


def rooms(ctx, server):
    """Room fan-out: ctx.members members of one room, 10 of them sending in a closed loop;
    rps counts deliveries (messages received by members) per second, p99 their latency."""
    r = wsload(ctx.tools, server.port, "fanout", ctx.duration, ctx.warmup, ctx.members,
               ["-S", 10, "-w", 4, "-r", "showdown"], server_pid=server.pid,
               cpus=ctx.client_cpus)
    out = {"rps": r["msgs_per_s"], "cpu_us": r.get("server_cpu_us_per_msg"),
           "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
           "errors": r.get("closed", 0), "members": ctx.members}
    if r.get("closed", 0):
        out["problem"] = "%d members closed by the server" % r["closed"]
    return out


def healthz_cpu(ctx, server):
    """GET /healthz p50/p99, one at a time, while 4 clients post PBKDF2 jobs (100,000 rounds)
    back to back: does CPU work stall everyone else? rps: hash jobs per second."""
    argv = ["taskset", "-c", ctx.client_cpus, "/usr/bin/python3",
            os.path.join(BENCH, "peers", "cpu", "probe.py"), str(server.port), "4", "100000",
            str(ctx.warmup), str(ctx.duration), "0.01"]
    t0 = server.cpu_ticks()
    p = subprocess.run(argv, capture_output=True, timeout=ctx.duration + ctx.warmup + 120)
    if p.returncode != 0:
        raise LoadError("probe.py: %s" % p.stderr.decode(errors="replace")[-300:])
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    out = {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "rps": r["hashes_per_s"],
           "errors": r["hash_errors"],
           "cpu_us": None, "server_cpu_pct": 100 * (server.cpu_ticks() - t0) / CLK_TCK /
           (ctx.duration + ctx.warmup)}
    if r["hash_errors"]:
        out["problem"] = "%d hash jobs failed" % r["hash_errors"]
    return out


def hash_parallel(ctx, server):
    """The same PBKDF2 batch (10,000 rounds per job) from 8 clients: jobs per second across the
    cores the server has (the two-core table is the point: Java threads, Node workers, Python
    processes, crest's worker pool)."""
    script = os.path.join(HERE, "hash.lua")
    return _http(ctx, server, "/work/hash?rounds=10000", conns=8, script=script)


def coldstart(ctx, peer, logdir, db):
    """From exec to the first complete 200 on /healthz, and the idle RSS right after (MiB), by
    starting the peer ctx.cold_runs times. Not a wrk run: the tool starts the server itself."""
    from lib import Server, SERVER_CPU
    times, rss = [], []
    for _ in range(ctx.cold_runs):
        with Server(peer, 1, SERVER_CPU, logdir, db=db) as s:
            times.append(s.ready_s * 1000)
            time.sleep(0.5)  # what the runtime does right after it answered (a JIT, a GC)
            rss.append(s.rss_kib() / 1024)
    return {"start_ms": stats.median(times), "idle_rss_mib": stats.median(rss),
            "rps": None, "cpu_us": None}


def conns(ctx, server):
    """Memory per idle keep-alive connection: RSS with ctx.idle_conns used, idle keep-alive
    connections (bench/tools/idleconn, 8 source addresses) minus RSS before, over the count;
    and how many such connections fit in a 1 GiB budget beside the idle server."""
    before = server.rss_kib()
    argv = ["taskset", "-c", ctx.client_cpus, os.path.join(ctx.tools, "idleconn"), "-p",
            str(server.port), "-u", "/plaintext", "-n", str(ctx.idle_conns), "-t", "120",
            "-H", "60"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        if not line.startswith("ready"):
            p.kill()
            err = p.stderr.read().decode(errors="replace")[-300:]
            return {"problem": "could not hold %d connections: %s" % (ctx.idle_conns, err.strip()),
                    "rps": None, "cpu_us": None}
        time.sleep(1.0)
        after = server.rss_kib()
    finally:
        if p.poll() is None:
            p.terminate()
        p.wait(timeout=30)
    per = (after - before) * 1024 / ctx.idle_conns
    return {"bytes_per_conn": per, "idle_rss_mib": before / 1024,
            "conns_in_1gib": int((1 << 30) / per) if per > 0 else None, "rps": None,
            "cpu_us": None}


WORKLOADS = [
    Workload("plaintext", "GET /plaintext, 256 connections", plaintext, ["plaintext"],
             modes=("1core", "2core")),
    Workload("json", "GET /json, 256 connections", json_, ["json"], modes=("1core", "2core")),
    Workload("pipelined", "GET /plaintext pipelined 16 deep", pipelined, ["plaintext"]),
    Workload("db", "GET /db (PostgreSQL), 64 connections", db, ["db"], db=True,
             modes=("1core", "2core")),
    Workload("queries", "GET /queries?queries=20", queries, ["queries"], db=True),
    Workload("fortunes", "GET /fortunes", fortunes, ["fortunes"], db=True),
    Workload("updates", "GET /updates?queries=20", updates, ["updates"], db=True),
    Workload("todos", "REST CRUD mix on /api/todos (60% read, 20% create, 10% patch, "
             "10% list)", todos, ["todos"], db=True),
    Workload("ws", "WebSocket echo, 64 connections x 16 in flight, 64 B", ws_echo, ["ws"],
             unit="msg/s"),
    Workload("rooms", "Room fan-out: 10 senders in a room of N members", rooms, ["rooms"],
             unit="deliveries/s"),
    Workload("healthz_cpu", "GET /healthz while 4 clients hash (PBKDF2, 100k rounds)",
             healthz_cpu, ["hash"], unit="ms p99", better="lower"),
    Workload("hash_parallel", "PBKDF2 jobs (10k rounds), 8 clients", hash_parallel, ["hash"],
             unit="jobs/s", modes=("1core", "2core")),
    Workload("conns", "Memory per idle keep-alive connection", conns, ["plaintext"],
             unit="bytes/conn", better="lower"),
    Workload("coldstart", "Cold start (exec to first 200) and idle RSS", coldstart, [],
             unit="ms", better="lower"),
]

BY_NAME = {w.name: w for w in WORKLOADS}
