# bench/lib.sh: what bench/http.sh and bench/tls.sh share. Sourced (bash, set -euo pipefail)
# right after the script has set its settings; it defines functions only, plus:
#   STARTED   PIDs of every process the script starts (append to it); ended on exit, by PID
#   WORK      the scratch folder (set it; removed on exit)
#   CLK_TCK   clock ticks per second, for /proc/PID/stat
# and the EXIT, INT and TERM traps that clean up.
# start_server and stop_server use the script's own: server_cmd PEER (sets CMD), PORT[peer],
# PID[peer], TOOLS (holding coldstart), OUT, WORK, PRIO, SERVER_CPU and CLIENT_CPU.

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
    local pid=$1 i kids
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

# Copies the servers' own logs from WORK to OUT/logs on exit; a script may define its own.
save_logs() { cp "$WORK"/nginx-*/error.log "$OUT/logs/" 2>/dev/null || true; }

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    if [[ -n $WORK && -d $WORK ]]; then
        [[ -n ${OUT:-} && -d ${OUT:-} ]] && save_logs
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup ---------------------
raise_nofile() { # FD_CAP NEEDED: the open files limit (FD_CAP or the hard limit) -> NOFILE
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited || $hard -ge $1 ]]; then ulimit -n "$1"; else ulimit -n "$hard"; fi
    NOFILE=$(ulimit -n)
    ((NOFILE >= $2 + 64)) || log "warning: open files limit $NOFILE < $2 connections"
}

apt_install() { # PACKAGE...: installs those not installed yet (apt-get update first)
    local p missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=" $p"
    done
    [[ -z $missing ]] && return 0
    log "installing$missing"
    local sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get update -q >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing >&2
}

CLK_TCK=$(getconf CLK_TCK)

deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

without() { # LIST WORD -> the space-separated LIST without WORD
    echo " $1 " | sed "s/ $2 / /; s/^ *//; s/ *$//"
}

command_line() { # SCRIPT VAR:DEFAULT...: the command line that reproduces this run, with the
    # leading VAR=value of every setting in the list that differs from its default
    local script=$1 v name line="REPEATS=$REPEATS DURATION=$DURATION"
    shift
    for v in "$@"; do
        name=${v%%:*}
        [[ ${!name} == "${v#*:}" ]] || line+=" $name=\"${!name}\""
    done
    echo "$line $script"
}

# ---------------------------------------------------------------- servers -------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() { # PEER: starts it pinned to the server CPU; waits until it accepts; 1 if it fails
    local peer=$1 port=${PORT[$1]}
    port_busy "$port" && die "port $port (for $peer) is already in use; set BASE_PORT"
    server_cmd "$peer"
    # The working directory is the scratch folder, so whatever the server writes stays there.
    (cd "$WORK" && exec "${PRIO[@]}" taskset -c $SERVER_CPU "${CMD[@]}") >>"$OUT/logs/$peer.log" 2>&1 &
    PID[$peer]=$!
    STARTED+=("$!")
    # Wait for a TCP connect only: no request is sent before the idle RSS is read.
    if ! taskset -c $CLIENT_CPU "$TOOLS/coldstart" -w -C -p "$port" -t 15000 >/dev/null 2>&1 ||
        ! kill -0 "${PID[$peer]}" 2>/dev/null; then
        log "$peer did not start (see $OUT/logs/$peer.log)"
        stop_pid "${PID[$peer]}"
        return 1
    fi
    sleep 1 # settle: nginx forks its worker after it listens
}

stop_server() { stop_pid "${PID[$1]:-}"; PID[$1]=""; }

cpu_ticks() { # PID -> utime+stime in clock ticks, summed over the process and its descendants
    local total=0 p stat rest
    local -a f
    for p in $(tree_pids "$1"); do
        stat=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        rest=${stat##*) } # fields after "(comm)": state is field 3, utime 14, stime 15
        read -ra f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

core_busy() { # CPU -> its busy ticks from /proc/stat (all but idle and iowait): a cross-check
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

rss_kib() { # PID -> VmRSS in KiB, summed over the process and its descendants
    local total=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# ---------------------------------------------------------------- numbers -------------------
# Medians and ranges: numbers on stdin -> "median min max"
stats() { sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan nan nan"; exit }
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.6g %.6g %.6g\n", m, v[1], v[NR] }'; }
calc() { awk "BEGIN { printf \"%s\", $* }"; }
jnum() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }
med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | stats | cut -d' ' -f1; }
range() { # VALUES SCALE FORMAT -> "median (min-max)" scaled
    local s
    s=$(tr ' ' '\n' <<<"$1" | sed '/^$/d' | stats)
    awk -v s="$s" -v k="$2" -v f="$3" 'BEGIN { split(s, a, " ")
        if (a[1] == "nan") { print "n/a"; exit }
        printf f " (" f "–" f ")\n", a[1] * k, a[2] * k, a[3] * k }'
}
ratio() { # PEER_MEDIAN CREST_MEDIAN -> "1.23×" or n/a
    if [[ -z $1 || -z $2 || $1 == nan || $2 == nan ]]; then echo "n/a"; else calc "sprintf(\"%.2f×\", $1 / $2)"; fi
}
quot() { if [[ -z $1 || -z $2 || $1 == nan || $2 == nan ]]; then echo nan; else calc "$1 / $2"; fi; }
# target TEXT MEASURED VALUE OP LIMIT: one markdown row, PASS or MISS (n/a without a value)
target() {
    local res=n/a
    if [[ -n $3 && $3 != nan ]]; then
        if awk "BEGIN { exit !($3 $4 $5) }"; then res=PASS; else res=MISS; fi
    fi
    echo "| $1 | $2 | $res |"
}

# wrk's WRKJSON line (report.lua) -> the sum of its error counts, and the kinds that occurred
wrk_errors() { awk -v s="$1" 'BEGIN { n = 0
    while (match(s, /"(connect|read|write|status|timeout)":[0-9]+/)) {
        t = substr(s, RSTART, RLENGTH); sub(/.*:/, "", t); n += t
        s = substr(s, RSTART + RLENGTH) }
    print n }'; }
wrk_error_kinds() { # -> "read, timeout" or nothing
    local kind out=""
    for kind in connect read write status timeout; do
        [[ $1 =~ \"$kind\":[1-9] ]] && out+="${out:+, }$kind"
    done
    echo "$out"
}

# ---------------------------------------------------------------- JSON ----------------------
join_lines() { [[ -s $1 ]] && paste -sd, "$1" || true; }
json_str() { printf '"%s"' "$(sed 's/\\/\\\\/g; s/"/\\"/g' <<<"$1")"; }
