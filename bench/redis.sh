#!/usr/bin/env bash
# bench/redis.sh: chat fan-out across server instances through Redis pub/sub, in one invocation:
# one redis-server (started here), two instances of each peer on it, MEMBERS (1,000) WebSocket
# members of one room split evenly over the two instances, SENDERS (10) of them, half on each
# instance, sending to the room; every member, the sender too, must get every message exactly once.
#
# Peers (PEERS, default "crest socketio"):
# - crest: two `crest demo --threads 1 --redis redis://127.0.0.1:PORT` processes (each its own
#   SQLite file), members on GET /ws/chat?room=R&name=N. A crest without the Redis bridge exits
#   at start (unknown flag, status 2): its rows read "failed to start" with its message, and the
#   other peers are measured as usual.
# - socketio: two Node.js processes of bench/peers/sio-redis/server.js, Socket.IO 4 with
#   @socket.io/redis-adapter (ioredis clients, the adapter's defaults: key prefix "socket.io"),
#   the chat of crest's Socket.IO contract: `join` (room, ack), `chat` {room, text} -> every
#   member gets `chat` {room, name, text, ts}. Installed from its package-lock.json (npm ci).
#
# Placement: both instances of a peer on CPU 0 (SERVER_CPU), so the figure is what one core
# does for the whole two-instance room (BENCH.md: per core; crest --threads 1, one Node process
# each). Splitting them, A on CPU 0 and B on CPU 1, would give the servers two cores but put one
# of them beside the load generator, which then takes its share of that core and skews A against
# B; it would also no longer be per core. The load generator (bench/tools/chatload.c, C, epoll,
# one thread: a Node process with ws took in 0.35M deliveries/s from one crest instance with
# CPU 1 at 100 %, chatload 2.4M at 90 %, and 10x Socket.IO is about 0.9M) and redis-server run
# on CPU 1 (CLIENT_CPU, REDIS_CPU): Redis handles
# one PUBLISH per message and one delivery per subscribed instance, a few microseconds per
# message, and its CPU time is reported beside the servers'.
#
# Workloads (WORKLOADS, default "max rate"), on the same two instances, a new room each:
# - max: closed loop, each sender with at most WINDOW (4) messages not yet received by every
#   member (SENDERS x WINDOW = 40 messages, 40,000 deliveries in flight): as fast as the
#   instances deliver. Deliveries/s, and the latency at that saturation (mostly the time to work
#   through what is in flight). The window matters: crest coalesces the messages queued for one
#   socket into one write, so its figure grows with it (one crest instance without Redis, on a
#   busy CPU 0: 0.69M deliveries/s with WINDOW=1, 1.6-2.2M with 4, 3M with 16), Socket.IO's
#   barely (two processes: 57-74k with 1, 64k with 2, 90k with 8). 4 keeps the latency of
#   either below a second while crest's batching shows.
# - rate: open loop, RATE (20) messages/s in total (RATE x MEMBERS deliveries/s), each sender on
#   its own schedule, latency from the scheduled send time: the latency of both peers at the
#   same load, which Socket.IO can carry on one core.
# Each run: members join (64 handshakes at a time), a sync round (every member sees a message of
# every sender, so every instance is subscribed), WARMUP s (2) counted for exactly-once only,
# DURATION s (10) measured, then up to DRAIN s (5) for the last deliveries. Per run: deliveries/s
# (unique messages received by all members, per second), sent messages/s, delivery latency
# p50/p99/p99.9/max (each member: now - the send time carried in the text; also split by
# whether the member is on the sender's instance or the other one), expected (members x messages
# sent), received, lost, duplicates, reordered, the servers' CPU time per delivery (both
# instances, /proc/PID/stat), their core use, Redis's CPU per message and the load generator's
# own core use (near 100 %: the figure is the client's limit, not the server's) and what else
# kept CPU 0 busy (the kernel's network work outside the servers' time, other tenants of this
# shared machine). Each repeat runs
# every peer once, in rotating order; tables show median (min-max) over repeats.
#
# Redis: Debian's redis-server 7, on 127.0.0.1 and a free port, no persistence (--save ''
# --appendonly no), its folder in the scratch folder, every other setting at its default
# (client-output-buffer-limit pubsub 32mb 8mb 60: a subscriber that falls that far behind is
# disconnected, which the report would show as losses and a line from Redis's log). Stopped on exit.
#
# Usage: bench/redis.sh    Env: REPEATS (3), DURATION s (10), WARMUP s (2), DRAIN s (5),
#        MEMBERS (1000), SENDERS (10), WINDOW (4), RATE (20 messages/s), WORKLOADS ("max rate"),
#        PEERS ("crest socketio"), REDIS_CPU (1), CREST_BIN (build/crest, built when missing)
# The default run: 2 peers x 3 repeats x 2 workloads x about 15 s (join, sync, 2 + 10 s, drain,
# a pause) plus starts: about 3 minutes (95 s while crest fails to start); REPEATS=1 DURATION=3:
# about 20 s (35 with crest). A run that goes wrong is bounded too: 30 s of sync at most, each
# chatload under `timeout`, each instance 15 s to answer /healthz.
# Output: bench/results/YYYY-MM-DD-HHMMSS-redis/ with report.md (also printed), samples.json,
# versions.txt, logs/ (instances, Redis, npm, chatload).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
DRAIN=${DRAIN:-5}
MEMBERS=${MEMBERS:-1000}
SENDERS=${SENDERS:-10}
WINDOW=${WINDOW:-4}
RATE=${RATE:-20}
WORKLOADS=${WORKLOADS-max rate}
PEERS=${PEERS-crest socketio}
REDIS_CPU=${REDIS_CPU:-1}
CREST_BIN=${CREST_BIN:-$REPO/build/crest}
SERVER_CPU=0
CLIENT_CPU=1
PY=/usr/bin/python3
PEER_DIR=$BENCH/peers/sio-redis

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh" # log, die, stop_pid, tree_pids, raise_nofile, apt_install, STARTED

