#!/usr/bin/env bash
# bench/redis_scale.sh: one chat room of 95,000 idle WebSocket members spread over five crest
# instances bridged by one Redis; how long one message takes to reach every member, and what
# the connections cost in memory (user space and kernel). crest alone: there is no peer here.
#
#   bench/redis_scale.sh                  # 5 instances x 19,000 members, 5 probes: ~45 s here
#   SMALL=1 bench/redis_scale.sh          # 5 x 2,000 members: a quick check (~30 s)
#   INSTANCES=3 MEMBERS=10000 PROBES=10 GAP_MS=1500 bench/redis_scale.sh
#   PING_INTERVAL=30s bench/redis_scale.sh   # crest's default ping interval: see 1. below
#
# What it does (every process is capped at the machine's 20,000 open files, the hard limit; the
# script raises each one's soft limit to it with `ulimit -n`):
#  1. Builds crest (`make -j2 all`) and bench/tools/wsmembers.c (the load tool), installs
#     redis-server with apt if missing, starts redis-server on a free loopback port (no RDB, no
#     AOF, stopped at exit) and INSTANCES (5) crest processes,
#       crest demo --threads 1 --port P --db sqlite:WORK/crest-I.db --redis redis://127.0.0.1:RP
#                  --max-connections NOFILE-100 --ws-ping-interval PING_INTERVAL
#     and waits until each says crest_redis_up 1 on /metrics. Why --threads 1: this machine has
#     two cores; the servers (the crests and redis-server) share CPU 0 and the load tools have
#     CPU 1 (BENCH.md), so a second loop thread per instance would add a cross-thread pub/sub hop
#     and memory and no CPU. Why --max-connections: its default is the open-file limit less an
#     eighth (17,500 of 20,000), below the 19,000 members an instance holds here. Why
#     PING_INTERVAL (10m, as bench/ws.sh): with crest's default of 30 s, every member that
#     connected in the same few seconds is pinged in the same few seconds, a wave of 95,000
#     pings (and pongs) about 30 s after the connect phase, which met the last probes and
#     made them 30-50 % slower; PING_INTERVAL=30s shows that (the members answer pings, and the report
#     says when a ping wave overlapped a probe). All else is crest's default:
#     --chat-announce-max 100 and --presence-interval 1s (the room is far above 100 members, so
#     joins only send presence counts).
#  2. Warms each instance up with 200 members of another room (joined and gone), then reads the
#     baseline: VmRSS of each crest, /proc/net/sockstat (TCP inuse, TCP mem pages, sockets
#     used), Slab from /proc/meminfo, redis-server's CPU time.
#  3. Connects MEMBERS (19,000) members of room ROOM to each instance, all at once, one
#     wsmembers process per instance (pinned to CPU 1), each member bound to a source address
#     127.0.0.1..127.0.0.8 in turn (ephemeral ports are picked per source and destination, so
#     they do not run out), at most 64 handshakes in flight per process; CONNECT_TIMEOUT (150 s)
#     bounds this phase. Waits SETTLE (3 s) for the trailing presence messages, then reads the
#     same figures again, plus Redis's INFO memory (used_memory, used_memory_rss), its VmRSS
#     and PUBSUB NUMSUB of the room's channel (one subscription per instance is expected).
#  4. One extra member (wsmembers -m send) joins the room on instance 1, waits DELAY_MS (4000:
#     its own join makes a presence count 1 s later, sent to every member, which itself takes
#     about 1.5 s to fan out at 95,000), then sends PROBES (5) messages GAP_MS (3000 ms) apart
#     (one fan-out takes about 1.6 s here; the report says if a probe's last arrival came after
#     the next probe was sent): {"text":"probe K <CLOCK_MONOTONIC ns just before send()>"}. Every
#     member stamps its arrival with CLOCK_MONOTONIC when the bytes are read (one machine, one
#     clock); the report gives, per probe, p50/p99/max over all members, how many did not get
#     it (must be 0) and how many got it twice (must be 0), and the same per instance (instance
#     1's members get it from crest directly, the others through Redis), with the CPU time
#     of the crests (user and kernel), redis-server and the load tools over the probe phase.
#  5. Stops everything (members, then crests, then redis-server: SIGTERM, 5 s grace, SIGKILL, by
#     PID, also on errors and Ctrl-C); TIME_LIMIT (420 s) bounds the whole run.
#
# Memory figures: user space per connection = (sum of the crests' VmRSS with the members -
# without) / members; the kernel's share from /proc/net/sockstat's TCP `mem` (pages x page
# size; socket buffers only, which idle sockets hardly hold) and, as a fuller figure, the
# growth of Slab in /proc/meminfo (socket structures, files, epoll items), which counts both
# ends of each loopback connection and anything else the machine did meanwhile. From these it
# prints the memory for 1,000,000 members across instances: per-connection user space and
# kernel memory, plus each instance's baseline RSS times the instances needed at MEMBERS each.
#
# Output: the report on stdout and in bench/results/<date>-redis-scale/ (report.md,
# samples.json, versions.txt, logs/: crest, redis and tool logs, /metrics after the run,
# sockstat lines and /proc/slabinfo before and after, the members' raw arrival files). Exits 3
# when a member missed a probe or got one twice, 1 on errors, 130 at the time limit or Ctrl-C.
# Settings (environment): SMALL, INSTANCES, MEMBERS, PROBES, GAP_MS, DELAY_MS, PING_INTERVAL,
# ROOM, SETTLE, CONNECT_TIMEOUT, TIME_LIMIT, SERVER_CPU (0), CLIENT_CPU (1), SOURCES (8),
# CREST_BIN (build/crest; set it to skip the build), CREST_ARGS (more crest flags, split on
# spaces; e.g. "--presence-interval 10s", which then wants SETTLE and DELAY_MS above 10 s, or its
# trailing presence counts land among the probes).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
SMALL=${SMALL:-0}
INSTANCES=${INSTANCES:-5}
if [[ $SMALL == 1 ]]; then MEMBERS=${MEMBERS:-2000}; else MEMBERS=${MEMBERS:-19000}; fi
PROBES=${PROBES:-5}
GAP_MS=${GAP_MS:-3000}
DELAY_MS=${DELAY_MS:-4000}
ROOM=${ROOM:-scale}
SETTLE=${SETTLE:-3}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-150}
TIME_LIMIT=${TIME_LIMIT:-420}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SOURCES=${SOURCES:-8}
CREST_BIN=${CREST_BIN:-}
CREST_ARGS=${CREST_ARGS:-}
PING_INTERVAL=${PING_INTERVAL:-10m}
PY=/usr/bin/python3

