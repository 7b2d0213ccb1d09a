#!/usr/bin/env python3
"""abuse_report: the report of bench/abuse.sh, from the runs it recorded.

  abuse_report.py OUT --command CMD --elapsed S --attacks "1 2 .." --peers "crest .."
                  [--cap-mib 4096] [--note TEXT]

Reads OUT/raw/runs.jsonl (one line per run: the attack tool's figures, the check results) and
the watcher's samples (OUT/raw/*-watch.json), prints the markdown report and writes it to
OUT/report.md, with every run's figures and raw samples in OUT/samples.json (which then
replaces the watchers' files; run again on the same folder, it reads them from there).

Windows, per run: the attack is [t_start, t_end] of the attack tool; "idle" is the median RSS
of the samples in the second before it; the peak is the highest RSS from the attack's start to
AFTER seconds after its end; "after" is the last sample by then. The bystander's p50/p99/max
are over the requests due during the attack; its failures count those due from the start of
the attack to the end of the after phase.
"""

import argparse
import datetime
import json
import os
import statistics

MIB = 1024  # KiB

# crest's defaults (crest demo --help), the budgets' terms, in KiB.
HEAD, OUTPUT, BODY, WS_BUF, WS_MSG = 16, 1024, 1024, 1024, 1024
SSE_HISTORY = 256  # events the demo keeps for Last-Event-ID (app/demo_rt.c)
SLACK = 8 * MIB  # allocator, SQLite page cache and the like, on top of every budget
NEAR_IDLE = 8 * MIB
P99_MS = 50

TITLES = {
    1: "Open files: connections up to the server's limit, held, released",
    2: "Output per connection: pipelined GET /plaintext, never read",
    3: "Amplification: pipelined GET /queries?queries=500, never read",
    4: "Cross-thread queues: silent chat members and one publisher",
    5: "Whole responses: slow readers of a large GET /api/todos",
    6: "Request bodies: trickled 1 MB POST /echo bodies",
    8: "Non-UTF-8 chat names",
    9: "NUL in JSON",
    10: "Fan-out: members joining one room",
    11: "SSE history: 1 MB chat messages",
    12: "permessage-deflate bombs to /ws/echo",
    13: "Shutdown: SIGTERM, then a request on a keep-alive connection",
}

# Why a peer sits out an attack.
NA = {
    (3, "nginx"): "no database",
    (3, "node"): "peers/node/http.js has no database",
    (4, "nginx"): "no WebSocket chat",
    (5, "nginx"): "no database",
    (5, "node"): "the Node peers have no todo API",
    (8, "nginx"): "no WebSocket chat",
    (9, "nginx"): "no JSON API",
    (9, "node"): "the Node peers have no todo API",
    (10, "nginx"): "no WebSocket chat",
    (11, "nginx"): "no chat or SSE",
    (11, "node"): "peers/ws/server.js has no SSE stream",
    (12, "nginx"): "no WebSocket",
    (13, "nginx"): "not compared (crest's own shutdown path)",
    (13, "node"): "not compared (crest's own shutdown path)",
}

# Rows whose load is CPU work the client asked the server to do: the p99 target does not apply.
CPU_WORK = {3: "500 queries per request", 12: "inflating 1 MB per message"}


def budget(a, tool):
    """crest's configured budget for attack a beyond idle (KiB), and how it is made up."""
    t = tool or {}
    if a == 1:
        n = t.get("peak_open", 0)
        return n * HEAD, "%d open connections x 16 KiB head" % n
    if a == 2:
        return HEAD + OUTPUT, "1 connection x (16 KiB head + 1 MiB output)"
    if a == 3:
        n = t.get("conns", 0)
        return n * (HEAD + OUTPUT + 16), "%d x (16 KiB head + 1 MiB output + a 16 KiB answer)" % n
    if a == 4:
        n = t.get("members", 0) + 1
        return n * WS_BUF + 2 * WS_MSG, "%d members x 1 MiB ws-max-buffered + 2 MiB" % n
    if a == 5:
        n = t.get("conns", 0)
        return n * (HEAD + OUTPUT), "%d readers x (16 KiB head + 1 MiB output)" % n
    if a == 6:
        n = t.get("conns", 0)
        return n * (HEAD + BODY), "%d x (16 KiB head + 1 MiB body)" % n
    if a == 10:
        n = t.get("members", 0)
        return n * WS_BUF, "%d members x 1 MiB ws-max-buffered" % n
    if a == 11:
        return (SSE_HISTORY + 2) * WS_MSG, "256 kept SSE events x 1 MiB + 2 MiB"
    if a == 12:
        n = t.get("conns", 0)
        return n * (2 * WS_MSG + WS_BUF), "%d x (2 x 1 MiB message + 1 MiB buffered)" % n
    return None, ""


