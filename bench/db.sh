#!/usr/bin/env bash
# bench/db.sh: the TechEmpower database tests, GET /db, /queries?queries=20, /fortunes and
# /updates?queries=20, per core, in one invocation:
# - crest on its embedded SQLite (CONFIGS): synchronous=FULL (the default: a commit fsyncs the
#   WAL, durable across power loss) and synchronous=NORMAL (durable across kill -9 only);
# - on one PostgreSQL 15 that the script starts for the run (PEERS): crest
#   (--db postgres://...), Node.js with node-postgres (pg) without and with pipelining, FastAPI
#   with asyncpg, and Java (the JDK's HttpServer with JDBC). The peers are in bench/peers/db/,
#   each file stating its settings and every default it changes.
#
# Placement: each server on CPU 0 (crest --threads 1, one Node process, one uvicorn worker, one
# JVM), wrk -t1 on CPU 1, and PostgreSQL on CPU 1 too, beside wrk (PG_CPU, default 1). Why: on
# CPU 0 it would take the server's core, and the figures would no longer be the server's per
# core; left to the scheduler (PG_CPU=0,1) its backends run on both cores, so on the server's
# too. Measured both ways on this machine (node and java, REPEATS=1 DURATION=5, each twice, with
# other tenants building): /db with PostgreSQL on CPU 1 gave 10-11k req/s for Node and 7-10k for
# Java, unpinned 6k and 4.5-5k; /fortunes 7-15k pinned against 6-13k unpinned; the 20-query
# tests were within the noise either way. Pinned, the server has CPU 0 to itself. The cost: CPU 1
# is shared by PostgreSQL and wrk (wrk takes 5-20 % of it at these rates: its own rusage, in
# the "CPU 1 busy % (wrk)" column); where that column nears 100 %, req/s is PostgreSQL's limit
# on one core, not the server's, and CPU time per request is what compares the servers.
#
# Per run: req/s, wrk's p99 (--latency), non-2xx responses, the server's CPU time per request
# (utime+stime from /proc/PID/stat of all its processes over the counted run, over the requests
# wrk counted), PostgreSQL's CPU time per request (the same over the postmaster and every child,
# plus the postmaster's reaped children), and their sum. Each counted run follows a warm-up of the
# same endpoint; each repeat runs every configuration once, in rotating order; tables show the
# median (min-max) over repeats. A peer that does not start (crest exits at start while its
# PostgreSQL backend is not built in) is logged, reported as "failed to start", and the others go
# on. Before each PostgreSQL peer: VACUUM ANALYZE and CHECKPOINT (the updates of the previous one
# must not cost the next).
#
# PostgreSQL: initdb in a mktemp -d folder owned by postgres (it refuses to run as root), -A trust,
# listening on 127.0.0.1 only, on a free port, its unix socket in that folder. Defaults kept
# (fsync and synchronous_commit on, max_connections 100: the peers use 10 connections each, one
# peer at a time). Database `bench`, seeded with psql: World (ids 1..10000, randomNumber random
# 1..10000) and the 12 TechEmpower fortunes of app/demo_db.c; crest finds the tables there and
# does not seed. Stopped (pg_ctl stop -m fast) and removed on exit.
#
# Usage: bench/db.sh    Env: REPEATS (3), DURATION s (10), WARMUP s (2), CONNS (64),
#        CONFIGS ("full normal": crest on SQLite; "" for none),
#        PEERS ("crest node node-pipeline fastapi java"; "" for none), PG_CPU (1),
#        CREST_BIN (build/crest, built with `make all` when missing)
# The default run: 7 configurations x 3 repeats x 4 endpoints x (2 + 10 s), plus about 3 s a
# start: about 18 minutes (15 while crest fails to start on PostgreSQL).
# Output: bench/results/YYYY-MM-DD-HHMMSS-db/ with report.md (also printed), samples.json,
# versions.txt, logs/ (servers, wrk, PostgreSQL).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
CONFIGS=${CONFIGS-full normal}
PEERS=${PEERS-crest node node-pipeline fastapi java}
PG_CPU=${PG_CPU:-1}
CREST_BIN=${CREST_BIN:-$REPO/build/crest}
SERVER_CPU=0
CLIENT_CPU=1
JAVA_THREADS=10
PY=/usr/bin/python3
PGBIN=/usr/lib/postgresql/15/bin
JDBC_JAR=/usr/share/java/postgresql.jar
PEER_DIR=$BENCH/peers/db
ENDPOINTS=${ENDPOINTS:-/db /queries?queries=20 /fortunes /updates?queries=20}

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh" # log, stop_pid, tree_pids, cpu_ticks, core_busy, apt_install, STARTED

