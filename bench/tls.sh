#!/usr/bin/env bash
# bench/tls.sh: crest against nginx, h2o and Node.js over TLS, side by side in one invocation,
# per core (see shared BENCH.md for the method). One certificate (ECDSA P-256, or RSA 2048 with
# KEY_TYPE=rsa) made for the run and used by every peer; TLSv1.2 and TLSv1.3, each peer's
# default ciphers and session tickets.
#
# Measures, for each server pinned to CPU 0 with the load pinned to CPU 1:
#   - HTTPS/1.1 keep-alive: wrk -t1 -c256 on /plaintext: req/s, p99, server CPU per request;
#   - HTTP/2 over TLS (h2 by ALPN): h2load -c16 -m32 on /plaintext: req/s, server CPU/request;
#   - full TLS handshakes: tools/tlsconn, a new connection per request (no resumption):
#     handshakes/s and server CPU per handshake;
#   - memory per idle TLS keep-alive connection: IDLE_CONNS connections (handshake done, one
#     request answered, then idle), RSS of all the server's processes with them minus without.
# Interleaved over REPEATS repeats, medians (min-max). Prints markdown tables and the project's
# targets (PASS/MISS, never failing the run) and writes them, the raw samples (JSON) and a chart
# (if gnuplot works) to bench/results/tls-DATE-TIME/.
#
# crest serves TLS with `crest demo --tls-cert FILE --tls-key FILE` (HTTP/1.1 and h2 by ALPN on
# one port). A crest whose `demo --help` does not mention --tls-cert is not run: its rows read
# "n/a (no TLS in this build)" and the other peers are measured as usual.
#
# Usage: bench/tls.sh
# Env: REPEATS (3), DURATION seconds per counted run (10), WARMUP seconds before each (2),
#      CONNS wrk connections (256), H2_CONNS (16) and H2_STREAMS (32) for h2load, HS_CONC
#      handshakes under way at once (32), IDLE_CONNS (10000), PEERS ("crest nginx h2o node"),
#      KEY_TYPE (ec: ECDSA P-256; rsa: RSA 2048), BASE_PORT (18443: crest, +1 nginx, +2 h2o,
#      +3 node https, +4 node http2), NOISY_PCT (25: a run during which other tenants took more
#      of the server's core is run once more, the quieter counts), NICE (0: the niceness of
#      servers and load; see http.sh), CREST_BIN (default build/crest, made with `make all` if
#      missing), REBUILD=1 to run make even if build/crest exists.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-256}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-32}
HS_CONC=${HS_CONC:-32}
IDLE_CONNS=${IDLE_CONNS:-10000}
PEERS=${PEERS:-crest nginx h2o node}
KEY_TYPE=${KEY_TYPE:-ec}
BASE_PORT=${BASE_PORT:-18443}
NOISY_PCT=${NOISY_PCT:-25}
NICE=${NICE:-0}
CREST_BIN=${CREST_BIN:-}
SERVER_CPU=0
CLIENT_CPU=1
KEEPALIVE_S=120
FD_CAP=20000
ALL_PEERS="crest nginx h2o node"

# Shared helpers: cleanup of what this script starts, /proc readings, medians, report rows.
source "$BENCH/lib.sh"
save_logs() { # the servers' own logs, named after their folders
    local f
    for f in "$WORK"/nginx-*/error.log "$WORK"/h2o-*/error.log; do
        [[ -f $f ]] && cp "$f" "$OUT/logs/$(basename "$(dirname "$f")").error.log" 2>/dev/null
    done
    return 0
}

for p in $PEERS; do [[ " $ALL_PEERS " == *" $p "* ]] || die "unknown peer $p (known: $ALL_PEERS)"; done
[[ $KEY_TYPE == ec || $KEY_TYPE == rsa ]] || die "KEY_TYPE is ec or rsa"

# ---------------------------------------------------------------- setup ---------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" bench
apt_install h2o nghttp2-client curl openssl libssl-dev
if ! command -v gnuplot >/dev/null; then
    # The chart is optional: carry on without it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gnuplot-nox \
        >/dev/null 2>&1 || log "gnuplot-nox could not be installed; no chart"
fi

# Every process of the run, servers included, gets the 20,000 open files the machine allows.
raise_nofile $FD_CAP "$IDLE_CONNS"

PRIO=()
[[ $NICE == 0 ]] || PRIO=(nice -n "$NICE")
CMDLINE=$(command_line bench/tls.sh WARMUP:2 CONNS:256 H2_CONNS:16 H2_STREAMS:32 HS_CONC:32 \
    IDLE_CONNS:10000 "PEERS:crest nginx h2o node" KEY_TYPE:ec BASE_PORT:18443 NOISY_PCT:25 \
    NICE:0 CREST_BIN:)
