#!/usr/bin/env bash
# bench/cpu.sh: does CPU-heavy work hurt everyone else? p50/p99 latency of GET /healthz while
# 2 x CPUs clients keep POST /work/hash (PBKDF2-HMAC-SHA256, ROUNDS rounds) running without
# pause, for crest (worker pool) against Node.js hashing inline (crypto.pbkdf2Sync in the
# handler), Node.js with a worker_threads pool, and Python FastAPI (run_in_threadpool).
#
# The latency is measured by bench/peers/cpu/probe.py, which times each /healthz itself (one at
# a time, every INTERVAL s, on a keep-alive connection), not by wrk. Every server may use every
# CPU (the worker pool spreading over cores is what is measured); each is one process with one
# event loop (crest --threads 1). The clients are pinned to the last CPU. Peers run interleaved,
# REPEATS times; the table shows the median and min-max over repeats, with the ratio to crest.
# Target: crest's /healthz p99 under 5 ms.
#
# Usage: bench/cpu.sh      Env: REPEATS (3), DURATION s (10), WARMUP s (2), ROUNDS (100000),
#        INTERVAL s (0.005), PEERS ("crest-noload crest node-inline node-workers fastapi";
#        crest-noload is crest with no hash clients: the probe's own noise floor)
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-100000}
INTERVAL=${INTERVAL:-0.005}
PEERS=${PEERS:-crest-noload crest node-inline node-workers fastapi}
NCPU=$(nproc)
LOAD=$((2 * NCPU))
CLIENT_CPU=$((NCPU - 1))
PY=/usr/bin/python3

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

declare -a STARTED=()
WORK=$(mktemp -d /tmp/crest-cpu.XXXXXX)
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
# Only what this script runs (nodejs may come from NodeSource, which Debian's npm conflicts with).
missing=""
for p in nodejs python3-fastapi python3-uvicorn curl procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [[ -n $missing ]]; then
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $missing >&2
fi
[[ -x $REPO/build/crest ]] || make -C "$REPO" -j"$NCPU" all >&2

OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)-cpu"
mkdir -p "$OUT/logs"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_healthz() { # PORT
    local i
    for ((i = 0; i < 300; i++)); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

SERVER_PID=""
start_peer() { # NAME PORT
    local name=$1 port=$2
    case $name in
    crest | crest-noload)
        "$REPO/build/crest" demo --quiet --port "$port" --threads 1 --workers "${CREST_WORKERS:-$NCPU}" \
            --db "sqlite:$WORK/crest.db" >"$OUT/logs/$name.log" 2>&1 &
        ;;
    node-inline | node-workers)
        node "$BENCH/peers/cpu/node_hash.js" "$port" "${name#node-}" >"$OUT/logs/$name.log" 2>&1 &
        ;;
    fastapi)
        (cd "$BENCH/peers/cpu" && exec $PY -m uvicorn fastapi_hash:app --host 127.0.0.1 \
            --port "$port" --log-level warning --no-access-log) >"$OUT/logs/fastapi.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    wait_healthz "$port" || { log "$name did not start"; return 1; }
}

