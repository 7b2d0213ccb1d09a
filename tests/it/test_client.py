"""The outbound HTTP client (crest_fetch) through tests/it/client_app.c, whose routes call a
downstream server this file starts: Python's http.server in a thread (plain or TLS, counting
its connections), or a raw socket server where the point is a connection's exact fate.

Covered: GET and POST, keep-alive reuse (one downstream connection for several calls), chunked
bodies, the response size limit, the whole-exchange timeout (a downstream that never answers),
two calls in parallel under one 200 ms budget, a refused connection, redirects returned as they
are and followed, cancellation, HTTPS with a test CA (by name and by IP address) and a
certificate for another name, a pooled connection the downstream closes (a GET retried once on a
new connection, a POST not), and the app stopping while a call is in flight."""

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
CLIENT_APP = os.environ.get("CREST_IT_CLIENT_APP") or os.path.join(
    os.path.dirname(CREST_IT_APP), "client_app")

ECONNREFUSED, ETIMEDOUT, E2BIG, ECANCELED = -111, -110, -7, -125
ECONNRESET, EPROTO = -104, -71


def client_app(*args):
    need_binary(CLIENT_APP)
    return Server([CLIENT_APP, "--host", "127.0.0.1", "--port", "0", "--threads", "1", *args])


class Downstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 (TLS with cert/key), counting connections."""

    def __init__(self, cert=None, key=None):
        self.release = threading.Event()  # set at the end: handlers that wait return
        self.connections = 0
        self.requests = []
        self.arrived = threading.Event()  # a request came
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                outer.connections += 1
                self.conn_id = outer.connections

            def log_message(self, *a):
                pass

            def answer(self, status, body, headers=()):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Conn", str(self.conn_id))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                outer.requests.append((self.command, self.path, dict(self.headers)))
                outer.arrived.set()
                if u.path == "/hello":
                    self.answer(200, b"hello")
                elif u.path == "/big":
                    self.answer(200, b"x" * int(q.get("n", "1000")))
                elif u.path == "/chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("X-Conn", str(self.conn_id))
                    self.end_headers()
                    n = int(q.get("n", "3"))
                    for i in range(n):
                        piece = b"piece %d;" % i
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
                elif u.path == "/slow":
                    self.release.wait(int(q.get("ms", "1000")) / 1000.0)
                    self.answer(200, b"slow")
                elif u.path == "/never":
                    outer.release.wait(CASE_TIMEOUT)
                elif u.path == "/redirect":
                    self.answer(302, b"moved", [("Location", q.get("to", "/hello"))])
                elif u.path == "/see-other":
                    self.answer(303, b"", [("Location", "/hello")])
                else:
                    self.answer(404, b"nope")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                if self.path.startswith("/see-other"):
                    self.answer(303, b"", [("Location", "/hello")])
                else:
                    self.answer(200, b"echo:" + body, [("X-Method", self.command)])

            do_HEAD = do_GET
            do_PUT = do_POST

        class Srv(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that refused our certificate, say

        self.httpd = Srv(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.handler = Handler
        self.handler.release = self.release
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path, host="127.0.0.1"):
        return "%s://%s:%d%s" % (self.scheme, host, self.port, path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def fetch(srv, url, verb="GET", body=None, **params):
    """GET|POST /fetch on client_app; returns (http status, the JSON result)."""
    q = urllib.parse.urlencode(dict(url=url, **params))
    with srv.connect() as c:
        r = c.request(verb, "/fetch?" + q, body=body)
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        fail("not JSON: %r" % r.body)


@T.case("GET: status, body, our header sent")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/hello"))
        eq(st, 200, "route status")
        eq((res["error"], res["status"], res["body"]), ("", 200, "hello"), "result")
        eq(d.requests[0][2].get("X-Via"), "client_app", "the caller's header")
        eq(d.requests[0][2].get("Host"), "127.0.0.1:%d" % d.port, "Host")


@T.case("POST with a body, and PUT")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/echo"), "POST", b"some data", method="POST", hdr="X-Method")
        eq((st, res["status"], res["body"], res["hdr"]), (200, 200, "echo:some data", "POST"),
           "POST")
        st, res = fetch(srv, d.url("/echo"), method="PUT", hdr="X-Method")
        eq((res["body"], res["hdr"]), ("echo:", "PUT"), "PUT without body")
        eq(d.requests[-1][2].get("Content-Length"), "0", "PUT's Content-Length")


@T.case("keep-alive: several calls share one downstream connection")
def _():
    with Downstream() as d, client_app() as srv:
        conns = set()
        for i in range(5):
            st, res = fetch(srv, d.url("/hello"), hdr="X-Conn")
            eq(res["status"], 200, "call %d" % i)
            conns.add(res["hdr"])
        st, res = fetch(srv, d.url("/chunked"), hdr="X-Conn")
        conns.add(res["hdr"])
        eq(len(conns), 1, "connection ids seen")
        eq(d.connections, 1, "connections the downstream accepted")


@T.case("chunked response with trailers; HEAD without body")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/chunked?n=50"))
        eq(res["body"], "".join("piece %d;" % i for i in range(50)), "body")
        st, res = fetch(srv, d.url("/hello"), method="HEAD")
        eq((res["status"], res["body"]), (200, ""), "HEAD")
        st, res = fetch(srv, d.url("/hello"))
        eq(res["body"], "hello", "the connection still in step after HEAD")


@T.case("size limit: a body over max_response is an error (Content-Length and chunked)")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/big?n=5000"), max="1000")
        eq((st, res["code"], res["status"]), (502, E2BIG, 0), "Content-Length")
        st, res = fetch(srv, d.url("/chunked?n=200"), max="1000")
        eq((st, res["code"]), (502, E2BIG), "chunked")
        st, res = fetch(srv, d.url("/big?n=1000"), max="1000")
        eq((st, len(res["body"])), (200, 1000), "at the limit")


@T.case("timeout: a downstream that never answers -> 504 in about the timeout")
def _():
    with Downstream() as d, client_app() as srv:
        t0 = time.monotonic()
        st, res = fetch(srv, d.url("/never"), timeout="300")
        took = time.monotonic() - t0
        eq((st, res["code"]), (504, ETIMEDOUT), "result")
        check(0.29 <= took < 1.5, "answered after %.3f s" % took)


@T.case("two calls in parallel with a 200 ms budget, one slow")
def _():
    with Downstream() as d, client_app() as srv:
        q = urllib.parse.urlencode(dict(a=d.url("/hello"), b=d.url("/slow?ms=3000"),
                                        timeout="200"))
        t0 = time.monotonic()
        with srv.connect() as c:
            r = c.request("GET", "/two?" + q)
        took = time.monotonic() - t0
        res = json.loads(r.body)
        eq((res["a"]["status"], res["a"]["body"]), (200, "hello"), "the fast one")
        eq(res["b"]["code"], ETIMEDOUT, "the slow one")
        check(res["a"]["ms"] < 150, "the fast one took %s ms" % res["a"]["ms"])
        check(190 <= res["ms"] < 1000, "both done after %s ms" % res["ms"])
        check(took < 1.5, "answered after %.3f s" % took)


@T.case("connection refused; malformed URL; unknown host name")
def _():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with client_app() as srv:
        st, res = fetch(srv, "http://127.0.0.1:%d/" % port)
        eq((st, res["code"]), (502, ECONNREFUSED), "refused")
        st, res = fetch(srv, "ftp://127.0.0.1/")
        eq(res["code"], -22, "not http")
        st, res = fetch(srv, "http://user@127.0.0.1/")
        eq(res["code"], -22, "userinfo")
        st, res = fetch(srv, "http://no-such-host.invalid/", timeout="3000")
        check(res["code"] < 0 and res["status"] == 0, "unknown name: %r" % res)


@T.case("redirects: returned as they are by default, followed with max_redirects")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/redirect"))
        eq((res["status"], res["body"], res["redirects"]), (302, "moved", 0), "not followed")
        st, res = fetch(srv, d.url("/redirect"), redirects="3")
        eq((res["status"], res["body"], res["redirects"]), (200, "hello", 1), "followed")
        eq(res["url"], d.url("/hello"), "final URL")
        to = d.url("/redirect?to=/hello")
        st, res = fetch(srv, d.url("/redirect?to=" + urllib.parse.quote(to)), redirects="3")
        eq((res["status"], res["redirects"]), (200, 2), "absolute Location, two hops")
        st, res = fetch(srv, d.url("/redirect?to=" + urllib.parse.quote(to)), redirects="1")
        eq((res["status"], res["redirects"]), (302, 1), "limit reached: the last redirect")
        st, res = fetch(srv, d.url("/see-other"), "POST", b"form", method="POST", redirects="1")
        eq((res["status"], res["body"]), (200, "hello"), "303 after POST")
        eq(d.requests[-1][0], "GET", "followed with GET")


@T.case("cancel: the callback comes once, with ECANCELED")
def _():
    with Downstream() as d, client_app() as srv:
        st, res = fetch(srv, d.url("/never"), cancel="1")
        eq((st, res["code"]), (502, ECANCELED), "cancelled")
        st, res = fetch(srv, d.url("/hello"))
        eq(res["status"], 200, "the app goes on")


def _wrong_name_cert(folder):
    cert = os.path.join(folder, "other.crt")
    key = os.path.join(folder, "other.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                    "/CN=elsewhere.test", "-addext", "subjectAltName=DNS:elsewhere.test",
                    "-keyout", key, "-out", cert], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


@T.case("HTTPS: a test CA, by name and by address; wrong name and unknown CA refused")
def _():
    with tmp_dir() as folder:
        cert, key = make_cert(folder)
        other, other_key = _wrong_name_cert(folder)
        with Downstream(cert, key) as d, client_app() as srv:
            st, res = fetch(srv, d.url("/hello", "localhost"), ca=cert, hdr="X-Conn")
            eq((st, res["status"], res["body"]), (200, 200, "hello"), "by name")
            st, res = fetch(srv, d.url("/chunked", "localhost"), ca=cert, hdr="X-Conn")
            eq(res["hdr"], "1", "the TLS connection reused")
            st, res = fetch(srv, d.url("/hello"), ca=cert)
            eq(res["body"], "hello", "by IP address (subjectAltName IP)")
            st, res = fetch(srv, d.url("/hello", "localhost"))
            eq((st, res["code"]), (502, EPROTO), "the system store does not know the test CA")
            st, res = fetch(srv, d.url("/hello", "localhost"), ca=os.path.join(folder, "none"))
            eq(res["code"], -22, "unreadable CA file")
        with Downstream(other, other_key) as d, client_app() as srv:
            st, res = fetch(srv, d.url("/hello", "localhost"), ca=other)
            eq((st, res["code"]), (502, EPROTO), "a certificate for another name")


def _raw_server(script):
    """A raw server: for each accepted connection (numbered from 1), script(n, sock) runs in a
    thread. Returns (port, connection counter list, closer)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    count = [0]
    done = threading.Event()

    def loop():
        while not done.is_set():
            try:
                s, _ = ls.accept()
            except OSError:
                return
            count[0] += 1
            threading.Thread(target=script, args=(count[0], s), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()

    def close():
        done.set()
        ls.close()

    return ls.getsockname()[1], count, close


def _read_request(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        rest += s.recv(4096)
    return head


@T.case("a pooled connection the downstream closes: GET retried once on a new one, POST not")
def _():
    def script(n, s):
        s.settimeout(IO_TIMEOUT)
        try:
            # Each connection answers one request, keeps the connection open and, when the
            # next request comes, closes it without a word: the client's request crossed the
            # close of a pooled connection.
            if _read_request(s) is not None:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nconn%02d" % n)
                _read_request(s)
        except OSError:
            pass
        s.close()

    port, count, close = _raw_server(script)
    try:
        url = "http://127.0.0.1:%d/x" % port
        with client_app() as srv:
            st, res = fetch(srv, url)
            eq(res["body"], "conn01", "first call")
            st, res = fetch(srv, url)
            eq(res["body"], "conn02", "retried on a new connection")
            eq(count[0], 2, "connections")
            st, res = fetch(srv, url, "POST", b"x", method="POST")
            eq((st, res["code"]), (502, ECONNRESET), "POST not repeated")
            eq(count[0], 2, "connections after the POST")
    finally:
        close()


@T.case("an idle pooled connection closed by the downstream is dropped, not reused")
def _():
    def script(n, s):
        s.settimeout(IO_TIMEOUT)
        try:
            if _read_request(s) is not None:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nconn%02d" % n)
        except OSError:
            pass
        s.close()  # right after the answer, without Connection: close

    port, count, close = _raw_server(script)
    try:
        url = "http://127.0.0.1:%d/x" % port
        with client_app() as srv:
            for i in range(1, 4):
                st, res = fetch(srv, url)
                # Either the close was seen while idle, or the retry covered it: never an error.
                eq((st, res["body"]), (200, "conn%02d" % i), "call %d" % i)
            eq(count[0], 3, "connections")
    finally:
        close()


@T.case("malformed downstream response -> EPROTO")
def _():
    def script(n, s):
        s.settimeout(IO_TIMEOUT)
        try:
            if _read_request(s) is not None:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
        except OSError:
            pass
        s.close()

    port, count, close = _raw_server(script)
    try:
        with client_app() as srv:
            st, res = fetch(srv, "http://127.0.0.1:%d/" % port)
            eq((st, res["code"]), (502, EPROTO), "two lengths")
    finally:
        close()


@T.case("stopping the app with a call in flight: it ends, exit 0")
def _():
    with Downstream() as d, client_app("--shutdown-timeout", "300ms") as srv:
        c = srv.connect()
        c.send(b"GET /fetch?" + urllib.parse.urlencode(dict(url=d.url("/never"), timeout="0"))
               .encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        check(d.arrived.wait(IO_TIMEOUT), "the call reached the downstream")
        srv.stop()  # fails the case unless it exits 0 in time
        c.close()


if __name__ == "__main__":
    T.main()
