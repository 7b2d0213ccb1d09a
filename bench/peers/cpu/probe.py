"""Latency probe for bench/cpu.sh (not a peer: the client side).

Keeps LOAD connections each posting /work/hash?rounds=ROUNDS back to back (separate processes,
so the load never holds this process's GIL), and meanwhile times GET /healthz itself, one at a
time every INTERVAL seconds on one keep-alive connection: send time to last byte of the answer,
perf_counter. Prints one JSON object: p50/p99/max in ms, the count, and hash jobs completed.
Usage: probe.py PORT LOAD ROUNDS WARMUP_S DURATION_S INTERVAL_S"""

import json
import multiprocessing as mp
import os
import socket
import sys
import time


def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
        elif k.strip().lower() == b"connection" and v.strip().lower() == b"close":
            close = True  # a server without keep-alive (gunicorn's sync workers)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        rest += data
    return status, rest[length:], close


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def loader(port, rounds, stop_at, counter, errors):
    s = connect(port)
    body = b"benchmark password"
    req = (b"POST /work/hash?rounds=%d HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
           % (rounds, len(body))) + body
    buf = b""
    while time.monotonic() < stop_at:
        s.sendall(req)
        status, buf, close = read_response(s, buf)
        if close:
            s.close()
            s, buf = connect(port), b""
        with counter.get_lock():
            if status == 200:
                counter.value += 1
            else:
                errors.value += 1


def main():
    port, load, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    warmup, duration, interval = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    counter, errors = mp.Value("l", 0), mp.Value("l", 0)
    stop_at = time.monotonic() + warmup + duration
    procs = [mp.Process(target=loader, args=(port, rounds, stop_at, counter, errors))
             for _ in range(load)]
    for p in procs:
        p.start()
    s = connect(port)
    req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    buf = b""
    samples = []
    start_count = None
    t_begin = time.monotonic() + warmup
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if start_count is None and now >= t_begin:
            start_count = counter.value
        t0 = time.perf_counter()
        s.sendall(req)
        status, buf, close = read_response(s, buf)
        t1 = time.perf_counter()
        if close:
            s.close()
            s, buf = connect(port), b""
        if status != 200:
            raise SystemExit("healthz answered %d" % status)
        if now >= t_begin:
            samples.append((t1 - t0) * 1000.0)
        left = interval - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(left)
    end_count = counter.value
    for p in procs:
        p.join(60)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    t = os.times()
    client_cpu = t.user + t.system + t.children_user + t.children_system
    print(json.dumps({"client_cpu_s": round(client_cpu, 3), "n": len(samples), "p50_ms": round(pick(0.50), 3),
                      "p99_ms": round(pick(0.99), 3), "max_ms": round(samples[-1], 3),
                      "hashes_per_s": round((end_count - (start_count or 0)) / duration, 1),
                      "hash_errors": errors.value}))


if __name__ == "__main__":
    main()