for p in $PEERS; do
    [[ $p == crest || $p == socketio ]] || die "PEERS: unknown '$p' (crest socketio)"
done
for w in $WORKLOADS; do
    [[ $w == max || $w == rate ]] || die "WORKLOADS: unknown '$w' (max rate)"
done
[[ -n $PEERS && -n $WORKLOADS ]] || die "nothing to run: PEERS and WORKLOADS must not be empty"
for v in REPEATS DURATION WARMUP DRAIN MEMBERS SENDERS WINDOW RATE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
((REPEATS >= 1 && REPEATS <= 20 && DURATION >= 1 && DURATION <= 300 && WARMUP <= 60 && DRAIN <= 60)) ||
    die "REPEATS 1..20, DURATION 1..300, WARMUP and DRAIN at most 60"
((MEMBERS >= 2 && MEMBERS <= 9000 && SENDERS >= 1 && SENDERS <= MEMBERS && WINDOW >= 1 && RATE >= 1)) ||
    die "MEMBERS 2..9000, SENDERS 1..MEMBERS, WINDOW and RATE at least 1"
CMDLINE=$(command_line bench/redis.sh WARMUP:2 DRAIN:5 MEMBERS:1000 SENDERS:10 WINDOW:4 RATE:20 \
    "WORKLOADS:max rate" "PEERS:crest socketio" REDIS_CPU:1 "CREST_BIN:$REPO/build/crest")

WORK=$(mktemp -d /tmp/crest-redis.XXXXXX)
OUT=""
REDIS_PID=""
save_logs() { # lib.sh's cleanup calls this before removing WORK
    cp "$WORK/redis/redis.log" "$OUT/logs/redis.log" 2>/dev/null || true
}

