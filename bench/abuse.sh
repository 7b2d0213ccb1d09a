#!/usr/bin/env bash
# bench/abuse.sh: crest under abuse, side by side with nginx and Node.js (issue 14, Hardening).
#
# Each attack runs for a bounded time against a fresh server pinned to CPU 0 (crest
# --threads 1, nginx one worker, Node one process), from bench/tools/abuse on CPU 1 bound to
# 127.0.0.2-8, while bench/tools/abuse_watch.py samples the server's RSS every 100 ms and a
# bystander times GET /healthz from 127.0.0.9, 20 a second. After the attack the watch goes on
# for AFTER_SECS to see whether memory goes back. Peers run only the attacks they can serve the
# same way (the report says n/a and why for the others). The attacks:
#    1 open files: connections up to the server's open-files limit (FD_LIMIT), held, released
#    2 output per connection: one client pipelining GET /plaintext, never reading
#    3 amplification: AMP_CONNS clients pipelining GET /queries?queries=500, never reading
#    4 cross-thread queues: crest --threads 2, CHAT_MEMBERS silent chat members, one publisher
#    5 whole responses: TODOS todos of TODO_TITLE bytes, SLOW_READERS slow readers of the list
#    6 request bodies: TRICKLE_CONNS clients trickling a TRICKLE_BODY-byte POST /echo body
#    8 non-UTF-8 chat names (a yes/no row)        9 NUL in JSON (a yes/no row)
#   10 fan-out: FANOUT_MEMBERS members joining one room
#   11 SSE history: SSE_MESSAGES chat messages of SSE_MSG bytes, then RSS
#   12 permessage-deflate: crest --ws-deflate, messages inflating ~1000:1 sent to /ws/echo
#   13 shutdown: SIGTERM, then at once a request on a keep-alive connection (SHUTDOWN_TRIES)
# ("7", memory back to the OS, is the RSS-after column of every row.) An attack stops early when
# the server's RSS passes RSS_CAP_MIB; its peak then reads "> cap".
#
# Output: the markdown report on stdout and in bench/results/abuse-DATE-TIME/ (git-ignored):
# report.md, samples.json (every run's figures and raw samples), logs/.
#
# Usage: bench/abuse.sh
# Env: ATTACKS ("1 2 3 4 5 6 8 9 10 11 12 13"), PEERS ("crest nginx node"), REPEATS (1: each
#      repeat runs every watched attack against every peer once more, peers in rotating order;
#      the report gives medians, min-max; the yes/no rows run once), CREST_BIN (the crest
#      binary; default build/crest, built if missing), ATTACK_SECS (10), AFTER_SECS (10),
#      RSS_CAP_MIB (4096), BASE_PORT (18180: crest, +1 nginx, +2 node http, +3 node ws),
#      NICE (0: niceness of servers and attackers; the watcher runs 5 below it), and the sizes
#      named above (defaults below).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
ATTACKS=${ATTACKS:-1 2 3 4 5 6 8 9 10 11 12 13}
PEERS=${PEERS:-crest nginx node}
REPEATS=${REPEATS:-1}
CREST_BIN=${CREST_BIN:-}
ATTACK_SECS=${ATTACK_SECS:-10}
AFTER_SECS=${AFTER_SECS:-10}
RSS_CAP_MIB=${RSS_CAP_MIB:-4096}
BASE_PORT=${BASE_PORT:-18180}
NICE=${NICE:-0}
FD_LIMIT=${FD_LIMIT:-1024}
FD_CONNS=${FD_CONNS:-2000}
AMP_CONNS=${AMP_CONNS:-64}
CHAT_MEMBERS=${CHAT_MEMBERS:-1500}
CHAT_MSG=${CHAT_MSG:-16384}
TODOS=${TODOS:-40}
TODO_TITLE=${TODO_TITLE:-1040000}
SLOW_READERS=${SLOW_READERS:-20}
SLOW_RATE=${SLOW_RATE:-32768}
TRICKLE_CONNS=${TRICKLE_CONNS:-500}
TRICKLE_BODY=${TRICKLE_BODY:-1000000}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-5000}
SSE_MESSAGES=${SSE_MESSAGES:-300}
SSE_MSG=${SSE_MSG:-1000000}
BOMB_SIZE=${BOMB_SIZE:-1000000}
BOMB_CONNS=${BOMB_CONNS:-1}
BOMB_WINDOW=${BOMB_WINDOW:-8}
SHUTDOWN_TRIES=${SHUTDOWN_TRIES:-50}
SERVER_CPU=0
CLIENT_CPU=1
FD_CAP=20000
RCVBUF=4096 # receive buffer of the clients that do not read (or read slowly)
PY=/usr/bin/python3 # Debian's, with python3-websockets

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup -------------------
# Every process this script starts is recorded here (by PID) and ended on exit.
declare -a STARTED=()
WORK=""