for cfg in $CONFIGS; do
    [[ $cfg == full || $cfg == normal ]] || die "CONFIGS: unknown '$cfg' (full, normal)"
done
for p in $PEERS; do
    [[ $p =~ ^(crest|node|node-pipeline|fastapi|java)$ ]] ||
        die "PEERS: unknown '$p' (crest node node-pipeline fastapi java)"
done
CMDLINE=$(command_line bench/db.sh WARMUP:2 CONNS:64 "CONFIGS:full normal" \
    "PEERS:crest node node-pipeline fastapi java" PG_CPU:1 "CREST_BIN:$REPO/build/crest")

# ---------------------------------------------------------------- cleanup -------------------
WORK=$(mktemp -d /tmp/crest-db.XXXXXX)
PGROOT=""
PG_PID=""
OUT=""

stop_postgres() {
    [[ -n $PG_PID ]] || return 0
    if kill -0 "$PG_PID" 2>/dev/null; then
        (cd "$PGROOT" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w -t 30 \
            stop) >&2 || true
        # pg_ctl could not: a fast shutdown by PID, then SIGKILL.
        if kill -0 "$PG_PID" 2>/dev/null; then
            kill -INT "$PG_PID" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.1; done
            for p in $(tree_pids "$PG_PID"); do kill -KILL "$p" 2>/dev/null || true; done
        fi
    fi
    PG_PID=""
}

db_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    stop_postgres
    if [[ -n $OUT && -d $OUT/logs && -n $PGROOT && -f $PGROOT/postgres.log ]]; then
        cp "$PGROOT/postgres.log" "$OUT/logs/postgres.log" || true
    fi
    [[ -n $PGROOT && -d $PGROOT ]] && rm -rf "$PGROOT"
    rm -rf "$WORK"
    exit "$rc"
}
trap db_cleanup EXIT

# ---------------------------------------------------------------- install -------------------
log "installing what is missing"
"$REPO/scripts/deps.sh" build
want="wrk curl procps python3"
[[ -n $PEERS ]] && want+=" postgresql"
[[ " $PEERS " == *" fastapi "* ]] &&
    want+=" python3-fastapi python3-uvicorn python3-asyncpg python3-uvloop python3-httptools"
[[ " $PEERS " == *" java "* ]] && want+=" libpostgresql-jdbc-java"
# shellcheck disable=SC2086
apt_install $want
if [[ " $PEERS " == *" java "* ]] && ! command -v javac >/dev/null; then
    apt_install default-jdk-headless
fi
if [[ " $PEERS " == *" node"* ]]; then
    # nodejs may come from NodeSource (npm included), which Debian's npm package conflicts with.
    command -v node >/dev/null || apt_install nodejs
    command -v npm >/dev/null || apt_install npm
fi
if [[ ! -x $CREST_BIN && $CREST_BIN == "$REPO/build/crest" ]]; then
    make -C "$REPO" -j"$(nproc)" all >&2 || log "crest could not be built: its rows will say so"
fi

OUT="$REPO/bench/results/$(date +%Y-%m-%d-%H%M%S)-db"
mkdir -p "$OUT/logs"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Peers that cannot run at all (not installed, not compiled): NAME -> reason.
declare -A BROKEN=()
if [[ " $PEERS " == *" node"* ]]; then
    if ! (cd "$PEER_DIR" && npm ci --no-audit --no-fund) >"$OUT/logs/npm-ci.log" 2>&1; then
        log "npm ci failed (see $OUT/logs/npm-ci.log)"
        BROKEN[node]="npm ci failed"
        BROKEN[node-pipeline]="npm ci failed"
    fi
fi
if [[ " $PEERS " == *" java "* ]]; then
    if ! javac -cp "$JDBC_JAR" -d "$WORK/java" "$PEER_DIR/Server.java" >"$OUT/logs/javac.log" 2>&1; then
        log "javac failed (see $OUT/logs/javac.log)"
        BROKEN[java]="javac failed"
    fi
