#!/usr/bin/env bash
# bench/http.sh: crest against nginx and Node.js on the TechEmpower-style /plaintext and /json
# endpoints, side by side in one invocation, per core (see shared BENCH.md for the method).
#
# Measures, for each server pinned to CPU 0 with wrk pinned to CPU 1:
#   - req/s, wrk's p99 latency and the server's CPU time per request, for /plaintext pipelined
#     16 deep, /plaintext and /json (256 connections each), interleaved over REPEATS repeats;
#   - idle RSS, RSS per idle keep-alive connection (IDLE_CONNS of them) and cold start (exec to
#     first complete 200, median of COLDSTART_RUNS).
# Prints markdown tables and the project's targets (PASS/MISS, never failing the run) and writes
# them, the raw samples (JSON) and a chart (if gnuplot works) to bench/results/DATE-TIME/.
#
# Usage: bench/http.sh
# Env: REPEATS (3), DURATION seconds per counted run (10), WARMUP seconds before each (2),
#      CONNS (256), DEPTH (16), IDLE_CONNS (10000), COLDSTART_RUNS (5), PEERS ("crest nginx
#      node"), BASE_PORT (18080: crest, +1 nginx, +2 node), NOISY_PCT (25: a run during which
#      other tenants took more of the server's core is run once more, the quieter counts),
#      NICE (0: the niceness of servers, wrk and tools; a negative one, e.g. -10, gives them
#      priority over other tenants of a shared machine, and starves those), REBUILD=1 to run
#      make even if build/crest exists.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-256}
DEPTH=${DEPTH:-16}
IDLE_CONNS=${IDLE_CONNS:-10000}
COLDSTART_RUNS=${COLDSTART_RUNS:-5}
PEERS=${PEERS:-crest nginx node}
BASE_PORT=${BASE_PORT:-18080}
NOISY_PCT=${NOISY_PCT:-25}
NICE=${NICE:-0}
SERVER_CPU=0
CLIENT_CPU=1
KEEPALIVE_S=120
FD_CAP=20000

# Shared helpers: cleanup of what this script starts, /proc readings, medians, report rows.
source "$BENCH/lib.sh"

# ---------------------------------------------------------------- setup ---------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" bench
if ! command -v gnuplot >/dev/null; then
    # The chart is optional: carry on without it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gnuplot-nox \
        >/dev/null 2>&1 || log "gnuplot-nox could not be installed; no chart"
fi

# Every process of the run, servers included, gets the 20,000 open files the machine allows.
raise_nofile $FD_CAP "$IDLE_CONNS"

PRIO=()
[[ $NICE == 0 ]] || PRIO=(nice -n "$NICE")
CMDLINE=$(command_line bench/http.sh WARMUP:2 CONNS:256 DEPTH:16 IDLE_CONNS:10000 COLDSTART_RUNS:5 \
    "PEERS:crest nginx node" BASE_PORT:18080 NOISY_PCT:25 NICE:0)
OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
chmod 755 "$WORK"
TOOLS="$WORK/bin"
mkdir -p "$TOOLS"
for t in coldstart idleconn; do
    gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$TOOLS/$t" "$BENCH/tools/$t.c"
done

CREST="$REPO/build/crest"
CREST_NOTE=""
if [[ " $PEERS " == *" crest "* ]]; then
    if [[ ! -x $CREST || ${REBUILD:-0} == 1 ]]; then
        log "building crest (make -C $REPO all)"
        if ! make -C "$REPO" all >"$OUT/logs/build.log" 2>&1; then
            CREST_NOTE="crest: make failed (see logs/build.log); crest skipped"
        fi
    fi
    if [[ -z $CREST_NOTE && ! -x $CREST ]]; then
        CREST_NOTE="crest: $CREST not found after make; crest skipped"
    fi
    if [[ -n $CREST_NOTE ]]; then
        log "$CREST_NOTE"
        PEERS=$(echo " $PEERS " | sed 's/ crest / /; s/^ *//; s/ *$//')
    fi
fi
[[ -n $PEERS ]] || die "no peer left to measure"
if [[ " $PEERS " == *" crest "* ]]; then
    # Measure one binary throughout, even if build/crest is rebuilt while this runs.
    cp "$CREST" "$WORK/crest"
    CREST="$WORK/crest"