# ---------------------------------------------------------------- install -------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" build
apt_install redis-server gcc curl procps python3
if [[ " $PEERS " == *" socketio "* ]]; then
    # nodejs may come from NodeSource (npm included), which Debian's npm package conflicts with.
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
fi
if [[ " $PEERS " == *" crest "* && ! -x $CREST_BIN && $CREST_BIN == "$REPO/build/crest" ]]; then
    make -C "$REPO" -j"$(nproc)" all >&2 || log "crest could not be built: its rows will say so"
fi

OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)-redis"
mkdir -p "$OUT/logs"

# Peers that cannot run at all: NAME -> reason.
declare -A BROKEN=()
if [[ " $PEERS " == *" socketio "* ]]; then
    if ! (cd "$PEER_DIR" && npm ci --no-audit --no-fund) >"$OUT/logs/npm-ci.log" 2>&1; then
        log "npm ci failed (see $OUT/logs/npm-ci.log)"
        BROKEN[socketio]="npm ci failed"
    fi
fi
if [[ " $PEERS " == *" crest "* && ! -x $CREST_BIN ]]; then
    BROKEN[crest]="no crest binary at $CREST_BIN"
fi
CHATLOAD=$WORK/chatload
gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$REPO/src" -I"$REPO/include" -o "$CHATLOAD" \
    "$BENCH/tools/chatload.c" "$REPO/src/codec/ws_frame.c" "$REPO/src/core/utf8.c" ||
    die "bench/tools/chatload.c did not build"

# The load generator holds MEMBERS sockets, each instance half of them (BENCH.md: 20,000 at most).
raise_nofile 20000 "$MEMBERS"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- Redis ---------------------
RPORT=$(free_port)
mkdir -p "$WORK/redis"
log "redis-server: port $RPORT, on CPU $REDIS_CPU"
(cd "$WORK/redis" && exec taskset -c "$REDIS_CPU" redis-server --port "$RPORT" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$WORK/redis" --daemonize no --logfile "$WORK/redis/redis.log") \
    >"$OUT/logs/redis-stdout.log" 2>&1 &
REDIS_PID=$!
STARTED+=("$REDIS_PID")
for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$RPORT" ping 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start (see $OUT/logs/)"
    sleep 0.1
done
[[ $(redis-cli -p "$RPORT" ping 2>/dev/null) == PONG ]] || die "redis-server did not answer PING in 10 s"
REDIS_URL="redis://127.0.0.1:$RPORT"

# ---------------------------------------------------------------- versions ------------------
npm_version() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$PEER_DIR/node_modules/$1/package.json" 2>/dev/null || echo '?'; }
{
    if [[ " $PEERS " == *" crest "* && -x $CREST_BIN ]]; then
        from=$CREST_BIN
        if [[ $CREST_BIN == "$REPO/build/crest" ]]; then
            from="commit $(git -C "$REPO" rev-parse --short HEAD)"
            git -C "$REPO" diff --quiet HEAD -- src include app 2>/dev/null || from+=", with uncommitted changes"
        fi
        echo "crest $("$CREST_BIN" --version | cut -d' ' -f2) ($from)"
    fi
    echo "redis-server $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/') (Debian $(dpkg-query -W -f='${Version}' redis-server))"
    if [[ " $PEERS " == *" socketio "* ]]; then
        echo "node $(node --version)"
        echo "socket.io $(npm_version socket.io), @socket.io/redis-adapter $(npm_version @socket.io/redis-adapter), ioredis $(npm_version ioredis), socket.io-adapter $(npm_version socket.io-adapter), engine.io $(npm_version engine.io), ws $(npm_version ws)"
    fi
    echo "kernel $(uname -r); $(nproc) CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
} >"$OUT/versions.txt"
cat "$OUT/versions.txt" >&2

# ---------------------------------------------------------------- instances -----------------
label() {
    case $1 in
    crest) echo "crest (2 instances)" ;;
    socketio) echo "Node.js Socket.IO + redis-adapter (2 processes)" ;;
    esac
}

