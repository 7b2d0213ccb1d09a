"""Socket.IO from the outside: npm socket.io-client 4.x, unchanged (tests/it/sio_client.js), and
raw Engine.IO requests from Python, against tests/it/sio_app.c. With SIO_REF=1 the target is
tests/it/sio_ref.js instead, the same app on Node.js socket.io 4: every case here passes against
it, so a case that fails on crest shows where crest differs from socket.io itself.

Covered: the default transports (long-polling, then the upgrade to WebSocket), WebSocket only
and polling only (auth, acks with JSON of every type, Unicode); bytes both ways; rooms (every
member in order, the sender left out on request, leaving, non-members); an ack from client to
server; namespaces (a refused one, an unknown one); a disconnect by the server; a message over
max_payload; a client that stops answering pings; the open packet and the error answers of
Engine.IO; two polling GETs on one session; many polling clients on two loop threads.
socket.io-client and socket.io are installed by tests/run.sh into tests/e2e/node_modules."""

import asyncio
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
import harness  # noqa: E402
import websockets  # noqa: E402  (Debian's python3-websockets)

T = Suite()
HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = os.path.join(os.path.dirname(HERE), "e2e", "node_modules")
REF = os.environ.get("SIO_REF") == "1"
EIO = "/socket.io/?EIO=4&transport="
MAX_PAYLOAD = 100000


def target(*args):
    """The server under test, started with ARGS (--fast-ping, --threads N)."""
    check(os.path.isdir(os.path.join(MODULES, "socket.io-client")),
          "npm socket.io-client missing in %s (tests/run.sh installs it)" % MODULES)
    if not REF:
        return test_app("sio_app", "--quiet", *args)
    argv = ["node", os.path.join(HERE, "sio_ref.js"), "--host", "127.0.0.1", "--port", "0", *args]
    return Server(argv + harness._tls_args(args, None), env={"NODE_PATH": MODULES})


