"""The installed library as an application author uses it: `make install PREFIX=<tmp>`, then
examples/hello.c compiled with pkg-config's crest.pc. --cflags is crest's include folder alone
(the public headers include only libc's); --libs links libcrest.so, which a non-system prefix
needs an rpath to find; --static --libs is everything a link of libcrest.a needs, and a binary so
linked does not load libcrest.so. Each binary is run: hello answers on 127.0.0.1:8080."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
BUILD = os.path.dirname(CREST_BIN)
HELLO_C = os.path.join(ROOT, "examples", "hello.c")
# The sanitizer passes install their instrumented library: what links it must be instrumented too.
MODE = {"build-san": (["SAN=1"], ["-fsanitize=address,undefined"]),
        "build-tsan": (["TSAN=1"], ["-fsanitize=thread"])}.get(os.path.basename(BUILD), ([], []))
# Headers a public header may include: the C library's.
LIBC = {"assert.h", "errno.h", "inttypes.h", "limits.h", "stdarg.h", "stdbool.h", "stddef.h",
        "stdint.h", "stdio.h", "stdlib.h", "string.h", "time.h", "sys/types.h", "sys/socket.h",
        "netinet/in.h", "sys/uio.h", "signal.h", "unistd.h", "pthread.h"}

_PREFIX = None


def prefix():
    """The folder `make install` installed into, once per run (removed at exit)."""
    global _PREFIX
    if _PREFIX is None:
        for tool in ("make", "pkg-config", "cc", "ldd"):
            check(shutil.which(tool), "%s is not installed" % tool)
        tmp = tempfile.mkdtemp(prefix="crest-pc-it.")
        p = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "install",
                            "PREFIX=" + tmp, "BUILD=" + os.path.relpath(BUILD, ROOT), *MODE[0]],
                           capture_output=True, timeout=120)
        eq(p.returncode, 0, "make install (stderr %r)" % p.stderr[-800:])
        _PREFIX = tmp
    return _PREFIX


def pkg_config(*args):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix(), "lib", "pkgconfig"))
    env.pop("PKG_CONFIG_LIBDIR", None)
    p = subprocess.run(["pkg-config", *args, "crest"], capture_output=True, env=env, timeout=10)
    eq(p.returncode, 0, "pkg-config %s (stderr %r)" % (" ".join(args), p.stderr))
    return p.stdout.decode().split()


def cc(out, *args):
    """Compiles hello.c into the install folder; returns (status, stderr)."""
    path = os.path.join(prefix(), out)
    p = subprocess.run(["cc", *MODE[1], "-o", path, HELLO_C, *args], capture_output=True,
                       timeout=60)
    return p.returncode, p.stderr.decode(errors="replace"), path


def ldd(path):
    p = subprocess.run(["ldd", path], capture_output=True, timeout=10)
    eq(p.returncode, 0, "ldd %s" % path)
    return p.stdout.decode()


def listens(pid, port):
    """Whether process pid holds a TCP socket listening on port (its fds against /proc/net/tcp):
    with SO_REUSEPORT another process's listener would answer a request just the same."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    inodes = set()
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            col = line.split()
            if col[1].endswith(":%04X" % port) and col[3] == "0A" and col[9] in inodes:
                return True
    return False


def run_hello(path):
    """Runs a hello binary: it listens on 127.0.0.1:8080 and answers /hello/<name> until SIGTERM,
    then exits 0. If something else holds that port, its start-up error (printed by main) shows
    that it ran all the same."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.Popen([path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not listens(proc.pid, 8080):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")
                check("hello: address already in use" in err,
                      "%s exited with %d: %r" % (path, proc.returncode, err))
                return
            check(time.monotonic() < deadline, "%s did not listen within %.0f s"
                  % (path, START_TIMEOUT))
            time.sleep(0.02)  # polls for the listener of a process that prints nothing
        with socket.create_connection(("127.0.0.1", 8080), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET /hello/pkg-config HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        check(got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"Hello, pkg-config!\n"),
              "answer: %r" % got[-300:])
        proc.send_signal(signal.SIGTERM)
        eq(proc.wait(timeout=STOP_TIMEOUT), 0, "exit status after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@T.case("crest.pc --cflags: crest's include folder alone; the public headers include only libc")
def _():
    eq(pkg_config("--cflags"), ["-I" + os.path.join(prefix(), "include")], "--cflags")
    eq(pkg_config("--libs"), ["-L" + os.path.join(prefix(), "lib"), "-lcrest"], "--libs")
    inc = os.path.join(prefix(), "include")
    headers = ["crest.h"] + ["crest/" + n for n in os.listdir(os.path.join(inc, "crest"))]
    for h in headers:
        with open(os.path.join(inc, h)) as f:
            for m in re.finditer(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', f.read(), re.M):
                if m.group(1) == '"':
                    check(m.group(2).startswith("crest/"), "%s includes %s" % (h, m.group(2)))
                else:
                    check(m.group(2) in LIBC, "%s includes <%s>, not libc's" % (h, m.group(2)))


@T.case("--libs: hello links libcrest.so; it runs with -Wl,-rpath to the prefix, not without")
def _():
    flags = pkg_config("--cflags", "--libs")
    rc, err, bare = cc("hello-norpath", *flags)
    eq(rc, 0, "cc (stderr %r)" % err)
    p = subprocess.run([bare], capture_output=True, timeout=10,
                       env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    eq(p.returncode, 127, "without an rpath the loader gives up (stderr %r)" % p.stderr)
    check(b"libcrest.so.0" in p.stderr, "the loader names libcrest.so.0: %r" % p.stderr)
    rc, err, path = cc("hello-rpath", *flags, "-Wl,-rpath," + os.path.join(prefix(), "lib"))
    eq(rc, 0, "cc (stderr %r)" % err)
    check(re.search(r"libcrest\.so\.0 => %s/lib/libcrest\.so\.0" % re.escape(prefix()),
                    ldd(path)), "ldd: %r" % ldd(path))
    run_hello(path)


@T.case("--static --libs: hello links libcrest.a without libcrest.so, and the whole archive "
        "links with what --static adds (not without it)")
def _():
    archive = os.path.join(pkg_config("--variable=libdir")[0], "libcrest.a")
    static_libs = pkg_config("--static", "--libs")
    # README's line: pkg-config's -lcrest would add a dependency on libcrest.so that nothing
    # uses; --as-needed drops it (gcc on Debian does so by default, clang does not).
    rc, err, path = cc("hello-static", *pkg_config("--cflags"), archive, "-Wl,--as-needed",
                       *static_libs)
    eq(rc, 0, "cc (stderr %r)" % err)
    check("libcrest" not in ldd(path), "the static binary loads libcrest: %r" % ldd(path))
    run_hello(path)
    # Every member of the archive, not just what hello pulls in: all its symbols resolve.
    whole = ["-Wl,--whole-archive", archive, "-Wl,--no-whole-archive", "-Wl,--as-needed"]
    rc, err, _ = cc("hello-whole", *pkg_config("--cflags"), *whole, *static_libs)
    eq(rc, 0, "the whole archive with --static --libs (stderr %r)" % err[-800:])
    rc, err, _ = cc("hello-whole-shared", *pkg_config("--cflags"), *whole, *pkg_config("--libs"))
    check(rc != 0 and "undefined reference" in err,
          "without --static the archive's dependencies are missing: rc %d" % rc)


if __name__ == "__main__":
    try:
        T.main(needs=("crest",))
    finally:
        if _PREFIX is not None:
            shutil.rmtree(_PREFIX, ignore_errors=True)