def mib(kib):
    return "n/a" if kib is None else "%.1f MiB" % (kib / 1024)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def ms(v):
    if v is None:
        return "-"
    return "%.0f" % v if v >= 100 else "%.1f" % v


KEPT = {}  # watch file -> its samples, from an earlier samples.json (a report made again)


def analyse(run, out, cap_mib):
    """The figures of one watched run."""
    tool = run.get("tool")
    r = {"capped": bool(tool and tool.get("capped"))}
    try:
        with open(os.path.join(out, run["watch"])) as f:
            w = json.load(f)
    except (OSError, ValueError, KeyError):
        w = KEPT.get(run.get("watch"))
        if w is None:
            r["error"] = "no samples"
            return r, None
    samples, by = w["samples"], w["bystander"]
    if not samples:
        r["error"] = "no samples"
        return r, w
    if not tool:
        r["error"] = "the attack tool reported nothing"
        return r, w
    t0, t1 = tool["t_start"], tool["t_end"]
    ta = t1 + run.get("after_s", 10)
    before = [s[1] for s in samples if t0 - 1.0 <= s[0] < t0] or [samples[0][1]]
    during = [s for s in samples if t0 <= s[0] <= ta]
    r["idle_kib"] = statistics.median(before)
    r["peak_kib"] = max((s[1] for s in during), default=None)
    upto = [s for s in samples if s[0] <= ta]
    r["after_kib"] = upto[-1][1] if upto else None
    r["after_at_s"] = round(upto[-1][0] - t1, 1) if upto else None
    r["tcp_mem_peak_kib"] = max((s[3] or 0 for s in during), default=0) * 4

    def ticks_at(t):
        best = None
        for s in samples:
            if s[0] <= t:
                best = s
        return best

    def cpu_pct(a, b):
        sa, sb = ticks_at(a), ticks_at(b)
        if not sa or not sb or sb[0] <= sa[0]:
            return None
        return 100.0 * (sb[2] - sa[2]) / w["clk_tck"] / (sb[0] - sa[0])

    r["cpu_pct"] = cpu_pct(t0, t1)
    # Other tenants of CPU 0 (the machine is shared): its busy time that the server did not use.
    sa, sb = ticks_at(t0), ticks_at(t1)
    if sa and sb and len(sa) > 5 and sa[5] is not None and sb[5] is not None and sb[0] > sa[0]:
        other = ((sb[5] - sa[5]) - (sb[2] - sa[2])) / w["clk_tck"] / (sb[0] - sa[0]) * 100
        r["cpu0_other_pct"] = max(0.0, other)
    if run["attack"] == 1:
        r["cpu_hold_pct"] = cpu_pct(tool.get("ramp_end", t0), tool.get("release", t1))
    s0 = ticks_at(t0) or samples[0]
    r["log_bytes"] = (upto[-1][4] if upto else samples[-1][4]) - s0[4]
    att = [b for b in by if t0 <= b[0] <= t1]
    lat = [b[1] for b in att if b[2] == "ok"]
    r["by_sent"] = len(att)
    r["by_p50"], r["by_p99"] = pct(lat, 50), pct(lat, 99)
    r["by_max"] = max(lat) if lat else None
    fails = [b for b in by if t0 <= b[0] <= ta and b[2] != "ok"]
    r["by_sent_all"] = len([b for b in by if t0 <= b[0] <= ta])
    r["by_failed"] = len(fails)
    kinds = {}
    for b in fails:
        kinds[b[2]] = kinds.get(b[2], 0) + 1
    r["by_fail_kinds"] = kinds
    return r, w


