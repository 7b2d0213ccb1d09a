#!/usr/bin/env bash
# bench/db.sh: the TechEmpower database tests on crest's embedded SQLite: /db, /queries?queries=20,
# /fortunes and /updates?queries=20, req/s and server CPU time per request, per core.
#
# crest runs with --threads 1 pinned to CPU 0 (its worker pool, which runs /updates, too), wrk
# with one thread pinned to CPU 1. Two configurations: the default synchronous=FULL (a commit
# fsyncs the WAL: durable across power loss) and synchronous=NORMAL (durable across kill -9
# only), so the cost of the stronger guarantee shows. Each counted run follows a warm-up; runs
# are interleaved over REPEATS repeats; the table shows the median and min-max.
#
# Usage: bench/db.sh    Env: REPEATS (3), DURATION s (10), WARMUP s (2), CONNS (64),
#        CONFIGS ("full normal")
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
CONFIGS=${CONFIGS:-full normal}
PY=/usr/bin/python3
ENDPOINTS="/db /queries?queries=20 /fortunes /updates?queries=20"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

declare -a STARTED=()
WORK=$(mktemp -d /tmp/crest-db.XXXXXX)
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "installing what is missing"
"$REPO/scripts/deps.sh" build
missing=""
for p in wrk curl procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [[ -n $missing ]]; then
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $missing >&2
fi
[[ -x $REPO/build/crest ]] || make -C "$REPO" -j"$(nproc)" all >&2
OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)-db"
mkdir -p "$OUT/logs"
{
    echo "crest $("$REPO/build/crest" --version | cut -d' ' -f2) ($(git -C "$REPO" rev-parse --short HEAD))"
    echo "SQLite $($PY -c 'import ctypes.util,ctypes; l=ctypes.CDLL(ctypes.util.find_library("sqlite3")); l.sqlite3_libversion.restype=ctypes.c_char_p; print(l.sqlite3_libversion().decode())')"
    echo "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "database on $(df -T "$WORK" | awk 'NR==2 {print $2}') ($WORK)"
} >"$OUT/versions.txt"

cpu0_ticks() { # CPU 0's busy time in clock ticks
    awk '/^cpu0 / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

cpu_ticks() { # PID -> utime+stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

echo "[" >"$OUT/samples.json"
first=1
for ((rep = 1; rep <= REPEATS; rep++)); do
    for cfg in $CONFIGS; do
        port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        # A fresh copy of one seeded database per run, so every run starts from the same file.
        rm -f "$WORK"/run.db*
        taskset -c 0 "$REPO/build/crest" demo --quiet --port "$port" --threads 1 \
            --db "sqlite:$WORK/run.db?synchronous=$cfg" >"$OUT/logs/crest-$cfg.log" 2>&1 &
        pid=$!
        STARTED+=("$pid")
        for ((i = 0; i < 200; i++)); do
            curl -fsS -o /dev/null "http://127.0.0.1:$port/db" 2>/dev/null && break
            sleep 0.05
        done
        for ep in $ENDPOINTS; do
            url="http://127.0.0.1:$port$ep"
            taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
            t0=$(cpu_ticks "$pid")
            c0=$(cpu0_ticks)
            res=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
            t1=$(cpu_ticks "$pid")
            c1=$(cpu0_ticks)
            echo "$res" >>"$OUT/logs/wrk.log"
            line=$($PY - "$res" "$((t1 - t0))" "$(getconf CLK_TCK)" "$((c1 - c0))" "$DURATION" <<'PYEOF'
import json, re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
other = max(0, int(sys.argv[4]) - ticks) / hz / float(sys.argv[5]) * 100
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
reqs = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
errs = int(m.group(1)) if m else 0
m = re.search(r"Socket errors:.*", out)
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
print(json.dumps({"rps": rps, "requests": reqs, "non2xx": errs,
                  "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 3) if p99 else None,
                  "cpu_us_per_req": round(ticks * 1e6 / hz / max(reqs, 1), 1),
                  "other_cpu0_pct": round(other, 1),
                  "socket_errors": m.group(0) if m else ""}))
PYEOF
            )
            [[ $first == 1 ]] || echo "," >>"$OUT/samples.json"
            first=0
            echo "{\"config\":\"$cfg\",\"endpoint\":\"$ep\",\"repeat\":$rep,\"result\":$line}" >>"$OUT/samples.json"
            log "repeat $rep $cfg $ep: $line"
        done
        kill -TERM "$pid"
        wait "$pid" || log "crest exited with status $?"
    done
done
echo "]" >>"$OUT/samples.json"

$PY - "$OUT" "$CONFIGS" "$ENDPOINTS" "$REPEATS" "$DURATION" "$CONNS" <<'PYEOF' | tee "$OUT/report.md"
import json, statistics, sys
out, configs, endpoints, repeats, duration, conns = sys.argv[1:7]
samples = json.load(open(out + "/samples.json"))
print("## TechEmpower database tests on SQLite (crest --threads 1 on CPU 0, wrk -t1 -c%s on CPU 1)\n" % conns)
print(open(out + "/versions.txt").read().strip().replace("\n", "; ") + "\n")
print("%s repeats x %s s; median (min-max).\n" % (repeats, duration))
print("| endpoint | synchronous | req/s | p99 ms | CPU us/req | non-2xx | other load on CPU 0 % |")
print("|---|---|---|---|---|---|---|")
for ep in endpoints.split():
    for cfg in configs.split():
        rs = [s["result"] for s in samples if s["endpoint"] == ep and s["config"] == cfg]
        if not rs:
            continue
        med = lambda k: statistics.median(r[k] for r in rs)
        print("| %s | %s | %.0f (%.0f-%.0f) | %.2f | %.1f | %d | %.0f |"
              % (ep, cfg, med("rps"), min(r["rps"] for r in rs), max(r["rps"] for r in rs),
                 med("p99_ms"), med("cpu_us_per_req"), sum(r["non2xx"] for r in rs),
                 med("other_cpu0_pct")))
PYEOF
log "results in $OUT"