OUT="$REPO/bench/results/tls-$(date +%Y-%m-%d-%H%M%S)"
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
chmod 755 "$WORK"
TOOLS="$WORK/bin"
mkdir -p "$TOOLS"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$TOOLS/coldstart" "$BENCH/tools/coldstart.c"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$TOOLS/tlsconn" "$BENCH/tools/tlsconn.c" -lssl -lcrypto

# One certificate and key for every peer, for 127.0.0.1.
CERT="$WORK/tls/cert.pem" KEY="$WORK/tls/key.pem"
mkdir -p "$WORK/tls"
if [[ $KEY_TYPE == ec ]]; then
    newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) KEY_DESC="ECDSA P-256"
else
    newkey=(-newkey rsa:2048) KEY_DESC="RSA 2048"
fi
openssl req -x509 "${newkey[@]}" -nodes -keyout "$KEY" -out "$CERT" -days 7 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 >"$OUT/logs/openssl.log" 2>&1 || die "openssl req failed"
chmod 644 "$CERT"
chmod 600 "$KEY" # read by the servers as root, before nginx and h2o drop to their users

# crest: present, and built with TLS?
CREST_NOTE="" CREST_NA=""
if [[ " $PEERS " == *" crest "* ]]; then
    if [[ -z $CREST_BIN ]]; then
        CREST_BIN="$REPO/build/crest"
        if [[ ! -x $CREST_BIN || ${REBUILD:-0} == 1 ]]; then
            log "building crest (make -C $REPO all)"
            make -C "$REPO" all >"$OUT/logs/build.log" 2>&1 ||
                CREST_NOTE="crest: make failed (see logs/build.log); crest skipped"
        fi
    fi
    [[ -n $CREST_NOTE || -x $CREST_BIN ]] || CREST_NOTE="crest: $CREST_BIN not found; crest skipped"
    help=""
    [[ -n $CREST_NOTE ]] || help=$(timeout 5 "$CREST_BIN" demo --help 2>&1 </dev/null || true)
    if [[ -z $CREST_NOTE ]] && ! grep -q -- --tls-cert <<<"$help"; then
        CREST_NA="n/a (no TLS in this build)"
        CREST_NOTE="crest: \`$CREST_BIN demo --help\` does not mention --tls-cert: $CREST_NA; the other peers are measured"
    fi
    if [[ -n $CREST_NOTE ]]; then
        log "$CREST_NOTE"
        PEERS=$(echo " $PEERS " | sed 's/ crest / /; s/^ *//; s/ *$//')
    fi
fi
# Rows to report: the peers measured, and crest's n/a rows when it was asked for.
REPORT_PEERS=$PEERS
[[ -n $CREST_NA ]] && REPORT_PEERS="crest $PEERS"
[[ -n $PEERS ]] || die "no peer left to measure"
CREST=""
if [[ " $PEERS " == *" crest "* ]]; then
    # Measure one binary throughout, even if build/crest is rebuilt while this runs.
    cp "$CREST_BIN" "$WORK/crest"
    CREST="$WORK/crest"
fi

declare -A PORT=([crest]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [h2o]=$((BASE_PORT + 2))
    [node]=$((BASE_PORT + 3)))
# HTTP/2 is on the same port for all but Node, whose http2 server listens beside its https one.
declare -A H2PORT=([crest]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [h2o]=$((BASE_PORT + 2))
    [node]=$((BASE_PORT + 4)))
declare -A PID=() VERSION=() SETTINGS=()

OPENSSL_VERSION="$(openssl version | cut -d' ' -f1-2) (Debian libssl3 $(deb_version libssl3))"
VERSION[crest]="crest (not built)"
if [[ -n $CREST_BIN && -x $CREST_BIN ]]; then
    v=$(timeout 2 "$CREST_BIN" --version </dev/null 2>/dev/null | head -n1 || true)
    VERSION[crest]="${v:-crest} ($CREST_BIN of $(date -r "$CREST_BIN" '+%F %T'), sha256 $(sha256sum "$CREST_BIN" | cut -c1-12))"
