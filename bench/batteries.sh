#!/usr/bin/env bash
# bench/batteries.sh: what the "Batteries for application authors" work costs a request. The
# issue asks for /plaintext and a validated POST on the REST example, CPU per request before and
# after the work, at most 5% apart. Side by side in one invocation, per core (shared BENCH.md):
#   before  crest demo built from BASE_REV (b25a616, the commit before the issue's work), in a
#           git worktree under the scratch folder (make -j2 build/crest), removed afterwards;
#   after   crest demo of this tree (the script runs make -j2 all first);
#   rest    build/examples/rest when make all built it (the REST example: same POST
#           /api/todos contract), started with --port N --db sqlite:PATH and whichever of
#           --host 127.0.0.1, --threads 1 and --quiet its --help names (and env PORT and
#           DATABASE_URL); "-" in every row where it is missing or does not start.
# Before measuring, each binary is checked once: /plaintext answers "Hello, World!", the POST
# 201 with the todo; a mistyped field must get 422 and malformed JSON 400 (else a note).
#
# Measures, for each binary pinned to CPU 0 with wrk (1 thread, CONNS connections) on CPU 1:
#   - GET /plaintext, not pipelined (report.lua) and pipelined DEPTH deep (pipeline.lua);
#   - POST /api/todos {"title":"buy milk","done":false} (application/json; post.lua): the
#     handler validates the JSON (before: the demo by hand with cJSON; after: however the demo
#     and the example do it then) and inserts a row into SQLite;
#   server CPU time per request (utime+stime of the process from /proc/PID/stat over the run,
#   over the requests wrk counted), req/s, wrk's errors and the other load on CPU 0, REPEATS
#   interleaved repeats (rotating order), each counted run after a WARMUP. Every run starts its
#   server afresh on a new SQLite file (each POST adds a row), in DB_DIR.
#   - With CALLGRIND=1: instructions per request under valgrind --tool=callgrind, for
#     CG_WORKLOADS, as a slope: the server's total instructions when it served the two request
#     counts of CG_COUNTS (one keep-alive connection, one request at a time, tools/keepalive.py),
#     their difference over the difference of the counts. Start-up and shutdown cancel out; it
#     hardly varies between runs, so a sharper before/after check than wrk's CPU time on a
#     shared machine (user space only: the kernel's share of a request is not in it).
# Prints markdown tables and the targets (after ≤ 1.05× before, per workload; PASS/MISS, never
# failing the run) and writes them, the raw samples (samples.json) and logs/ to
# bench/results/DATE-TIME-batteries/ (git-ignored). Every process it starts is ended, by PID.
#
# Usage: bench/batteries.sh
#        REPEATS=1 DURATION=3 bench/batteries.sh          # a quick check that it works
# Env: BASE_REV (b25a616), BASE_BIN (a crest binary to use as "before" instead of building
#      BASE_REV), REPEATS (3), DURATION seconds per counted run (10), WARMUP seconds before each
#      (2), CONNS (64), DEPTH (16), BASE_PORT (18180: before, +1 after, +2 rest), REST (auto; 0
#      leaves the example out), DB_DIR (shm: a folder under /dev/shm, so that a commit's fsync
#      costs what the server's CPU does rather than what the disk does; or a folder path),
#      CALLGRIND (1; 0 skips it), CG_COUNTS ("2000 12000"), CG_WORKLOADS ("plaintext post"),
#      NICE (0: niceness of the servers, wrk and the client).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BASE_REV=${BASE_REV:-b25a616}
BASE_BIN=${BASE_BIN:-}
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
BASE_PORT=${BASE_PORT:-18180}
REST=${REST:-auto}
DB_DIR=${DB_DIR:-shm}
CALLGRIND=${CALLGRIND:-1}
CG_COUNTS=${CG_COUNTS:-2000 12000}
CG_WORKLOADS=${CG_WORKLOADS:-plaintext post}
NICE=${NICE:-0}
SERVER_CPU=0
CLIENT_CPU=1
PY=/usr/bin/python3
POST_BODY='{"title":"buy milk","done":false}'

