#!/usr/bin/env bash
# bench/static.sh: crest's static files against nginx's, and the cost of crest's security headers
# and access log, side by side in one invocation, per core (see shared BENCH.md for the method).
#
# Measures, with each server pinned to CPU 0 and wrk -t1 pinned to CPU 1, interleaved over
# REPEATS repeats (medians, min-max), each counted run after a warm-up:
#   - static files: GET of a 1 KiB, a 100 KiB and a 10 MiB file of random bytes (made for the
#     run in a scratch folder) over keep-alive, from `crest demo --public DIR` and from nginx
#     (one worker, sendfile, open_file_cache): req/s, MB/s and the server's CPU per request.
#     Target: crest's CPU per request at most nginx's, for every size;
#   - middleware: GET /plaintext (not pipelined) from `crest demo` with its defaults (security
#     headers on), with --no-security-headers, and with --access-log FILE (a file on disk):
#     CPU per request of each, and its excess over the bare one. Target: security headers +
#     access log at most 5% over the bare one.
# Prints markdown tables and the targets (PASS/MISS, never failing the run) and writes them, the
# raw samples (JSON) and a chart (if gnuplot works) to bench/results/static-DATE-TIME/.
#
# A crest that does not serve the files (GET /1k.bin is not a 200 with the file's bytes) is
# reported n/a in the file tables with a note; a middleware configuration whose flag crest
# refuses (`crest demo FLAG --help` fails) is skipped with a note.
#
# Usage: bench/static.sh
# Env: REPEATS (3), DURATION seconds per counted run (10), WARMUP seconds before each (2),
#      CONNS wrk connections for the files (64), PLAIN_CONNS for /plaintext (256), SIZES
#      ("1k 100k 10m": k KiB, m MiB), PEERS ("crest nginx"), MIDDLEWARE ("bare default log";
#      empty: skip that table), BASE_PORT (18180: crest, +1 nginx, +2 bare, +3 default, +4 log),
#      NOISY_PCT (25: a run during which other tenants took more of the server's core is run
#      once more, the quieter counts), NICE (0: the niceness of servers and wrk; see http.sh),
#      CREST_BIN (default build/crest, made with `make all` if missing), REBUILD=1 to run make
#      even if build/crest exists.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
PLAIN_CONNS=${PLAIN_CONNS:-256}
SIZES=${SIZES:-1k 100k 10m}
PEERS=${PEERS-crest nginx}
MIDDLEWARE=${MIDDLEWARE-bare default log}
BASE_PORT=${BASE_PORT:-18180}
NOISY_PCT=${NOISY_PCT:-25}
NICE=${NICE:-0}
CREST_BIN=${CREST_BIN:-}
SERVER_CPU=0
CLIENT_CPU=1
KEEPALIVE_S=120
FD_CAP=20000
CPU_TARGET=1    # crest's CPU per file request / nginx's, at most
MW_TARGET=1.05  # CPU per /plaintext request with security headers + access log / bare, at most

# Shared helpers: cleanup of what this script starts, /proc readings, medians, report rows.
source "$BENCH/lib.sh"

PEERS_ASKED=$PEERS
for p in $PEERS; do [[ $p == crest || $p == nginx ]] || die "unknown peer $p (known: crest nginx)"; done
for m in $MIDDLEWARE; do
    [[ $m == bare || $m == default || $m == log ]] || die "unknown middleware configuration $m (known: bare default log)"
done
size_bytes() { # 1k, 100k, 10m -> bytes
    local n=${1%[kKmM]}
    [[ $n =~ ^[0-9]+$ ]] || die "SIZES: '$1' is not a number with an optional k or m"
    case $1 in
    *[kK]) echo $((n * 1024)) ;;
    *[mM]) echo $((n * 1048576)) ;;
    *) echo "$n" ;;
    esac
}
size_label() { # bytes -> "1 KiB", "100 KiB", "10 MiB", "500 B"
    local b=$1
    if ((b >= 1048576 && b % 1048576 == 0)); then echo "$((b / 1048576)) MiB"
    elif ((b >= 1024 && b % 1024 == 0)); then echo "$((b / 1024)) KiB"
    else echo "$b B"; fi
}

# ---------------------------------------------------------------- setup ---------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" bench
apt_install curl
if ! command -v gnuplot >/dev/null; then
    # The chart is optional: carry on without it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gnuplot-nox \
        >/dev/null 2>&1 || log "gnuplot-nox could not be installed; no chart"
