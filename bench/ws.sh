#!/usr/bin/env bash
# WebSocket showdown: crest against Node.js `ws` and Python `websockets` serving the same
# /ws/echo and /ws/chat (bench/peers/ws), measured side by side in one invocation (BENCH.md).
#
#   bench/ws.sh                 # 3 interleaved repeats, 19,000 idle connections
#   REPEATS=5 SECS=5 IDLE=19000 FAN_CONNS=500 bench/ws.sh
#
# Workloads (bench/tools/wsload.c, the load generator, pinned to CPU 1; servers on CPU 0, one
# core each: crest --threads 1, node and python one process):
#   echo    ECHO_CONNS sockets, 4 messages of 32 bytes in flight each: echoes/s, p50/p99 RTT
#   fanout  FAN_CONNS members of one room, FAN_SENDERS senders with 4 (then 16) messages each in
#           flight (closed loop): chat messages delivered/s over all members, p50/p99 delivery
#           latency (send time carried in the payload), server CPU time per delivery
#   idle    IDLE upgraded idle sockets from 4 load processes on 127.0.0.2-9; server RSS before and
#           after divided by IDLE, and kernel socket memory from /proc/net/sockstat
# Results: bench/results/ws-<date>/ (report.md, samples.json, logs/); git ignores them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPEATS=${REPEATS:-3}
SECS=${SECS:-5}
WARMUP=${WARMUP:-2}
ECHO_CONNS=${ECHO_CONNS:-50}
FAN_CONNS=${FAN_CONNS:-500}
FAN_SENDERS=${FAN_SENDERS:-5}
IDLE=${IDLE:-19000}
IDLE_PROCS=${IDLE_PROCS:-4}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PEERS=${PEERS:-"crest node python"}
PY=/usr/bin/python3

OUT=bench/results/ws-$(date +%Y-%m-%d-%H%M%S)
mkdir -p "$OUT/logs" "$OUT/tools"
WORK=$(mktemp -d /tmp/crest-wsbench.XXXXXX)
SAMPLES=$OUT/samples.txt
: >"$SAMPLES"
SERVER_PID=

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

scripts/deps.sh bench
[ -d bench/peers/ws/node_modules/ws ] || (cd bench/peers/ws && npm install --no-audit --no-fund >&2)
make -s -j2 all >&2
gcc -std=c11 -O2 -Wall -Wextra -Werror -Isrc -Iinclude -o "$OUT/tools/wsload" bench/tools/wsload.c \
    src/codec/ws_frame.c src/core/utf8.c
