#!/usr/bin/env bash
# bench/sio.sh: crest's Socket.IO server beside Node.js socket.io 4, the issue's benchmark, in
# one invocation: the showdown's three Socket.IO workloads for the peers crest (the demo's
# /socket.io/ chat) and sio (bench/peers/sio-redis, Node.js socket.io, the same chat), then the
# targets table: crest at 10x Node's deliveries/s and a tenth of its memory per idle connection,
# each marked met or not met from the measured medians (never failing the run).
#
#   bench/sio.sh                # 3 interleaved repeats of 2 s after 1 s of warm-up: ~4 min
#   QUICK=1 bench/sio.sh        # one repeat of 1 s runs, memory at 500 and 2k: ~1.5 min
#   bench/sio.sh --plan         # the time budget only; other run.py options pass through
#
# Workloads (bench/showdown/workloads.py; load generator bench/tools/chatload -x sio and
# wsmembers -s, Socket.IO over WebSocket only, on CPU 1; the server on CPU 0, one core):
#   sio_rooms  1,000 members in one room, 10 of them sending `chat` in a closed loop (4 messages
#              each not yet at every member): deliveries/s, p50/p99 delivery latency, server
#              CPU per delivery, exactly-once (a lost or duplicated delivery fails the run);
#              then the latency at a fixed 20 messages/s (20,000 deliveries/s), which both carry
#   sio_conns  idle Socket.IO connections (connected, answering pings) held in rising batches
#              (1k, 2k, 5k, 10k; QUICK 500, 2k), once per run: server RSS per connection at
#              the last one
#   sio_redis  sio_rooms over two instances of the peer, both on CPU 0, on one redis-server
#              the tool starts on a free loopback port (on CPU 1), members alternating between
#              the instances: deliveries/s, p99 (also of deliveries that crossed Redis)
# Output: bench/results/DATE-sio/ (results.json, report.md, charts, logs/); the targets and the
# tables are printed at the end. OUT=DIR writes elsewhere.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results/$(date +%Y-%m-%d-%H%M%S)-sio}
args=(--peers "crest,sio" --workloads "sio_rooms,sio_conns,sio_redis" --no-readme)
[[ ${QUICK:-} == 1 ]] && args+=(--quick)
for a in "$@"; do
    if [[ $a == --plan ]]; then
        exec /usr/bin/python3 "$ROOT/bench/showdown/run.py" "${args[@]}" "$@"
    fi
done
/usr/bin/python3 "$ROOT/bench/showdown/run.py" "${args[@]}" --out "$OUT" "$@"
echo
/usr/bin/python3 "$ROOT/bench/showdown/report.py" "$OUT" --sio