fi
VERSION[nginx]="$(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian $(dpkg-query -W -f='${Version}' nginx 2>/dev/null || deb_version nginx-light)), $OPENSSL_VERSION"
VERSION[h2o]="$(h2o --version 2>/dev/null | head -n1 | sed 's/^h2o version //; s/^/h2o /') (Debian $(deb_version h2o)), $OPENSSL_VERSION"
VERSION[node]="Node.js $(node --version) (package $(deb_version nodejs)), its OpenSSL $(node -p process.versions.openssl)"
WRK_VERSION="wrk $(deb_version wrk)"
H2LOAD_VERSION="$(h2load --version 2>/dev/null | head -n1) (Debian nghttp2-client $(deb_version nghttp2-client))"
SETTINGS[crest]="demo --threads 1 --keepalive-timeout ${KEEPALIVE_S}s (default 5 s) --tls-cert --tls-key --quiet; no access log (the default)"
SETTINGS[nginx]="worker_processes 1; listen ssl http2; ssl_protocols TLSv1.2 TLSv1.3, default ciphers, tickets on, no session cache (defaults); access_log off; keepalive_timeout ${KEEPALIVE_S}s (default 75s; HTTP/2's idle timeout too); keepalive_requests 1000000000 (default 1000; bounds HTTP/2 too); worker_connections 16384 (bench/peers/nginx/tls.conf)"
SETTINGS[h2o]="num-threads 1; /plaintext and /json served by file.file (static files; mruby costs ~3x the CPU, see the config); minimum-version TLSv1.2 (default TLSv1), default ciphers and session resumption (cache + tickets); http1-request-timeout and http2-idle-timeout ${KEEPALIVE_S} s (default 10 s); max-connections 16384 (default 1024); ocsp-update-interval 0; no access log (bench/peers/h2o/h2o.conf)"
SETTINGS[node]="one process: \`https\` on port ${PORT[node]} (HTTP/1.1; keepAliveTimeout ${KEEPALIVE_S}s, default 5 s; headersTimeout 121 s) and \`http2\` core stream API on port ${H2PORT[node]} (defaults); Node's default TLS (1.2-1.3, tickets); JSON.stringify per request (bench/peers/node/tls.js)"

server_cmd() { # PEER -> sets CMD, the command line that runs it in the foreground
    local peer=$1 port=${PORT[$1]} prefix
    case $peer in
    crest)
        CMD=("$CREST" demo --host 127.0.0.1 --port "$port" --threads 1 --quiet
            --keepalive-timeout "${KEEPALIVE_S}s" --db "sqlite:$WORK/crest.db"
            --tls-cert "$CERT" --tls-key "$KEY")
        ;;
    nginx)
        prefix="$WORK/nginx-$port"
        mkdir -p "$prefix"
        sed "s#@PORT@#$port#; s#@CERT@#$CERT#; s#@KEY@#$KEY#" "$BENCH/peers/nginx/tls.conf" >"$prefix/nginx.conf"
        CMD=(nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log")
        ;;
    h2o)
        prefix="$WORK/h2o-$port"
        mkdir -p "$prefix/www"
        printf 'Hello, World!' >"$prefix/www/plaintext.txt"
        printf '{"message":"Hello, World!"}' >"$prefix/www/json.json"
        chmod -R a+rX "$prefix" # h2o drops to nobody
        sed "s#@PORT@#$port#; s#@CERT@#$CERT#; s#@KEY@#$KEY#; s#@DIR@#$prefix#g" \
            "$BENCH/peers/h2o/h2o.conf" >"$prefix/h2o.conf"
        CMD=(h2o -c "$prefix/h2o.conf")
        ;;
    node)
        CMD=(node "$BENCH/peers/node/tls.js" "$port" "${H2PORT[node]}" "$CERT" "$KEY" 127.0.0.1)
        ;;
    *) die "unknown peer $peer" ;;
    esac
}

verify() { # PEER: do /plaintext and /json answer as agreed, over HTTPS/1.1 and over h2?
    local peer=$1 proto url path type body resp ok=1
    for proto in http1.1 http2; do
        url="https://127.0.0.1:${PORT[$peer]}"
        [[ $proto == http2 ]] && url="https://127.0.0.1:${H2PORT[$peer]}"
        for path in /plaintext /json; do
            if [[ $path == /plaintext ]]; then
                type="text/plain" body="Hello, World!"
            else
                type="application/json" body='{"message":"Hello, World!"}'
            fi
            resp=$(curl -sS -i -k --max-time 5 "--$proto" "$url$path" 2>&1 | tr -d '\r' || true)
            local status='^HTTP/1.1 200'
            [[ $proto == http2 ]] && status='^HTTP/2 200'
            if ! grep -q "$status" <<<"$resp" || ! grep -qi "^content-type: *$type" <<<"$resp" ||
                [[ $(tail -n1 <<<"$resp") != "$body" ]]; then
                log "warning: $peer $path over $proto did not answer 200 $type '$body':"
                printf '%s\n' "$resp" | head -n 12 >&2
                ok=0
            fi
        done
    done
    ((ok)) && log "$peer serves /plaintext and /json as agreed over HTTPS/1.1 and h2"
    return 0
}

