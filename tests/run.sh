#!/usr/bin/env bash
# Runs every test and ends with "N passed, N failed"; exits non-zero on any failure.
#   1. builds with gcc and clang (-Werror), checks formatting
#   2. unit tests (cmocka; parser, router, llhttp corpus)
#   3. integration tests: the real binary against real clients (tests/it), and the chat page in
#      headless Chromium (tests/e2e); most of them once more over TLS, the database ones once
#      more on a real PostgreSQL (started by the tests)
#   4. each libFuzzer target for a bounded time (FUZZ_SECONDS, default 10, one target per core at
#      a time, from their seed corpora; `make fuzz` and a longer FUZZ_SECONDS for a deeper run)
#   5. unit and integration tests again, built with AddressSanitizer + UBSan (HTTP and WebSocket
#      over TLS too)
#   6. integration tests again, built with ThreadSanitizer (loop threads, inboxes, signals)
# Every result is a TAP line ("ok ..." / "not ok ..."), counted here.
set -u
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
LOG_DIR=$(mktemp -d /tmp/crest-test.XXXXXX)
passed=0
failed=0
skipped=0
failures=()

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); failures+=("$1"); echo "not ok - $1"; }

# step NAME CMD...: one result from a command's exit status; its output goes to a log file that is
# printed when it fails.
step() {
    local name=$1 log
    shift
    log="$LOG_DIR/$(echo "$name" | tr -c 'a-zA-Z0-9_-' '_').log"
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then ok "$name"; else not_ok "$name"; tail -n 40 "$log" | sed 's/^/#   /'; fi
    echo "# ($((SECONDS - t0)) s)"
}

# suite NAME CMD...: a program that prints TAP lines itself; each line counts ("ok - X # SKIP why"
# as skipped, not passed). A suite that exits non-zero without a failing line (a crash, a sanitizer
# report) counts as one more failure.
suite() {
    local name=$1 log rc p f s
    shift
    log="$LOG_DIR/$(echo "$name" | tr -c 'a-zA-Z0-9_-' '_').log"
    local t0=$SECONDS
    timeout 600 "$@" >"$log" 2>&1
    rc=$?
    echo "# $name ($((SECONDS - t0)) s)"
    p=$(grep -cE '^ok( |$)' "$log")
    f=$(grep -cE '^not ok( |$)' "$log")
    s=$(grep -cE '^ok( .*)? # SKIP' "$log")
    grep -E '^(not )?ok( |$)' "$log" | sed "s/^/  /"
    passed=$((passed + p - s))
    skipped=$((skipped + s))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then failures+=("$name"); fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        not_ok "$name exited with status $rc"
    fi
    if [ "$rc" -ne 0 ] || [ "$f" -gt 0 ]; then tail -n 60 "$log" | sed 's/^/#   /'; fi
}

# Integration files that never start crest (the Express and FastAPI twins of the examples):
# the plain pass runs them, the sanitizer pass has nothing of crest's to check in them.
NOT_CREST_IT=(test_peers)

run_unit_and_it() {
    local build=$1 label=$2
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        suite "$label unit $(basename "$t")" env CMOCKA_MESSAGE_OUTPUT=TAP "$t"
    done
    for t in tests/it/test_*.py; do
        if [ "$build" != build ] && [[ " ${NOT_CREST_IT[*]} " == *" $(basename "$t" .py) "* ]]; then
            continue
        fi
        suite "$label it $(basename "$t" .py)" env CREST_BIN="$build/crest" \
            CREST_IT_APP="$build/tests/it_app" "$PY" "$t"
    done
}

# The integration files whose cases run over TLS as well (CREST_IT_TLS=1: tests/it/harness.py
# makes a certificate and every client speaks TLS). Not test_syscalls (it counts the cleartext
# bytes of each write with strace) nor the test_hardening* attacks (raw cleartext sockets, and
# memory and CPU bounds measured without TLS); test_tls holds the cases of TLS itself.
TLS_IT=(test_http test_app test_ws test_sse test_ws_node test_db test_limits test_tools test_work
    test_cli test_static test_security test_compress test_chain test_upload test_sio)