tree_pids() { # PID -> the PID and all its descendants, one a line
    local p=$1 c
    [[ -d /proc/$p ]] || return 0
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}

stop_pid() { # PID: SIGTERM, up to 5 s grace, then SIGKILL; also its descendants, by PID
    local pid=$1 i kids p
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kids=$(tree_pids "$pid" | tail -n +2)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in $kids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
    return 0
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup ---------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" bench
if [[ " $PEERS " == *" node "* && ! -d $BENCH/peers/ws/node_modules/ws ]]; then
    (cd "$BENCH/peers/ws" && npm install --no-audit --no-fund >&2)
fi

# Every process gets the 20,000 open files the machine allows; attack 1 lowers the server's.
hard=$(ulimit -Hn)
if [[ $hard == unlimited || $hard -ge $FD_CAP ]]; then ulimit -n $FD_CAP; else ulimit -n "$hard"; fi
NOFILE=$(ulimit -n)

PRIO=()
[[ $NICE == 0 ]] || PRIO=(nice -n "$NICE")
WATCH_NICE=$((NICE - 5))
# The command line that reproduces this run, with every setting that is not the default.
CMDLINE=""
for v in "ATTACKS:1 2 3 4 5 6 8 9 10 11 12 13" "PEERS:crest nginx node" REPEATS:1 CREST_BIN: ATTACK_SECS:10 \
    AFTER_SECS:10 RSS_CAP_MIB:4096 BASE_PORT:18180 NICE:0 FD_LIMIT:1024 FD_CONNS:2000 \
    AMP_CONNS:64 CHAT_MEMBERS:1500 CHAT_MSG:16384 TODOS:40 TODO_TITLE:1040000 SLOW_READERS:20 \
    SLOW_RATE:32768 TRICKLE_CONNS:500 TRICKLE_BODY:1000000 FANOUT_MEMBERS:5000 \
    SSE_MESSAGES:300 SSE_MSG:1000000 BOMB_SIZE:1000000 BOMB_CONNS:1 BOMB_WINDOW:8 \
    SHUTDOWN_TRIES:50; do
    name=${v%%:*}
    [[ ${!name} == "${v#*:}" ]] || CMDLINE+="$name=\"${!name}\" "
done
CMDLINE+="bench/abuse.sh"
OUT="$REPO/bench/results/abuse-$(date +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT/logs" "$OUT/raw"
WORK=$(mktemp -d /tmp/crest-abuse.XXXXXX)
chmod 755 "$WORK" # nginx's worker (www-data) reads its config here
RUNS="$OUT/raw/runs.jsonl"
: >"$RUNS"
T0=$(date +%s)

gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$WORK/abuse" "$BENCH/tools/abuse.c" -lz
ABUSE="$WORK/abuse"
WATCH="$BENCH/tools/abuse_watch.py"
CHECKS="$BENCH/tools/abuse_checks.py"

CREST_NOTE=""
if [[ " $PEERS " == *" crest "* ]]; then
    if [[ -z $CREST_BIN ]]; then
        CREST_BIN="$REPO/build/crest"
        if [[ ! -x $CREST_BIN ]]; then
            log "building crest (make -C $REPO all)"
            make -C "$REPO" -j2 all >"$OUT/logs/build.log" 2>&1 ||
                CREST_NOTE="crest: make failed (see logs/build.log); crest skipped"
        fi
    fi
    [[ -n $CREST_NOTE || -x $CREST_BIN ]] || CREST_NOTE="crest: $CREST_BIN not found; crest skipped"
    if [[ -n $CREST_NOTE ]]; then
        log "$CREST_NOTE"
        PEERS=$(echo " $PEERS " | sed 's/ crest / /; s/^ *//; s/ *$//')
    else
        # Measure one binary throughout, even if it is rebuilt while this runs.
        cp "$CREST_BIN" "$WORK/crest"
    fi
fi
CREST="$WORK/crest"
[[ -n $PEERS ]] || die "no peer left to measure"

declare -A PORT=([crest]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [node-http]=$((BASE_PORT + 2))
    [node-ws]=$((BASE_PORT + 3)))
for p in "${PORT[@]}"; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && die "port $p is already in use; set BASE_PORT"
done

{
    echo "{"
    if [[ " $PEERS " == *" crest "* ]]; then
        v=$(timeout 2 "$CREST" --version </dev/null 2>/dev/null | head -n1 || true)
        echo "\"crest\": \"${v:-crest} ($CREST_BIN of $(date -r "$CREST_BIN" '+%F %T'), sha256 $(sha256sum "$CREST" | cut -c1-12))\","
    fi
    echo "\"nginx\": \"$(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian $(dpkg-query -W -f='${Version}' nginx-light 2>/dev/null || dpkg-query -W -f='${Version}' nginx))\","
    echo "\"node\": \"Node.js $(node --version) (Debian $(dpkg-query -W -f='${Version}' nodejs)), ws $(node -p 'require(process.argv[1]).version' "$BENCH/peers/ws/node_modules/ws/package.json" 2>/dev/null || echo '?')\","
    echo "\"python\": \"$($PY --version 2>&1), websockets $($PY -c 'import websockets; print(websockets.__version__)' 2>/dev/null || echo missing)\","
    echo "\"kernel\": \"Linux $(uname -r), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1))\""
    echo "}"
} >"$OUT/raw/versions.json"

# ---------------------------------------------------------------- servers -------------------
# Each server runs with its own production defaults, except: one core; crest's per-attack flags
# below; nginx as in peers/nginx/abuse.conf; Node's http peer with Node's 5 s keep-alive.
server_cmd() { # KIND ATTACK -> sets CMD and ENVS
    local kind=$1 a=$2 port=${PORT[$1]}
    ENVS=()
    case $kind in
    crest)
        local threads=1
        if [[ $a == 4 ]]; then threads=2; fi # chat members on two loops: cross-thread queues
        CMD=("$CREST" demo --host 127.0.0.1 --port "$port" --threads $threads
            --db "sqlite:$WORK/crest-$a.db")
        if [[ $a == 12 ]]; then CMD+=(--ws-deflate); fi
        ;;
    nginx)
        local prefix="$WORK/nginx-$a-r$REP"
        mkdir -p "$prefix"
        sed "s/@PORT@/$port/" "$BENCH/peers/nginx/abuse.conf" >"$prefix/nginx.conf"
        CMD=(nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log")
        ;;
    node-http)
        ENVS=(KEEPALIVE_S=5)
        CMD=(node "$BENCH/peers/node/http.js" "$port" 127.0.0.1)
        ;;
    node-ws)
        ENVS=(PORT="$port")
        if [[ $a == 12 ]]; then ENVS+=(WS_DEFLATE=1); fi
        CMD=(node "$BENCH/peers/ws/server.js")
        ;;
    esac
}