instance_cmd() { # PEER NAME PORT -> CMD
    case $1 in
    crest)
        rm -f "$WORK/crest-$2".db*
        CMD=("$CREST_BIN" demo --quiet --threads 1 --port "$3" --db "sqlite:$WORK/crest-$2.db"
            --redis "$REDIS_URL") ;;
    socketio) CMD=(env PORT="$3" REDIS_URL="$REDIS_URL" node "$PEER_DIR/server.js") ;;
    esac
}

declare -A IPID=()
start_instance() { # PEER NAME PORT: on SERVER_CPU; waits (15 s at most) for GET /healthz -> 200
    local peer=$1 name=$2 port=$3 i pid
    instance_cmd "$peer" "$name" "$port"
    echo "== $(date -Is) ${CMD[*]}" >>"$OUT/logs/$peer-$name.log"
    (cd "$WORK" && exec taskset -c $SERVER_CPU "${CMD[@]}") >>"$OUT/logs/$peer-$name.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    IPID[$name]=$pid
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && rc=0 || rc=$?
            echo "== exited with status $rc" >>"$OUT/logs/$peer-$name.log"
            return 1
        fi
        curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "== no answer from /healthz in 15 s" >>"$OUT/logs/$peer-$name.log"
    stop_pid "$pid"
    return 1
}

stop_instances() {
    local n
    for n in "${!IPID[@]}"; do stop_pid "${IPID[$n]}"; done
    IPID=()
}

