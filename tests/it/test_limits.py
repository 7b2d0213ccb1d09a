"""Strict request rejections, size limits and timeouts of `crest demo` (RFC 9112).

Every rejection must carry the expected status and `Connection: close`, the server must then
close the connection, and a fresh connection must still be served."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()

HELLO = b"Hello, World!"


def expect_rejected(srv, data, status, what=None, close_timeout=2):
    """Sends data on a new connection; expects `status` with Connection: close, then EOF, then
    checks a fresh connection is still served."""
    with srv.connect() as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may reject before reading everything; the response still counts
        r = c.read_response()
        eq(r.status, status, "status for %s" % (what or repr(data[:60])))
        check_std_headers(r)
        check("close" in r.connection_tokens(),
              "rejection %d lacks Connection: close: %r" % (status, r.headers))
        c.expect_closed(close_timeout, "close after %d" % status)
    healthy(srv)
    return r


def healthy(srv):
    with srv.connect() as c:
        r = c.request("GET", "/plaintext")
        eq((r.status, r.body), (200, HELLO), "fresh connection after a rejection")


def req(line=b"GET /plaintext HTTP/1.1", headers=(b"Host: x",), body=b""):
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


# --- framing ----------------------------------------------------------------------------------

@T.case("Content-Length with Transfer-Encoding: 400 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: 5",
                                                          b"Transfer-Encoding: chunked"],
                                 b"5\r\nhello\r\n0\r\n\r\n"), 400)
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x",
                                                          b"Transfer-Encoding: chunked",
                                                          b"Content-Length: 5"],
                                 b"5\r\nhello\r\n0\r\n\r\n"), 400, "TE before CL")


@T.case("duplicate differing Content-Length: 400 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: 5",
                                                          b"Content-Length: 6"], b"hello!"), 400)
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: 5, 6"],
                                 b"hello!"), 400, "list of differing lengths")


@T.case("invalid Content-Length values (-1, +5, abc, 0x5, empty): 400 and close")
def _():
    with demo() as srv:
        for v in (b"-1", b"+5", b"abc", b"0x5", b"", b"5 5"):
            expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: " + v],
                                     b"hello"), 400, "Content-Length: %r" % v)


@T.case("Content-Length overflowing 64 bits: 400 or 413, and close")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: 99999999999999999999999"],
                   b"hello"))
        r = c.read_response()
        check(r.status in (400, 413), "status %d, want 400 or 413" % r.status)
        check("close" in r.connection_tokens(), "no Connection: close: %r" % r.headers)
        c.expect_closed(2)
        healthy(srv)


@T.case("Transfer-Encoding gzip (not ending in chunked): 501 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x",
                                                          b"Transfer-Encoding: gzip"],
                                 b"abc"), 501)
        # chunked last but gzip before it: the body would reach the app still compressed
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x",
                                                          b"Transfer-Encoding: gzip, chunked"],
                                 b"3\r\nabc\r\n0\r\n\r\n"), 501, "gzip, chunked")


@T.case("absolute-form request target (RFC 9112 3.2.2) is routed by its path")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "http://127.0.0.1:%d/plaintext" % srv.port)
        eq((r.status, r.body), (200, HELLO), "absolute form")
        r = c.request("GET", "HTTP://example.com/queries?queries=2")
        eq(r.status, 200, "absolute form with a query")
        eq(r.body.count(b'"id"'), 2, "query reached the handler")


@T.case("invalid chunk size line / missing CRLF after chunk data: 400 and close")
def _():
    with demo() as srv:
        te = [b"Host: x", b"Transfer-Encoding: chunked"]
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", te, b"zz\r\nhello\r\n0\r\n\r\n"),
                        400, "chunk size zz")
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", te, b"5\r\nhelloXX0\r\n\r\n"),
                        400, "no CRLF after chunk data")
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", te, b"-5\r\nhello\r\n0\r\n\r\n"),
                        400, "negative chunk size")


@T.case("chunk size overflowing 64 bits: 400 or 413, and close")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(req(b"POST /echo HTTP/1.1", [b"Host: x", b"Transfer-Encoding: chunked"],
                   b"1ffffffffffffffff0\r\nab"))
        r = c.read_response()
        check(r.status in (400, 413), "status %d, want 400 or 413" % r.status)
        check("close" in r.connection_tokens(), "no Connection: close: %r" % r.headers)
        c.expect_closed(2)
        healthy(srv)


# --- syntax ------------------------------------------------------------------------------------

@T.case("invalid characters in the method: 400 and close")
def _():
    with demo() as srv:
        for m in (b"G(T", b"GE\x00T", b"G\x7fT", b"GE T"):
            expect_rejected(srv, req(m + b" /plaintext HTTP/1.1"), 400, "method %r" % m)


@T.case("invalid characters in the target: 400 and close")
def _():
    with demo() as srv:
        for t in (b"/plain\x7ftext", b"/pl\x01ain", b"/a\x00b", b"/a\tb", b"/caf\xe9"):
            expect_rejected(srv, req(b"GET " + t + b" HTTP/1.1"), 400, "target %r" % t)


@T.case("malformed request lines (missing parts, bad version): 400")
def _():
    with demo() as srv:
        for line in (b"GET /plaintext", b"GET /plaintext HTTX/1.1", b"GET /plaintext HTTP/1",
                     b"GET /plaintext http/1.1", b"/plaintext HTTP/1.1"):
            expect_rejected(srv, req(line), 400, "request line %r" % line)


@T.case("invalid header names (space, separators, empty, space before colon): 400")
def _():
    with demo() as srv:
        for h in (b"Bad Header: x", b"X(y): 1", b": empty", b"Host : x", b"X-A\x00: 1",
                  b"NoColon"):
            expect_rejected(srv, req(headers=[b"Host: x", h]), 400, "header %r" % h)


@T.case("invalid header values (NUL, other controls, DEL): 400")
def _():
    with demo() as srv:
        for v in (b"a\x00b", b"a\x01b", b"a\x7fb", b"a\x1bb"):
            expect_rejected(srv, req(headers=[b"Host: x", b"X-A: " + v]), 400, "value %r" % v)


@T.case("obs-fold (continuation line): 400 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[b"Host: x", b"X-A: one", b" two"]), 400)
        expect_rejected(srv, req(headers=[b"Host: x", b"X-A: one", b"\ttwo"]), 400, "tab fold")


@T.case("bare CR in a header value or the request line: 400 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[b"Host: x", b"X-A: a\rb"]), 400, "CR in value")
        expect_rejected(srv, b"GET /plaintext HTTP/1.1\rHost: x\r\n\r\n", 400, "CR in line")
        expect_rejected(srv, b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\r\n", 400,
                        "CR CR LF at end of head")


@T.case("HTTP/1.1 without Host: 400 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[]), 400)


@T.case("HTTP/1.1 with two Host headers: 400 and close (RFC 9112 3.2)")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[b"Host: a", b"Host: b"]), 400)


@T.case("HTTP/1.0 without Host is accepted")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
        r = c.read_response()
        eq((r.status, r.body), (200, HELLO), "status, body")


@T.case("HTTP/2.0 and HTTP/3.0 versions: 505 and close")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"GET /plaintext HTTP/2.0"), 505)
        expect_rejected(srv, req(b"GET /plaintext HTTP/3.0"), 505, "HTTP/3.0")


@T.case("HTTP/2 prior-knowledge preface switches the connection to HTTP/2 (test_h2.py has more)")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        head = c.read_exact(9, 3, "the server's first frame")
        eq((head[3], head[5:9]), (4, b"\0\0\0\0"), "a SETTINGS frame on stream 0")
        healthy(srv)


# --- size limits ------------------------------------------------------------------------------

@T.case("request line over the default 8k: 414; just under: 200")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"GET /plaintext?" + b"a" * 9000 + b" HTTP/1.1"), 414)
        with srv.connect() as c:
            c.send(req(b"GET /plaintext?" + b"a" * 7000 + b" HTTP/1.1"))
            eq(c.read_response().status, 200, "7000-byte target")


@T.case("--max-request-line 100: 200-byte target 414, 50-byte target 200")
def _():
    with demo("--max-request-line", "100") as srv:
        expect_rejected(srv, req(b"GET /plaintext?" + b"a" * 200 + b" HTTP/1.1"), 414)
        with srv.connect() as c:
            c.send(req(b"GET /plaintext?" + b"a" * 50 + b" HTTP/1.1"))
            eq(c.read_response().status, 200, "short target")


@T.case("request line over the limit without its CRLF yet: 414 (no waiting for the end)")
def _():
    with demo("--max-request-line", "100") as srv, srv.connect() as c:
        c.send(b"GET /" + b"a" * 500)
        r = c.read_response(timeout=3)
        eq(r.status, 414, "status")
        c.expect_closed(2)


@T.case("header block over the default 16k: 431 (one big header, many small ones)")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[b"Host: x", b"X-Big: " + b"v" * 17000]), 431)
        many = [b"Host: x"] + [b"X-H%d: %s" % (i, b"v" * 400) for i in range(45)]
        expect_rejected(srv, req(headers=many), 431, "45 x 400-byte headers")
        with srv.connect() as c:
            c.send(req(headers=[b"Host: x", b"X-Big: " + b"v" * 12000]))
            eq(c.read_response().status, 200, "12000-byte header")


@T.case("--max-header-bytes 1k: 2000 bytes of headers 431, 500 bytes 200")
def _():
    with demo("--max-header-bytes", "1k") as srv:
        expect_rejected(srv, req(headers=[b"Host: x", b"X-Big: " + b"v" * 2000]), 431)
        with srv.connect() as c:
            c.send(req(headers=[b"Host: x", b"X-Big: " + b"v" * 500]))
            eq(c.read_response().status, 200, "500-byte header")


@T.case("too many headers (default 100): 120 -> 431, 90 -> 200")
def _():
    with demo() as srv:
        expect_rejected(srv, req(headers=[b"Host: x"] + [b"X-%d: 1" % i for i in range(119)]),
                        431)
        with srv.connect() as c:
            c.send(req(headers=[b"Host: x"] + [b"X-%d: 1" % i for i in range(89)]))
            eq(c.read_response().status, 200, "90 headers")


@T.case("--max-headers 5: 5 headers 200, 6 headers 431")
def _():
    with demo("--max-headers", "5") as srv:
        with srv.connect() as c:
            c.send(req(headers=[b"Host: x"] + [b"X-%d: 1" % i for i in range(4)]))
            eq(c.read_response().status, 200, "5 headers")
        expect_rejected(srv, req(headers=[b"Host: x"] + [b"X-%d: 1" % i for i in range(5)]),
                        431)


@T.case("body over the default 1 MiB (Content-Length): 413 before the body is sent")
def _():
    with demo() as srv:
        expect_rejected(srv, req(b"POST /echo HTTP/1.1",
                                 [b"Host: x", b"Content-Length: %d" % (2 << 20)]), 413)


@T.case("--max-body 1k: Content-Length 1024 -> 200, 1025 -> 413")
def _():
    with demo("--max-body", "1k") as srv:
        with srv.connect() as c:
            r = c.request("POST", "/echo", body=b"z" * 1024)
            eq((r.status, len(r.body)), (200, 1024), "1024-byte body")
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", [b"Host: x", b"Content-Length: 1025"]),
                        413)


@T.case("--max-body 1k: chunked 1024 -> 200, chunked 1025 and 2048 -> 413")
def _():
    te = [b"Host: x", b"Transfer-Encoding: chunked"]
    with demo("--max-body", "1k") as srv:
        with srv.connect() as c:
            c.send(req(b"POST /echo HTTP/1.1", te, chunked([b"a" * 1000, b"b" * 24])))
            r = c.read_response()
            eq((r.status, len(r.body)), (200, 1024), "1024 chunked bytes")
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", te,
                                 chunked([b"a" * 1000, b"b" * 25])), 413, "1025 chunked bytes")
        expect_rejected(srv, req(b"POST /echo HTTP/1.1", te, b"800\r\n" + b"c" * 2048),
                        413, "one 2048-byte chunk")


@T.case("chunked body over the default 1 MiB: 413 and close")
def _():
    with demo() as srv, srv.connect(timeout=10) as c:
        c.send(req(b"POST /echo HTTP/1.1", [b"Host: x", b"Transfer-Encoding: chunked"]))
        piece = b"10000\r\n" + b"q" * 0x10000 + b"\r\n"
        # Send 64 KiB chunks until the server answers (it must by ~1 MiB), then stop sending so
        # little is left unread when it closes.
        for _ in range(40):
            try:
                c.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            if c.wait_readable(0.0):
                break
        r = c.read_response()
        eq(r.status, 413, "status")
        check("close" in r.connection_tokens(), "no Connection: close: %r" % r.headers)
        c.read_until_close(3)
        healthy(srv)


@T.case("Expect: 100-continue with Content-Length over the limit: 413 without the body")
def _():
    with demo("--max-body", "1k") as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        eq(r.status, 413, "first response (no 100 Continue for a body that will be refused)")
        check("close" in r.connection_tokens(), "413 lacks Connection: close")
        c.expect_closed(2)
        healthy(srv)


# --- timeouts ---------------------------------------------------------------------------------

@T.case("--header-timeout 300ms: partial head -> 408 and close")
def _():
    with demo("--header-timeout", "300ms") as srv, srv.connect() as c:
        t0 = time.monotonic()
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        r = c.read_response(timeout=3)
        took = time.monotonic() - t0
        eq(r.status, 408, "status")
        check(took >= 0.25, "408 after only %.3fs" % took)
        check("close" in r.connection_tokens(), "408 lacks Connection: close")
        c.expect_closed(2)
        healthy(srv)


@T.case("--header-timeout 300ms: trickling a byte every 100ms does not extend it (slowloris)")
def _():
    with demo("--header-timeout", "300ms") as srv, srv.connect() as c:
        t0 = time.monotonic()
        head = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40
        for i in range(len(head)):
            try:
                c.send(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            if c.wait_readable(0.1):
                break
        took = time.monotonic() - t0
        check(took < 2.0, "server still waiting for the head after %.2fs" % took)
        healthy(srv)


@T.case("--header-timeout 300ms: a connection that never sends a byte is closed")
def _():
    with demo("--header-timeout", "300ms", "--keepalive-timeout", "300ms") as srv, \
            srv.connect() as c:
        rest = c.read_until_close(3)
        check(rest == b"" or rest.startswith(b"HTTP/1.1 408"),
              "unexpected bytes on a silent connection: %r" % rest[:100])
        healthy(srv)


@T.case("--keepalive-timeout 300ms: idle connection closed with no bytes")
def _():
    with demo("--keepalive-timeout", "300ms") as srv, srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "first request")
        t0 = time.monotonic()
        c.expect_closed(3, "idle close")
        took = time.monotonic() - t0
        check(took >= 0.2, "idle connection closed after only %.3fs" % took)
        healthy(srv)


@T.case("--keepalive-timeout 300ms: requests within the timeout keep the connection")
def _():
    with demo("--keepalive-timeout", "300ms") as srv, srv.connect() as c:
        for _ in range(4):
            eq(c.request("GET", "/plaintext").status, 200, "request")
            c.expect_open(0.1)


@T.case("--body-timeout 300ms: Content-Length 10 with 3 bytes -> 408 and close")
def _():
    with demo("--body-timeout", "300ms") as srv, srv.connect() as c:
        t0 = time.monotonic()
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        r = c.read_response(timeout=3)
        took = time.monotonic() - t0
        eq(r.status, 408, "status")
        check(took >= 0.25, "408 after only %.3fs" % took)
        check("close" in r.connection_tokens(), "408 lacks Connection: close")
        c.expect_closed(2)
        healthy(srv)


@T.case("--body-timeout 300ms: chunked body stalled mid-chunk -> 408 and close")
def _():
    with demo("--body-timeout", "300ms") as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\nabc")
        r = c.read_response(timeout=3)
        eq(r.status, 408, "status")
        c.expect_closed(2)
        healthy(srv)


@T.case("timeouts do not fire on a connection that is served promptly")
def _():
    with demo("--header-timeout", "300ms", "--body-timeout", "300ms") as srv, \
            srv.connect() as c:
        for _ in range(3):
            r = c.request("POST", "/echo", body=b"quick")
            eq((r.status, r.body), (200, b"quick"), "echo")


if __name__ == "__main__":
    T.main(needs=("crest",))
