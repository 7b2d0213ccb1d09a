"""The load generators the showdown drives, and the parsing of what they print: wrk (with
bench/report.lua's WRKJSON line), h2load, bench/tools/wsload, the connection holders
(bench/tools/idleconn, wsmembers) and bench/tools/chatrest. The parsers are pure functions of the
text (tests/it/test_showdown.py feeds them recorded outputs)."""

import json
import os
import re
import subprocess
import tempfile
import threading

from lib import CLIENT_CPU, CLK_TCK, ROOT

BENCH = os.path.join(ROOT, "bench")


class LoadError(Exception):
    pass


# ---------------------------------------------------------------- wrk -----------------------

def parse_wrk(text):
    """wrk's output -> {requests, seconds, rps, errors: {...}, non2xx, p50_us, p99_us}. Takes the
    WRKJSON line of bench/report.lua when there is one (exact counts and percentiles), else wrk's
    own summary; `Non-2xx or 3xx responses: N` is read from the summary either way."""
    non2xx = 0
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        non2xx = int(m.group(1))
    for line in text.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line[len("WRKJSON "):])
            secs = d["duration_us"] / 1e6
            lat = d.get("latency_us", {})
            return {"requests": d["requests"], "seconds": secs,
                    "rps": d["requests"] / secs if secs > 0 else 0.0,
                    "errors": d.get("errors", {}), "non2xx": non2xx,
                    "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
                    "bytes": d.get("bytes", 0)}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise LoadError("no wrk summary in: %r" % text[-300:])
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    req, secs = int(m.group(1)), float(m.group(2)) * scale
    errors = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    return {"requests": req, "seconds": secs, "rps": req / secs if secs else 0.0,
            "errors": errors, "non2xx": non2xx, "p50_us": None, "p99_us": None, "bytes": 0}


def wrk(url, seconds, conns=256, script=None, script_args=(), threads=1, cpus=CLIENT_CPU,
        server=None, timeout_s=None):
    """Runs wrk pinned to `cpus` for `seconds`; returns parse_wrk's dict plus, when `server` is
    given, the server's CPU time over the run (cpu_s) and wrk's own (client_cpu_s)."""
    script = script or os.path.join(BENCH, "report.lua")
    argv = ["taskset", "-c", cpus, "wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
            "--timeout", "%ds" % (timeout_s or max(4, seconds)), "-s", script, url]
    if script_args:
        argv += ["--"] + [str(a) for a in script_args]
    t0 = server.cpu_ticks() if server else 0
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)  # wrk's own CPU time: was the load generator the limit?
    p.returncode = os.waitstatus_to_exitcode(status)
    text = out.decode(errors="replace")
    if p.returncode != 0:
        raise LoadError("wrk exited %d: %s" % (p.returncode, text[-300:]))
    r = parse_wrk(text)
    r["client_cpu_s"] = ru.ru_utime + ru.ru_stime
    if server:
        r["cpu_s"] = (server.cpu_ticks() - t0) / CLK_TCK
    return r


# ---------------------------------------------------------------- h2load --------------------

def parse_h2load(text):
    """h2load's output -> {requests, ok, failed, errored, non2xx, rps, seconds}."""
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and r and s):
        raise LoadError("no h2load summary in: %r" % text[-300:])
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return {"seconds": float(m.group(1)) * scale, "rps": float(m.group(3)),
            "requests": int(r.group(3)), "ok": int(r.group(4)), "failed": int(r.group(5)),
            "errored": int(r.group(6)), "timeout": int(r.group(7)),
            "non2xx": int(s.group(2)) + int(s.group(3)) + int(s.group(4))}


# ---------------------------------------------------------------- wsload --------------------

def parse_kv(text):
    """The last line of key=value pairs (bench/tools/wsload) -> a dict of numbers or strings."""
    for line in reversed(text.strip().splitlines()):
        if "=" in line and not line.startswith(("ready", "done")):
            out = {}
            for tok in line.split():
                k, _, v = tok.partition("=")
                try:
                    out[k] = int(v)
                except ValueError:
                    try:
                        out[k] = float(v)
                    except ValueError:
                        out[k] = v
            return out
    raise LoadError("no key=value line in: %r" % text[-300:])


def _run_timed(argv, timeout):
    """Runs argv; (returncode, stdout text, stderr text, its CPU time in seconds: user + system
    from wait4, so the report can tell when the load generator was the limit). Killed after
    timeout seconds."""
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            out = p.stdout.read()
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
    return (p.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
            ru.ru_utime + ru.ru_stime)


def wsload(tools, port, mode, seconds, warmup, conns, extra=(), server_pid=None,
           cpus=CLIENT_CPU):
    """Runs bench/tools/wsload; parse_kv's dict plus client_cpu_s (wsload's own CPU time over
    its whole run, connecting and warm-up included)."""
    argv = ["taskset", "-c", cpus, os.path.join(tools, "wsload"), "-m", mode, "-p", str(port),
            "-n", str(conns), "-d", str(seconds), "-W", str(warmup)] + [str(a) for a in extra]
    if server_pid:
        argv += ["-P", str(server_pid)]
    rc, text, err, cpu = _run_timed(argv, seconds + warmup + 120)
    if rc != 0:
        raise LoadError("wsload exited %d: %s %s" % (rc, text[-200:], err[-300:]))
    r = parse_kv(text)
    r["client_cpu_s"] = cpu
    return r