# ---------------------------------------------------------------- runs ----------------------
SAMPLES=$WORK/samples.jsonl
: >"$SAMPLES"
read -ra LIST <<<"$PEERS"
n=${#LIST[@]}
for ((rep = 1; rep <= REPEATS; rep++)); do
    order=()
    for ((i = 0; i < n; i++)); do order+=("${LIST[(i + rep - 1) % n]}"); done
    for peer in "${order[@]}"; do
        if [[ -n ${BROKEN[$peer]:-} ]]; then
            echo "{\"peer\":\"$peer\",\"repeat\":$rep,\"failed\":$(json_str "${BROKEN[$peer]}")}" >>"$SAMPLES"
            continue
        fi
        pa=$(free_port)
        pb=$(free_port)
        while [[ $pb == "$pa" ]]; do pb=$(free_port); done
        bad=""
        start_instance "$peer" a "$pa" || bad=a
        [[ -n $bad ]] || start_instance "$peer" b "$pb" || bad=b
        if [[ -n $bad ]]; then
            # The output of the instance that failed, less the lines this script wrote.
            flog=$OUT/logs/$peer-$bad.log
            # (The log holds every start of the run: only the lines after the last one.)
            why=$(awk '/^== [0-9][0-9][0-9][0-9]-/ { buf = ""; next } /^== / { next }
                { buf = buf $0 "\n" } END { printf "%s", buf }' "$flog" |
                tail -n 3 | tr '\n' ' ' | sed 's/ *$//' | cut -c1-300) || true
            st=$(grep '^== exited\|^== no answer' "$flog" | tail -n 1 | sed 's/^== //') || true
            log "repeat $rep: $peer failed to start: ${st:-} ${why:-no output} (see $OUT/logs/$peer-*.log)"
            echo "{\"peer\":\"$peer\",\"repeat\":$rep,\"failed\":$(json_str "failed to start (${st:-no answer}): $why")}" >>"$SAMPLES"
            stop_instances
            continue
        fi
        for wl in $WORKLOADS; do
            args=(-x crest)
            [[ $peer == socketio ]] && args=(-x sio)
            args+=(-p "$pa,$pb" -n "$MEMBERS" -S "$SENDERS" -d "$DURATION" -W "$WARMUP" -D "$DRAIN"
                -r "bench-$rep-$wl" -P "${IPID[a]},${IPID[b]}" -Q "$REDIS_PID")
            if [[ $wl == max ]]; then args+=(-w "$WINDOW"); else args+=(-R "$RATE"); fi
            echo "== repeat $rep $peer $wl: chatload ${args[*]}" >>"$OUT/logs/chatload.log"
            # Bounded: joining, sync (30 s at most), the run and the drain, plus a minute.
            limit=$((120 + 30 + WARMUP + DURATION + DRAIN + 60))
            line=$(timeout "$limit" taskset -c $CLIENT_CPU "$CHATLOAD" "${args[@]}" 2>>"$OUT/logs/chatload.log" |
                grep '^CHATLOAD ' | cut -d' ' -f2-) || true
            if [[ -z $line ]]; then
                line='{"error":"chatload gave no result (see logs/chatload.log)"}'
            fi
            for name in a b; do
                kill -0 "${IPID[$name]}" 2>/dev/null ||
                    line=$($PY -c 'import json, sys; d = json.loads(sys.argv[1]); d["error"] = (d.get("error", "") + " instance " + sys.argv[2] + " died").strip(); print(json.dumps(d))' "$line" "$name")
            done
            echo "{\"peer\":\"$peer\",\"workload\":\"$wl\",\"repeat\":$rep,\"result\":$line}" >>"$SAMPLES"
            log "repeat $rep/$REPEATS $peer $wl: $($PY -c 'import json, sys; d = json.loads(sys.argv[1])
if "error" in d and "deliveries_per_s" not in d: print("error: " + d["error"]); sys.exit()
print("%s deliveries/s, p50 %.1f ms, p99 %.1f ms, expected %d, lost %d, duplicates %d, servers %.0f %% of a core, client %.0f %%%s" % (d["deliveries_per_s"], d["latency"]["p50_ms"], d["latency"]["p99_ms"], d["expected"], d["lost"], d["duplicates"], d["server_core_pct"], d["client_core_pct"], ("; " + d["error"]) if "error" in d else ""))' "$line")"
            { echo "== repeat $rep $peer $wl"; redis-cli -p "$RPORT" info stats |
                grep -E '^(total_commands_processed|total_net_(in|out)put_bytes|pubsub_|rejected)'; } \
                >>"$OUT/logs/redis-stats.log" 2>&1 || true
            sleep 1 # the members of the last run leave
        done
        stop_instances
    done
done
cp "$WORK/redis/redis.log" "$OUT/logs/redis.log" 2>/dev/null || true
OBL=$(grep -c 'overcoming of output buffer limits' "$WORK/redis/redis.log" 2>/dev/null || true)

# ---------------------------------------------------------------- report --------------------
labels=""
for p in "${LIST[@]}"; do labels+="$p=$(label "$p");"; done
$PY - "$OUT" "$SAMPLES" "$CMDLINE" "$labels" "$PEERS" "$WORKLOADS" "$REPEATS" "$DURATION" \
    "$WARMUP" "$DRAIN" "$MEMBERS" "$SENDERS" "$WINDOW" "$RATE" "$REDIS_CPU" "${OBL:-0}" <<'PYEOF' | tee "$OUT/report.md"
import json, statistics, sys
(out, samples_path, cmdline, labels, peers, workloads, repeats, duration, warmup, drain, members,
 senders, window, rate, redis_cpu, obl) = sys.argv[1:17]
labels = dict(kv.split("=", 1) for kv in labels.split(";") if kv)
peers, workloads = peers.split(), workloads.split()
lines = [json.loads(l) for l in open(samples_path) if l.strip()]
runs = [l for l in lines if "result" in l and "deliveries_per_s" in l["result"]]
errors = [l for l in lines if "result" in l and "error" in l["result"]]
failed = {}
for l in lines:
    if "failed" in l:
        failed.setdefault(l["peer"], []).append(l["failed"])
versions = open(out + "/versions.txt").read().strip()
settings = {"repeats": int(repeats), "duration_s": int(duration), "warmup_s": int(warmup),
            "drain_s": int(drain), "members": int(members), "senders": int(senders),
            "window": int(window), "rate": int(rate), "server_cpu": 0, "client_cpu": 1,
            "redis_cpu": redis_cpu}
json.dump({"command": cmdline, "settings": settings, "versions": versions.split("\n"),
           "failed": failed, "redis_output_buffer_disconnects": int(obl), "runs": lines},
          open(out + "/samples.json", "w"), indent=1, ensure_ascii=False)

def vals(peer, wl, f):
    v = [f(r["result"]) for r in runs if r["peer"] == peer and r["workload"] == wl]
    return [x for x in v if x is not None]
def lat(key, which="latency"):  # None where that histogram is empty
    return lambda d: d[which][key] if d[which]["n"] else None
def fmt_med(peer, wl, f, fmt="%.1f"):
    v = med(peer, wl, f)
    return "–" if v is None else fmt % v
def med(peer, wl, f):
    v = vals(peer, wl, f)
    return statistics.median(v) if v else None
def rng(peer, wl, f, fmt):
    v = vals(peer, wl, f)
    if not v:
        return "–"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(v), min(v), max(v))