# Shared helpers: STARTED/WORK cleanup on exit (by PID), log/die, rss_kib, cpu_ticks.
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
# shellcheck disable=SC2317 # called by lib.sh's cleanup
save_logs() { cp "$WORK"/redis.log "$OUT/logs/" 2>/dev/null || true; }

# Long commands run in the background and are waited for, so that the time limit's SIGTERM (or
# Ctrl-C) is acted on at once rather than when they end; they are stopped with the rest.
bg_wait() {
    "$@" &
    local p=$!
    STARTED+=("$p")
    wait "$p"
}

T_START=$(date +%s)
TOTAL=$((INSTANCES * MEMBERS))

# ---------------------------------------------------------------- limits --------------------
# Every process started from here inherits the soft limit raised to the hard one (20,000 here).
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] || ulimit -n "$HARD"
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
((MEMBERS + 64 <= NOFILE)) || die "MEMBERS=$MEMBERS needs more than the $NOFILE open files a process may have"
MAXCONN=$((NOFILE - 100))
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
PER_TUPLE=$(((MEMBERS + SOURCES - 1) / SOURCES))
((PER_TUPLE < PORT_HI - PORT_LO)) ||
    die "$PER_TUPLE connections per source address and instance exceed the ephemeral port range; raise SOURCES"
((INSTANCES >= 1 && INSTANCES <= 20 && PROBES >= 1 && PROBES <= 64 && SOURCES >= 1 && SOURCES <= 250)) ||
    die "bad settings"

# ---------------------------------------------------------------- setup ---------------------
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then apt_install redis-server; fi
command -v curl >/dev/null || apt_install curl
[[ -x $PY ]] || apt_install python3

STAMP=$(date +%Y-%m-%d-%H%M%S)
OUT="$REPO/bench/results/$STAMP-redis-scale"
[[ $SMALL == 1 ]] && OUT+="-small"
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/crest-redis-scale.XXXXXX)
TOOLS=$WORK/bin
mkdir -p "$TOOLS"

# The time limit: a watchdog ends the script (and so, through the EXIT trap, all it started).
(
    sleep "$TIME_LIMIT"
    printf '[%(%H:%M:%S)T] time limit of %s s reached: stopping\n' -1 "$TIME_LIMIT" >&2
    kill -TERM $$
) &
STARTED+=("$!")

if [[ -z $CREST_BIN ]]; then
    log "building crest (make -j2 all)"
    bg_wait make -C "$REPO" -s -j2 all >"$OUT/logs/build.log" 2>&1 || die "make failed (see $OUT/logs/build.log)"
    CREST_BIN=$REPO/build/crest
fi
[[ -x $CREST_BIN ]] || die "$CREST_BIN not found"
gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$REPO/src" -I"$REPO/include" -o "$TOOLS/wsmembers" \
    "$BENCH/tools/wsmembers.c" "$REPO/src/codec/ws_frame.c" "$REPO/src/core/utf8.c"
WSM=$TOOLS/wsmembers

