"""The showdown's report, made from results.json alone (so it can be made again, and tested):
report.md (a table per workload and mode: median, min-max, ratio to crest, the server's CPU per
request, p99, which side was the bottleneck, failures shown as failures), the charts (gnuplot
PNG), and the claims section: each claim the "Node.js vs Python vs Java" articles make, marked
confirmed, refuted or depends by rules over the data, with crest's figure beside it. A full run
also writes that section into README.md between its markers."""

import json
import os
import subprocess

import stats

README_BEGIN = "<!-- showdown:claims:begin (written by bench/showdown/report.py) -->"
README_END = "<!-- showdown:claims:end -->"

# The figure each workload's table ranks by: (sample key, label, higher is better).
PRIMARY = {"healthz_cpu": ("p99_ms", "/healthz p99 ms", False),
           "conns": ("bytes_per_conn", "bytes per connection", False),
           "wsconns": ("bytes_per_conn", "bytes per WebSocket", False),
           "sio_conns": ("bytes_per_conn", "bytes per Socket.IO connection", False),
           "chatrest": ("users", "users under 100 ms p99", True),
           "coldstart": ("start_ms", "exec to first 200, ms", False)}


def primary(wname, winfo):
    if wname in PRIMARY:
        return PRIMARY[wname]
    return ("rps", winfo.get("unit", "req/s"), winfo.get("better", "higher") == "higher")


# ---------------------------------------------------------------- summaries -----------------

def summarize(results):
    """{(workload, mode, peer): {"key": summary, ..., "problems": [...], "n": runs}}."""
    groups = {}
    for s in results["samples"]:
        groups.setdefault((s["workload"], s["mode"], s["peer"]), []).append(s)
    out = {}
    for k, ss in groups.items():
        good = [s for s in ss if "problem" not in s]
        row = {"problems": sorted({s["problem"] for s in ss if "problem" in s}),
               "n": len(ss), "ok": len(good)}
        keys = {key for s in good for key, v in s.items() if isinstance(v, (int, float))
                and not isinstance(v, bool) and key != "repeat"}
        for key in keys:
            row[key] = stats.summary([s.get(key) for s in good])
        bn = [s.get("bottleneck") for s in good if s.get("bottleneck")]
        row["bottleneck"] = max(set(bn), key=bn.count) if bn else None
        out[k] = row
    return out


def med(summ, workload, mode, peer, key):
    row = summ.get((workload, mode, peer))
    if not row or row.get("ok", 0) == 0 or not row.get(key):
        return None
    return row[key]["median"]


def capped(row):
    """Whether a figure was limited by the load generator (BENCH.md): the load generator's core
    was at least 90 % busy in most of its runs (bottleneck "client" or "both")."""
    return bool(row) and row.get("bottleneck") in ("client", "both")


def fmt(v, key=""):
    if v is None:
        return "–"
    if key in ("bytes_per_conn",) or abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(row, key):
    if not row or not row.get(key):
        return "–"
    s = row[key]
    if s["n"] > 1 and s["min"] != s["max"]:
        return "%s (%s–%s)" % (fmt(s["median"], key), fmt(s["min"], key), fmt(s["max"], key))
    return fmt(s["median"], key)


# ---------------------------------------------------------------- tables --------------------

# The memory workloads: what they hold, as the tables and the chart name it.
MEMORY = {"conns": "connections", "wsconns": "WebSockets", "sio_conns": "Socket.IO connections"}