busy_ticks() { # all CPUs' busy time in clock ticks (user nice system irq softirq steal)
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

proc_ticks() { # PID -> utime+stime of the process (all its threads)
    awk '{print $14 + $15}' "/proc/$1/stat"
}

stop_peer() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# Same answer from every peer before anything is timed.
check_peer() { # NAME PORT
    local got want
    got=$(curl -fsS -X POST --data-binary pw "http://127.0.0.1:$2/work/hash?rounds=3" |
        $PY -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
    want=$($PY -c 'import hashlib; print(hashlib.pbkdf2_hmac("sha256", b"pw", b"crest-work-hash", 3, 32).hex())')
    [[ $got == "$want" ]] || { log "$1: wrong digest $got"; return 1; }
}

{
    echo "crest $("$REPO/build/crest" --version | cut -d' ' -f2) ($(git -C "$REPO" rev-parse --short HEAD))"
    echo "node $(node --version)"
    echo "fastapi $($PY -c 'import fastapi; print(fastapi.__version__)'), uvicorn $($PY -c 'import uvicorn; print(uvicorn.__version__)'), python $($PY -c 'import platform; print(platform.python_version())')"
    echo "$NCPU CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
} >"$OUT/versions.txt"

echo "[" >"$OUT/samples.json"
first=1
for ((rep = 1; rep <= REPEATS; rep++)); do
    for name in $PEERS; do
        port=$(free_port)
        start_peer "$name" "$port" || continue
        check_peer "$name" "$port"
        load=$LOAD
        [[ $name == crest-noload ]] && load=0
        log "repeat $rep/$REPEATS: $name ($load hash clients, $ROUNDS rounds, ${DURATION}s)"
        b0=$(busy_ticks)
        s0=$(proc_ticks "$SERVER_PID")
        w0=$(date +%s.%N)
        res=$(taskset -c "$CLIENT_CPU" $PY "$BENCH/peers/cpu/probe.py" "$port" "$load" "$ROUNDS" \
            "$WARMUP" "$DURATION" "$INTERVAL")
        # Other load: CPU time spent by anything but this server and this client over the run,
        # as a share of all CPUs (the machine is shared; a run with much of it is suspect).
        other=$($PY -c "
import json, os, sys, time
hz = os.sysconf('SC_CLK_TCK'); r = json.loads(sys.argv[1])
busy = (int(sys.argv[2]) - int(sys.argv[3])) / hz
server = (int(sys.argv[4]) - int(sys.argv[5])) / hz
wall = time.time() - float(sys.argv[6])
print(round(max(0.0, busy - server - r['client_cpu_s']) / (wall * $NCPU) * 100, 1))
" "$res" "$(busy_ticks)" "$b0" "$(proc_ticks "$SERVER_PID")" "$s0" "$w0")
        res="${res%\}}, \"other_load_pct\": $other}"
        stop_peer
        [[ $first == 1 ]] || echo "," >>"$OUT/samples.json"
        first=0
        echo "{\"peer\":\"$name\",\"repeat\":$rep,\"result\":$res}" >>"$OUT/samples.json"
        log "  $res"
    done
done
echo "]" >>"$OUT/samples.json"

$PY - "$OUT" "$PEERS" "$LOAD" "$ROUNDS" "$DURATION" "$REPEATS" <<'PYEOF' | tee "$OUT/report.md"
import json, statistics, sys
out, peers, load, rounds, duration, repeats = sys.argv[1:7]
samples = json.load(open(out + "/samples.json"))
peers = peers.split()
def agg(peer, key):
    v = [s["result"][key] for s in samples if s["peer"] == peer]
    return (statistics.median(v), min(v), max(v)) if v else None
print("## /healthz latency while %s clients hash continuously (PBKDF2-SHA256, %s rounds)\n"
      % (load, rounds))
print(open(out + "/versions.txt").read().strip().replace("\n", "; ") + "\n")
print("%s repeats x %s s, median (min-max); ratio = peer / crest.\n" % (repeats, duration))
print("| peer | /healthz p50 ms | /healthz p99 ms | p99 vs crest | max ms | hash jobs/s | errors "
      "| other load % |")
print("|---|---|---|---|---|---|---|---|")
base = agg("crest", "p99_ms")
for p in peers:
    a50, a99, amax, ahs, aoth = (agg(p, k) for k in ("p50_ms", "p99_ms", "max_ms",
                                                     "hashes_per_s", "other_load_pct"))
    if a99 is None:
        print("| %s | did not run | | | | | | |" % p)
        continue
    errs = sum(s["result"]["hash_errors"] for s in samples if s["peer"] == p)
    ratio = "%.1fx" % (a99[0] / base[0]) if base else "-"
    f = lambda a: "%.2f (%.2f-%.2f)" % a
    print("| %s | %s | %s | %s | %.1f | %.1f | %d | %.0f (%.0f-%.0f) |"
          % (p, f(a50), f(a99), ratio, amax[0], ahs[0], errs, *aoth))
if base:
    print("\ncrest /healthz p99 target < 5 ms: %s (%.2f ms)"
          % ("PASS" if base[0] < 5 else "MISS", base[0]))
PYEOF
log "results in $OUT"