def total(peer, wl, key):
    return sum(vals(peer, wl, lambda d: d[key]))

print("## Chat fan-out across two instances through Redis: crest and Node.js Socket.IO\n")
print("`%s`: one redis-server (CPU %s), two instances of each peer, both on CPU 0 "
      "(crest `--threads 1`, one Node process each), the load generator (bench/tools/chatload.c) "
      "on CPU 1. %s members of one room, half on each instance; %s senders, half on each. "
      "%s repeats x %s s measured (after %s s of warm-up), median (min–max). Deliveries/s: "
      "messages received by all members per second; latency: each member's receive time minus "
      "the send time carried in the message. Lost and duplicates are summed over the repeats, "
      "warm-up and drain included, against expected = members x messages sent. Servers' CPU: "
      "both instances, /proc/PID/stat over the measured interval; other load on CPU 0: its busy "
      "time the servers did not spend (kernel network work, other tenants of this shared "
      "machine); Redis's CPU includes its own timers, so it reads high at low rates.\n"
      % (cmdline, redis_cpu, members, senders, repeats, duration, warmup))
print("Versions: " + "; ".join(versions.split("\n")) + "\n")
titles = {"max": "as fast as delivered (closed loop, %s message%s in flight per sender)"
                 % (window, "" if window == "1" else "s"),
          "rate": "fixed rate, %s messages/s (%s deliveries/s)" % (rate, int(rate) * int(members))}
notes = []
for wl in workloads:
    print("### %s\n" % titles[wl])
    print("| peer | deliveries/s | vs crest | messages/s | p50 ms | p99 ms | p99.9 ms | max ms "
          "| p99 ms same / other instance | expected | lost | duplicates | reordered "
          "| servers µs CPU/delivery | servers' core % | other load on CPU 0 % "
          "| Redis µs CPU/message | client core % (CPU 1 busy %) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = med("crest", wl, lambda d: d["deliveries_per_s"])
    for p in peers:
        name = labels[p]
        if not vals(p, wl, lambda d: 1):
            why = failed.get(p, [e["result"]["error"] for e in errors
                                 if e["peer"] == p and e["workload"] == wl] or ["did not run"])[0]
            print("| %s | %s |" % (name, why.replace("|", "/")) + " |" * 16)
            continue
        if p in failed:
            name += " (did not start in %d of %s repeats)" % (len(failed[p]), repeats)
        errs = [e for e in errors if e["peer"] == p and e["workload"] == wl]
        if errs:
            name += " (%d run(s) with errors: %s)" % (len(errs), errs[0]["result"]["error"])
        d = med(p, wl, lambda d: d["deliveries_per_s"])
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %d | %d | %d | %d | %s | %s | %s | %s | %s |" % (
            name, rng(p, wl, lambda d: d["deliveries_per_s"], "%.0f"),
            "%.2f×" % (d / base) if base else "n/a",
            rng(p, wl, lambda d: d["msgs_per_s"], "%.1f"),
            rng(p, wl, lat("p50_ms"), "%.1f"), rng(p, wl, lat("p99_ms"), "%.1f"),
            fmt_med(p, wl, lat("p999_ms")),
            "%.1f" % max(vals(p, wl, lat("max_ms")) or [float("nan")]),
            fmt_med(p, wl, lat("p99_ms", "latency_same_instance")),
            fmt_med(p, wl, lat("p99_ms", "latency_other_instance")),
            total(p, wl, "expected"), total(p, wl, "lost"), total(p, wl, "duplicates"),
            total(p, wl, "reordered"),
            rng(p, wl, lambda d: d["server_cpu_us_per_delivery"], "%.2f"),
            "%.0f" % med(p, wl, lambda d: d["server_core_pct"]),
            "%.0f" % med(p, wl, lambda d: max(0, d["cpu0_busy_pct"] - d["server_core_pct"])),
            "%.0f" % med(p, wl, lambda d: d["redis_cpu_us_per_msg"]),
            "%.0f (%.0f)" % (med(p, wl, lambda d: d["client_core_pct"]),
                             med(p, wl, lambda d: d["cpu1_busy_pct"]))))
        if med(p, wl, lambda d: d["client_core_pct"]) > 90:
            notes.append("%s, %s: the load generator used over 90 %% of CPU 1: that figure is the "
                          "client's limit, not the servers'." % (labels[p], wl))
    print()

