"""The CPU worker pool through POST /work/hash: PBKDF2-HMAC-SHA256 results against known
vectors, rounds validation, /healthz answering while jobs run, clients that leave during a job,
a full queue answered 503 with Retry-After, and shutdown with jobs in flight.
"""

import hashlib
import json
import signal

from harness import *

T = Suite()

DEFAULT_SALT = b"crest-work-hash"



def work_server(tmp, *args):
    return demo("--db", "sqlite:%s/x.db" % tmp, *args)


def hash_req(rounds=None, salt=None, body=b""):
    q = []
    if rounds is not None:
        q.append("rounds=%s" % rounds)
    if salt is not None:
        q.append("salt=%s" % salt)
    target = "/work/hash" + ("?" + "&".join(q) if q else "")
    return build_request("POST", target, body=body)


def hash_json(r):
    eq(r.status, 200, "hash status (body %r)" % r.body[:200])
    check_std_headers(r)
    eq(r.header("Content-Type"), "application/json", "Content-Type")
    return json.loads(r.body)


def ready(conn, timeout=0.0):
    return conn.wait_readable(timeout)


@T.case("hash matches the RFC 7914 section 11 PBKDF2-HMAC-SHA256 vectors")
def _():
    # RFC 7914 11: P="passwd", S="salt", c=1 and P="Password", S="NaCl", c=80000, dkLen 64.
    # crest returns 32 bytes: PBKDF2's first output block, so the first half of the vector.
    vectors = [
        (b"passwd", "salt", 1,
         "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"),
        (b"Password", "NaCl", 80000,
         "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"),
    ]
    with tmp_dir() as tmp, work_server(tmp) as srv, srv.connect() as c:
        for pw, salt, rounds, want in vectors:
            c.send(hash_req(rounds, salt, pw))
            j = hash_json(c.read_response(timeout=20))
            eq(j, {"algorithm": "PBKDF2-HMAC-SHA256", "rounds": rounds, "salt": salt,
                   "length": 32, "digest": want}, "result for %r" % pw)


@T.case("hash with the default salt and rounds matches hashlib.pbkdf2_hmac")
def _():
    with tmp_dir() as tmp, work_server(tmp) as srv, srv.connect() as c:
        for body, rounds in [(b"", 5), (b"hello world", None), (bytes(range(256)) * 100, 7)]:
            c.send(hash_req(rounds, None, body))
            j = hash_json(c.read_response(timeout=20))
            n = rounds if rounds is not None else 1000
            eq(j["rounds"], n, "rounds")
            eq(j["salt"], DEFAULT_SALT.decode(), "salt")
            eq(j["digest"], hashlib.pbkdf2_hmac("sha256", body, DEFAULT_SALT, n, 32).hex(),
               "digest of %d bytes" % len(body))


@T.case("rounds above --max-hash-rounds, zero or non-numeric -> 400; a bad salt -> 400")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--max-hash-rounds", "5000") as srv, \
            srv.connect() as c:
        for rounds in ["5001", "0", "-1", "abc", "", "1e3", "99999999999999999999"]:
            c.send(hash_req(rounds, None, b"x"))
            r = c.read_response()
            eq(r.status, 400, "rounds=%r" % rounds)
            eq(json.loads(r.body).get("field"), "rounds", "error field")
        c.send(hash_req(None, "x" * 65, b"x"))
        eq(c.read_response().status, 400, "65-byte salt")
        c.send(hash_req(5000, None, b"x"))
        eq(hash_json(c.read_response(timeout=20))["rounds"], 5000, "the maximum itself")


@T.case("/healthz answers while every worker runs a long hash")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--threads", "1", "--workers", "2",
                                      "--max-hash-rounds", "50000000") as srv:
        jobs = [srv.connect(timeout=60) for _ in range(2)]
        try:
            for j in jobs:
                # Seconds of work each: far longer than the /healthz round trips below.
                j.send(hash_req(6000000, None, b"pw"))
            with srv.connect() as h:
                for _ in range(20):
                    r = h.request("GET", "/healthz")
                    eq(r.status, 200, "healthz")
            # The single loop thread answered 20 times while both hashes were still running.
            for j in jobs:
                check(not ready(j), "a hash finished before /healthz was answered 20 times")
            for j in jobs:
                hash_json(j.read_response(timeout=60))
        finally:
            for j in jobs:
                j.close()


