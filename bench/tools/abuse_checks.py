#!/usr/bin/env python3
"""abuse_checks: the yes/no rows and the set-up steps of bench/abuse.sh. Each prints one line
`CHECK {json}`.

  abuse_checks.py todos --port P [--count 40] [--size 1040000]
      creates COUNT todos whose titles are SIZE bytes (POST /api/todos), for the slow readers.
  abuse_checks.py utf8 --port P
      a standards-checking client (Python websockets, which validates UTF-8 as RFC 6455 asks)
      joins /ws/chat?room=R; then a raw client joins the same room with name=%FF%FE. Is the
      checking client dropped (close 1007) by the join announcement, or does it get valid text?
  abuse_checks.py nul --port P
      POST /api/todos {"title":"abc\\u0000def","done":false}: the status, and what GET returns.
  abuse_checks.py shutdown --tries N --src ADDR -- SERVER_ARGV...
      N times: starts the server (argv with --port 0; it must print its listening line), makes
      one keep-alive request, then sends SIGTERM and at once a second request on the same
      connection. Counts how that request ended: a complete answer, a clean close (FIN before
      any byte of an answer), a reset, or nothing within 5 s; and how the server exited.

Python standard library, plus Debian's python3-websockets for utf8.
"""

import argparse
import asyncio
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time


def emit(d):
    print("CHECK " + json.dumps(d), flush=True)


def cmd_todos(a):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    made, statuses = 0, {}
    t0 = time.monotonic()
    for i in range(a.count):
        title = ("%04d" % i) + "t" * (a.size - 4)
        body = json.dumps({"title": title, "done": False}).encode()
        conn.request("POST", "/api/todos", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        statuses[r.status] = statuses.get(r.status, 0) + 1
        made += r.status == 201
    conn.request("GET", "/api/todos")
    r = conn.getresponse()
    listing = len(r.read())
    emit({"created": made, "statuses": statuses, "title_bytes": a.size,
          "seconds": round(time.monotonic() - t0, 2), "list_bytes": listing})


async def utf8_check(port):
    import websockets

    room = "utf8-%d" % int(time.time() * 1000)
    base = "ws://127.0.0.1:%d/ws/chat?room=%s" % (port, room)
    result = {"room": room}
    async with websockets.connect(base + "&name=checker", max_size=None) as checker:
        # Its own join first, so that the next message is the raw member's.
        first = await asyncio.wait_for(checker.recv(), 5)
        result["own_join"] = first if isinstance(first, str) else repr(first)
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(("GET /ws/chat?room=%s&name=%%FF%%FE HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n" % (room, port)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(4096)
            if not chunk:
                break
            head += chunk
        result["raw_status"] = head.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            msg = await asyncio.wait_for(checker.recv(), 3)
            result["dropped"] = False
            result["received"] = msg if isinstance(msg, str) else repr(msg)
        except websockets.ConnectionClosed as e:
            result["dropped"] = True
            result["close_code"] = e.rcvd.code if e.rcvd else None
            result["sent_code"] = e.sent.code if e.sent else None
        except TimeoutError:
            result["dropped"] = False
            result["received"] = None
        raw.close()
    return result


def cmd_utf8(a):
    import websockets

    r = asyncio.run(utf8_check(a.port))
    r["websockets"] = websockets.__version__
    emit(r)


def cmd_nul(a):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
    body = b'{"title":"abc\\u0000def","done":false}'
    conn.request("POST", "/api/todos", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    out = {"sent": body.decode(), "status": r.status, "response": text}
    loc = r.getheader("Location")
    if r.status == 201 and loc:
        conn.request("GET", loc)
        g = conn.getresponse()
        stored = g.read().decode("utf-8", "replace")
        out["stored"] = stored
        try:
            title = json.loads(stored).get("title")
        except ValueError:
            title = None
        out["stored_title"] = title
        out["intact"] = title == "abc\x00def"
    emit(out)


LISTEN_RE = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


def one_shutdown(argv, src):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        port = None
        deadline = time.monotonic() + 10
        while port is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            m = LISTEN_RE.search(line)
            if m:
                port = int(m.group(1))
        if port is None:
            return {"outcome": "did not start"}
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        req = ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port).encode()
        s.sendall(req)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                return {"outcome": "first request failed"}
            got += chunk
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            s.sendall(req)
        except OSError as e:
            outcome = "reset" if isinstance(e, ConnectionResetError) else "send failed"
        else:
            data = b""
            outcome = None
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if b"\r\n\r\n" in data:
                        head, _, rest = data.partition(b"\r\n\r\n")
                        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                        if len(rest) >= (int(m.group(1)) if m else 0):
                            break
            except ConnectionResetError:
                outcome = "reset"
            except socket.timeout:
                outcome = "no answer in 5 s"
            if outcome is None:
                if data.startswith(b"HTTP/1.1 "):
                    outcome = "answered %s" % data[9:12].decode("latin-1")
                elif not data:
                    outcome = "closed cleanly"
                else:
                    outcome = "partial answer"
        s.close()
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            rc = "still running after 15 s"
        return {"outcome": outcome, "exit": rc, "exit_s": round(time.monotonic() - t0, 3)}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def cmd_shutdown(a):
    counts, exits, slowest = {}, {}, 0.0
    for _ in range(a.tries):
        r = one_shutdown(a.argv, a.src)
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        exits[str(r.get("exit"))] = exits.get(str(r.get("exit")), 0) + 1
        slowest = max(slowest, r.get("exit_s", 0))
    emit({"tries": a.tries, "outcomes": counts, "exit_status": exits,
          "slowest_exit_s": slowest, "resets": counts.get("reset", 0)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("todos")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--count", type=int, default=40)
    t.add_argument("--size", type=int, default=1040000)
    u = sub.add_parser("utf8")
    u.add_argument("--port", type=int, required=True)
    n = sub.add_parser("nul")
    n.add_argument("--port", type=int, required=True)
    s = sub.add_parser("shutdown")
    s.add_argument("--tries", type=int, default=50)
    s.add_argument("--src", default="127.0.0.9")
    s.add_argument("argv", nargs="+")
    a = ap.parse_args()
    {"todos": cmd_todos, "utf8": cmd_utf8, "nul": cmd_nul, "shutdown": cmd_shutdown}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