fi

declare -A PORT=([crest]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [node]=$((BASE_PORT + 2)))
declare -A PID=() VERSION=() SETTINGS=()

VERSION[crest]="crest (not built)"
if [[ " $PEERS " == *" crest "* ]]; then
    v=$(timeout 2 "$CREST" --version </dev/null 2>/dev/null | head -n1 || true)
    VERSION[crest]="${v:-crest} (build/crest of $(date -r "$REPO/build/crest" '+%F %T'), sha256 $(sha256sum "$CREST" | cut -c1-12))"
fi
VERSION[nginx]="$(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian $(dpkg-query -W -f='${Version}' nginx 2>/dev/null || dpkg-query -W -f='${Version}' nginx-light))"
VERSION[node]="Node.js $(node --version) (package $(dpkg-query -W -f='${Version}' nodejs))"
WRK_VERSION="wrk $(dpkg-query -W -f='${Version}' wrk)"
SETTINGS[crest]="demo --threads 1 --keepalive-timeout ${KEEPALIVE_S}s (default 5 s); no access log (the default)"
SETTINGS[nginx]="worker_processes 1; access_log off (crest writes no per-request log either); keepalive_timeout ${KEEPALIVE_S}s (default 75s); keepalive_requests 1000000000 (default 1000); worker_connections 16384; otherwise Debian's defaults (bench/peers/nginx/nginx.conf)"
SETTINGS[node]="http module, one process, JSON.stringify per request; server.keepAliveTimeout ${KEEPALIVE_S}s (default 5 s), headersTimeout 121 s (bench/peers/node/http.js)"

server_cmd() { # PEER -> sets CMD, the command line that runs it in the foreground
    local peer=$1 port=${PORT[$1]}
    case $peer in
    crest)
        CMD=("$CREST" demo --host 127.0.0.1 --port "$port" --threads 1
            --keepalive-timeout "${KEEPALIVE_S}s")
        ;;
    nginx)
        local prefix="$WORK/nginx-$port"
        mkdir -p "$prefix"
        sed "s/@PORT@/$port/" "$BENCH/peers/nginx/nginx.conf" >"$prefix/nginx.conf"
        CMD=(nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log")
        ;;
    node)
        CMD=(node "$BENCH/peers/node/http.js" "$port" 127.0.0.1)
        ;;
    *) die "unknown peer $peer" ;;
    esac
}

http_get() { # PORT PATH -> the raw response (Connection: close)
    local fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 0
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&"$fd"
    timeout 5 cat <&"$fd" || true
    exec {fd}>&-
}

verify() { # PEER: do /plaintext and /json answer with the agreed status, type and body?
    local peer=$1 port=${PORT[$1]} path type body resp ok=1
    for path in /plaintext /json; do
        if [[ $path == /plaintext ]]; then
            type="text/plain" body="Hello, World!"
        else
            type="application/json" body='{"message":"Hello, World!"}'
        fi
        resp=$(http_get "$port" "$path" | tr -d '\r')
        if ! grep -q '^HTTP/1.1 200' <<<"$resp" ||
            ! grep -qi "^content-type: *$type" <<<"$resp" ||
            [[ $(tail -n1 <<<"$resp") != "$body" ]]; then
            log "warning: $peer $path did not answer 200 $type '$body':"
            printf '%s\n' "$resp" | head -n 12 >&2
            ok=0
        fi
    done
    ((ok)) && log "$peer serves /plaintext and /json as agreed"
    return 0
}

# ---------------------------------------------------------------- phase 1: start, idle RSS --
declare -A IDLE_RSS=()
log "peers: $PEERS; results in $OUT"
for peer in $PEERS; do
    if start_server "$peer"; then
        IDLE_RSS[$peer]=$(rss_kib "${PID[$peer]}")
        log "$peer started (pid ${PID[$peer]}), idle RSS ${IDLE_RSS[$peer]} KiB"
    else
        [[ $peer == crest ]] && CREST_NOTE="crest: did not start (see logs/crest.log); crest skipped"
        PEERS=$(echo " $PEERS " | sed "s/ $peer / /; s/^ *//; s/ *$//")
    fi
done
[[ -n $PEERS ]] || die "no server started"
for peer in $PEERS; do verify "$peer"; done