WSLOAD=$OUT/tools/wsload

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # peer port
    local peer=$1 port=$2
    case $peer in
    crest) cmd=("$ROOT/build/crest" demo --threads 1 --port "$port" --quiet --db "sqlite:$WORK/crest.db"
                --ws-ping-interval 10m) ;;
    node) cmd=(env PORT="$port" node "$ROOT/bench/peers/ws/server.js") ;;
    python) cmd=(env PORT="$port" $PY "$ROOT/bench/peers/ws/server.py") ;;
    esac
    (cd "$WORK" && exec taskset -c "$SERVER_CPU" "${cmd[@]}") >>"$OUT/logs/$peer.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "ws.sh: $peer did not start" >&2
    return 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# The server's user-space memory: VmRSS of the process and its children (node, python: one).
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }
server_pid() { # the real server under taskset/env: the process listening
    local pid=$SERVER_PID child
    child=$(pgrep -P "$pid" | head -1 || true)
    echo "${child:-$pid}"
}
sock_mem_pages() { awk '/^TCP:/ {for (i = 1; i <= NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }
sock_inuse() { awk '/^TCP:/ {for (i = 1; i <= NF; i++) if ($i == "inuse") print $(i + 1)}' /proc/net/sockstat; }

record() { echo "$*" >>"$SAMPLES"; }

run_load() { # peer repeat
    local peer=$1 rep=$2 port line pid t0 t1
    port=$(free_port)
    start_server "$peer" "$port"
    pid=$(server_pid)
    line=$(taskset -c "$CLIENT_CPU" "$WSLOAD" -m echo -p "$port" -P "$pid" -n "$ECHO_CONNS" -w 4 -s 32 \
        -d "$SECS" -W "$WARMUP" 2>>"$OUT/logs/wsload.log") || line="failed"
    echo "$peer #$rep echo: $line" >&2
    record "$peer echo $rep $line"
    line=$(taskset -c "$CLIENT_CPU" "$WSLOAD" -m fanout -p "$port" -P "$pid" -n "$FAN_CONNS" -S "$FAN_SENDERS" \
        -w 4 -d "$SECS" -W "$WARMUP" -r "bench$rep" 2>>"$OUT/logs/wsload.log") || line="failed"
    echo "$peer #$rep fanout: $line" >&2
    record "$peer fanout $rep $line"
    line=$(taskset -c "$CLIENT_CPU" "$WSLOAD" -m fanout -p "$port" -P "$pid" -n "$FAN_CONNS" -S "$FAN_SENDERS" \
        -w 16 -d "$SECS" -W "$WARMUP" -r "burst$rep" 2>>"$OUT/logs/wsload.log") || line="failed"
    echo "$peer #$rep fanout16: $line" >&2
    record "$peer fanout16 $rep $line"
    stop_server
}

run_idle() { # peer
    local peer=$1 port pid rss0 rss1 mem0 mem1 per i pids=() ready=0
    port=$(free_port)
    start_server "$peer" "$port"
    pid=$(server_pid)
    # Warm the server up with a few connections first, so that one-time allocations are not
    # charged to the idle connections.
    taskset -c "$CLIENT_CPU" "$WSLOAD" -m idle -p "$port" -n 100 -H 0 >/dev/null 2>>"$OUT/logs/wsload.log" || true
    sleep 0.5
    rss0=$(rss_kib "$pid")
    mem0=$(sock_mem_pages)
    local inuse0 inuse1
    inuse0=$(sock_inuse)
    grep -E '^(TCP|sockets):' /proc/net/sockstat | sed "s/^/$peer before: /" >>"$OUT/logs/sockstat.log"
    per=$((IDLE / IDLE_PROCS))
    for i in $(seq 0 $((IDLE_PROCS - 1))); do
        taskset -c "$CLIENT_CPU" "$WSLOAD" -m idle -p "$port" -n "$per" -b $((2 + i * 2)) -k 2 -H 600 \
            >"$WORK/idle.$i" 2>>"$OUT/logs/wsload.log" &
        pids+=($!)
    done
    for _ in $(seq 1200); do
        ready=$(cat "$WORK"/idle.* 2>/dev/null | grep -c '^ready' || true)
        [ "$ready" -ge "$IDLE_PROCS" ] && break
        if ! kill -0 "${pids[@]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    sleep 1
    rss1=$(rss_kib "$pid")
    mem1=$(sock_mem_pages)
    inuse1=$(sock_inuse)
    grep -E '^(TCP|sockets):' /proc/net/sockstat | sed "s/^/$peer after: /" >>"$OUT/logs/sockstat.log"
    local held=$((per * ready))
    echo "$peer idle: ready=$ready/$IDLE_PROCS held=$held rss_before=${rss0}KiB rss_after=${rss1}KiB sockmem_pages=$mem0->$mem1" >&2
    record "$peer idle 1 held=$held rss_before_kib=$rss0 rss_after_kib=$rss1 sock_pages_before=$mem0 sock_pages_after=$mem1 tcp_inuse_before=$inuse0 tcp_inuse_after=$inuse1"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    stop_server
}

{
    echo "crest: $(build/crest --version)"
    echo "node: $(node --version), ws $(node -p 'require("./bench/peers/ws/node_modules/ws/package.json").version')"
    echo "python: $($PY --version 2>&1 | cut -d' ' -f2), websockets $($PY -c 'import websockets; print(websockets.__version__)')"
    echo "kernel: $(uname -r); cpus: $(nproc)"
} >"$OUT/versions.txt"
cat "$OUT/versions.txt" >&2

for rep in $(seq "$REPEATS"); do
    for peer in $PEERS; do
        run_load "$peer" "$rep"
    done
done
for peer in $PEERS; do
    run_idle "$peer"
done

$PY - "$SAMPLES" "$OUT" "$REPEATS" "$SECS" "$ECHO_CONNS" "$FAN_CONNS" "$FAN_SENDERS" "$IDLE" <<'EOF'
import json, statistics, sys
samples, out, repeats, secs, echo_n, fan_n, fan_s, idle = sys.argv[1:]
rows = []
for line in open(samples):
    peer, work, rep, *kv = line.split()
    d = {"peer": peer, "workload": work, "repeat": int(rep)}
    for x in kv:
        if "=" in x:
            k, v = x.split("=", 1)
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
    rows.append(d)
json.dump(rows, open(out + "/samples.json", "w"), indent=1)
peers = []
for r in rows:
    if r["peer"] not in peers:
        peers.append(r["peer"])
versions = open(out + "/versions.txt").read().strip()
md = ["# WebSocket benchmark", "", "```", versions, "```", "",
      "Server on CPU 0 (crest --threads 1, node and python one process), load generator "
      "(bench/tools/wsload) on CPU 1. Median of %s interleaved repeats (min-max); %s s measured "
      "after warm-up." % (repeats, secs), ""]

def table(work, title, key, unit, extra=()):
    md.append("## " + title)
    md.append("")
    md.append("| peer | %s | ratio to crest | p50 latency (us) | p99 latency (us) | server CPU per "
              "message (us) |" % unit)
    md.append("|---|---|---|---|---|---|")
    base = None
    for p in peers:
        xs = [r for r in rows if r["peer"] == p and r["workload"] == work and key in r]
        if not xs:
            md.append("| %s | failed | | | | |" % p)
            continue
        v = [r[key] for r in xs]
        med = statistics.median(v)
        p50 = statistics.median(r["p50_us"] for r in xs)
        p99 = statistics.median(r["p99_us"] for r in xs)
        cpu = statistics.median(r.get("server_cpu_us_per_msg", 0) for r in xs)
        if p == "crest":
            base = med
        ratio = "%.2fx" % (med / base) if base else ""
        md.append("| %s | %.0f (%.0f-%.0f) | %s | %.0f | %.0f | %.2f |" % (
            p, med, min(v), max(v), ratio, p50, p99, cpu))
    md.append("")

table("echo", "Echo: %s connections, 4 x 32-byte messages in flight each" % echo_n, "msgs_per_s",
      "echoes/s")
table("fanout", "Room fan-out: %s members, %s senders (4 in flight each)" % (fan_n, fan_s),
      "msgs_per_s", "deliveries/s")
table("fanout16", "Room fan-out, bursts: %s members, %s senders (16 in flight each)" % (fan_n, fan_s),
      "msgs_per_s", "deliveries/s")
md.append("The load generator has one core: where the server's CPU per message is far below "
          "1e6 / (deliveries/s), the server was not saturated and deliveries/s is the "
          "generator's limit.")
md.append("")
md.append("## Idle connections: %s upgraded WebSockets held by one server process" % idle)
md.append("")
md.append("| peer | held | RSS before (KiB) | RSS after (KiB) | user space per connection | "
          "kernel TCP buffer memory (4 KiB pages) before -> after | TCP sockets in use |")
md.append("|---|---|---|---|---|---|---|")
for p in peers:
    for r in rows:
        if r["peer"] == p and r["workload"] == "idle":
            held = r.get("held", 0)
            per = (r["rss_after_kib"] - r["rss_before_kib"]) * 1024 / held if held else float("nan")
            md.append("| %s | %d | %d | %d | %.0f bytes | %d -> %d | %d -> %d |" % (
                p, held, r["rss_before_kib"], r["rss_after_kib"], per,
                r["sock_pages_before"], r["sock_pages_after"], r.get("tcp_inuse_before", 0),
                r.get("tcp_inuse_after", 0)))
md.append("")
md.append("Kernel memory per socket is not in RSS: /proc/net/sockstat's TCP `mem` counts buffer pages "
          "only (idle sockets hold none); the socket structures themselves live in kernel slabs "
          "(logs/sockstat.log has the raw lines).")
md.append("")
open(out + "/report.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
echo "ws.sh: results in $OUT" >&2