# test_db's cases again on a real PostgreSQL (CREST_IT_DB=postgres: the file starts one on a free
# loopback port), in every pass: both backends answer the same contract.
run_it_pg() {
    local build=$1 label=$2
    suite "${label}postgres it test_db" env CREST_IT_DB=postgres CREST_BIN="$build/crest" \
        CREST_IT_APP="$build/tests/it_app" "$PY" tests/it/test_db.py
}

run_it_tls() {
    local build=$1 label=$2 t
    shift 2
    for t in "$@"; do
        suite "${label}tls it $t" env CREST_IT_TLS=1 CREST_BIN="$build/crest" \
            CREST_IT_APP="$build/tests/it_app" "$PY" "tests/it/$t.py"
    done
}

step "build (gcc, -Werror)" make -j"$JOBS" all unit
step "build (clang, -Werror)" make -j"$JOBS" CC=clang BUILD=build-clang all unit
step "formatting (clang-format)" make format-check

# The installed library is usable: headers, static and shared library, pkg-config file.
install_check() {
    local prefix
    prefix=$(mktemp -d /tmp/crest-prefix.XXXXXX)
    make install PREFIX="$prefix" &&
        PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -Wall -Werror -o "$prefix/hello" \
            examples/hello.c $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs crest) &&
        LD_LIBRARY_PATH="$prefix/lib" ldd "$prefix/hello" | grep -q "$prefix/lib/libcrest.so" &&
        "$prefix/bin/crest" --version | grep -qx "crest [0-9.]*"
    local rc=$?
    rm -rf "$prefix"
    return $rc
}
step "make install PREFIX=... and build examples/hello.c with pkg-config" install_check

# Node.js clients for the WebSocket, Socket.IO and browser tests: npm ws, playwright-core,
# socket.io-client and socket.io (test_sio's reference server), @socket.io/redis-adapter and
# ioredis (test_sio_cluster's Node.js member) in tests/e2e (node_modules is git-ignored); the
# browser is Debian's chromium (scripts/deps.sh), never a download.
e2e_deps() {
    [ -x /usr/bin/chromium ] && command -v node >/dev/null || scripts/deps.sh test || return 1
    local m=tests/e2e/node_modules
    [ -d $m/ws ] && [ -d $m/playwright-core ] && [ -d $m/socket.io-client ] && [ -d $m/socket.io ] &&
        [ -d $m/@socket.io/redis-adapter ] && [ -d $m/ioredis ] && return 0
    # Debian's nodejs comes without npm; NodeSource's ships it (and conflicts with Debian's npm).
    command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm || return 1
    (cd tests/e2e && npm install --no-audit --no-fund)
}
step "npm ws + playwright-core + socket.io (tests/e2e)" e2e_deps

if [ -x build/crest ]; then
    run_unit_and_it build ""
    run_it_pg build ""
    run_it_tls build "" "${TLS_IT[@]}"
    suite "e2e chat in two headless Chromium pages" env CREST_BIN=build/crest \
        node tests/e2e/chat.test.js
    suite "e2e chat in two headless Chromium pages over HTTPS" env CREST_BIN=build/crest \
        CREST_E2E_TLS=1 node tests/e2e/chat.test.js
    suite "e2e Socket.IO chat page (socket.io-client's browser bundle) in headless Chromium" \
        env CREST_BIN=build/crest node tests/e2e/sio.test.js
    suite "e2e CORS: a page on one crest fetches another in headless Chromium" \
        env CREST_BIN=build/crest node tests/e2e/cors.test.js
fi

