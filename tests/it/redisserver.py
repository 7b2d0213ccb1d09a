"""A real Redis for the tests: Debian's redis-server on a free loopback port, without persistence,
its working folder a temporary one, stopped and removed at exit. Nothing assumes a server is
already running.

    from redisserver import RedisServer
    r = RedisServer()                 # started; PING answered
    crest_args = ["--redis", r.url()] # redis://127.0.0.1:PORT
    r.cmd("PUBLISH", "room", "hi")    # -> 0 (the reply, decoded: int, str, list, None)
    r.numsub("room")                  # PUBSUB NUMSUB count
    r.channels()                      # PUBSUB CHANNELS *
    with r.monitor() as m:            # MONITOR on its own socket, in a thread
        ...
        m.wait_for(lambda m: m.count("PUBLISH") >= 3)
    r.stop(); r.start()               # SIGTERM, then the same port again
    r.kill(); r.start()               # SIGKILL, then the same port again

Commands go over a socket in RESP (a few lines below), one connection per command, so they work
across restarts. Errors come back as RedisError."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

START_TIMEOUT = 10.0
IO_TIMEOUT = 5.0


class RedisError(Exception):
    """An error reply (-ERR ...) or a server that does not answer."""


def _binary():
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    return path


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    """RESP2 replies from a socket: +simple and $bulk as str, :int as int, *array as list,
    nil as None; -error raises RedisError (inside an array it is returned as one)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._more()

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise RedisError("connection closed by redis-server")
        self.buf += data

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self, nested=False):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="surrogateescape")
        if kind == b"-":
            err = RedisError(rest.decode(errors="replace"))
            if nested:
                return err
            raise err
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply(nested=True) for _ in range(n)]
        raise RedisError("unexpected reply %r" % line[:80])


def _unquote(s):
    """One MONITOR line's arguments: "PUBLISH" "room" "a \\"b\\"" -> ["PUBLISH", "room", 'a "b"'].
    Redis quotes every argument and escapes \\ " \\n \\r \\t \\a \\b and other bytes as \\xHH."""
    args, i, n = [], 0, len(s)
    esc = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}
    while i < n:
        if s[i] != '"':
            i += 1
            continue
        i += 1
        cur = bytearray()
        while i < n and s[i] != '"':
            if s[i] == "\\" and i + 1 < n:
                c = s[i + 1]
                if c == "x" and i + 3 < n:
                    cur += bytes([int(s[i + 2:i + 4], 16)])
                    i += 4
                    continue
                cur += esc.get(c, c.encode())
                i += 2
                continue
            cur += s[i].encode()
            i += 1
        i += 1
        args.append(cur.decode(errors="surrogateescape"))
    return args


class Monitor:
    """MONITOR on its own connection, read by a background thread. `commands` holds every command
    seen since entering, each as a list of strings with the name upper-cased:
    ["PUBLISH", "room", "text"]. Entering waits for MONITOR's +OK, so every command sent after
    it is seen; leaving closes the connection and joins the thread."""

    def __init__(self, port):
        self.port = port
        self.commands = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.sock = None
        self.thread = None
        self.error = None

    def __enter__(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
        self.sock.sendall(_encode(["MONITOR"]))
        self.reader = _Reader(self.sock)
        if self.reader.reply() != "OK":
            raise RedisError("MONITOR was not accepted")
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            while True:
                line = self.reader.reply()
                # 1700000000.123456 [0 127.0.0.1:50000] "PUBLISH" "room" "text"
                at = line.find("] ")
                if at < 0:
                    continue
                args = _unquote(line[at + 2:])
                if args:
                    args[0] = args[0].upper()
                with self.lock:
                    self.commands.append(args)
                    self.changed.notify_all()
        except (OSError, RedisError) as e:
            with self.lock:
                self.error = e
                self.changed.notify_all()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.thread is not None:
            self.thread.join(IO_TIMEOUT)
            self.thread = None

    def seen(self, name=None):
        """The commands seen so far (a copy), all or those named `name` (any case)."""
        with self.lock:
            if name is None:
                return list(self.commands)
            return [c for c in self.commands if c[0] == name.upper()]

    def count(self, name):
        return len(self.seen(name))

    def wait_for(self, pred, timeout=IO_TIMEOUT):
        """Wait until pred(self) is true (checked at each command seen); False at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if pred(self):
                return True
            with self.lock:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                # A command seen between pred() and here is caught by the next round at most
                # 50 ms later.
                self.changed.wait(min(left, 0.05))


class RedisServer:
    def __init__(self, port=None):
        self.bin = _binary()
        self.root = tempfile.mkdtemp(prefix="crest-redis-")
        self.log = os.path.join(self.root, "redis.log")
        self.port = port or _free_port()
        self.proc = None
        self.start()
        atexit.register(self.close)

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=START_TIMEOUT):
        """Starts redis-server on self.port (again, after stop() or kill()); waits for PING."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("redis-server is already running (pid %d)" % self.proc.pid)
        argv = [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.root, "--daemonize", "no",
                "--logfile", self.log, "--protected-mode", "yes"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.cmd("PING") == "PONG":
                    return
            except (OSError, RedisError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s: %s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not answer PING within %.0f s: %s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.02)

    def _end(self, sig, timeout):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self, timeout=10):
        """SIGTERM and wait (SIGKILL after timeout); the exit status (0 for a clean stop)."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL and wait."""
        return self._end(signal.SIGKILL, 10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cmd(self, *args):
        """One command on a fresh connection; its reply (see _Reader) or RedisError."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT) as s:
            s.sendall(_encode(args))
            return _Reader(s).reply()

    def numsub(self, channel):
        """How many clients are subscribed to channel (PUBSUB NUMSUB; patterns not counted)."""
        return int(self.cmd("PUBSUB", "NUMSUB", channel)[1])

    def channels(self, pattern="*"):
        """The channels with at least one subscriber matching pattern (PUBSUB CHANNELS), sorted."""
        return sorted(self.cmd("PUBSUB", "CHANNELS", pattern))

    def monitor(self):
        return Monitor(self.port)

    def log_tail(self, limit=2000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-limit:]
        except OSError:
            return "(no log)"

    def close(self):
        if self.root is None:
            return
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


_shared = None


def shared():
    """One server per test process, started on first use."""
    global _shared
    if _shared is None:
        _shared = RedisServer()
    return _shared
