"""The demo on PostgreSQL when the database misbehaves: stopped and started again, too slow, a
full queue, a client that leaves while its query is in flight. A real PostgreSQL, started by this
file (tests/it/pgserver.py) on a free loopback port; the TechEmpower and /api/todos behaviour on
PostgreSQL is test_db.py with CREST_IT_DB=postgres."""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

from harness import *
import pgserver

T = Suite()
PG = None


def pg():
    global PG
    if PG is None:
        PG = pgserver.PgServer()
    return PG


def server(db, *args):
    return demo("--db", pg().create_db(db), "--threads", "1", *args)


def get(c, target):
    c.send(build_request("GET", target))
    return c.read_response()


@T.case("PostgreSQL stopped: /db gets 503 with Retry-After within 2 s, /plaintext and WebSockets "
        "carry on, /metrics shows the pool down; started again: the next request succeeds without "
        "restarting crest")
def _():
    ready, down = 'crest_db_connections{state="ready"}', 'crest_db_connections{state="down"}'
    with server("outage") as srv, srv.connect() as c:
        eq(get(c, "/db").status, 200, "before")
        check(metric(srv, ready) >= 1, "a ready connection in /metrics")
        pg().stop("fast")
        try:
            for i in range(5):
                t0 = time.monotonic()
                r = get(c, "/db")
                took = time.monotonic() - t0
                eq(r.status, 503, "/db while down (%d)" % i)
                eq(r.header("Retry-After"), "1", "Retry-After")
                check(took < 2.0, "503 took %.2fs" % took)
                eq(get(c, "/plaintext").status, 200, "/plaintext while down")

            async def echo():
                async with srv.ws_connect("/ws/echo") as ws:
                    await ws.send("still here")
                    return await asyncio.wait_for(ws.recv(), 5)
            eq(asyncio.run(echo()), "still here", "WebSocket echo while down")
            eq(metric(srv, ready), 0, "no ready connection in /metrics while down")
            check(metric(srv, down) >= 1, "connections down in /metrics")
        finally:
            pg().start()
        t0 = time.monotonic()
        r = get(c, "/db")
        eq(r.status, 200, "first request after the restart (%r)" % r.body[:200])
        check(time.monotonic() - t0 < 2.0, "took %.2fs" % (time.monotonic() - t0))
        r = get(c, "/api/todos")
        eq(r.status, 200, "todos after the restart")
        check(metric(srv, ready) >= 1, "ready again in /metrics")
        check("connection lost" in srv.stderr_text() or "cannot connect" in srv.stderr_text(),
              "a log line says the database went away: %r" % srv.stderr_text()[-500:])


@T.case("a batch the database does not answer within --db-timeout gets 503, and the connection "
        "serves the next request once the database answers again")
def _():
    with server("slow", "--db-timeout", "400ms") as srv, srv.connect() as c:
        eq(get(c, "/db").status, 200, "warm")
        lock = pg().session("BEGIN; LOCK TABLE world IN ACCESS EXCLUSIVE MODE;", "slow")
        try:
            t0 = time.monotonic()
            r = get(c, "/db")
            took = time.monotonic() - t0
            eq(r.status, 503, "/db behind the lock")
            check(0.3 <= took < 2.0, "answered after %.2fs" % took)
        finally:
            lock.close()
        r = get(c, "/db")
        eq(r.status, 200, "after the lock (%r)" % r.body[:200])


@T.case("a full queue of waiting batches (--db-queue) answers 503 at once; those queued "
        "complete")
def _():
    with server("queue", "--db-queue", "2", "--db-timeout", "10s") as srv:
        with srv.connect() as c:
            eq(get(c, "/db").status, 200, "warm")
        lock = pg().session("BEGIN; LOCK TABLE world IN ACCESS EXCLUSIVE MODE;", "queue")
        waiting = [srv.connect(), srv.connect()]
        try:
            for w in waiting:
                w.send(build_request("GET", "/db"))
            time.sleep(0.2)  # let both reach the queue; nothing to wait on from outside
            with srv.connect() as c:
                t0 = time.monotonic()
                r = get(c, "/db")
                eq(r.status, 503, "third batch")
                eq(r.header("Retry-After"), "1", "Retry-After")
                check(time.monotonic() - t0 < 1.0, "at once")
                eq(get(c, "/plaintext").status, 200, "/plaintext meanwhile")
        finally:
            lock.close()
        for w in waiting:
            eq(w.read_response().status, 200, "queued batch")
            w.close()


@T.case("a client that leaves while its batch is in flight: the result is dropped and the "
        "server goes on")
def _():
    with server("gone", "--db-timeout", "10s") as srv:
        lock = pg().session("BEGIN; LOCK TABLE world IN ACCESS EXCLUSIVE MODE;", "gone")
        try:
            for target in ("/db", "/queries?queries=20", "/updates?queries=5", "/fortunes"):
                c = srv.connect()
                c.send(build_request("GET", target))
                c.abort()
            time.sleep(0.2)
        finally:
            lock.close()
        with srv.connect() as c:
            for target in ("/db", "/queries?queries=20", "/updates?queries=5"):
                eq(get(c, target).status, 200, target)