# ---------------------------------------------------------------- connection holders --------

def parse_held(text):
    """What idleconn or wsmembers printed after it was stopped -> {open, closed_by_server}:
    idleconn's `done open=X closed_by_server=Y`, or wsmembers' `members N open X
    closed_by_server C ...`. None when neither is there (the tool was killed)."""
    m = re.search(r"^done open=(\d+) closed_by_server=(\d+)", text, re.M)
    if m:
        return {"open": int(m.group(1)), "closed_by_server": int(m.group(2))}
    m = re.search(r"^members \d+ open (\d+) closed_by_server (\d+)", text, re.M)
    if m:
        return {"open": int(m.group(1)), "closed_by_server": int(m.group(2))}
    return None


# ---------------------------------------------------------------- chatrest ------------------

def parse_chatrest(text):
    """bench/tools/chatrest's output -> {"steps": [one dict per `step` line, with rest_p99_ms
    and chat_p99_ms added (None where chatrest printed -1: what falls at the 99th percentile
    never arrived)], "users": the last step under the limit, "limit_ms", "stopped"}."""
    steps, result = [], None
    for line in text.splitlines():
        if line.startswith("step "):
            d = parse_kv(line[5:])
            for k in ("rest_p50", "rest_p99", "chat_p50", "chat_p99"):
                v = d.get(k + "_us")
                d[k + "_ms"] = None if v is None or v < 0 else v / 1000
            steps.append(d)
        elif line.startswith("result "):
            result = parse_kv(line[7:])
    if result is None:
        raise LoadError("no chatrest result in: %r" % text[-300:])
    return {"steps": steps, "users": result["users"], "limit_ms": result["limit_ms"],
            "stopped": result["stopped"]}


def chatrest(tools, port, steps, seconds, warmup, server_pid=None, cpus=CLIENT_CPU,
             extra=()):
    argv = ["taskset", "-c", cpus, os.path.join(tools, "chatrest"), "-p", str(port),
            "-u", ",".join(str(s) for s in steps), "-d", str(seconds), "-W", str(warmup)] + \
        [str(a) for a in extra]
    if server_pid:
        argv += ["-P", str(server_pid)]
    rc, text, err, _ = _run_timed(argv, len(steps) * (seconds + warmup + 62) + 30)
    if rc != 0:
        raise LoadError("chatrest exited %d: %s %s" % (rc, text[-200:], err[-300:]))
    r = parse_chatrest(text)
    r["stderr"] = err[-300:]
    return r


# ---------------------------------------------------------------- chatload ------------------

def parse_chatload(text):
    """bench/tools/chatload's output -> the dict of its `CHATLOAD {json}` line (deliveries_per_s,
    latency {p50_ms, p99_ms, ...}, latency_same_instance / latency_other_instance, expected,
    received, lost, duplicates, closed, server_cpu_s, client_core_pct, ...). A percentile of a
    latency without samples (chatload's -1) reads None. A line with only "error" (the members
    could not all join) is returned as it is."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("CHATLOAD "):
            d = json.loads(line[len("CHATLOAD "):])
            for k in ("latency", "latency_same_instance", "latency_other_instance"):
                h = d.get(k)
                if isinstance(h, dict):
                    for q in ("p50_ms", "p99_ms", "p999_ms"):
                        if h.get(q) is not None and h[q] < 0:
                            h[q] = None
            return d
    raise LoadError("no CHATLOAD line in: %r" % text[-300:])


def chatload(tools, ports, members, seconds, warmup, extra=(), server_pids=(), redis_pid=None,
             cpus=CLIENT_CPU, drain=5):
    """Runs bench/tools/chatload -x sio against the ports (members split evenly over them);
    parse_chatload's dict plus stderr's tail (its progress and failures). A run whose members
    could not all join comes back with "error" (chatload exits 1 then), not as an exception."""
    argv = ["taskset", "-c", cpus, os.path.join(tools, "chatload"), "-x", "sio",
            "-p", ",".join(str(p) for p in ports), "-n", str(members), "-d", str(seconds),
            "-W", str(warmup), "-D", str(drain)] + [str(a) for a in extra]
    if server_pids:
        argv += ["-P", ",".join(str(p) for p in server_pids)]
    if redis_pid:
        argv += ["-Q", str(redis_pid)]
    # Joining (120 s at most), sync (30 s at most), the run and the drain, and a minute.
    rc, text, err, _ = _run_timed(argv, 120 + 30 + warmup + seconds + drain + 60)
    if rc not in (0, 1):
        raise LoadError("chatload exited %d: %s %s" % (rc, text[-200:], err[-300:]))
    r = parse_chatload(text)
    r["stderr"] = err[-300:]
    return r
