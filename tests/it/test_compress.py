"""Response compression (crest_app_compress, the demo's --compress): gzip for clients that
accept it, over HTTP/1.1 and HTTP/2; bodies decoded here byte for byte against the uncompressed
answer; what is never compressed (small, refused, not text, ranges, the handler's own encoding);
Vary; HEAD; a large body in slices while small requests stay fast; streamed answers flushed per
write; curl --compressed."""

import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import shutil
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

T = Suite()

GZ = [("Accept-Encoding", "gzip")]


def diag(msg):
    """A figure for the log (a TAP comment)."""
    print("# " + msg, flush=True)



def gz_demo(tmp, *args):
    return demo("--db", "sqlite:%s/x.db?synchronous=normal" % tmp, "--threads", "1",
                "--compress", *args)


def gunzip(data):
    check(data[:2] == b"\x1f\x8b", "not a gzip stream: %r" % data[:16])
    return gzip.decompress(data)


def check_gzip(r, plain, what):
    """r is the gzip'd answer whose decoded body must be `plain`."""
    eq(r.status, 200, "%s status" % what)
    eq(r.headers.get("Content-Encoding"), "gzip", "%s Content-Encoding" % what)
    eq(r.headers.get("Vary"), "Accept-Encoding", "%s Vary" % what)
    if not r.chunked:
        eq(r.headers.get("Content-Length"), str(len(r.body)), "%s Content-Length" % what)
    eq(gunzip(r.body), plain, "%s decoded body" % what)
    check(len(r.body) < len(plain), "%s: %d compressed bytes for %d" % (what, len(r.body),
                                                                      len(plain)))


def check_plain(r, plain, what, vary=True):
    eq(r.status, 200, "%s status" % what)
    check(not r.headers.has("Content-Encoding"), "%s: Content-Encoding in %r" % (what, r.headers))
    eq(r.headers.get("Vary"), "Accept-Encoding" if vary else None, "%s Vary" % what)
    eq(r.body, plain, "%s body" % what)


def seed_todos(srv, n):
    """n todos with varied titles, pipelined on one connection (the writes group-commit)."""
    words = "buy milk call mom write report fix bug review walk dog pay rent book flight".split()
    out = bytearray()
    for i in range(n):
        title = " ".join(words[(i * k) % len(words)] for k in range(1, 6 + i % 8))
        body = json.dumps({"title": "%s, item %d of the list, %s" % (title, i, title),
                           "done": i % 3 == 0}).encode()
        out += build_request("POST", "/api/todos", [("Content-Type", "application/json")], body)
    with srv.connect(timeout=20) as c:
        c.send(bytes(out))
        for i in range(n):
            eq(c.read_response(timeout=20).status, 201, "POST %d status" % i)


# ---------------------------------------------------------------------------------------------


@T.case("the todos JSON and the chat page's script are gzip'd for a client that accepts it, and decode "
        "to the uncompressed answer byte for byte")
def _():
    with tmp_dir() as tmp, gz_demo(tmp) as srv:
        seed_todos(srv, 1000)
        with srv.connect(timeout=10) as c:
            # limit=1000 is over 64 KiB: the demo streams it (crest_res_write per slice of rows).
            for path in ("/api/todos?limit=1000", "/api/todos?limit=300", "/api/todos",
                         "/chat.js"):
                plain = c.request("GET", path)
                eq(plain.status, 200, "%s plain status" % path)
                check(len(plain.body) > 1024, "%s: %d bytes" % (path, len(plain.body)))
                check_plain(plain, plain.body, path)
                eq(plain.chunked, path == "/api/todos?limit=1000", "%s streamed (%d bytes)"
                   % (path, len(plain.body)))
                z = c.request("GET", path, GZ)
                check_gzip(z, plain.body, path)
                if path == "/chat.js":
                    eq(z.headers.get("Cache-Control"), "no-cache", "the handler's headers stay")
                diag("%s: %d -> %d bytes (%.1f%%)" % (path, len(plain.body), len(z.body),
                                                      100.0 * len(z.body) / len(plain.body)))


