"""Request bodies streamed to their handler (crest_app_route_stream, crest_req_body_stream) and
multipart bodies parsed as they arrive (crest_req_parts_stream, crest_req_multipart_stream),
against tests/it/upload_app.c run with --max-body 64k: bodies of many MiB pass through a
streaming route while the server's peak memory stays small; Content-Length and chunked; a paused
consumer; 100 Continue sent when the handler asks for the body; answers before the body's end
close the connection; the route's own limit (413 before the body, or as it outgrows it); a
client that sends too slowly (408); a client that leaves (the callback hears it); the same over
HTTP/2, where the stream's window is what holds the client back."""

import json
import os
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from harness import TLS_MODE  # noqa: E402

T = Suite()

MiB = 1 << 20


def upload_app(*args):
    return test_app("upload_app", "--max-body", "64k", *args)


def crc(data):
    return "%08x" % zlib.crc32(data)


# Under the sanitizers RSS says little (shadow memory, ASan's quarantine of freed blocks): there
# the server's own count of buffered bytes is what bounds memory.
SLOW = os.environ.get("ASAN_OPTIONS") is not None or os.environ.get("TSAN_OPTIONS") is not None


def peak_kib(srv):
    """The server's peak resident memory (VmHWM), KiB."""
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    fail("no VmHWM for pid %d" % srv.proc.pid)


def check_memory_small(srv, what):
    """The bodies never sat in memory: the buffered bytes' peak stays under 1 MiB and (without
    the sanitizers) the whole process's peak under 32 MiB."""
    buffered = metric(srv, "crest_buffered_peak_bytes")
    check(buffered < MiB, "%s: buffered peak %d bytes" % (what, buffered))
    if not SLOW:
        peak = peak_kib(srv)
        check(peak < 32 * 1024, "%s: peak memory %d KiB" % (what, peak))


def curl(srv, *args, timeout=60):
    """curl against srv: (status, body bytes)."""
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *srv.curl_args(), *args]
    out = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if out.returncode != 0:
        fail("curl failed (%d): %s" % (out.returncode, out.stderr.decode(errors="replace")))
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


def stats(srv):
    with srv.connect() as c:
        r = c.request("GET", "/stats")
        eq(r.status, 200, "GET /stats")
        return json.loads(r.body)


