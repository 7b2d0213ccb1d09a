"""The chain around every response (tests/it/chain_app.c): a middleware that answers later and
resumes the chain with crest_req_next, per-request storage, routes that pass a request on
(CREST_NEXT), OPTIONS from the route table, the app's error handler (JSON errors for 404, 405,
handler failures and the parser's rejections, with CORS and request-id headers on all of them),
head and done hooks, the framing headers crest_res_header owns, a second finishing call, and the
warning about a request nobody answered. Runs over TLS too (CREST_IT_TLS=1)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
ORIGIN = "http://a.test"


def chain(*args):
    return test_app("chain_app", "--threads", "1", *args)


def json_error(r, status):
    eq(r.status, status, "status")
    eq(r.header("Content-Type"), "application/json", "error content type")
    e = json.loads(r.body)
    eq(e["status"], status, "status in the JSON body")
    check(isinstance(e["error"], str) and e["error"], "error message %r" % e)
    return e


@T.case("a middleware answers later and resumes the chain: the next middleware and the route "
        "see its per-request values, the head, query and body it kept")
def _():
    with chain() as srv, srv.connect() as c:
        r = c.request("GET", "/auth/me?q=1%202", [("Authorization", "Bearer good"),
                                                  ("X-Echo", "kept")])
        eq(r.status, 200, "resumed")
        eq(r.body, b"hello alice path=/auth/me q=1%202 echo=kept body=0", "values and head")
        r = c.request("POST", "/auth/me", [("Authorization", "Bearer good")], body=b"x" * 5000)
        eq(r.body[-9:], b"body=5000", "the body kept across the wait")
        r = c.request("GET", "/auth/me", [("Authorization", "Bearer bad")])
        json_error(r, 401)
        eq(r.header("WWW-Authenticate"), "Bearer", "the middleware's header")
        # Pipelined behind a waiting request: answered in order.
        c.send(build_request("GET", "/auth/me", [("Authorization", "Bearer good")]) +
               build_request("GET", "/users/7"))
        eq(c.read_response().status, 200, "first (waited)")
        eq(c.read_response().body, b"user 7", "second")


@T.case("HTTP/2: a resumed chain, a route passing on and an automatic OPTIONS",
        skip="test_h2's client speaks cleartext prior knowledge" if TLS_MODE else None)
def _():
    from test_h2 import H2
    with chain() as srv, H2(srv.port) as h:
        st = h.get("/auth/me?q=z", headers=[("authorization", "Bearer good"),
                                            ("x-echo", "h2")])
        eq((st.status, st.body), (200, b"hello alice path=/auth/me q=z echo=h2 body=0"), "h2")
        st = h.get("/users/me", headers=[("x-pass", "1")])
        eq(st.body, b"user me", "passed on over HTTP/2")
        st = h.get("/users/3", method="OPTIONS")
        eq((st.status, st.header("allow")), (204, "GET, HEAD, DELETE, OPTIONS"), "OPTIONS")


@T.case("a route returning CREST_NEXT falls through to the next matching route, or 404")
def _():
    with chain() as srv, srv.connect() as c:
        eq(c.request("GET", "/users/me").body, b"me", "the static route")
        eq(c.request("GET", "/users/me", [("X-Pass", "1")]).body, b"user me", "passed on")
        e = json_error(c.request("GET", "/pass"), 404)
        eq(e["error"], "Not Found", "404 message")


@T.case("OPTIONS is answered from the route table: 204 with Allow; 405 keeps the real Allow")
def _():
    with chain() as srv, srv.connect() as c:
        r = c.request("OPTIONS", "/users/3")
        eq((r.status, r.header("Allow"), r.body), (204, "GET, HEAD, DELETE, OPTIONS", b""),
           "OPTIONS")
        r = c.request("PUT", "/users/3", body=b"{}")
        json_error(r, 405)
        eq(r.header("Allow"), "GET, HEAD, DELETE", "405's Allow")
        json_error(c.request("OPTIONS", "/nothing/here"), 404)


@T.case("the error handler answers 404, 405, a handler's failure and the parser's rejections in "
        "JSON, each with CORS, a request id and the head hook's header")
def _():
    with chain("--max-body", "1k") as srv:
        cases = [("GET", "/nope", None, 404), ("POST", "/users/1", b"", 405),
                 ("GET", "/fail", None, 500), ("POST", "/auth/me", b"x" * 2000, 413)]
        with srv.connect() as c:
            for method, path, body, status in cases:
                r = c.request(method, path, [("Origin", ORIGIN)], body=body)
                json_error(r, status)
                eq(r.header("Access-Control-Allow-Origin"), ORIGIN, "CORS on %d" % status)
                check(r.header("X-Request-Id"), "request id on %d" % status)
                eq(r.header("X-Seen-Status"), str(status), "head hook on %d" % status)
                if status == 413:
                    break  # the connection closes after a rejection
        with srv.connect() as c:  # a head the parser refuses: no path, no headers read
            c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
            r = c.read_response()
            json_error(r, 400)
            check(r.header("X-Request-Id"), "request id on the parser's 400")
            eq(r.header("X-Seen-Status"), "400", "head hook on the parser's 400")
        if not TLS_MODE:  # test_h2's client speaks cleartext prior knowledge
            from test_h2 import H2
            with H2(srv.port) as h:  # HTTP/2: a body over the limit, its head read
                st = h.get("/auth/me", method="POST", body=b"y" * 2000,
                           headers=[("origin", ORIGIN), ("content-length", "2000")])
                eq(st.status, 413, "HTTP/2 413")
                eq(json.loads(st.body)["status"], 413, "HTTP/2 413's JSON body")
                eq(st.header("access-control-allow-origin"), ORIGIN, "CORS on the HTTP/2 413")
        with srv.connect() as c:  # HTTP/1.1 without Host: the head was read, so CORS applies
            c.send(b"GET /users/1 HTTP/1.1\r\nOrigin: " + ORIGIN.encode() + b"\r\n\r\n")
            r = c.read_response()
            json_error(r, 400)
            eq(r.header("Access-Control-Allow-Origin"), ORIGIN, "CORS on a 400 with a head")


@T.case("done hooks see every finished response's status and body size")
def _():
    with chain() as srv, srv.connect() as c:
        c.request("GET", "/users/12345")
        n, status, size = c.request("GET", "/done").body.split()
        eq((status, size), (b"200", b"10"), "the previous response")
        c.request("GET", "/nope")
        n2, status, size = c.request("GET", "/done").body.split()
        eq(int(n2), int(n) + 2, "one per response")
        eq(status, b"404", "a 404's status")
        check(int(size) > 0, "its JSON body's size")


@T.case("crest_res_header owns the framing: one Content-Type, Connection: close honoured, "
        "Content-Length, Transfer-Encoding and Date refused")
def _():
    with chain() as srv, srv.connect() as c:
        r = c.request("GET", "/hdr?case=ctype")
        eq(r.headers.get_all("Content-Type"), ["application/json"], "one Content-Type")
        r = c.request("GET", "/hdr?case=ctype0")
        eq(r.headers.get_all("Content-Type"), ["text/csv"], "the header's when the call names none")
        r = c.request("GET", "/hdr?case=refused")
        eq(r.body, b"invalid argument invalid argument invalid argument", "refused")
        eq(len(r.headers.get_all("Date")), 1, "one Date")
        eq(r.headers.get_all("Transfer-Encoding"), [], "no Transfer-Encoding")
        r = c.request("GET", "/hdr?case=close")
        eq(r.body, b"bye", "answered")
        eq(r.headers.get_all("Connection"), ["close"], "Connection: close, once")
        c.expect_closed(what="the connection closes after Connection: close")


@T.case("a second finishing call is refused with EALREADY and sends nothing")
def _():
    with chain() as srv, srv.connect() as c:
        r = c.request("GET", "/twice")
        eq((r.status, r.body), (200, b"first"), "the first answer")
        eq(c.request("GET", "/last").body, b"operation already in progress", "second call's code")
        c.expect_open()


@T.case("a request nobody answers is reported once, naming its route")
def _():
    with chain("--unanswered-warn", "200ms") as srv, srv.connect() as c:
        c.send(build_request("GET", "/forget"))
        wait_until(lambda: "GET /forget not answered after 200 ms" in srv.stderr_text(), 5,
                   "the warning")
        time.sleep(0.5)  # a bounded window: it is not repeated
        eq(srv.stderr_text().count("/forget not answered"), 1, "reported once")
    # The request stays open until the server stops; SIGTERM still exits 0.


if __name__ == "__main__":
    T.main()
