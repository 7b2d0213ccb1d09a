"""The crest command line: --help, --version, flag and value errors, PORT, port in use, the
listening line, and graceful shutdown on SIGTERM/SIGINT."""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from harness import _tls_args  # noqa: E402

T = Suite()


def cli(*args, timeout=5, env=None):
    need_binary(CREST_BIN)
    return run_cli([CREST_BIN, *args], timeout=timeout, env=env)


def expect_usage_error(args, what=None):
    rc, out, err = cli(*args)
    what = what or " ".join(args)
    eq(rc, 2, "exit status for %r (stderr %r)" % (what, err))
    lines = err.splitlines()
    eq(len(lines), 1, "stderr line count for %r (stderr %r)" % (what, err))
    check(lines[0].startswith("crest: "), "stderr for %r does not start with 'crest: ': %r"
          % (what, err))


@T.case("--help: usage on stdout, exit 0")
def _():
    rc, out, err = cli("--help")
    eq(rc, 0, "exit status (stderr %r)" % err)
    check("usage" in out.lower(), "no usage text on stdout: %r" % out[:300])
    check("demo" in out, "--help does not mention the demo command: %r" % out[:300])


@T.case("demo --help: usage listing the flags on stdout, exit 0")
def _():
    rc, out, err = cli("demo", "--help")
    eq(rc, 0, "exit status (stderr %r)" % err)
    check("usage" in out.lower(), "no usage text on stdout: %r" % out[:300])
    for flag in ("--host", "--port", "--threads", "--max-request-line", "--max-header-bytes",
                 "--max-headers", "--max-body", "--header-timeout", "--body-timeout",
                 "--keepalive-timeout", "--shutdown-timeout"):
        check(flag in out, "--help does not mention %s" % flag)


@T.case("--version: prints 'crest 0.1.0', exit 0")
def _():
    rc, out, err = cli("--version")
    eq(rc, 0, "exit status (stderr %r)" % err)
    eq(out.strip(), "crest 0.1.0", "stdout")


@T.case("unknown flag: one 'crest: ' line on stderr, exit 2")
def _():
    expect_usage_error(["demo", "--port", "0", "--bogus"])
    expect_usage_error(["demo", "--port", "0", "--bogus=1"])


@T.case("unknown subcommand: exit 2 with a 'crest: ' message")
def _():
    expect_usage_error(["frobnicate", "--port", "0"])


@T.case("bad --port values (abc, -1, 65536, empty, missing): exit 2")
def _():
    for v in ("abc", "-1", "65536", "", "80x"):
        expect_usage_error(["demo", "--host", "127.0.0.1", "--port", v], "--port %r" % v)
    expect_usage_error(["demo", "--host", "127.0.0.1", "--port"], "--port without value")


@T.case("bad --threads values (0, -2, abc): exit 2")
def _():
    for v in ("0", "-2", "abc", ""):
        expect_usage_error(["demo", "--port", "0", "--threads", v], "--threads %r" % v)


@T.case("bad SIZE values (1x, -5, k, 1.5k, empty, 99999999999m): exit 2")
def _():
    for flag in ("--max-body", "--max-request-line", "--max-header-bytes"):
        for v in ("1x", "-5", "k", "", "abc", "99999999999999m"):
            expect_usage_error(["demo", "--port", "0", flag, v], "%s %r" % (flag, v))


@T.case("bad --max-headers values (abc, -1): exit 2")
def _():
    for v in ("abc", "-1", ""):
        expect_usage_error(["demo", "--port", "0", "--max-headers", v], "--max-headers %r" % v)


@T.case("bad DUR values (5h, abc, -1s, ms, empty): exit 2")
def _():
    for flag in ("--header-timeout", "--body-timeout", "--keepalive-timeout",
                 "--shutdown-timeout"):
        for v in ("5h", "abc", "-1s", "ms", "", "10 s"):
            expect_usage_error(["demo", "--port", "0", flag, v], "%s %r" % (flag, v))


@T.case("bad --host value: exit 2 (or 1 if it fails at bind) with a 'crest: ' message")
def _():
    rc, out, err = cli("demo", "--port", "0", "--host", "not-an-address")
    check(rc in (1, 2), "exit status %r for a bad host (stderr %r)" % (rc, err))
    check(err.startswith("crest: "), "stderr %r" % err)