def write_file(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@T.case("64 MiB with Content-Length through a streaming route (the app's max_body is 64 KiB): "
        "every byte counted in order, and the server's peak memory stays under 32 MiB")
def _():
    data = os.urandom(64 * MiB)
    with upload_app() as srv, tmp_dir() as tmp:
        path = write_file(tmp, "big", data)
        status, body = curl(srv, "--data-binary", "@" + path, srv.url("/count"))
        eq(status, 200, "status")
        got = json.loads(body)
        eq(got["bytes"], len(data), "bytes counted")
        eq(got["sum"], crc(data), "CRC-32 of the body")
        check(got["pieces"] > 1, "the body came in pieces: %r" % got)
        check_memory_small(srv, "64 MiB upload")
        # The same body on a buffered route is refused: max_body still holds there.
        status, _ = curl(srv, "--data-binary", "@" + path, srv.url("/small"))
        eq(status, 413, "buffered route over max_body")


@T.case("a chunked body of 8 MiB (odd chunk sizes, chunk extensions, trailers) streams whole")
def _():
    data = os.urandom(8 * MiB + 3)
    sizes, pos, i = [], 0, 0
    while pos < len(data):
        n = min(len(data) - pos, 1 + (i * 7919) % 300000)
        sizes.append(data[pos:pos + n])
        pos += n
        i += 1
    body = chunked(sizes, ext=b";x=1", trailers=(b"X-Sum: 1",))
    with upload_app() as srv, srv.connect() as c:
        c.send(build_request("POST", "/count", [("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response("POST", timeout=30)
        eq(r.status, 200, "status")
        got = json.loads(r.body)
        eq((got["bytes"], got["sum"]), (len(data), crc(data)), "bytes and CRC-32")
        check("close" not in r.connection_tokens(), "keep-alive after the whole body")
        r = c.request("GET", "/stats")
        eq(r.status, 200, "the next request on the same connection")


@T.case("pipelined: a streamed POST then a GET in one write are answered in order")
def _():
    data = os.urandom(300000)
    with upload_app() as srv, srv.connect() as c:
        c.send(build_request("POST", "/count", [("Content-Length", str(len(data)))]) + data +
               build_request("GET", "/count"))
        r1 = c.read_response("POST")
        r2 = c.read_response("GET")
        eq((r1.status, json.loads(r1.body)["bytes"]), (200, len(data)), "the upload")
        eq((r2.status, json.loads(r2.body)["bytes"]), (200, 0), "GET on a streaming route: no body")


@T.case("a paused consumer (pauses after every piece) still gets every byte; memory stays small")
def _():
    data = os.urandom(6 * MiB)
    with upload_app() as srv, tmp_dir() as tmp:
        path = write_file(tmp, "b", data)
        status, body = curl(srv, "--data-binary", "@" + path, srv.url("/count?pause=2"))
        eq(status, 200, "status")
        got = json.loads(body)
        eq((got["bytes"], got["sum"]), (len(data), crc(data)), "bytes and CRC-32")
        check_memory_small(srv, "paused consumer")


@T.case("Expect: 100-continue: 100 Continue comes once the handler asks for the body, then 200")
def _():
    data = os.urandom(200000)
    with upload_app() as srv, srv.connect() as c:
        c.send(build_request("PUT", "/count", [("Content-Length", str(len(data))), ("Expect", "100-continue")]))
        r = c.read_response("PUT")
        eq(r.status, 100, "interim response before any body byte")
        c.send(data)
        r = c.read_response("PUT")
        eq((r.status, json.loads(r.body)["bytes"]), (200, len(data)), "final response")


@T.case("an answer before the body's end (the handler refuses; a middleware wants a token): the "
        "answer arrives with Connection: close and the connection closes")
def _():
    with upload_app() as srv:
        for path, status in (("/early", 403), ("/auth/count", 401)):
            with srv.connect() as c:
                c.send(build_request("POST", path, [("Content-Length", str(50 * MiB))]) +
                       b"x" * 1000)
                r = c.read_response("POST")
                eq(r.status, status, path)
                check("close" in r.connection_tokens(), "%s: Connection: close" % path)
                eq(json.loads(r.body)["status"], status, "%s: JSON error body" % path)
                c.expect_closed(timeout=5)
        with srv.connect() as c:
            r = c.request("POST", "/auth/count", [("Authorization", "Bearer ok")], b"abc")
            eq((r.status, json.loads(r.body)["bytes"]), (200, 3), "with the token")


@T.case("the route's own limit: Content-Length over it -> 413 before the body; a chunked body "
        "that outgrows it -> 413 and the callback hears CREST_E2BIG")
def _():
    with upload_app() as srv:
        with srv.connect() as c:
            c.send(build_request("POST", "/limit", [("Content-Length", "1001")]))
            r = c.read_response("POST")
            eq(r.status, 413, "declared length over the limit")
        before = stats(srv)["too_big"]
        with srv.connect() as c:
            # Not ended yet (no last chunk): the rest will not be read, so the connection closes.
            body = chunked([b"a" * 600, b"b" * 600])
            c.send(build_request("POST", "/limit", [("Transfer-Encoding", "chunked")]) +
                   body[:-5])
            r = c.read_response("POST")
            eq(r.status, 413, "chunked body over the limit")
            check("close" in r.connection_tokens(), "Connection: close")
            c.expect_closed(timeout=5)
        eq(stats(srv)["too_big"], before + 1, "the callback's CREST_E2BIG")
        with srv.connect() as c:
            r = c.request("POST", "/limit", body=b"z" * 1000)
            eq((r.status, json.loads(r.body)["bytes"]), (200, 1000), "exactly at the limit")


@T.case("the app stops reading (the callback returns an error after 1 MiB and answers 422): "
        "the rest is not read and the connection closes")
def _():
    with upload_app() as srv, srv.connect() as c:
        c.send(build_request("POST", "/count?stop=1048576", [("Content-Length", str(64 * MiB))]))
        try:
            c.send(b"y" * (2 * MiB))
        except OSError:
            pass  # the server may close before it all went
        r = c.read_response("POST")
        eq(r.status, 422, "the app's answer")
        check("close" in r.connection_tokens(), "Connection: close")
        c.expect_closed(timeout=5)


@T.case("a body that trickles below --min-body-rate after --body-timeout -> 408, and the "
        "callback hears CREST_ETIMEDOUT")
def _():
    with upload_app("--body-timeout", "300ms", "--min-body-rate", "100k") as srv:
        with srv.connect() as c:
            c.send(build_request("POST", "/count", [("Content-Length", "100000")]) + b"x" * 10)
            t0 = time.monotonic()
            r = c.read_response("POST", timeout=5)
            eq(r.status, 408, "status")
            check(time.monotonic() - t0 < 3, "408 came within 3 s")
            c.expect_closed(timeout=5)
        eq(stats(srv)["timed_out"], 1, "the callback's CREST_ETIMEDOUT")


@T.case("a client that leaves half-way: the body callback hears CREST_ECANCELED")
def _():
    with upload_app() as srv:
        with srv.connect() as c:
            c.send(build_request("POST", "/count", [("Content-Length", str(10 * MiB))]) +
                   b"q" * 100000)
            time.sleep(0.05)
        wait_until(lambda: stats(srv)["cancelled"] == 1, 5, "the callback's CREST_ECANCELED")


@T.case("a streamed response echoes a streamed body as it arrives (4 MiB through /echo)")
def _():
    data = os.urandom(4 * MiB)
    with upload_app() as srv, tmp_dir() as tmp:
        path = write_file(tmp, "e", data)
        status, body = curl(srv, "--data-binary", "@" + path, srv.url("/echo"))
        eq(status, 200, "status")
        check(body == data, "echoed %d bytes of %d, equal=%s" % (len(body), len(data),
                                                                 body == data))


@T.case("crest_req_parts_stream: a 20 MiB file part goes to a temporary file as it arrives "
        "(peak memory small), a field stays in memory; the file is gone after the request")
def _():
    data = os.urandom(20 * MiB)
    with upload_app() as srv, tmp_dir() as tmp, tmp_dir() as spill:
        path = write_file(tmp, "f.bin", data)
        status, body = curl(srv, "-F", "title=hello", "-F", "file=@" + path,
                            srv.url("/parts?dir=" + spill))
        eq(status, 200, "status: %r" % body[:200])
        parts = json.loads(body)
        eq([(p["name"], p["size"], p["spilled"]) for p in parts],
           [("title", 5, False), ("file", len(data), True)], "parts")
        eq(parts[1]["sum"], crc(data), "the spilled file's CRC-32")
        eq(parts[0]["sum"], crc(b"hello"), "the field's CRC-32")
        check_memory_small(srv, "20 MiB file part")
        wait_until(lambda: os.listdir(spill) == [], 5, "the temporary file removed")


@T.case("streamed multipart errors: malformed -> 400, a part over max_part_size -> 413, not "
        "multipart -> 400, each with crest's JSON error body")
def _():
    b = b"XyZ"
    good = (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + b"1" * 5000 +
            b"\r\n--XyZ--\r\n")
    with upload_app() as srv:
        cases = (("/parts", b"multipart/form-data; boundary=XyZ", b"--XyZ\r\nno colon\r\n\r\n",
                  400),
                 ("/parts?max_part=100", b"multipart/form-data; boundary=XyZ", good, 413),
                 ("/parts", b"text/plain", b"hello", 400),
                 ("/events", b"multipart/form-data; boundary=XyZ", b"--XyZ\r\nbad\r\n\r\n", 400))
        for path, ctype, body, status in cases:
            with srv.connect() as c:
                r = c.request("POST", path, [("Content-Type", ctype.decode())], body)
                eq(r.status, status, "%s %r" % (path, body[:30]))
                eq(json.loads(r.body)["status"], status, "JSON error body")
        del b


@T.case("crest_req_multipart_stream: a large part's DATA comes in many calls as it arrives")
def _():
    data = os.urandom(3 * MiB)
    with upload_app() as srv, tmp_dir() as tmp:
        path = write_file(tmp, "f", data)
        status, body = curl(srv, "-F", "a=1", "-F", "f=@" + path, srv.url("/events"))
        eq(status, 200, "status")
        got = dict((x.split(":")[0], x.split(":")[1:]) for x in body.decode().split(";") if x)
        eq(got["a"], ["1", "1"], "the field: one call, one byte")
        eq(int(got["f"][1]), len(data), "the file's bytes")
        check(int(got["f"][0]) > 10, "the file came in %s calls" % got["f"][0])


def h2_client(srv):
    import test_h2
    return test_h2.H2(srv.port)


H2_SKIP = "HTTP/2 with prior knowledge is cleartext" if TLS_MODE else None


@T.case("HTTP/2: 8 MiB streams through (and with a paused consumer: its window holds the "
        "client back); the route's limit -> 413; an early answer resets the stream, not the "
        "connection", skip=H2_SKIP)
def _():
    data = os.urandom(8 * MiB)
    with upload_app() as srv:
        with h2_client(srv) as h:
            for path in ("/count", "/count?pause=2"):
                st = h.response(h.request("POST", path, body=data), timeout=30)
                eq(st.status, 200, path)
                got = json.loads(bytes(st.body))
                eq((got["bytes"], got["sum"]), (len(data), crc(data)), path)
            st = h.response(h.request("POST", "/limit", body=b"x" * 2000))
            eq(st.status, 413, "over the route's limit")
            st = h.response(h.request("POST", "/early", body=b"x" * 300000))
            eq(st.status, 403, "early answer")
            # expect: 100-continue: the 100 comes once the handler asks for the body.
            sid = h.request("POST", "/count", headers=[("expect", "100-continue"),
                                                        ("content-length", "5000")], end=False)
            h.wait(lambda: h.streams[sid].informational == [100], "the interim 100")
            h.send_body(sid, b"c" * 5000)
            st = h.response(sid)
            eq((st.status, json.loads(bytes(st.body))["bytes"]), (200, 5000), "after the 100")
            st = h.get("/count")
            eq((st.status, json.loads(bytes(st.body))["bytes"]), (200, 0),
               "GET on a streaming route: no body, the end at once")
            st = h.get("/stats")
            eq(st.status, 200, "the connection goes on")
        check_memory_small(srv, "HTTP/2 uploads")


@T.case("HTTP/2: a client that resets the stream half-way: the callback hears CREST_ECANCELED",
        skip=H2_SKIP)
def _():
    with upload_app() as srv:
        with h2_client(srv) as h:
            sid = h.request("POST", "/count", headers=[("content-length", str(MiB))],
                            body=b"r" * 30000, end=False)
            h.h.reset_stream(sid)
            h.flush()
            wait_until(lambda: stats(srv)["cancelled"] == 1, 5, "CREST_ECANCELED")


if __name__ == "__main__":
    T.main()