@T.case("Accept-Encoding is parsed: q=0 refuses, * covers, names are case-insensitive")
def _():
    with it_app("--compress") as srv, srv.connect() as c:
        plain = c.request("GET", "/text?kb=8").body
        yes = ["gzip", "GZIP", "x-gzip", "deflate, gzip", "br;q=1.0, gzip;q=0.5", "*",
               "identity, *;q=0.1", "gzip ; q=0.001", "gzip;q=1", "gzip, gzip;q=0", "Gzip;Q=1.000"]
        no = ["", "identity", "deflate, br", "gzip;q=0", "gzip;q=0.000", "GZIP; q=0.0, *",
              "*;q=0", "gzip;q=2", "gzip;q=zero", "gzipx", "deflate, gzip;q=0, *;q=1"]
        for ae in yes:
            r = c.request("GET", "/text?kb=8", [("Accept-Encoding", ae)])
            check(r.headers.get("Content-Encoding") == "gzip", "%r: not gzip'd: %r" % (ae, r))
            eq(gunzip(r.body), plain, "%r: decoded body" % ae)
        for ae in no:
            r = c.request("GET", "/text?kb=8", [("Accept-Encoding", ae)])
            check_plain(r, plain, "Accept-Encoding %r" % ae)
        # No Accept-Encoding at all: plain, and the Vary that tells caches why.
        check_plain(c.request("GET", "/text?kb=8"), plain, "no Accept-Encoding")
        # A strong ETag becomes weak on the gzip'd representation (other bytes), not on the other.
        eq(c.request("GET", "/text?kb=8&etag=1").headers.get("ETag"), '"text-v1"', "plain ETag")
        eq(c.request("GET", "/text?kb=8&etag=1", GZ).headers.get("ETag"), 'W/"text-v1"',
           "gzip ETag")
        eq(c.request("GET", "/text?kb=200&etag=1", GZ).headers.get("ETag"), 'W/"text-v1"',
           "sliced gzip ETag")
        # Two header lines count together.
        r = c.request("GET", "/text?kb=8", [("Accept-Encoding", "br"),
                                            ("Accept-Encoding", "gzip")])
        eq(r.headers.get("Content-Encoding"), "gzip", "two Accept-Encoding lines")


@T.case("never compressed: bodies under min_size, types that are not text, event streams, a "
        "206, a body the handler encoded; Vary only on compressible types")
def _():
    with it_app("--compress") as srv, srv.connect() as c:
        check_plain(c.request("GET", "/text?kb=0", GZ), b"", "an empty body")
        r = c.request("GET", "/users/7", GZ)
        check(not r.headers.has("Content-Encoding"), "tiny text compressed: %r" % r)
        text = c.request("GET", "/text?kb=8").body
        r = c.request("GET", "/text?kb=8&part=1", GZ)
        eq(r.status, 206, "206 status")
        check(not r.headers.has("Content-Encoding"), "206 compressed: %r" % r)
        eq(r.body, text, "206 body")
        r = c.request("GET", "/text?kb=8&enc=1", GZ)
        eq(r.headers.get("Content-Encoding"), "x-mine", "the handler's Content-Encoding")
        eq(r.body, text, "the handler's encoded body, untouched")
    with tmp_dir() as tmp, gz_demo(tmp) as srv, srv.connect() as c:
        r = c.request("GET", "/plaintext", GZ)
        check_plain(r, b"Hello, World!", "/plaintext (13 bytes, under min_size)")
        body = (b"0123456789abcdef" * 200)[:3000]
        for ctype, vary in (("image/png", False), ("application/octet-stream", False),
                            ("text/event-stream", False), ("text/event-stream; charset=utf-8",
                                                           False)):
            r = c.request("POST", "/echo", GZ + [("Content-Type", ctype)], body)
            check_plain(r, body, ctype, vary=vary)
        for ctype in ("text/plain", "text/css", "application/json", "application/javascript",
                      "text/javascript", "image/svg+xml", "application/xml",
                      "application/problem+json", "application/wasm",
                      "Application/JSON; charset=utf-8"):
            r = c.request("POST", "/echo", GZ + [("Content-Type", ctype)], body)
            check_gzip(r, body, ctype)
        r = c.request("POST", "/echo", GZ + [("Content-Type", "text/plain")], body[:1023])
        check_plain(r, body[:1023], "1023 bytes (min_size 1024)")


@T.case("HEAD gets the head a GET gets: Content-Encoding, Vary, the compressed length (or "
        "chunked framing for a large body), and no body")