# ---------------------------------------------------------------- phase 2: throughput -------
WORKLOADS="plaintext-pipelined plaintext json"
declare -A WL_PATH=([plaintext-pipelined]=/plaintext [plaintext]=/plaintext [json]=/json)
declare -A WL_TITLE=(
    [plaintext-pipelined]="GET /plaintext, $CONNS connections, pipelined $DEPTH deep"
    [plaintext]="GET /plaintext, $CONNS connections, not pipelined"
    [json]="GET /json, $CONNS connections, not pipelined")
declare -A RPS=() P99=() CPU=() ERRS=() ERRKINDS=() OTHER=()
RUNS_JSONL="$WORK/runs.jsonl"
: >"$RUNS_JSONL"
: >"$WORK/attempts.jsonl"

run_wrk() { # WORKLOAD PEER SECONDS -> wrk's WRKJSON line
    local wl=$1 peer=$2 secs=$3
    local url="http://127.0.0.1:${PORT[$peer]}${WL_PATH[$wl]}"
    local -a script=(-s "$BENCH/report.lua")
    [[ $wl == *pipelined ]] && script=(-s "$BENCH/pipeline.lua")
    "${PRIO[@]}" taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s "${script[@]}" "$url" \
        -- "$DEPTH" 2>&1 | tee -a "$OUT/logs/wrk.log" | sed -n 's/^WRKJSON //p'
}