step "build fuzz targets" make -j"$JOBS" fuzz
# One target per core at a time (each is one process), so the time does not grow with every
# parser and protocol added: JOBS targets run side by side, each for FUZZ_SECONDS.
fuzz_one() {
    local f=$1 target=${1##*/fuzz_} work rc
    work=$(mktemp -d /tmp/crest-fuzz.XXXXXX)
    # Undefined behaviour fails the target (UBSan only reports it by default).
    env UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$f" -max_total_time="$FUZZ_SECONDS" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work" "fuzz/$target/corpus" \
        >"$LOG_DIR/fuzz_$target.log" 2>&1
    rc=$?
    rm -rf "$work"
    return $rc
}
fuzzers=()
for f in build-fuzz/fuzz_*; do [ -x "$f" ] && fuzzers+=("$f"); done
for ((i = 0; i < ${#fuzzers[@]}; i += JOBS)); do
    t0=$SECONDS
    pids=()
    for f in "${fuzzers[@]:i:JOBS}"; do
        fuzz_one "$f" &
        pids+=($!)
    done
    for k in "${!pids[@]}"; do
        target=${fuzzers[i + k]##*/fuzz_}
        if wait "${pids[k]}"; then
            ok "fuzz $target for ${FUZZ_SECONDS}s"
        else
            not_ok "fuzz $target for ${FUZZ_SECONDS}s"
            tail -n 40 "$LOG_DIR/fuzz_$target.log" | sed 's/^/#   /'
        fi
    done
    echo "# ($((SECONDS - t0)) s)"
done

if step "build (ASan + UBSan)" make -j"$JOBS" SAN=1 all unit; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87
    run_unit_and_it build-san "asan+ubsan"
    run_it_pg build-san "asan+ubsan "
    # Over TLS only these two under the sanitizers: the record path with every HTTP/1.1 framing,
    # and WebSocket frames on it; the whole list would add minutes.
    run_it_tls build-san "asan+ubsan " test_http test_ws
    # The Socket.IO page in a real browser: socket.io-client's bundle, polling and the upgrade.
    suite "asan+ubsan e2e Socket.IO chat page in headless Chromium" \
        env CREST_BIN=build-san/crest node tests/e2e/sio.test.js
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# ThreadSanitizer on the files whose code crosses threads: loop threads and inboxes (http, app,
# h2, hardening_rt), pub/sub and its bridge (ws, ws_node, sse, redis), the worker pool (work),
# the SQLite writer and PostgreSQL's loops (db, pg), the access log's writer and the counters
# summed by /metrics (observe), the rate limiter's table shared by the loops (security), the
# control thread's notifications and watchdog (systemd), certificate reloads (tls), Socket.IO
# requests moved to their session's loop thread and rooms on every thread (sio), and rooms
# carried by the Redis bridge's thread to and from other servers (sio_cluster). The others
# (static files, compression, flags, man pages, parser limits) run on one loop thread: the plain
# and ASan passes cover them, and a TSan pass of them would cost minutes and find nothing new.
TSAN_IT=(test_http test_app test_h2 test_hardening_rt test_ws test_ws_node test_sse test_redis
    test_work test_db test_pg test_observe test_security test_systemd test_tls test_sio
    test_sio_cluster)

if step "build (ThreadSanitizer)" make -j"$JOBS" TSAN=1 all unit; then
    export TSAN_OPTIONS="halt_on_error=1 exitcode=88"
    for t in "${TSAN_IT[@]}"; do
        suite "tsan it $t" env CREST_BIN=build-tsan/crest CREST_IT_APP=build-tsan/tests/it_app \
            "$PY" "tests/it/$t.py"
    done
    run_it_pg build-tsan "tsan "
    suite "tsan e2e Socket.IO chat page in headless Chromium" \
        env CREST_BIN=build-tsan/crest node tests/e2e/sio.test.js
    unset TSAN_OPTIONS
fi

rm -rf "$LOG_DIR"
if [ "$failed" -gt 0 ]; then
    echo "# failed:"
    printf '#   %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
