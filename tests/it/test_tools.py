"""Real clients against `crest demo`: Debian's curl for plain checks, and a short wrk run."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()

HELLO = b"Hello, World!"


def tool(argv, input=None, timeout=15):
    """Runs a client tool with a hard timeout; returns (status, stdout bytes, stderr text)."""
    if shutil.which(argv[0]) is None:
        fail("%s is not installed" % argv[0])
    try:
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("%r did not finish within %ds" % (argv, timeout))
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def curl(srv, *args, input=None):
    return tool(["curl", "-sS", "--max-time", "10", *srv.curl_args(), *args], input=input)


def split_head(out):
    """Splits curl -i output into (list of header blocks, body); 1xx blocks come first."""
    blocks = []
    while out.startswith(b"HTTP/"):
        head, sep, out = out.partition(b"\r\n\r\n")
        check(sep, "no end of headers in curl output: %r" % head[:200])
        blocks.append(head.decode("latin-1"))
    return blocks, out


def header(block, name):
    for ln in block.split("\r\n")[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


@T.case("curl -i /plaintext: HTTP/1.1 200, Server, Date, Content-Length, body")
def _():
    with demo() as srv:
        rc, out, err = curl(srv, "-i", srv.url("/plaintext"))
        eq(rc, 0, "curl status (stderr %r)" % err)
        blocks, body = split_head(out)
        eq(len(blocks), 1, "header blocks")
        check(blocks[0].startswith("HTTP/1.1 200"), "status line %r" % blocks[0][:40])
        eq(header(blocks[0], "Server"), "crest", "Server")
        check(header(blocks[0], "Date") is not None, "no Date")
        eq(header(blocks[0], "Content-Length"), "13", "Content-Length")
        eq(body, HELLO, "body")


@T.case("curl --http1.0 /json: 200 and the JSON body")
def _():
    with demo() as srv:
        rc, out, err = curl(srv, "--http1.0", "-i", srv.url("/json"))
        eq(rc, 0, "curl status (stderr %r)" % err)
        blocks, body = split_head(out)
        check(re.match(r"^HTTP/1\.[01] 200", blocks[0]) is not None, "status %r" % blocks[0][:40])
        eq(body, b'{"message":"Hello, World!"}', "body")


@T.case("curl -I (HEAD) /plaintext: Content-Length 13, no body")
def _():
    with demo() as srv:
        rc, out, err = curl(srv, "-I", srv.url("/plaintext"))
        eq(rc, 0, "curl status (stderr %r)" % err)
        blocks, body = split_head(out)
        eq(header(blocks[0], "Content-Length"), "13", "Content-Length")
        eq(body, b"", "body")


@T.case("curl with Expect: 100-continue and a 4000-byte body: 100 seen, body echoed")
def _():
    data = bytes(range(256)) * 15 + b"0123456789" * 16
    with demo() as srv:
        rc, out, err = curl(srv, "-v", "-H", "Expect: 100-continue", "-H",
                            "Content-Type: application/octet-stream", "--data-binary", "@-",
                            "--expect100-timeout", "5", "-o", "-", "-w", "\n%{http_code}",
                            srv.url("/echo"), input=data)
        eq(rc, 0, "curl status (stderr %r)" % err[-500:])
        check("< HTTP/1.1 100 Continue" in err, "no 100 Continue in curl -v: %r" % err[-800:])
        body, _, code = out.rpartition(b"\n")
        eq(code, b"200", "final status")
        check(body == data, "echoed body differs (%d vs %d bytes)" % (len(body), len(data)))


@T.case("curl -T - (chunked upload from stdin) to POST /echo: body echoed")
def _():
    data = b"".join(b"line %d of a chunked upload\n" % i for i in range(500))
    with demo() as srv:
        rc, out, err = curl(srv, "-v", "-X", "POST", "-T", "-", "-H", "Content-Type: text/plain",
                            "--expect100-timeout", "5",
                            srv.url("/echo"), input=data)
        eq(rc, 0, "curl status (stderr %r)" % err[-500:])
        check(re.search(r"> Transfer-Encoding: chunked", err, re.I) is not None,
              "curl did not send chunked: %r" % err[-800:])
        check(out == data, "echoed body differs (%d vs %d bytes)" % (len(out), len(data)))


@T.case("curl: two URLs in one run reuse the keep-alive connection")
def _():
    with demo() as srv:
        url = srv.url()
        rc, out, err = curl(srv, "-v", url + "/plaintext", url + "/json")
        eq(rc, 0, "curl status (stderr %r)" % err[-500:])
        eq(out, HELLO + b'{"message":"Hello, World!"}', "bodies")
        check("Re-using existing connection" in err or "Reusing existing connection" in err,
              "connection not reused: %r" % err[-800:])


@T.case("curl: 404 and 405 statuses", timeout=20)
def _():
    with demo() as srv:
        url = srv.url()
        rc, out, err = curl(srv, "-o", "/dev/null", "-w", "%{http_code}", url + "/nope")
        eq(out, b"404", "unknown path")
        rc, out, err = curl(srv, "-i", "-X", "DELETE", url + "/plaintext")
        blocks, _ = split_head(out)
        check(blocks[0].startswith("HTTP/1.1 405"), "status %r" % blocks[0][:40])
        eq(header(blocks[0], "Allow"), "GET, HEAD", "Allow")


def parse_wrk(text):
    """Returns (requests, socket error counts dict or None, non-2xx count)."""
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    check(m is not None, "no request count in wrk output: %r" % text)
    reqs = int(m.group(1))
    errs = None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    return reqs, errs, non2xx


@T.case("wrk -t1 -c32 -d2s /plaintext: no socket errors, no non-2xx", timeout=40)
def _():
    with demo("--threads", "2") as srv:
        rc, out, err = tool(["wrk", "-t1", "-c32", "-d2s", "--timeout", "2s",
                             srv.url("/plaintext")], timeout=20)
        text = out.decode("utf-8", "replace")
        eq(rc, 0, "wrk status (stderr %r)" % err)
        reqs, errs, non2xx = parse_wrk(text)
        check(reqs > 100, "only %d requests in 2s: %r" % (reqs, text))
        check(errs is None, "wrk socket errors %r: %r" % (errs, text))
        eq(non2xx, 0, "non-2xx responses")
        with srv.connect() as c:
            r = c.request("GET", "/plaintext")
            eq((r.status, r.body), (200, HELLO), "after wrk")


@T.case("wrk -t1 -c32 -d2s /json with Connection: close: no errors, no non-2xx", timeout=40)
def _():
    with demo("--threads", "2") as srv:
        rc, out, err = tool(["wrk", "-t1", "-c32", "-d2s", "--timeout", "2s", "-H",
                             "Connection: close", srv.url("/json")],
                            timeout=20)
        text = out.decode("utf-8", "replace")
        eq(rc, 0, "wrk status (stderr %r)" % err)
        reqs, errs, non2xx = parse_wrk(text)
        check(reqs > 50, "only %d requests in 2s: %r" % (reqs, text))
        # wrk counts a close after a complete response with Connection: close as normal.
        check(errs is None or (errs["connect"] == 0 and errs["timeout"] == 0
                               and errs["write"] == 0 and errs["read"] == 0),
              "wrk socket errors %r: %r" % (errs, text))
        eq(non2xx, 0, "non-2xx responses")


if __name__ == "__main__":
    T.main(needs=("crest",))