@T.case("clients leaving during a job (running or queued) leave the server healthy")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--threads", "1", "--workers", "1",
                                      "--max-hash-rounds", "50000000") as srv:
        running = srv.connect()
        running.send(hash_req(800000, None, b"a"))
        queued = [srv.connect() for _ in range(3)]
        for q in queued:
            q.send(hash_req(800000, None, b"b"))
        with srv.connect() as h:
            eq(h.request("GET", "/healthz").status, 200, "healthz")
        running.abort()
        queued[0].close()
        queued[1].abort()
        # The last one stays: the pool must still work after the others left.
        hash_json(queued[2].read_response(timeout=30))
        queued[2].close()
        with srv.connect() as c:
            c.send(hash_req(3, None, b"x"))
            eq(hash_json(c.read_response(timeout=30))["digest"],
               hashlib.pbkdf2_hmac("sha256", b"x", DEFAULT_SALT, 3, 32).hex(), "digest")


@T.case("a full queue answers 503 with Retry-After, and recovers")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--threads", "1", "--workers", "1",
                                      "--work-queue", "2",
                                      "--max-hash-rounds", "50000000") as srv:
        # One worker and two queue slots hold at most three jobs; four sent back to back get
        # at least one 503 whatever the worker has picked up yet.
        conns = [srv.connect(timeout=60) for _ in range(4)]
        try:
            for c in conns:
                c.send(hash_req(400000, None, b"q"))
            statuses = []
            for c in conns:
                r = c.read_response(timeout=60)
                statuses.append(r.status)
                if r.status == 503:
                    eq(r.header("Retry-After"), "1", "Retry-After")
                    check("error" in json.loads(r.body), "503 body %r" % r.body)
                else:
                    hash_json(r)
            check(503 in statuses, "no 503 in %r" % statuses)
            check(statuses.count(200) >= 2, "fewer than two jobs ran: %r" % statuses)
        finally:
            for c in conns:
                c.close()
        with srv.connect() as c:
            c.send(hash_req(2, None, b"x"))
            hash_json(c.read_response(timeout=30))


@T.case("SIGTERM with a job running: its client gets the answer, exit 0")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--threads", "1", "--workers", "1",
                                      "--max-hash-rounds", "50000000") as srv:
        c = srv.connect(timeout=30)
        c.send(hash_req(1500000, None, b"late"))
        with srv.connect() as h:  # the job has been submitted once this answers
            eq(h.request("GET", "/healthz").status, 200, "healthz")
        srv.send_signal(signal.SIGTERM)
        j = hash_json(c.read_response(timeout=30))
        eq(j["digest"], hashlib.pbkdf2_hmac("sha256", b"late", DEFAULT_SALT, 1500000, 32).hex(),
           "digest")
        c.close()
        eq(srv.wait_exit(15), 0, "exit status")
        srv.stopped = True


@T.case("SIGTERM after the client of a running job left: exit 0, nothing leaked")
def _():
    with tmp_dir() as tmp, work_server(tmp, "--threads", "1", "--workers", "1",
                                      "--max-hash-rounds", "50000000") as srv:
        c = srv.connect()
        c.send(hash_req(1500000, None, b"gone"))
        q = srv.connect()
        q.send(hash_req(1500000, None, b"queued"))
        with srv.connect() as h:
            eq(h.request("GET", "/healthz").status, 200, "healthz")
        c.abort()
        q.abort()
        # The loop ends while the job still runs: its completion cannot be posted and is
        # released at pool stop; the queued one is cancelled (ASan checks for leaks).
        srv.stop(timeout=20)


if __name__ == "__main__":
    T.main(needs=("crest",))