# ---------------------------------------------------------------- phase 1: start, idle RSS --
declare -A IDLE_RSS=()
log "peers: $PEERS${CREST_NA:+ (crest: $CREST_NA)}; certificate $KEY_DESC; results in $OUT"
for peer in $PEERS; do
    if start_server "$peer"; then
        IDLE_RSS[$peer]=$(rss_kib "${PID[$peer]}")
        log "$peer started (pid ${PID[$peer]}), idle RSS ${IDLE_RSS[$peer]} KiB"
    else
        [[ $peer == crest ]] && CREST_NOTE="crest: did not start (see logs/crest.log); crest skipped"
        PEERS=$(echo " $PEERS " | sed "s/ $peer / /; s/^ *//; s/ *$//")
        REPORT_PEERS=$(echo " $REPORT_PEERS " | sed "s/ $peer / /; s/^ *//; s/ *$//")
    fi
done
[[ -n $PEERS ]] || die "no server started"
for peer in $PEERS; do verify "$peer"; done

# ---------------------------------------------------------------- phase 2: throughput -------
WORKLOADS="https1 h2 handshake"
declare -A WL_TITLE=(
    [https1]="HTTPS/1.1 keep-alive: GET /plaintext, wrk -t1 -c$CONNS, not pipelined"
    [h2]="HTTP/2 over TLS (h2 by ALPN): GET /plaintext, h2load -c$H2_CONNS -m$H2_STREAMS"
    [handshake]="Full TLS handshakes: a new connection per GET /plaintext, $HS_CONC at a time, no resumption")
declare -A RPS=() P99=() CPU=() ERRS=() ERRKINDS=() OTHER=() BUSY=() CLIENT=()
RUNS_JSONL="$WORK/runs.jsonl"
: >"$RUNS_JSONL"
: >"$WORK/attempts.jsonl"
HS_TLS="" # version, cipher and group of the handshakes, from tlsconn

run_load() { # WORKLOAD PEER SECONDS -> one line: wrk's WRKJSON, h2load's summary as JSON, or tlsconn's TLSJSON
    local wl=$1 peer=$2 secs=$3 out
    case $wl in
    https1)
        "${PRIO[@]}" taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "$BENCH/report.lua" \
            "https://127.0.0.1:${PORT[$peer]}/plaintext" 2>&1 | tee -a "$OUT/logs/wrk.log" | sed -n 's/^WRKJSON //p'
        ;;
    h2)
        out=$("${PRIO[@]}" taskset -c $CLIENT_CPU timeout $((secs + 30)) h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" \
            -D "$secs" "https://127.0.0.1:${H2PORT[$peer]}/plaintext" 2>&1 || true)
        printf '== %s %s %ss\n%s\n' "$peer" "$wl" "$secs" "$out" >>"$OUT/logs/h2load.log"
        # h2load's summary as one JSON line: requests succeeded, duration, and its error counts.
        awk '/^Application protocol:/ { proto = $3 }
            /^finished in/ { d = $3; sub(/,$/, "", d); u = 1e6
                if (d ~ /ms$/) { sub(/ms$/, "", d); u = 1e3 } else sub(/s$/, "", d)
                dur = d * u }
            /^requests:/ { gsub(/,/, ""); for (i = 2; i < NF; i++) v[$(i + 1)] = $i }
            /^status codes:/ { s2 = $3; s3 = $5; s4 = $7; s5 = $9 }
            END { if (dur == "" || v["succeeded"] == "") exit
                printf "{\"requests\":%d,\"duration_us\":%d,\"protocol\":\"%s\",\"total\":%d,\"failed\":%d,\"errored\":%d,\"timeout\":%d,\"status_2xx\":%d,\"status_other\":%d}\n",
                    v["succeeded"], dur, proto, v["total"], v["failed"], v["errored"], v["timeout"], s2, s3 + s4 + s5 }' <<<"$out"
        ;;
    handshake)
        "${PRIO[@]}" taskset -c $CLIENT_CPU "$TOOLS/tlsconn" -m churn -p "${PORT[$peer]}" -c "$HS_CONC" -d "$secs" \
            2>>"$OUT/logs/tlsconn.log" | sed -n 's/^TLSJSON //p' || true
        ;;
    esac
}