@T.case("TLS to PostgreSQL where the URL asks for it (sslmode=verify-full: the server's "
        "certificate checked against its name), and refused when the server's name is wrong")
def _():
    folder = tempfile.mkdtemp(prefix="crest-pg-tls.")
    try:
        cert, key = make_cert(folder)
        tls_pg = pgserver.PgServer(tls=(cert, key))
        try:
            tls_pg.create_db("tls")
            url = tls_pg.url("tls", host="localhost") + "?sslmode=verify-full&sslrootcert=" + cert
            with demo("--db", url, "--threads", "1") as srv, srv.connect() as c:
                for target in ("/db", "/queries?queries=5", "/fortunes"):
                    eq(get(c, target).status, 200, target)
                rows = tls_pg.psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                                   "USING (pid) WHERE a.application_name = 'crest' AND s.ssl",
                                   "tls")
                check(int(rows[0][0]) >= 1, "crest's connections use TLS: %r" % rows)
            # The certificate is for localhost and 127.0.0.1, not for this name.
            bad = tls_pg.url("tls", host="127.0.0.1").replace("127.0.0.1", "127.0.0.2")
            rc, out, err = run_cli([CREST_BIN, "demo", "--port", "0", "--db",
                                    bad + "?sslmode=verify-full&sslrootcert=" + cert])
            check(rc != 0 and "crest: database" in err, "wrong name refused: %d %r" % (rc, err))
        finally:
            tls_pg.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@T.case("/queries?queries=20 is one round trip: crest sends its 20 queries to PostgreSQL in one "
        "write (strace counts the writes on the database's socket)")
def _():
    if shutil.which("strace") is None:
        fail("strace is not installed (scripts/deps.sh test installs it)")
    with server("trips") as srv, srv.connect() as c:
        eq(get(c, "/queries?queries=20").status, 200, "warm: the connection is up, prepared")
        log = os.path.join(tempfile.mkdtemp(prefix="crest-strace."), "trace")
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=sendto,sendmsg,write,writev",
                                   "-o", log, "-p", str(srv.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(0.5)  # strace attaches to every thread; no event to wait on
            for _ in range(3):
                r = get(c, "/queries?queries=20")
                eq(r.status, 200, "/queries")
                eq(len(json.loads(r.body)), 20, "rows")
            time.sleep(0.2)
        finally:
            tracer.terminate()
            tracer.wait(5)
        lines = open(log).read().splitlines()
        shutil.rmtree(os.path.dirname(log), ignore_errors=True)
        # Writes that carry the extended protocol's Bind messages go to PostgreSQL.
        to_pg = [l for l in lines if "sendto(" in l and '"B\\0' in l]
        eq(len(to_pg), 3, "writes to PostgreSQL for 3 requests (%s)" % "\n".join(lines[:20]))


def h2_requests(port, paths, timeout=10):
    """Sends every path as a stream of one HTTP/2 connection (prior knowledge) in one write, so
    the server handles them all in one turn of its loop; returns [(status, body)] in order."""
    import socket
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sids = []
        for path in paths:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                    (":authority", "127.0.0.1")], end_stream=True)
            sids.append(sid)
        sock.sendall(conn.data_to_send())
        status, body, ended = {}, {}, set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(sids):
            if time.monotonic() > deadline:
                fail("HTTP/2 answers missing: %d of %d" % (len(ended), len(sids)))
            data = sock.recv(65536)
            if not data:
                fail("connection closed with %d of %d answers" % (len(ended), len(sids)))
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body[ev.stream_id] = body.get(ev.stream_id, b"") + ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended.add(ev.stream_id)
            sock.sendall(conn.data_to_send())
        return [(status.get(sid), body.get(sid, b"")) for sid in sids]
    finally:
        sock.close()


@T.case("a batch that fails shares its Sync with good ones (HTTP/2 streams handled in one "
        "turn): it gets its error, its neighbours are sent again and succeed")
def _():
    with it_app("--db", pg().create_db("calc"), "--threads", "1") as srv:
        with srv.connect() as c:
            eq(get(c, "/db/calc?d=1").body, b"42", "warm")
        pattern = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
        got = h2_requests(srv.port, ["/db/calc?d=%d" % d for d in pattern])
        for i, (d, (status, body)) in enumerate(zip(pattern, got)):
            if d:
                eq((status, body), (200, b"42"), "stream %d (a good one)" % i)
            else:
                eq(status, 500, "stream %d (division by zero)" % i)
        with srv.connect() as c:
            eq(get(c, "/db/calc?d=1").body, b"42", "after")


if __name__ == "__main__":
    try:
        T.main(needs=("crest",))
    finally:
        if PG is not None:
            PG.close()