# Shared helpers: cleanup of what this script starts, /proc readings, medians, report rows.
source "$BENCH/lib.sh"

# Besides lib.sh's cleanup: the base worktree (git keeps a record of it) and the databases.
BASE_TREE=""
DBS=""
cleanup_batteries() {
    if [[ -n $BASE_TREE && -d $BASE_TREE ]]; then
        git -C "$REPO" worktree remove --force "$BASE_TREE" >/dev/null 2>&1 || true
    fi
    BASE_TREE=""
    [[ -n $DBS && -d $DBS ]] && rm -rf "$DBS"
    return 0
}
trap 'rc=$?; cleanup_batteries; (exit $rc); cleanup' EXIT

read -r CG_N1 CG_N2 <<<"$CG_COUNTS"
[[ $CG_N1 =~ ^[0-9]+$ && $CG_N2 =~ ^[0-9]+$ ]] && ((CG_N2 > CG_N1)) ||
    die "CG_COUNTS must be two request counts, the smaller first (got '$CG_COUNTS')"

# ---------------------------------------------------------------- setup ---------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" build
apt_install wrk python3 git
CG_NOTE=""
if [[ $CALLGRIND == 1 ]] && ! apt_install valgrind; then
    CALLGRIND=0
    CG_NOTE="valgrind could not be installed; no instruction counts"
fi

PRIO=()
[[ $NICE == 0 ]] || PRIO=(nice -n "$NICE")
CMDLINE=$(command_line bench/batteries.sh BASE_REV:b25a616 BASE_BIN: WARMUP:2 CONNS:64 DEPTH:16 \
    BASE_PORT:18180 REST:auto DB_DIR:shm CALLGRIND:1 "CG_COUNTS:2000 12000" \
    "CG_WORKLOADS:plaintext post" NICE:0)
OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)-batteries"
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
chmod 755 "$WORK"
TOOLS="$WORK/bin"
mkdir -p "$TOOLS"
gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$TOOLS/coldstart" "$BENCH/tools/coldstart.c"
if [[ $DB_DIR == shm ]]; then
    DBS=$(mktemp -d /dev/shm/crest-batteries.XXXXXX)
else
    DBS="$DB_DIR/crest-batteries.$$"
    mkdir -p "$DBS"
fi

# after: this tree, built as it is (uncommitted changes included; the report says so).
log "building this tree (make -j2 all)"
make -C "$REPO" -j2 all >"$OUT/logs/build-after.log" 2>&1 ||
    die "make -j2 all failed in $REPO (see $OUT/logs/build-after.log)"
# Measure one binary throughout, even if build/ is rebuilt while this runs.
mkdir -p "$WORK/after" "$WORK/before"
cp "$REPO/build/crest" "$WORK/after/crest"

# before: BASE_REV, built in a worktree of its own (or BASE_BIN).
if [[ -n $BASE_BIN ]]; then
    [[ -x $BASE_BIN ]] || die "BASE_BIN=$BASE_BIN is not an executable"
    cp "$BASE_BIN" "$WORK/before/crest"
    BASE_DESC="BASE_BIN $BASE_BIN"