def client(srv, scenario, **opts):
    """Runs one scenario of sio_client.js; returns what it observed (its JSON line)."""
    env = dict(os.environ, NODE_PATH=MODULES)
    if srv.tls_cert:
        env["NODE_EXTRA_CA_CERTS"] = srv.tls_cert
    p = subprocess.run(["node", os.path.join(HERE, "sio_client.js"), srv.url(), scenario,
                        json.dumps(opts)], env=env, capture_output=True, text=True, timeout=25)
    if p.returncode != 0:
        fail("socket.io-client %s %r failed:\n%s%s" % (scenario, opts, p.stderr[-3000:],
                                                        p.stdout[-500:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def packets(body):
    """The packets of a polling payload (separated by U+001E)."""
    return body.decode("utf-8").split("\x1e") if body else []


def open_session(srv):
    """A raw Engine.IO session over polling: the open packet's fields."""
    with srv.connect() as c:
        r = c.request("GET", EIO + "polling")
    eq(r.status, 200, "open status (body %r)" % r.body[:200])
    check(r.body.startswith(b"0"), "open packet expected, got %r" % r.body[:200])
    return json.loads(r.body[1:])


def eio_error(srv, query, code, message, method="GET"):
    """A request that Engine.IO refuses: 400 and its JSON error."""
    with srv.connect() as c:
        r = c.request(method, "/socket.io/?" + query, body=b"" if method == "POST" else None)
    eq(r.status, 400, "%s %s status" % (method, query))
    eq(json.loads(r.body), {"code": code, "message": message}, "%s %s body" % (method, query))


# ---- socket.io-client ----------------------------------------------------------------------


def check_basic(out, first, upgraded, transport):
    eq((out["first"], out["upgraded"], out["transport"]), (first, upgraded, transport),
       "transports (first, upgraded, last)")
    check(isinstance(out["id"], str) and len(out["id"]) == 20, "socket id %r" % out["id"])


@T.case("default transports: polling, then the upgrade to WebSocket; auth, echo, Unicode")
def _():
    with target() as srv:
        check_basic(client(srv, "basic"), "polling", "websocket", "websocket")


@T.case("WebSocket only: auth, echo of JSON of every type, Unicode")
def _():
    with target() as srv:
        check_basic(client(srv, "basic", transports=["websocket"]), "websocket", None, "websocket")


@T.case("polling only: auth, echo of JSON of every type, Unicode")
def _():
    with target() as srv:
        check_basic(client(srv, "basic", transports=["polling"]), "polling", None, "polling")


@T.case("bytes both ways (alone, among JSON, server to client with an ack), WebSocket and polling")
def _():
    with target() as srv:
        for t in ("websocket", "polling"):
            eq(client(srv, "binary", transports=[t]), {"transport": t, "acks": 5}, t)
        eq(client(srv, "binary")["acks"], 5, "default transports")


@T.case("rooms: 50 messages in order to every member, say-others, leave, non-members")
def _():
    with target() as srv:
        eq(client(srv, "rooms"), {"a": 53, "b": 53, "c": 2}, "chat messages per client")
        eq(client(srv, "rooms", transports=["polling"]), {"a": 53, "b": 53, "c": 2},
           "chat messages per client over polling")


@T.case("server to client ack: question, the client's ack, answer")
def _():
    with target() as srv:
        for t in ("websocket", "polling"):
            eq(client(srv, "ask", transports=[t])["answer"],
               {"got": {"q": 42, "s": "\u00fc"}, "from": "client"}, t)


@T.case("namespaces: /admin with and without its token, /nope is Invalid namespace")
def _():
    with target() as srv:
        eq(client(srv, "namespaces"), {"wrong": "not authorized", "none": "not authorized",
                                       "nope": "Invalid namespace"}, "connect errors")


@T.case("the server disconnects a socket: io server disconnect, the count goes down")
def _():
    with target() as srv:
        for t in ("websocket", "polling"):
            eq(client(srv, "bye", transports=[t]),
               {"reason": "io server disconnect", "connected": False}, t)


@T.case("a 200 kB message: the session closes (POST 413 over polling), the server stays up")
def _():
    with target() as srv:
        out = client(srv, "oversize", transports=["websocket"])
        eq(out, {"transport": "websocket", "reason": "transport close"}, "over WebSocket")
        out = client(srv, "oversize", transports=["polling"])
        eq(out["transport"], "polling", "transport")
        check(out["reason"] in ("transport error", "transport close"),
              "disconnect reason over polling: %r" % out["reason"])
        # The same POST, raw: refused once more than max_payload came (socket.io counts the body
        # as it arrives; the rest is never sent, so that no reset of a connection closed on unread
        # bytes can swallow the answer), and the session is gone.
        sid = open_session(srv)["sid"]
        with srv.connect() as c:
            c.send(build_request("POST", EIO + "polling&sid=" + sid,
                                 [("Content-Type", "text/plain;charset=UTF-8"),
                                  ("Content-Length", str(2 * MAX_PAYLOAD))],
                                 b"4" + b"x" * (MAX_PAYLOAD + 20000)))
            try:
                eq(c.read_response("POST").status, 413, "raw POST over max_payload")
            except ConnClosed:
                # socket.io sometimes destroys the request's socket with unread bytes in it right
                # after its 413, and the reset loses the answer; crest must answer.
                check(REF, "raw POST over max_payload: closed without an answer")
        eio_error(srv, "EIO=4&transport=polling&sid=" + sid, 1, "Session ID unknown")
        check(srv.alive(), "server died")
        eq(client(srv, "basic", transports=["polling"])["transport"], "polling", "a new client")


# ---- raw Engine.IO ---------------------------------------------------------------------------


@T.case("open packet: sid, upgrades, pingInterval, pingTimeout, maxPayload")
def _():
    with target("--fast-ping") as srv:
        o = open_session(srv)
        check(isinstance(o.get("sid"), str) and o["sid"], "sid %r" % o.get("sid"))
        eq({k: o.get(k) for k in ("upgrades", "pingInterval", "pingTimeout", "maxPayload")},
           {"upgrades": ["websocket"], "pingInterval": 300, "pingTimeout": 200,
            "maxPayload": MAX_PAYLOAD}, "open packet")
        check(open_session(srv)["sid"] != o["sid"], "two sessions with one sid")
    with target() as srv:
        o = open_session(srv)
        eq((o["pingInterval"], o["pingTimeout"]), (25000, 20000), "default ping times")


@T.case("Engine.IO errors: unknown sid (code 1), unknown transport (0), EIO=3 (5)")
def _():
    with target() as srv:
        eio_error(srv, "EIO=4&transport=polling&sid=nosuchsession", 1, "Session ID unknown")
        eio_error(srv, "EIO=4&transport=polling&sid=nosuchsession", 1, "Session ID unknown",
                  method="POST")
        eio_error(srv, "EIO=4&transport=carrier-pigeon", 0, "Transport unknown")
        eio_error(srv, "EIO=3&transport=polling", 5, "Unsupported protocol version")
        check(open_session(srv)["sid"], "a good request after the bad ones")


@T.case("two concurrent polling GETs on one session: 400, and the session closes")
def _():
    with target() as srv:
        sid = open_session(srv)["sid"]
        q = EIO + "polling&sid=" + sid
        with srv.connect() as first, srv.connect() as second:
            # Nothing is queued: the GET that arrives first waits. Which one that is depends on
            # the two connections' timing (a TLS handshake, say), so neither is assumed.
            first.send(build_request("GET", q))
            second.send(build_request("GET", q))
            answers = sorted((r.status, packets(r.body)) for r in
                             (first.read_response(timeout=5), second.read_response(timeout=5)))
        # The overlapping GET gets 400; the waiting one is answered too (a close packet, or an
        # error), not left hanging.
        eq(answers[-1][0], 400, "the overlapping GET's status (both: %r)" % answers)
        check(answers[0][0] == 400 or "1" in answers[0][1], "the waiting GET: %r" % answers)
        eio_error(srv, "EIO=4&transport=polling&sid=" + sid, 1, "Session ID unknown")


def silent_polling(srv):
    """A polling session that reads but never answers a ping: seconds until it is closed."""
    sid = open_session(srv)["sid"]
    t0 = time.monotonic()
    pings = 0
    with srv.connect(timeout=3) as c:
        for _ in range(20):
            r = c.request("GET", EIO + "polling&sid=" + sid, timeout=3)
            if r.status == 400:
                break
            eq(r.status, 200, "GET status")
            got = packets(r.body)
            pings += got.count("2")
            if "1" in got:
                break
        else:
            fail("a silent polling session was not closed")
    check(pings >= 1, "no ping reached the silent polling client")
    return time.monotonic() - t0


async def ws_session(srv, answer, stay):
    """A raw Engine.IO session over WebSocket that answers pings or not; returns (seconds until
    the server closed it or None, pings seen). It stays at most `stay` seconds."""
    async with srv.ws_connect(EIO + "websocket", ping_interval=None) as ws:
        opened = await ws.recv()
        check(opened.startswith("0{"), "open packet expected, got %r" % opened)
        t0 = time.monotonic()
        pings = 0
        while True:
            left = stay - (time.monotonic() - t0)
            if left <= 0:
                return None, pings
            try:
                m = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                return None, pings
            except websockets.ConnectionClosed:
                return time.monotonic() - t0, pings
            if m == "2":
                pings += 1
                if answer:
                    await ws.send("3")


@T.case("a client that stops answering pings is closed within interval + timeout")
def _():
    bound = 0.3 + 0.2 + 1.5  # --fast-ping's interval and timeout, and slack for slow builds
    with target("--fast-ping") as srv:
        async def both():
            return await asyncio.gather(ws_session(srv, False, 5), ws_session(srv, True, 2 * bound))
        (silent, spings), (alive, apings) = asyncio.run(asyncio.wait_for(both(), 15))
        check(silent is not None and 0.4 <= silent <= bound,
              "silent WebSocket session closed after %r s (want 0.4..%.1f)" % (silent, bound))
        eq(spings, 1, "pings to the silent WebSocket client")
        check(alive is None, "a WebSocket client that answers pings was closed after %.2f s"
              % (alive or 0))
        check(apings >= 5, "only %d pings in %.1f s" % (apings, 2 * bound))
        took = silent_polling(srv)
        check(0.4 <= took <= bound, "silent polling session closed after %.2f s" % took)
        if not REF:
            with srv.connect() as c:
                st = json.loads(c.request("GET", "/sio-stats").body)
            check(st["ping_timeouts"] >= 2, "ping_timeouts in %r" % st)


@T.case("HTTP/2: polling requests for a session of the other loop thread hop there and back "
        "(a GET parked there is answered by an ack, a POST's packets run there)")
def _():
    if REF or harness.TLS_MODE:
        return  # Node's server speaks no cleartext HTTP/2; the client below is cleartext
    from test_h2 import H2
    with target("--threads", "2") as srv:
        def stats():
            with srv.connect() as c:
                return json.loads(c.request("GET", "/sio-stats").body)

        with H2(srv.port) as a:
            r = a.get(EIO + "polling")
            eq(r.status, 200, "open over HTTP/2")
            sid = json.loads(bytes(r.body)[1:])["sid"]
            q = EIO + "polling&sid=" + sid
            eq(a.get(q, "POST", body=b"40").status, 200, "CONNECT posted")
            check(bytes(a.get(q).body).startswith(b'40{"sid":'), "CONNECT answered")
            # New connections land on either thread: the first one on the other thread hops.
            for attempt in range(40):
                with H2(srv.port) as b:
                    parked = b.request("GET", q)
                    ack = 100 + attempt
                    body = ('42%d["echo","hop",%d]' % (ack, attempt)).encode()
                    eq(a.get(q, "POST", body=body).status, 200, "echo posted")
                    st = b.response(parked)
                    eq(st.status, 200, "the parked GET")
                    eq(bytes(st.body), ('43%d["hop",%d]' % (ack, attempt)).encode(),
                       "the ack, through the GET")
                    if stats()["hopped"] > 0:
                        # And a POST from there, its ack taken here.
                        eq(b.get(q, "POST", body=b'42999["echo","back"]').status, 200, "POST")
                        eq(bytes(a.get(q).body), b'43999["back"]', "its ack")
                        break
            check(stats()["hopped"] >= 2, "no HTTP/2 request hopped: %r" % stats())


@T.case("20 polling clients x 20 round trips on two loop threads")
def _():
    with target("--threads", "2") as srv:
        out = client(srv, "many", transports=["polling"], clients=20, rounds=20)
        eq(out, {"ok": 20, "rounds": 20, "transports": ["polling"]}, "clients")
        if not REF:
            eq(srv.threads, 2, "loop threads")
            with srv.connect() as c:
                st = json.loads(c.request("GET", "/sio-stats").body)
            # Each client's GETs and POSTs come on several connections, spread over both
            # threads: some had to move to their session's thread.
            check(st["moved"] > 0, "no request moved to its session's thread: %r" % st)
            eq(st["opened"] >= 20, True, "sessions opened (%r)" % st)


if __name__ == "__main__":
    T.main(needs=() if REF else ("it_app",))
