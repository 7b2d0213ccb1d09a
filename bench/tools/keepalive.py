#!/usr/bin/python3
"""keepalive.py: N requests, one after another, on one keep-alive HTTP/1.1 connection.

    keepalive.py PORT N [--method M] [--path P] [--body TEXT] [--type CT] [--expect STATUS]
                 [--contains TEXT] [--show]

Sends a request, reads its whole response (Content-Length or chunked), then sends the next:
one request in flight, so the server does the same work for each (one read, one write), which
makes the instructions it executes per request a slope over N (bench/batteries.sh runs it
against a server under callgrind). Prints `ok N` and exits 0 when every response had status
STATUS (default 200) and, with --contains, the first one's body held TEXT; otherwise prints
what went wrong and exits 1. --show prints the first response (head and body) on stderr, for
the script's check of an endpoint.
"""
import argparse
import socket
import sys


def read_response(sock, buf):
    """One response from sock; buf holds bytes already read. Returns (status, head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a whole response head")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += must_recv(sock)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += must_recv(sock)
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return status, head, body, buf
    length = length or 0
    while len(buf) < length:
        buf += must_recv(sock)
    return status, head, buf[:length], buf[length:]


def must_recv(sock):
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("connection closed in the middle of a response")
    return chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--body", default=None)
    ap.add_argument("--type", default="application/json")
    ap.add_argument("--expect", type=int, default=200)
    ap.add_argument("--contains", default=None)
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()

    head = f"{a.method} {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
    body = b""
    if a.body is not None:
        body = a.body.encode()
        # The REST example takes writes with its bearer token only; the demo ignores it.
        head += f"Content-Type: {a.type}\r\nContent-Length: {len(body)}\r\n"
        head += "Authorization: Bearer secret\r\n"
    request = (head + "\r\n").encode() + body

    sock = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for i in range(a.n):
        sock.sendall(request)
        try:
            status, rhead, rbody, buf = read_response(sock, buf)
        except (ConnectionError, socket.timeout) as e:
            print(f"request {i + 1} of {a.n}: {e}")
            return 1
        if a.show and i == 0:
            sys.stderr.write(rhead.decode("latin-1") + "\r\n\r\n" + rbody.decode("latin-1") + "\n")
        if i == 0 and a.contains is not None and a.contains.encode() not in rbody:
            print(f"response body {rbody[:200].decode('latin-1')!r} lacks {a.contains!r}")
            return 1
        if status != a.expect:
            print(f"request {i + 1} of {a.n}: status {status}, expected {a.expect}: "
                  f"{rbody[:200].decode('latin-1')}")
            return 1
    sock.close()
    print(f"ok {a.n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