print("### Target\n")
c = med("crest", "max", lambda d: d["deliveries_per_s"]) if "max" in workloads else None
s = med("socketio", "max", lambda d: d["deliveries_per_s"]) if "max" in workloads else None
head = "- crest ≥ 10× Socket.IO deliveries/s (closed loop, medians): "
if "max" not in workloads:
    print(head + "n/a, the max workload was not run")
elif c is None:
    print(head + "n/a, crest not measured (%s)%s" % (
        (failed.get("crest") or ["did not run"])[0][:200],
        "; Socket.IO %.0f deliveries/s" % s if s else ""))
elif s is None:
    print(head + "n/a, Socket.IO not measured; crest %.0f deliveries/s" % c)
else:
    bad = sum(r["result"]["lost"] + r["result"]["duplicates"] for r in runs
              if r["peer"] == "crest" and r["workload"] == "max")
    print(head + "%s (crest %.0f, Socket.IO %.0f deliveries/s: %.2f×)%s"
          % ("met" if c >= 10 * s and not bad else "missed", c, s, c / s,
             "; not met while crest loses or repeats messages (%d)" % bad if bad else ""))
for p in peers:
    rs = [r["result"] for r in runs if r["peer"] == p]
    if not rs:
        continue
    exp = sum(r["expected"] for r in rs)
    bad = sum(r["lost"] + r["duplicates"] for r in rs)
    print("- every member got every message exactly once, %s: %s (%d expected, %d lost, "
          "%d duplicates, %d reordered; %d members that missed the sync round, %d window "
          "stalls)" % (
              labels[p], "yes" if bad == 0 else "NO", exp, sum(r["lost"] for r in rs),
              sum(r["duplicates"] for r in rs), sum(r["reordered"] for r in rs),
              sum(r["unsynced_members"] for r in rs), sum(r["stalls"] for r in rs)))
for n in notes:
    print("- " + n)
if int(obl):
    print("- Redis disconnected a subscriber %s time(s) for its output buffer limit "
          "(logs/redis.log)" % obl)
print()
print("### Settings (changed defaults; details in bench/redis.sh and bench/peers/sio-redis/)\n")
print("- redis-server: `--bind 127.0.0.1 --save '' --appendonly no`, a free port, its folder in "
      "the scratch folder; every other setting at its default.")
print("- crest: `demo --quiet --threads 1 --redis redis://...`, each instance its own SQLite file.")
print("- Socket.IO: one process per instance, `new Server(httpServer, {adapter: "
      "createAdapter(pub, pub.duplicate())})` with ioredis clients; every default kept. Members "
      "connect over WebSocket only (`transports: ['websocket']` in socket.io-client terms), as "
      "crest's members do; `join` is acknowledged before the run.")
print("- Client: `chatload`, C, one thread on CPU 1; a message missing from a member 2 s after it "
      "was sent frees its sender's window slot (counted as a stall).")
PYEOF
log "results in $OUT"
