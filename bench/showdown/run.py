#!/usr/bin/python3
"""The showdown: every peer of bench/peers (*.peer.json) on every workload it serves, crest
among them, side by side in one invocation; then the report (report.py).

    make showdown              # full: 3 interleaved repeats, 3 s counted runs (about 40 min)
    make showdown QUICK=1      # every workload once, 1 s runs (about 6 min)
    bench/showdown/run.py [--quick] [--peers a,b] [--workloads x,y] [--out DIR]
    bench/showdown/run.py --plan [--quick] [--peers a,b] [--workloads x,y]   # the time budget

Method (BENCH.md): the server pinned to CPU 0 with WORKERS=1 (one core each), the load generator
(wrk, bench/tools) and PostgreSQL on CPU 1; the two-core table gives the server both cores
(WORKERS=2) and the load generator shares them (its share is in the report). Each repeat runs
every peer once, in an order that rotates between repeats; each counted run follows a warm-up.
Every peer is checked against bench/peers/SHOWDOWN.md first (bench/showdown/check.py): a
workload it fails is shown failed, not measured. Writes bench/results/DATE-showdown/:
results.json (every sample), report.md, charts (PNG), logs/."""

import argparse
import atexit
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check  # noqa: E402
import lib  # noqa: E402
import report  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

# About 185 (peer, workload, mode) runs per repeat: the full run's 3 repeats of a 1 s warm-up and
# a 2 s count fit in about 40 minutes on this 2-core machine, the quick run's one repeat of 1 s
# counts without warm-up (a JIT's own warm-up excepted) in about 6 (--plan prints the budget;
# results.json's meta.timing what each part really took). A 2 s count is 200,000 requests or
# more for the fast servers: enough for a median of three, not for a tail latency of its own.
# conn_steps: idle connections held at once for the memory curve (conns, wsconns, sio_conns), the
# last one the per-connection figure; chat_steps: the chat + REST users, stepped up until p99 >
# 100 ms; sio_members: the Socket.IO room (sio_rooms, sio_redis), 1,000 in both: the issue's
# figure, and joining them takes about a second even for Node.js; sio_rate: messages/s in total
# of their fixed-rate pass (x 1,000 deliveries/s), which Node.js socket.io carries on one core.
# Cold start is measured in one pass, after the last repeat: cold_runs starts (BENCH.md: median
# of five); the machine's noise matters little to it, and nine starts per peer cost minutes.
# Memory per connection (MEMORY) is measured in the first repeat only: RSS does not move with the
# machine's load as throughput does, and the idle connections' steps take minutes per pass.
# two_core: the workloads of the two-core table (QUICK keeps only the one it is about).
FULL = {"repeats": 3, "duration": 2, "warmup": 1, "cold_runs": 5,
        "two_core": ["plaintext", "json", "db", "hash_parallel"],
        "conn_steps": [1000, 2000, 5000, 10000], "idle_conns": 10000, "members": 1000,
        "chat_steps": [100, 300, 1000, 2000, 3000, 5000], "sio_members": 1000,
        "sio_rate": 20}
QUICK = {"repeats": 1, "duration": 1, "warmup": 0, "cold_runs": 1, "two_core": ["hash_parallel"],
         "conn_steps": [500, 2000], "idle_conns": 2000, "members": 200,
         "chat_steps": [200, 2000], "sio_members": 1000,
         "sio_rate": 20}

# For --plan: seconds from exec to the first 200 and from SIGTERM to exit, by stack (measured
# on this machine; results.json's meta.timing has the real ones of a run), and the other fixed
# costs. An estimate, to see where the time goes before spending it.
START_S = {"C": 0.1, "Node.js": 0.6, "Python": 1.2, "Java": 1.5}
STOP_S = 0.5
QUIET_S = 0.6        # wait_quiet on a quiet machine: one 0.5 s look, plus polling
CONNECT_PER_S = 4000  # connections (or WebSocket handshakes) a peer takes per second, roughly


def _run_s(w, p, s, first=False):
    """Seconds one (workload, peer) run takes, by the workload's shape; first: the first wrk
    workload of a server start (a JIT's longer warm-up)."""
    warm = max(s["warmup"], p.warmup) if first else s["warmup"]
    if w.name in MEMORY:
        return 1.0 + 0.5 * len(s["conn_steps"]) + s["conn_steps"][-1] / CONNECT_PER_S
    if w.name == "chatrest":
        steps = s["chat_steps"]
        return len(steps) * (s["duration"] + 1.2) + steps[-1] * 2 / CONNECT_PER_S
    if w.name == "rooms":
        return warm + s["duration"] + 1.5 + s["members"] / CONNECT_PER_S
    if w.name == "ws":
        return warm + s["duration"] + 0.3
    if w.name in ("sio_rooms", "sio_redis"):
        # chatload twice (the closed loop, then the fixed rate): joining, a sync round, warm-up,
        # the run, the drain (under a second when nothing is lost), the members' leaving;
        # sio_redis also starts and stops two instances.
        run = 2 * (warm + s["duration"] + 1.5 + s["sio_members"] / CONNECT_PER_S)
        if w.own_servers:
            run += QUIET_S + 2 * (START_S.get(p.stack, 1.0) + STOP_S)
        return run
    return warm + s["duration"] + 0.3