@T.case("good SIZE and DUR spellings are accepted (k, m, bare bytes, ms, s, m, bare seconds)")
def _():
    with demo("--max-body", "2m", "--max-request-line", "4096", "--max-header-bytes", "32k",
              "--max-headers", "50", "--header-timeout", "1500ms", "--body-timeout", "2s",
              "--keepalive-timeout", "1m", "--shutdown-timeout", "3") as srv, srv.connect() as c:
        r = c.request("POST", "/echo", body=b"k" * (1536 * 1024))
        eq((r.status, len(r.body)), (200, 1536 * 1024), "1.5 MiB body under --max-body 2m")


@T.case("--max-body 2k: 2048 accepted, 2049 rejected with 413 (k = 1024)")
def _():
    with demo("--max-body", "2k") as srv:
        with srv.connect() as c:
            eq(c.request("POST", "/echo", body=b"a" * 2048).status, 200, "2048 bytes")
        with srv.connect() as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2049\r\n\r\n")
            eq(c.read_response().status, 413, "2049 bytes")


@T.case("listening line: exact format, port > 0, thread count from --threads")
def _():
    with demo("--threads", "3") as srv:
        eq(srv.listen_line, "crest listening on %s://127.0.0.1:%d (3 threads)"
           % ("https" if srv.tls_cert else "http", srv.port), "listening line")
        eq(srv.threads, 3, "threads")


@T.case("default --threads is the CPU count")
def _():
    with demo() as srv:
        counts = {os.cpu_count(), len(os.sched_getaffinity(0))}
        check(srv.threads in counts, "threads %d, CPU count %r" % (srv.threads, counts))


@T.case("PORT environment variable is used when --port is absent")
def _():
    need_binary(CREST_BIN)
    srv = Server([CREST_BIN, "demo", "--host", "127.0.0.1"], env={"PORT": "0"})
    with srv, srv.connect() as c:
        check(srv.port not in (0, 8080), "port %d: PORT=0 not honoured" % srv.port)
        eq(c.request("GET", "/plaintext").status, 200, "status")


@T.case("--port wins over PORT")
def _():
    need_binary(CREST_BIN)
    srv = Server([CREST_BIN, "demo", "--host", "127.0.0.1", "--port", "0"],
                 env={"PORT": "1"})  # port 1 would need root; 0 must win
    with srv:
        check(srv.port > 1, "port %d" % srv.port)


@T.case("bad PORT environment value: exit 2 with a 'crest: ' message")
def _():
    rc, out, err = cli("demo", "--host", "127.0.0.1", env={"PORT": "notaport"})
    eq(rc, 2, "exit status (stderr %r)" % err)
    check(err.startswith("crest: "), "stderr %r" % err)


@T.case("port in use: 'address already in use' on stderr, exit 1")
def _():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        rc, out, err = cli("demo", "--host", "127.0.0.1", "--port", str(port))
        eq(rc, 1, "exit status (stderr %r)" % err)
        check("address already in use" in err, "stderr lacks 'address already in use': %r" % err)
        check(err.startswith("crest: "), "stderr does not start with 'crest: ': %r" % err)
        check("listening" not in out, "printed a listening line: %r" % out)
    finally:
        holder.close()


@T.case("SIGTERM on an idle server: exit 0 promptly")
def _():
    with demo() as srv:
        t0 = time.monotonic()
        srv.stop(signal.SIGTERM, timeout=3)
        check(time.monotonic() - t0 < 2, "took %.2fs" % (time.monotonic() - t0))


@T.case("SIGINT on an idle server: exit 0 promptly")
def _():
    with demo() as srv:
        srv.stop(signal.SIGINT, timeout=3)


@T.case("SIGTERM: an idle keep-alive connection is closed, exit 0 well before the timeout")
def _():
    with demo("--shutdown-timeout", "10s") as srv, srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "request")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        c.expect_closed(3, "idle keep-alive close at shutdown")
        rc = srv.wait_exit(3)
        eq(rc, 0, "exit status (stderr %r)" % srv.stderr_tail())
        check(time.monotonic() - t0 < 3, "shutdown took %.2fs" % (time.monotonic() - t0))


@T.case("SIGTERM: idle connections on every thread are closed (--threads 2, 8 conns)")
def _():
    with demo("--threads", "2") as srv:
        conns = [srv.connect() for _ in range(8)]
        try:
            for c in conns:
                eq(c.request("GET", "/json").status, 200, "request")
            srv.send_signal(signal.SIGTERM)
            for c in conns:
                c.expect_closed(3, "idle close at shutdown")
            eq(srv.wait_exit(3), 0, "exit status (stderr %r)" % srv.stderr_tail())
        finally:
            for c in conns:
                c.close()