def _():
    with it_app("--compress") as srv, srv.connect() as c:
        get = c.request("GET", "/text?kb=8", GZ)
        head = c.request("HEAD", "/text?kb=8", GZ)
        eq(head.status, 200, "HEAD status")
        eq(head.body, b"", "HEAD body")
        for name in ("Content-Encoding", "Vary", "Content-Length", "Content-Type"):
            eq(head.headers.get(name), get.headers.get(name), "HEAD %s" % name)
        get = c.request("GET", "/text?kb=200", GZ)
        check(get.chunked, "a large body goes out chunked")
        head = c.request("HEAD", "/text?kb=200", GZ)
        eq(head.headers.get("Content-Encoding"), "gzip", "large HEAD Content-Encoding")
        eq(head.headers.get("Transfer-Encoding"), "chunked", "large HEAD framing")
        check(not head.headers.has("Content-Length"), "large HEAD Content-Length")
        # The connection is still in step: nothing followed the HEAD's head.
        eq(c.request("GET", "/users/1").status, 200, "the next request")
        head = c.request("HEAD", "/text?kb=8")
        check(not head.headers.has("Content-Encoding"), "HEAD without Accept-Encoding")
        eq(head.headers.get("Content-Length"), str(8192), "HEAD plain Content-Length")


@T.case("a large body is compressed in slices (chunked), decodes, and keeps pipelined answers "
        "in order; HTTP/1.0 gets it close-delimited")
def _():
    with it_app("--compress") as srv:
        with srv.connect(timeout=10) as c:
            plain = c.request("GET", "/text?kb=1024").body
            eq(len(plain) > 1000000, True, "a 1 MiB text")
            c.send(build_request("GET", "/users/1", GZ) + build_request("GET", "/text?kb=1024", GZ)
                   + build_request("GET", "/text?kb=300", GZ) + build_request("GET", "/users/2"))
            eq(c.read_response().body, b"user 1", "first pipelined answer")
            r = c.read_response(timeout=10)
            check(r.chunked, "1 MiB body not chunked: %r" % r)
            check_gzip(r, plain, "1 MiB body")
            diag("1 MiB of text: %d bytes gzip'd in %d chunks" % (len(r.body), len(r.chunks)))
            r = c.read_response(timeout=10)
            check_gzip(r, plain[:300 * 1024], "300 KiB body")
            eq(c.read_response().body, b"user 2", "last pipelined answer")
        with srv.connect(timeout=10) as c:
            r = c.request("GET", "/text?kb=500", GZ, version="HTTP/1.0")
            check(not r.chunked and not r.headers.has("Content-Length"), "HTTP/1.0 framing")
            eq(gunzip(r.body), plain[:500 * 1024], "HTTP/1.0 decoded body")


# The load of the next case runs in a process of its own: in the timing process its threads
# would hold the interpreter's lock for milliseconds and the figure would be the client's.
LOADER = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
from harness import *
port, n = int(sys.argv[2]), int(sys.argv[3])
tls = client_context(sys.argv[4]) if len(sys.argv) > 4 else False  # the server's certificate
text = (b"".join(b"%06d some words that repeat, and some that do not: %x\n" % (i, i * 2654435761)
                 for i in range(16000)))[:900 * 1024]
stop = threading.Event()
done, errors = [], []
def big():
    try:
        with Conn(port, timeout=20, tls=tls) as c:
            while not stop.is_set():
                r = c.request("POST", "/echo", [("Accept-Encoding", "gzip"),
                                                ("Content-Type", "text/plain")], text, timeout=20)
                eq(r.headers.get("Content-Encoding"), "gzip", "echo Content-Encoding")
                if not done:
                    eq(gzip.decompress(r.body), text, "decoded echo")
                done.append(len(r.body))
                if len(done) == 1:
                    print("first %d" % len(r.body), flush=True)
    except BaseException as e:
        errors.append(e)
        print("error %r" % e, flush=True)
import gzip
ts = [threading.Thread(target=big, daemon=True) for _ in range(n)]
for t in ts:
    t.start()
sys.stdin.read()  # until the timing process closes it
stop.set()
for t in ts:
    t.join(30)