else
    git -C "$REPO" rev-parse --verify -q "$BASE_REV^{commit}" >/dev/null || die "no commit $BASE_REV"
    BASE_TREE="$WORK/base-tree"
    log "building $BASE_REV in a worktree (make -j2 build/crest)"
    git -C "$REPO" worktree add --detach "$BASE_TREE" "$BASE_REV" >"$OUT/logs/build-before.log" 2>&1 ||
        die "git worktree add failed (see $OUT/logs/build-before.log)"
    make -C "$BASE_TREE" -j2 build/crest >>"$OUT/logs/build-before.log" 2>&1 ||
        die "make build/crest failed for $BASE_REV (see $OUT/logs/build-before.log)"
    cp "$BASE_TREE/build/crest" "$WORK/before/crest"
    git -C "$REPO" worktree remove --force "$BASE_TREE"
    BASE_TREE=""
    BASE_DESC=$(git -C "$REPO" log -1 --format='%h %s' "$BASE_REV")
    ((${#BASE_DESC} <= 72)) || BASE_DESC="${BASE_DESC:0:71}…"
fi

PEERS="before after"
REST_NOTE=""
if [[ $REST == 0 ]]; then
    REST_NOTE="rest: left out (REST=0)"
elif [[ -x $REPO/build/examples/rest ]]; then
    mkdir -p "$WORK/rest"
    cp "$REPO/build/examples/rest" "$WORK/rest/rest"
    PEERS+=" rest"
else
    REST_NOTE="rest: build/examples/rest does not exist (examples/rest.c not in this tree yet)"
fi

declare -A PORT=([before]=$BASE_PORT [after]=$((BASE_PORT + 1)) [rest]=$((BASE_PORT + 2)))
declare -A BIN=([before]="$WORK/before/crest" [after]="$WORK/after/crest" [rest]="$WORK/rest/rest")
declare -A PID=() VERSION=() SETTINGS=()

bin_desc() { # PEER -> its --version (crest's CLI only) and checksum
    local v=""
    [[ $1 == rest ]] ||
        v=$(cd "$WORK" && timeout 2 "${BIN[$1]}" --version </dev/null 2>/dev/null | head -n1 || true)
    echo "${v:+$v, }sha256 $(sha256sum "${BIN[$1]}" | cut -c1-12)"
}
commit=$(git -C "$REPO" rev-parse --short HEAD)
dirty=""
git -C "$REPO" status --porcelain --untracked-files=no | grep -q . && dirty=", with uncommitted changes"
VERSION[before]="$BASE_DESC; $(bin_desc before)"
VERSION[after]="this tree, HEAD $commit$dirty; $(bin_desc after)"
SETTINGS[before]="demo --threads 1 --quiet --db sqlite:FRESH.db"
SETTINGS[after]=${SETTINGS[before]}

# The REST example's command line: the flags its --help names, else the assumed ones. Its
# --help runs in the scratch folder with a time limit, in case it starts a server instead.
REST_ARGS=()
if [[ " $PEERS " == *" rest "* ]]; then
    VERSION[rest]="examples/rest.c of this tree; $(bin_desc rest)"
    help=$(cd "$WORK" && timeout 3 "${BIN[rest]}" --help </dev/null 2>&1 || true)
    printf '%s\n' "$help" >"$OUT/logs/rest-help.txt"
    [[ $help == *--host* ]] && REST_ARGS+=(--host 127.0.0.1)
    REST_ARGS+=(--port @PORT@ --db sqlite:@DB@)
    [[ $help == *--threads* ]] && REST_ARGS+=(--threads 1)
    [[ $help == *--quiet* ]] && REST_ARGS+=(--quiet)
    SETTINGS[rest]="rest ${REST_ARGS[*]} (flags from its --help; also env PORT, DATABASE_URL)"
    SETTINGS[rest]=${SETTINGS[rest]//@PORT@/PORT}
    SETTINGS[rest]=${SETTINGS[rest]//@DB@/FRESH.db}
fi
WRK_VERSION="wrk $(deb_version wrk)"
VG_VERSION="valgrind $(deb_version valgrind)"
SQLITE_VERSION="SQLite (libsqlite3-0 $(deb_version libsqlite3-0)), cJSON (libcjson1 $(deb_version libcjson1))"

# ---------------------------------------------------------------- servers -------------------
DB=""
DB_NO=0
CG_PREFIX=()

fresh_db() { DB_NO=$((DB_NO + 1)); DB="$DBS/run-$DB_NO.db"; rm -f "$DB" "$DB-wal" "$DB-shm"; }
drop_db() { rm -f "$DB" "$DB-wal" "$DB-shm"; }

server_cmd() { # PEER -> sets CMD, the command line that runs it in the foreground on DB
    local peer=$1 port=${PORT[$1]}
    case $peer in
    before | after)
        CMD=("${CG_PREFIX[@]}" "${BIN[$peer]}" demo --host 127.0.0.1 --port "$port" --threads 1
            --quiet --db "sqlite:$DB")
        ;;
    rest)
        local -a args=("${REST_ARGS[@]//@PORT@/$port}")
        args=("${args[@]//@DB@/$DB}")
        CMD=(env "PORT=$port" "DATABASE_URL=sqlite:$DB" "${CG_PREFIX[@]}" "${BIN[rest]}" "${args[@]}")
        ;;
    *) die "unknown peer $peer" ;;
    esac
}

client() { # PORT N WORKLOAD [ARG...]: tools/keepalive.py on the client's core
    local port=$1 n=$2 wl=$3
    shift 3
    local -a req=(--path /plaintext --expect 200)
    [[ $wl == post ]] && req=(--method POST --path /api/todos --body "$POST_BODY" --expect 201)
    "${PRIO[@]}" taskset -c $CLIENT_CPU "$PY" "$BENCH/tools/keepalive.py" "$port" "$n" "${req[@]}" "$@"
}

# Which workloads each binary serves as agreed, on a server of its own: /plaintext answers
# "Hello, World!", the POST 201 with the todo: SERVES[plaintext|post,PEER]=1. Whether the POST
# is validated (a mistyped field -> 422, malformed JSON -> 400) is checked too; a binary that
# does not is still measured, with a note in the report.
declare -A SERVES=()
START_FAIL=""
CHECK_NOTE=""
check_peer() {
    local peer=$1 port=${PORT[$1]} out
    fresh_db
    if ! start_server "$peer"; then
        START_FAIL+="${START_FAIL:+; }$peer did not start: $(tail -n1 "$OUT/logs/$peer.log" 2>/dev/null)"
        drop_db
        return 0
    fi
    if out=$(client "$port" 1 plaintext --contains "Hello, World!" 2>&1); then
        SERVES[plaintext,$peer]=1
    else
        log "$peer: GET /plaintext not as agreed: $out"
    fi
    if out=$(client "$port" 1 post --contains '"title":"buy milk"' 2>&1); then
        SERVES[post,$peer]=1
        if ! out=$("$PY" "$BENCH/tools/keepalive.py" "$port" 1 --method POST --path /api/todos \
            --body '{"title":1,"done":false}' --expect 422 2>&1) ||
            ! out=$("$PY" "$BENCH/tools/keepalive.py" "$port" 1 --method POST --path /api/todos \
                --body '{"title":' --expect 400 2>&1); then
            log "$peer: POST /api/todos does not validate as agreed: $out"
            CHECK_NOTE+="${CHECK_NOTE:+; }$peer does not validate as agreed: ${out//|/\\|}"
        fi
    else
        log "$peer: POST /api/todos not as agreed: $out"
    fi
    stop_server "$peer"
    drop_db
    log "$peer serves:${SERVES[plaintext,$peer]:+ /plaintext}${SERVES[post,$peer]:+ POST /api/todos (validated)}"
}

log "peers: $PEERS; results in $OUT"
for peer in $PEERS; do check_peer "$peer"; done
for peer in before after; do
    [[ -n ${SERVES[plaintext,$peer]:-} && -n ${SERVES[post,$peer]:-} ]] ||
        die "$peer does not serve both workloads; nothing to compare (see $OUT/logs/$peer.log)"
done

# ---------------------------------------------------------------- throughput ----------------
WORKLOADS="plaintext plaintext-pipelined post"
declare -A WL_KIND=([plaintext]=plaintext [plaintext-pipelined]=plaintext [post]=post)
declare -A WL_SHORT=([plaintext]="GET /plaintext" [plaintext-pipelined]="GET /plaintext pipelined"
    [post]="POST /api/todos")
declare -A WL_TITLE=(
    [plaintext]="GET /plaintext, $CONNS connections, not pipelined"
    [plaintext-pipelined]="GET /plaintext, $CONNS connections, pipelined $DEPTH deep"
    [post]="POST /api/todos (validated JSON, one SQLite insert), $CONNS connections")
declare -A RPS=() CPU=() ERRS=() ERRKINDS=() OTHER=()
RUNS_JSONL="$WORK/runs.jsonl"
: >"$RUNS_JSONL"

run_wrk() { # WORKLOAD PEER SECONDS -> wrk's WRKJSON line
    local wl=$1 peer=$2 secs=$3 base="http://127.0.0.1:${PORT[$2]}"
    local -a args
    case $wl in
    plaintext) args=(-s "$BENCH/report.lua" "$base/plaintext") ;;
    plaintext-pipelined) args=(-s "$BENCH/pipeline.lua" "$base/plaintext" -- "$DEPTH") ;;
    post) args=(-s "$BENCH/post.lua" "$base/api/todos") ;;
    esac
    "${PRIO[@]}" taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s "${args[@]}" \
        2>&1 | tee -a "$OUT/logs/wrk.log" | sed -n 's/^WRKJSON //p'
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
    M_ERRS=$(wrk_errors "$M_RES")
    ((M_REQS > 0)) || { log "$peer $wl served no requests"; return 1; }
    M_RPS=$(calc "$M_REQS / ($M_DUR / 1e6)")
    M_CPU=$(calc "($t1 - $t0) * 1e6 / $CLK_TCK / $M_REQS")
    # CPU time on the server's core not spent by the server: other tenants of the machine.
    M_OTHER=$(calc "(($b1 - $b0) - ($t1 - $t0)) * 1e8 / $CLK_TCK / $M_DUR")
    M_OTHER=$(calc "$M_OTHER < 0 ? 0 : $M_OTHER")
    M_JSON=$(printf '"requests":%s,"duration_us":%s,"req_per_s":%.1f,"cpu_ticks":%d,"clk_tck":%d,"cpu_us_per_req":%.4f,"server_core_busy_ticks":%d,"server_core_other_pct":%.1f,"errors":%d,"wrk":%s' \
        "$M_REQS" "$M_DUR" "$M_RPS" $((t1 - t0)) "$CLK_TCK" "$M_CPU" $((b1 - b0)) "$M_OTHER" \
        "$M_ERRS" "$M_RES")
    return 0
}