def inflight_async(srv, ms):
    """Returns a connection whose /async?ms=ms request the server has certainly read.

    A first request and the async one go in a single write; once the first response is back
    the server has read both (one loopback segment) and, with one thread, started the async
    one in the same read callback, before it can handle a signal."""
    c = srv.connect()
    c.send(build_request("GET", "/users/1") + build_request("GET", "/async?ms=%d" % ms))
    r = c.read_response()
    eq((r.status, r.body), (200, b"user 1"), "first response")
    return c


@T.case("graceful shutdown: in-flight /async?ms=500 completes with 200 after SIGTERM")
def _():
    with it_app("--threads", "1") as srv:
        c = inflight_async(srv, 500)
        with c:
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            # New connections are refused while the in-flight request is still pending.
            wait_until(lambda: port_refuses(srv.port), 0.4, "the listener to close")
            check(srv.alive(), "server exited before answering the in-flight request")
            r = c.read_response(timeout=3)
            eq((r.status, r.body), (200, b"async 500"), "in-flight response")
            check(time.monotonic() - t0 < 1.5, "answer took %.2fs" % (time.monotonic() - t0))
            c.read_until_close(3)
        eq(srv.wait_exit(3), 0, "exit status (stderr %r)" % srv.stderr_tail())
        check(port_refuses(srv.port), "port still accepts after exit")


@T.case("graceful shutdown with --threads 2: in-flight requests on several conns complete")
def _():
    with it_app("--threads", "2") as srv:
        conns = []
        try:
            for _ in range(4):
                conns.append(inflight_async(srv, 400))
            srv.send_signal(signal.SIGTERM)
            for c in conns:
                r = c.read_response(timeout=3)
                eq((r.status, r.body), (200, b"async 400"), "in-flight response")
            eq(srv.wait_exit(3), 0, "exit status (stderr %r)" % srv.stderr_tail())
        finally:
            for c in conns:
                c.close()


@T.case("--shutdown-timeout 300ms: a request longer than that does not hold exit back")
def _():
    with it_app("--threads", "1", "--shutdown-timeout", "300ms") as srv:
        c = inflight_async(srv, 8000)
        with c:
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            rc = srv.wait_exit(4)
            took = time.monotonic() - t0
            check(rc is not None, "still running %.1fs after SIGTERM" % took)
            eq(rc, 0, "exit status (stderr %r)" % srv.stderr_tail())
            check(took >= 0.25, "exited after %.3fs, before the shutdown timeout" % took)
            c.read_until_close(2)


@T.case("SIGTERM during a partially received request: server exits 0")
def _():
    with demo("--shutdown-timeout", "1s") as srv, srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "first request")
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait_exit(4)
        eq(rc, 0, "exit status (stderr %r)" % srv.stderr_tail())


def help_flags():
    """Every flag `crest demo --help` lists, in order."""
    rc, out, err = cli("demo", "--help")
    eq(rc, 0, "exit status (stderr %r)" % err)
    return [m.group(1) for m in re.finditer(r"^  (--[a-z][a-z0-9-]*)", out, re.M)], out


@T.case("demo --help: grouped by topic, every flag the parser knows listed once")
def _():
    flags, out = help_flags()
    for topic in ("Listening:", "Limits:", "Timeouts:", "Workers:", "Database:", "Redis:",
                  "WebSocket/SSE:", "Static files:", "Security:", "Observability:", "TLS:"):
        check("\n%s\n" % topic in out, "--help lacks the topic %r" % topic)
    eq(len(flags), len(set(flags)), "flags listed twice: %r" % flags)
    for f in ("--static-cache-control", "--compress", "--cors-origin", "--cors-credentials",
              "--rate-limit", "--rate-burst", "--trusted-proxy", "--access-log",
              "--no-security-headers", "--db", "--redis", "--quiet"):
        check(f in flags, "--help does not list %s" % f)
    # Each listed flag is one the parser takes: a wrong value is refused naming that flag.
    for f in flags:
        if f == "--help":
            continue
        rc, _, err = cli("demo", "%s=" % f)  # empty: wrong for every kind of value
        eq(rc, 2, "%s with a bad value (stderr %r)" % (f, err))
        check(f in err, "%s: the error does not name the flag: %r" % (f, err))


