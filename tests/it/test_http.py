"""HTTP/1.1 protocol behaviour of `crest demo` (RFC 9112): routes, keep-alive, HTTP/1.0,
pipelining, split writes, Expect: 100-continue, chunked request bodies, HEAD, threads."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()

HELLO = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'


@T.case("GET /plaintext: 200, body, text/plain, Server, Date, Content-Length")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/plaintext")
        check_ok_text(r, HELLO, "text/plain")
        eq(r.version, "HTTP/1.1", "response version")


@T.case("GET /json: 200, exact body, application/json")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/json")
        check_ok_text(r, JSON, "application/json")


@T.case("GET /plaintext?query: the query string does not change routing")
def _():
    with demo() as srv, srv.connect() as c:
        check_ok_text(c.request("GET", "/plaintext?a=1&b=%20"), HELLO, "text/plain")


@T.case("GET /healthz: 200")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/healthz")
        eq(r.status, 200, "status")
        check_std_headers(r)


@T.case("GET /metrics: requests by status and open connections")
def _():
    with demo() as srv, srv.connect() as c:
        for _ in range(3):
            eq(c.request("GET", "/plaintext").status, 200, "plaintext status")
        eq(c.request("GET", "/nope").status, 404, "404 status")
        r = c.request("GET", "/metrics")
        eq(r.status, 200, "metrics status")
        check_std_headers(r)
        text = r.body.decode("utf-8", "replace")
        m = re.search(r'^crest_requests_total\{status="200"\} (\d+)\s*$', text, re.M)
        check(m is not None, "no crest_requests_total{status=\"200\"} line in %r" % text[:800])
        check(int(m.group(1)) >= 3, "200 count %s < 3" % m.group(1))
        m = re.search(r'^crest_requests_total\{status="404"\} (\d+)\s*$', text, re.M)
        check(m is not None and int(m.group(1)) >= 1, "no 404 count >= 1 in %r" % text[:800])
        m = re.search(r"^crest_open_connections (\d+)\s*$", text, re.M)
        check(m is not None, "no crest_open_connections line in %r" % text[:800])
        check(int(m.group(1)) >= 1, "open connections %s < 1 while one is open" % m.group(1))


@T.case("HEAD /plaintext, /json, /healthz: GET's headers, no body, connection reusable")
def _():
    with demo() as srv, srv.connect() as c:
        for path, body in (("/plaintext", HELLO), ("/json", JSON)):
            r = c.request("HEAD", path)
            check_ok_text(r, body, method="HEAD")
        r = c.request("HEAD", "/healthz")
        eq(r.status, 200, "HEAD /healthz status")
        # Any stray body bytes would corrupt this response.
        check_ok_text(c.request("GET", "/plaintext"), HELLO)
        eq(c.read_available(0.1), b"", "bytes after the last response")


@T.case("unknown path: 404 with framing headers, connection stays usable")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/does-not-exist")
        eq(r.status, 404, "status")
        check_std_headers(r)
        check("close" not in r.connection_tokens(), "404 closed the connection")
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


@T.case("known path, other method: 405 with Allow: GET, HEAD")
def _():
    with demo() as srv, srv.connect() as c:
        for method in ("DELETE", "POST", "PUT"):
            r = c.request(method, "/plaintext", body=b"" if method != "DELETE" else None)
            eq(r.status, 405, "%s /plaintext status" % method)
            check_std_headers(r)
            eq(r.headers.get("Allow"), "GET, HEAD", "%s /plaintext Allow" % method)
        r = c.request("GET", "/echo")
        eq(r.status, 405, "GET /echo status")
        allow = {t.strip() for t in (r.headers.get("Allow") or "").split(",")}
        check("POST" in allow, "GET /echo Allow %r lacks POST" % r.headers.get("Allow"))
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


@T.case("POST /echo: binary body byte for byte, Content-Type echoed")
def _():
    body = bytes(range(256)) * 4 + b"\r\n\r\n\x00end"
    with demo() as srv, srv.connect() as c:
        r = c.request("POST", "/echo", [("Content-Type", "application/x-test; v=1")], body)
        check_ok_text(r, body)
        eq(r.headers.get("Content-Type"), "application/x-test; v=1", "echoed Content-Type")


@T.case("POST /echo: empty body (Content-Length: 0)")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("POST", "/echo", [("Content-Type", "text/plain")], b"")
        check_ok_text(r, b"")


@T.case("POST /echo: 900 KiB body (under the 1 MiB default limit)")
def _():
    body = os.urandom(900 * 1024)
    with demo() as srv, srv.connect(timeout=10) as c:
        r = c.request("POST", "/echo", [("Content-Type", "application/octet-stream")], body)
        eq(r.status, 200, "status")
        eq(len(r.body), len(body), "echoed length")
        check(r.body == body, "echoed bytes differ")


@T.case("POST /echo: chunked body with extensions and trailers")
def _():
    body = chunked([b"Wiki", b"pedia ", b"in \r\n chunks.", b"x" * 300], ext=b";name=val;flag")
    body = body[:-2] + b"X-Trailer: yes\r\nX-Other: 1\r\n\r\n"
    with demo() as srv, srv.connect() as c:
        r = c.request("POST", "/echo", [("Content-Type", "text/plain"),
                                        ("Transfer-Encoding", "chunked")], body)
        check_ok_text(r, b"Wikipedia in \r\n chunks." + b"x" * 300, "text/plain")
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


@T.case("POST /echo: chunked body with upper-case hex and leading zeros in sizes")
def _():
    data = os.urandom(0x1AB)
    body = b"01AB\r\n" + data + b"\r\n0000\r\n\r\n"
    with demo() as srv, srv.connect() as c:
        r = c.request("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
        check_ok_text(r, data)


@T.case("keep-alive: several requests on one connection, no Connection: close")
def _():
    with demo() as srv, srv.connect() as c:
        for i in range(5):
            r = c.request("GET", "/plaintext" if i % 2 == 0 else "/json")
            eq(r.status, 200, "status of request %d" % i)
            check("close" not in r.connection_tokens(), "request %d got Connection: close" % i)
        c.expect_open(0.2)
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


@T.case("HTTP/1.0 without keep-alive: response, then the server closes")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
        r = c.read_response()
        eq(r.status, 200, "status")
        check(r.version in ("HTTP/1.1", "HTTP/1.0"), "version %s" % r.version)
        eq(r.body, HELLO, "body")
        check("keep-alive" not in r.connection_tokens(), "1.0 response says keep-alive")
        c.expect_closed(2, "close after an HTTP/1.0 response")


@T.case("HTTP/1.0 with Connection: keep-alive: response says keep-alive, stays open")
def _():
    with demo() as srv, srv.connect() as c:
        for i in range(3):
            c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            eq(r.status, 200, "status of request %d" % i)
            eq(r.body, HELLO, "body")
            check("keep-alive" in r.connection_tokens(),
                  "response lacks Connection: keep-alive: %r" % r.headers)
            eq(r.headers.get("Content-Length"), "13", "Content-Length")
        c.expect_open(0.2)


@T.case("HTTP/1.0 POST /echo with keep-alive")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc")
        r = c.read_response()
        eq((r.status, r.body), (200, b"abc"), "status, body")
        check_ok_text(c.request("GET", "/plaintext", version="HTTP/1.0",
                                headers=[("Connection", "keep-alive")]), HELLO)


@T.case("Connection: close honoured: response says close, server closes")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/plaintext", [("Connection", "close")])
        check_ok_text(r, HELLO)
        check("close" in r.connection_tokens(), "no Connection: close in %r" % r.headers)
        c.expect_closed(2)


@T.case("Connection: close among other tokens (keep-alive, Close)")
def _():
    with demo() as srv, srv.connect() as c:
        r = c.request("GET", "/plaintext", [("Connection", "TE, Close")])
        eq(r.status, 200, "status")
        c.expect_closed(2)


@T.case("pipelining: 16 GETs in one write, responses complete and in order")
def _():
    paths = ["/plaintext", "/json", "/healthz", "/nope"] * 4
    with demo() as srv, srv.connect() as c:
        c.send(b"".join(build_request("GET", p) for p in paths))
        for i, p in enumerate(paths):
            r = c.read_response()
            if p == "/plaintext":
                check_ok_text(r, HELLO)
            elif p == "/json":
                check_ok_text(r, JSON)
            elif p == "/healthz":
                eq(r.status, 200, "response %d (%s)" % (i, p))
            else:
                eq(r.status, 404, "response %d (%s)" % (i, p))
        eq(c.read_available(0.1), b"", "extra bytes after 16 responses")


@T.case("pipelining: mixed GET/POST/HEAD/405 in one write, in order")
def _():
    reqs = []
    expect = []
    for i in range(16):
        k = i % 4
        if k == 0:
            reqs.append(build_request("GET", "/plaintext"))
            expect.append(("GET", 200, HELLO))
        elif k == 1:
            b = ("body-%d-" % i).encode() * (i + 1)
            reqs.append(build_request("POST", "/echo", [("Content-Type", "text/plain")], b))
            expect.append(("POST", 200, b))
        elif k == 2:
            reqs.append(build_request("HEAD", "/json"))
            expect.append(("HEAD", 200, b""))
        else:
            b = b"%d" % i
            reqs.append(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                      chunked([b, b"!"])))
            expect.append(("POST", 200, b + b"!"))
    with demo() as srv, srv.connect() as c:
        c.send(b"".join(reqs))
        for i, (method, status, body) in enumerate(expect):
            r = c.read_response(method)
            eq((r.status, r.body), (status, body), "response %d (%s)" % (i, method))
        c.send(build_request("DELETE", "/json") + build_request("GET", "/json"))
        eq(c.read_response().status, 405, "pipelined 405")
        check_ok_text(c.read_response(), JSON)


@T.case("pipelining: last request Connection: close, all answered then closed")
def _():
    with demo() as srv, srv.connect() as c:
        data = b"".join(build_request("GET", "/plaintext") for _ in range(5))
        data += build_request("GET", "/json", [("Connection", "close")])
        data += build_request("GET", "/plaintext")  # after close: must not be answered
        c.send(data)
        for i in range(5):
            check_ok_text(c.read_response(), HELLO)
        r = c.read_response()
        check_ok_text(r, JSON)
        check("close" in r.connection_tokens(), "last response lacks Connection: close")
        c.expect_closed(2, "close after the Connection: close request")


@T.case("split writes: inside the request line, inside CRLF, inside the body")
def _():
    with demo() as srv, srv.connect() as c:
        c.send_split([b"GE", b"T /plai", b"ntext HT", b"TP/1.1\r", b"\nHost: x\r",
                      b"\n\r", b"\n"])
        check_ok_text(c.read_response(), HELLO)
        c.send_split([b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Len", b"gth: 11\r\n\r",
                      b"\nhello", b" ", b"world"])
        check_ok_text(c.read_response(), b"hello world")
        c.send_split([b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5",
                      b"\r", b"\nhel", b"lo\r", b"\n0\r\n", b"\r", b"\n"])
        check_ok_text(c.read_response(), b"hello")


@T.case("one byte at a time: GET then POST with a chunked body")
def _():
    req = build_request("GET", "/json") + build_request(
        "POST", "/echo", [("Transfer-Encoding", "chunked"), ("Content-Type", "a/b")],
        chunked([b"abc", b"defgh"], ext=b";x=y", trailers=[b"T: v"]))
    with demo() as srv, srv.connect() as c:
        c.send_bytewise(req, gap=0.0005)
        check_ok_text(c.read_response(), JSON)
        r = c.read_response()
        check_ok_text(r, b"abcdefgh")
        eq(r.headers.get("Content-Type"), "a/b", "echoed Content-Type")


@T.case("Expect: 100-continue: 100 before the body is sent, then the final response")
def _():
    body = b"y" * 2000
    with demo() as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        eq((r.version, r.status), ("HTTP/1.1", 100), "interim response")
        c.send(body)
        r = c.read_response()
        check_ok_text(r, body, "text/plain")
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


@T.case("Expect: 100-continue with chunked body")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        eq(r.status, 100, "interim status")
        c.send(chunked([b"one", b"two"]))
        check_ok_text(c.read_response(), b"onetwo")


@T.case("Expect: 100-continue on a GET without body: final response only")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        if r.status == 100:  # allowed, though pointless; the final response must follow
            r = c.read_response()
        check_ok_text(r, HELLO)
        check_ok_text(c.request("GET", "/json"), JSON)


@T.case("header names are case-insensitive (content-length, TRANSFER-ENCODING)")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd")
        check_ok_text(c.read_response(), b"abcd")
        c.send(b"POST /echo HTTP/1.1\r\nHOST: x\r\nTRANSFER-ENCODING: Chunked\r\n\r\n"
               + chunked([b"xyz"]))
        check_ok_text(c.read_response(), b"xyz")


@T.case("obs-text (bytes 0x80-0xFF) in a header value is accepted")
def _():
    with demo() as srv, srv.connect() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9 \xff\r\n\r\n")
        check_ok_text(c.read_response(), HELLO)


@T.case("--threads 2: 200 requests over 40 concurrent connections all succeed", timeout=60)
def _():
    def worker(port, k):
        with Conn(port, timeout=10) as c:
            for j in range(5):
                if (k + j) % 3 == 0:
                    b = b"%d-%d" % (k, j)
                    r = c.request("POST", "/echo", body=b)
                    eq((r.status, r.body), (200, b), "echo on conn %d" % k)
                else:
                    r = c.request("GET", "/plaintext")
                    eq((r.status, r.body), (200, HELLO), "plaintext on conn %d" % k)
        return 5

    with demo("--threads", "2") as srv:
        eq(srv.threads, 2, "threads in the listening line")
        res = run_parallel(worker, [(srv.port, k) for k in range(40)], timeout=40)
        errs = [r for r in res if isinstance(r, BaseException)]
        check(not errs, "%d connections failed, first: %r" % (len(errs), errs[:1]))
        eq(sum(res), 200, "requests answered")
        with srv.connect() as c:
            r = c.request("GET", "/metrics")
            m = re.search(rb'^crest_requests_total\{status="200"\} (\d+)', r.body, re.M)
            check(m is not None and int(m.group(1)) >= 200,
                  "metrics 200 count %r < 200" % (m and m.group(1)))


@T.case("--threads 2: 100 short connections (Connection: close) all succeed", timeout=60)
def _():
    def one(port, k):
        with Conn(port, timeout=10) as c:
            r = c.request("GET", "/json", [("Connection", "close")])
            eq((r.status, r.body), (200, JSON), "conn %d" % k)
            c.expect_closed(5)
        return 1

    with demo("--threads", "2") as srv:
        res = run_parallel(one, [(srv.port, k) for k in range(100)], timeout=40)
        errs = [r for r in res if isinstance(r, BaseException)]
        check(not errs, "%d connections failed, first: %r" % (len(errs), errs[:1]))


if __name__ == "__main__":
    T.main(needs=("crest",))
