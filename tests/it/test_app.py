"""The integration-test app (tests/it/it_app.c): route parameters and wildcards, 404/405,
middleware (app-wide header, short-circuit), async answers, chunked streaming, large writes
with backpressure, and clients that leave before an async answer."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()


def get(c, target, headers=None, method="GET", body=None):
    return c.request(method, target, headers, body)


def expect_text(r, body, status=200):
    eq(r.status, status, "status")
    check_std_headers(r)
    eq(r.body, body.encode() if isinstance(body, str) else body, "body")


# --- routing ----------------------------------------------------------------------------------

@T.case("GET /users/:id -> 'user <id>'")
def _():
    with it_app() as srv, srv.connect() as c:
        for i in ("42", "0", "abc-DEF_9"):
            expect_text(get(c, "/users/" + i), "user " + i)


@T.case("POST /users/:id -> 'updated <id>'")
def _():
    with it_app() as srv, srv.connect() as c:
        expect_text(get(c, "/users/7", method="POST", body=b""), "updated 7")
        expect_text(get(c, "/users/x9", method="POST", body=b"{}"), "updated x9")


@T.case("/users/:id matches one segment only: /users/1/extra -> 404")
def _():
    with it_app() as srv, srv.connect() as c:
        eq(get(c, "/users/1/extra").status, 404, "status")
        eq(get(c, "/user/1").status, 404, "status for /user/1")


@T.case("query string is not part of the param: /users/5?x=1 -> 'user 5'")
def _():
    with it_app() as srv, srv.connect() as c:
        expect_text(get(c, "/users/5?x=1"), "user 5")


@T.case("GET /files/* -> 'file <rest>' (nested, empty, single)")
def _():
    with it_app() as srv, srv.connect() as c:
        expect_text(get(c, "/files/a/b/c.txt"), "file a/b/c.txt")
        expect_text(get(c, "/files/x"), "file x")
        expect_text(get(c, "/files/"), "file ")
        expect_text(get(c, "/files/dir/"), "file dir/")


@T.case("unknown path -> 404")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/nowhere")
        eq(r.status, 404, "status")
        check_std_headers(r)
        expect_text(get(c, "/users/3"), "user 3")


@T.case("DELETE /users/1 -> 405 with Allow listing GET, HEAD and POST")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/users/1", method="DELETE")
        eq(r.status, 405, "status")
        allow = {t.strip() for t in (r.headers.get("Allow") or "").split(",") if t.strip()}
        eq(allow, {"GET", "HEAD", "POST"}, "Allow methods")
        r = get(c, "/files/a", method="PUT", body=b"x")
        eq(r.status, 405, "PUT /files/a status")
        allow = {t.strip() for t in (r.headers.get("Allow") or "").split(",") if t.strip()}
        eq(allow, {"GET", "HEAD"}, "Allow for /files/*")


@T.case("HEAD on a parameterised route: headers of the GET, no body")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(build_request("HEAD", "/users/12") + build_request("GET", "/users/13"))
        r = c.read_response("HEAD")
        eq(r.status, 200, "HEAD status")
        eq(r.headers.get("Content-Length"), str(len("user 12")), "HEAD Content-Length")
        expect_text(c.read_response(), "user 13")


# --- middleware -------------------------------------------------------------------------------

@T.case("app-wide middleware: X-Mw: 1 on 200 responses of every route")
def _():
    with it_app() as srv, srv.connect() as c:
        for path in ("/users/1", "/files/a", "/async?ms=1", "/stream?n=1", "/big?kb=1"):
            r = get(c, path)
            eq(r.status, 200, "%s status" % path)
            eq(r.headers.get("X-Mw"), "1", "%s X-Mw" % path)
        r = get(c, "/private/data", [("X-Token", "secret")])
        eq(r.headers.get("X-Mw"), "1", "/private/data X-Mw")


@T.case("app-wide middleware: X-Mw: 1 on 404 and 405 responses too")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/nowhere")
        eq((r.status, r.headers.get("X-Mw")), (404, "1"), "404 status, X-Mw")
        r = get(c, "/users/1", method="DELETE")
        eq((r.status, r.headers.get("X-Mw")), (405, "1"), "405 status, X-Mw")


@T.case("/private without X-Token: 401 'unauthorized', route not run, app middleware ran")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/private/data")
        expect_text(r, "unauthorized", 401)
        eq(r.headers.get("X-Mw"), "1", "X-Mw on the 401 (app-wide middleware runs first)")
        expect_text(get(c, "/private/data", [("X-Token", "wrong")]), "unauthorized", 401)
        expect_text(get(c, "/private/data", [("X-Token", "")]), "unauthorized", 401)
        # The connection survives a short-circuit.
        expect_text(get(c, "/users/2"), "user 2")


@T.case("/private with X-Token: secret -> 'secret data'")
def _():
    with it_app() as srv, srv.connect() as c:
        expect_text(get(c, "/private/data", [("X-Token", "secret")]), "secret data")
        expect_text(get(c, "/private/data", [("x-token", "secret")]), "secret data")


@T.case("middleware short-circuit with a request body: body consumed, next request OK")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(build_request("POST", "/private/data", body=b"p" * 5000)
               + build_request("GET", "/users/4"))
        r = c.read_response()
        eq(r.status, 401, "status")
        expect_text(c.read_response(), "user 4")


# --- async ------------------------------------------------------------------------------------

@T.case("GET /async?ms=150 -> 'async 150', answered after about 150 ms")
def _():
    with it_app() as srv, srv.connect() as c:
        t0 = time.monotonic()
        r = get(c, "/async?ms=150")
        took = time.monotonic() - t0
        expect_text(r, "async 150")
        check(took >= 0.14, "answered after %.3fs" % took)
        check(took < 2, "answered after %.3fs" % took)
        expect_text(get(c, "/async?ms=0"), "async 0")


@T.case("async answers do not block the loop: 10 x /async?ms=400 in parallel, 1 thread")
def _():
    def one(port, k):
        with Conn(port, timeout=5) as c:
            r = c.request("GET", "/async?ms=400")
            eq((r.status, r.body), (200, b"async 400"), "conn %d" % k)

    with it_app("--threads", "1") as srv:
        t0 = time.monotonic()
        res = run_parallel(one, [(srv.port, k) for k in range(10)])
        took = time.monotonic() - t0
        errs = [r for r in res if isinstance(r, BaseException)]
        check(not errs, "failures: %r" % errs[:2])
        check(took < 2.0, "10 parallel 400 ms requests took %.2fs (serialised?)" % took)


@T.case("a fast request is served while another connection waits on /async (1 thread)")
def _():
    with it_app("--threads", "1") as srv, srv.connect() as slow, srv.connect() as fast:
        slow.send(build_request("GET", "/async?ms=1000"))
        t0 = time.monotonic()
        expect_text(get(fast, "/users/9"), "user 9")
        check(time.monotonic() - t0 < 0.5, "blocked behind the async request")
        expect_text(slow.read_response(timeout=3), "async 1000")


@T.case("pipelined: /async?ms=200 then /users/1 -> responses in request order")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(build_request("GET", "/async?ms=200") + build_request("GET", "/users/1")
               + build_request("GET", "/async?ms=10"))
        expect_text(c.read_response(), "async 200")
        expect_text(c.read_response(), "user 1")
        expect_text(c.read_response(), "async 10")


def abandoned_async(srv, how):
    c = srv.connect()
    expect_text(get(c, "/users/1"), "user 1")  # the server has accepted this connection
    c.send(build_request("GET", "/async?ms=300"))
    if how == "pipelined":
        # A second request queued behind the pending one when the client leaves.
        c.send(build_request("GET", "/async?ms=300"))
    if how == "rst":
        c.abort()
    elif how == "half":
        c.shutdown_write()  # the client is done sending but still reads
        return c
    else:
        c.close()
    return None


@T.case("client closes before the async answer: server stays healthy, exits 0")
def _():
    with it_app("--threads", "1") as srv:
        for how in ("fin", "rst", "pipelined"):
            abandoned_async(srv, how)
        # This one's timer fires after the abandoned ones' (300 ms each), on the same loop.
        with srv.connect() as c:
            expect_text(get(c, "/async?ms=450"), "async 450")
            expect_text(get(c, "/users/8"), "user 8")


@T.case("client half-closes (SHUT_WR) after an async request: still gets the answer or close")
def _():
    with it_app("--threads", "1") as srv:
        c = abandoned_async(srv, "half")
        with c:
            rest = c.read_until_close(3)
            check(rest == b"" or rest.startswith(b"HTTP/1.1 200"),
                  "unexpected bytes after half-close: %r" % rest[:100])
        with srv.connect() as c2:
            expect_text(get(c2, "/users/8"), "user 8")


@T.case("many clients leave before async answers (--threads 2): healthy afterwards")
def _():
    with it_app("--threads", "2") as srv:
        for i in range(20):
            c = srv.connect()
            c.send(build_request("GET", "/async?ms=%d" % (50 + i * 5)))
            if i % 2:
                c.abort()
            else:
                c.close()
        with srv.connect() as c:
            expect_text(get(c, "/async?ms=300"), "async 300")


# --- streaming --------------------------------------------------------------------------------

def pieces(n):
    return "".join("piece %d\n" % i for i in range(n)).encode()


@T.case("GET /stream?n=5: chunked, no Content-Length, 'piece I\\n' x 5")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/stream?n=5")
        eq(r.status, 200, "status")
        check_std_headers(r)
        check(r.chunked, "response is not chunked: %r" % r.headers)
        eq(r.headers.get("Content-Length"), None, "Content-Length on a chunked response")
        eq(r.body, pieces(5), "body")
        check(len(r.chunks) >= 1, "no chunks")
        expect_text(get(c, "/users/1"), "user 1")


@T.case("GET /stream?n=0: valid empty chunked body")
def _():
    with it_app() as srv, srv.connect() as c:
        r = get(c, "/stream?n=0")
        eq((r.status, r.body), (200, b""), "status, body")
        expect_text(get(c, "/users/1"), "user 1")


@T.case("GET /stream?n=20000: large stream arrives complete")
def _():
    with it_app() as srv, srv.connect(timeout=10) as c:
        r = get(c, "/stream?n=20000")
        eq(r.status, 200, "status")
        check(r.body == pieces(20000), "stream body differs (len %d)" % len(r.body))


@T.case("HEAD /stream?n=3: headers only, no chunk bytes on the wire")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(build_request("HEAD", "/stream?n=3") + build_request("GET", "/users/5"))
        r = c.read_response("HEAD")
        eq(r.status, 200, "HEAD status")
        eq(r.headers.get("X-Mw"), "1", "X-Mw")
        expect_text(c.read_response(), "user 5")
        eq(c.read_available(0.1), b"", "bytes after the responses")


@T.case("HTTP/1.0 client: /stream is delimited without chunked (close or length)")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(b"GET /stream?n=4 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        eq(r.status, 200, "status")
        check(not r.chunked, "chunked sent to an HTTP/1.0 client")
        eq(r.body, pieces(4), "body")


@T.case("pipelined: /stream between two requests, all in order")
def _():
    with it_app() as srv, srv.connect() as c:
        c.send(build_request("GET", "/users/1") + build_request("GET", "/stream?n=50")
               + build_request("GET", "/files/z"))
        expect_text(c.read_response(), "user 1")
        r = c.read_response()
        eq((r.status, r.body), (200, pieces(50)), "stream")
        expect_text(c.read_response(), "file z")


# --- large writes -----------------------------------------------------------------------------

@T.case("GET /big?kb=1024 read slowly through a small window: every byte arrives", timeout=40)
def _():
    with it_app() as srv, srv.connect(timeout=10, rcvbuf=4096) as c:
        c.send(build_request("GET", "/big?kb=1024"))
        head = c.read_until(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:40])
        check(b"\r\ncontent-length: 1048576\r\n" in head.lower(),
              "Content-Length not 1048576: %r" % head)
        got = len(c.buf)
        bad = c.buf.count(b"x") != len(c.buf)
        c.buf.clear()
        c.sock.settimeout(10)
        n = 0
        while got < 1 << 20:
            data = c.sock.recv(4096)
            if not data:
                fail("closed after %d of 1048576 body bytes" % got)
            if data.count(b"x") != len(data):
                bad = True
            got += len(data)
            n += 1
            if n < 100:
                time.sleep(0.002)  # read slowly at first so the server's writes back up
        eq(got, 1 << 20, "body bytes")
        check(not bad, "body contains bytes other than 'x'")
        expect_text(get(c, "/users/1"), "user 1")


@T.case("a stalled reader of 8 pipelined /big?kb=1024 does not stall others (1 thread)",
        timeout=40)
def _():
    with it_app("--threads", "1") as srv, srv.connect(timeout=15, rcvbuf=4096) as big, \
            srv.connect() as other:
        # 8 MiB of answers, far more than the socket buffers hold, so the server must queue
        # or pause while this client reads nothing.
        big.send(b"".join(build_request("GET", "/big?kb=1024") for _ in range(8)))
        check(big.wait_readable(5), "no answer bytes within 5s")  # the server is writing now
        for i in range(5):
            t0 = time.monotonic()
            expect_text(get(other, "/users/%d" % i), "user %d" % i)
            check(time.monotonic() - t0 < 0.5, "blocked behind a stalled writer")
        for i in range(8):
            r = big.read_response(timeout=15)
            eq(r.status, 200, "response %d status" % i)
            check(len(r.body) == 1 << 20 and r.body.count(b"x") == len(r.body),
                  "response %d body: %d bytes" % (i, len(r.body)))


@T.case("32 pipelined /big?kb=256 requests written before any read: all 8 MiB arrive",
        timeout=40)
def _():
    with it_app("--threads", "1") as srv, srv.connect(timeout=15) as c:
        c.send(b"".join(build_request("GET", "/big?kb=256") for _ in range(32))
               + build_request("GET", "/users/32"))
        for i in range(32):
            r = c.read_response(timeout=15)
            eq(r.status, 200, "response %d status" % i)
            check(len(r.body) == 256 * 1024 and r.body.count(b"x") == len(r.body),
                  "response %d body: %d bytes" % (i, len(r.body)))
        expect_text(c.read_response(), "user 32")


@T.case("GET /big?kb=0 and HEAD /big?kb=4")
def _():
    with it_app() as srv, srv.connect() as c:
        expect_text(get(c, "/big?kb=0"), b"")
        r = get(c, "/big?kb=4", method="HEAD")
        eq((r.status, r.headers.get("Content-Length"), r.body), (200, "4096", b""), "HEAD")
        expect_text(get(c, "/big?kb=3"), b"x" * 3072)


@T.case("client leaves in the middle of 8 pipelined /big?kb=1024: server healthy, exits 0")
def _():
    with it_app("--threads", "1") as srv:
        c = srv.connect(rcvbuf=4096)
        c.send(b"".join(build_request("GET", "/big?kb=1024") for _ in range(8)))
        c.read_until(b"\r\n\r\n")
        c.read_exact(1000)
        c.abort()
        with srv.connect() as c2:
            expect_text(get(c2, "/users/1"), "user 1")
            expect_text(get(c2, "/big?kb=64"), b"x" * 65536)


if __name__ == "__main__":
    T.main(needs=("it_app",))
