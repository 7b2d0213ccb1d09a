"""The web basics (include/crest/web.h) against tests/it/web_app.c: cookies (curl's cookie jar
and raw headers), urlencoded forms, multipart uploads with curl -F (a 2 MiB file spilled to a
temporary file that is gone after the request, or moved away by the app), limits -> 413,
malformed bodies -> 400, content negotiation -> the right type or 406."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
from harness import _bin_path, _tls_args  # noqa: E402

T = Suite()

WEB_APP = _bin_path("CREST_WEB_APP", os.path.join(os.path.dirname(CREST_IT_APP), "web_app"))


def web_app(*args, env=None):
    need_binary(WEB_APP)
    return Server([WEB_APP, "--host", "127.0.0.1", "--port", "0", *args,
                   *_tls_args(args, None)], env=env)


def curl(srv, *args):
    """Runs curl against srv; returns (status, headers as a list of (name, value), body)."""
    cmd = ["curl", "-sS", "-D", "-", *srv.curl_args(), *args]
    out = subprocess.run(cmd, capture_output=True, timeout=20)
    if out.returncode != 0:
        fail("curl failed (%d): %s" % (out.returncode, out.stderr.decode(errors="replace")))
    raw = out.stdout
    # Skip interim responses (100 Continue) to the final head.
    while True:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            break
    hdrs = [tuple(p.strip() for p in l.split(":", 1)) for l in lines[1:] if ":" in l]
    return status, hdrs, raw


def fnv(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def multipart(boundary, parts, close=True):
    """A multipart/form-data body: parts are (headers text, bytes)."""
    out = b""
    for hdrs, data in parts:
        out += b"--" + boundary + b"\r\n" + hdrs + b"\r\n\r\n" + data + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return out


# --- cookies -----------------------------------------------------------------------------------

@T.case("Set-Cookie: HttpOnly, SameSite=Lax, Path=/ by default; Secure over TLS; deletion")
def _():
    with web_app() as srv, srv.connect() as c:
        r = c.request("GET", "/cookie/set")
        eq(r.status, 200, "status")
        eq(r.body, b"set; bad value: invalid argument", "body")
        sc = r.headers.get_all("set-cookie")
        eq(len(sc), 3, "Set-Cookie lines: %r" % sc)
        secure = "; Secure" if srv.tls_cert else ""
        eq(sc[0], "sid=abc123; Path=/%s; HttpOnly; SameSite=Lax" % secure, "default cookie")
        check(sc[1].startswith('pref="dark-mode"; Path=/cookie; Max-Age=3600; Expires='),
              "pref: %r" % sc[1])
        check(sc[1].endswith(" GMT%s; SameSite=Strict" % secure), "pref's tail: %r" % sc[1])
        eq(sc[2], "old=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT%s; HttpOnly;"
           " SameSite=Lax" % secure, "deletion")


@T.case("cookies round trip through curl's jar (-c, -b); a deleted one is gone")
def _():
    with web_app() as srv, tmp_dir() as d:
        jar = os.path.join(d, "jar")
        st, _, _ = curl(srv, "-c", jar, "-b", "old=stale", srv.url("/cookie/set"))
        eq(st, 200, "set")
        st, _, body = curl(srv, "-b", jar, srv.url("/cookie/get?name=sid"))
        eq((st, body), (200, b"abc123"), "sid")
        st, _, body = curl(srv, "-b", jar, srv.url("/cookie/get?name=pref"))
        eq((st, body), (200, b"dark-mode"), "pref (quoted, Path=/cookie)")
        st, _, _ = curl(srv, "-b", jar, srv.url("/cookie/get?name=old"))
        eq(st, 404, "deleted cookie")


@T.case("Cookie: every header line is read, first match wins, quotes removed")
def _():
    with web_app() as srv, srv.connect() as c:
        hdrs = [("Cookie", "a=1; junk; b=\"two\""), ("Cookie", "c=3; a=9")]
        for name, want in (("a", b"1"), ("b", b"two"), ("c", b"3")):
            r = c.request("GET", "/cookie/get?name=" + name, hdrs)
            eq((r.status, r.body), (200, want), "cookie " + name)
        eq(c.request("GET", "/cookie/get?name=A", hdrs).status, 404, "case-sensitive names")
        eq(c.request("GET", "/cookie/get?name=a").status, 404, "no Cookie header")


# --- urlencoded forms --------------------------------------------------------------------------

@T.case("POST an urlencoded form: first value, every value, every field, decoded")
def _():
    with web_app() as srv, srv.connect() as c:
        form = [("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")]
        r = c.request("POST", "/form", form, b"a=1&b=x+y%21&&a=%C3%A9t%C3%A9&c&%61=3")
        eq(r.status, 200, "status")
        eq(r.body.decode(), "a=1|all=3:1,\u00e9t\u00e9,3|fields=a=1;b=x y!;a=\u00e9t\u00e9;c=;a=3;",
           "body")
        r = c.request("POST", "/form", [("Content-Type", "text/plain")], b"a=1")
        eq(r.body, b"a=(none)|all=0:|fields=", "another type of body is no form")
    with web_app() as srv, tmp_dir() as d:
        st, _, body = curl(srv, "--data-urlencode", "a=x & y=z", "-d", "b=2", srv.url("/form"))
        eq((st, body), (200, b"a=x & y=z|all=1:x & y=z|fields=a=x & y=z;b=2;"), "curl's form")


# --- multipart ---------------------------------------------------------------------------------

@T.case("curl -F: a field and a small file stay in memory, names and types as sent")
def _():
    with web_app() as srv, tmp_dir() as d:
        small = os.path.join(d, "note.txt")
        with open(small, "wb") as f:
            f.write(b"hello\r\n--not a boundary\r\n")
        st, _, body = curl(srv, "-F", "title=A title", "-F", "up=@%s;type=text/x-note" % small,
                           srv.url("/upload"))
        eq(st, 200, "status")
        parts = json.loads(body)
        eq(len(parts), 2, "parts")
        eq(parts[0], {"name": "title", "filename": None, "type": "", "size": 7,
                      "fnv": fnv(b"A title"), "path": None, "value": "A title"}, "field")
        eq(parts[1]["name"], "up", "file name field")
        eq(parts[1]["filename"], "note.txt", "filename")
        eq(parts[1]["type"], "text/x-note", "type")
        eq(parts[1]["size"], 25, "size")
        eq(parts[1]["fnv"], fnv(b"hello\r\n--not a boundary\r\n"), "bytes")
        eq(parts[1]["path"], None, "in memory")


@T.case("a 2 MiB upload is spilled to a temporary file: same bytes, gone after the request")
def _():
    with tmp_dir() as d:
        spool = os.path.join(d, "spool")
        os.mkdir(spool)
        big = os.path.join(d, "big.bin")
        data = os.urandom(2 << 20)
        with open(big, "wb") as f:
            f.write(data)
        with web_app("--max-body", "4m", env={"TMPDIR": spool}) as srv:
            st, _, body = curl(srv, "-F", "f=@%s" % big, "-F", "x=1", srv.url("/upload"))
            eq(st, 200, "status: %r" % body[:200])
            parts = json.loads(body)
            eq(len(parts), 2, "parts")
            p = parts[0]
            eq((p["name"], p["filename"], p["size"]), ("f", "big.bin", 2 << 20), "the file part")
            check(p["path"] is not None and p["path"].startswith(spool + "/crest-upload-"),
                  "spilled into TMPDIR: %r" % p["path"])
            eq(p["fnv"], fnv(data), "the file's bytes")
            eq(parts[1]["value"], "1", "the field after it")
            check(not os.path.exists(p["path"]), "temporary file removed after the request")
            eq(os.listdir(spool), [], "spool folder empty")
            # The callback mode sees the same part in chunks.
            st, _, body = curl(srv, "-F", "f=@%s" % big, srv.url("/parts"))
            eq(st, 200, "callback status")
            name, size, chunks = body.decode().rstrip(";").split(":")
            eq((name, int(size)), ("f", 2 << 20), "callback's part")
            check(int(chunks) >= 1, "chunks")
            # The app may keep the file: crest_part_move.
            dest = os.path.join(d, "kept.bin")
            st, _, body = curl(srv, "-F", "f=@%s" % big, srv.url("/upload?keep=" + dest))
            eq(st, 200, "keep status")
            with open(dest, "rb") as f:
                eq(f.read() == data, True, "the moved file's bytes")
            eq(os.listdir(spool), [], "spool folder empty after a move")


@T.case("limits: parts, part size, header bytes -> 413 with a JSON error; max_body -> 413")
def _():
    with web_app("--max-body", "64k") as srv, srv.connect() as c:
        b = b"b0und"
        ct = [("Content-Type", "multipart/form-data; boundary=b0und")]
        two = multipart(b, [(b'Content-Disposition: form-data; name="a"', b"x" * 100),
                            (b'Content-Disposition: form-data; name="b"', b"y")])
        r = c.request("POST", "/upload", ct, two)
        eq(r.status, 200, "within limits")
        for q, why in (("max_parts=1", "more parts than max_parts"),
                       ("max_part=99", "a part over max_part_size"),
                       ("max_header=20", "a part's headers over max_header_bytes")):
            r = c.request("POST", "/upload?" + q, ct, two)
            eq(r.status, 413, q)
            eq(r.header("content-type"), "application/json", "type")
            eq(json.loads(r.body), {"status": 413, "error": why}, "error body for " + q)
            r = c.request("POST", "/parts?" + q, ct, two)
            eq(r.status, 413, "callback mode: " + q)
        r = c.request("POST", "/upload", ct, multipart(b, [(
            b'Content-Disposition: form-data; name="a"', b"z" * (70 << 10))]))
        eq(r.status, 413, "over max_body")


@T.case("malformed multipart -> 400 with the reason; not multipart -> 400")
def _():
    with web_app() as srv, srv.connect() as c:
        ct = [("Content-Type", "multipart/form-data; boundary=b0und")]
        cases = [
            (multipart(b"b0und", [(b'Content-Disposition: form-data; name="a"', b"1")],
                       close=False), "the body ends before the closing boundary"),
            (multipart(b"b0und", [(b"Content-Type: text/plain", b"1")]),
             "a part without Content-Disposition"),
            (b"--b0und\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b0undX\r\n",
             "a boundary followed by something else than CRLF"),
        ]
        for body, why in cases:
            r = c.request("POST", "/upload", ct, body)
            eq(r.status, 400, why)
            eq(json.loads(r.body), {"status": 400, "error": why}, "error body")
        r = c.request("POST", "/upload", [("Content-Type", "text/plain")], b"x")
        eq(r.status, 400, "not multipart")
        r = c.request("POST", "/upload", [("Content-Type", "multipart/form-data")], b"x")
        eq(r.status, 400, "no boundary")
        # The connection is still good afterwards.
        eq(c.request("GET", "/neg").status, 200, "next request")


@T.case("over HTTP/2 too: Cookie crumbs, a spilled upload, the temporary file gone")
def _():
    with tmp_dir() as d:
        spool = os.path.join(d, "spool")
        os.mkdir(spool)
        big = os.path.join(d, "mid.bin")
        data = os.urandom(300000)
        with open(big, "wb") as f:
            f.write(data)
        with web_app(env={"TMPDIR": spool}) as srv:
            h2 = ["--cacert", srv.tls_cert, "--http2"] if srv.tls_cert else \
                ["--http2-prior-knowledge"]
            base = ["curl", "-sS", *h2, "-w", "\n%{http_version}"]
            out = subprocess.run(base + ["-H", "Cookie: a=1", "-H", "Cookie: sid=xyz",
                                         srv.url("/cookie/get?name=sid")],
                                 capture_output=True, timeout=20).stdout
            eq(out, b"xyz\n2", "cookie from the second crumb, over HTTP/2")
            out = subprocess.run(base + ["-F", "f=@" + big, srv.url("/upload")],
                                 capture_output=True, timeout=20).stdout
            body, _, version = out.rpartition(b"\n")
            eq(version, b"2", "HTTP/2")
            p = json.loads(body)[0]
            eq((p["size"], p["fnv"]), (300000, fnv(data)), "the file")
            check(p["path"] is not None, "spilled")
            eq(os.listdir(spool), [], "spool folder empty")


# --- negotiation -------------------------------------------------------------------------------

@T.case("Accept picks JSON, HTML or text; nothing acceptable -> 406; Accept-Language")
def _():
    with web_app() as srv, srv.connect() as c:
        for accept, ctype in ((None, "application/json"),
                              ("text/html", "text/html"),
                              ("text/*;q=0.5, application/json;q=0.4", "text/html"),
                              ("application/json;q=0.5, text/plain", "text/plain"),
                              ("text/html,application/xhtml+xml,application/xml;q=0.9,"
                               "*/*;q=0.8", "text/html"),
                              ("*/*;q=0.1, application/json;q=0", "text/html")):
            r = c.request("GET", "/neg", [("Accept", accept)] if accept else [])
            eq((r.status, r.header("content-type")), (200, ctype), "Accept: %r" % accept)
            eq(r.header("vary"), "Accept", "Vary")
        for accept in ("image/png", "text/*;q=0, application/*;q=0"):
            eq(c.request("GET", "/neg", [("Accept", accept)]).status, 406, accept)
        for al, lang in ((None, b"en"), ("fr, en;q=0.5", b"fr-CA"), ("de-DE, de;q=0.9", b"de")):
            r = c.request("GET", "/lang", [("Accept-Language", al)] if al else [])
            eq((r.status, r.body), (200, lang), "Accept-Language: %r" % al)
        eq(c.request("GET", "/lang", [("Accept-Language", "ja")]).status, 406, "ja")
    with web_app() as srv:
        st, hdrs, body = curl(srv, "-H", "Accept: text/plain", srv.url("/neg"))
        eq((st, body), (200, b"plain"), "curl")


if __name__ == "__main__":
    T.main(needs=("it_app",))