measure() { # WORKLOAD PEER: warm-up, then one counted run; sets M_*; 1 if it gave nothing
    local wl=$1 peer=$2 b0 b1 t0 t1 kind n
    run_load "$wl" "$peer" "$WARMUP" >/dev/null || true # warm-up, not counted
    b0=$(core_busy $SERVER_CPU)
    t0=$(cpu_ticks "${PID[$peer]}")
    M_RES=$(run_load "$wl" "$peer" "$DURATION") || true
    t1=$(cpu_ticks "${PID[$peer]}")
    b1=$(core_busy $SERVER_CPU)
    [[ -n $M_RES ]] || { log "no result for $peer $wl (see logs/)"; return 1; }
    M_DUR=$(jnum "$M_RES" duration_us)
    M_P99=null M_CLIENT=null M_KINDS=""
    case $wl in
    https1)
        M_REQS=$(jnum "$M_RES" requests)
        M_P99=$(jnum "$M_RES" p99)
        M_ERRS=$(awk -v s="$M_RES" 'BEGIN { n = 0
            while (match(s, /"(connect|read|write|status|timeout)":[0-9]+/)) {
                t = substr(s, RSTART, RLENGTH); sub(/.*:/, "", t); n += t
                s = substr(s, RSTART + RLENGTH) }
            print n }')
        for kind in connect read write status timeout; do
            [[ $M_RES =~ \"$kind\":[1-9] ]] && M_KINDS+="${M_KINDS:+, }$kind"
        done
        ;;
    h2)
        M_REQS=$(jnum "$M_RES" requests)
        [[ $M_RES == *'"protocol":"h2"'* ]] || { log "$peer $wl: h2load did not negotiate h2 (see logs/h2load.log)"; return 1; }
        M_ERRS=0
        for kind in failed errored timeout status_other; do
            n=$(jnum "$M_RES" "$kind")
            ((n == 0)) || M_KINDS+="${M_KINDS:+, }$kind"
            M_ERRS=$((M_ERRS + n))
        done
        ;;
    handshake)
        M_REQS=$(jnum "$M_RES" handshakes)
        M_ERRS=$(jnum "$M_RES" errors)
        ((M_ERRS == 0)) || M_KINDS="see logs/tlsconn.log"
        (($(jnum "$M_RES" resumed) == 0)) || M_KINDS+="${M_KINDS:+; }$(jnum "$M_RES" resumed) resumed"
        M_CLIENT=$(calc "$(jnum "$M_RES" client_cpu_us) * 100 / $M_DUR")
        [[ -n $HS_TLS ]] || HS_TLS=$(sed -E 's/.*"version":"([^"]*)","cipher":"([^"]*)","group":"([^"]*)".*/\1, \2, \3/' <<<"$M_RES")
        ;;
    esac
    ((M_REQS > 0)) || { log "$peer $wl served no requests"; return 1; }
    M_RPS=$(calc "$M_REQS / ($M_DUR / 1e6)")
    M_CPU=$(calc "($t1 - $t0) * 1e6 / $CLK_TCK / $M_REQS")
    # The server's use of its core over the run (100 = saturated), and the core's busy time not
    # spent by the server: other tenants of the machine.
    M_BUSY=$(calc "($t1 - $t0) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "(($b1 - $b0) - ($t1 - $t0)) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "$M_OTHER < 0 ? 0 : $M_OTHER")
    M_JSON=$(printf '"requests":%s,"duration_us":%s,"per_s":%.1f,"p99_us":%s,"cpu_ticks":%d,"clk_tck":%d,"cpu_us_per_request":%.4f,"server_core_use_pct":%.1f,"client_cpu_pct":%s,"server_core_busy_ticks":%d,"server_core_other_pct":%.1f,"errors":%d,"tool":%s' \
        "$M_REQS" "$M_DUR" "$M_RPS" "$M_P99" $((t1 - t0)) "$CLK_TCK" "$M_CPU" "$M_BUSY" "$M_CLIENT" \
        $((b1 - b0)) "$M_OTHER" "$M_ERRS" "$M_RES")
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
                    p99=$M_P99 errs=$M_ERRS kinds=$M_KINDS rps=$M_RPS cpu_us=$M_CPU
                    other=$M_OTHER busy=$M_BUSY client=$M_CLIENT
                fi
                awk "BEGIN { exit !($M_OTHER > $NOISY_PCT) }" || break
                ((attempt == 2)) || log "$peer $wl: other load on CPU $SERVER_CPU was $(printf '%.0f' "$M_OTHER")%; running it again"
            done
            [[ -n $best ]] || continue
            RPS[$wl,$peer]+="$rps "
            CPU[$wl,$peer]+="$cpu_us "
            OTHER[$wl,$peer]+="$other "
            BUSY[$wl,$peer]+="$busy "
            [[ $p99 != null ]] && P99[$wl,$peer]+="$p99 "
            [[ $client != null ]] && CLIENT[$wl,$peer]+="$client "
            ERRS[$wl,$peer]=$((${ERRS[$wl,$peer]:-0} + errs))
            if [[ -n $kinds && ${ERRKINDS[$wl,$peer]:-} != *"$kinds"* ]]; then
                ERRKINDS[$wl,$peer]+="${ERRKINDS[$wl,$peer]:+, }$kinds"
            fi
            printf '{"workload":"%s","peer":"%s","repeat":%d,"attempt":%d,%s}\n' \
                "$wl" "$peer" "$rep" "$best_attempt" "$best" >>"$RUNS_JSONL"
            unit="req/s" per="req"
            [[ $wl == handshake ]] && unit="handshakes/s" per="handshake"
            log "[$run_no/$runs_total] repeat $rep $wl $peer: $(printf '%.0f' "$rps") $unit, $(printf '%.2f' "$cpu_us") µs CPU/$per, server core use $(printf '%.0f' "$busy")%, errors $errs, other load on CPU $SERVER_CPU $(printf '%.0f' "$other")%"
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
    # Warm up with a few used connections, so that first-request costs (lazy allocations, JIT,
    # TLS contexts) are not counted per connection; then the baseline.
    taskset -c $CLIENT_CPU "$TOOLS/tlsconn" -m idle -p "$port" -n 256 -H 1 >/dev/null 2>>"$OUT/logs/tlsconn.log" || true
    sleep 1
    CONN_RSS0[$peer]=$(rss_kib "${PID[$peer]}")
    icout="$WORK/tlsconn-$peer.out"
    : >"$icout"
    "${PRIO[@]}" taskset -c $CLIENT_CPU "$TOOLS/tlsconn" -m idle -p "$port" -n "$IDLE_CONNS" -t 120 -H 300 \
        >"$icout" 2>>"$OUT/logs/tlsconn.log" &
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
        log "$peer: RSS ${CONN_RSS0[$peer]} KiB idle, ${CONN_RSS1[$peer]} KiB with $IDLE_CONNS TLS connections: $(printf '%.0f' "${PER_CONN[$peer]}") B each (held ${held:-?}, closed by server ${closed:-?})"
        printf '{"peer":"%s","connections":%d,"rss_kib_before":%d,"rss_kib_with":%d,"bytes_per_conn":%.1f,"held":%s,"closed_by_server":%s}\n' \
            "$peer" "$IDLE_CONNS" "${CONN_RSS0[$peer]}" "${CONN_RSS1[$peer]}" "${PER_CONN[$peer]}" \
            "${held:-null}" "${closed:-null}" >>"$MEM_JSONL"
    else
        stop_pid "$icpid"
        CONN_NOTE[$peer]="tlsconn failed: $(tail -n1 "$OUT/logs/tlsconn.log")"
        log "$peer: ${CONN_NOTE[$peer]}"
    fi
    stop_server "$peer"