print("done %d %d" % (len(done), len(errors)), flush=True)
sys.exit(1 if errors else 0)
"""


@T.case("large compressions (900 KiB echoes) run in slices: a concurrent /plaintext stays fast")
def _():
    with tmp_dir() as tmp, gz_demo(tmp, "--max-body", "2m") as srv:
        load = subprocess.Popen([sys.executable, "-c", LOADER, os.path.dirname(
            os.path.abspath(__file__)), str(srv.port), "2", *([srv.tls_cert] if srv.tls_cert
                                                                else [])], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lat = []
        try:
            first = load.stdout.readline().decode()
            if not first.startswith("first "):
                fail("loader: %r %r" % (first, load.stderr.read()))
            with srv.connect() as c:
                t_end = time.monotonic() + 1.0
                while time.monotonic() < t_end:
                    t0 = time.monotonic()
                    r = c.request("GET", "/plaintext")
                    lat.append(time.monotonic() - t0)
                    eq(r.body, b"Hello, World!", "/plaintext body")
        finally:
            load.stdin.close()
            try:
                load.wait(timeout=20)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait()
            out, err = load.stdout.read().decode(), load.stderr.read().decode()
        eq(load.returncode, 0, "loader exit (%r %r)" % (out, err))
        echoes = int(out.split()[1])
        lat.sort()
        diag("/plaintext beside two 900 KiB gzip echoes (one loop thread): %d requests, "
             "p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d echoes of %s gzip'd bytes"
             % (len(lat), 1000 * lat[len(lat) // 2], 1000 * lat[int(len(lat) * 0.99)],
                1000 * lat[-1], echoes, first.split()[1]))
        check(echoes >= 2, "large echoes done: %d" % echoes)
        # Generous bounds (the machine is shared, and sanitizers slow the server): with one slice
        # per turn of the loop a /plaintext waits about one slice per echo in progress (~0.6 ms
        # each here, p50 ~1.3 ms); compressing a whole echo per turn made it wait for an echo
        # (~15 ms): as many /plaintext answers as echoes.
        check(statistics.median(lat) < 0.1, "median /plaintext latency %.1f ms"
              % (1000 * statistics.median(lat)))
        check(len(lat) >= 2 * echoes, "%d /plaintext answers beside %d echoes" % (len(lat), echoes))


@T.case("a client that leaves in the middle of a sliced body: the server goes on serving")
def _():
    with it_app("--compress") as srv:
        for _ in range(3):
            c = srv.connect(rcvbuf=4096)
            c.send(build_request("GET", "/text?kb=1024", GZ))
            c.read_until(b"\r\n\r\n", what="the head")
            c.abort()
        with srv.connect() as c:
            r = c.request("GET", "/text?kb=300", GZ, timeout=10)
            eq(len(gunzip(r.body)), 300 * 1024, "a later large body")


@T.case("a streamed answer is compressed as it goes: each write reaches the client at once and "
        "decodes, and the whole decodes to the uncompressed stream")
def _():
    with it_app("--compress") as srv, srv.connect() as c:
        plain = c.request("GET", "/stream?n=3000")
        eq(plain.status, 200, "plain stream status")
        z = c.request("GET", "/stream?n=3000", GZ)
        check(z.chunked, "streamed answer not chunked")
        check_gzip(z, plain.body, "/stream")
        diag("/stream?n=3000: %d -> %d bytes" % (len(plain.body), len(z.body)))
        # /drip writes a line, then the next after 300 ms: the first must decode on its own.
        c.send(build_request("GET", "/drip?n=2&ms=300", GZ))
        t0 = time.monotonic()
        head = c.read_until(b"\r\n\r\n", what="the drip's head")
        check(b"Content-Encoding: gzip" in head, "drip not compressed: %r" % head)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        got = b""
        while b"line 0 of the drip\n" not in got:
            size = int(c.read_until(b"\r\n", what="a chunk size").strip(), 16)
            check(size > 0, "the stream ended before its first line: %r" % got)
            got += d.decompress(c.read_exact(size + 2)[:-2])
        first = time.monotonic() - t0
        check(b"line 1" not in got, "the second line came with the first: %r" % got)
        while True:  # the rest of the chunks
            size = int(c.read_until(b"\r\n", what="a chunk size").strip(), 16)
            if size == 0:
                c.read_until(b"\r\n", what="the last CRLF")
                break
            got += d.decompress(c.read_exact(size + 2)[:-2])
        check(d.eof, "the gzip stream did not end")
        eq(got, b"line 0 of the drip\nline 1 of the drip\n", "decoded drip")
        diag("first drip line decoded %.0f ms after the request (the second comes at 300)"
             % (1000 * first))
        check(first < 0.29, "first line took %.0f ms: held back until the next write?"
              % (1000 * first))
        # HEAD of a stream: its head, and no body.
        r = c.request("HEAD", "/stream?n=5", GZ)
        eq(r.headers.get("Content-Encoding"), "gzip", "HEAD of a stream")
        eq(c.request("GET", "/users/3").body, b"user 3", "the connection is in step")


# ---------------------------------------------------------------------------------------------
# HTTP/2 (python3-h2), by prior knowledge in cleartext or ALPN over TLS.


class H2:
    def __init__(self, srv, timeout=IO_TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
        if TLS_MODE:
            sock = client_context(alpn=("h2",)).wrap_socket(sock, server_hostname="localhost")
            eq(sock.selected_alpn_protocol(), "h2", "ALPN")
        self.sock = sock
        self.h = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h.initiate_connection()
        self.sock.sendall(self.h.data_to_send())
        self.streams = {}
        self.timeout = timeout

    def close(self):
        self.sock.close()

    def get(self, path, headers=(), method="GET"):
        sid = self.h.get_next_available_stream_id()
        self.h.send_headers(sid, [(":method", method), (":path", path), (":scheme", "https" if
                                  TLS_MODE else "http"), (":authority", "test")] + list(headers),
                            end_stream=True)
        self.sock.sendall(self.h.data_to_send())
        st = self.streams[sid] = {"headers": None, "body": bytearray(), "ended": False,
                                  "chunks": []}
        deadline = time.monotonic() + self.timeout
        while not st["ended"]:
            check(time.monotonic() < deadline, "timed out waiting for stream %d" % sid)
            data = self.sock.recv(65536)
            check(data, "connection closed")
            for ev in self.h.receive_data(data):
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    s["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    s["body"] += ev.data
                    s["chunks"].append(bytes(ev.data))
                    self.h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    fail("stream %d reset" % ev.stream_id)
            out = self.h.data_to_send()
            if out:
                self.sock.sendall(out)
        return st


@T.case("HTTP/2: complete, large and streamed answers are gzip'd too, and decode")
def _():
    with it_app("--compress") as srv:
        cl = H2(srv, timeout=10)
        try:
            for path in ("/text?kb=8", "/text?kb=700", "/stream?n=2000"):
                plain = cl.get(path)
                z = cl.get(path, [("accept-encoding", "gzip")])
                eq(z["headers"][":status"], "200", "%s status" % path)
                eq(z["headers"].get("content-encoding"), "gzip", "%s content-encoding" % path)
                eq(z["headers"].get("vary"), "Accept-Encoding", "%s vary" % path)
                check(plain["headers"].get("content-encoding") is None, "%s plain" % path)
                eq(gunzip(bytes(z["body"])), bytes(plain["body"]), "%s decoded" % path)
                if "content-length" in z["headers"]:
                    eq(int(z["headers"]["content-length"]), len(z["body"]), "content-length")
            z = cl.get("/text?kb=8", [("accept-encoding", "gzip")], method="HEAD")
            eq(z["headers"].get("content-encoding"), "gzip", "HEAD content-encoding")
            eq(bytes(z["body"]), b"", "HEAD body")
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            z = cl.get("/drip?n=3&ms=1", [("accept-encoding", "gzip")])
            eq(d.decompress(bytes(z["body"])), b"".join(b"line %d of the drip\n" % i
                                                        for i in range(3)), "h2 drip")
        finally:
            cl.close()


@T.case("curl --compressed gets the same bytes as a plain request, HTTP/1.1 and HTTP/2")
def _():
    if not shutil.which("curl"):
        fail("curl missing")
    with it_app("--compress") as srv:
        for extra in ([], ["--http2"] if TLS_MODE else ["--http2-prior-knowledge"]):
            outs = []
            for comp in ([], ["--compressed"]):
                p = subprocess.run(["curl", "-sS", "--max-time", "10", "-D", "-", *extra,
                                    *srv.curl_args(), *comp, srv.url("/text?kb=400")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                eq(p.returncode, 0, "curl exit (%r)" % p.stderr)
                head, _, body = p.stdout.partition(b"\r\n\r\n")
                check((b"content-encoding: gzip" in head.lower()) == bool(comp),
                      "curl %r head %r" % (comp, head))
                outs.append(body)
            eq(len(outs[0]), 400 * 1024, "plain length")
            eq(outs[1], outs[0], "curl --compressed %r body" % extra)


if __name__ == "__main__":
    T.main(needs=("crest", "it_app"))
