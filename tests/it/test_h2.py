"""HTTP/2 (RFC 9113) of `crest demo` and the test app, by prior knowledge on the cleartext port
that serves HTTP/1.1 to others: curl, python3-h2 and h2load as clients; responses, bodies and
limits, streams answered later or streamed, flow control as backpressure, resets, shutdown; and
the defences (rapid reset, SETTINGS/PING/empty DATA/CONTINUATION floods, too many streams, HPACK
bombs), each offender getting a GOAWAY while a connection beside it is served."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
from hpack import Decoder, Encoder  # noqa: E402

T = Suite()

HELLO = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types, flags and error codes (RFC 9113 6, 7).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0x8, 0xb



def db_demo(tmp, *args):
    return demo("--db", "sqlite:%s/x.db" % tmp, "--threads", "2", "--workers", "2", *args)


# ---------------------------------------------------------------------------------------------
# A python3-h2 client.


class Stream:
    def __init__(self):
        self.status = None
        self.headers = []
        self.informational = []
        self.body = bytearray()
        self.ended = False
        self.reset = None

    def header(self, name):
        vals = [v for k, v in self.headers if k == name]
        check(len(vals) <= 1, "header %s appears %d times: %r" % (name, len(vals), self.headers))
        return vals[0] if vals else None

    def __repr__(self):
        return "<stream %s %r body=%r reset=%r>" % (self.status, self.headers,
                                                    _short(bytes(self.body), 200), self.reset)


class H2:
    """An HTTP/2 client connection (python3-h2) with prior knowledge."""

    def __init__(self, port, settings=None, timeout=IO_TIMEOUT, ack_data=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.h = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if settings:
            self.h.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.h.initiate_connection()
        self.streams = {}
        self.goaway = None
        self.eof = False
        self.ack_data = ack_data
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.h.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None, end=True, authority="test"):
        sid = self.h.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"),
                (":authority", authority)] + list(headers)
        if body is not None and not any(k == "content-length" for k, _ in headers):
            hdrs.append(("content-length", str(len(body))))
        self.streams[sid] = Stream()
        self.h.send_headers(sid, hdrs, end_stream=body is None and end)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, body, end=True):
        """Sends body as the windows allow; stops when the server resets the stream."""
        deadline = time.monotonic() + self.timeout
        pos = 0
        while pos < len(body):
            st = self.streams[sid]
            if st.reset is not None or st.ended:
                return
            try:
                win = min(self.h.local_flow_control_window(sid), self.h.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return
            if win <= 0:
                self.pump(deadline, "a WINDOW_UPDATE")
                continue
            self.h.send_data(sid, body[pos:pos + win])
            pos += win
            self.flush()
        if end and self.streams[sid].reset is None:
            try:
                self.h.end_stream(sid)
                self.flush()
            except h2.exceptions.StreamClosedError:
                pass

    def pump(self, deadline, what):
        """Reads once (fails at the deadline) and handles the events."""
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timed out waiting for %s" % what)
        if self.eof:
            raise ConnClosed("connection closed while waiting for %s" % what)
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            fail("timed out waiting for %s" % what)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.feed(data)

    def feed(self, data):
        for ev in self.h.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                st.headers = [(k, v) for k, v in ev.headers]
                st.status = int(dict(st.headers)[":status"])
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                st.informational.append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.DataReceived):
                st.body += ev.data
                if self.ack_data:
                    self.h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
        self.flush()

    def wait(self, pred, what, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not pred():
            self.pump(deadline, what)
        return True

    def response(self, sid, timeout=None):
        st = self.streams[sid]
        self.wait(lambda: st.ended or st.reset is not None or self.goaway or self.eof,
                  "the response of stream %d" % sid, timeout)
        check(st.ended, "stream %d did not end: %r goaway=%r eof=%r"
              % (sid, st, self.goaway, self.eof))
        return st

    def get(self, path, method="GET", headers=(), body=None, timeout=None):
        return self.response(self.request(method, path, headers, body), timeout)


def check_h2_std(st, body=None, ctype=None, status=200):
    eq(st.status, status, "status (%r)" % st)
    eq(st.header("server"), "crest", "server")
    d = st.header("date")
    check(d is not None and DATE_RE.match(d), "date %r" % d)
    for name in ("connection", "keep-alive", "transfer-encoding", "upgrade"):
        check(st.header(name) is None, "connection-specific %s in %r" % (name, st.headers))
    check(all(k == k.lower() for k, _ in st.headers), "upper case names in %r" % st.headers)
    if body is not None:
        eq(bytes(st.body), body, "body")
        eq(st.header("content-length"), str(len(body)), "content-length")
    if ctype is not None:
        eq((st.header("content-type") or "").split(";")[0], ctype, "content-type")


# ---------------------------------------------------------------------------------------------
# Raw frames, for what a well-behaved client library refuses to send.


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) \
        + payload


def request_block(enc, method, path, extra=()):
    return enc.encode([(":method", method), (":scheme", "http"), (":path", path),
                       (":authority", "test")] + list(extra))


class RawH2:
    """Prior knowledge with hand-made frames; reads frames, decodes HEADERS, collects bodies."""

    def __init__(self, port, timeout=IO_TIMEOUT, ack_settings=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.enc = Encoder()
        self.dec = Decoder()
        self.buf = bytearray()
        self.ack_settings = ack_settings
        self.streams = {}
        self.resets = {}
        self.goaway = None
        self.eof = False
        self.frames = 0
        self.block = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def __enter__(self):
        return self

    def __exit__(self, *a):
        try:
            self.sock.close()
        except OSError:
            pass
        return False

    def send(self, data):
        self.sock.sendall(data)

    def send_in_thread(self, data):
        """For floods: the server may stop reading (or close) while we still send."""
        def run():
            try:
                self.sock.sendall(data)
            except OSError:
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def _read_frame(self, deadline, what):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                fail("timed out waiting for %s (%d frames read)" % (what, self.frames))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                fail("timed out waiting for %s (%d frames read)" % (what, self.frames))
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
             bytes(self.buf[9:9 + n]))
        del self.buf[:9 + n]
        self.frames += 1
        return f

    def _handle(self, f):
        ftype, flags, sid, payload = f
        st = self.streams.setdefault(sid, Stream()) if sid else None
        if ftype == SETTINGS and not flags & ACK and self.ack_settings:
            self.send(frame(SETTINGS, ACK, 0))
        elif ftype in (HEADERS, CONTINUATION):
            self.block += payload
            if flags & END_HEADERS:
                hdrs = [(k.decode() if isinstance(k, bytes) else k,
                         v.decode() if isinstance(v, bytes) else v)
                        for k, v in self.dec.decode(self.block)]
                self.block = b""
                status = int(dict(hdrs)[":status"])
                if status < 200:
                    st.informational.append(status)
                else:
                    st.status, st.headers = status, hdrs
            if flags & END_STREAM:
                st.ended = True
        elif ftype == DATA:
            st.body += payload
            if payload:
                self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))) +
                          frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload))))
            if flags & END_STREAM:
                st.ended = True
        elif ftype == RST_STREAM:
            code = struct.unpack(">I", payload)[0]
            st.reset = code
            self.resets[sid] = code
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (code, last & 0x7fffffff)

    def read_until(self, pred, what, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not pred():
            f = self._read_frame(deadline, what)
            if f is None:
                return False
            self._handle(f)
        return True

    def until_goaway(self, timeout=None):
        self.read_until(lambda: self.goaway is not None, "a GOAWAY", timeout)
        check(self.goaway is not None, "the connection closed without a GOAWAY (%d frames)"
              % self.frames)
        return self.goaway

    def expect_closed(self, timeout=None):
        """After a GOAWAY that ends it: the server closes the connection."""
        self.read_until(lambda: False, "the server to close the connection", timeout)


def expect_calm(raw, what):
    code, _ = raw.until_goaway()
    eq(code, ENHANCE_YOUR_CALM, "GOAWAY error code after %s" % what)
    raw.expect_closed()


def bystanders_served(srv, h):
    """The connections opened beside an offender are still served, HTTP/2 and HTTP/1.1."""
    check_h2_std(h.get("/plaintext"), HELLO)
    with srv.connect() as c:
        check_ok_text(c.request("GET", "/plaintext"), HELLO)


# ---------------------------------------------------------------------------------------------
# Requests and responses.


@T.case("curl --http2-prior-knowledge: /plaintext and /json over HTTP/2 with server, date, "
        "content-length")
def _():
    with demo() as srv:
        url = "http://127.0.0.1:%d" % srv.port
        for path, body, ctype in (("/plaintext", HELLO, "text/plain"),
                                  ("/json", JSON, "application/json")):
            p = subprocess.run(["curl", "-s", "-D", "-", "--http2-prior-knowledge", url + path],
                               capture_output=True, timeout=10)
            eq(p.returncode, 0, "curl exit status")
            head, _, got = p.stdout.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            eq(lines[0].strip(), "HTTP/2 200", "status line")
            hdrs = dict(ln.split(": ", 1) for ln in lines[1:])
            eq(hdrs.get("content-type"), ctype, "content-type")
            eq(hdrs.get("content-length"), str(len(body)), "content-length")
            eq(hdrs.get("server"), "crest", "server")
            check(DATE_RE.match(hdrs.get("date", "")), "date %r" % hdrs.get("date"))
            eq(got, body, "body")


@T.case("one port: HTTP/1.1 and HTTP/2 clients side by side, each answered in its protocol")
def _():
    with demo() as srv, srv.connect() as c, H2(srv.port) as h:
        check_ok_text(c.request("GET", "/plaintext"), HELLO)
        check_h2_std(h.get("/plaintext"), HELLO, "text/plain")
        check_h2_std(h.get("/json"), JSON, "application/json")
        r = c.request("GET", "/json")
        check_ok_text(r, JSON)
        eq(r.version, "HTTP/1.1", "HTTP/1.1 client's version")


@T.case("the preface split over many reads still switches; a request starting like it stays "
        "HTTP/1.1")
def _():
    with demo() as srv:
        with srv.connect() as c:
            c.send_bytewise(PREFACE[:20], gap=0.005)
            c.send(PREFACE[20:] + frame(SETTINGS, 0, 0))
            enc = Encoder()
            c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                         request_block(enc, "GET", "/plaintext")))
            data = c.read_until(HELLO, what="the body over HTTP/2")
            check(data[3] == SETTINGS, "first frame is not SETTINGS: %r" % data[:9])
        with srv.connect() as c:
            c.send_split([b"P", b"OST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"])
            r = c.read_response()
            eq(r.status, 200, "HTTP/1.1 POST starting with P")
            eq(r.body, b"hi", "echo")
        with srv.connect() as c:
            c.send(b"PRI * HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            eq(r.version, "HTTP/1.1", "PRI over HTTP/1.1 (status %d): version" % r.status)


@T.case("HEAD: the GET's headers and content-length, no body; 204 without content-length")
def _():
    with tmp_dir() as tmp, db_demo(tmp) as srv, H2(srv.port) as h:
        st = h.get("/json", method="HEAD")
        check_h2_std(st, ctype="application/json")
        eq(st.header("content-length"), str(len(JSON)), "HEAD content-length")
        eq(bytes(st.body), b"", "HEAD body")
        st = h.get("/api/todos", method="HEAD")
        eq(st.status, 200, "HEAD /api/todos (streamed) status")
        eq(bytes(st.body), b"", "HEAD /api/todos body")
        t = json.loads(h.get("/api/todos", "POST", [("content-type", "application/json")],
                             b'{"title":"x","done":false}').body)
        st = h.get("/api/todos/%d" % t["id"], "DELETE")
        eq(st.status, 204, "DELETE status")
        eq(st.header("content-length"), None, "204 content-length")
        eq(bytes(st.body), b"", "204 body")


@T.case("404 for an unknown path, 405 with allow for a known one; the connection goes on")
def _():
    with demo() as srv, H2(srv.port) as h:
        st = h.get("/nope")
        check_h2_std(st, status=404)
        st = h.get("/plaintext", "DELETE")
        check_h2_std(st, status=405)
        eq(st.header("allow"), "GET, HEAD", "allow")
        check_h2_std(h.get("/plaintext"), HELLO)


@T.case("/api/todos over HTTP/2: create, read, list, replace, patch, delete, 400, 422, 404")
def _():
    with tmp_dir() as tmp, db_demo(tmp) as srv, H2(srv.port) as h:
        js = [("content-type", "application/json")]
        st = h.get("/api/todos", "POST", js, b'{"title": "buy milk", "done": false}')
        check_h2_std(st, status=201, ctype="application/json")
        t = json.loads(st.body)
        eq(st.header("location"), "/api/todos/%d" % t["id"], "location")
        tid = t["id"]
        eq(json.loads(h.get("/api/todos/%d" % tid).body)["title"], "buy milk", "read")
        lst = json.loads(h.get("/api/todos").body)
        check(any(x["id"] == tid for x in lst), "list %r lacks %d" % (lst, tid))
        st = h.get("/api/todos/%d" % tid, "PUT", js, b'{"title":"oat milk","done":true}')
        eq((st.status, json.loads(st.body)["done"]), (200, True), "replace")
        st = h.get("/api/todos/%d" % tid, "PATCH", js, b'{"done": false}')
        eq((st.status, json.loads(st.body)["title"]), (200, "oat milk"), "patch")
        eq(h.get("/api/todos", "POST", js, b'{"title": ').status, 400, "malformed JSON")
        eq(h.get("/api/todos", "POST", js, b'{"title": 5}').status, 422, "mistyped field")
        eq(h.get("/api/todos/%d" % tid, "DELETE").status, 204, "delete")
        eq(h.get("/api/todos/%d" % tid).status, 404, "read after delete")


@T.case("POST /echo: 900 KiB byte for byte; over 1 MiB -> 413, declared or not; the connection "
        "goes on", timeout=40)
def _():
    with demo() as srv, H2(srv.port, timeout=15) as h:
        body = bytes(range(256)) * (900 * 4)
        st = h.get("/echo", "POST", [("content-type", "application/x-test")], body)
        check_h2_std(st, body, "application/x-test")
        big = b"x" * (1024 * 1024 + 1)
        st = h.get("/echo", "POST", [], big)  # content-length says it: 413 before the body
        check_h2_std(st, status=413)
        sid = h.h.get_next_available_stream_id()
        h.streams[sid] = Stream()
        h.h.send_headers(sid, [(":method", "POST"), (":path", "/echo"), (":scheme", "http"),
                               (":authority", "t")])
        h.flush()
        h.send_body(sid, big)  # no content-length: 413 once the body passes the limit
        st = h.response(sid)
        check_h2_std(st, status=413)
        check_h2_std(h.get("/plaintext"), HELLO)


@T.case("100 concurrent streams on one connection, each answered with its own body")
def _():
    with tmp_dir() as tmp, db_demo(tmp) as srv, H2(srv.port, timeout=15) as h:
        sids = {}
        for i in range(100):
            kind = i % 4
            if kind == 0:
                sids[h.request("GET", "/plaintext")] = ("text", HELLO)
            elif kind == 1:
                sids[h.request("GET", "/json")] = ("text", JSON)
            elif kind == 2:
                b = b"stream %d " % i * (i + 1)
                sids[h.request("POST", "/echo", [("content-type", "text/plain")], b)] = ("text", b)
            else:
                sids[h.request("GET", "/queries?queries=%d" % (i % 7 + 1))] = ("rows", i % 7 + 1)
        h.wait(lambda: all(h.streams[s].ended or h.streams[s].reset is not None for s in sids),
               "100 responses", 15)
        for sid, (kind, want) in sids.items():
            st = h.streams[sid]
            if kind == "text":
                check_h2_std(st, want)
            else:
                eq(st.status, 200, "/queries status")
                eq(len(json.loads(st.body)), want, "/queries rows on stream %d" % sid)


@T.case("answers given later: the worker pool (/work/hash) and a timer (/async), in parallel")
def _():
    with tmp_dir() as tmp, db_demo(tmp) as srv, H2(srv.port, timeout=15) as h, srv.connect() as c:
        want = c.request("POST", "/work/hash?rounds=20000", body=b"secret").body
        check(len(want) >= 64, "HTTP/1.1 hash %r" % want)
        sids = [h.request("POST", "/work/hash?rounds=20000", body=b"secret") for _ in range(6)]
        quick = h.request("GET", "/plaintext")
        check_h2_std(h.response(quick), HELLO)
        for sid in sids:
            st = h.response(sid)
            eq(st.status, 200, "hash status")
            eq(bytes(st.body), want, "hash over HTTP/2")
    with it_app() as srv, H2(srv.port) as h:
        t0 = time.monotonic()
        sids = [h.request("GET", "/async?ms=300") for _ in range(5)]
        for sid in sids:
            st = h.response(sid)
            check_h2_std(st, b"async 300")
        took = time.monotonic() - t0
        check(0.25 < took < 2.0, "5 parallel /async?ms=300 took %.2fs" % took)


@T.case("the test app over HTTP/2: middleware headers, route parameters, streamed bodies, HEAD")
def _():
    with it_app() as srv, H2(srv.port) as h:
        st = h.get("/users/42")
        check_h2_std(st, b"user 42")
        eq(st.header("x-mw"), "1", "middleware header")
        eq(h.get("/private/data").status, 401, "middleware short-circuit")
        eq(bytes(h.get("/private/data", headers=[("x-token", "secret")]).body), b"secret data",
           "middleware passes")
        st = h.get("/stream?n=20000")
        eq(st.status, 200, "stream status")
        eq(st.header("content-length"), None, "a streamed body has no content-length")
        eq(bytes(st.body), b"".join(b"piece %d\n" % i for i in range(20000)), "streamed body")
        st = h.get("/stream?n=3", method="HEAD")
        eq((st.status, bytes(st.body)), (200, b""), "HEAD of a streamed body")
        st = h.get("/big?kb=1024")
        eq(bytes(st.body), b"x" * (1024 * 1024), "a borrowed 1 MiB body")


@T.case("flow control: a 1 KiB stream window gets 1 MiB whole, slowly; the handler is held back "
        "(crest_res_buffered counts what the window has not taken)", timeout=60)
def _():
    with it_app() as srv, H2(srv.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                                                 1024}, timeout=40) as h:
        st = h.get("/flow?kb=1024", timeout=40)
        eq(st.status, 200, "status")
        body = bytes(st.body)
        eq(body[:1024 * 1024], b"f" * (1024 * 1024), "the 1 MiB")
        m = re.match(rb"most buffered (\d+)\n$", body[1024 * 1024:])
        check(m is not None, "no 'most buffered' line: %r" % body[-80:])
        most = int(m.group(1))
        check(0 < most <= 256 * 1024 + 16 * 1024,
              "the handler saw at most %d bytes buffered for a 1 KiB window" % most)


@T.case("a client resets streams in flight: the others and the connection go on, the server "
        "exits 0")
def _():
    with it_app() as srv, H2(srv.port, timeout=10) as h:
        big = h.request("GET", "/flow?kb=65536")
        h.wait(lambda: len(h.streams[big].body) > 0, "the first bytes of /flow")
        h.h.reset_stream(big, error_code=CANCEL)
        h.flush()
        later = h.request("GET", "/async?ms=200")
        check_h2_std(h.get("/users/1"), b"user 1")  # /async was dispatched before this answer
        h.h.reset_stream(later, error_code=CANCEL)
        h.flush()
        # The reset request is answered (into nothing) while this one waits.
        check_h2_std(h.get("/async?ms=400"), b"async 400")
        check_h2_std(h.get("/users/7"), b"user 7")
    with tmp_dir() as tmp, db_demo(tmp) as srv, H2(srv.port, timeout=10) as h:
        sid = h.request("POST", "/work/hash?rounds=300000", body=b"x")
        h.get("/plaintext")  # the hash request was read and submitted before this answer
        h.h.reset_stream(sid, error_code=CANCEL)
        h.flush()
        check_h2_std(h.get("/json"), JSON)


@T.case("crest_res_abort resets only its stream (INTERNAL_ERROR); the connection goes on")
def _():
    with it_app() as srv, H2(srv.port) as h:
        sid = h.request("GET", "/flow?kb=256&cut=128")
        other = h.request("GET", "/users/3")
        h.wait(lambda: h.streams[sid].reset is not None or h.streams[sid].ended, "stream %d" % sid)
        st = h.streams[sid]
        eq((st.status, st.reset, st.ended), (200, 2, False), "the aborted stream")
        check(0 < len(st.body) < 256 * 1024, "aborted after %d bytes" % len(st.body))
        check_h2_std(h.response(other), b"user 3")
        check_h2_std(h.get("/users/4"), b"user 4")
        eq(h.goaway, None, "GOAWAY")


@T.case("SIGTERM during streams: GOAWAY NO_ERROR, the streams in flight answered, exit 0")
def _():
    with it_app() as srv, RawH2(srv.port) as raw:
        enc = raw.enc
        for sid in (1, 3, 5):
            raw.send(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                           request_block(enc, "GET", "/async?ms=500")))
        raw.send(frame(PING, 0, 0, b"12345678"))
        raw.read_until(lambda: raw.frames >= 3, "the server's SETTINGS and the PING ack")
        srv.send_signal(signal.SIGTERM)
        code, last = raw.until_goaway()
        eq(code, NO_ERROR, "GOAWAY code")
        check(last >= 5, "GOAWAY last stream id %d" % last)
        check(not any(raw.streams.get(s) and raw.streams[s].ended for s in (1, 3, 5)),
              "the GOAWAY came after the answers, not at once")
        raw.read_until(lambda: all(raw.streams.get(s) and raw.streams[s].ended for s in (1, 3, 5)),
                       "the three answers")
        for sid in (1, 3, 5):
            eq(bytes(raw.streams[sid].body), b"async 500", "stream %d body" % sid)
        raw.expect_closed()
        eq(srv.wait_exit(5), 0, "exit status")


@T.case("an idle HTTP/2 connection is closed after --keepalive-timeout with a GOAWAY")
def _():
    with demo("--keepalive-timeout", "300ms") as srv, RawH2(srv.port) as raw:
        raw.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                       request_block(raw.enc, "GET", "/plaintext")))
        code, last = raw.until_goaway(timeout=3)
        eq((code, last), (NO_ERROR, 1), "GOAWAY")
        eq(bytes(raw.streams[1].body), HELLO, "the answer before it")
        raw.expect_closed()


@T.case("h2load -c 4 -m 10 -n 20000 /plaintext: every request succeeds", timeout=90)
def _():
    with demo() as srv:
        p = subprocess.run(["h2load", "-c", "4", "-m", "10", "-n", "20000",
                            "http://127.0.0.1:%d/plaintext" % srv.port],
                           capture_output=True, timeout=80)
        out = p.stdout.decode()
        check(p.returncode == 0, "h2load exit %d: %s" % (p.returncode, out[-600:]))
        check("20000 succeeded, 0 failed, 0 errored, 0 timeout" in out,
              "h2load: %s" % out[-600:])
        check("status codes: 20000 2xx" in out, "h2load: %s" % out[-600:])


# ---------------------------------------------------------------------------------------------
# Defences: the offender gets a GOAWAY, a connection opened beside it goes on.


@T.case("rapid reset: 500 streams opened and reset at once -> GOAWAY ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        check_h2_std(h.get("/plaintext"), HELLO)
        with RawH2(srv.port) as raw:
            flood = bytearray()
            for i in range(500):
                sid = 1 + 2 * i
                flood += frame(HEADERS, END_STREAM | END_HEADERS, sid,
                               request_block(raw.enc, "GET", "/plaintext"))
                flood += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
            raw.send_in_thread(bytes(flood))
            expect_calm(raw, "500 resets")
        bystanders_served(srv, h)


@T.case("PING flood (20000 at once) -> GOAWAY ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port) as raw:
            raw.send_in_thread(frame(PING, 0, 0, b"\0" * 8) * 20000)
            expect_calm(raw, "a PING flood")
        bystanders_served(srv, h)


@T.case("SETTINGS flood (20000 at once) -> GOAWAY ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port) as raw:
            raw.send_in_thread(frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 65535)) * 20000)
            expect_calm(raw, "a SETTINGS flood")
        bystanders_served(srv, h)


@T.case("empty DATA flood on an open request -> GOAWAY ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port) as raw:
            raw.send(frame(HEADERS, END_HEADERS, 1, request_block(raw.enc, "POST", "/echo")))
            raw.send_in_thread(frame(DATA, 0, 1) * 1000)
            expect_calm(raw, "1000 empty DATA frames")
        bystanders_served(srv, h)


@T.case("CONTINUATION flood (a header block that never ends) -> GOAWAY ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port) as raw:
            block = request_block(raw.enc, "GET", "/plaintext")
            flood = frame(HEADERS, 0, 1, block) + frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") * 1000
            raw.send_in_thread(flood)
            expect_calm(raw, "1000 CONTINUATION frames")
        bystanders_served(srv, h)


@T.case("over 100 concurrent streams: REFUSED_STREAM before the SETTINGS ack, then GOAWAY "
        "PROTOCOL_ERROR")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port, ack_settings=False) as raw:
            opened = bytearray()
            for i in range(150):  # open requests (no END_STREAM): they stay open
                opened += frame(HEADERS, END_HEADERS, 1 + 2 * i,
                                request_block(raw.enc, "POST", "/echo"))
            raw.send(bytes(opened))
            raw.read_until(lambda: len(raw.resets) >= 50, "50 RST_STREAM")
            eq(sorted(raw.resets), [1 + 2 * i for i in range(100, 150)], "refused streams")
            check(all(c == REFUSED_STREAM for c in raw.resets.values()), "codes %r" % raw.resets)
            raw.send(frame(DATA, END_STREAM, 1, b"ok"))  # the first hundred are served
            raw.read_until(lambda: 1 in raw.streams and raw.streams[1].ended, "stream 1")
            eq(bytes(raw.streams[1].body), b"ok", "stream 1 echo")
            # Acknowledged, the limit binds: one stream too many ends the connection.
            raw.send(frame(SETTINGS, ACK, 0) + frame(HEADERS, END_HEADERS, 401,
                                                     request_block(raw.enc, "POST", "/echo")) +
                     frame(HEADERS, END_HEADERS, 403, request_block(raw.enc, "POST", "/echo")))
            code, _ = raw.until_goaway()
            eq(code, PROTOCOL_ERROR, "GOAWAY code")
        bystanders_served(srv, h)


@T.case("HPACK bomb (a 4000-byte field indexed once, referenced 200 times) -> GOAWAY "
        "ENHANCE_YOUR_CALM")
def _():
    with demo() as srv, H2(srv.port) as h:
        with RawH2(srv.port) as raw:
            block = request_block(raw.enc, "GET", "/plaintext", [("x-bomb", "a" * 4000)] * 200)
            check(len(block) < 16384, "the bomb fits one frame (%d bytes)" % len(block))
            raw.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
            expect_calm(raw, "an HPACK bomb")
        bystanders_served(srv, h)


@T.case("a header block over max_header_bytes (but no bomb) -> 431, the connection goes on")
def _():
    with demo() as srv, H2(srv.port) as h:
        st = h.get("/plaintext", headers=[("x-big", "b" * 20000)])
        eq(st.status, 431, "status")
        st = h.get("/plaintext", headers=[("x-h%d" % i, "v") for i in range(101)])
        eq(st.status, 431, "101 fields")
        check_h2_std(h.get("/plaintext"), HELLO)
        eq(h.goaway, None, "GOAWAY")

def sse_events(st):
    """The events (dicts of fields) in a stream's body so far, comments skipped."""
    out = []
    for block in bytes(st.body).decode().split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                k, _, v = line.partition(": ")
                fields[k] = v
        if "data" in fields:
            out.append(fields)
    return out