fi

# ---------------------------------------------------------------- PostgreSQL ----------------
PGPORT=""
PSQL=()
if [[ -n $PEERS ]]; then
    PGROOT=$(mktemp -d /tmp/crest-db-pg.XXXXXX)
    chown postgres: "$PGROOT"
    PGPORT=$(free_port)
    log "PostgreSQL: initdb in $PGROOT, port $PGPORT, on CPU $PG_CPU"
    (cd "$PGROOT" && runuser -u postgres -- "$PGBIN/initdb" -D "$PGROOT/data" -A trust -U postgres \
        -E UTF8 --locale=C.UTF-8) >"$OUT/logs/initdb.log" 2>&1 || die "initdb failed (see $OUT/logs/initdb.log)"
    (cd "$PGROOT" && runuser -u postgres -- taskset -c "$PG_CPU" "$PGBIN/pg_ctl" -D "$PGROOT/data" \
        -l "$PGROOT/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=$PGROOT" start) >&2 ||
        die "PostgreSQL did not start (see $PGROOT/postgres.log)"
    PG_PID=$(head -1 "$PGROOT/data/postmaster.pid")
    # Bounded: 10 s to connect, 120 s for a statement (the seed, VACUUM and CHECKPOINT take ~1 s).
    PSQL=(env PGCONNECT_TIMEOUT=10 PGOPTIONS="-c statement_timeout=120s"
        psql -h 127.0.0.1 -p "$PGPORT" -U postgres -X -q -v ON_ERROR_STOP=1)
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
    # The schema crest uses (unquoted names), World and the fortunes of app/demo_db.c.
    "${PSQL[@]}" -d bench <<'SQL'
CREATE TABLE World (id integer PRIMARY KEY, randomNumber integer NOT NULL);
CREATE TABLE Fortune (id integer PRIMARY KEY, message text NOT NULL);
INSERT INTO World (id, randomNumber)
    SELECT i, 1 + floor(random() * 10000)::integer FROM generate_series(1, 10000) AS i;
INSERT INTO Fortune (id, message) VALUES
    (1, 'fortune: No such file or directory'),
    (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
    (3, 'After enough decimal places, nobody gives a damn.'),
    (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
    (5, 'A computer program does what you tell it to do, not what you want it to do.'),
    (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
    (7, 'Any program that runs right is obsolete.'),
    (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
    (9, 'Feature: A bug with seniority.'),
    (10, 'Computers make very fast, very accurate mistakes.'),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, 'フレームワークのベンチマーク');
SQL
    "${PSQL[@]}" -d bench -c "VACUUM ANALYZE"
fi
PGURL="postgres://postgres@127.0.0.1:$PGPORT/bench"

pg_ticks() { # utime+stime of every PostgreSQL process, plus the postmaster's reaped children
    local stat rest
    local -a f
    stat=$(cat /proc/"$PG_PID"/stat 2>/dev/null) || { echo 0; return; }
    rest=${stat##*) }
    read -ra f <<<"$rest"
    echo $(($(cpu_ticks "$PG_PID") + f[13] + f[14]))
}

# ---------------------------------------------------------------- versions ------------------
{
    if [[ -x $CREST_BIN ]]; then
        from=$CREST_BIN
        [[ $CREST_BIN == "$REPO/build/crest" ]] && from=$(git -C "$REPO" rev-parse --short HEAD)
        echo "crest $("$CREST_BIN" --version | cut -d' ' -f2) ($from)"
    fi
    echo "SQLite $($PY -c 'import ctypes.util,ctypes; l=ctypes.CDLL(ctypes.util.find_library("sqlite3")); l.sqlite3_libversion.restype=ctypes.c_char_p; print(l.sqlite3_libversion().decode())')"
    if [[ -n $PEERS ]]; then
        echo "PostgreSQL $("$PGBIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
    fi
    if [[ " $PEERS " == *" node"* ]]; then
        echo "node $(node --version)"
        echo "pg $(node -p "require('$PEER_DIR/node_modules/pg/package.json').version" 2>/dev/null || echo '?'), pg-pool $(node -p "require('$PEER_DIR/node_modules/pg-pool/package.json').version" 2>/dev/null || echo '?')"
    fi
    if [[ " $PEERS " == *" fastapi "* ]]; then
        echo "python $($PY -c 'import platform; print(platform.python_version())'), $($PY -c 'import fastapi, uvicorn, asyncpg, starlette, uvloop, httptools; print("fastapi %s, starlette %s, uvicorn %s, asyncpg %s, uvloop %s, httptools %s" % (fastapi.__version__, starlette.__version__, uvicorn.__version__, asyncpg.__version__, uvloop.__version__, httptools.__version__))')"
    fi
    if [[ " $PEERS " == *" java "* ]]; then
        echo "java $(java -version 2>&1 | head -1 | sed 's/^[a-z]* version //; s/"//g') ($(java -version 2>&1 | sed -n 3p))"
        echo "PostgreSQL JDBC $($PY -c 'import sys, zipfile; m = zipfile.ZipFile(sys.argv[1]).read("META-INF/MANIFEST.MF").decode(); print(next((l.split(":", 1)[1].strip() for l in m.splitlines() if l.startswith("Implementation-Version:")), "?"))' "$JDBC_JAR") (Debian libpostgresql-jdbc-java $(dpkg-query -W -f='${Version}' libpostgresql-jdbc-java))"
    fi
    { wrk -v 2>&1 || true; } | head -1 | cut -d' ' -f1-2 # wrk -v exits 1
    echo "$(nproc) CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); databases on $(df -T "$WORK" | awk 'NR==2 {print $2}')"
} >"$OUT/versions.txt"

# ---------------------------------------------------------------- servers -------------------
label() {
    case $1 in
    sqlite-full) echo "crest (SQLite, synchronous=FULL)" ;;
    sqlite-normal) echo "crest (SQLite, synchronous=NORMAL)" ;;
    crest) echo "crest (PostgreSQL)" ;;
    node) echo "Node.js pg" ;;
    node-pipeline) echo "Node.js pg, pipeline" ;;
    fastapi) echo "FastAPI asyncpg" ;;
    java) echo "Java HttpServer JDBC" ;;
    esac
}