fi

raise_nofile $FD_CAP "$PLAIN_CONNS"

PRIO=()
[[ $NICE == 0 ]] || PRIO=(nice -n "$NICE")
CMDLINE=$(command_line bench/static.sh WARMUP:2 CONNS:64 PLAIN_CONNS:256 "SIZES:1k 100k 10m" \
    "PEERS:crest nginx" "MIDDLEWARE:bare default log" BASE_PORT:18180 NOISY_PCT:25 NICE:0 CREST_BIN:)
OUT="$REPO/bench/results/static-$(date +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT/logs"
# On disk (not tmpfs): the access log is written here.
WORK=$(mktemp -d /var/tmp/crest-bench.XXXXXX)
chmod 755 "$WORK"
TOOLS="$WORK/bin"
mkdir -p "$TOOLS"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$TOOLS/coldstart" "$BENCH/tools/coldstart.c"

# The files: random bytes (nothing compresses them), named by size, readable by nginx's worker,
# beside the demo's own page (the demo serves index.html from --public and wants it there).
PUBLIC="$WORK/public"
mkdir -p "$PUBLIC"
cp "$REPO/app/public/index.html" "$PUBLIC/" 2>/dev/null || true
FILES=""
declare -A FILE_BYTES=()
for s in $SIZES; do
    wl="file-$s"
    FILE_BYTES[$wl]=$(size_bytes "$s")
    head -c "${FILE_BYTES[$wl]}" /dev/urandom >"$PUBLIC/$s.bin"
    FILES+="${FILES:+ }$wl"
done
[[ -n $FILES ]] || die "SIZES is empty"
chmod -R a+rX "$PUBLIC"
ACCESS_LOG="$WORK/access.log"
fs_type=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || echo "?")

# crest: present?
CREST_NOTE=""
NOTES=() # for the report: what was skipped and why
if [[ " $PEERS " == *" crest "* || -n $MIDDLEWARE ]]; then
    if [[ -z $CREST_BIN ]]; then
        CREST_BIN="$REPO/build/crest"
        if [[ ! -x $CREST_BIN || ${REBUILD:-0} == 1 ]]; then
            log "building crest (make -C $REPO all)"
            make -C "$REPO" all >"$OUT/logs/build.log" 2>&1 ||
                CREST_NOTE="crest: make failed (see logs/build.log); crest skipped"
        fi
    fi
    [[ -n $CREST_NOTE || -x $CREST_BIN ]] || CREST_NOTE="crest: $CREST_BIN not found; crest skipped"
    if [[ -n $CREST_NOTE ]]; then
        log "$CREST_NOTE"
        NOTES+=("$CREST_NOTE")
        PEERS=$(without "$PEERS" crest)
        MIDDLEWARE=""
    fi
fi
CREST=""
if [[ -z $CREST_NOTE && -n $CREST_BIN ]]; then
    # Measure one binary throughout, even if build/crest is rebuilt while this runs.
    cp "$CREST_BIN" "$WORK/crest"
    CREST="$WORK/crest"
fi

# The middleware configurations: their own crest processes, beside the file servers.
declare -A MW_FLAGS=([bare]="--no-security-headers" [default]="" [log]="--access-log $ACCESS_LOG")
declare -A MW_TITLE=([bare]="bare: --no-security-headers" [default]="defaults: security headers"
    [log]="defaults + --access-log FILE")
for m in $MIDDLEWARE; do
    [[ -n ${MW_FLAGS[$m]} ]] || continue
    # A flag crest does not know makes it exit with a usage error before it reaches --help.
    # shellcheck disable=SC2086
    if ! timeout 5 "$CREST" demo ${MW_FLAGS[$m]} --help >/dev/null 2>"$WORK/probe.err" </dev/null; then
        note="middleware '$m': crest refuses \`${MW_FLAGS[$m]%% *}\` ($(head -n1 "$WORK/probe.err")); skipped"
        log "$note"
        NOTES+=("$note")
        MIDDLEWARE=$(without "$MIDDLEWARE" "$m")
    fi
done
[[ -n $PEERS || -n $MIDDLEWARE ]] || die "nothing left to measure"

declare -A PORT=([crest]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [mw-bare]=$((BASE_PORT + 2))
    [mw-default]=$((BASE_PORT + 3)) [mw-log]=$((BASE_PORT + 4)))