def stop_text(run):
    if run.get("stop_how") == "exited":
        return "exited %s after %.1f s" % (run.get("stop_rc"), run.get("stop_ms", 0) / 1000)
    return "still running %.0f s after it (killed)" % (run.get("stop_ms", 0) / 1000)


def figure(a, run, r):
    """The attack-specific cell."""
    t = run.get("tool") or {}
    if not t:
        return run.get("note") or "no result"
    g = t.get
    if a == 1:
        stop = stop_text(run)
        hold = r.get("cpu_hold_pct")
        return ("%d of %d held open (%d answered; %d closed by the server, %d reopened, %d "
                "waiting unanswered at release); server CPU in the hold %s; log +%d B; "
                "CLOSE-WAIT 1 s / %d s after release: %s / %s; SIGTERM: %s"
                % (g("peak_open", 0), g("target", 0), g("served", 0), g("closed_by_server", 0),
                   g("reopened", 0), g("unanswered_at_release", 0),
                   "n/a" if hold is None else "%.0f %%" % hold, r.get("log_bytes", 0),
                   run.get("after_s", 10), run.get("close_wait_1s"),
                   run.get("close_wait_after"), stop))
    if a in (2, 3):
        return ("%.0f MB of requests written (%d requests) on %d connection%s, taken by the "
                "server (answered, queued or discarded); %d connections closed by the server"
                % (g("requests_sent", 0) * g("request_bytes", 0) / 1e6, g("requests_sent", 0),
                   g("conns", 0), "" if g("conns") == 1 else "s", g("closed_by_server", 0)))
    if a == 4:
        if not g("publisher_joined", 1):
            return "the publisher could not join"
        late = " (+%d during publishing)" % g("joined_late") if g("joined_late") else ""
        return ("%d/%d silent members joined in %.1f s%s; %d messages of %d B published in "
                "%.1f s (publisher got %d back%s); %d members closed by the server"
                % (g("joined", 0), g("members", 0), g("join_s", 0), late, g("published", 0),
                   g("message_bytes", 0), g("publish_s", 0), g("publisher_received", 0),
                   "" if g("publisher_ok") else ", then was closed",
                   g("members_closed_by_server", 0)))
    if a == 5:
        s = run.get("setup") or {}
        return ("%d todos of %d B (the list: %.0f MB); %d readers, %d got 200, read %.1f MB in "
                "all; %d closed by the server"
                % (s.get("created", 0), s.get("title_bytes", 0), s.get("list_bytes", 0) / 1e6,
                   g("conns", 0), g("status_200", 0), g("bytes_read", 0) / 1e6,
                   g("closed_by_server", 0)))
    if a == 6:
        return ("%d/%d still held at the end (%.0f MB of body sent); %d closed by the server%s; "
                "answered before the body was complete: %d (2xx %d, 4xx %d, 5xx %d)"
                % (g("held_at_end", 0), g("conns", 0), g("body_bytes_sent", 0) / 1e6,
                   g("closed_by_server", 0),
                   " (first after %.1f s)" % g("first_close_s") if g("closed_by_server") else "",
                   g("answered_early", 0), g("answers_2xx", 0), g("answers_4xx", 0),
                   g("answers_5xx", 0)))
    if a == 10:
        joined = ("all %d joined in %.1f s" % (g("members", 0), g("all_joined_s"))
                  if g("all_joined_s", -1) >= 0 else
                  "%d/%d joined in %.0f s (the attack's time was up)"
                  % (g("joined", 0), g("members", 0), g("t_end", 0) - g("t_start", 0)))
        return ("%s; %d join announcements received (%d if joins came one at a time), the "
                "last at %.1f s; %d closed by the server"
                % (joined, g("announcements", 0), g("one_at_a_time", 0),
                   g("last_announcement_s", -1), g("closed_by_server", 0)))
    if a == 11:
        return ("%d/%d messages of %d B sent, %d came back, in %.1f s%s"
                % (g("sent", 0), g("count", 0), g("message_bytes", 0), g("received", 0),
                   g("elapsed_s", 0), "" if g("open_at_end") else
                   "; closed by the server (code %s)" % g("close_code")))
    if a == 12:
        neg = "negotiated" if g("negotiated") else "NOT negotiated"
        return ("deflate %s; %d messages of %d B (%d B compressed) = %.0f MiB to inflate; %d "
                "echoed; %d closed by the server%s"
                % (neg, g("sent", 0), g("message_bytes", 0), g("compressed_bytes", 0),
                   g("inflated_mib", 0), g("echoed", 0), g("closed_by_server", 0),
                   " (code %s)" % g("last_close_code") if g("closed_by_server") else ""))
    return ""