server_cmd() { # CONFIG PORT -> CMD
    local port=$2
    case $1 in
    sqlite-*)
        rm -f "$WORK"/run.db* # a fresh database each run, seeded by crest at start
        CMD=("$CREST_BIN" demo --quiet --port "$port" --threads 1
            --db "sqlite:$WORK/run.db?synchronous=${1#sqlite-}") ;;
    crest) CMD=("$CREST_BIN" demo --quiet --port "$port" --threads 1 --db "$PGURL") ;;
    node) CMD=(node "$PEER_DIR/server.js" "$port" "$PGURL") ;;
    node-pipeline) CMD=(node "$PEER_DIR/server.js" "$port" "$PGURL" pipeline) ;;
    fastapi)
        CMD=(env PYTHONDONTWRITEBYTECODE=1 DATABASE_URL="$PGURL" "$PY" -m uvicorn app:app
            --app-dir "$PEER_DIR" --host 127.0.0.1 --port "$port" --workers 1 --no-access-log
            --log-level warning) ;;
    java)
        CMD=(java -Dsun.net.httpserver.nodelay=true -cp "$WORK/java:$JDBC_JAR" Server "$port"
            "jdbc:postgresql://127.0.0.1:$PGPORT/bench?user=postgres" "$JAVA_THREADS") ;;
    esac
}

SPID=""
start_peer() { # CONFIG PORT: starts it on CPU 0, waits (30 s at most) for a 200 from /db
    local cfg=$1 port=$2 i
    server_cmd "$cfg" "$port"
    echo "== $(date -Is) ${CMD[*]}" >>"$OUT/logs/$cfg.log"
    (cd "$WORK" && exec taskset -c $SERVER_CPU "${CMD[@]}") >>"$OUT/logs/$cfg.log" 2>&1 &
    SPID=$!
    STARTED+=("$SPID")
    for ((i = 0; i < 300; i++)); do
        kill -0 "$SPID" 2>/dev/null || break
        curl -fsS -o /dev/null "http://127.0.0.1:$port/db" 2>/dev/null && return 0
        sleep 0.1
    done
    stop_pid "$SPID"
    return 1
}