declare -A PID=() VERSION=() SETTINGS=()

VERSION[crest]="crest (not built)"
if [[ -n $CREST ]]; then
    v=$(timeout 2 "$CREST" --version </dev/null 2>/dev/null | head -n1 || true)
    VERSION[crest]="${v:-crest} ($CREST_BIN of $(date -r "$CREST_BIN" '+%F %T'), sha256 $(sha256sum "$CREST" | cut -c1-12))"
fi
VERSION[nginx]="$(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian $(dpkg-query -W -f='${Version}' nginx 2>/dev/null || deb_version nginx-light))"
WRK_VERSION="wrk $(deb_version wrk)"
CREST_COMMON="demo --threads 1 --quiet --keepalive-timeout ${KEEPALIVE_S}s (default 5 s) --public DIR"
SETTINGS[crest]="$CREST_COMMON; its defaults otherwise: security headers on, no access log, files up to 16 KiB kept in memory, larger ones sent with sendfile"
SETTINGS[nginx]="worker_processes 1; sendfile on, tcp_nopush on (Debian's defaults); open_file_cache max=1000 inactive=20s, open_file_cache_valid 1s (default off); access_log off (crest has no access log unless --access-log); keepalive_timeout ${KEEPALIVE_S}s (default 75s); keepalive_requests 1000000000 (default 1000); worker_connections 16384 (bench/peers/nginx/static.conf)"