def check_cells(a, c):
    """(answer, detail) of a yes/no row."""
    if not c:
        return "no result", ""
    if a == 8:
        if c.get("dropped"):
            return ("yes", "the checking client closed with %s after the join of name=%%FF%%FE"
                    % (c.get("sent_code") or c.get("close_code")))
        return "no", "it got valid text: `%s`" % c.get("received")
    if a == 9:
        stored = c.get("stored_title")
        return ("stored intact" if c.get("intact") else "not intact",
                "status %s; stored title %s" % (c.get("status"), json.dumps(stored)))
    if a == 13:
        outs = ", ".join("%s %d" % kv for kv in sorted(c.get("outcomes", {}).items()))
        exits = ", ".join("%s x%d" % kv for kv in sorted(c.get("exit_status", {}).items()))
        return ("%d resets of %d" % (c.get("resets", 0), c.get("tries", 0)),
                "%s; exit status %s; slowest exit %.3f s after SIGTERM"
                % (outs, exits, c.get("slowest_exit_s", 0)))
    return "", ""


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--command", default="bench/abuse.sh")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--attacks", default="")
    ap.add_argument("--peers", default="")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cap-mib", type=int, default=4096)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    out = args.out
    runs = []
    with open(os.path.join(out, "raw", "runs.jsonl")) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    try:
        with open(os.path.join(out, "raw", "versions.json")) as f:
            versions = json.load(f)
    except (OSError, ValueError):
        versions = {}
    try:
        with open(os.path.join(out, "samples.json")) as f:
            for x in json.load(f).get("runs", []):
                if x.get("watch") is not None:
                    KEPT[x["run"].get("watch")] = x["watch"]
    except (OSError, ValueError):
        pass
    attacks = [int(x) for x in args.attacks.split() if x.isdigit() and int(x) in TITLES]
    peers = args.peers.split()
    cap_kib = args.cap_mib * 1024

    samples = []
    md = []
    md.append("# crest under abuse, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    md.append("")
    md.append("Command: `%s`; the whole run took %d min %02d s." % (
        args.command, args.elapsed // 60, args.elapsed % 60))
    md.append("")
    for k in ("crest", "nginx", "node", "python", "kernel"):
        if k in versions:
            md.append("- %s: %s" % (k, versions[k]))
    md.append("")
    md.append(
        "Each attack ran against a fresh server pinned to CPU 0 (crest `--threads 1` unless "
        "said, nginx one worker, Node one process, all with their production defaults; "
        "settings below), from `bench/tools/abuse` on CPU 1 bound to 127.0.0.2-8. The server's "
        "RSS (VmRSS of all its processes) was sampled every 100 ms; a bystander on CPU 1 sent "
        "GET /healthz 20 times a second from 127.0.0.9, timing each request from when it was "
        "due (2 s timeout = failed). Idle = RSS in the second before the attack (after any "
        "set-up); peak = highest from the start of the attack to AFTER s after it; after = RSS "
        "AFTER s after the attack ended. Bystander p50/p99/max: requests due during the "
        "attack; failed: from its start to AFTER s after. Server CPU: share of one core "
        "during the attack (others: the rest of CPU 0's busy time, other tenants of this shared "
        "machine). An attack stops early once the server's RSS passes %d MiB (\"> cap\"). "
        "A server still running 15 s after SIGTERM is killed." % args.cap_mib)
    if args.repeats > 1:
        md += ["", "%d repeats, peers in rotating order: each cell is the median (min–max) over "
               "them; bystander failures are summed; crest's targets are judged on the medians."
               % args.repeats]
    else:
        md += ["", "One run of each: this machine is shared and noisy, so single figures (the "
               "bystander's above all) vary from run to run; REPEATS=3 gives medians."]
    if args.note:
        md += ["", "**%s**" % args.note]
    md.append("")
    after = max([x.get("after_s", 10) for x in runs if "after_s" in x] or [10])
    md.append("| # | attack | peer | idle RSS | peak RSS | RSS AFTER s after | bystander p50 / "
              "p99 / max ms | bystander failed / sent | server CPU | attack figure |")
    md.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    targets = []
    for a in attacks:
        if a in (8, 9, 13):
            continue
        for peer in peers:
            rs = [x for x in runs if x["attack"] == a and x["peer"] == peer]
            if not rs:
                why = NA.get((a, peer))
                if why:
                    md.append("| %d | %s | %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a: %s |"
                              % (a, TITLES[a], peer, why))
                continue
            done = []
            for run in rs:
                r, w = analyse(run, out, args.cap_mib)
                samples.append({"run": run, "figures": r, "watch": w})
                if "idle_kib" in r:
                    done.append((run, r))
            if not done:
                md.append("| %d | %s | %s | | | | | | | %s %s |" % (
                    a, TITLES[a], peer, r.get("error", ""), rs[-1].get("note", "")))
                continue
            # One run: its figures. Several: the median (min-max) of each, failures summed,
            # and the attack's own figure from the run with the median peak.
            n = len(done)
            by_peak = sorted(done, key=lambda x: x[1]["peak_kib"] or 0)
            run, r = by_peak[(n - 1) // 2]

            def med(key):
                xs = [x[1].get(key) for x in done if x[1].get(key) is not None]
                return statistics.median(xs) if xs else None

            def cell(key, fmt, unit=""):
                xs = [x[1].get(key) for x in done if x[1].get(key) is not None]
                if not xs:
                    return "n/a"
                if n == 1:
                    return fmt(xs[0]) + unit
                return "%s (%s–%s)%s" % (fmt(statistics.median(xs)), fmt(min(xs)), fmt(max(xs)),
                                         unit)

            def mib_n(kib):
                return "%.1f" % (kib / 1024)

            capped = sum(1 for x in done if x[1]["capped"])
            peak = cell("peak_kib", mib_n, " MiB")
            if capped:
                peak = "> %d MiB (stopped%s)" % (
                    args.cap_mib, "" if n == 1 else " in %d of %d runs" % (capped, n))
            byst = " / ".join(cell(k, ms) for k in ("by_p50", "by_p99", "by_max"))
            failed = sum(x[1]["by_failed"] for x in done)
            fails = "%d / %d" % (failed, sum(x[1]["by_sent_all"] for x in done))
            kinds = {}
            for x in done:
                for k, v in x[1]["by_fail_kinds"].items():
                    kinds[k] = kinds.get(k, 0) + v
            if kinds:
                fails += " (%s)" % ", ".join("%s %d" % kv for kv in sorted(kinds.items()))
            cpu = cell("cpu_pct", lambda v: "%.0f" % v, " %")
            if med("cpu0_other_pct") is not None:
                cpu += " (others %.0f %%)" % med("cpu0_other_pct")
            fig = figure(a, run, r)
            if a != 1 and (run.get("stop_how") != "exited" or run.get("stop_ms", 0) > 1000):
                fig += "; SIGTERM: %s" % stop_text(run)
            if run.get("note"):
                fig += " [%s]" % run["note"]
            if n > 1:
                fig = "(repeat %d, the median peak) %s" % (run.get("repeat", 0), fig)
            label = TITLES[a] + (" (crest --threads 2)" if a == 4 and peer == "crest" else "")
            md.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                a, label, peer, cell("idle_kib", mib_n, " MiB"), peak,
                cell("after_kib", mib_n, " MiB"), byst, fails,
                cpu, fig))
            if peer == "crest":
                idle, peak_kib, after_kib, p99 = (med("idle_kib"), med("peak_kib"),
                                                  med("after_kib"), med("by_p99"))
                b, how = budget(a, run.get("tool"))
                lim = None if b is None else idle + b + SLACK
                peak_ok = None if lim is None or peak_kib is None else (
                    not capped and peak_kib <= lim)
                after_ok = None if after_kib is None else after_kib <= idle + NEAR_IDLE
                p99_ok = None
                if p99 is not None:
                    p99_ok = p99 < P99_MS
                elif any(x[1]["by_sent"] for x in done):
                    p99_ok = False  # every request during the attack failed
                targets.append((a, peak, lim, how, peak_ok, after_kib, idle, after_ok, p99,
                                p99_ok, failed, failed == 0))

    checks = [x for x in runs if x["attack"] in (8, 9, 13)]
    if any(a in (8, 9, 13) for a in attacks):
        md.append("")
        md.append("## Yes/no rows")
        md.append("")
        md.append("| # | check | peer | result | detail |")
        md.append("| --- | --- | --- | --- | --- |")
        for a in (8, 9, 13):
            if a not in attacks:
                continue
            q = {8: "standards-checking member dropped (1007)?", 9: "NUL stored intact?",
                 13: "resets"}[a]
            for peer in peers:
                rs = [x for x in checks if x["attack"] == a and x["peer"] == peer]
                if not rs:
                    why = NA.get((a, peer))
                    if why:
                        md.append("| %d | %s: %s | %s | n/a | %s |" % (a, TITLES[a], q, peer, why))
                    continue
                ans, detail = check_cells(a, rs[-1].get("check"))
                md.append("| %d | %s: %s | %s | %s | %s |" % (a, TITLES[a], q, peer, ans, detail))
                samples.append({"run": rs[-1]})

    if targets:
        md.append("")
        md.append("## crest's targets")
        md.append("")
        md.append("Peak RSS within the configured budget (idle + the limits' sum below + %d MiB "
                  "slack; crest's defaults: 16 KiB request head, 1 MiB --max-output, "
                  "--max-body, --ws-max-buffered and --ws-max-message); RSS back within %d MiB "
                  "of idle AFTER s after; bystander p99 under %d ms (except where the attack is "
                  "CPU work the client asked for); no bystander request failed."
                  % (SLACK // MIB, NEAR_IDLE // MIB, P99_MS))
        md.append("")
        md.append("| # | peak RSS | budget | peak within | AFTER s after (idle) | back near idle | "
                  "bystander p99 | p99 < 50 ms | failed | none failed |")
        md.append("| --- | ---: | --- | --- | ---: | --- | ---: | --- | ---: | --- |")
        for (a, peak, lim, how, peak_ok, after_kib, idle, after_ok, p99, p99_ok, failed,
             fail_ok) in targets:
            p99v = verdict(p99_ok)
            if a in CPU_WORK:
                p99v = "exempt (%s; would be %s)" % (CPU_WORK[a], p99v)
            md.append("| %d | %s | %s (%s) | %s | %s (%s) | %s | %s ms | %s | %d | %s |" % (
                a, peak, mib(lim), how, verdict(peak_ok), mib(after_kib), mib(idle),
                verdict(after_ok), ms(p99), p99v, failed, verdict(fail_ok)))

    md.append("")
    md.append("## Settings")
    md.append("")
    md.append("- crest: `crest demo --threads 1` (attack 4: `--threads 2`; 12: `--ws-deflate`), "
              "its defaults otherwise; attack 1 under `prlimit --nofile=N:N` with N the "
              "FD_LIMIT, every other server and attack under 20,000.")
    md.append("- nginx: bench/peers/nginx/abuse.conf: Debian's defaults but one worker, "
              "access_log off, worker_connections 16384 (so the open-files limit binds, as for "
              "the others); POST /echo is `return 200` (nginx reads and discards the body: it "
              "cannot echo one without a module).")
    md.append("- Node.js http: bench/peers/node/http.js with KEEPALIVE_S=5 (Node's default "
              "keep-alive); POST /echo buffers up to 1 MiB and sends it back.")
    md.append("- Node.js ws: bench/peers/ws/server.js (ws's defaults, maxPayload 1 MiB; "
              "perMessageDeflate on for attack 12 only).")
    md.append("")
    md.append("Exact commands and every raw sample: samples.json; server logs: logs/.")
    text = "\n".join(md).replace("AFTER s", "%d s" % after) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "samples.json"), "w") as f:
        json.dump({"versions": versions, "command": args.command, "elapsed_s": args.elapsed,
                   "runs": samples}, f)
    # The watchers' files are in samples.json now.
    for x in samples:
        if x.get("watch") is not None:
            try:
                os.remove(os.path.join(out, x["run"]["watch"]))
            except OSError:
                pass
    print(text)


if __name__ == "__main__":
    main()