# Same bodies, types, headers and clamping from every configuration; prints "ok" or the problems.
check_peer() { # PORT DB(0|1)
    $PY - "$1" "$2" "$PGPORT" <<'PYEOF'
import http.client, json, subprocess, sys
port, db, pgport = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
problems = []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def get(path, ctype):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    h = {k.lower(): v for k, v in r.getheaders()}
    if r.status != 200:
        problems.append("%s: status %d" % (path, r.status))
    for k in ("server", "date", "content-length"):
        if k not in h:
            problems.append("%s: no %s header" % (path, k))
    if h.get("content-type", "").lower().replace(" ", "") != ctype.replace(" ", ""):
        problems.append("%s: content-type %r" % (path, h.get("content-type")))
    return body
def worlds(path, n):
    try:
        v = json.loads(get(path, "application/json"))
    except ValueError:
        problems.append(path + ": not JSON")
        return []
    if path.startswith("/db"):
        v = [v]
    if not isinstance(v, list) or len(v) != n:
        problems.append("%s: %s rows, want %d" % (path, len(v) if isinstance(v, list) else "no", n))
        return []
    for w in v:
        if not (isinstance(w, dict) and sorted(w) == ["id", "randomNumber"]
                and all(isinstance(w[k], int) and 1 <= w[k] <= 10000 for k in w)):
            problems.append("%s: bad row %r" % (path, w))
    return v
worlds("/db", 1)
for q, n in (("", 1), ("?queries=3", 3), ("?queries=abc", 1), ("?queries=0", 1),
             ("?queries=-4", 1), ("?queries=501", 500), ("?queries=20", 20)):
    worlds("/queries" + q, n)
worlds("/updates?queries=abc", 1)
up = worlds("/updates?queries=3", 3)
if db and up and len({w["id"] for w in up}) == 3:
    for w in up:
        got = subprocess.run(["psql", "-h", "127.0.0.1", "-p", pgport, "-U", "postgres", "-X",
                              "-d", "bench", "-Atc", "SELECT randomNumber FROM World WHERE id = %d"
                              % w["id"]], capture_output=True, text=True).stdout.strip()
        if got != str(w["randomNumber"]):
            problems.append("/updates: row %d holds %s, answered %d" % (w["id"], got, w["randomNumber"]))
html = get("/fortunes", "text/html; charset=utf-8").decode()
rows = html.count("<tr><td>")
if rows != 13:
    problems.append("/fortunes: %d rows, want 13" % rows)
for want in ("<td>11</td><td>&lt;script&gt;alert(&quot;", "<td>0</td><td>Additional fortune added",
             "<td>12</td><td>フレームワークのベンチマーク</td>"):
    if want not in html:
        problems.append("/fortunes: no %r" % want)
if html.find("<td>11</td>") > html.find("<td>4</td>") or html.find("<td>1</td>") > html.find("<td>12</td>"):
    problems.append("/fortunes: rows not sorted by message")
print("; ".join(problems) if problems else "ok")
PYEOF
}