read -ra peers_arr <<<"$PEERS"
n=${#peers_arr[@]}
runs_total=$((REPEATS * 3 * n))
run_no=0
for ((rep = 1; rep <= REPEATS; rep++)); do
    # Rotate the order each repeat so that no binary always runs first or last.
    order=()
    for ((i = 0; i < n; i++)); do order+=("${peers_arr[(i + rep - 1) % n]}"); done
    for wl in $WORKLOADS; do
        for peer in "${order[@]}"; do
            run_no=$((run_no + 1))
            [[ -n ${SERVES[${WL_KIND[$wl]},$peer]:-} ]] || continue
            fresh_db
            if ! start_server "$peer"; then
                log "[$run_no/$runs_total] $peer did not start for $wl; run skipped"
                drop_db
                continue
            fi
            if measure "$wl" "$peer"; then
                RPS[$wl,$peer]+="$M_RPS "
                CPU[$wl,$peer]+="$M_CPU "
                OTHER[$wl,$peer]+="$M_OTHER "
                ERRS[$wl,$peer]=$((${ERRS[$wl,$peer]:-0} + M_ERRS))
                for kind in $(wrk_error_kinds "$M_RES" | tr -d ','); do
                    [[ ${ERRKINDS[$wl,$peer]:-} == *$kind* ]] ||
                        ERRKINDS[$wl,$peer]+="${ERRKINDS[$wl,$peer]:+, }$kind"
                done
                printf '{"workload":"%s","peer":"%s","repeat":%d,%s}\n' "$wl" "$peer" "$rep" \
                    "$M_JSON" >>"$RUNS_JSONL"
                log "[$run_no/$runs_total] repeat $rep $wl $peer: $(printf '%.0f' "$M_RPS") req/s, $(printf '%.3f' "$M_CPU") µs CPU/req, errors $M_ERRS, other load on CPU $SERVER_CPU $(printf '%.0f' "$M_OTHER")%"
            fi
            stop_server "$peer"
            drop_db
        done
    done
done

# ---------------------------------------------------------------- callgrind -----------------
declare -A IR=()
CG_JSONL="$WORK/callgrind.jsonl"
: >"$CG_JSONL"

cg_total() { # PEER WORKLOAD N -> CG_IR, the instructions the server executed serving N
    # requests, or "" (not in a subshell: the server it starts must be in STARTED)
    local peer=$1 wl=$2 cnt=$3 file="$WORK/cg-$1-$2-$3.out" pid i out
    CG_IR=""
    rm -f "$file"
    CG_PREFIX=(valgrind --tool=callgrind --callgrind-out-file="$file")
    fresh_db
    if ! start_server "$peer"; then
        CG_PREFIX=()
        drop_db
        return 0
    fi
    CG_PREFIX=()
    pid=${PID[$peer]}
    if ! out=$(client "${PORT[$peer]}" "$cnt" "${WL_KIND[$wl]}" --timeout 120 2>&1); then
        log "callgrind $peer $wl $cnt: $out"
        stop_server "$peer"
        drop_db
        return 0
    fi
    # A graceful stop, so that callgrind writes its totals: lib.sh's stop_pid would SIGKILL a
    # server still shutting down under valgrind after 5 s, losing them.
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_server "$peer"
    drop_db
    CG_IR=$(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$file" 2>/dev/null | head -n1)
    [[ -n $CG_IR ]] || log "callgrind $peer $wl $cnt: no totals in $file"
}

if [[ $CALLGRIND == 1 ]]; then
    for wl in $CG_WORKLOADS; do
        [[ $wl == plaintext || $wl == post ]] || die "CG_WORKLOADS: plaintext and/or post, not $wl"
        for peer in $PEERS; do
            [[ -n ${SERVES[$wl,$peer]:-} ]] || continue
            log "callgrind: $peer $wl, $CG_N1 and $CG_N2 requests"
            cg_total "$peer" "$wl" "$CG_N1"
            i1=$CG_IR
            cg_total "$peer" "$wl" "$CG_N2"
            i2=$CG_IR
            if [[ -z $i1 || -z $i2 ]]; then
                log "callgrind: $peer $wl gave no totals (see $OUT/logs/$peer.log)"
                continue
            fi
            IR[$wl,$peer]=$(calc "($i2 - $i1) / ($CG_N2 - $CG_N1)")
            printf '{"workload":"%s","peer":"%s","requests":[%d,%d],"instructions":[%s,%s],"instructions_per_req":%.1f}\n' \
                "$wl" "$peer" "$CG_N1" "$CG_N2" "$i1" "$i2" "${IR[$wl,$peer]}" >>"$CG_JSONL"
            log "callgrind: $peer $wl: $(printf '%.0f' "${IR[$wl,$peer]}") instructions per request"
        done
    done
fi

# ---------------------------------------------------------------- report --------------------
REPORT="$OUT/report.md"
cell() { # VALUES SCALE FORMAT PEER: range, or "-" when the binary was not measured
    if [[ -z $1 ]]; then echo "-"; else range "$1" "$2" "$3"; fi
}
{
    echo "# crest batteries: CPU per request before and after, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "Command: \`$CMDLINE\` on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r)."
    echo "Servers pinned to CPU $SERVER_CPU, one loop thread; \`taskset -c $CLIENT_CPU wrk -t1 -c$CONNS\` ($WRK_VERSION) on CPU $CLIENT_CPU."
    echo "Interleaved repeats: $REPEATS, of ${DURATION}s each (rotating order), each after a ${WARMUP}s warm-up, every run on a freshly started server with a new SQLite file ($([[ $DB_DIR == shm ]] && echo "tmpfs, /dev/shm" || echo "$DB_DIR"); crest's default synchronous=FULL); median (min–max)."
    echo "CPU/req = server utime+stime over the run from /proc/PID/stat (all threads) / requests wrk counted. ×before = median / before's median."
    echo "Other load on CPU $SERVER_CPU = the core's busy time (/proc/stat) the server did not spend: other tenants of this shared machine."
    echo "Not pipelined, a request's CPU depends on how many requests each wake-up finds (the client's pace, other tenants), so that figure moves most between runs; the instruction counts below do not."
    echo
    echo "| build | version | settings |"
    echo "| --- | --- | --- |"
    for peer in before after rest; do
        if [[ " $PEERS " == *" $peer "* ]]; then
            echo "| $peer | ${VERSION[$peer]} | ${SETTINGS[$peer]} |"
        else
            echo "| $peer | - | - |"
        fi
    done
    echo
    echo "Also: $SQLITE_VERSION; $VG_VERSION; Python $("$PY" -c 'import platform; print(platform.python_version())')."
    [[ -n $REST_NOTE ]] && { echo; echo "Note: $REST_NOTE."; }
    [[ -n $START_FAIL ]] && { echo; echo "Note: $START_FAIL."; }
    [[ -n $CHECK_NOTE ]] && { echo; echo "Note: $CHECK_NOTE."; }
    [[ -n $CG_NOTE ]] && { echo; echo "Note: $CG_NOTE."; }
    for wl in $WORKLOADS; do
        echo
        echo "## ${WL_TITLE[$wl]}"
        echo
        echo "| build | CPU µs/req | ×before | req/s | ×before | errors | other load on CPU $SERVER_CPU |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        b_cpu=$(med "${CPU[$wl,before]:-}") b_rps=$(med "${RPS[$wl,before]:-}")
        for peer in before after rest; do
            if [[ -z ${CPU[$wl,$peer]:-} ]]; then
                echo "| $peer | - | - | - | - | - | - |"
                continue
            fi
            echo "| $peer | $(cell "${CPU[$wl,$peer]}" 1 "%.3f") | $(ratio "$(med "${CPU[$wl,$peer]}")" "$b_cpu") | $(cell "${RPS[$wl,$peer]}" 1 "%.0f") | $(ratio "$(med "${RPS[$wl,$peer]}")" "$b_rps") | ${ERRS[$wl,$peer]:-0}${ERRKINDS[$wl,$peer]:+ (${ERRKINDS[$wl,$peer]})} | $(cell "${OTHER[$wl,$peer]}" 1 "%.0f")% |"
        done
    done
    echo
    echo "## Instructions per request (callgrind)"
    echo
    if [[ $CALLGRIND == 1 ]]; then
        echo "valgrind --tool=callgrind on the server; one keep-alive connection, one request at a time (tools/keepalive.py); (instructions after $CG_N2 requests − after $CG_N1) / $((CG_N2 - CG_N1)). Start-up and shutdown cancel out. User-space instructions only (the server and its libraries, SQLite's included; not the kernel's)."
        echo
        echo "| workload | before | after | rest | after ×before | rest ×before |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
        for wl in $CG_WORKLOADS; do
            row="| ${WL_KIND[$wl]} |"
            for peer in before after rest; do
                if [[ -n ${IR[$wl,$peer]:-} ]]; then row+=" $(printf '%.0f' "${IR[$wl,$peer]}") |"; else row+=" - |"; fi
            done
            for peer in after rest; do
                if [[ -n ${IR[$wl,$peer]:-} ]]; then
                    row+=" $(calc "sprintf(\"%.3f×\", ${IR[$wl,$peer]} / ${IR[$wl,before]:-nan})") |"
                else
                    row+=" - |"
                fi
            done
            echo "$row"
        done
    else
        echo "Not measured (CALLGRIND=0${CG_NOTE:+: $CG_NOTE})."
    fi
    echo
    echo "## Targets: at most 5% more per request than before"
    echo
    echo "| target | measured | result |"
    echo "| --- | --- | --- |"
    for peer in after rest; do
        for wl in $WORKLOADS; do
            # The example serves the POST contract; its /plaintext rows appear only if it has one.
            [[ $peer == rest && $wl != post && -z ${CPU[$wl,rest]:-} ]] && continue
            b=$(med "${CPU[$wl,before]:-}") a=$(med "${CPU[$wl,$peer]:-}")
            r=$(quot "$a" "$b") m="-"
            [[ $r != nan ]] && m=$(calc "sprintf(\"%.3f vs %.3f µs = %.3f×\", $a, $b, $r)")
            target "$peer CPU/req ≤ 1.05× before, ${WL_SHORT[$wl]}" "$m" "$r" "<=" 1.05
        done
        if [[ $CALLGRIND == 1 ]]; then
            for wl in $CG_WORKLOADS; do
                [[ $peer == rest && -z ${IR[$wl,rest]:-} && $wl != post ]] && continue
                b=${IR[$wl,before]:-nan} a=${IR[$wl,$peer]:-nan}
                r=$(quot "$a" "$b") m="-"
                [[ $r != nan ]] && m=$(calc "sprintf(\"%.0f vs %.0f = %.3f×\", $a, $b, $r)")
                target "$peer instructions/req ≤ 1.05× before, $wl (callgrind)" "$m" "$r" "<=" 1.05
            done
        fi
    done
    echo
    echo "Raw samples: samples.json; logs: logs/ (servers, wrk, builds)."
} >"$REPORT"

{
    printf '{"date":%s,"command":%s,' "$(json_str "$(date -Is)")" "$(json_str "$CMDLINE")"
    printf '"settings":{"base_rev":%s,"repeats":%d,"duration_s":%s,"warmup_s":%s,"conns":%d,"depth":%d,"db_dir":%s,"callgrind":%s,"cg_counts":[%d,%d],"post_body":%s},' \
        "$(json_str "$BASE_REV")" "$REPEATS" "$DURATION" "$WARMUP" "$CONNS" "$DEPTH" \
        "$(json_str "$DB_DIR")" "$CALLGRIND" "$CG_N1" "$CG_N2" "$(json_str "$POST_BODY")"
    printf '"versions":{'
    sep=""
    for peer in $PEERS; do printf '%s"%s":%s' "$sep" "$peer" "$(json_str "${VERSION[$peer]}")"; sep=,; done
    printf ',"wrk":%s,"valgrind":%s,"libs":%s},' "$(json_str "$WRK_VERSION")" \
        "$(json_str "$VG_VERSION")" "$(json_str "$SQLITE_VERSION")"
    notes=""
    for s in "$REST_NOTE" "$START_FAIL" "$CHECK_NOTE" "$CG_NOTE"; do
        if [[ -n $s ]]; then notes+="${notes:+,}$(json_str "$s")"; fi
    done
    printf '"notes":[%s],' "$notes"
    printf '"runs":[%s],"callgrind":[%s]}\n' "$(join_lines "$RUNS_JSONL")" "$(join_lines "$CG_JSONL")"
} >"$OUT/samples.json"

cat "$REPORT"
log "results in $OUT"
