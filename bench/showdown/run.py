#!/usr/bin/python3
"""The showdown: every peer of bench/peers (*.peer.json) on every workload it serves, crest
among them, side by side in one invocation; then the report (report.py).

    make showdown              # full: 3 interleaved repeats, 3 s counted runs (about 40 min)
    make showdown QUICK=1      # every workload once, 1 s runs (about 6 min)
    bench/showdown/run.py [--quick] [--peers a,b] [--workloads x,y] [--out DIR]

Method (BENCH.md): the server pinned to CPU 0 with WORKERS=1 (one core each), the load generator
(wrk, bench/tools) and PostgreSQL on CPU 1; the two-core table gives the server both cores
(WORKERS=2) and the load generator shares them (its share is in the report). Each repeat runs
every peer once, in an order that rotates between repeats; each counted run follows a warm-up.
Every peer is checked against bench/peers/SHOWDOWN.md first (bench/showdown/check.py): a
workload it fails is shown failed, not measured. Writes bench/results/DATE-showdown/:
results.json (every sample), report.md, charts (PNG), logs/."""

import argparse
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

# About 175 (peer, workload, mode) runs per repeat: the full run's 3 repeats of 1 + 3 s fit in
# about 40 minutes on this 2-core machine, the quick run's one repeat of 1 + 1 s in about 6.
FULL = {"repeats": 3, "duration": 3, "warmup": 1, "cold_runs": 3, "idle_conns": 10000,
        "members": 1000}
QUICK = {"repeats": 1, "duration": 1, "warmup": 1, "cold_runs": 1, "idle_conns": 2000,
         "members": 200}


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
    ap.add_argument("--no-readme", action="store_true",
                    help="a full run rewrites README's claims section; not with this")
    a = ap.parse_args(argv)
    settings = dict(QUICK if a.quick else FULL)
    peers = lib.load_peers(a.peers.split(",") if a.peers else None)
    wls = [w for w in WORKLOADS if not a.workloads or w.name in a.workloads.split(",")]
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
                                                         "bytes_per_conn", "start_ms")
                     if isinstance(data.get(k), (int, float))]
            lib.log("  %-14s %-6s %-16s %s" % (w.name, mode, p.name, " ".join(shown)))

    # ---- the contract, once per peer
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

    def contract_problem(p, w):
        probs = failed_checks.get(p.name, [])
        hits = [pr for pr in probs if any(check.ENDPOINTS.get(n, "?") in pr for n in w.needs)]
        if any("ready" in pr or "exited" in pr for pr in probs):
            hits = probs
        return hits[0] if hits else None

    # ---- the runs: each repeat runs every peer once, in a rotating order
    for rep in range(settings["repeats"]):
        order = usable[rep % len(usable):] + usable[:rep % len(usable)] if usable else []
        for mode in ("1core", "2core"):
            for p in order:
                todo = [w for w in wls if mode in w.modes and w.serves(p) and w.name != "coldstart"]
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
                lib.wait_quiet()
                try:
                    server = lib.Server(p, workers, cpus, logdir, db=pg.url() if pg else None)
                except RuntimeError as e:
                    for w in todo:
                        sample(w, mode, p, rep, {"problem": str(e)})
                    continue
                with server:
                    if pg and "db" in p.serves and any(w.db for w in todo):
                        server.wait_for("/db")
                    # Memory first: before any load has grown the heaps.
                    for w in sorted(todo, key=lambda w: w.name != "conns"):
                        cp = contract_problem(p, w)
                        if cp:
                            sample(w, mode, p, rep, {"problem": "contract: " + cp})
                            continue
                        if not server.alive():
                            sample(w, mode, p, rep, {"problem": "the server died"})
                            continue
                        if w.name == "todos" and pg:
                            pg.reset_todos()
                        try:
                            data = w.run(ctx, server)
                        except Exception as e:  # noqa: BLE001 (a peer's failure is a result)
                            data = {"problem": "%s: %s" % (type(e).__name__, e)}
                            traceback.print_exc()
                        sample(w, mode, p, rep, data)
                save()
        # Cold start: the tool starts each peer itself.
        if any(w.name == "coldstart" for w in wls):
            w = next(w for w in wls if w.name == "coldstart")
            for p in order:
                lib.wait_quiet()
                try:
                    data = w.run(ctx, p, logdir, pg.url() if pg else None)
                except Exception as e:  # noqa: BLE001
                    data = {"problem": "%s: %s" % (type(e).__name__, e)}
                sample(w, "1core", p, rep, data)
            save()
    if pg:
        pg.close()
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