done

# ---------------------------------------------------------------- report --------------------
has_crest=0
[[ " $PEERS " == *" crest "* ]] && has_crest=1
# The ratio column compares with crest, or with nginx (then the first peer) when crest is not measured.
REF=crest
((has_crest)) || REF=$( [[ " $PEERS " == *" nginx "* ]] && echo nginx || echo "${peers_arr[0]}")
na_row() { # COLUMNS: crest's row when this build has no TLS
    local i row="| crest | $CREST_NA |"
    for ((i = 2; i < $1; i++)); do row+=" |"; done
    echo "$row"
}

REPORT="$OUT/report.md"
{
    echo "# crest TLS benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    echo "Command: \`$CMDLINE\` (repo commit $commit$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ", with uncommitted changes")) on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)."
    echo "Servers pinned to CPU $SERVER_CPU, one core each; the load on CPU $CLIENT_CPU: \`wrk -t1 -c$CONNS\` ($WRK_VERSION), \`h2load -t1 -c$H2_CONNS -m$H2_STREAMS\` ($H2LOAD_VERSION), \`tools/tlsconn\` (linked with $OPENSSL_VERSION)."
    echo "One $KEY_DESC self-signed certificate for every peer; TLSv1.2 and TLSv1.3, each peer's default ciphers and session tickets. Negotiated in the handshake test: ${HS_TLS:-n/a}."
    echo "$REPEATS interleaved repeats of ${DURATION}s each, each after a ${WARMUP}s warm-up; median (min–max). Open files limit $NOFILE; niceness $NICE."
    echo "CPU = server (utime+stime) over the run from /proc/PID/stat, all its processes, / requests (or handshakes) the load tool counted. ×$REF = peer's median / $REF's median. Server core use = that CPU time / the run's duration: near 100% the server is the limit, well below it the client is (one load core: wrk, h2load and tlsconn spend CPU on TLS too). Other load on CPU $SERVER_CPU = the core's busy time (/proc/stat) not spent by the server: other tenants of the machine; a run with more than $NOISY_PCT% was run once more and the quieter one counts (samples.json has both)."
    echo
    echo "| peer | version | settings |"
    echo "| --- | --- | --- |"
    for peer in $ALL_PEERS; do
        [[ " $REPORT_PEERS " == *" $peer "* ]] && echo "| $peer | ${VERSION[$peer]} | ${SETTINGS[$peer]} |"
    done
    [[ -n $CREST_NOTE ]] && { echo; echo "**$CREST_NOTE**"; }
    for wl in $WORKLOADS; do
        echo
        echo "## ${WL_TITLE[$wl]}"
        echo
        case $wl in
        https1)
            echo "| peer | req/s | ×$REF | CPU µs/req | ×$REF | p99 ms (wrk) | errors | server core use | other load on CPU $SERVER_CPU |"
            echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            cols=9 ;;
        h2)
            echo "| peer | req/s | ×$REF | CPU µs/req | ×$REF | errors | server core use | other load on CPU $SERVER_CPU |"
            echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            cols=8 ;;
        handshake)
            echo "| peer | handshakes/s | ×$REF | CPU µs/handshake | ×$REF | errors | server core use | client (tlsconn) CPU | other load on CPU $SERVER_CPU |"
            echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            cols=9 ;;
        esac
        for peer in $REPORT_PEERS; do
            if [[ $peer == crest && -n $CREST_NA ]]; then na_row $cols; continue; fi
            rps_m=$(med "${RPS[$wl,$peer]:-}")
            cpu_m=$(med "${CPU[$wl,$peer]:-}")
            r_rps=$(med "${RPS[$wl,$REF]:-}")
            r_cpu=$(med "${CPU[$wl,$REF]:-}")
            row="| $peer | $(range "${RPS[$wl,$peer]:-}" 1 "%.0f") | $(ratio "$rps_m" "$r_rps") | $(range "${CPU[$wl,$peer]:-}" 1 "%.2f") | $(ratio "$cpu_m" "$r_cpu") |"
            [[ $wl == https1 ]] && row+=" $(range "${P99[$wl,$peer]:-}" 0.001 "%.2f") |"
            row+=" ${ERRS[$wl,$peer]:-n/a}${ERRKINDS[$wl,$peer]:+ (${ERRKINDS[$wl,$peer]})} | $(range "${BUSY[$wl,$peer]:-}" 1 "%.0f")% |"
            [[ $wl == handshake ]] && row+=" $(range "${CLIENT[$wl,$peer]:-}" 1 "%.0f")% |"
            row+=" $(range "${OTHER[$wl,$peer]:-}" 1 "%.0f")% |"
            echo "$row"
        done
    done
    echo
    echo "## Memory per idle TLS connection"
    echo
    echo "| peer | idle RSS | RSS before → with $IDLE_CONNS idle TLS keep-alive conns | per idle conn | ×$REF |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for peer in $REPORT_PEERS; do
        if [[ $peer == crest && -n $CREST_NA ]]; then na_row 5; continue; fi
        idle=${IDLE_RSS[$peer]:-}
        idles="n/a"; [[ -n $idle ]] && idles="$(calc "sprintf(\"%.2f MiB\", $idle / 1024)")"
        conns="n/a"; per="n/a"
        if [[ -n ${PER_CONN[$peer]:-} ]]; then
            conns="$(calc "sprintf(\"%.1f → %.1f MiB\", ${CONN_RSS0[$peer]} / 1024, ${CONN_RSS1[$peer]} / 1024)")"
            per="$(calc "sprintf(\"%.2f KiB\", ${PER_CONN[$peer]} / 1024)")"
        fi
        [[ -n ${CONN_NOTE[$peer]:-} ]] && per="$per (${CONN_NOTE[$peer]})"
        echo "| $peer | $idles | $conns | $per | $(ratio "${PER_CONN[$peer]:-}" "${PER_CONN[$REF]:-}") |"
    done
    echo
    echo "RSS is VmRSS summed over the server's processes (nginx: master + worker; h2o: its process and the key-isolating neverbleed child it forks); kernel socket buffers are not in it. Idle connections: each made a full handshake (ALPN http/1.1) and one GET /plaintext, spread over source addresses 127.0.0.1–.8, on a fresh server warmed with 256 such connections; servers keep idle connections ${KEEPALIVE_S}s. Node's are on its \`https\` server."
    echo
    echo "## Targets"
    echo
    echo "| target | measured | result |"
    echo "| --- | --- | --- |"
    # goal TEXT WORKLOAD|mem METRIC(rps|cpu|mem) OTHER OP LIMIT UNIT FORMAT: one target row
    goal() {
        local text=$1 wl=$2 metric=$3 other=$4 op=$5 lim=$6 unit=$7 fmt=$8 c o r m
        [[ " $PEERS " == *" $other "* ]] || { echo "| $text | $other not measured | n/a |"; return; }
        case $metric in
        rps) o=$(med "${RPS[$wl,$other]:-}") c=$(med "${RPS[$wl,crest]:-}") ;;
        cpu) o=$(med "${CPU[$wl,$other]:-}") c=$(med "${CPU[$wl,crest]:-}") ;;
        mem) o=${PER_CONN[$other]:-nan} c=${PER_CONN[crest]:-nan} ;;
        esac
        if ((!has_crest)); then
            m="crest ${CREST_NA:-not measured}"
            [[ $o != nan ]] && m+="; $other $(calc "sprintf(\"$fmt\", $o)") $unit"
            target "$text" "$m" nan "$op" "$lim"
            return
        fi
        r=$(quot "$c" "$o")
        m=n/a
        [[ $r != nan ]] && m=$(calc "sprintf(\"$fmt vs $fmt $unit = %.2f×\", $c, $o, $r)")
        target "$text" "$m" "$r" "$op" "$lim"
    }
    goal "crest HTTP/2 req/s ≥ h2o's" h2 rps h2o ">=" 1 "req/s" "%.0f"
    goal "crest HTTP/2 req/s ≥ 3× Node.js http2's" h2 rps node ">=" 3 "req/s" "%.0f"
    goal "crest HTTPS/1.1 CPU/req ≤ nginx's" https1 cpu nginx "<=" 1 "µs" "%.2f"
    goal "crest handshakes/s ≥ nginx's" handshake rps nginx ">=" 1 "handshakes/s" "%.0f"
    goal "crest memory per idle TLS connection ≤ nginx's" mem mem nginx "<=" 1 "B" "%.0f"
} >"$REPORT"

# Raw samples, as JSON.
{
    printf '{"date":"%s","repeats":%d,"duration_s":%d,"warmup_s":%d,"wrk_connections":%d,"h2_connections":%d,"h2_streams":%d,"handshake_concurrency":%d,' \
        "$(date -Iseconds)" "$REPEATS" "$DURATION" "$WARMUP" "$CONNS" "$H2_CONNS" "$H2_STREAMS" "$HS_CONC"
    printf '"certificate":%s,"handshake_tls":%s,"clk_tck":%d,"kernel":%s,"wrk":%s,"h2load":%s,"openssl":%s,"peers":{' \
        "$(json_str "$KEY_DESC")" "$(json_str "$HS_TLS")" "$CLK_TCK" "$(json_str "$(uname -r)")" \
        "$(json_str "$WRK_VERSION")" "$(json_str "$H2LOAD_VERSION")" "$(json_str "$OPENSSL_VERSION")"
    first=1
    for peer in $PEERS; do
        ((first)) || printf ','
        first=0
        printf '%s:{"version":%s,"settings":%s,"idle_rss_kib":%s}' "$(json_str "$peer")" \
            "$(json_str "${VERSION[$peer]}")" "$(json_str "${SETTINGS[$peer]}")" "${IDLE_RSS[$peer]:-null}"
    done
    printf '},"note":%s,' "$(json_str "$CREST_NOTE")"
    printf '"runs":[%s],"attempts":[%s],"idle_connections":[%s]}\n' \
        "$(join_lines "$RUNS_JSONL")" "$(join_lines "$WORK/attempts.jsonl")" "$(join_lines "$MEM_JSONL")"
} >"$OUT/samples.json"

# Chart: medians with min–max bars; request throughput and CPU per request (HTTPS/1.1, h2),
# handshakes/s and CPU per handshake.
if command -v gnuplot >/dev/null; then
    dat="$OUT/chart.dat"
    {
        printf '# workload'
        for peer in $PEERS; do printf ' %s_rate lo hi %s_cpu lo hi' "$peer" "$peer"; done
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
    plot_rps="" plot_cpu="" plot_hs="" plot_hscpu="" col=2
    for peer in $PEERS; do
        plot_rps+="${plot_rps:+, }'$dat' every ::0::1 using (\$$col/1000):(\$$((col + 1))/1000):(\$$((col + 2))/1000):xtic(1) title '$peer'"
        plot_cpu+="${plot_cpu:+, }'$dat' every ::0::1 using $((col + 3)):$((col + 4)):$((col + 5)):xtic(1) title '$peer'"
        plot_hs+="${plot_hs:+, }'$dat' every ::2::2 using $col:$((col + 1)):$((col + 2)):xtic(1) title '$peer'"
        plot_hscpu+="${plot_hscpu:+, }'$dat' every ::2::2 using $((col + 3)):$((col + 4)):$((col + 5)):xtic(1) title '$peer'"
        col=$((col + 6))
    done
    if gnuplot >"$OUT/logs/gnuplot.log" 2>&1 <<EOF; then
set terminal pngcairo size 1400,900 noenhanced font ',10'
set output '$OUT/chart.png'
set multiplot layout 2,2 title 'TLS: crest vs peers, one core each (median, min–max bars), $KEY_DESC, $(date +%F)'
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set key top left
set yrange [0:*]
set grid ytics
set title 'requests (k req/s, higher is better)'
plot $plot_rps
set title 'server CPU per request (µs, lower is better)'
plot $plot_cpu
set title 'full handshakes per second (higher is better)'
plot $plot_hs
set title 'server CPU per handshake (µs, lower is better)'
plot $plot_hscpu
unset multiplot
EOF
        log "chart: $OUT/chart.png"
    else
        log "gnuplot failed (see logs/gnuplot.log); no chart"
    fi
fi

cat "$REPORT"
log "report, samples.json and logs in $OUT"
