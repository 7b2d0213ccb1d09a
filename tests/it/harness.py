"""Shared code for crest's integration tests (Python 3 standard library only).

Each tests/it/test_*.py file starts the real binaries as subprocesses on 127.0.0.1 port 0,
talks to them over raw sockets (or curl and wrk), and prints one TAP line per test case.

Rules kept here so every test file follows them:
- No fixed ports: servers bind port 0 and the port is read from the listening line.
- No sleeps as synchronisation: every wait is on an event (a line, a byte, EOF, process exit)
  with a deadline. The only deliberate pauses are the ones that let a server timeout expire
  (set small by flag) and the spacing of split writes, which correctness never depends on.
- Every test case is bounded: SIGALRM aborts a case that overruns its limit, and every server
  a case started is stopped (SIGTERM, then SIGKILL) when the case ends.
- Every server is stopped with SIGTERM and must exit 0 within a timeout; anything else fails
  the case that started it.

TLS mode: with CREST_IT_TLS=1 in the environment, demo() and it_app() start the server with
--tls-cert/--tls-key of a certificate made once per run (tls_files()), and every client the
harness hands out speaks TLS, verifying that certificate: srv.connect() and Conn,
srv.ws_connect() (wss://), srv.url() (https://, with srv.curl_args() for curl).

Usage from a test file:

    from harness import *
    T = Suite()

    @T.case("plaintext answers 200")
    def _():
        with demo() as srv, srv.connect() as c:
            r = c.request("GET", "/plaintext")
            eq(r.status, 200, "status")

    if __name__ == "__main__":
        T.main(needs=("crest",))
"""

import atexit
import datetime
import os
import queue
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bin_path(env_name, default):
    path = os.environ.get(env_name) or default
    if not os.path.isabs(path):
        # Relative to the current directory (the repo root, by convention), falling back to the
        # repo root so the files also run from elsewhere.
        if not os.path.exists(path):
            path = os.path.join(ROOT, path)
    return os.path.abspath(path)


CREST_BIN = _bin_path("CREST_BIN", "build/crest")
CREST_IT_APP = _bin_path("CREST_IT_APP", "build/tests/it_app")

LISTEN_RE = re.compile(
    rb"^crest listening on (https?)://127\.0\.0\.1:(\d+) \((\d+) threads?\)\r?$")
DATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT$"
)

START_TIMEOUT = float(os.environ.get("CREST_IT_START_TIMEOUT", "10"))
STOP_TIMEOUT = float(os.environ.get("CREST_IT_STOP_TIMEOUT", "5"))
IO_TIMEOUT = float(os.environ.get("CREST_IT_IO_TIMEOUT", "5"))
CASE_TIMEOUT = float(os.environ.get("CREST_IT_CASE_TIMEOUT", "30"))
TLS_MODE = os.environ.get("CREST_IT_TLS") == "1"


class Failure(AssertionError):
    """A test expectation that did not hold."""


class CaseTimeout(Exception):
    """Raised by SIGALRM when a test case overruns its time limit."""


# ---------------------------------------------------------------------------------------------
# Assertions. Plain functions (not `assert`) so they survive python -O and carry a message.


def fail(msg):
    raise Failure(msg)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what="value"):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, _short(expected), _short(actual)))


def _short(v, limit=300):
    if isinstance(v, (bytes, bytearray)) and len(v) > limit:
        return bytes(v[:limit]) + b"...(%d bytes)" % len(v)
    if isinstance(v, str) and len(v) > limit:
        return v[:limit] + "...(%d chars)" % len(v)
    return v


# ---------------------------------------------------------------------------------------------
# TLS: certificates made with the openssl command line, client contexts that trust them.

_run_cert = []  # the run's (cert, key), once made
_contexts = {}  # client contexts by CA file and ALPN