SRV_PID=""
start_server() { # KIND ATTACK NOFILE LOG: starts it on the server CPU, waits until it accepts
    local kind=$1 a=$2 nofile=$3 logf=$4 port=${PORT[$1]} i
    server_cmd "$kind" "$a"
    # The working directory is the scratch folder, so whatever the server writes stays there.
    (cd "$WORK" && exec env "${ENVS[@]}" prlimit --nofile="$nofile:$nofile" \
        "${PRIO[@]}" taskset -c $SERVER_CPU "${CMD[@]}") >>"$logf" 2>&1 &
    SRV_PID=$!
    STARTED+=("$SRV_PID")
    for ((i = 0; i < 150; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$SRV_PID" 2>/dev/null || ((i == 150)); then
        log "$kind did not start (see $logf)"
        stop_pid "$SRV_PID"
        return 1
    fi
    sleep 0.5 # nginx forks its worker after it listens
}

# SIGTERM and how it went: sets STOP_MS (until exit), STOP_RC, STOP_HOW (exited | killed). The
# grace is crest's --shutdown-timeout (10 s) and 5 s more.
stop_server_timed() {
    local pid=$1 t0 i
    t0=$(date +%s%N)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    STOP_HOW=exited
    if kill -0 "$pid" 2>/dev/null; then
        STOP_HOW=killed # still running 15 s after SIGTERM
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    STOP_MS=$((($(date +%s%N) - t0) / 1000000))
}

rss_kib() { # PID -> VmRSS in KiB, summed over the process and its descendants
    local total=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

close_wait() { ss -Htan state close-wait "( sport = :$1 )" 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- attacks -------------------
attack_args() { # ATTACK -> sets ARGS, the abuse tool's arguments
    local s=$ATTACK_SECS
    case $1 in
    1) ARGS=(-m conns -n "$FD_CONNS" -u /plaintext -d "$s") ;;
    2) ARGS=(-m pipeline -n 1 -R $RCVBUF -u /plaintext -d "$s") ;;
    3) ARGS=(-m pipeline -n "$AMP_CONNS" -R $RCVBUF -u "/queries?queries=500" -d "$s") ;;
    4) ARGS=(-m ws-noread -n "$CHAT_MEMBERS" -R $RCVBUF -s "$CHAT_MSG" -q abuse4 -d "$s") ;;
    5) ARGS=(-m slowread -n "$SLOW_READERS" -R $RCVBUF -r "$SLOW_RATE" -u /api/todos -d "$s") ;;
    6) ARGS=(-m trickle -n "$TRICKLE_CONNS" -s "$TRICKLE_BODY" -u /echo -d "$s") ;;
    10) ARGS=(-m ws-join -n "$FANOUT_MEMBERS" -q abuse10 -d "$s") ;;
    11) ARGS=(-m ws-pub -c "$SSE_MESSAGES" -s "$SSE_MSG" -q abuse11 -d $((3 * s))) ;;
    12) ARGS=(-m ws-deflate -n "$BOMB_CONNS" -w "$BOMB_WINDOW" -s "$BOMB_SIZE" -u /ws/echo -d "$s") ;;
    esac
}