def tables(results, summ):
    lines = []
    peers = results["peers"]
    for wname, w in results["workloads"].items():
        key, label, higher = primary(wname, w)
        for mode in w["modes"]:
            rows = [(p, summ.get((wname, mode, p))) for p in peers if (wname, mode, p) in summ]
            if not rows:
                continue
            base = med(summ, wname, mode, "crest", key)
            rows.sort(key=lambda pr: (-(med(summ, wname, mode, pr[0], key) or 0) if higher
                                      else (med(summ, wname, mode, pr[0], key) or float("inf"))))
            where = ("one core each (WORKERS=1, CPU 0; load on CPU 1)" if mode == "1core" else
                     "both cores for the server (WORKERS=2); the load generator shares CPU 1")
            lines += ["", "### %s — %s" % (w["title"], where), ""]
            extra = []
            if wname in MEMORY:
                extra = [("conns_in_1gib", "%s in 1 GiB" % MEMORY[wname]),
                         ("held", "held"), ("idle_rss_mib", "idle RSS MiB")]
            elif wname in ("sio_rooms", "sio_redis"):
                extra = [("cpu_us", "server CPU µs per delivery"), ("p50_ms", "p50 ms"),
                         ("p99_ms", "p99 ms"), ("rate_p99_ms", "p99 ms at a fixed rate")]
                if wname == "sio_redis":
                    # (Redis's own CPU per message is in the samples: a few µs, often under
                    # the one clock tick /proc counts over a short run, so not a column.)
                    extra += [("p99_remote_ms", "p99 ms, other instance")]
            elif wname == "chatrest":
                extra = [("rest_p99_ms", "REST p99 ms"), ("chat_p99_ms", "chat p99 ms"),
                         ("rest_rps", "REST calls/s"), ("server_cpu_pct", "server CPU %")]
            elif wname == "coldstart":
                extra = [("idle_rss_mib", "idle RSS MiB")]
            else:
                extra = [("cpu_us", "server CPU µs per %s" % ("message" if "msg" in w["unit"]
                                                                or "deliver" in w["unit"]
                                                                else "request")),
                         ("p99_ms", "p99 ms")]
                if key == "p99_ms":
                    extra = [("p50_ms", "p50 ms"), ("rps", "hash jobs/s")]
            head = ["peer", "stack", label + " median (min–max)", "vs crest"] + \
                [e[1] for e in extra] + ["bottleneck", "failures"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            capped_any = False
            for p, row in rows:
                v = med(summ, wname, mode, p, key)
                r = stats.ratio(v, base, higher)
                ratio = "–" if r is None else ("%.2f×" % r)
                figure = cell(row, key)
                if capped(row):
                    figure += " ‡"
                    capped_any = True
                fails = "; ".join(row["problems"])[:160] if row["problems"] else ""
                if row["ok"] == 0:
                    fails = "**FAILED**: " + fails
                elif row["problems"]:
                    fails = "%d of %d runs failed: %s" % (row["n"] - row["ok"], row["n"], fails)
                lines.append("| " + " | ".join(
                    [("**%s**" % peers[p]["title"]) if p == "crest" else peers[p]["title"],
                     peers[p]["stack"],
                     figure, ratio] + [cell(row, k) for k, _ in extra] +
                    [row.get("bottleneck") or "–", fails]) + " |")
            lines.append("")
            if capped_any:
                lines += ["‡ capped by the load generator: its core was at least 90 % busy "
                          "(bottleneck `client` or `both`), so this server may do more than "
                          "the figure says; compare its CPU per request instead.", ""]
            lines.append("`vs crest`: the peer's figure over crest's" if higher else
                         "`vs crest`: crest's figure over the peer's (lower is better here, so "
                         "as everywhere above 1× means the peer did better)")
    return lines


# ---------------------------------------------------------------- claims --------------------

def _best(summ, results, stack, workload, mode, key, higher=True):
    """The best peer of a stack on a workload: (peer, median) or (None, None)."""
    best = (None, None)
    for p, info in results["peers"].items():
        if info["stack"] != stack:
            continue
        v = med(summ, workload, mode, p, key)
        if v is None:
            continue
        if best[1] is None or (v > best[1] if higher else v < best[1]):
            best = (p, v)
    return best


def claims(results, summ):
    """[(claim, verdict, evidence, crest's figure)] with verdict confirmed / refuted / depends /
    not measured."""
    P = results["peers"]
    out = []
    n_conns = results["meta"]["settings"].get("idle_conns")

    def title(p):
        return P[p]["title"] if p else "?"

    def held(p):
        row = summ.get(("conns", "1core", p))
        return row is not None and row["ok"] > 0

    # 1 and 2: connections
    node = [p for p in P if P[p]["stack"] == "Node.js" and ("conns", "1core", p) in summ]
    py = [p for p in P if P[p]["stack"] == "Python" and ("conns", "1core", p) in summ]
    crest_b = med(summ, "conns", "1core", "crest", "bytes_per_conn")
    crest_txt = "%s bytes per connection" % fmt(crest_b, "bytes_per_conn") if crest_b else "–"
    if node:
        ok = [p for p in node if held(p)]
        out.append(("Node.js handles 10k+ concurrent connections on one thread, easily",
                    "confirmed" if ok and n_conns >= 10000 else
                    "depends" if ok else "refuted",
                    "%s held %d idle keep-alive connections at %s bytes each" % (
                        ", ".join(title(p) for p in ok) or "none", n_conns,
                        "/".join(fmt(med(summ, "conns", "1core", p, "bytes_per_conn"),
                                     "bytes_per_conn") for p in ok)) +
                    ("" if n_conns >= 10000 else " (a quick run: fewer than 10k tried)"),
                    crest_txt))
    if py:
        ok = [p for p in py if held(p)]
        out.append(("Python handles about 1k connections, even with async frameworks",
                    "refuted" if ok and n_conns > 2000 else "depends" if ok else "confirmed",
                    "%s held %d idle keep-alive connections" % (
                        ", ".join(title(p) for p in ok) or "none", n_conns),
                    crest_txt))
    # 3: CRUD Node vs FastAPI
    np_, nv = _best(summ, results, "Node.js", "todos", "1core", "rps")
    fv = med(summ, "todos", "1core", "fastapi", "rps")
    if nv and fv:
        diff = abs(nv - fv) / max(nv, fv)
        out.append(("For a CRUD API the difference between Node.js and FastAPI is under 20%",
                    "confirmed" if diff < 0.2 else "refuted",
                    "REST CRUD mix: %s %s req/s, FastAPI %s req/s (%.0f%% apart)"
                    % (title(np_), fmt(nv), fmt(fv), 100 * diff),
                    "%s req/s" % fmt(med(summ, "todos", "1core", "crest", "rps"))))
    # 4: the database dominates
    ratios = []
    for p in P:
        j, d = med(summ, "json", "1core", p, "rps"), med(summ, "db", "1core", p, "rps")
        if j and d:
            ratios.append((p, j / d))
    if ratios:
        lo, hi = min(r for _, r in ratios), max(r for _, r in ratios)
        verdict = "confirmed" if lo >= 10 else "refuted" if hi < 10 else "depends"
        out.append(("Response time is dominated by the database: query time is 10-50x the "
                    "language overhead", verdict,
                    "/json serves %.1f× to %.1f× as many requests per second as /db, by peer "
                    "(%s)" % (lo, hi, ", ".join("%s %.1f×" % (title(p), r) for p, r in ratios)),
                    next(("%.1f×" % r for p, r in ratios if p == "crest"), "–")))
    # 5 and 10: Java vs Node memory and throughput
    jp, jv = _best(summ, results, "Java", "json", "1core", "rps")
    np2, nv2 = _best(summ, results, "Node.js", "json", "1core", "rps")
    jr = _best(summ, results, "Java", "coldstart", "1core", "idle_rss_mib", higher=False)
    nr = _best(summ, results, "Node.js", "coldstart", "1core", "idle_rss_mib", higher=False)
    crest_rss = med(summ, "coldstart", "1core", "crest", "idle_rss_mib")
    if jv and nv2 and jr[1] and nr[1]:
        rivals = jv >= 0.8 * nv2
        more = jr[1] >= 1.5 * nr[1]
        out.append(("Java rivals Node.js in throughput but needs much more memory",
                    "confirmed" if rivals and more else "refuted" if not rivals and not more
                    else "depends",
                    "/json: %s %s req/s vs %s %s; idle RSS: %s %s MiB vs %s %s MiB"
                    % (title(jp), fmt(jv), title(np2), fmt(nv2), title(jr[0]), fmt(jr[1]),
                       title(nr[0]), fmt(nr[1])),
                    "%s req/s, %s MiB" % (fmt(med(summ, "json", "1core", "crest", "rps")),
                                          fmt(crest_rss))))
    if jr[1] and nr[1]:
        out.append(("Node.js hosting is cheap, Java needs more RAM",
                    "confirmed" if jr[1] > nr[1] * 1.2 else "refuted",
                    "idle RSS: best Node.js %s MiB (%s), best Java %s MiB (%s)"
                    % (fmt(nr[1]), title(nr[0]), fmt(jr[1]), title(jr[0])),
                    "%s MiB" % fmt(crest_rss)))
    # 6: cold start
    starts = {s: _best(summ, results, s, "coldstart", "1core", "start_ms", higher=False)
              for s in ("Node.js", "Python", "Java")}
    if all(v[1] for v in starts.values()):
        fastest = min(starts, key=lambda s: starts[s][1])
        out.append(("Node.js has the fastest cold start (serverless)",
                    "confirmed" if fastest == "Node.js" else "refuted",
                    "exec to first 200: " + ", ".join("%s %s ms (%s)" % (s, fmt(v[1]),
                                                                           title(v[0]))
                                                      for s, v in starts.items()),
                    "%s ms" % fmt(med(summ, "coldstart", "1core", "crest", "start_ms"))))
    # 7: real-time dashboards
    members = results["meta"]["settings"].get("members")
    pyr = [p for p in P if P[p]["stack"] == "Python" and ("rooms", "1core", p) in summ]
    if pyr:
        fine = [p for p in pyr if med(summ, "rooms", "1core", p, "p99_ms") is not None
                and med(summ, "rooms", "1core", p, "p99_ms") < 100]
        out.append(("A Python real-time dashboard chokes at 50 concurrent users while Node.js "
                    "handles 50,000", "refuted" if fine else "depends",
                    "room fan-out to %d members: %s" % (members, ", ".join(
                        "%s p99 %s ms, %s deliveries/s" % (
                            title(p), fmt(med(summ, "rooms", "1core", p, "p99_ms")),
                            fmt(med(summ, "rooms", "1core", p, "rps"))) for p in pyr)),
                    "p99 %s ms, %s deliveries/s" % (
                        fmt(med(summ, "rooms", "1core", "crest", "p99_ms")),
                        fmt(med(summ, "rooms", "1core", "crest", "rps")))))
    # 8: CPU work and Node's event loop
    nodeh = [p for p in P if P[p]["stack"] == "Node.js" and ("healthz_cpu", "1core", p) in summ]
    if nodeh:
        p99s = [(p, med(summ, "healthz_cpu", "1core", p, "p99_ms")) for p in nodeh]
        p99s = [(p, v) for p, v in p99s if v is not None]
        if p99s:
            worst = max(v for _, v in p99s)
            out.append(("CPU-heavy work blocks Node.js's event loop",
                        "depends" if worst < 50 else "confirmed",
                        "/healthz p99 while hashing, with the work off the loop as each peer "
                        "does it: " + ", ".join("%s %s ms" % (title(p), fmt(v)) for p, v in p99s)
                        + " (inline on the loop it would wait for every hash)",
                        "%s ms" % fmt(med(summ, "healthz_cpu", "1core", "crest", "p99_ms"))))
    # 9: CPU-parallel work
    scal = {}
    for p in P:
        one, two = (med(summ, "hash_parallel", m, p, "rps") for m in ("1core", "2core"))
        if one and two:
            scal[p] = two / one
    js = [(p, v) for p, v in scal.items() if P[p]["stack"] == "Java"]
    ps = [(p, v) for p, v in scal.items() if P[p]["stack"] == "Python"]
    if js and ps:
        jbest, pbest = max(v for _, v in js), max(v for _, v in ps)
        out.append(("Java excels at CPU-parallel work, Python's GIL kills it",
                    "confirmed" if jbest >= 1.6 and pbest < 1.3 else
                    "refuted" if pbest >= 1.6 else "depends",
                    "PBKDF2 jobs/s on two cores over one: " + ", ".join(
                        "%s %.2f×" % (title(p), v) for p, v in sorted(scal.items(),
                                                                        key=lambda x: -x[1])),
                    "%.2f×" % scal["crest"] if "crest" in scal else "–"))
    return out


def claims_md(results, summ):
    m = results["meta"]
    lines = ["Measured by `%s` on %s (%s, %d cores, Linux %s), %s. Verdicts come from rules over "
             "the data (bench/showdown/report.py), not from opinion."
             % (m["command"], m["machine"]["date"], m["machine"]["cpu"], m["machine"]["cores"],
                m["machine"]["kernel"], "a QUICK run: one short repeat" if m["quick"]
                else "%d interleaved repeats" % m["settings"]["repeats"]), "",
             "| claim | verdict | measured | crest |", "|---|---|---|---|"]
    for c, v, ev, cr in claims(results, summ):
        lines.append("| %s | **%s** | %s | %s |" % (c, v, ev, cr))
    return lines


# ---------------------------------------------------------------- Socket.IO targets ---------

# The targets for crest's Socket.IO beside Node.js socket.io (the peer "sio"): 10x its
# deliveries per second on one core (one instance, and two on Redis), a tenth of its memory per
# idle connection. p99 latency and the server's CPU time per delivery are reported beside them,
# without a target: on a shared machine, where other tenants take some of CPU 0, CPU per
# delivery moves far less than deliveries/s do.
SIO_NODE = "sio"
SIO_TARGETS = [("sio_rooms", "rps", "room fan-out, deliveries/s (one instance)", 10.0, True),
               ("sio_rooms", "p99_ms", "room fan-out, p99 delivery latency ms (closed loop)",
                None, False),
               ("sio_rooms", "rate_p99_ms", "room fan-out, p99 delivery latency ms at a fixed "
                "rate", None, False),
               ("sio_rooms", "cpu_us", "room fan-out, server CPU µs per delivery", None, False),
               ("sio_conns", "bytes_per_conn", "memory per idle Socket.IO connection, bytes",
                10.0, False),
               ("sio_redis", "rps", "fan-out over two instances on Redis, deliveries/s", 10.0,
                True),
               ("sio_redis", "p99_ms", "fan-out over two instances on Redis, p99 latency ms "
                "(closed loop)", None, False),
               ("sio_redis", "rate_p99_ms", "fan-out over two instances on Redis, p99 latency "
                "ms at a fixed rate", None, False),
               ("sio_redis", "cpu_us", "fan-out over two instances on Redis, servers' CPU µs "
                "per delivery", None, False)]


def sio_targets(results, summ):
    """[(what, crest's median, Node's median, crest's advantage, target, verdict)] for the
    Socket.IO workloads in results: the advantage is crest's figure over Node's where higher is
    better, Node's over crest's where lower is (so 10 reads "10 times better" either way); the
    verdict "met" or "not met" against the target (with "capped" when crest's runs were limited
    by the load generator: crest may do more than the ratio says), "failed: ..." when a side has
    no figure because its runs failed, "–" for a figure without a target."""
    out = []
    for wname, key, what, target, higher in SIO_TARGETS:
        if wname not in results["workloads"]:
            continue
        c = med(summ, wname, "1core", "crest", key)
        n = med(summ, wname, "1core", SIO_NODE, key)
        adv = stats.ratio(c, n, higher) if higher else stats.ratio(n, c, True)
        if target is None:
            verdict = "–"
        elif c is None or n is None:
            why = []
            for p, v in (("crest", c), (SIO_NODE, n)):
                row = summ.get((wname, "1core", p))
                if v is None:
                    why.append("%s: %s" % (p, "; ".join(row["problems"])[:120] if row and
                                           row["problems"] else "not measured"))
            verdict = "failed: " + "; ".join(why)
        else:
            verdict = "met" if adv >= target else "not met"
            if capped(summ.get((wname, "1core", "crest"))):
                verdict += " (capped by the load generator)"
        out.append((what, c, n, adv, target, verdict))
    return out


def sio_targets_md(results, summ):
    rows = sio_targets(results, summ)
    if not rows:
        return []
    st = results["meta"].get("settings", {})
    lines = ["crest's Socket.IO beside Node.js socket.io (`%s`), one core each; targets: 10x "
             "its deliveries/s, a tenth of its memory per idle connection. `crest's advantage`: "
             "crest's figure over Node's where higher is better, Node's over crest's where lower "
             "is. Closed loop: 10 senders with 4 messages each not yet at every member, as fast "
             "as the server delivers (its latency is mostly the queue); fixed rate: %s messages/s "
             "in all to %s members, a load both carry." % (SIO_NODE, st.get("sio_rate", "?"),
                                                         st.get("sio_members", "?")), "",
             "| figure | crest | Node.js socket.io | crest's advantage | target | verdict |",
             "|---|---|---|---|---|---|"]
    for what, c, n, adv, target, verdict in rows:
        lines.append("| %s | %s | %s | %s | %s | **%s** |" % (
            what, fmt(c), fmt(n), "–" if adv is None else "%.1f×" % adv,
            "–" if target is None else "≥ %g×" % target, verdict))
    return lines


# ---------------------------------------------------------------- charts --------------------

def _gnuplot(path, script):
    try:
        subprocess.run(["gnuplot"], input=script.encode(), capture_output=True, timeout=60,
                       check=True)
        return os.path.exists(path)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


def bar_chart(out, name, ttl, ylabel, rows):
    """rows: [(label, value)]; writes OUT/NAME.png; returns its file name or None."""
    rows = [(l, v) for l, v in rows if v is not None]
    if not rows:
        return None
    data = os.path.join(out, name + ".dat")
    with open(data, "w") as f:
        for label, v in rows:
            shown = "{:,.0f}".format(v) if abs(v) >= 100 else "%.3g" % v
            f.write('"%s" %.6g "%s"\n' % (label.replace('"', "'"), v, shown))
    png = os.path.join(out, name + ".png")
    ok = _gnuplot(png, """set terminal pngcairo size 1000,520 font "sans,10"
set output "%s"
set title "%s"
set ylabel "%s"
set style fill solid 0.8
set boxwidth 0.7
set grid ytics
set xtics rotate by -35
set yrange [0:*]
unset key
plot "%s" using 0:2:xtic(1) with boxes lc rgb "#2a6f97", "" using 0:2:3 with labels offset 0,0.7
""" % (png, ttl.replace('"', "'"), ylabel, data))
    os.remove(data)
    return os.path.basename(png) if ok else None


def memory_curves(results):
    """{workload: {peer: [(connections, median RSS MiB over the repeats)]}} from the samples'
    rss_curve of conns and wsconns (failed runs' curves count up to where they got)."""
    pts = {}
    for smp in results["samples"]:
        if smp["workload"] in MEMORY and smp.get("rss_curve"):
            for n, kib in smp["rss_curve"]:
                pts.setdefault(smp["workload"], {}).setdefault(smp["peer"], {}).setdefault(
                    n, []).append(kib / 1024)
    return {w: {p: sorted((n, stats.median(v)) for n, v in by_n.items())
                for p, by_n in peers.items()} for w, peers in pts.items()}


def memory_chart(out, results):
    """memory-vs-connections.png: each peer's RSS at each count of idle keep-alive connections,
    idle WebSockets and idle Socket.IO connections (a panel each, those measured). Returns the
    file name or None."""
    curves = memory_curves(results)
    if not curves:
        return None
    png = os.path.join(out, "memory-vs-connections.png")
    plots, files = [], []
    for w, ttl in (("conns", "idle keep-alive HTTP connections"), ("wsconns", "idle WebSockets"),
                   ("sio_conns", "idle Socket.IO connections")):
        lines = []
        for i, (p, pts) in enumerate(sorted(curves.get(w, {}).items())):
            f = os.path.join(out, "mem-%s-%d.dat" % (w, i))
            files.append(f)
            with open(f, "w") as fh:
                fh.writelines("%d %.3f\n" % (n, mib) for n, mib in pts)
            lines.append('"%s" using 1:2 with linespoints lw 2 title "%s"'
                         % (f, results["peers"][p]["title"].replace('"', "'")))
        if lines:
            plots.append('set title "RSS with N %s"\nplot %s' % (ttl, ", ".join(lines)))
    script = """set terminal pngcairo size %d,560 font "sans,10"
set output "%s"
set multiplot layout 1,%d
set xlabel "connections held"
set ylabel "server RSS, MiB"
set grid
set key left top
set yrange [0:*]
%s
unset multiplot
""" % (700 * max(2, len(plots)), png, len(plots), "\n".join(plots))
    ok = _gnuplot(png, script)
    for f in files:
        os.remove(f)
    return os.path.basename(png) if ok else None


def charts(out, results, summ):
    made = []
    f = memory_chart(out, results)
    if f:
        made.append(f)
    for wname, w in results["workloads"].items():
        key, label, higher = primary(wname, w)
        for mode in w["modes"]:
            rows = [(results["peers"][p]["title"], med(summ, wname, mode, p, key))
                    for p in results["peers"]]
            rows = [r for r in rows if r[1] is not None]
            rows.sort(key=lambda r: -r[1] if higher else r[1])
            f = bar_chart(out, "%s-%s" % (wname, mode), "%s (%s)" % (w["title"], mode), label,
                          rows)
            if f:
                made.append(f)
        if wname in ("ws", "rooms", "plaintext", "json", "db", "healthz_cpu", "sio_rooms",
                     "sio_redis"):
            rows = [(results["peers"][p]["title"], med(summ, wname, "1core", p, "p99_ms"))
                    for p in results["peers"]]
            rows.sort(key=lambda r: r[1] if r[1] is not None else 1e18)
            f = bar_chart(out, "%s-p99" % wname, "%s: p99 latency" % w["title"], "ms", rows)
            if f:
                made.append(f)
    return made


# ---------------------------------------------------------------- the report ----------------

def render(results, chart_files=()):
    summ = summarize(results)
    m = results["meta"]
    mc = m["machine"]
    lines = ["# The showdown: crest beside Node.js, Python and Java", "",
             "`%s` on %s: %s, %d cores, %d MiB, Linux %s, Debian %s. Server on CPU %s, load "
             "generator and PostgreSQL on CPU %s; %s." % (
                 m["command"], mc["date"], mc["cpu"], mc["cores"], mc["mem_mib"], mc["kernel"],
                 mc["debian"], m["cpus"]["server"], m["cpus"]["client"],
                 "QUICK: every workload once, %d s runs after %d s of warm-up"
                 % (m["settings"]["duration"], m["settings"]["warmup"]) if m["quick"] else
                 "%d interleaved repeats of %d s after %d s of warm-up, median (min–max)"
                 % (m["settings"]["repeats"], m["settings"]["duration"],
                    m["settings"]["warmup"])),
             "", "Tools: " + ", ".join("%s %s" % kv for kv in sorted(m["tools"].items())) + ".",
             "", "## The claims, measured", ""]
    lines += claims_md(results, summ)
    targets = sio_targets_md(results, summ)
    if targets:
        lines += ["", "## Socket.IO targets", ""] + targets
    lines += ["", "## Results"]
    lines += tables(results, summ)
    if chart_files:
        lines += ["", "## Charts", ""] + ["![%s](%s)" % (f[:-4], f) for f in chart_files]
    lines += ["", "## Peers", "", "| peer | stack | versions | workers (two-core table) | "
              "changed defaults |", "|---|---|---|---|---|"]
    for p, info in results["peers"].items():
        v = ", ".join("%s %s" % kv for kv in sorted(info.get("versions", {}).items()))
        note = "set-up failed" if info.get("setup_failed") else ""
        lines.append("| %s | %s | %s | %s | %s |" % (
            info["title"], info["stack"], v or note or "–", info.get("workers_hint") or "–",
            "; ".join(info.get("changed_defaults", [])) or "none"))
    probs = {p: i["contract_problems"] for p, i in results["peers"].items()
             if i.get("contract_problems")}
    if probs:
        lines += ["", "## Contract problems (bench/showdown/check.py)", ""]
        for p, pr in probs.items():
            lines.append("- %s: %s" % (p, "; ".join(pr)[:400]))
    return "\n".join(lines) + "\n"


def write_readme(results, readme):
    summ = summarize(results)
    block = "\n".join([README_BEGIN] + claims_md(results, summ) + [README_END])
    with open(readme) as f:
        text = f.read()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + block + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## The showdown's claims, measured\n\n" + block + "\n"
    with open(readme, "w") as f:
        f.write(text)


def write(out, readme=False):
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    made = charts(out, results, summarize(results))
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render(results, made))
    if readme:
        write_readme(results, os.path.join(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))), "README.md"))
    return made


def sio_text(results):
    """What bench/sio.sh prints: the Socket.IO targets, then the tables of the run."""
    summ = summarize(results)
    m = results["meta"]
    head = ["`%s` on %s (%s, %d cores, Linux %s); %s." % (
        m["command"], m["machine"]["date"], m["machine"]["cpu"], m["machine"]["cores"],
        m["machine"]["kernel"], "QUICK: one repeat of %d s" % m["settings"]["duration"]
        if m["quick"] else "%d interleaved repeats of %d s, median (min–max)"
        % (m["settings"]["repeats"], m["settings"]["duration"]))]
    return "\n".join(head + ["", "## Socket.IO targets", ""] + sio_targets_md(results, summ) +
                     ["", "## Results"] + tables(results, summ)) + "\n"


if __name__ == "__main__":
    import sys
    write(sys.argv[1], readme="--readme" in sys.argv)
    if "--sio" in sys.argv:
        with open(os.path.join(sys.argv[1], "results.json")) as f:
            sys.stdout.write(sio_text(json.load(f)))
    print(os.path.join(sys.argv[1], "report.md"))
