"""The service manager's conventions, without systemd: a small harness plays the manager. It
makes the listening socket itself and execs crest with it as descriptor 3 (LISTEN_FDS=1,
LISTEN_PID set in the child to its own pid, as systemd does), and reads an AF_UNIX datagram
NOTIFY_SOCKET (a path or an abstract '@' name) for READY=1, WATCHDOG=1 and STOPPING=1."""

import os
import select
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from harness import _live_servers, _tls_args  # noqa: E402

T = Suite()
_TMP = tempfile.mkdtemp(prefix="crest-sd-")
DB = ("--db", "sqlite:" + os.path.join(_TMP, "demo.db"))


class Notify:
    """The manager's end of NOTIFY_SOCKET: a datagram socket bound to a path or abstract name."""

    def __init__(self, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "crest-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = os.path.join(_TMP, "notify-%d" % time.monotonic_ns())
            self.sock.bind(path)
            self.env = path
        self.got = []

    def wait_for(self, what, timeout=5):
        """Reads datagrams until one holds the line `what`; returns it (all its lines)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("no %s on NOTIFY_SOCKET within %.1fs (got %r)" % (what, timeout, self.got))
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                msg = self.sock.recv(4096).decode()
                self.got.append(msg)
                if what in msg.split("\n"):
                    return msg.split("\n")

    def close(self):
        self.sock.close()


class Activated:
    """crest demo started as a socket-activated service: `lsock` becomes its descriptor 3.

    Duck-types the parts of harness.Server that the cases use (port, connect, stop)."""

    def __init__(self, lsock, args=(), env=None, listen_pid="self", nfds=1):
        need_binary(CREST_BIN)
        self.port = lsock.getsockname()[1] if lsock.family != socket.AF_UNIX else None
        argv = [CREST_BIN, "demo", *DB, *args, *_tls_args(list(args), None)]
        full = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_",
                                                                            "WATCHDOG_"))}
        full.pop("PORT", None)
        full.update(env or {})
        full["LISTEN_FDS"] = str(nfds)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        high = os.dup(lsock.fileno())  # above 3 whatever the pipes took, so dup2 cannot clobber
        pid = os.fork()
        if pid == 0:  # the child: only descriptor calls and exec
            try:
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.dup2(high, 3)
                os.set_inheritable(3, True)
                full["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
                os.execve(argv[0], argv, full)
            finally:
                os._exit(127)
        os.close(high)
        os.close(out_w)
        os.close(err_w)
        self.pid = pid
        self.out = os.fdopen(out_r, "rb", buffering=0)
        self.err = os.fdopen(err_r, "rb", buffering=0)
        self.returncode = None
        self.stdout = b""
        self.stderr = b""
        _live_servers.append(self)

    def read_line(self, timeout=5):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.stdout:
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.out], [], [], max(left, 0))
            if not r:
                fail("no line on stdout within %.1fs; stderr %r" % (timeout, self.stderr_tail()))
            chunk = self.out.read(4096)
            if not chunk:
                fail("stdout closed; stderr %r" % self.stderr_tail())
            self.stdout += chunk
        line, _, self.stdout = self.stdout.partition(b"\n")
        return line.decode()

    def out_ready(self):
        return not self.out.closed and bool(select.select([self.out], [], [], 0)[0]) and \
            bool(self.out.read(4096))

    def connect(self):
        return Conn(self.port)

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.returncode is None and time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.01)
        return self.returncode

    def stderr_tail(self, n=1500):
        while not self.err.closed and select.select([self.err], [], [], 0)[0]:
            chunk = self.err.read(65536)
            if not chunk:
                break
            self.stderr += chunk
        return self.stderr[-n:]

    def kill(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait_exit(5)
        self.out.close()
        self.err.close()


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop(srv, notify=None):
    os.kill(srv.pid, signal.SIGTERM)
    if notify is not None:
        notify.wait_for("STOPPING=1")
    rc = srv.wait_exit(5)
    eq(rc, 0, "exit status after SIGTERM (stderr %r)" % srv.stderr_tail())
    _live_servers.remove(srv)
    srv.kill()


@T.case("socket activation: served on the passed socket, the --port flag not bound")
def _():
    lsock = listener()
    other = free_port()
    srv = Activated(lsock, ("--port", str(other), "--threads", "2"))
    lsock.close()  # the child has it now, as with systemd holding its own copy
    line = srv.read_line()
    check("port %d" % srv.port in line and "(2 threads)" in line, "listening line %r" % line)
    conns = [srv.connect() for _ in range(6)]  # spread over both loop threads
    for c in conns:
        r = c.request("GET", "/plaintext")
        eq((r.status, r.body), (200, b"Hello, World!"), "/plaintext on the passed socket")
        c.close()
    check(port_refuses(other), "crest bound --port %d as well" % other)
    stop(srv)


@T.case("NOTIFY_SOCKET path: READY=1 once serving (a request right after succeeds), "
        "STOPPING=1 on SIGTERM, exit 0")
def _():
    n = Notify(abstract=False)
    try:
        lsock = listener()
        srv = Activated(lsock, ("--threads", "2"), env={"NOTIFY_SOCKET": n.env})
        lsock.close()
        lines = n.wait_for("READY=1")
        check(any(ln.startswith("STATUS=") for ln in lines), "READY without STATUS: %r" % lines)
        with srv.connect() as c:
            eq(c.request("GET", "/plaintext").status, 200, "request right after READY=1")
        check(not any("WATCHDOG=1" in m for m in n.got), "watchdog without WATCHDOG_USEC")
        stop(srv, n)
    finally:
        n.close()


@T.case("abstract NOTIFY_SOCKET and WATCHDOG_USEC=200000: WATCHDOG=1 repeatedly, then "
        "STOPPING=1")
def _():
    n = Notify(abstract=True)
    try:
        lsock = listener()
        srv = Activated(lsock, (), env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "200000"})
        lsock.close()
        n.wait_for("READY=1")
        t0 = time.monotonic()
        for _ in range(4):
            n.wait_for("WATCHDOG=1", timeout=1)
        took = time.monotonic() - t0
        # Every 100 ms: four take 300-400 ms; allow a loaded machine its delays.
        check(0.25 < took < 2.0, "four WATCHDOG=1 took %.2fs" % took)
        stop(srv, n)
    finally:
        n.close()


@T.case("WATCHDOG_PID of another process: no WATCHDOG=1")
def _():
    n = Notify(abstract=True)
    try:
        lsock = listener()
        srv = Activated(lsock, (), env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "100000",
                                        "WATCHDOG_PID": "1"})
        lsock.close()
        n.wait_for("READY=1")
        r, _, _ = select.select([n.sock], [], [], 0.3)  # three periods of 50 ms would pass
        check(not r, "a notification arrived: %r" % (n.sock.recv(4096) if r else None))
        stop(srv, n)
    finally:
        n.close()


@T.case("LISTEN_PID of another process: the variables are ignored, crest binds its own port")
def _():
    srv = demo(*DB, env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    with srv, srv.connect() as c:
        eq(c.request("GET", "/plaintext").status, 200, "status")


@T.case("a passed descriptor that is not a listening TCP socket: exit 1 with a message")
def _():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    srv = Activated(udp, ("--threads", "1"))
    udp.close()
    rc = srv.wait_exit(5)
    err = srv.stderr_tail().decode()
    _live_servers.remove(srv)
    srv.kill()
    eq(rc, 1, "exit status (stderr %r)" % err)
    check("not a listening TCP socket" in err, "stderr %r" % err)


@T.case("the demo serves before its database is open: /plaintext 200, /db 503 + Retry-After, "
        "then a database that fails stops it with exit 1")
def _():
    # A PostgreSQL "server" that takes the connection and never answers holds the open back.
    mute = listener()
    lsock = listener()
    url = "postgres://crest@127.0.0.1:%d/crest?connect_timeout=10" % mute.getsockname()[1]
    srv = Activated(lsock, ("--threads", "1", "--db", url))
    lsock.close()
    try:
        with srv.connect() as c:
            r = c.request("GET", "/plaintext")
            eq((r.status, r.body), (200, b"Hello, World!"), "/plaintext while the database opens")
            r = c.request("GET", "/db")
            eq(r.status, 503, "/db while the database opens")
            eq(r.headers.get("retry-after"), "1", "Retry-After")
    finally:
        mute.close()  # the open fails now
    rc = srv.wait_exit(5)
    err = srv.stderr_tail().decode()
    _live_servers.remove(srv)
    srv.kill()
    eq(rc, 1, "exit status (stderr %r)" % err)
    check("crest: database" in err, "stderr %r" % err)
    check(srv.stdout == b"" and not srv.out_ready(), "a listening line was printed")


if __name__ == "__main__":
    T.main(needs=("crest",))
