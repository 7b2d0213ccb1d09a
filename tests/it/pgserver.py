"""A real PostgreSQL for the tests: initdb into a temporary folder, the server on a free loopback
port, stopped and removed at exit. PostgreSQL refuses to run as root, so as root the server and
its tools run as the postgres user (runuser). Nothing assumes a server is already running."""

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    return os.path.dirname(found[-1])


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self, tls=None):
        """tls: (cert, key) files to serve TLS with (ssl=on); plain TCP otherwise."""
        self.bin = _bindir()
        self.root = tempfile.mkdtemp(prefix="crest-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "log")
        self.as_root = os.getuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.port = _free_port()
        self.tls = None
        if tls is not None:
            # PostgreSQL wants its key readable by its own user only.
            self.tls = (os.path.join(self.root, "server.crt"), os.path.join(self.root, "server.key"))
            shutil.copyfile(tls[0], self.tls[0])
            shutil.copyfile(tls[1], self.tls[1])
            os.chmod(self.tls[1], 0o600)
            if self.as_root:
                for f in self.tls:
                    os.chown(f, pw.pw_uid, pw.pw_gid)
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U",
                   "postgres", "--no-sync", "-E", "UTF8"])
        self.start()
        atexit.register(self.close)

    def _run(self, argv, timeout=60, check=True, input=None):
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           input=input, cwd=self.root)
        if check and p.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.decode(errors="replace")))
        return p

    def start(self):
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200"
                % (self.port, self.root))
        if self.tls:
            opts += " -c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s" % self.tls
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                   "-t", "30", "-o", opts, "start"])

    def stop(self, mode="fast"):
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t",
                   "30", "stop"], check=False)

    def url(self, db, host="127.0.0.1"):
        return "postgres://postgres@%s:%d/%s" % (host, self.port, db)

    def psql(self, sql, db="postgres"):
        """Run sql; rows as lists of strings."""
        p = self._run(["psql", "-X", "-q", "-At", "-F", "\t", "-h", "127.0.0.1", "-p",
                       str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                       "-c", sql])
        out = p.stdout.decode()
        return [line.split("\t") for line in out.splitlines() if line]

    def session(self, sql, db="postgres"):
        """An open psql session that ran sql (say, took a lock) and waits: close() it to end it
        (its transaction is then committed or rolled back by sql that close sends)."""
        return Session(self, sql, db)

    def create_db(self, name):
        if not self.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % name):
            self.psql("CREATE DATABASE %s" % name)
        return self.url(name)

    def close(self):
        if self.root is None:
            return
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


class Session:
    def __init__(self, pg, sql, db):
        argv = ["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                "postgres", "-d", db, "-v", "ON_ERROR_STOP=1"]
        if pg.as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=pg.root)
        self.proc.stdin.write((sql + "\nSELECT 'ready';\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or line.strip() == b"ready":
                break
        else:
            raise RuntimeError("psql session did not get ready")
        if not line:
            raise RuntimeError("psql session ended: %r" % self.proc.returncode)

    def close(self, sql="COMMIT;"):
        if self.proc is None:
            return
        try:
            self.proc.stdin.write((sql + "\n").encode())
            self.proc.stdin.close()
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


_shared = None


def shared():
    """One server per test process, started on first use."""
    global _shared
    if _shared is None:
        _shared = PgServer()
    return _shared