kind_of() { # PEER ATTACK -> the server that plays PEER in ATTACK
    case $1 in
    node) case $2 in 4 | 8 | 10 | 12) echo node-ws ;; *) echo node-http ;; esac ;;
    *) echo "$1" ;;
    esac
}

# Which peers run which attack; the others are n/a (report.py says why).
declare -A RUNS_ON=([1]="crest nginx node" [2]="crest nginx node" [3]="crest" [4]="crest node"
    [5]="crest" [6]="crest nginx node" [8]="crest node" [9]="crest" [10]="crest node" [11]="crest"
    [12]="crest node" [13]="crest")

jstr() { $PY -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

run_watched() { # ATTACK PEER: one attack against a fresh server, watched
    local a=$1 peer=$2 kind nofile=$NOFILE id logf watch_out wjson setup=null tool=null
    local cw1=null cw_after=null note="" i rss cap_kib=$((RSS_CAP_MIB * 1024)) t_end
    kind=$(kind_of "$peer" "$a")
    [[ $a == 1 ]] && nofile=$FD_LIMIT
    id="$peer-$a-r$REP"
    logf="$OUT/logs/$id.log"
    log "attack $a against $peer ($kind), repeat $REP/$REPEATS"
    start_server "$kind" "$a" "$nofile" "$logf" || {
        printf '{"attack":%s,"peer":"%s","kind":"%s","note":"did not start"}\n' "$a" "$peer" \
            "$kind" >>"$RUNS"
        return 0
    }
    local pid=$SRV_PID port=${PORT[$kind]}
    local -a logs=(--log "$logf")
    [[ $kind == nginx ]] && logs+=(--log "$WORK/nginx-$a-r$REP/error.log")
    wjson="$OUT/raw/$id-watch.json"
    watch_out="$WORK/$id-watch.out"
    nice -n "$WATCH_NICE" taskset -c $CLIENT_CPU $PY "$WATCH" --pid "$pid" --port "$port" \
        --out "$wjson" "${logs[@]}" >"$watch_out" 2>>"$OUT/logs/watch.log" &
    local wpid=$!
    STARTED+=("$wpid")
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready' "$watch_out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^ready' "$watch_out" || note="bystander never got an answer before the attack"
    if [[ $a == 5 ]]; then
        setup=$($PY "$CHECKS" todos --port "$port" --count "$TODOS" --size "$TODO_TITLE" \
            2>>"$OUT/logs/checks.log" | sed -n 's/^CHECK //p')
        [[ -n $setup ]] || setup=null
    fi
    sleep 1.5 # the idle baseline: the watcher's samples just before the attack
    attack_args "$a"
    tool=$("${PRIO[@]}" taskset -c $CLIENT_CPU "$ABUSE" -p "$port" -P "$pid" -L "$cap_kib" "${ARGS[@]}" \
        2>>"$OUT/logs/abuse.log" | sed -n 's/^ABUSE //p') || true
    [[ -n $tool ]] || { tool=null; note+="${note:+; }the attack tool failed (logs/abuse.log)"; }
    if [[ $a == 1 ]]; then
        sleep 1
        cw1=$(close_wait "$port")
    fi
    # Memory after the attack; a server still growing far past the cap is stopped early.
    t_end=$(($(date +%s%N) / 1000000 + AFTER_SECS * 1000))
    while (($(date +%s%N) / 1000000 < t_end)); do
        rss=$(rss_kib "$pid")
        if ((rss > 2 * cap_kib)); then
            note+="${note:+; }RSS $((rss / 1024)) MiB after the attack: server stopped early"
            break
        fi
        sleep 0.25
    done
    [[ $a == 1 ]] && cw_after=$(close_wait "$port")
    stop_pid "$wpid"
    stop_server_timed "$pid"
    if [[ $kind == nginx ]]; then cp "$WORK/nginx-$a-r$REP/error.log" "$OUT/logs/$id-error.log" || true; fi
    printf '{"attack":%s,"peer":"%s","repeat":%d,"kind":"%s","nofile":%s,"cmd":%s,"env":%s,"watch":"%s","tool":%s,"setup":%s,"close_wait_1s":%s,"close_wait_after":%s,"stop_ms":%s,"stop_rc":%s,"stop_how":"%s","after_s":%s,"note":%s}\n' \
        "$a" "$peer" "$REP" "$kind" "$nofile" "$(jstr "${CMD[*]}")" "$(jstr "${ENVS[*]}")" \
        "raw/$id-watch.json" "$tool" "$setup" "$cw1" "$cw_after" "$STOP_MS" "$STOP_RC" \
        "$STOP_HOW" "$AFTER_SECS" "$(jstr "$note")" >>"$RUNS"
}

run_check() { # ATTACK PEER: the yes/no rows
    local a=$1 peer=$2 kind out=null logf
    kind=$(kind_of "$peer" "$a")
    logf="$OUT/logs/$peer-$a.log"
    log "check $a against $peer ($kind)"
    if [[ $a == 13 ]]; then
        out=$($PY "$CHECKS" shutdown --tries "$SHUTDOWN_TRIES" -- "${PRIO[@]}" taskset -c $SERVER_CPU \
            "$CREST" demo --host 127.0.0.1 --port 0 --threads 1 --db "sqlite:$WORK/crest-13.db" \
            2>>"$OUT/logs/checks.log" | sed -n 's/^CHECK //p') || true
        ENVS=()
        CMD=("$CREST" demo --host 127.0.0.1 --port 0 --threads 1 --db "sqlite:$WORK/crest-13.db")
    else
        start_server "$kind" "$a" "$NOFILE" "$logf" || return 0
        local what=utf8
        [[ $a == 9 ]] && what=nul
        out=$($PY "$CHECKS" "$what" --port "${PORT[$kind]}" 2>>"$OUT/logs/checks.log" |
            sed -n 's/^CHECK //p') || true
        stop_server_timed "$SRV_PID"
    fi
    [[ -n $out ]] || out=null
    printf '{"attack":%s,"peer":"%s","kind":"%s","cmd":%s,"env":%s,"check":%s}\n' "$a" "$peer" \
        "$kind" "$(jstr "${CMD[*]}")" "$(jstr "${ENVS[*]}")" "$out" >>"$RUNS"
}

log "attacks: $ATTACKS; peers: $PEERS; $REPEATS repeat(s); results in $OUT"
read -ra peers_arr <<<"$PEERS"
for ((REP = 1; REP <= REPEATS; REP++)); do
    # Rotate the peers' order each repeat so that none always goes first.
    order=()
    for ((i = 0; i < ${#peers_arr[@]}; i++)); do
        order+=("${peers_arr[(i + REP - 1) % ${#peers_arr[@]}]}")
    done
    for a in $ATTACKS; do
        [[ -n ${RUNS_ON[$a]:-} ]] || { ((REP > 1)) || log "no attack $a (7 is a column of every row)"; continue; }
        for peer in "${order[@]}"; do
            [[ " ${RUNS_ON[$a]} " == *" $peer "* ]] || continue
            case $a in
            8 | 9 | 13) ((REP > 1)) || run_check "$a" "$peer" ;; # yes/no rows: once
            *) run_watched "$a" "$peer" ;;
            esac
        done
    done
done

# ---------------------------------------------------------------- report --------------------
ELAPSED=$(($(date +%s) - T0))
$PY "$BENCH/tools/abuse_report.py" "$OUT" --command "$CMDLINE" --elapsed "$ELAPSED" \
    --attacks "$ATTACKS" --peers "$PEERS" --repeats "$REPEATS" --cap-mib "$RSS_CAP_MIB" \
    --note "$CREST_NOTE"
log "done in ${ELAPSED}s; results in $OUT"