@T.case("the new flags: good values accepted, bad ones refused naming the flag")
def _():
    good = [("--rate-limit", "2.5"), ("--rate-limit", "100"), ("--rate-burst", "20"),
            ("--cors-origin", "https://example.com"), ("--cors-origin", "*"),
            ("--trusted-proxy", "10.0.0.0/8"), ("--trusted-proxy", "::1"),
            ("--static-cache-control", "public, max-age=60"), ("--access-log", "-")]
    args = [a for pair in good for a in pair]
    with demo(*args, "--compress", "--cors-credentials", "--no-security-headers") as srv, \
            srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "status")
    for flag, v in (("--rate-limit", "0"), ("--rate-limit", "-1"), ("--rate-limit", "abc"),
                    ("--rate-limit", "nan"), ("--rate-burst", "0"),
                    ("--cors-origin", "example.com"), ("--cors-origin", "https://a.com/"),
                    ("--trusted-proxy", "10.0.0.0/33"), ("--trusted-proxy", "proxy"),
                    ("--static-cache-control", ""), ("--access-log", "")):
        rc, _, err = cli("demo", "--port", "0", flag, v)
        eq(rc, 2, "%s %r (stderr %r)" % (flag, v, err))
        check(err.startswith("crest: %s: " % flag), "%s %r: stderr %r" % (flag, v, err))
    many = [a for i in range(17) for a in ("--cors-origin", "https://h%d.example" % i)]
    rc, _, err = cli("demo", "--port", "0", *many)
    eq(rc, 2, "17 --cors-origin (stderr %r)" % err)


@T.case("CREST_<FLAG> from the environment: values used, the flag wins")
def _():
    need_binary(CREST_BIN)
    env = {"CREST_THREADS": "3", "CREST_MAX_BODY": "2k", "CREST_PORT": "0",
           "CREST_HOST": "127.0.0.1", "CREST_QUIET": "yes", "CREST_CORS_ORIGIN":
           "https://a.example, https://b.example"}
    srv = Server([CREST_BIN, "demo"] + _tls_args([], None), env=env)
    with srv:
        eq(srv.threads, 3, "CREST_THREADS")
        with srv.connect() as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2049\r\n\r\n")
            eq(c.read_response().status, 413, "CREST_MAX_BODY=2k")
    with demo("--threads", "2", "--max-body", "4k", env=env) as srv:
        eq(srv.threads, 2, "--threads over CREST_THREADS")
        with srv.connect() as c:
            eq(c.request("POST", "/echo", body=b"a" * 3000).status, 200, "--max-body over env")


@T.case("CREST_PORT wins over PORT; DATABASE_URL still read")
def _():
    need_binary(CREST_BIN)
    srv = Server([CREST_BIN, "demo", "--host", "127.0.0.1"] + _tls_args([], None),
                 env={"CREST_PORT": "0", "PORT": "1"})
    with srv:
        check(srv.port > 1, "port %d" % srv.port)
    rc, out, err = cli("demo", "--port", "0", env={"DATABASE_URL": "nosuch:x"})
    check(rc != 0 and "nosuch:x" in err, "DATABASE_URL not used: %d %r" % (rc, err))


@T.case("a bad CREST_ value: exit 2, one line naming the variable")
def _():
    for var, v in (("CREST_MAX_BODY", "lots"), ("CREST_THREADS", "0"), ("CREST_COMPRESS", "maybe"),
                   ("CREST_RATE_LIMIT", "-3"), ("CREST_WS_SLOW_POLICY", "explode"),
                   ("CREST_CORS_ORIGIN", "https://ok.example,bad"),
                   ("CREST_HEADER_TIMEOUT", "5h")):
        rc, out, err = cli("demo", "--port", "0", env={var: v})
        eq(rc, 2, "%s=%r: exit status (stderr %r)" % (var, v, err))
        lines = err.splitlines()
        eq(len(lines), 1, "%s=%r: stderr lines %r" % (var, v, err))
        check(lines[0].startswith("crest: %s: expected " % var), "%s: stderr %r" % (var, err))
    # Overridden by its flag, a bad variable is not read at all.
    rc, out, err = cli("demo", "--threads", "abc", env={"CREST_THREADS": "nope"})
    check("--threads" in err and "CREST_THREADS" not in err, "stderr %r" % err)


@T.case("bool variables take 1/0/true/false/yes/no")
def _():
    for v in ("1", "true", "yes", "0", "false", "no", "TRUE"):
        rc, out, err = cli("demo", "--help", env={"CREST_COMPRESS": v})
        eq(rc, 0, "CREST_COMPRESS=%s with --help (stderr %r)" % (v, err))
    with demo(env={"CREST_WS_DEFLATE": "true", "CREST_NO_SECURITY_HEADERS": "0"}) as srv, \
            srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "status")


if __name__ == "__main__":
    T.main(needs=("crest", "it_app"))