def plan(peers, wls, s):
    """The time budget: {"total_s", "parts": {part: seconds}} for these peers and workloads
    with settings s, counting what run.py does (contract checks, each repeat's server starts and
    runs, cold start), with the estimates above."""
    parts = {}

    def add(k, v):
        parts[k] = parts.get(k, 0.0) + v
    for p in peers:
        if any(w.serves(p) and w.needs for w in wls):
            add("contract checks", START_S.get(p.stack, 1.0) + STOP_S + 2.0)
    for rep in range(s["repeats"]):
        for mode in ("1core", "2core"):
            for p in peers:
                todo = [w for w in wls if mode in w.modes and w.serves(p) and
                        w.name != "coldstart" and not w.own_servers and
                        (mode == "1core" or w.name in s["two_core"]) and
                        (rep == 0 or w.name not in MEMORY)]
                for w in wls:
                    if mode == "1core" and w.own_servers and w.serves(p):
                        add(w.name, _run_s(w, p, s))
                if not todo or (mode == "2core" and p.workers_max < 2):
                    continue
                add("server starts and stops", len(sessions(todo)) *
                    (QUIET_S + START_S.get(p.stack, 1.0) + STOP_S))
                for sess in sessions(todo):
                    for i, w in enumerate(sess):
                        add(w.name, _run_s(w, p, s, first=i == 0 or
                                           sess[i - 1].name in MEMORY))
    if any(w.name == "coldstart" for w in wls):
        for p in peers:
            add("coldstart", QUIET_S + s["cold_runs"] * (START_S.get(p.stack, 1.0) + 0.5 +
                                                         STOP_S))
    return {"total_s": sum(parts.values()), "parts": parts}