server_cmd() { # PEER -> sets CMD, the command line that runs it in the foreground
    local peer=$1 port=${PORT[$1]} prefix
    case $peer in
    crest | mw-*)
        CMD=("$CREST" demo --host 127.0.0.1 --port "$port" --threads 1 --quiet
            --keepalive-timeout "${KEEPALIVE_S}s" --db "sqlite:$WORK/$peer.db" --public "$PUBLIC")
        if [[ $peer == mw-* ]]; then
            # shellcheck disable=SC2206
            CMD+=(${MW_FLAGS[${peer#mw-}]})
        fi
        ;;
    nginx)
        prefix="$WORK/nginx-$port"
        mkdir -p "$prefix"
        sed "s#@PORT@#$port#; s#@ROOT@#$PUBLIC#" "$BENCH/peers/nginx/static.conf" >"$prefix/nginx.conf"
        CMD=(nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log")
        ;;
    *) die "unknown peer $peer" ;;
    esac
}

# ---------------------------------------------------------------- start and check -----------
declare -A HEAD_BYTES=() # response head size, per peer and workload
check_file() { # PEER WORKLOAD: 0 if GET /NAME.bin answers 200 with the file's bytes
    local peer=$1 wl=$2 name=${2#file-} code
    code=$(curl -sS --max-time 30 -o "$WORK/got" -D "$WORK/head" -w '%{http_code}' \
        "http://127.0.0.1:${PORT[$peer]}/$name.bin" 2>>"$OUT/logs/curl.log" || echo 000)
    {
        echo "== $peer GET /$name.bin"
        cat "$WORK/head" 2>/dev/null
    } >>"$OUT/logs/headers.txt"
    HEAD_BYTES[$wl,$peer]=$(wc -c <"$WORK/head" 2>/dev/null || echo 0)
    if [[ $code != 200 ]] || ! cmp -s "$WORK/got" "$PUBLIC/$name.bin"; then
        CHECK_ERR="GET /$name.bin answered $code"
        [[ $code != 200 ]] || CHECK_ERR+=" with other bytes"
        return 1
    fi
}
check_plaintext() { # PEER: 0 if GET /plaintext answers 200 "Hello, World!"; sets HAS_SEC
    local peer=$1 code body
    body=$(curl -sS --max-time 5 -D "$WORK/head" -w '\n%{http_code}' \
        "http://127.0.0.1:${PORT[$peer]}/plaintext" 2>>"$OUT/logs/curl.log" || echo 000)
    {
        echo "== $peer GET /plaintext"
        cat "$WORK/head" 2>/dev/null
    } >>"$OUT/logs/headers.txt"
    HEAD_BYTES[plaintext,$peer]=$(wc -c <"$WORK/head" 2>/dev/null || echo 0)
    HAS_SEC=0
    grep -qi '^x-content-type-options:' "$WORK/head" 2>/dev/null && HAS_SEC=1
    code=$(tail -n1 <<<"$body")
    [[ $code == 200 && $(head -n1 <<<"$body") == "Hello, World!" ]] && return 0
    CHECK_ERR="GET /plaintext answered $code"
    return 1
}

declare -A SEC=() # per middleware configuration: 1 if /plaintext carried X-Content-Type-Options
ALL_SERVERS="$PEERS"
for m in $MIDDLEWARE; do ALL_SERVERS+=" mw-$m"; done
log "file peers: ${PEERS:-none}; middleware configurations: ${MIDDLEWARE:-none}; files: $SIZES; results in $OUT"
: >"$OUT/logs/headers.txt"
FILE_PEERS=$PEERS
for peer in $ALL_SERVERS; do
    if ! start_server "$peer"; then
        note="$peer: did not start (see logs/$peer.log); skipped"
        NOTES+=("$note")
        FILE_PEERS=$(without "$FILE_PEERS" "$peer")
        [[ $peer == mw-* ]] && MIDDLEWARE=$(without "$MIDDLEWARE" "${peer#mw-}")
        continue
    fi
    log "$peer started (pid ${PID[$peer]})"
    if [[ $peer == mw-* ]]; then
        if ! check_plaintext "$peer"; then
            NOTES+=("middleware '${peer#mw-}': $CHECK_ERR; skipped")
            MIDDLEWARE=$(without "$MIDDLEWARE" "${peer#mw-}")
            stop_server "$peer"
            continue
        fi
        SEC[${peer#mw-}]=$HAS_SEC
        continue
    fi
    for wl in $FILES; do
        if ! check_file "$peer" "$wl"; then
            note="$peer: $CHECK_ERR: this build does not serve the files; its file rows are n/a"
            [[ $peer == nginx ]] && note="nginx: $CHECK_ERR (see logs/); its file rows are n/a"
            log "$note"
            NOTES+=("$note")
            FILE_PEERS=$(without "$FILE_PEERS" "$peer")
            stop_server "$peer"
            break
        fi
    done
done
# Did the flags do what they say? Report it rather than guess.
if [[ " $MIDDLEWARE " == *" default "* && ${SEC[default]:-0} == 0 ]]; then
    NOTES+=("middleware 'default': /plaintext carried no X-Content-Type-Options: this build's demo sends no security headers by default")
fi
if [[ " $MIDDLEWARE " == *" bare "* && ${SEC[bare]:-0} == 1 ]]; then
    NOTES+=("middleware 'bare': /plaintext still carried X-Content-Type-Options despite --no-security-headers")
fi
for n in "${NOTES[@]}"; do log "note: $n"; done
[[ -n $FILE_PEERS || -n $MIDDLEWARE ]] || die "no server left to measure"

# ---------------------------------------------------------------- measure -------------------
declare -A RPS=() MBPS=() CPU=() ERRS=() ERRKINDS=() OTHER=() BUSY=() LOGGED=()
RUNS_JSONL="$WORK/runs.jsonl"
: >"$RUNS_JSONL"
: >"$WORK/attempts.jsonl"

url_of() { # WORKLOAD PEER
    if [[ $1 == plaintext ]]; then echo "http://127.0.0.1:${PORT[$2]}/plaintext"
    else echo "http://127.0.0.1:${PORT[$2]}/${1#file-}.bin"; fi
}

run_wrk() { # WORKLOAD PEER SECONDS -> wrk's WRKJSON line
    local conns=$CONNS
    [[ $1 == plaintext ]] && conns=$PLAIN_CONNS
    "${PRIO[@]}" taskset -c $CLIENT_CPU wrk -t1 -c"$conns" -d"${3}s" --timeout 10s -s "$BENCH/report.lua" \
        "$(url_of "$1" "$2")" 2>&1 | tee -a "$OUT/logs/wrk.log" | sed -n 's/^WRKJSON //p'
}

measure() { # WORKLOAD PEER: warm-up, then one counted run; sets M_*; 1 if it gave nothing
    local wl=$1 peer=$2 b0 b1 t0 t1 bytes lines=null
    run_wrk "$wl" "$peer" "$WARMUP" >/dev/null || true # warm-up, not counted
    # The access log of the counted run only (a log opened for appending follows the truncation;
    # one that is not leaves a hole, which holds no line either).
    [[ $peer == mw-log ]] && : >"$ACCESS_LOG"
    b0=$(core_busy $SERVER_CPU)
    t0=$(cpu_ticks "${PID[$peer]}")
    M_RES=$(run_wrk "$wl" "$peer" "$DURATION") || true
    t1=$(cpu_ticks "${PID[$peer]}")
    b1=$(core_busy $SERVER_CPU)
    [[ -n $M_RES ]] || { log "wrk gave no result for $peer $wl"; return 1; }
    M_REQS=$(jnum "$M_RES" requests)
    M_DUR=$(jnum "$M_RES" duration_us)
    bytes=$(jnum "$M_RES" bytes)
    M_ERRS=$(wrk_errors "$M_RES")
    M_KINDS=$(wrk_error_kinds "$M_RES")
    ((M_REQS > 0)) || { log "$peer $wl served no requests"; return 1; }
    M_RPS=$(calc "$M_REQS / ($M_DUR / 1e6)")
    M_MBPS=$(calc "$bytes / $M_DUR") # bytes per µs = MB (10^6 bytes) per second
    M_CPU=$(calc "($t1 - $t0) * 1e6 / $CLK_TCK / $M_REQS")
    M_BUSY=$(calc "($t1 - $t0) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "(($b1 - $b0) - ($t1 - $t0)) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "$M_OTHER < 0 ? 0 : $M_OTHER")
    M_LOGGED=""
    if [[ $peer == mw-log ]]; then
        # Lines the writer thread got to the file by now, per request wrk counted (it also counts
        # requests still in flight at the end; lines dropped under load would show here).
        sleep 0.5
        lines=$(wc -l <"$ACCESS_LOG" 2>/dev/null || echo 0)
        M_LOGGED=$(calc "$lines * 100 / $M_REQS")
    fi
    M_JSON=$(printf '"requests":%s,"duration_us":%s,"bytes":%s,"req_per_s":%.1f,"mb_per_s":%.2f,"cpu_ticks":%d,"clk_tck":%d,"cpu_us_per_req":%.4f,"server_core_busy_ticks":%d,"server_core_other_pct":%.1f,"errors":%d,"access_log_lines":%s,"wrk":%s' \
        "$M_REQS" "$M_DUR" "$bytes" "$M_RPS" "$M_MBPS" $((t1 - t0)) "$CLK_TCK" "$M_CPU" $((b1 - b0)) \
        "$M_OTHER" "$M_ERRS" "$lines" "$M_RES")
    return 0
}

# Each repeat: every file size from every peer, then /plaintext from every middleware
# configuration; the order of the servers rotates each repeat.
MW_SERVERS=""
for m in $MIDDLEWARE; do MW_SERVERS+="${MW_SERVERS:+ }mw-$m"; done
read -ra file_arr <<<"$FILE_PEERS"
read -ra mw_arr <<<"$MW_SERVERS"
n_files=$(wc -w <<<"$FILES")
runs_total=$((REPEATS * (n_files * ${#file_arr[@]} + ${#mw_arr[@]})))
run_no=0
rotate() { # REPEAT NAME... -> the names, rotated by REPEAT-1
    local rep=$1 i n
    shift
    n=$#
    ((n)) || return 0
    local -a a=("$@")
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[(i + rep - 1) % n]}"; done
}
for ((rep = 1; rep <= REPEATS; rep++)); do
    for wl in $FILES plaintext; do
        if [[ $wl == plaintext ]]; then
            order=$(rotate "$rep" "${mw_arr[@]}")
        else
            order=$(rotate "$rep" "${file_arr[@]}")
        fi
        for peer in $order; do
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
                    errs=$M_ERRS kinds=$M_KINDS rps=$M_RPS mbps=$M_MBPS cpu_us=$M_CPU
                    other=$M_OTHER busy=$M_BUSY logged=$M_LOGGED
                fi
                awk "BEGIN { exit !($M_OTHER > $NOISY_PCT) }" || break
                ((attempt == 2)) || log "$peer $wl: other load on CPU $SERVER_CPU was $(printf '%.0f' "$M_OTHER")%; running it again"
            done
            [[ -n $best ]] || continue
            RPS[$wl,$peer]+="$rps "
            MBPS[$wl,$peer]+="$mbps "
            CPU[$wl,$peer]+="$cpu_us "
            OTHER[$wl,$peer]+="$other "
            BUSY[$wl,$peer]+="$busy "
            [[ -n $logged ]] && LOGGED[$wl,$peer]+="$logged "
            ERRS[$wl,$peer]=$((${ERRS[$wl,$peer]:-0} + errs))
            if [[ -n $kinds && ${ERRKINDS[$wl,$peer]:-} != *"$kinds"* ]]; then
                ERRKINDS[$wl,$peer]+="${ERRKINDS[$wl,$peer]:+, }$kinds"
            fi
            printf '{"workload":"%s","peer":"%s","repeat":%d,"attempt":%d,%s}\n' \
                "$wl" "$peer" "$rep" "$best_attempt" "$best" >>"$RUNS_JSONL"
            log "[$run_no/$runs_total] repeat $rep $wl $peer: $(printf '%.0f' "$rps") req/s, $(printf '%.1f' "$mbps") MB/s, $(printf '%.2f' "$cpu_us") µs CPU/req, server core use $(printf '%.0f' "$busy")%, errors $errs, other load on CPU $SERVER_CPU $(printf '%.0f' "$other")%"
        done
    done
done
for peer in $ALL_SERVERS; do stop_server "$peer"; done

if [[ " $MIDDLEWARE " == *" log "* && -n ${LOGGED[plaintext,mw-log]:-} ]] &&
    awk "BEGIN { exit !($(med "${LOGGED[plaintext,mw-log]}") == 0) }"; then
    NOTES+=("middleware 'log': the access log stayed empty: this build's demo accepts --access-log but writes no line")
fi

# ---------------------------------------------------------------- report --------------------
ASKED_PEERS=$PEERS_ASKED
REF=crest
[[ " $FILE_PEERS " == *" crest "* ]] || REF=nginx
errcell() { echo "${ERRS[$1,$2]:-n/a}${ERRKINDS[$1,$2]:+ (${ERRKINDS[$1,$2]})}"; }
REPORT="$OUT/report.md"
{
    echo "# crest static files benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    echo "Command: \`$CMDLINE\` (repo commit $commit$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ", with uncommitted changes")) on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)."
    echo "Servers pinned to CPU $SERVER_CPU, one core each; \`taskset -c $CLIENT_CPU wrk -t1\` ($WRK_VERSION) on CPU $CLIENT_CPU, keep-alive, not pipelined: $CONNS connections for the files, $PLAIN_CONNS for /plaintext."
    echo "$REPEATS interleaved repeats of ${DURATION}s each, each after a ${WARMUP}s warm-up of the same requests; median (min–max). Open files limit $NOFILE; niceness $NICE."
    echo "Files: random bytes made for the run ($SIZES), in a folder on $fs_type (page cache warm after the first request). MB/s = response bytes wrk read (heads included) / duration, 10^6 bytes."
    echo "CPU/req = server (utime+stime) over the run from /proc/PID/stat, all its processes and threads, / requests wrk counted. ×$REF = peer's median / $REF's median. Server core use = that CPU time / the run's duration (100% = the server is the limit). Other load on CPU $SERVER_CPU = the core's busy time (/proc/stat) not spent by the server: other tenants of the machine; a run with more than $NOISY_PCT% was run once more and the quieter one counts (samples.json has both)."
    echo
    echo "| peer | version | settings |"
    echo "| --- | --- | --- |"
    for peer in crest nginx; do
        [[ $peer == crest && -z $CREST ]] && continue
        [[ $peer == nginx && " $ASKED_PEERS " != *" nginx "* ]] && continue
        echo "| $peer | ${VERSION[$peer]} | ${SETTINGS[$peer]} |"
    done
    if ((${#NOTES[@]})); then
        echo
        for n in "${NOTES[@]}"; do echo "- **$n**"; done
    fi
    [[ -n $ASKED_PEERS ]] || FILES=""
    for wl in $FILES; do
        echo
        echo "## GET /${wl#file-}.bin: $(size_label "${FILE_BYTES[$wl]}") file, keep-alive, $CONNS connections"
        echo
        echo "| peer | req/s | ×$REF | MB/s | CPU µs/req | ×$REF | response head | errors | server core use | other load on CPU $SERVER_CPU |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for peer in $ASKED_PEERS; do
            if [[ " $FILE_PEERS " != *" $peer "* ]]; then
                echo "| $peer | n/a | | | n/a | | | | | |"
                continue
            fi
            rps_m=$(med "${RPS[$wl,$peer]:-}") cpu_m=$(med "${CPU[$wl,$peer]:-}")
            r_rps=$(med "${RPS[$wl,$REF]:-}") r_cpu=$(med "${CPU[$wl,$REF]:-}")
            echo "| $peer | $(range "${RPS[$wl,$peer]:-}" 1 "%.0f") | $(ratio "$rps_m" "$r_rps") | $(range "${MBPS[$wl,$peer]:-}" 1 "%.0f") | $(range "${CPU[$wl,$peer]:-}" 1 "%.2f") | $(ratio "$cpu_m" "$r_cpu") | ${HEAD_BYTES[$wl,$peer]:-?} B | $(errcell "$wl" "$peer") | $(range "${BUSY[$wl,$peer]:-}" 1 "%.0f")% | $(range "${OTHER[$wl,$peer]:-}" 1 "%.0f")% |"
        done
    done
    [[ -n $FILES ]] && echo
    [[ -n $FILES ]] && echo "Response head = the bytes of the status line and headers each server sent for that file, as logged in logs/headers.txt."
    if [[ -n $MIDDLEWARE ]]; then
        echo
        echo "## Security headers and access log: GET /plaintext, crest demo --threads 1, $PLAIN_CONNS connections, not pipelined"
        echo
        echo "The access log goes to a file on $fs_type in the scratch folder, truncated before each counted run; its writer thread is one of crest's, pinned and counted with it."
        echo
        echo "| configuration | req/s | CPU µs/req | vs bare | response head | access log lines / requests | errors | server core use | other load on CPU $SERVER_CPU |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        bare_cpu=$(med "${CPU[plaintext,mw-bare]:-}")
        for m in bare default log; do
            [[ " $MIDDLEWARE " == *" $m "* ]] || continue
            p=mw-$m
            c=$(med "${CPU[plaintext,$p]:-}")
            over="n/a"
            r=$(quot "$c" "$bare_cpu")
            [[ $r != nan ]] && over=$(calc "sprintf(\"%+.1f%%\", ($r - 1) * 100)")
            [[ $m == bare ]] && over="—"
            logged="—"
            [[ $m == log ]] && logged="$(range "${LOGGED[plaintext,$p]:-}" 1 "%.1f")%"
            echo "| ${MW_TITLE[$m]} | $(range "${RPS[plaintext,$p]:-}" 1 "%.0f") | $(range "${CPU[plaintext,$p]:-}" 1 "%.3f") | $over | ${HEAD_BYTES[plaintext,$p]:-?} B | $logged | $(errcell plaintext "$p") | $(range "${BUSY[plaintext,$p]:-}" 1 "%.0f")% | $(range "${OTHER[plaintext,$p]:-}" 1 "%.0f")% |"
        done
        # The target is a few percent: say how far the same configuration strays from itself.
        spread=$(tr ' ' '\n' <<<"${CPU[plaintext,mw-bare]:-}" | sed '/^$/d' | stats |
            awk '$1 != "nan" && $1 > 0 { printf "%.1f", ($3 - $2) * 100 / $1 }')
        if (($(wc -w <<<"${CPU[plaintext,mw-bare]:-}") < 2)); then
            echo
            echo "One sample per configuration: no spread to judge the noise by; run more repeats."
        elif [[ -n $spread ]]; then
            echo
            echo "The bare configuration's own CPU/req spread over the repeats (max − min) is $spread% of its median: differences smaller than that are noise."
        fi
    fi
    echo
    echo "## Targets"
    echo
    echo "| target | measured | result |"
    echo "| --- | --- | --- |"
    for wl in $FILES; do
        text="crest CPU/req ≤ nginx's, $(size_label "${FILE_BYTES[$wl]}") file"
        if [[ " $FILE_PEERS " != *" crest "* || " $FILE_PEERS " != *" nginx "* ]]; then
            target "$text" "crest or nginx not measured" nan "<=" $CPU_TARGET
            continue
        fi
        c=$(med "${CPU[$wl,crest]:-}") o=$(med "${CPU[$wl,nginx]:-}")
        r=$(quot "$c" "$o")
        m=n/a
        [[ $r != nan ]] && m=$(calc "sprintf(\"%.2f vs %.2f µs = %.2f×\", $c, $o, $r)")
        target "$text" "$m" "$r" "<=" $CPU_TARGET
    done
    text="security headers + access log ≤ 5% over bare, CPU/req on /plaintext"
    if [[ " $MIDDLEWARE " == *" bare "* && " $MIDDLEWARE " == *" log "* ]]; then
        c=$(med "${CPU[plaintext,mw-log]:-}") b=$(med "${CPU[plaintext,mw-bare]:-}")
        r=$(quot "$c" "$b")
        m=n/a
        [[ $r != nan ]] && m=$(calc "sprintf(\"%+.1f%% (%.3f vs %.3f µs)\", ($r - 1) * 100, $c, $b)")
        target "$text" "$m" "$r" "<=" $MW_TARGET
    else
        target "$text" "bare or access-log configuration not measured" nan "<=" $MW_TARGET
    fi
} >"$REPORT"

# Raw samples, as JSON.
{
    printf '{"date":"%s","repeats":%d,"duration_s":%d,"warmup_s":%d,"wrk_connections_files":%d,"wrk_connections_plaintext":%d,' \
        "$(date -Iseconds)" "$REPEATS" "$DURATION" "$WARMUP" "$CONNS" "$PLAIN_CONNS"
    printf '"files":{'
    first=1
    for wl in $FILES; do
        ((first)) || printf ','
        first=0
        printf '"%s.bin":%d' "${wl#file-}" "${FILE_BYTES[$wl]}"
    done
    printf '},"clk_tck":%d,"kernel":%s,"wrk":%s,"peers":{' "$CLK_TCK" "$(json_str "$(uname -r)")" "$(json_str "$WRK_VERSION")"
    first=1
    for peer in crest nginx; do
        [[ $peer == crest && -z $CREST ]] && continue
        ((first)) || printf ','
        first=0
        printf '%s:{"version":%s,"settings":%s}' "$(json_str "$peer")" "$(json_str "${VERSION[$peer]}")" \
            "$(json_str "${SETTINGS[$peer]}")"
    done
    printf '},"middleware":{'
    first=1
    for m in $MIDDLEWARE; do
        ((first)) || printf ','
        first=0
        printf '"mw-%s":{"flags":%s,"security_headers_seen":%s}' "$m" "$(json_str "${MW_FLAGS[$m]}")" "${SEC[$m]:-null}"
    done
    printf '},"notes":['
    first=1
    for n in "${NOTES[@]}"; do
        ((first)) || printf ','
        first=0
        json_str "$n"
    done
    printf '],"runs":[%s],"attempts":[%s]}\n' "$(join_lines "$RUNS_JSONL")" "$(join_lines "$WORK/attempts.jsonl")"
} >"$OUT/samples.json"

# Chart: CPU per request and MB/s per file size, medians with min–max bars (log scales: the
# sizes span four orders of magnitude).
if command -v gnuplot >/dev/null && [[ -n $FILE_PEERS ]]; then
    dat="$OUT/chart.dat"
    {
        printf '# workload'
        for peer in $FILE_PEERS; do printf ' %s_cpu lo hi %s_mbps lo hi' "$peer" "$peer"; done
        echo
        for wl in $FILES; do
            printf '%s' "$(size_label "${FILE_BYTES[$wl]}" | tr -d ' ')"
            for peer in $FILE_PEERS; do
                printf ' %s %s' "$(tr ' ' '\n' <<<"${CPU[$wl,$peer]:-}" | sed '/^$/d' | stats)" \
                    "$(tr ' ' '\n' <<<"${MBPS[$wl,$peer]:-}" | sed '/^$/d' | stats)"
            done
            echo
        done
    } >"$dat"
    plot_cpu="" plot_mbps="" col=2
    for peer in $FILE_PEERS; do
        plot_cpu+="${plot_cpu:+, }'$dat' using $col:$((col + 1)):$((col + 2)):xtic(1) title '$peer'"
        plot_mbps+="${plot_mbps:+, }'$dat' using $((col + 3)):$((col + 4)):$((col + 5)):xtic(1) title '$peer'"
        col=$((col + 6))
    done
    if gnuplot >"$OUT/logs/gnuplot.log" 2>&1 <<EOF; then
set terminal pngcairo size 1200,500 noenhanced font ',10'
set output '$OUT/chart.png'
set multiplot layout 1,2 title 'Static files: crest vs nginx, one core each (median, min–max bars), $(date +%F)'
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set key top left
set logscale y
set grid ytics
set title 'server CPU per request (µs, log scale, lower is better)'
plot $plot_cpu
set title 'MB/s (log scale, higher is better)'
plot $plot_mbps
unset multiplot
EOF
        log "chart: $OUT/chart.png"
    else
        log "gnuplot failed (see logs/gnuplot.log); no chart"
    fi
fi

cat "$REPORT"
log "report, samples.json and logs in $OUT"