def chat_say(port, room, name, text):
    import asyncio
    import websockets

    async def go():
        uri = "ws://127.0.0.1:%d/ws/chat?room=%s&name=%s" % (port, room, name)
        async with websockets.connect(uri) as ws:
            await ws.recv()  # own join
            await ws.send(json.dumps({"text": text}))
            while json.loads(await ws.recv())["type"] != "message":
                pass
    asyncio.run(asyncio.wait_for(go(), 20))


@T.case("SSE over HTTP/2: 20 /events streams share one connection, each gets every chat message; "
        "a reset stream leaves the others; SIGTERM ends them and the server exits 0")
def _():
    with tmp_dir() as tmp, db_demo(tmp, "--threads", "1") as srv, H2(srv.port) as h:
        sids = [h.request("GET", "/events", headers=[("accept", "text/event-stream")])
                for _ in range(20)]
        h.wait(lambda: all(h.streams[s].status for s in sids), "20 event stream heads")
        for s in sids:
            st = h.streams[s]
            eq(st.status, 200, "status")
            eq(st.header("content-type"), "text/event-stream", "content type")
            check(not st.ended, "stream %d ended early" % s)
        chat_say(srv.port, "r1", "ann", "first")
        h.wait(lambda: all(any(e.get("event") == "message" and "first" in e["data"]
                               for e in sse_events(h.streams[s])) for s in sids),
               "the first message on 20 streams")
        # One stream reset by the client: the others (and the connection) go on.
        h.h.reset_stream(sids[0])
        h.flush()
        chat_say(srv.port, "r2", "bob", "second")
        h.wait(lambda: all(any("second" in e["data"] for e in sse_events(h.streams[s]))
                           for s in sids[1:]), "the second message on 19 streams")
        check_h2_std(h.get("/plaintext"), HELLO)
        srv.proc.send_signal(signal.SIGTERM)
        h.wait(lambda: all(h.streams[s].ended or h.streams[s].reset is not None
                           for s in sids[1:]) or h.eof, "the streams to end at SIGTERM")
        eq(srv.proc.wait(timeout=10), 0, "exit status")


@T.case("HEAD /events over HTTP/2: the stream's head, the stream ends at once, no events; the "
        "connection goes on")
def _():
    with tmp_dir() as tmp, db_demo(tmp, "--sse-keepalive", "100ms") as srv, H2(srv.port) as h:
        st = h.get("/events", method="HEAD", headers=[("accept", "text/event-stream")], timeout=3)
        eq(st.status, 200, "status")
        eq(st.header("content-type"), "text/event-stream", "content type")
        eq(st.header("cache-control"), "no-cache", "no-cache")
        eq(bytes(st.body), b"", "body")
        # A GET stream opened after it gets its keep-alive comments: by then a HEAD stream kept
        # open would have had its own (it is ended already, so h2 would fail on its DATA).
        sid = h.request("GET", "/events", headers=[("accept", "text/event-stream")])
        h.wait(lambda: b": keep-alive" in h.streams[sid].body, "a keep-alive on the GET stream")
        eq(st.reset, None, "the HEAD stream reset")
        check_h2_std(h.get("/plaintext"), HELLO)
        eq(h.goaway, None, "GOAWAY")


if __name__ == "__main__":
    T.main(needs=("crest", "it_app"))