measure() { # WORKLOAD PEER: warm-up, then one counted run; sets M_*; 1 if it gave nothing
    local wl=$1 peer=$2 b0 b1 t0 t1
    run_wrk "$wl" "$peer" "$WARMUP" >/dev/null || true # warm-up, not counted
    b0=$(core_busy $SERVER_CPU)
    t0=$(cpu_ticks "${PID[$peer]}")
    M_RES=$(run_wrk "$wl" "$peer" "$DURATION") || true
    t1=$(cpu_ticks "${PID[$peer]}")
    b1=$(core_busy $SERVER_CPU)
    [[ -n $M_RES ]] || { log "wrk gave no result for $peer $wl"; return 1; }
    M_REQS=$(jnum "$M_RES" requests)
    M_DUR=$(jnum "$M_RES" duration_us)
    M_P99=$(jnum "$M_RES" p99)
    M_ERRS=$(awk -v s="$M_RES" 'BEGIN { n = 0
        while (match(s, /"(connect|read|write|status|timeout)":[0-9]+/)) {
            t = substr(s, RSTART, RLENGTH); sub(/.*:/, "", t); n += t
            s = substr(s, RSTART + RLENGTH) }
        print n }')
    ((M_REQS > 0)) || { log "$peer $wl served no requests"; return 1; }
    M_RPS=$(calc "$M_REQS / ($M_DUR / 1e6)")
    M_CPU=$(calc "($t1 - $t0) * 1e6 / $CLK_TCK / $M_REQS")
    # CPU time on the server's core not spent by the server: other tenants of the machine.
    M_OTHER=$(calc "(($b1 - $b0) - ($t1 - $t0)) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "$M_OTHER < 0 ? 0 : $M_OTHER")
    [[ $wl == *pipelined ]] && M_P99=null # per batch when pipelining: not usable
    M_JSON=$(printf '"requests":%s,"duration_us":%s,"req_per_s":%.1f,"p99_us":%s,"cpu_ticks":%d,"clk_tck":%d,"cpu_us_per_req":%.4f,"server_core_busy_ticks":%d,"server_core_other_pct":%.1f,"errors":%d,"wrk":%s' \
        "$M_REQS" "$M_DUR" "$M_RPS" "$M_P99" $((t1 - t0)) "$CLK_TCK" "$M_CPU" $((b1 - b0)) \
        "$M_OTHER" "$M_ERRS" "$M_RES")
    return 0
}

read -ra peers_arr <<<"$PEERS"
runs_total=$((REPEATS * 3 * ${#peers_arr[@]}))
run_no=0
for ((rep = 1; rep <= REPEATS; rep++)); do
    # Rotate the order each repeat so that no peer always runs first or last.
    n=${#peers_arr[@]}
    order=()
    for ((i = 0; i < n; i++)); do order+=("${peers_arr[(i + rep - 1) % n]}"); done
    for wl in $WORKLOADS; do
        for peer in "${order[@]}"; do
            run_no=$((run_no + 1))
            if ! kill -0 "${PID[$peer]:-0}" 2>/dev/null; then
                log "$peer is no longer running; skipping its run"
                continue
            fi
            # A run during which other tenants took more than NOISY_PCT of the server's core is
            # run once more; the quieter of the two counts (both are in samples.json).
            best=""
            for ((attempt = 1; attempt <= 2; attempt++)); do
                measure "$wl" "$peer" || break
                printf '{"workload":"%s","peer":"%s","repeat":%d,"attempt":%d,%s}\n' \
                    "$wl" "$peer" "$rep" "$attempt" "$M_JSON" >>"$WORK/attempts.jsonl"
                if [[ -z $best ]] || awk "BEGIN { exit !($M_OTHER < $best_other) }"; then
                    best=$M_JSON best_other=$M_OTHER best_attempt=$attempt
                    p99=$M_P99 errs=$M_ERRS res=$M_RES rps=$M_RPS
                    cpu_us=$M_CPU other=$M_OTHER
                fi
                awk "BEGIN { exit !($M_OTHER > $NOISY_PCT) }" || break
                ((attempt == 2)) || log "$peer $wl: other load on CPU $SERVER_CPU was $(printf '%.0f' "$M_OTHER")%; running it again"
            done
            [[ -n $best ]] || continue
            RPS[$wl,$peer]+="$rps "
            CPU[$wl,$peer]+="$cpu_us "
            OTHER[$wl,$peer]+="$other "
            [[ $p99 != null ]] && P99[$wl,$peer]+="$p99 "
            ERRS[$wl,$peer]=$((${ERRS[$wl,$peer]:-0} + errs))
            for kind in connect read write status timeout; do
                [[ $res =~ \"$kind\":[1-9] && ${ERRKINDS[$wl,$peer]:-} != *$kind* ]] &&
                    ERRKINDS[$wl,$peer]+="${ERRKINDS[$wl,$peer]:+, }$kind"
            done
            printf '{"workload":"%s","peer":"%s","repeat":%d,"attempt":%d,%s}\n' \
                "$wl" "$peer" "$rep" "$best_attempt" "$best" >>"$RUNS_JSONL"
            log "[$run_no/$runs_total] repeat $rep $wl $peer: $(printf '%.0f' "$rps") req/s, $(printf '%.3f' "$cpu_us") µs CPU/req, errors $errs, other load on CPU $SERVER_CPU $(printf '%.0f' "$other")%"
        done
    done
done
for peer in $PEERS; do stop_server "$peer"; done

# ---------------------------------------------------------------- phase 3: idle connections -
declare -A CONN_RSS0=() CONN_RSS1=() PER_CONN=() CONN_NOTE=()
MEM_JSONL="$WORK/memory.jsonl"
: >"$MEM_JSONL"
for peer in $PEERS; do
    start_server "$peer" || continue
    port=${PORT[$peer]}
    # Warm up with a few used connections, so that first-request costs (lazy allocations, JIT)
    # are not counted per connection; then the baseline.
    taskset -c $CLIENT_CPU "$TOOLS/idleconn" -p "$port" -n 256 -H 1 >/dev/null 2>>"$OUT/logs/idleconn.log" || true
    sleep 1
    CONN_RSS0[$peer]=$(rss_kib "${PID[$peer]}")
    icout="$WORK/idleconn-$peer.out"
    : >"$icout"
    "${PRIO[@]}" taskset -c $CLIENT_CPU "$TOOLS/idleconn" -p "$port" -n "$IDLE_CONNS" -t 60 -H 300 \
        >"$icout" 2>>"$OUT/logs/idleconn.log" &
    icpid=$!
    STARTED+=("$icpid")
    while kill -0 "$icpid" 2>/dev/null && ! grep -q '^ready' "$icout"; do sleep 0.05; done
    if grep -q '^ready' "$icout"; then
        sleep 2 # let the server settle
        CONN_RSS1[$peer]=$(rss_kib "${PID[$peer]}")
        stop_pid "$icpid"
        held=$(sed -n 's/^done open=\([0-9]*\).*/\1/p' "$icout")
        closed=$(sed -n 's/.*closed_by_server=\([0-9]*\).*/\1/p' "$icout")
        PER_CONN[$peer]=$(calc "(${CONN_RSS1[$peer]} - ${CONN_RSS0[$peer]}) * 1024 / $IDLE_CONNS")
        [[ ${closed:-0} == 0 ]] || CONN_NOTE[$peer]="server closed $closed of them while held"
        log "$peer: RSS $((CONN_RSS0[$peer])) KiB idle, ${CONN_RSS1[$peer]} KiB with $IDLE_CONNS connections: $(printf '%.0f' "${PER_CONN[$peer]}") B each (held ${held:-?}, closed by server ${closed:-?})"
        printf '{"peer":"%s","connections":%d,"rss_kib_before":%d,"rss_kib_with":%d,"bytes_per_conn":%.1f,"held":%s,"closed_by_server":%s}\n' \
            "$peer" "$IDLE_CONNS" "${CONN_RSS0[$peer]}" "${CONN_RSS1[$peer]}" "${PER_CONN[$peer]}" \
            "${held:-null}" "${closed:-null}" >>"$MEM_JSONL"
    else
        stop_pid "$icpid"
        CONN_NOTE[$peer]="idleconn failed: $(tail -n1 "$OUT/logs/idleconn.log")"
        log "$peer: ${CONN_NOTE[$peer]}"
    fi
    stop_server "$peer"
done

# ---------------------------------------------------------------- phase 4: cold start -------
declare -A COLD=()
COLD_JSONL="$WORK/coldstart.jsonl"
: >"$COLD_JSONL"
for ((i = 1; i <= COLDSTART_RUNS; i++)); do
    for peer in $PEERS; do
        server_cmd "$peer"
        if us=$(cd "$WORK" && "${PRIO[@]}" taskset -c $CLIENT_CPU "$TOOLS/coldstart" -p "${PORT[$peer]}" \
            -c $SERVER_CPU -t 15000 -o "$OUT/logs/$peer.log" -- "${CMD[@]}" 2>>"$OUT/logs/coldstart.log"); then
            COLD[$peer]+="$us "
            printf '{"peer":"%s","run":%d,"us":%d}\n' "$peer" "$i" "$us" >>"$COLD_JSONL"
        else
            log "$peer: cold start run $i failed: $(tail -n1 "$OUT/logs/coldstart.log")"
        fi
    done
done
for peer in $PEERS; do log "$peer cold start (µs): ${COLD[$peer]:-none}"; done

# ---------------------------------------------------------------- report --------------------
has_crest=0
[[ " $PEERS " == *" crest "* ]] && has_crest=1
REPORT="$OUT/report.md"
{
    echo "# crest HTTP benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    echo "Command: \`$CMDLINE\` (repo commit $commit$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ", with uncommitted changes")) on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)."
    echo "Servers pinned to CPU $SERVER_CPU, one core each; \`taskset -c $CLIENT_CPU wrk -t1 -c$CONNS\` ($WRK_VERSION) on CPU $CLIENT_CPU."
    echo "$REPEATS interleaved repeats of ${DURATION}s each, each after a ${WARMUP}s warm-up; median (min–max). Open files limit $NOFILE; niceness $NICE."
    echo "CPU/req = server (utime+stime) over the run from /proc/PID/stat, all its processes, / requests wrk counted. ×crest = peer's median / crest's median."
    echo "errors = wrk's socket errors (timeout: no response within 5 s) and non-2xx responses (status), summed over the repeats. Other load on CPU $SERVER_CPU = the core's busy time (/proc/stat) not spent by the server: other tenants of the machine; req/s of runs with much of it are depressed (CPU/req much less so); a run with more than $NOISY_PCT% was run once more and the quieter one counts (samples.json has both)."
    echo
    echo "| peer | version | settings |"
    echo "| --- | --- | --- |"
    for peer in crest nginx node; do
        [[ " $PEERS " == *" $peer "* ]] && echo "| $peer | ${VERSION[$peer]} | ${SETTINGS[$peer]} |"
    done
    [[ -n $CREST_NOTE ]] && { echo; echo "**$CREST_NOTE**"; }
    for wl in $WORKLOADS; do
        echo
        echo "## ${WL_TITLE[$wl]}"
        echo
        if [[ $wl == *pipelined ]]; then p99h="p99 ms (n/a: wrk times whole batches when pipelining)"; else p99h="p99 ms (wrk)"; fi
        echo "| peer | req/s | ×crest | CPU µs/req | ×crest | $p99h | errors | other load on CPU $SERVER_CPU |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for peer in $PEERS; do
            rps_m=$(med "${RPS[$wl,$peer]:-}")
            cpu_m=$(med "${CPU[$wl,$peer]:-}")
            c_rps=""; c_cpu=""
            if ((has_crest)); then c_rps=$(med "${RPS[$wl,crest]:-}"); c_cpu=$(med "${CPU[$wl,crest]:-}"); fi
            p99s="n/a"
            [[ $wl != *pipelined ]] && p99s=$(range "${P99[$wl,$peer]:-}" 0.001 "%.2f")
            echo "| $peer | $(range "${RPS[$wl,$peer]:-}" 1 "%.0f") | $(ratio "$rps_m" "$c_rps") | $(range "${CPU[$wl,$peer]:-}" 1 "%.3f") | $(ratio "$cpu_m" "$c_cpu") | $p99s | ${ERRS[$wl,$peer]:-n/a}${ERRKINDS[$wl,$peer]:+ (${ERRKINDS[$wl,$peer]})} | $(range "${OTHER[$wl,$peer]:-}" 1 "%.0f")% |"
        done
    done
    echo
    echo "## Memory and start-up"
    echo
    echo "| peer | idle RSS | RSS before → with $IDLE_CONNS idle keep-alive conns | per idle conn | cold start, exec → first 200 (median of $COLDSTART_RUNS, min–max) |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for peer in $PEERS; do
        idle=${IDLE_RSS[$peer]:-}
        idles="n/a"; [[ -n $idle ]] && idles="$(calc "sprintf(\"%.2f MiB\", $idle / 1024)")"
        conns="n/a"; per="n/a"
        if [[ -n ${PER_CONN[$peer]:-} ]]; then
            conns="$(calc "sprintf(\"%.1f → %.1f MiB\", ${CONN_RSS0[$peer]} / 1024, ${CONN_RSS1[$peer]} / 1024)")"
            per="$(calc "sprintf(\"%.2f KiB\", ${PER_CONN[$peer]} / 1024)")"
        fi
        [[ -n ${CONN_NOTE[$peer]:-} ]] && per="$per (${CONN_NOTE[$peer]})"
        echo "| $peer | $idles | $conns | $per | $(range "${COLD[$peer]:-}" 0.001 "%.1f") ms |"
    done
    echo
    echo "RSS is VmRSS summed over the server's processes (nginx: master + worker); kernel socket buffers are not in it. Idle connections: each made one GET /plaintext, spread over source addresses 127.0.0.1–.8; servers keep idle connections ${KEEPALIVE_S}s."
    echo
    echo "## Targets"
    echo
    echo "| target | measured | result |"
    echo "| --- | --- | --- |"
    if ((has_crest)); then
        for other in nginx node; do
            [[ " $PEERS " == *" $other "* ]] || continue
            if [[ $other == nginx ]]; then lim=0.8 limtxt="0.8×"; else lim=0.3333334 limtxt="1/3 of"; fi
            for wl in $WORKLOADS; do
                c=$(med "${CPU[$wl,crest]:-}") o=$(med "${CPU[$wl,$other]:-}")
                r=$(quot "$c" "$o")
                m=n/a
                [[ $r != nan ]] && m=$(calc "sprintf(\"%.3f vs %.3f µs = %.2f×\", $c, $o, $r)")
                target "crest CPU/req ≤ $limtxt $other's, $wl" "$m" "$r" "<=" "$lim"
            done
        done
        if [[ " $PEERS " == *" nginx "* ]]; then
            c=$(med "${RPS[plaintext-pipelined,crest]:-}") o=$(med "${RPS[plaintext-pipelined,nginx]:-}")
            r=$(quot "$c" "$o")
            m=n/a
            [[ $r != nan ]] && m=$(calc "sprintf(\"%.0f vs %.0f req/s = %.2f×\", $c, $o, $r)")
            target "pipelined req/s ≥ 4× nginx's" "$m" "$r" ">=" 4
        fi
        p=${PER_CONN[crest]:-nan} m=n/a
        [[ $p != nan ]] && m=$(calc "sprintf(\"%.0f B\", $p)")
        target "≤ 0.5 KiB per idle keep-alive connection" "$m" "$p" "<=" 512
        p=${IDLE_RSS[crest]:-nan} m=n/a
        [[ $p != nan ]] && m=$(calc "sprintf(\"%.2f MiB\", $p / 1024)")
        target "idle RSS < 2 MiB" "$m" "$p" "<" 2048
        p=$(med "${COLD[crest]:-}") m=n/a
        [[ $p != nan ]] && m=$(calc "sprintf(\"%.2f ms\", $p / 1000)")
        target "first response within 5 ms of exec" "$m" "$p" "<=" 5000
    else
        echo "| all targets | crest was not measured | n/a |"
    fi
} >"$REPORT"

# Raw samples, as JSON.
{
    printf '{"date":"%s","repeats":%d,"duration_s":%d,"warmup_s":%d,"connections":%d,"pipeline_depth":%d,' \
        "$(date -Iseconds)" "$REPEATS" "$DURATION" "$WARMUP" "$CONNS" "$DEPTH"
    printf '"clk_tck":%d,"kernel":%s,"wrk":%s,"peers":{' "$CLK_TCK" "$(json_str "$(uname -r)")" "$(json_str "$WRK_VERSION")"
    first=1
    for peer in $PEERS; do
        ((first)) || printf ','
        first=0
        printf '%s:{"version":%s,"settings":%s,"idle_rss_kib":%s}' "$(json_str "$peer")" \
            "$(json_str "${VERSION[$peer]}")" "$(json_str "${SETTINGS[$peer]}")" "${IDLE_RSS[$peer]:-null}"
    done
    printf '},"note":%s,' "$(json_str "$CREST_NOTE")"
    printf '"runs":[%s],"attempts":[%s],"idle_connections":[%s],"coldstart":[%s]}\n' \
        "$(join_lines "$RUNS_JSONL")" "$(join_lines "$WORK/attempts.jsonl")" \
        "$(join_lines "$MEM_JSONL")" "$(join_lines "$COLD_JSONL")"
} >"$OUT/samples.json"

# Chart: median req/s and CPU per request by workload, min–max as error bars.
if command -v gnuplot >/dev/null; then
    dat="$OUT/chart.dat"
    {
        printf '# workload'
        for peer in $PEERS; do printf ' %s_rps lo hi %s_cpu lo hi' "$peer" "$peer"; done
        echo
        for wl in $WORKLOADS; do
            printf '%s' "$wl"
            for peer in $PEERS; do
                printf ' %s %s' "$(tr ' ' '\n' <<<"${RPS[$wl,$peer]:-}" | sed '/^$/d' | stats)" \
                    "$(tr ' ' '\n' <<<"${CPU[$wl,$peer]:-}" | sed '/^$/d' | stats)"
            done
            echo
        done
    } >"$dat"
    plot_rps="" plot_cpu="" col=2
    for peer in $PEERS; do
        plot_rps+="${plot_rps:+, }'$dat' using (\$$col/1000):(\$$((col + 1))/1000):(\$$((col + 2))/1000):xtic(1) title '$peer'"
        plot_cpu+="${plot_cpu:+, }'$dat' using $((col + 3)):$((col + 4)):$((col + 5)):xtic(1) title '$peer'"
        col=$((col + 6))
    done
    if gnuplot >"$OUT/logs/gnuplot.log" 2>&1 <<EOF; then
set terminal pngcairo size 1200,500 noenhanced font ',10'
set output '$OUT/chart.png'
set multiplot layout 1,2 title 'crest vs peers, one core each (median, min–max bars), $(date +%F)'
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set key top left
set yrange [0:*]
set grid ytics
set title 'throughput (k req/s, higher is better)'
plot $plot_rps
set title 'server CPU per request (µs, lower is better)'
plot $plot_cpu
unset multiplot
EOF
        log "chart: $OUT/chart.png"
    else
        log "gnuplot failed (see logs/gnuplot.log); no chart"
    fi
fi

cat "$REPORT"
log "report, samples.json and logs in $OUT"
