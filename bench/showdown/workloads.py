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
from load import LoadError, chatload, chatrest, parse_held, wrk, wsload

BENCH = os.path.join(ROOT, "bench")
HERE = os.path.dirname(os.path.abspath(__file__))


class Workload:
    def __init__(self, name, title, run, needs, unit="req/s", better="higher", modes=("1core",),
                 db=False, own_servers=False):
        self.name = name
        self.title = title
        self.run = run
        self.needs = needs  # the peer.json `serves` entries it needs
        self.unit = unit
        self.better = better
        self.modes = modes  # "1core": the server on CPU 0; "2core": on both (WORKERS=2)
        self.db = db
        # The workload starts the peer's servers itself (two instances on Redis): run.py calls
        # run(ctx, peer, logdir, redis) once per repeat instead of giving it a started server.
        self.own_servers = own_servers

    def serves(self, peer):
        """The peer answers every endpoint this needs and is measured on it (peer.json
        `measure`, when given, names the workloads it is measured on)."""
        return all(n in peer.serves for n in self.needs) and \
            (peer.measure is None or self.name in peer.measure)


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
    # Warm-up (JITs, pools, caches), not counted. A JVM peer asks for more (peer.json "warmup")
    # for the first workload of a start, which compiles the stack every workload shares (the
    # HTTP server, JSON, the pool); each later one warms its own code in ctx.warmup, as others.
    warm = ctx.warmup if getattr(server, "jit_warm", False) else max(ctx.warmup,
                                                                    server.peer.warmup)
    if warm > 0:  # QUICK runs none, but a JIT's own
        wrk(url, warm, conns, script, script_args, cpus=ctx.client_cpus)
    server.jit_warm = True
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


def _ws_common(r, server, wall_s):
    """What echo and fan-out share: the rate, CPU per message, latency, and which side was the
    limit. wsload's own CPU time covers its whole run (connecting, warm-up): its share of the
    wall time stands for its share of the measured seconds."""
    secs = r.get("secs") or 0
    client = r["client_cpu_s"] * secs / wall_s if wall_s and r.get("client_cpu_s") else None
    return {"rps": r["msgs_per_s"], "cpu_us": r.get("server_cpu_us_per_msg"),
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "errors": r.get("closed", 0),
            "bottleneck": stats.bottleneck(r.get("server_cpu_s"), len(server.cpus.split(",")),
                                           client, secs),
            "client_cpu_pct": 100 * client / secs if client is not None and secs else None}


def ws_echo(ctx, server):
    t0 = time.monotonic()
    r = wsload(ctx.tools, server.port, "echo", ctx.duration, ctx.warmup, 64,
               ["-w", 16, "-s", 64], server_pid=server.pid, cpus=ctx.client_cpus)
    out = _ws_common(r, server, time.monotonic() - t0)
    if r.get("closed", 0):
        out["problem"] = "%d connections closed by the server" % r["closed"]
    return out


def rooms(ctx, server):
    """Room fan-out: ctx.members members of one room, 10 of them sending in a closed loop;
    rps counts deliveries (messages received by members) per second, p99 their latency."""
    t0 = time.monotonic()
    r = wsload(ctx.tools, server.port, "fanout", ctx.duration, ctx.warmup, ctx.members,
               ["-S", 10, "-w", 4, "-r", "showdown"], server_pid=server.pid,
               cpus=ctx.client_cpus)
    out = _ws_common(r, server, time.monotonic() - t0)
    out["members"] = ctx.members
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


def settled_rss(server, step_s=0.25, max_s=2.0):
    """The server's RSS (KiB) once it stops moving: read every step_s until two reads differ by
    under 0.5 %, max_s at most (a runtime that frees or grows lazily after the last accept)."""
    last = server.rss_kib()
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        time.sleep(step_s)
        now = server.rss_kib()
        if abs(now - last) <= 0.005 * max(last, 1):
            return now
        last = now
    return last


def batches(steps):
    """Cumulative connection counts -> the size of each batch that reaches the next one:
    [1000, 2000, 5000, 10000] -> [1000, 1000, 3000, 5000]."""
    out, prev = [], 0
    for n in steps:
        if n <= prev:
            raise ValueError("steps must rise: %r" % (steps,))
        out.append(n - prev)
        prev = n
    return out


def per_conn(curve):
    """From [(connections, RSS KiB)] starting at (0, idle RSS): bytes per connection at the
    largest count held, over all of them (BENCH.md: RSS with N minus RSS with none, over N)."""
    if len(curve) < 2 or curve[-1][0] <= 0:
        return None
    return (curve[-1][1] - curve[0][1]) * 1024 / curve[-1][0]


