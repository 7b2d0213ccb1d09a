"""System calls seen from outside with strace: pipelined requests that arrive in one read are
answered with one write (one writev when there are several buffers), not one per response."""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()

NAMES = r"(read|readv|recvfrom|write|writev|sendto|sendmsg)"
SYSCALL_RE = re.compile(r"^(\d+)\s+" + NAMES + r"\((\d+),.*\)\s+=\s+(-?\d+)")
# With several threads strace splits a call: "PID write(FD, ... <unfinished ...>" and later
# "PID <... write resumed>...) = N".
UNFINISHED_RE = re.compile(r"^(\d+)\s+" + NAMES + r"\((\d+),(.*)<unfinished \.\.\.>")
RESUMED_RE = re.compile(r"^(\d+)\s+<\.\.\. " + NAMES + r" resumed>.*\)\s+=\s+(-?\d+)")


def traced(srv, body):
    """Runs body() while strace is attached to every thread of the server; returns the
    (syscall, fd, result) triples seen."""
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "crest-strace-%d.txt" % os.getpid())
    # -f with -p attaches every thread of the process ("attached with N threads").
    argv = ["strace", "-f", "-s", "64", "-e",
            "trace=read,readv,recvfrom,write,writev,sendto,sendmsg", "-o", out,
            "-p", str(srv.proc.pid)]
    st = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    try:
        # strace prints "Process N attached" once it traces the process.
        line = st.stderr.readline()
        check(b"attached" in line, "strace did not attach: %r" % line)
        body()
    finally:
        st.send_signal(signal.SIGINT)  # detaches; the server goes on
        st.wait(10)
    calls = []
    pending = {}
    with open(out) as f:
        for line in f:
            m = SYSCALL_RE.match(line)
            if m:
                calls.append((m.group(2), int(m.group(3)), int(m.group(4)), line))
                continue
            m = UNFINISHED_RE.match(line)
            if m:
                pending[m.group(1)] = (m.group(2), int(m.group(3)), line)
                continue
            m = RESUMED_RE.match(line)
            if m and m.group(1) in pending:
                name, fd, first = pending.pop(m.group(1))
                calls.append((name, fd, int(m.group(3)), first))
    os.unlink(out)
    return calls


@T.case("16 pipelined requests in one read: answered with a single write")
def _():
    if shutil.which("strace") is None:
        fail("strace is not installed (scripts/deps.sh test installs it)")
    with demo("--threads", "1") as srv, srv.connect() as c:
        c.request("GET", "/plaintext")  # warm: the connection is accepted and served once
        req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n" * 16
        responses = []

        def body():
            c.send(req)
            for _ in range(16):
                responses.append(c.read_response())
            # A last round trip: once its answer is here, the writes before it have returned
            # and strace has logged them (the client can read data before the server's write
            # call has returned to strace).
            c.request("GET", "/healthz")

        calls = traced(srv, body)
        eq([r.body for r in responses], [b"Hello, World!"] * 16, "16 responses in order")
        reads = [x for x in calls if x[0] in ("read", "readv", "recvfrom") and x[2] > 0 and "GET /plaintext" in x[3]]
        check(reads, "no read of the requests seen: %r" % calls[:5])
        fd = reads[0][1]
        # Only what came before the /healthz round trip.
        last = next((i for i, x in enumerate(calls) if x[1] == fd and "GET /healthz" in x[3]),
                    len(calls))
        calls = calls[:last]
        reads = [x for x in calls if x[1] == fd and x[0] in ("read", "readv", "recvfrom") and x[2] > 0]
        writes = [x for x in calls if x[1] == fd and x[0] in ("write", "writev", "sendto", "sendmsg")]
        check(len(writes) == len(reads),
              "%d reads with data but %d writes on fd %d: %s" %
              (len(reads), len(writes), fd, [w[3].strip()[:80] for w in writes]))
        check(len(writes) <= 2, "16 pipelined responses took %d writes" % len(writes))


if __name__ == "__main__":
    T.main(needs=("crest",))