def make_cert(folder, name="server", cn="localhost", kind="ec"):
    """Makes a self-signed certificate for localhost and 127.0.0.1 (it is its own CA) in folder,
    with an EC P-256 key (kind "ec") or an RSA 2048 one ("rsa"); returns (cert_path, key_path)."""
    cert = os.path.join(folder, name + ".crt")
    key = os.path.join(folder, name + ".key")
    keyopts = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
               else ["-newkey", "rsa:2048"])
    p = subprocess.run(["openssl", "req", "-x509", *keyopts, "-nodes", "-days", "2",
                        "-subj", "/CN=" + cn,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        fail("openssl could not make a certificate: %s" % p.stderr.decode("utf-8", "replace"))
    return cert, key


def tls_files():
    """The run's certificate and key: made at first use in a temporary folder that is removed
    when the process exits."""
    if not _run_cert:
        folder = tempfile.mkdtemp(prefix="crest-it-tls.")
        atexit.register(shutil.rmtree, folder, True)
        _run_cert.append(make_cert(folder))
    return _run_cert[0]


def client_context(cafile=None, alpn=("http/1.1",)):
    """A client context that trusts only cafile (default: the run's certificate) and checks the
    host name, as browsers do. Shared between connections (contexts are thread-safe)."""
    cafile = cafile or tls_files()[0]
    key = (cafile, tuple(alpn or ()))
    if key not in _contexts:
        ctx = ssl.create_default_context(cafile=cafile)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        _contexts[key] = ctx
    return _contexts[key]


def _flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def _tls_args(args, tls):
    """The flags that make a server speak TLS with the run's certificate: when tls is true, or
    None in TLS mode, and args do not name a certificate already."""
    if tls is None:
        tls = TLS_MODE
    if not tls or _flag_value(args, "--tls-cert") is not None:
        return []
    cert, key = tls_files()
    return ["--tls-cert", cert, "--tls-key", key]


# ---------------------------------------------------------------------------------------------
# Servers.

_live_servers = []  # every Server of the running case, stopped when the case ends


class Server:
    """A crest process started with --host 127.0.0.1 --port 0 plus extra args.

    Use as a context manager: on exit it sends SIGTERM and fails the case unless the process
    exits 0 within STOP_TIMEOUT.
    """

    def __init__(self, argv, env=None, start=True, expect_listen=True, cwd=None):
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd or ROOT
        self.tls_cert = _flag_value(self.argv, "--tls-cert")  # clients trust it (self-signed)
        self.scheme = None
        self.proc = None
        self.port = None
        self.threads = None
        self.listen_line = None
        self.stdout_lines = []
        self.stderr_chunks = []
        self._lines = queue.Queue()
        self._readers = []
        self.returncode = None
        self.stopped = False
        if start:
            self.start(expect_listen)

    def start(self, expect_listen=True):
        env = dict(os.environ)
        env.pop("PORT", None)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.cwd,
        )
        _live_servers.append(self)
        t1 = threading.Thread(target=self._read_stdout, daemon=True)
        t2 = threading.Thread(target=self._read_stderr, daemon=True)
        t1.start()
        t2.start()
        self._readers = [t1, t2]
        if expect_listen:
            self.wait_listening()

    def _read_stdout(self):
        for line in iter(self.proc.stdout.readline, b""):
            line = line.rstrip(b"\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)  # EOF marker

    def _read_stderr(self):
        while True:
            data = self.proc.stderr.read1(65536)
            if not data:
                break
            self.stderr_chunks.append(data)

    def wait_listening(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("no listening line within %.1fs; stdout=%r stderr=%r"
                     % (timeout, self.stdout_lines, self.stderr_text()))
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self._wait_quietly(2)
                fail("server exited (status %r) before listening; stdout=%r stderr=%r"
                     % (rc, self.stdout_lines, self.stderr_text()))
            m = LISTEN_RE.match(line)
            if m:
                self.listen_line = line.decode("latin-1")
                self.scheme = m.group(1).decode()
                self.port = int(m.group(2))
                self.threads = int(m.group(3))
                eq(self.scheme, "https" if self.tls_cert else "http", "scheme in %r" % line)
                check(self.port > 0, "listening line names port 0: %r" % line)
                return self.port

    def _wait_quietly(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_text(self):
        return b"".join(self.stderr_chunks).decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits for the process to exit; returns its status, or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._readers:
            t.join(2)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and waits; fails unless the process exits 0 within timeout. Only the
        first call checks; later calls (e.g. from __exit__) return the recorded status."""
        if self.proc is None or self.stopped:
            return self.returncode
        self.stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            rc = self.wait_exit(timeout)
            if rc is None:
                self.kill()
                fail("server (pid %d) did not exit within %.1fs of %s; stderr=%r"
                     % (self.proc.pid, timeout, signal.Signals(sig).name, self.stderr_tail()))
        else:
            rc = self.wait_exit(1)
            if rc is not None and rc != 0:
                fail("server had already exited with status %d before stop; stderr=%r"
                     % (rc, self.stderr_tail()))
        if rc != 0:
            fail("server exited with status %r after %s (want 0); stderr=%r"
                 % (rc, signal.Signals(sig).name, self.stderr_tail()))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def stderr_tail(self, limit=2000):
        s = self.stderr_text()
        return s[-limit:]

    def ssl_context(self):
        """A client context trusting this server's certificate; None when it speaks cleartext."""
        return client_context(self.tls_cert) if self.tls_cert else None

    def connect(self, timeout=IO_TIMEOUT, rcvbuf=None):
        return Conn(self.port, timeout=timeout, rcvbuf=rcvbuf, tls=self.ssl_context() or False)

    def url(self, path=""):
        """http://127.0.0.1:PORT/path, or https:// with TLS (curl needs curl_args() then)."""
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def curl_args(self):
        # These files are about HTTP/1.1 (100-continue, chunked uploads, its status lines): over
        # TLS curl would pick h2 by ALPN, which test_h2.py covers.
        return ["--cacert", self.tls_cert, "--http1.1"] if self.tls_cert else []

    def ws_url(self, path=""):
        return "%s://127.0.0.1:%d%s" % ("wss" if self.tls_cert else "ws", self.port, path)

    def ws_connect(self, path, **kw):
        """websockets.connect() to path, over TLS (wss://) when the server speaks it."""
        import websockets  # Debian's python3-websockets; only the files that use it need it
        return websockets.connect(self.ws_url(path), ssl=self.ssl_context(), **kw)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            # The case already failed; stop without masking its error.
            try:
                self.stop()
            except Failure as e:
                _diag_extra.append("also on stop: %s" % e)
            finally:
                self.kill()
                tail = self.stderr_tail(1500)
                if tail:
                    _diag_extra.append("server stderr: %r" % tail)
        if self in _live_servers:
            _live_servers.remove(self)
        return False


def tmp_dir():
    """A temporary folder for a case (a database file, a log): `with tmp_dir() as path:`; removed
    afterwards."""
    return tempfile.TemporaryDirectory(prefix="crest-it.", ignore_cleanup_errors=True)


def need_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        fail("binary missing: %s" % path)


def demo(*args, env=None, tls=None):
    """Starts `crest demo --host 127.0.0.1 --port 0 ARGS...`, with the run's certificate when
    tls is true (None: in TLS mode)."""
    need_binary(CREST_BIN)
    return Server([CREST_BIN, "demo", "--host", "127.0.0.1", "--port", "0", *args,
                   *_tls_args(args, tls)], env=env)


def it_app(*args, env=None, tls=None):
    """Starts the integration-test app with --host 127.0.0.1 --port 0 ARGS..., TLS as demo()."""
    need_binary(CREST_IT_APP)
    return Server([CREST_IT_APP, "--host", "127.0.0.1", "--port", "0", *args,
                   *_tls_args(args, tls)], env=env)


def test_app(name, *args, env=None, tls=None):
    """Starts tests/it/<name>.c's binary (built beside the integration-test app) with --host
    127.0.0.1 --port 0 ARGS..., TLS as demo()."""
    path = os.path.join(os.path.dirname(CREST_IT_APP), name)
    need_binary(path)
    return Server([path, "--host", "127.0.0.1", "--port", "0", *args, *_tls_args(args, tls)],
                  env=env)


def run_cli(argv, timeout=5, env=None):
    """Runs a command that is expected to exit by itself. Returns (status, stdout, stderr).

    If it is still running at the timeout (e.g. it started serving when it should have
    refused its arguments), it is killed and the case fails.
    """
    full_env = dict(os.environ)
    full_env.pop("PORT", None)
    if env:
        full_env.update(env)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=full_env, cwd=ROOT)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail("%r still running after %.1fs (killed); stdout=%r stderr=%r"
             % (argv[1:], timeout, out[-500:], err[-500:]))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client.


class Headers:
    """Ordered, case-insensitive header list."""

    def __init__(self, items):
        self.items = items  # [(name, value)] as received (str, latin-1)

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.items if k.lower() == n]

    def get(self, name, default=None):
        vals = self.get_all(name)
        if not vals:
            return default
        if len(vals) > 1:
            fail("header %s appears %d times: %r" % (name, len(vals), vals))
        return vals[0]

    def has(self, name):
        return bool(self.get_all(name))

    def __repr__(self):
        return repr(self.items)


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = None
        self.body = b""
        self.chunked = False
        self.chunks = []
        self.trailers = []
        self.raw_head = b""

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def connection_tokens(self):
        toks = set()
        for v in self.headers.get_all("Connection"):
            toks.update(t.strip().lower() for t in v.split(",") if t.strip())
        return toks

    def __repr__(self):
        return "<%s %s %r body=%r>" % (self.version, self.status, self.headers.items,
                                       _short(self.body, 200))


class ConnClosed(Exception):
    """The peer closed (or reset) the connection before the expected bytes arrived."""


class Conn:
    """A raw client connection (the test writes the HTTP bytes itself) with a read buffer and
    deadlines on every read: over TCP, or over TLS when tls is an ssl.SSLContext (None: the run's
    certificate in TLS mode, else cleartext; False: cleartext)."""

    def __init__(self, port, timeout=IO_TIMEOUT, rcvbuf=None, host="127.0.0.1", tls=None):
        self.timeout = timeout
        if tls is None:
            tls = client_context() if TLS_MODE else False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Must be set before connect for the window to take effect.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.tls = bool(tls)
        if tls:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
            except BaseException:
                self.sock.close()
                raise
        self.buf = bytearray()
        self.eof = False
        self.reset = False

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

    def abort(self):
        """Closes with RST (SO_LINGER 0) instead of FIN."""
        import struct
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def shutdown_write(self):
        """Half-closes: the server reads EOF, the client still reads. Over TLS too (a TCP FIN
        under the session; Python's own SSLSocket.shutdown would drop the session)."""
        socket.socket.shutdown(self.sock, socket.SHUT_WR)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_split(self, pieces, gap=0.003):
        """Sends each piece with its own write. The gap makes separate reads on the server
        likely; the test's correctness does not depend on it."""
        for i, p in enumerate(pieces):
            if i:
                time.sleep(gap)
            self.send(p)

    def send_bytewise(self, data, gap=0.001):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.send_split([data[i:i + 1] for i in range(len(data))], gap)

    def _fill(self, deadline, what):
        """Reads more bytes into buf; raises ConnClosed on EOF, Failure on timeout."""
        if self.eof:
            raise ConnClosed("connection closed while waiting for %s (buffered %r)"
                             % (what, _short(bytes(self.buf))))
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timed out waiting for %s (buffered %r)" % (what, _short(bytes(self.buf))))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            fail("timed out waiting for %s (buffered %r)" % (what, _short(bytes(self.buf))))
        except (ConnectionResetError, ssl.SSLError) as e:
            # A TLS alert or a bad record ends the connection as a reset does.
            self.eof = True
            self.reset = True
            raise ConnClosed("connection %s while waiting for %s (buffered %r)"
                             % ("reset" if isinstance(e, ConnectionResetError) else
                                "failed (%s)" % e, what, _short(bytes(self.buf))))
        if not data:
            self.eof = True
            raise ConnClosed("connection closed while waiting for %s (buffered %r)"
                             % (what, _short(bytes(self.buf))))
        self.buf += data

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def read_until(self, marker, timeout=None, what=None, limit=1 << 20):
        deadline = self._deadline(timeout)
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            if len(self.buf) > limit:
                fail("no %r within %d bytes" % (marker, limit))
            self._fill(deadline, what or repr(marker))

    def read_exact(self, n, timeout=None, what=None):
        deadline = self._deadline(timeout)
        while len(self.buf) < n:
            self._fill(deadline, what or "%d bytes" % n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _pending(self):
        """Plaintext already decrypted inside the TLS session, which select() cannot see."""
        return self.tls and self.sock.pending() > 0

    def _recv_by(self, deadline):
        """One read of what arrives before deadline: bytes, b"" at EOF (or a reset), None when
        nothing came. Over TLS a readable socket may hold a record with no data in it (the
        session tickets sent after the handshake) or part of one: recv then waits on."""
        if not self._pending():
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return None
        try:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            return self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, ssl.SSLError):
            self.reset = True
            return b""

    def wait_readable(self, timeout):
        """True if bytes are buffered or the socket is readable (data or EOF) within timeout.
        Over TLS readable is not enough (see _recv_by): the data is read into the buffer."""
        if self.buf or self.eof or self._pending():
            return True
        if not self.tls:
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            return bool(r)
        data = self._recv_by(time.monotonic() + timeout)
        if data is None:
            return False
        self.buf += data
        self.eof = not data
        return True

    def read_available(self, timeout):
        """Reads whatever arrives within timeout (possibly nothing); never fails."""
        deadline = time.monotonic() + timeout
        polled = False
        while not self.eof and (not polled or time.monotonic() < deadline):
            polled = True  # a timeout of 0 still looks once
            data = self._recv_by(deadline)
            if data is None:
                break
            if not data:
                self.eof = True
                break
            self.buf += data
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_until_close(self, timeout=None):
        """Returns every byte until EOF (or RST); fails if the peer keeps it open."""
        deadline = self._deadline(timeout)
        while not self.eof:
            try:
                self._fill(deadline, "the server to close the connection")
            except ConnClosed:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def expect_closed(self, timeout=None, what="connection close"):
        """Fails unless the server closes the connection without sending more bytes."""
        rest = self.read_until_close(timeout)
        if rest:
            fail("expected %s with no more bytes, got %r" % (what, _short(rest)))

    def expect_open(self, timeout=0.2):
        """Fails if the server closes the connection or sends bytes within timeout.

        A short bounded observation window: it proves nothing arrived in that window only."""
        rest = self.read_available(timeout)
        if rest:
            fail("unexpected bytes on an idle connection: %r" % _short(rest))
        if self.eof:
            fail("server closed a connection that should have stayed open")

    def read_response(self, method="GET", timeout=None):
        """Reads one response (a 1xx counts as one). The body is framed per RFC 9112 6.3."""
        deadline = self._deadline(timeout)
        r = Response()
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(self.buf) > (1 << 20):
                fail("response head larger than 1 MiB")
            self._fill(deadline, "a response head")
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        r.raw_head = head
        lines = head.split(b"\r\n")
        m = re.match(rb"^HTTP/(\d)\.(\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            fail("malformed status line %r" % lines[0])
        r.version = "HTTP/%s.%s" % (m.group(1).decode(), m.group(2).decode())
        r.status = int(m.group(3))
        r.reason = m.group(4).decode("latin-1")
        items = []
        for ln in lines[1:]:
            if b"\n" in ln or b"\r" in ln:
                fail("bare CR or LF in response head line %r" % ln)
            name, sep, value = ln.partition(b":")
            if not sep or not re.match(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$", name):
                fail("malformed response header line %r" % ln)
            items.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        r.headers = Headers(items)
        if method == "HEAD" or 100 <= r.status < 200 or r.status in (204, 304):
            return r
        te = r.headers.get_all("Transfer-Encoding")
        cl = r.headers.get_all("Content-Length")
        if te:
            check(not cl, "response has both Transfer-Encoding and Content-Length: %r" % items)
            check(te[-1].strip().lower().endswith("chunked"),
                  "response Transfer-Encoding is not chunked: %r" % te)
            r.chunked = True
            self._read_chunked(r, deadline)
        elif cl:
            check(len(cl) == 1, "several Content-Length headers in response: %r" % cl)
            check(re.match(r"^\d+$", cl[0]) is not None, "bad response Content-Length %r" % cl)
            r.body = self.read_exact(int(cl[0]), deadline - time.monotonic(), "response body")
        else:
            r.body = self.read_until_close(deadline - time.monotonic())
        return r

    def _read_chunked(self, r, deadline):
        body = bytearray()
        while True:
            line = self.read_until(b"\r\n", deadline - time.monotonic(), "a chunk size line")
            size_txt = line[:-2].split(b";", 1)[0].strip()
            if not re.match(rb"^[0-9A-Fa-f]+$", size_txt):
                fail("bad chunk size line %r" % line)
            n = int(size_txt, 16)
            if n == 0:
                break
            data = self.read_exact(n + 2, deadline - time.monotonic(), "chunk data")
            if data[-2:] != b"\r\n":
                fail("chunk data not followed by CRLF: %r" % data[-10:])
            r.chunks.append(data[:-2])
            body += data[:-2]
        while True:
            line = self.read_until(b"\r\n", deadline - time.monotonic(), "trailers")
            if line == b"\r\n":
                break
            r.trailers.append(line[:-2])
        r.body = bytes(body)

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1",
                host="test", timeout=None):
        """Sends one request and reads its final response (1xx responses are skipped)."""
        self.send(build_request(method, target, headers, body, version, host))
        while True:
            r = self.read_response(method, timeout)
            if not (100 <= r.status < 200):
                return r


def metric(srv, name):
    """The value of `name` in the server's /metrics (Prometheus text), as a number."""
    with srv.connect() as c:
        r = c.request("GET", "/metrics")
    eq(r.status, 200, "/metrics status")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            v = float(line.split()[1])
            return int(v) if v.is_integer() else v
    fail("metric %s missing from /metrics" % name)


def build_request(method, target, headers=None, body=None, version="HTTP/1.1", host="test"):
    """Builds request bytes. Adds Host (unless host is None) and Content-Length for a body
    unless the headers already frame it."""
    if isinstance(body, str):
        body = body.encode("latin-1")
    lines = ["%s %s %s" % (method, target, version)]
    hdrs = list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in hdrs:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(pieces, ext=b"", trailers=()):
    """Encodes pieces as a chunked body (each non-empty piece one chunk)."""
    out = bytearray()
    for p in pieces:
        if isinstance(p, str):
            p = p.encode("latin-1")
        if not p:
            continue
        out += b"%x%s\r\n" % (len(p), ext) + p + b"\r\n"
    out += b"0\r\n"
    for t in trailers:
        out += (t.encode("latin-1") if isinstance(t, str) else t) + b"\r\n"
    out += b"\r\n"
    return bytes(out)


def check_std_headers(r, framed=True):
    """Every response: Server: crest, an IMF-fixdate Date near now, and Content-Length or
    chunked (not both)."""
    eq(r.headers.get("Server"), "crest", "Server header")
    d = r.headers.get("Date")
    check(d is not None, "no Date header in %r" % r.headers)
    check(DATE_RE.match(d) is not None, "Date %r is not an IMF-fixdate" % d)
    when = datetime.datetime.strptime(d, "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    check(skew < 120, "Date %r is %.0fs away from now" % (d, skew))
    if framed:
        te = r.headers.has("Transfer-Encoding")
        cl = r.headers.has("Content-Length")
        check(te or cl, "neither Content-Length nor Transfer-Encoding in %r" % r.headers)
        check(not (te and cl), "both Content-Length and Transfer-Encoding in %r" % r.headers)


def check_ok_text(r, body, ctype=None, method="GET"):
    eq(r.status, 200, "status")
    check_std_headers(r)
    if isinstance(body, str):
        body = body.encode("latin-1")
    if method == "HEAD":
        eq(r.body, b"", "HEAD body")
        eq(r.headers.get("Content-Length"), str(len(body)), "HEAD Content-Length")
    else:
        eq(r.body, body, "body")
        if not r.chunked:
            eq(r.headers.get("Content-Length"), str(len(body)), "Content-Length")
    if ctype is not None:
        got = r.headers.get("Content-Type")
        check(got is not None and got.split(";")[0].strip().lower() == ctype,
              "Content-Type: expected %s, got %r" % (ctype, got))


def wait_until(pred, timeout, what, interval=0.01):
    """Polls pred() until true or the deadline; fails with what on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_refuses(port):
    """True if a connect to 127.0.0.1:port is refused right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()
    return False


def run_parallel(fn, args_list, timeout=20):
    """Runs fn(*args) in one thread each; returns the list of results or exceptions."""
    results = [None] * len(args_list)

    def work(i, a):
        try:
            results[i] = fn(*a)
        except BaseException as e:  # noqa: B902 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=work, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        fail("parallel workers still running after %.1fs" % timeout)
    return results


# ---------------------------------------------------------------------------------------------
# TAP runner.

_diag_extra = []


def _on_alarm(signum, frame):
    raise CaseTimeout("test case exceeded its time limit")


class Suite:
    def __init__(self):
        self.cases = []

    def case(self, name, timeout=CASE_TIMEOUT, skip=None):
        """Registers a case. skip: None, or why the case cannot run on this machine (a tool that
        is not installed); it is then reported as "ok - NAME # SKIP why", which tests/run.sh
        counts as skipped, not passed."""
        def deco(fn):
            self.cases.append((name, fn, timeout, skip))
            return fn
        return deco

    def main(self, needs=()):
        bins = {"crest": CREST_BIN, "it_app": CREST_IT_APP}
        missing = [bins[n] for n in needs if not os.path.isfile(bins[n])]
        filters = sys.argv[1:]
        cases = [c for c in self.cases if not filters or any(f in c[0] for f in filters)]
        print("1..%d" % len(cases), flush=True)
        if missing:
            # Every case would fail the same way; say so once per case, briefly.
            for name, _, _, _ in cases:
                print("not ok - %s" % name)
                print("# binary missing: %s" % ", ".join(missing))
            sys.stdout.flush()
            sys.exit(1)
        signal.signal(signal.SIGALRM, _on_alarm)
        failed = 0
        t0 = time.monotonic()
        for name, fn, timeout, skip in cases:
            if skip:
                print("ok - %s # SKIP %s" % (name, skip), flush=True)
                continue
            _diag_extra.clear()
            start = time.monotonic()
            err = None
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                fn()
            except BaseException as e:  # report everything, including CaseTimeout
                if isinstance(e, KeyboardInterrupt):
                    raise
                err = e
                tb = traceback.extract_tb(e.__traceback__)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                stray = list(_live_servers)
                for s in stray:
                    s.kill()
                    _diag_extra.append("server stderr: %r" % s.stderr_tail(1500))
                _live_servers.clear()
            took = time.monotonic() - start
            if err is None:
                print("ok - %s" % name)
            else:
                failed += 1
                print("not ok - %s" % name)
                where = [f for f in tb if f.filename != __file__] or tb
                loc = "%s:%d" % (os.path.basename(where[-1].filename), where[-1].lineno)
                msg = "%s: %s" % (type(err).__name__, err)
                for ln in msg.splitlines() or [""]:
                    print("# %s" % ln)
                print("# at %s (%.2fs)" % (loc, took))
                for extra in _diag_extra:
                    for ln in extra.splitlines():
                        print("# %s" % ln)
            sys.stdout.flush()
        skipped = sum(1 for c in cases if c[3])
        print("# %d/%d passed%s in %.1fs" % (len(cases) - failed - skipped, len(cases),
                                            ", %d skipped" % skipped if skipped else "",
                                            time.monotonic() - t0))
        sys.exit(1 if failed else 0)


__all__ = [n for n in dir() if not n.startswith("_")] + ["_short"]