def _hold_ramp(ctx, server, argv_for, steps, what):
    """Opens idle connections in batches (one holder process per batch, so none nears the
    20,000 open files a process may have), reading the server's RSS once each batch is held.
    argv_for(n, i): the holder's argv for batch i of n connections; it prints `ready` once they
    are open and what it held (parse_held) when stopped. Returns the sample."""
    procs, curve, problem, closed = [], [], None, 0
    curve.append((0, settled_rss(server, max_s=1.0)))
    try:
        for i, n in enumerate(batches(steps)):
            p = subprocess.Popen(argv_for(n, i), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(p)
            line = p.stdout.readline().decode()
            if not line.startswith("ready"):
                p.kill()
                err = p.stderr.read().decode(errors="replace")[-300:]
                problem = "could not hold %d %s: %s" % (steps[i], what, err.strip())
                break
            curve.append((steps[i], settled_rss(server)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            held = parse_held(out.decode(errors="replace"))
            if held:
                closed += held["closed_by_server"]
    out = {"rss_curve": curve, "idle_rss_mib": curve[0][1] / 1024, "held": curve[-1][0],
           "closed_by_server": closed, "rps": None, "cpu_us": None}
    per = per_conn(curve)
    if per is not None:
        out["bytes_per_conn"] = per
        out["conns_in_1gib"] = int((1 << 30) / per) if per > 0 else None
    if closed and not problem:
        problem = "the server closed %d of the %d %s it was holding" % (closed, curve[-1][0],
                                                                          what)
    if problem:
        out["problem"] = problem
    return out


def conns(ctx, server):
    """Memory per idle keep-alive connection: the server's RSS with 0 and then each of
    ctx.conn_steps used, idle keep-alive connections held (bench/tools/idleconn, 8 source
    addresses; the RSS curve is the memory chart), bytes per connection at the last step, and
    how many fit in a 1 GiB budget beside the idle server. A connection the server closes while
    held is a failure (a held count it did not hold)."""
    def argv(n, i):
        return ["taskset", "-c", ctx.client_cpus, os.path.join(ctx.tools, "idleconn"), "-p",
                str(server.port), "-u", "/plaintext", "-n", str(n), "-t", "120", "-H", "300"]
    return _hold_ramp(ctx, server, argv, ctx.conn_steps, "keep-alive connections")


def wsconns(ctx, server):
    """Memory per idle WebSocket, as conns: ctx.conn_steps WebSockets on /ws/echo (upgraded,
    then silent; bench/tools/wsmembers -u, each batch from its own 8 source addresses)."""
    def argv(n, i):
        return ["taskset", "-c", ctx.client_cpus, os.path.join(ctx.tools, "wsmembers"), "-p",
                str(server.port), "-u", "/ws/echo", "-n", str(n), "-i", "w%d" % i, "-b",
                str(1 + 8 * i), "-k", "8", "-t", "120", "-H", "300"]
    return _hold_ramp(ctx, server, argv, ctx.conn_steps, "WebSockets")


# ---------------------------------------------------------------- Socket.IO -----------------
# The benchmark (bench/sio.sh): crest's Socket.IO server beside Node.js socket.io 4, the
# peers whose peer.json serves "sio" (and "sio_redis"). Load: bench/tools/chatload -x sio,
# Socket.IO 5 over WebSocket only (Engine.IO open, CONNECT with auth {name}, `join` with an ack,
# `chat` events; the server's pings answered), exactly-once checked per member and sender.

SIO_SENDERS = 10  # members that also send, as rooms and bench/redis.sh
SIO_WINDOW = 4    # messages per sender not yet at every member (bench/redis.sh says why 4)
# The closed loop's latency is mostly the time to work through what is in flight (its p99 says
# how fast the server is, again); a second pass at a fixed rate, which Node.js socket.io carries
# on one core too (ctx.sio_rate messages/s in total, x members deliveries/s, as bench/redis.sh's
# rate workload), gives the latency of both at the same load.


def with_fixed_rate(out, fixed, rate):
    """Adds the fixed-rate pass's latency (rate_p50_ms, rate_p99_ms, rate_rps: its deliveries
    per second) to the closed loop's sample; its problems (losses) are the sample's too."""
    out["rate_rps"] = fixed.get("rps")
    out["rate_p50_ms"] = fixed.get("p50_ms")
    out["rate_p99_ms"] = fixed.get("p99_ms")
    if fixed.get("problem"):
        out["problem"] = "; ".join(filter(None, [out.get("problem"), "at %d messages/s: %s" % (
            rate, fixed["problem"])]))
    return out


def chatload_sample(r, server_cores=1):
    """A sample from chatload's figures (load.parse_chatload): rps = deliveries per second
    (unique messages received by all members over the measured seconds), cpu_us = the
    servers' CPU per delivery, p50/p99/p999/max of the delivery latency (now minus the send time
    the text carries), and what exactly-once found. With more than one instance also the p99 of
    deliveries to members on another instance than the sender's (through Redis) and Redis's CPU
    per message. A problem when a member was closed, a delivery was lost or duplicated, the
    members could not all join, or not every member heard every sender before the load began."""
    if "deliveries_per_s" not in r:
        return {"rps": None, "cpu_us": None,
                "problem": "chatload: %s" % (r.get("error") or "no figures")}
    secs = r.get("seconds") or 0
    lat = r.get("latency") or {}
    client_s = r.get("client_core_pct", 0) * secs / 100
    out = {"rps": r["deliveries_per_s"],
           "cpu_us": r.get("server_cpu_us_per_delivery") or None,
           "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"),
           "p999_ms": lat.get("p999_ms"), "max_ms": lat.get("max_ms"),
           "msgs_per_s": r.get("msgs_per_s"), "members": r.get("members"),
           "instances": r.get("instances", 1), "join_s": r.get("join_s"),
           "expected": r.get("expected"), "received": r.get("received"),
           "lost": r.get("lost", 0), "duplicates": r.get("duplicates", 0),
           "reordered": r.get("reordered", 0), "stalls": r.get("stalls", 0),
           "errors": r.get("lost", 0) + r.get("duplicates", 0) + r.get("closed", 0),
           "server_cpu_pct": r.get("server_core_pct"), "client_cpu_pct": r.get("client_core_pct"),
           "bottleneck": stats.bottleneck(r.get("server_cpu_s"), server_cores, client_s, secs)}
    if r.get("instances", 1) > 1:
        out["p99_remote_ms"] = (r.get("latency_other_instance") or {}).get("p99_ms")
        out["redis_cpu_us"] = r.get("redis_cpu_us_per_msg")
    probs = []
    if r.get("error"):
        probs.append(r["error"])
    if r.get("closed"):
        probs.append("%d members closed by the server" % r["closed"])
    if out["lost"] or out["duplicates"]:
        probs.append("%d of %d deliveries lost, %d duplicated" % (
            out["lost"], out["expected"] or 0, out["duplicates"]))
    if r.get("sync") is False:
        probs.append("%d members had not heard every sender after 30 s of sync messages"
                     % r.get("unsynced_members", 0))
    if probs:
        out["problem"] = "; ".join(probs)
    return out


def sio_rooms(ctx, server):
    """Socket.IO room fan-out: ctx.sio_members Socket.IO clients (WebSocket only) in one room,
    SIO_SENDERS of them sending `chat` in a closed loop of SIO_WINDOW messages each; deliveries
    per second, their latency and the server's CPU per delivery (chatload_sample); then the
    latency at ctx.sio_rate messages/s (with_fixed_rate)."""
    cores = len(server.cpus.split(","))
    r = chatload(ctx.tools, [server.port], ctx.sio_members, ctx.duration, ctx.warmup,
                 ["-S", SIO_SENDERS, "-w", SIO_WINDOW, "-r", "showdown-sio"],
                 server_pids=[server.pid], cpus=ctx.client_cpus)
    fixed = chatload(ctx.tools, [server.port], ctx.sio_members, ctx.duration, ctx.warmup,
                     ["-S", SIO_SENDERS, "-R", ctx.sio_rate, "-r", "showdown-sio-rate"],
                     server_pids=[server.pid], cpus=ctx.client_cpus)
    return with_fixed_rate(chatload_sample(r, cores), chatload_sample(fixed, cores),
                           ctx.sio_rate)


def sio_conns(ctx, server):
    """Memory per idle Socket.IO connection, as wsconns: ctx.conn_steps Socket.IO clients over
    WebSocket only, each connected to the main namespace (auth {name}) and then silent but for
    answering the server's Engine.IO pings (bench/tools/wsmembers -s)."""
    def argv(n, i):
        return ["taskset", "-c", ctx.client_cpus, os.path.join(ctx.tools, "wsmembers"), "-s",
                "-p", str(server.port), "-n", str(n), "-i", "s%d" % i, "-b", str(1 + 8 * i),
                "-k", "8", "-t", "120", "-H", "300"]
    return _hold_ramp(ctx, server, argv, ctx.conn_steps, "Socket.IO connections")


def sio_redis(ctx, peer, logdir, redis):
    """sio_rooms across two instances of the peer on one Redis (the tool's own redis-server, on
    the load generator's core as bench/redis.sh): both instances on CPU 0 with one core's worth
    each (WORKERS=1), so the figure is what one core does for the whole two-instance room;
    members alternate between them, so half the deliveries cross Redis (p99_remote_ms). A peer
    that dies during the run fails it."""
    from lib import Server, SERVER_CPU
    servers = []
    try:
        for tag in ("a", "b"):
            servers.append(Server(peer, 1, SERVER_CPU, logdir, redis=redis.url,
                                  tag="-redis-" + tag))
        runs = []
        for extra, suffix in ((["-w", SIO_WINDOW], ""), (["-R", ctx.sio_rate], "-rate")):
            runs.append(chatload(ctx.tools, [s.port for s in servers], ctx.sio_members,
                                 ctx.duration, ctx.warmup,
                                 ["-S", SIO_SENDERS] + extra + ["-r", "showdown-sio" + suffix],
                                 server_pids=[s.pid for s in servers], redis_pid=redis.pid,
                                 cpus=ctx.client_cpus))
        r, fixed = runs
        dead = [t for t, s in zip("ab", servers) if not s.alive()]
    finally:
        for s in servers:
            s.stop()
    out = with_fixed_rate(chatload_sample(r, 1), chatload_sample(fixed, 1), ctx.sio_rate)
    if dead:
        out["problem"] = "; ".join(filter(None, [out.get("problem"), "instance %s died" %
                                                 " and ".join(dead)]))
    return out


def chat_rest(ctx, server):
    """The mixed scenario: users that each hold a chat WebSocket in a room of 20 and call
    /api/todos once a second (the todos.lua mix) and chat once every 5 s, stepped up through
    ctx.chat_steps (bench/tools/chatrest) until the REST or the delivery p99 passes 100 ms.
    users: the last step under it; per step the REST and chat p50/p99 (the chart's curve)."""
    # Each step is warmed by the ones below it: a step of its own duration, no warm-up but the
    # first's.
    r = chatrest(ctx.tools, server.port, ctx.chat_steps, ctx.duration, 0,
                 server_pid=server.pid, cpus=ctx.client_cpus)
    steps = r["steps"]
    out = {"users": r["users"], "stopped": r["stopped"], "limit_ms": r["limit_ms"],
           "steps": steps, "rps": None, "cpu_us": None}
    ok = [s for s in steps if s["users"] == r["users"]]
    if ok:
        s = ok[0]
        out.update({"rest_p99_ms": s["rest_p99_ms"], "chat_p99_ms": s["chat_p99_ms"],
                    "rest_rps": s["rest"] / s["secs"],
                    "server_cpu_pct": 100 * s["server_cpu_s"] / s["secs"],
                    "client_cpu_pct": 100 * s["client_cpu_s"] / s["secs"],
                    "bottleneck": stats.bottleneck(s["server_cpu_s"], len(server.cpus.split(",")),
                                                   s["client_cpu_s"], s["secs"])})
    if not steps:
        out["problem"] = "no step measured: %s" % r["stderr"].strip()
    elif r["stopped"] == "errors" and r["users"] == 0:
        last = steps[-1]
        out["problem"] = "%d REST errors, %d connections closed at %d users" % (
            last["rest_errors"], last["closed"], last["users"])
    return out


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
    Workload("wsconns", "Memory per idle WebSocket (/ws/echo)", wsconns, ["ws"],
             unit="bytes/conn", better="lower"),
    Workload("chatrest", "Chat + REST users (a chat WebSocket each, /api/todos 1/s, a message "
             "every 5 s, rooms of 20) until p99 > 100 ms", chat_rest, ["rooms", "todos"],
             unit="users", db=True),
    Workload("sio_rooms", "Socket.IO room fan-out: 10 senders in a room of N members (WebSocket "
             "transport)", sio_rooms, ["sio"], unit="deliveries/s"),
    Workload("sio_conns", "Memory per idle Socket.IO connection (WebSocket transport)",
             sio_conns, ["sio"], unit="bytes/conn", better="lower"),
    Workload("sio_redis", "Socket.IO room fan-out over two instances on one Redis (both on CPU "
             "0), members split over both", sio_redis, ["sio", "sio_redis"],
             unit="deliveries/s", own_servers=True),
    Workload("coldstart", "Cold start (exec to first 200) and idle RSS", coldstart, [],
             unit="ms", better="lower"),
]

BY_NAME = {w.name: w for w in WORKLOADS}