# ---------------------------------------------------------------- runs ----------------------
declare -a LIST=()
for cfg in $CONFIGS; do LIST+=("sqlite-$cfg"); done
for p in $PEERS; do LIST+=("$p"); done
((${#LIST[@]} > 0)) || die "nothing to run: CONFIGS and PEERS are both empty"
SAMPLES=$WORK/samples.jsonl
: >"$SAMPLES"
declare -A CHECKED=()
n=${#LIST[@]}
for ((rep = 1; rep <= REPEATS; rep++)); do
    # Rotate the order each repeat so that no configuration always runs first or last.
    order=()
    for ((i = 0; i < n; i++)); do order+=("${LIST[(i + rep - 1) % n]}"); done
    for cfg in "${order[@]}"; do
        if [[ -n ${BROKEN[$cfg]:-} ]]; then
            echo "{\"config\":\"$cfg\",\"repeat\":$rep,\"failed\":$(json_str "${BROKEN[$cfg]}")}" >>"$SAMPLES"
            continue
        fi
        if [[ $cfg != sqlite-* ]]; then
            # The same start for every PostgreSQL peer: dead rows of the last one's updates
            # vacuumed, its dirty pages written.
            "${PSQL[@]}" -d bench -c "VACUUM ANALYZE World" -c "CHECKPOINT"
        fi
        port=$(free_port)
        if ! start_peer "$cfg" "$port"; then
            why=$(grep -v '^== ' "$OUT/logs/$cfg.log" | tail -n 3 | tr '\n' ' ' | cut -c1-300)
            log "repeat $rep: $cfg failed to start: ${why:-no output} (see $OUT/logs/$cfg.log)"
            echo "{\"config\":\"$cfg\",\"repeat\":$rep,\"failed\":$(json_str "failed to start: $why")}" >>"$SAMPLES"
            continue
        fi
        if [[ -z ${CHECKED[$cfg]:-} ]]; then
            db=1
            [[ $cfg == sqlite-* ]] && db=0
            CHECKED[$cfg]=$(check_peer "$port" "$db")
            log "$cfg check: ${CHECKED[$cfg]}"
            echo "{\"config\":\"$cfg\",\"check\":$(json_str "${CHECKED[$cfg]}")}" >>"$SAMPLES"
        fi
        for ep in $ENDPOINTS; do
            url="http://127.0.0.1:$port$ep"
            taskset -c $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
            pg0=0
            [[ $cfg == sqlite-* ]] || pg0=$(pg_ticks)
            t0=$(cpu_ticks "$SPID")
            c0=$(core_busy $SERVER_CPU)
            l0=$(core_busy $CLIENT_CPU)
            w0=$(date +%s.%N)
            # wrk's own CPU time too (its rusage, from the Python that runs it, on CPU 1 as well):
            # a busy CPU 1 is PostgreSQL's or the client's.
            res=$(taskset -c $CLIENT_CPU "$PY" -c 'import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True).stdout
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out + "WRK_CPU_S %.3f" % (r.ru_utime + r.ru_stime))' \
                wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
            w1=$(date +%s.%N)
            t1=$(cpu_ticks "$SPID")
            c1=$(core_busy $SERVER_CPU)
            l1=$(core_busy $CLIENT_CPU)
            pg1=0
            [[ $cfg == sqlite-* ]] || pg1=$(pg_ticks)
            { echo "== repeat $rep $cfg $ep"; echo "$res"; } >>"$OUT/logs/wrk.log"
            pg=$((pg1 - pg0))
            [[ $cfg == sqlite-* ]] && pg=-1
            line=$($PY - "$res" "$((t1 - t0))" "$pg" "$CLK_TCK" "$((c1 - c0))" "$((l1 - l0))" "$w0" "$w1" <<'PYEOF'
import json, re, sys
out = sys.argv[1]
ticks, pg, hz, cpu0, cpu1 = (int(a) for a in sys.argv[2:7])
wall = float(sys.argv[8]) - float(sys.argv[7])
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
reqs = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
errs = int(m.group(1)) if m else 0
sock = re.search(r"Socket errors:.*", out)
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
per = lambda t: round(t * 1e6 / hz / max(reqs, 1), 1)
r = {"rps": rps, "requests": reqs, "non2xx": errs,
     "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 3) if p99 else None,
     "server_us_per_req": per(ticks),
     "pg_us_per_req": per(pg) if pg >= 0 else None,
     "total_us_per_req": per(ticks + max(pg, 0)),
     "server_core_pct": round(ticks / hz / wall * 100, 1),
     "cpu1_busy_pct": round(cpu1 / hz / wall * 100, 1),
     "wrk_cpu_pct": round(float(re.search(r"WRK_CPU_S ([\d.]+)", out).group(1)) / wall * 100, 1),
     "other_cpu0_pct": round(max(0, cpu0 - ticks) / hz / wall * 100, 1),
     "seconds": round(wall, 2),
     "socket_errors": sock.group(0) if sock else ""}
print(json.dumps(r))
PYEOF
            )
            echo "{\"config\":\"$cfg\",\"endpoint\":\"$ep\",\"repeat\":$rep,\"result\":$line}" >>"$SAMPLES"
            log "repeat $rep/$REPEATS $cfg $ep: $line"
        done
        stop_pid "$SPID"
        SPID=""
    done
done

# ---------------------------------------------------------------- report --------------------
labels=""
for cfg in "${LIST[@]}"; do labels+="$cfg=$(label "$cfg");"; done
$PY - "$OUT" "$SAMPLES" "$REPEATS" "$DURATION" "$WARMUP" "$CONNS" "$PG_CPU" "$CMDLINE" "$labels" \
    "${LIST[*]}" "$ENDPOINTS" "$JAVA_THREADS" <<'PYEOF' | tee "$OUT/report.md"
import json, statistics, sys
(out, samples_path, repeats, duration, warmup, conns, pg_cpu, cmdline, labels, configs, endpoints,
 java_threads) = sys.argv[1:13]
labels = dict(kv.split("=", 1) for kv in labels.split(";") if kv)
configs, endpoints = configs.split(), endpoints.split()
lines = [json.loads(l) for l in open(samples_path) if l.strip()]
runs = [l for l in lines if "result" in l]
failed = {}
for l in lines:
    if "failed" in l:
        failed.setdefault(l["config"], []).append(l["failed"])
checks = {l["config"]: l["check"] for l in lines if "check" in l}
versions = open(out + "/versions.txt").read().strip()
json.dump({"command": cmdline, "repeats": int(repeats), "duration_s": int(duration),
           "warmup_s": int(warmup), "connections": int(conns), "pg_cpu": pg_cpu,
           "versions": versions.split("\n"), "checks": checks, "failed": failed, "runs": runs},
          open(out + "/samples.json", "w"), indent=1, ensure_ascii=False)

def vals(cfg, ep, key):
    return [r["result"][key] for r in runs
            if r["config"] == cfg and r["endpoint"] == ep and r["result"][key] is not None]
def med(cfg, ep, key):
    v = vals(cfg, ep, key)
    return statistics.median(v) if v else None
def rng(cfg, ep, key, fmt):
    v = vals(cfg, ep, key)
    if not v:
        return "–"
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(v), min(v), max(v))

print("## TechEmpower database tests: crest on SQLite and PostgreSQL, Node.js, FastAPI, Java\n")
pg_where = ("PostgreSQL on CPU %s" % pg_cpu if any(c[:7] != "sqlite-" for c in configs)
            else "no PostgreSQL")
print("`%s`: each server on CPU 0 and configured for one core, `wrk -t1 -c%s` on CPU 1, "
      "%s. %s repeats x %s s (after %s s of warm-up), median (min–max); "
      "CPU µs per request from /proc: the server's, PostgreSQL's (all its processes) and their "
      "sum. \"vs crest (PostgreSQL)\" is req/s over crest's on PostgreSQL. Where \"CPU 1 busy\" "
      "nears 100 %%, PostgreSQL and wrk share a saturated core: req/s is then PostgreSQL's "
      "limit, and CPU per request compares the servers. "
      "\"Other load on CPU 0\": its busy time that the server did not spend (the kernel's "
      "network work, other tenants of this shared machine).\n"
      % (cmdline, conns, pg_where, repeats, duration, warmup))
print("Versions: " + "; ".join(versions.split("\n")) + "\n")
for ep in endpoints:
    print("### GET %s\n" % ep)
    print("| server | req/s | p99 ms | server µs/req | PostgreSQL µs/req | total µs/req "
          "| vs crest (PostgreSQL) | server core % | CPU 1 busy % (wrk) | other load on CPU 0 % | non-2xx |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = med("crest", ep, "rps")
    for cfg in configs:
        name = labels[cfg]
        if not vals(cfg, ep, "rps"):
            why = failed.get(cfg, ["did not run"])[0]
            print("| %s | %s | | | | | | | | | |" % (name, why.replace("|", "/")))
            continue
        if cfg in failed:
            name += " (did not start in %d of %s repeats)" % (len(failed[cfg]), repeats)
        r = med(cfg, ep, "rps")
        ratio = "%.2f×" % (r / base) if base else "n/a"
        non2xx = sum(vals(cfg, ep, "non2xx"))
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            name, rng(cfg, ep, "rps", "%.0f"), rng(cfg, ep, "p99_ms", "%.1f"),
            rng(cfg, ep, "server_us_per_req", "%.0f"),
            rng(cfg, ep, "pg_us_per_req", "%.0f") if cfg[:7] != "sqlite-" else "–",
            rng(cfg, ep, "total_us_per_req", "%.0f"), ratio,
            "%.0f" % med(cfg, ep, "server_core_pct"),
            "%.0f (%.0f)" % (med(cfg, ep, "cpu1_busy_pct"), med(cfg, ep, "wrk_cpu_pct")),
            "%.0f" % med(cfg, ep, "other_cpu0_pct"), non2xx))
    print()

# Targets, computed from the medians above.
print("### Targets (crest on PostgreSQL)\n")
def target_ratio(ep, peers, factor, what):
    c = med("crest", ep, "rps")
    got = [(labels[p], med(p, ep, "rps")) for p in peers if p in configs and med(p, ep, "rps")]
    figs = ", ".join("%s %.0f req/s" % g for g in got) or "no peer measured"
    if c is None:
        return "- crest ≥ %g× %s req/s on %s: n/a, crest on PostgreSQL not measured (%s)" % (
            factor, what, ep, figs)
    if not got:
        return "- crest ≥ %g× %s req/s on %s: n/a, %s not measured" % (factor, what, ep, what)
    ok = all(c >= factor * v for _, v in got)
    return "- crest ≥ %g× %s req/s on %s: %s (crest %.0f req/s; %s)" % (
        factor, what, ep, "met" if ok else "missed", c,
        ", ".join("%s %.0f req/s, crest %.2f×" % (n, v, c / v) for n, v in got))
for ep in ("/db", "/fortunes"):
    print(target_ratio(ep, ["node", "node-pipeline"], 3, "Node.js pg (each variant)"))
    print(target_ratio(ep, ["fastapi"], 5, "FastAPI"))
pg_peers = [p for p in configs if not p.startswith("sqlite-")]
for ep in endpoints:
    tot = [(labels[p], med(p, ep, "total_us_per_req")) for p in pg_peers if med(p, ep, "total_us_per_req")]
    figs = ", ".join("%s %.0f µs" % t for t in sorted(tot, key=lambda t: t[1]))
    c = med("crest", ep, "total_us_per_req")
    if c is None:
        print("- crest lowest total CPU/request (server + PostgreSQL) on %s: n/a, crest on "
              "PostgreSQL not measured (%s)" % (ep, figs or "no peer measured"))
    else:
        ok = all(c <= v for n, v in tot)
        print("- crest lowest total CPU/request (server + PostgreSQL) on %s: %s (%s)"
              % (ep, "met" if ok else "missed", figs))
print()

print("### Checks before measuring (bodies, content types, headers, clamping, /updates written)\n")
for cfg in configs:
    print("- %s: %s" % (labels[cfg], checks.get(cfg, "not checked: " + failed.get(cfg, ["did not run"])[0])))
print()
print("### Peer settings (changed defaults; details in bench/peers/db/)\n")
print("- PostgreSQL 15: initdb -A trust, all defaults (fsync, synchronous_commit on, "
      "max_connections 100); 127.0.0.1 only; VACUUM ANALYZE World and CHECKPOINT before each "
      "peer.")
print("- crest: `demo --threads 1 --db postgres://...` (SQLite: `--db sqlite:...?synchronous=...`, a "
      "fresh database per run).")
print("- Node.js pg: one process, `pg.Pool` defaults (max 10); named (prepared) queries; /queries "
      "and /updates start their reads together (Promise.all on pool.query); /updates writes with "
      "one UPDATE ... FROM unnest() (ids sorted). Server header set by hand.")
print("- Node.js pg, pipeline: the same with `pipeline: true` (pg 8.23): /queries and /updates check "
      "out one client and pipeline their queries on it; /db and /fortunes use pool.query, where "
      "pg does not pipeline (one query per checked-out client).")
print("- FastAPI asyncpg: one uvicorn worker (uvloop, httptools), `--no-access-log --log-level "
      "warning`; asyncpg pool defaults (10); the reads of a request in sequence on one "
      "connection; /updates writes with executemany (atomic, ids sorted).")
print("- Java: JDK HttpServer, a fixed pool of %s threads each with its own JDBC connection "
      "(HikariCP's default pool size), `-Dsun.net.httpserver.nodelay=true` (Nagle off: without it "
      "each response waits for a delayed ACK), backlog 1024, JVM defaults; /updates reads and "
      "writes in one transaction, the writes one JDBC batch (ids sorted)." % java_threads)
PYEOF
log "results in $OUT"