{
    echo "crest: $("$CREST_BIN" --version 2>&1 | head -1) ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "redis-server: $(redis-server --version)"
    echo "kernel: $(uname -r); cpus: $(nproc); memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "gcc: $(gcc -dumpfullversion); python: $($PY --version 2>&1)"
    echo "open files per process: $NOFILE; ephemeral ports: $PORT_LO-$PORT_HI"
} >"$OUT/versions.txt"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sockstat_field() { # LINE FIELD: a number from /proc/net/sockstat
    awk -v l="$1:" -v f="$2" '$1 == l {for (i = 2; i <= NF; i++) if ($i == f) print $(i + 1)}' /proc/net/sockstat
}
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
rss_all() { # the crests' VmRSS, KiB, summed
    local t=0 i
    for ((i = 1; i <= INSTANCES; i++)); do t=$((t + $(rss_kib "${CPID[$i]}"))); done
    echo "$t"
}
cpu_members() { # the member processes' CPU time, clock ticks, summed
    local t=0 i
    for ((i = 1; i <= INSTANCES; i++)); do t=$((t + $(cpu_ticks "${LPID[$i]}"))); done
    echo "$t"
}
steal() { awk -v c="cpu$1" '$1 == c { print $9 }' /proc/stat; }
cpu_all() { # the crests' CPU time, clock ticks, summed
    local t=0 i
    for ((i = 1; i <= INSTANCES; i++)); do t=$((t + $(cpu_ticks "${CPID[$i]}"))); done
    echo "$t"
}
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }
elapsed() { echo $(($(date +%s) - T_START)); }
declare -A S=() # samples: name -> value, written to samples.json
snap() { # LABEL: the machine-wide figures, into S[LABEL_*] and logs/sockstat.log
    S[$1_tcp_inuse]=$(sockstat_field TCP inuse)
    S[$1_tcp_mem_pages]=$(sockstat_field TCP mem)
    S[$1_tcp_tw]=$(sockstat_field TCP tw)
    S[$1_sockets_used]=$(sockstat_field sockets used)
    S[$1_slab_kib]=$(slab_kib)
    { echo "== $1"; grep -E '^(sockets|TCP):' /proc/net/sockstat; grep -E '^(Slab|SReclaimable|SUnreclaim):' /proc/meminfo; } \
        >>"$OUT/logs/sockstat.log"
    # Per slab cache: name, objects in use, bytes of its slabs (root only; else empty).
    awk -v pg="$(getconf PAGESIZE)" 'NR > 2 {print $1, $2, $15 * $6 * pg}' /proc/slabinfo \
        >"$OUT/logs/slabinfo-$1.txt" 2>/dev/null || true
}
cpu_split() { # the crests' user and system CPU time, clock ticks: "U S"
    local u=0 s=0 i p stat rest
    local -a f
    for ((i = 1; i <= INSTANCES; i++)); do
        for p in $(tree_pids "${CPID[$i]}"); do
            stat=$(cat /proc/"$p"/stat 2>/dev/null) || continue
            rest=${stat##*) }
            read -ra f <<<"$rest"
            u=$((u + f[11])) s=$((s + f[12]))
        done
    done
    echo "$u $s"
}

# ---------------------------------------------------------------- servers -------------------
RPORT=$(free_port)
log "redis-server on 127.0.0.1:$RPORT (CPU $SERVER_CPU)"
(cd "$WORK" && exec taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$RPORT" \
    --save "" --appendonly no --protected-mode yes --daemonize no --dir "$WORK" \
    --logfile "$WORK/redis.log") >"$OUT/logs/redis.out" 2>&1 &
RPID=$!
STARTED+=("$RPID")
for ((i = 0; i < 100; i++)); do
    [[ $(rcli ping 2>/dev/null) == PONG ]] && break
    kill -0 "$RPID" 2>/dev/null || die "redis-server did not start (see $OUT/logs/redis.out)"
    sleep 0.1
done
[[ $(rcli ping 2>/dev/null) == PONG ]] || die "redis-server does not answer"

declare -a CPID=() CPORT=() EXTRA=()
read -ra EXTRA <<<"$CREST_ARGS"
for ((i = 1; i <= INSTANCES; i++)); do
    CPORT[i]=$(free_port)
    (cd "$WORK" && exec taskset -c "$SERVER_CPU" "$CREST_BIN" demo --threads 1 --port "${CPORT[$i]}" \
        --db "sqlite:$WORK/crest-$i.db" --redis "redis://127.0.0.1:$RPORT" --max-connections "$MAXCONN" \
        --ws-ping-interval "$PING_INTERVAL" "${EXTRA[@]}") \
        >"$OUT/logs/crest-$i.log" 2>&1 &
    CPID[i]=$!
    STARTED+=("$!")
done
for ((i = 1; i <= INSTANCES; i++)); do
    up=0
    for ((t = 0; t < 150; t++)); do
        kill -0 "${CPID[$i]}" 2>/dev/null || die "crest $i exited (see $OUT/logs/crest-$i.log)"
        if curl -s -m 2 "http://127.0.0.1:${CPORT[$i]}/metrics" 2>/dev/null | grep -q '^crest_redis_up 1$'; then
            up=1
            break
        fi
        sleep 0.1
    done
    ((up)) || die "crest $i is not connected to Redis after 15 s (see $OUT/logs/crest-$i.log)"
done
log "$INSTANCES crest instances up, bridged (ports ${CPORT[*]}; CPU $SERVER_CPU; --max-connections $MAXCONN)"

# Warm-up: a few members per instance in another room, so that one-time allocations (the
# loop's buffers, the large-room path) are not charged to the measured members.
for ((i = 1; i <= INSTANCES; i++)); do
    bg_wait taskset -c "$CLIENT_CPU" "$WSM" -x -p "${CPORT[$i]}" -n 200 -r warmup -i w$i -t 30 >/dev/null \
        2>>"$OUT/logs/wsmembers.log" || die "warm-up of instance $i failed (see $OUT/logs/wsmembers.log)"
done
sleep 2 # their leaves' presence timers fire

# ---------------------------------------------------------------- members -------------------
for ((i = 1; i <= INSTANCES; i++)); do S[crest${i}_rss_before_kib]=$(rss_kib "${CPID[$i]}"); done
S[rss_before_kib]=$(rss_all)
S[redis_rss_before_kib]=$(rss_kib "$RPID")
S[redis_used_memory_before]=$(rcli info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')
snap before
REDIS_T0=$(cpu_ticks "$RPID")
CREST_T0=$(cpu_all)
read -r CU_C0 CS_C0 < <(cpu_split)
log "baseline: crests ${S[rss_before_kib]} KiB RSS in all; TCP inuse ${S[before_tcp_inuse]}, mem ${S[before_tcp_mem_pages]} pages; Slab ${S[before_slab_kib]} KiB"

log "connecting $INSTANCES x $MEMBERS members of room '$ROOM' (from 127.0.0.1-$SOURCES, CPU $CLIENT_CPU; at most $CONNECT_TIMEOUT s)"
declare -a LPID=()
T_CONN0=$(date +%s.%N)
BUSY0_C0=$(core_busy "$SERVER_CPU") BUSY1_C0=$(core_busy "$CLIENT_CPU")
for ((i = 1; i <= INSTANCES; i++)); do
    taskset -c "$CLIENT_CPU" "$WSM" -p "${CPORT[$i]}" -n "$MEMBERS" -r "$ROOM" -i "i$i" -b 1 -k "$SOURCES" \
        -N "$PROBES" -t "$CONNECT_TIMEOUT" -H "$TIME_LIMIT" -o "$OUT/logs/members-$i.txt" \
        >"$WORK/members-$i.out" 2>>"$OUT/logs/wsmembers.log" &
    LPID[i]=$!
    STARTED+=("$!")
done
ready=0
for ((t = 0; t < (CONNECT_TIMEOUT + 10) * 5; t++)); do
    ready=$(cat "$WORK"/members-*.out 2>/dev/null | grep -c '^ready' || true)
    ((ready >= INSTANCES)) && break
    for ((i = 1; i <= INSTANCES; i++)); do
        kill -0 "${LPID[$i]}" 2>/dev/null ||
            die "members of instance $i gave up (see $OUT/logs/wsmembers.log; crest: $OUT/logs/crest-$i.log)"
    done
    sleep 0.2
done
((ready >= INSTANCES)) || die "only $ready of $INSTANCES member processes ready after $CONNECT_TIMEOUT s"
T_CONN1=$(date +%s.%N)
CREST_T1=$(cpu_all)
read -r CU_C1 CS_C1 < <(cpu_split)
S[connect_crest_user_s]=$(calc "($CU_C1 - $CU_C0) / $CLK_TCK")
S[connect_crest_sys_s]=$(calc "($CS_C1 - $CS_C0) / $CLK_TCK")
BUSY0_C1=$(core_busy "$SERVER_CPU") BUSY1_C1=$(core_busy "$CLIENT_CPU")
S[connect_members_cpu_s]=$(calc "$(cpu_members) / $CLK_TCK")
S[connect_server_core_busy_s]=$(calc "($BUSY0_C1 - $BUSY0_C0) / $CLK_TCK")
S[connect_client_core_busy_s]=$(calc "($BUSY1_C1 - $BUSY1_C0) / $CLK_TCK")
S[connect_s]=$(calc "$T_CONN1 - $T_CONN0")
S[connect_crest_cpu_s]=$(calc "($CREST_T1 - $CREST_T0) / $CLK_TCK")
for ((i = 1; i <= INSTANCES; i++)); do
    S[members${i}_connect_s]=$(sed -nE 's/^ready [0-9]+ connect_s=([0-9.]+).*/\1/p' "$WORK/members-$i.out")
done
log "all $TOTAL members open in ${S[connect_s]} s (crests' CPU meanwhile: ${S[connect_crest_cpu_s]} s)"
sleep "$SETTLE"

for ((i = 1; i <= INSTANCES; i++)); do S[crest${i}_rss_after_kib]=$(rss_kib "${CPID[$i]}"); done
S[rss_after_kib]=$(rss_all)
snap after
S[redis_rss_after_kib]=$(rss_kib "$RPID")
rcli info memory | tr -d '\r' >"$OUT/logs/redis-info-memory.txt"
S[redis_used_memory_after]=$(awk -F: '$1 == "used_memory" {print $2}' "$OUT/logs/redis-info-memory.txt")
S[redis_used_memory_rss_after]=$(awk -F: '$1 == "used_memory_rss" {print $2}' "$OUT/logs/redis-info-memory.txt")
S[redis_numsub]=$(rcli pubsub numsub "crest:room:$ROOM" | tail -1)
S[redis_clients]=$(rcli info clients | tr -d '\r' | awk -F: '$1 == "connected_clients" {print $2}')
log "with members: crests ${S[rss_after_kib]} KiB RSS; TCP inuse ${S[after_tcp_inuse]}, mem ${S[after_tcp_mem_pages]} pages; Slab ${S[after_slab_kib]} KiB; Redis subscribers of the room: ${S[redis_numsub]}"

# ---------------------------------------------------------------- probes --------------------
log "probes: $PROBES messages from one more member on instance 1, $GAP_MS ms apart"
REDIS_P0=$(cpu_ticks "$RPID")
CREST_P0=$(cpu_all)
read -r CU_P0 CS_P0 < <(cpu_split)
MEMBERS_P0=$(cpu_members)
BUSY0_P0=$(core_busy "$SERVER_CPU") BUSY1_P0=$(core_busy "$CLIENT_CPU")
STEAL0_P0=$(steal "$SERVER_CPU") STEAL1_P0=$(steal "$CLIENT_CPU")
T_P0=$(date +%s.%N)
bg_wait taskset -c "$CLIENT_CPU" timeout $((35 + DELAY_MS / 1000 + PROBES * (GAP_MS / 1000 + 1))) \
    "$WSM" -m send -p "${CPORT[1]}" -r "$ROOM" -i sender -N "$PROBES" -D "$DELAY_MS" -g "$GAP_MS" \
    -t 30 >"$OUT/logs/sender.txt" 2>>"$OUT/logs/wsmembers.log" || die "the sender failed (see $OUT/logs/sender.txt)"
# Every member process says `probe K complete` once all its members have probe K.
for ((t = 0; t < 50; t++)); do
    done_n=$(cat "$WORK"/members-*.out | grep -c "^probe $PROBES complete" || true)
    ((done_n >= INSTANCES)) && break
    sleep 0.2
done
sleep 1 # a late second copy would still be counted
CREST_P1=$(cpu_all)
read -r CU_P1 CS_P1 < <(cpu_split)
REDIS_P1=$(cpu_ticks "$RPID")
S[probe_crest_user_s]=$(calc "($CU_P1 - $CU_P0) / $CLK_TCK")
S[probe_crest_sys_s]=$(calc "($CS_P1 - $CS_P0) / $CLK_TCK")
MEMBERS_P1=$(cpu_members)
BUSY0_P1=$(core_busy "$SERVER_CPU") BUSY1_P1=$(core_busy "$CLIENT_CPU")
STEAL0_P1=$(steal "$SERVER_CPU") STEAL1_P1=$(steal "$CLIENT_CPU")
T_P1=$(date +%s.%N)
S[probe_phase_s]=$(calc "$T_P1 - $T_P0")
S[probe_crest_cpu_s]=$(calc "($CREST_P1 - $CREST_P0) / $CLK_TCK")
S[probe_members_cpu_s]=$(calc "($MEMBERS_P1 - $MEMBERS_P0) / $CLK_TCK")
S[probe_server_core_busy_s]=$(calc "($BUSY0_P1 - $BUSY0_P0) / $CLK_TCK")
S[probe_client_core_busy_s]=$(calc "($BUSY1_P1 - $BUSY1_P0) / $CLK_TCK")
S[probe_server_core_steal_s]=$(calc "($STEAL0_P1 - $STEAL0_P0) / $CLK_TCK")
S[probe_client_core_steal_s]=$(calc "($STEAL1_P1 - $STEAL1_P0) / $CLK_TCK")
S[probe_redis_cpu_s]=$(calc "($REDIS_P1 - $REDIS_P0) / $CLK_TCK")
for ((i = 1; i <= INSTANCES; i++)); do
    curl -s -m 5 "http://127.0.0.1:${CPORT[$i]}/metrics" >"$OUT/logs/metrics-$i.txt" 2>/dev/null || true
done

# Members write their arrival files on SIGTERM; then the crests, then Redis.
for ((i = 1; i <= INSTANCES; i++)); do kill -TERM "${LPID[$i]}" 2>/dev/null || true; done
for ((i = 1; i <= INSTANCES; i++)); do
    for ((t = 0; t < 100; t++)); do kill -0 "${LPID[$i]}" 2>/dev/null || break; sleep 0.1; done
    stop_pid "${LPID[$i]}"
done
REDIS_T1=$(cpu_ticks "$RPID")
S[redis_cpu_s]=$(calc "($REDIS_T1 - $REDIS_T0) / $CLK_TCK")
S[redis_cpu_total_s]=$(calc "$REDIS_T1 / $CLK_TCK")
rcli info cpu | tr -d '\r' >"$OUT/logs/redis-info-cpu.txt" || true
for ((i = 1; i <= INSTANCES; i++)); do stop_pid "${CPID[$i]}"; done
stop_pid "$RPID"
S[run_s]=$(elapsed)

# ---------------------------------------------------------------- report --------------------
{
    for k in "${!S[@]}"; do printf '%s %s\n' "$k" "${S[$k]}"; done
    for ((i = 1; i <= INSTANCES; i++)); do printf 'port%d %s\n' "$i" "${CPORT[$i]}"; done
} >"$WORK/samples.txt"
CMDLINE="${CREST_ARGS:+CREST_ARGS=\"$CREST_ARGS\" }PING_INTERVAL=$PING_INTERVAL SMALL=$SMALL INSTANCES=$INSTANCES MEMBERS=$MEMBERS PROBES=$PROBES GAP_MS=$GAP_MS DELAY_MS=$DELAY_MS bench/redis_scale.sh"
rc=0
CREST_ARGS="$CREST_ARGS" PING_INTERVAL="$PING_INTERVAL" "$PY" - "$OUT" "$WORK/samples.txt" "$INSTANCES" "$MEMBERS" "$PROBES" "$GAP_MS" "$CLK_TCK" \
    "$(getconf PAGESIZE)" "$CMDLINE" "$MAXCONN" "$SERVER_CPU" "$CLIENT_CPU" "$SOURCES" <<'EOF' || rc=$?
import json, math, os, sys

out, samples, n_inst, members, probes, gap_ms, clk, page, cmdline, maxconn, scpu, ccpu, nsrc = sys.argv[1:]
n_inst, members, probes, gap_ms, page = int(n_inst), int(members), int(probes), int(gap_ms), int(page)
total = n_inst * members
S = {}
for line in open(samples):
    k, _, v = line.strip().partition(" ")
    try:
        S[k] = float(v)
    except ValueError:
        S[k] = v

def pct(xs, p):  # nearest rank
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]

inst = []
lat = {k: [] for k in range(1, probes + 1)}
for i in range(1, n_inst + 1):
    d = {"instance": i, "probes": {}}
    per = {}
    for line in open(os.path.join(out, "logs", "members-%d.txt" % i)):
        f = line.split()
        if not f:
            continue
        if f[0] == "members":
            d.update({f[j]: int(f[j + 1]) for j in range(0, len(f), 2)})
        elif f[0] == "probe":
            per.setdefault(int(f[1]), {}).update({f[j]: int(f[j + 1]) for j in range(2, len(f), 2)})
        elif f[0] == "lat":
            xs = sorted(float(x) for x in f[2:])
            k = int(f[1])
            lat[k].extend(xs)
            per.setdefault(k, {}).update({"first_ms": xs[0] / 1e3 if xs else float("nan"),
                                          "p50_ms": pct(xs, 50) / 1e3, "p99_ms": pct(xs, 99) / 1e3,
                                          "max_ms": xs[-1] / 1e3 if xs else float("nan")})
    d["probes"] = per
    inst.append(d)

rows = []
for k in range(1, probes + 1):
    xs = sorted(lat[k])
    got = sum(d["probes"].get(k, {}).get("got", 0) for d in inst)
    dup = sum(d["probes"].get(k, {}).get("dup", 0) for d in inst)
    rows.append({"probe": k, "got": got, "missing": total - got, "dup": dup,
                 "p50_ms": pct(xs, 50) / 1e3, "p99_ms": pct(xs, 99) / 1e3,
                 "max_ms": xs[-1] / 1e3 if xs else float("nan"),
                 "min_ms": xs[0] / 1e3 if xs else float("nan")})

sender = {"sent": {}, "self_ms": {}}
for line in open(os.path.join(out, "logs", "sender.txt")):
    f = line.split()
    if len(f) == 3 and f[0] == "sent":
        sender["sent"][int(f[1])] = int(f[2])
    elif len(f) == 3 and f[0] == "self":
        sender["self_ms"][int(f[1])] = float(f[2]) / 1e3

def metric(i, name):
    try:
        for line in open(os.path.join(out, "logs", "metrics-%d.txt" % i)):
            if line.startswith(name + " "):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")

mnames = ["crest_pubsub_dropped_total", "crest_pubsub_queue_dropped_total",
          "crest_pubsub_slow_skipped_total", "crest_redis_dropped_total", "crest_redis_sent_total",
          "crest_redis_received_total", "crest_redis_reconnects_total"]
metrics = {i: {m: metric(i, m) for m in mnames} for i in range(1, n_inst + 1)}

def slabs(label):
    d = {}
    try:
        for line in open(os.path.join(out, "logs", "slabinfo-%s.txt" % label)):
            name, objs, size = line.split()
            d[name] = (int(objs), int(size))
    except (OSError, ValueError):
        pass
    return d
sb, sa = slabs("before"), slabs("after")
growth = sorted(((sa[n][1] - sb.get(n, (0, 0))[1], sa[n][0] - sb.get(n, (0, 0))[0], n) for n in sa),
                reverse=True)[:10]
proc_inode_d = sa.get("proc_inode_cache", (0, 0))[1] - sb.get("proc_inode_cache", (0, 0))[1]

rss_d = (S["rss_after_kib"] - S["rss_before_kib"]) * 1024
user_per = rss_d / total
tcp_mem_d = (S["after_tcp_mem_pages"] - S["before_tcp_mem_pages"]) * page
tcp_mem_per = tcp_mem_d / total
slab_d = (S["after_slab_kib"] - S["before_slab_kib"]) * 1024
slab_per_conn = slab_d / total       # both ends of each loopback connection
slab_per_server = (slab_d - max(proc_inode_d, 0)) / total / 2  # one end, without /proc inodes
base_per_inst = S["rss_before_kib"] * 1024 / n_inst
M = 1_000_000
inst_needed = math.ceil(M / members)
est_user = M * user_per + inst_needed * base_per_inst
est_k_sockstat = M * max(tcp_mem_per, 0)
est_k_slab = M * slab_per_server
redis_mem = S.get("redis_used_memory_rss_after", float("nan"))

def mib(b):
    return "%.0f MiB" % (b / 1048576) if b == b else "n/a"
def gib(b):
    return "%.2f GiB" % (b / 1073741824)

ok = all(r["missing"] == 0 and r["dup"] == 0 for r in rows)
closed = sum(d.get("closed_by_server", 0) for d in inst)
versions = open(os.path.join(out, "versions.txt")).read().strip()
md = []
md += ["# One room across %d crest instances bridged by Redis: %s members" % (n_inst, format(total, ",")), ""]
md += ["```", versions, "```", ""]
md += ["Command: `%s`. %d crest processes (`--threads 1`, `--max-connections %s`, `--ws-ping-interval %s`%s, else defaults) and "
       "redis-server on CPU %s; the load tools (`bench/tools/wsmembers.c`, one process per instance, "
       "%s members each from 127.0.0.1-%s) and the sender on CPU %s. Run took %d s; connecting all "
       "members took %.1f s (CPU time meanwhile: crests %.1f s, %.1f s of it in the kernel; member "
       "processes %.1f s; server core busy %.1f s, client core %.1f s)."
       % (cmdline, n_inst, maxconn, os.environ.get("PING_INTERVAL", "?"), (" `" + os.environ.get("CREST_ARGS", "") + "`") if os.environ.get("CREST_ARGS") else "", scpu, format(members, ","), nsrc, ccpu, S["run_s"], S["connect_s"],
          S["connect_crest_cpu_s"], S["connect_crest_sys_s"], S["connect_members_cpu_s"], S["connect_server_core_busy_s"],
          S["connect_client_core_busy_s"]), ""]
md += ["## Time from send to arrival, per probe (all %s members)" % format(total, ","), "",
       "One member on instance 1 sends `{\"text\":\"probe K <ns>\"}`; every member stamps arrival "
       "with CLOCK_MONOTONIC when it reads the bytes. Probes %d ms apart." % gap_ms, "",
       "| probe | got | missing | twice | p50 (ms) | p99 (ms) | max (ms) | first (ms) | sender's own copy (ms) |",
       "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    md.append("| %d | %s | %d | %d | %.1f | %.1f | %.1f | %.2f | %s |" % (
        r["probe"], format(r["got"], ","), r["missing"], r["dup"], r["p50_ms"], r["p99_ms"], r["max_ms"],
        r["min_ms"], "%.2f" % sender["self_ms"][r["probe"]] if r["probe"] in sender["self_ms"] else "n/a"))
md.append("")
pinged = []
for r in rows:
    t0 = sender["sent"].get(r["probe"])
    if t0 is None or r["max_ms"] != r["max_ms"]:
        continue
    t1 = t0 + r["max_ms"] * 1e6
    for d in inst:
        a, b = d.get("first_ping_ns", 0), d.get("last_ping_ns", 0)
        if d.get("pings", 0) and a <= t1 and b >= t0:
            pinged.append(r["probe"])
            break
if pinged:
    md.append("Note: crest's pings (a wave to every member, --ws-ping-interval after they "
              "connected) were arriving while probe(s) %s fanned out, and slowed them."
              % ", ".join(map(str, pinged)))
    md.append("")
over = [r["probe"] for r in rows if r["max_ms"] > gap_ms]
if over:
    md.append("Note: the last arrival of probe(s) %s came after the next probe was sent (GAP_MS "
              "%d): their fan-outs overlapped; raise GAP_MS." % (", ".join(map(str, over)), gap_ms))
    md.append("")
md.append("Every member got every probe exactly once: **%s**. Members closed by a server while "
          "held: %d." % ("yes" if ok else "NO", closed))
md.append("")
md += ["Per instance (instance 1 holds the sender: its members get the message from crest "
       "directly, the others through Redis: the first arrival shows Redis's hop), first / p50 / "
       "max arrival in ms per probe:", "",
       "| instance | members | " + " | ".join("probe %d" % k for k in range(1, probes + 1)) + " |",
       "|---|---|" + "---|" * probes]
for d in inst:
    cells = []
    for k in range(1, probes + 1):
        p = d["probes"].get(k, {})
        cells.append("%.2f / %.0f / %.0f" % (p.get("first_ms", float("nan")), p.get("p50_ms", float("nan")),
                                             p.get("max_ms", float("nan"))))
    md.append("| %d | %s | %s |" % (d["instance"], format(d.get("open", 0), ","), " | ".join(cells)))
md.append("")
deliv = (probes + 1) * total
md += ["CPU over the probe phase (%.1f s: the sender's join, whose presence count also goes to "
       "every member, and %d probes, so %d messages x %s members = %s deliveries):" % (
           S["probe_phase_s"], probes, probes + 1, format(total, ","), format(deliv, ",")), "",
       "| | CPU time (s) | per delivery (us) |", "|---|---|---|",
       "| crests (%d processes) | %.2f | %.2f |" % (n_inst, S["probe_crest_cpu_s"], S["probe_crest_cpu_s"] * 1e6 / deliv),
       "| of which user space | %.2f | %.2f |" % (S["probe_crest_user_s"], S["probe_crest_user_s"] * 1e6 / deliv),
       "| of which kernel (system calls) | %.2f | %.2f |" % (S["probe_crest_sys_s"], S["probe_crest_sys_s"] * 1e6 / deliv),
       "| redis-server | %.2f | |" % S["probe_redis_cpu_s"],
       "| member processes (load tools) | %.2f | %.2f |" % (S["probe_members_cpu_s"], S["probe_members_cpu_s"] * 1e6 / deliv),
       "| server core (CPU %s) busy, all tenants (steal %.2f) | %.2f | |" % (scpu, S["probe_server_core_steal_s"], S["probe_server_core_busy_s"]),
       "| client core (CPU %s) busy, all tenants (steal %.2f) | %.2f | |" % (ccpu, S["probe_client_core_steal_s"], S["probe_client_core_busy_s"]),
       "",
       "A process's CPU time includes the kernel's work in its system calls (on loopback, a "
       "send also runs the receiving side's TCP processing); the load tools stamp arrival when "
       "they read, so their own core's backlog is part of each latency.", ""]
md += ["## Memory", "",
       "| figure | before members | with members | difference | per connection |",
       "|---|---|---|---|---|",
       "| crest VmRSS, %d processes | %s KiB | %s KiB | %s | **%.0f bytes** |" % (
           n_inst, format(int(S["rss_before_kib"]), ","), format(int(S["rss_after_kib"]), ","),
           mib(rss_d), user_per),
       "| kernel TCP buffers (sockstat TCP mem, pages x %d) | %d pages | %d pages | %s | %.0f bytes |" % (
           page, S["before_tcp_mem_pages"], S["after_tcp_mem_pages"], mib(tcp_mem_d), tcp_mem_per),
       "| kernel slab (/proc/meminfo Slab; both ends) | %s KiB | %s KiB | %s | %.0f bytes (one end, without proc_inode_cache: ~%.0f) |" % (
           format(int(S["before_slab_kib"]), ","), format(int(S["after_slab_kib"]), ","), mib(slab_d),
           slab_per_conn, slab_per_server),
       "| TCP sockets in use (sockstat TCP inuse) | %d | %d | %d | |" % (
           S["before_tcp_inuse"], S["after_tcp_inuse"], S["after_tcp_inuse"] - S["before_tcp_inuse"]),
       "| sockets used (sockstat) | %d | %d | %d | |" % (
           S["before_sockets_used"], S["after_sockets_used"], S["after_sockets_used"] - S["before_sockets_used"]),
       "| redis-server VmRSS | %s KiB | %s KiB | | |" % (
           format(int(S["redis_rss_before_kib"]), ","), format(int(S["redis_rss_after_kib"]), ",")),
       "| Redis INFO used_memory | %s B | %s B (used_memory_rss %s B) | | |" % (
           format(int(S["redis_used_memory_before"]), ","), format(int(S["redis_used_memory_after"]), ","),
           format(int(redis_mem), ",")),
       ""]
md.append("Per instance, crest VmRSS before -> with members (KiB): " + ", ".join(
    "%d: %s -> %s" % (i, format(int(S["crest%d_rss_before_kib" % i]), ","),
                      format(int(S["crest%d_rss_after_kib" % i]), ",")) for i in range(1, n_inst + 1)) + ".")
md.append("")
md.append("Redis: %d client connections (two per instance and redis-cli), %s subscribers of "
          "`crest:room:<room>` (one per instance expected); CPU time %.2f s from the baseline to "
          "the end of the probes (%.2f s since it started)."
          % (S["redis_clients"], S["redis_numsub"], S["redis_cpu_s"], S["redis_cpu_total_s"]))
md.append("")
md.append("sockstat's TCP `mem` counts only pages in socket buffers, which idle sockets hardly "
          "hold; the socket structures themselves (struct tcp_sock, the socket inode and file, the "
          "epoll item) are kernel slab objects, counted by Slab, which grows for both ends of a "
          "loopback connection (the members' sockets live in this kernel too) and for whatever "
          "else the machine did meanwhile.")
md.append("")
if growth and growth[0][0] > 0:
    md += ["Slab caches that grew most (/proc/slabinfo; objects and bytes per connection count "
           "both ends):", "", "| cache | objects added | per connection | bytes added | per connection |",
           "|---|---|---|---|---|"]
    for b, o, n in growth:
        md.append("| %s | %s | %.2f | %s | %.0f |" % (n, format(o, ","), o / total, mib(b), b / total))
    md.append("")
    md.append("proc_inode_cache is not the sockets' cost: it grows when something lists "
              "/proc/PID/fd (here not this script), so the server-end figure leaves it out.")
    md.append("")
md += ["## 1,000,000 members across instances (computed)", "",
       "At %s members per instance: %d instances." % (format(members, ","), inst_needed), "",
       "| part | computed |", "|---|---|",
       "| crest user space: %.0f B x 1,000,000 + %d x %s baseline RSS | %s |" % (
           user_per, inst_needed, mib(base_per_inst), gib(est_user)),
       "| kernel, sockstat TCP mem: %.0f B x 1,000,000 | %s |" % (max(tcp_mem_per, 0), gib(est_k_sockstat)),
       "| kernel, slab (server end): %.0f B x 1,000,000 | %s |" % (slab_per_server, gib(est_k_slab)),
       "| **total, user space + kernel (sockstat)** | **%s** |" % gib(est_user + est_k_sockstat),
       "| **total, user space + kernel (slab)** | **%s** |" % gib(est_user + est_k_slab),
       "| Redis (does not grow with members: one subscription per instance) | %s now |" % mib(redis_mem),
       ""]
md += ["## crest counters after the probes (/metrics)", "",
       "| instance | " + " | ".join(m.replace("crest_", "") for m in mnames) + " |",
       "|---|" + "---|" * len(mnames)]
for i in range(1, n_inst + 1):
    md.append("| %d | %s |" % (i, " | ".join("%.0f" % metrics[i][m] for m in mnames)))
md.append("")
md.append("Members' other traffic over the whole hold (presence counts / join and leave / errors "
          "/ pings), per instance: " + ", ".join("%d: %s / %s / %s / %s" % (
              d["instance"], format(d.get("presence", 0), ","), format(d.get("other", 0), ","),
              d.get("errors", 0), format(d.get("pings", 0), ",")) for d in inst) + ".")
md.append("")
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
json.dump({"settings": {"ping_interval": os.environ.get("PING_INTERVAL"), "crest_args": os.environ.get("CREST_ARGS"), "instances": n_inst, "members_per_instance": members, "probes": probes,
                        "gap_ms": gap_ms, "command": cmdline},
           "samples": S, "probes": rows, "instances": inst, "sender": sender, "metrics": metrics,
           "per_connection": {"user_bytes": user_per, "kernel_tcp_mem_bytes": tcp_mem_per,
                              "kernel_slab_bytes_both_ends": slab_per_conn},
           "million": {"instances": inst_needed, "user_bytes": est_user,
                       "kernel_sockstat_bytes": est_k_sockstat, "kernel_slab_bytes": est_k_slab},
           "all_delivered_once": ok},
          open(os.path.join(out, "samples.json"), "w"), indent=1)
print("\n".join(md))
sys.exit(0 if ok else 3)
EOF
log "results in $OUT"
exit "$rc"