def plan_text(pl):
    lines = ["%-26s %6.0f s  %4.1f min" % (k, v, v / 60) for k, v in
             sorted(pl["parts"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines + ["%-26s %6.0f s  %4.1f min" % ("total (estimated)", pl["total_s"],
                                                              pl["total_s"] / 60)])


MEMORY = ("conns", "wsconns", "sio_conns")


def sessions(todo):
    """The server starts one peer's workloads of a mode take: [[workload, ...], ...]. A memory
    workload measures a fresh server (before any load has grown its heaps): the first runs
    first on the shared start, every further one on a start of its own."""
    mem = [w for w in todo if w.name in MEMORY]
    rest = [w for w in todo if w.name not in MEMORY]
    if not mem:
        return [rest]
    return [[mem[0]] + rest] + [[w] for w in mem[1:]]


class Ctx:
    def __init__(self, settings, tools):
        self.__dict__.update(settings)
        self.tools = tools
        self.client_cpus = lib.CLIENT_CPU


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", help="comma-separated peer names (default: all)")
    ap.add_argument("--workloads", help="comma-separated workloads (default: all)")
    ap.add_argument("--out", help="the results folder (default: bench/results/DATE-showdown)")
    ap.add_argument("--plan", action="store_true",
                    help="print the time budget of this selection and exit (runs nothing)")
    ap.add_argument("--no-readme", action="store_true",
                    help="a full run rewrites README's claims section; not with this")
    a = ap.parse_args(argv)
    settings = dict(QUICK if a.quick else FULL)
    peers = lib.load_peers(a.peers.split(",") if a.peers else None)
    wls = [w for w in WORKLOADS if not a.workloads or w.name in a.workloads.split(",")]
    if a.workloads and len(wls) != len(a.workloads.split(",")):
        raise SystemExit("unknown workloads: %s (known: %s)" % (
            ", ".join(sorted(set(a.workloads.split(",")) - {w.name for w in wls})),
            ", ".join(w.name for w in WORKLOADS)))
    if a.plan:
        print(plan_text(plan(peers, wls, settings)))
        return 0
    t_start = time.monotonic()
    timing = {}

    def spent(part, t0):
        timing[part] = round(timing.get(part, 0.0) + time.monotonic() - t0, 2)
    out = a.out or os.path.join(lib.ROOT, "bench", "results",
                                time.strftime("%Y-%m-%d-%H%M%S") + "-showdown")
    logdir = os.path.join(out, "logs")
    os.makedirs(logdir, exist_ok=True)
    cmd = "make showdown" + (" QUICK=1" if a.quick else "")
    if a.peers or a.workloads:
        cmd = "bench/showdown/run.py%s%s%s" % (" --quick" if a.quick else "",
                                               " --peers " + a.peers if a.peers else "",
                                               " --workloads " + a.workloads if a.workloads else "")
    lib.log("showdown: %d peers, %d workloads, %s -> %s" % (len(peers), len(wls),
                                                             "quick" if a.quick else "full", out))

    # ---- set-up: packages, peers' dependencies and builds, the load tools, PostgreSQL
    lib.apt_install(["wrk", "gnuplot-nox", "postgresql", "python3-websockets", "gcc"] +
                    (["redis-server"] if any(w.own_servers for w in wls) else []) +
                    [d for p in peers for d in p.debs])
    usable = []
    for p in peers:
        try:
            lib.prepare(p)
            usable.append(p)
        except (RuntimeError, OSError) as e:
            lib.log("%s: set-up failed, left out: %s" % (p.name, e))
    tools = lib.build_tools(os.path.join(out, "tools"))
    results = {"meta": {"machine": lib.machine(), "tools": lib.tool_versions(), "command": cmd,
                        "quick": a.quick, "settings": settings,
                        "cpus": {"server": lib.SERVER_CPU, "client": lib.CLIENT_CPU,
                                 "postgresql": lib.CLIENT_CPU, "both": lib.BOTH_CPUS}},
               "peers": {}, "workloads": {}, "samples": []}
    for w in wls:
        results["workloads"][w.name] = {"title": w.title, "unit": w.unit, "better": w.better,
                                        "modes": list(w.modes)}
    for p in peers:
        results["peers"][p.name] = {"title": p.title, "stack": p.stack, "serves": p.serves,
                                    "workers_hint": p.workers_hint,
                                    "changed_defaults": p.changed_defaults,
                                    "versions": lib.versions(p) if p in usable else {},
                                    "setup_failed": p not in usable}
    pg = None
    if any(w.db for w in wls) and any(any(w.db and w.serves(p) for w in wls) for p in usable):
        import pg as pgmod
        pg = pgmod.Postgres(cpu=lib.CLIENT_CPU)
        results["meta"]["tools"]["postgresql"] = pg.version
    # One redis-server for the workloads that span instances over Redis (sio_redis), on the load
    # generator's core (bench/redis.sh says why), for the whole run.
    redis, redis_problem = None, None
    if any(w.own_servers and w.serves(p) for w in wls for p in usable):
        try:
            redis = lib.Redis(os.path.join(out, "redis"), cpu=lib.CLIENT_CPU)
            atexit.register(redis.stop)  # also when the run is interrupted
            results["meta"]["tools"]["redis-server"] = redis.version
            results["meta"]["cpus"]["redis"] = lib.CLIENT_CPU
        except (RuntimeError, OSError) as e:
            lib.log("redis-server: %s (its workloads fail)" % e)
            redis_problem = "redis-server: %s" % e
    ctx = Ctx(settings, tools)

    def save():
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)

    def sample(w, mode, p, rep, data):
        data.update({"workload": w.name, "mode": mode, "peer": p.name, "repeat": rep})
        results["samples"].append(data)
        if "problem" in data:
            lib.log("  %-14s %-6s %-16s FAILED: %s" % (w.name, mode, p.name, data["problem"]))
        else:
            shown = ["%s=%.4g" % (k, data[k]) for k in ("rps", "cpu_us", "p99_ms",
                                                         "bytes_per_conn", "start_ms", "users")
                     if isinstance(data.get(k), (int, float))]
            lib.log("  %-14s %-6s %-16s %s" % (w.name, mode, p.name, " ".join(shown)))

    spent("set-up", t_start)
    # ---- the contract, once per peer
    t_contract = time.monotonic()
    failed_checks = {}
    for p in usable:
        names = sorted({n for w in wls if w.serves(p) for n in w.needs} & set(check.WORKLOADS))
        if not names:
            continue
        try:
            with lib.Server(p, 1, lib.SERVER_CPU, logdir, db=pg.url() if pg else None) as s:
                if pg and "db" in p.serves:
                    s.wait_for("/db")
                probs = check.check(s.url(), names, pg.url() if pg else None, p.ready)
        except RuntimeError as e:
            probs = [str(e)]
        for pr in probs:
            lib.log("%s: contract: %s" % (p.name, pr))
        failed_checks[p.name] = probs
        results["peers"][p.name]["contract_problems"] = probs
    spent("contract checks", t_contract)

    def contract_problem(p, w):
        probs = failed_checks.get(p.name, [])
        hits = [pr for pr in probs if any(check.ENDPOINTS.get(n, "?") in pr for n in w.needs)]
        if any("ready" in pr or "exited" in pr for pr in probs):
            hits = probs
        return hits[0] if hits else None

    def run_session(p, mode, rep, todo, workers, cpus):
        """One server start: the workloads of todo on it, in order."""
        t0 = time.monotonic()
        busy = lib.wait_quiet()
        spent("quiet waits", t0)
        t0 = time.monotonic()
        try:
            server = lib.Server(p, workers, cpus, logdir, db=pg.url() if pg else None)
        except RuntimeError as e:
            spent("server starts", t0)
            for w in todo:
                sample(w, mode, p, rep, {"problem": str(e)})
            return
        try:
            if pg and "db" in p.serves and any(w.db for w in todo):
                server.wait_for("/db")
            spent("server starts", t0)
            for w in todo:
                cp = contract_problem(p, w)
                if cp:
                    sample(w, mode, p, rep, {"problem": "contract: " + cp})
                    continue
                if not server.alive():
                    sample(w, mode, p, rep, {"problem": "the server died"})
                    continue
                if w.name in ("todos", "chatrest") and pg:
                    pg.reset_todos()
                t0 = time.monotonic()
                try:
                    data = w.run(ctx, server)
                except Exception as e:  # noqa: BLE001 (a peer's failure is a result)
                    data = {"problem": "%s: %s" % (type(e).__name__, e)}
                    traceback.print_exc()
                spent(w.name, t0)
                data["busy_before_pct"] = round(busy, 1)
                sample(w, mode, p, rep, data)
        finally:
            t0 = time.monotonic()
            server.stop()
            spent("server stops", t0)

    # ---- the runs: each repeat runs every peer once, in a rotating order
    for rep in range(settings["repeats"]):
        order = usable[rep % len(usable):] + usable[:rep % len(usable)] if usable else []
        for mode in ("1core", "2core"):
            for p in order:
                todo = [w for w in wls if mode in w.modes and w.serves(p) and w.name != "coldstart"
                        and not w.own_servers and
                        (mode == "1core" or w.name in settings["two_core"]) and
                        (rep == 0 or w.name not in MEMORY)]
                if mode == "2core" and p.workers_max < 2:
                    for w in todo:
                        sample(w, mode, p, rep, {"problem": "one process only (%s)"
                                                 % (p.workers_hint or "peer.json: workers_max 1"),
                                                 "skipped": True})
                    continue
                if not todo:
                    continue
                workers, cpus = (1, lib.SERVER_CPU) if mode == "1core" else (2, lib.BOTH_CPUS)
                ctx.client_cpus = lib.CLIENT_CPU
                for session in sessions(todo):
                    run_session(p, mode, rep, session, workers, cpus)
                save()
        # Workloads that start the peer's servers themselves (two instances on Redis), one
        # core's worth: after the tables of the repeat, peers in the same rotating order.
        for p in order:
            for w in wls:
                if not (w.own_servers and w.serves(p)):
                    continue
                cp = contract_problem(p, w) or redis_problem
                if cp:
                    sample(w, "1core", p, rep, {"problem": cp})
                    continue
                ctx.client_cpus = lib.CLIENT_CPU
                t0 = time.monotonic()
                busy = lib.wait_quiet()
                spent("quiet waits", t0)
                t0 = time.monotonic()
                try:
                    data = w.run(ctx, p, logdir, redis)
                except Exception as e:  # noqa: BLE001 (a peer's failure is a result)
                    data = {"problem": "%s: %s" % (type(e).__name__, e)}
                    traceback.print_exc()
                spent(w.name, t0)
                data["busy_before_pct"] = round(busy, 1)
                sample(w, "1core", p, rep, data)
            save()
    # Cold start, in one pass after the repeats: the tool starts each peer itself.
    if any(w.name == "coldstart" for w in wls):
        w = next(w for w in wls if w.name == "coldstart")
        t0 = time.monotonic()
        for p in usable:
            lib.wait_quiet()
            try:
                data = w.run(ctx, p, logdir, pg.url() if pg else None)
            except Exception as e:  # noqa: BLE001
                data = {"problem": "%s: %s" % (type(e).__name__, e)}
            sample(w, "1core", p, 0, data)
        spent("coldstart", t0)
        save()
    if pg:
        pg.close()
    if redis:
        redis.stop()
    timing["total"] = round(time.monotonic() - t_start, 1)
    results["meta"]["timing"] = timing
    lib.log("time spent: " + ", ".join("%s %.0f s" % kv for kv in
                                      sorted(timing.items(), key=lambda kv: -kv[1])))
    save()
    report.write(out, readme=not a.quick and not a.no_readme and not a.peers and
                 not a.workloads)
    lib.log("report: %s" % os.path.join(out, "report.md"))
    return 0


if __name__ == "__main__":
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
            os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(main(sys.argv[1:]))
