#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h1 (fuzz/h1/corpus/): each file is one byte choosing the read
size (see fuzz_h1.c), then what a client sends on a fresh connection. Run from anywhere:
python3 fuzz/h1/seeds.py"""

import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def req(method, path, headers=(), body=b"", version="1.1"):
    head = f"{method} {path} HTTP/{version}\r\nHost: fuzz\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


def cl(method, path, body, headers=()):
    return req(method, path, [("Content-Length", str(len(body)))] + list(headers), body)


def chunked(method, path, pieces, ext=False, trailers=(), headers=()):
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";ext=1;q=\"x\"" if ext else b"", p)
                    for p in pieces) + b"0\r\n"
    body += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in trailers) + b"\r\n"
    return req(method, path, [("Transfer-Encoding", "chunked")] + list(headers), body)


def multipart(boundary, parts):
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def h2_frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) \
        + payload


def seeds():
    get = req("GET", "/")
    s = {}
    s["get"] = get
    s["gets"] = get + req("HEAD", "/") + req("GET", "/", version="1.0") + \
        req("GET", "/", [("Connection", "close")])
    s["pipeline"] = b"".join(req("GET", p) for p in [
        "/", "/later", "/", "/stream", "/big", "/later", "/", "/fail", "/nope", "/", "/abort", "/"])
    s["behind-later"] = req("GET", "/later") + cl("POST", "/count", b"x" * 300) + \
        req("POST", "/later", [("Content-Length", "3")], b"abc") + get * 6
    s["post-echo"] = cl("POST", "/echo", b"hello", [("Content-Type", "text/plain")]) + get
    s["echo-chunked"] = chunked("POST", "/echo", [b"abc", b"d" * 100], trailers=[("X-T", "1")]) \
        + cl("POST", "/echo", b"x" * 30000) + get
    s["count-chunked"] = chunked("POST", "/count", [b"a" * 10, b"b" * 1000, b"c"], ext=True,
                                 trailers=[("X-Sum", "1011"), ("X-More", "yes")]) + get + \
        cl("POST", "/count", b"") + get
    s["pause"] = cl("POST", "/pause", b"p" * 5000) + \
        chunked("POST", "/pause", [bytes([65 + i]) * 700 for i in range(6)]) + get
    s["defer"] = req("PUT", "/defer", [("Content-Length", "4000")], b"d" * 4000) + get
    s["early"] = req("POST", "/early", [("Content-Length", "15000")], b"e" * 2000) + get
    s["continue"] = req("POST", "/count", [("Expect", "100-continue"), ("Content-Length", "10")],
                        b"0123456789") + \
        req("POST", "/pause", [("Expect", "100-continue"), ("Transfer-Encoding", "chunked")],
            b"5\r\nhello\r\n0\r\n\r\n") + get
    s["small-over"] = chunked("POST", "/small", [b"s" * 1000] * 4) + get
    s["small-length"] = cl("POST", "/small", b"s" * 3001) + get
    s["stop"] = cl("POST", "/stop", b"t" * 500) + get + chunked("POST", "/stop", [b"u" * 50] * 5)
    boundary = "fuzzb0undary"
    mp = multipart(boundary, [("field", None, b"value"), ("file", "a.txt", b"F" * 200),
                              ("file2", "b.bin", b"G" * 10), ("big", "c.bin", b"H" * 3000)])
    ctype = ("Content-Type", f"multipart/form-data; boundary={boundary}")
    s["parts"] = cl("POST", "/parts", mp, [ctype]) + get + \
        chunked("POST", "/parts", [mp[:50], mp[50:400], mp[400:]], headers=[ctype])
    s["parts-bad"] = cl("POST", "/parts", mp[:300] + b"--junk", [ctype]) + \
        cl("POST", "/parts", b"not multipart")
    s["echos"] = chunked("POST", "/echos", [b"E" * 3000] * 4) + get + \
        cl("POST", "/echos", b"e" * 9000)
    s["bad-chunked"] = req("POST", "/count", [("Transfer-Encoding", "chunked")],
                           b"5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n") + get
    s["bad-chunked-crlf"] = req("POST", "/echos", [("Transfer-Encoding", "chunked")],
                                b"3\r\nabcX\r\n0\r\n\r\n") + \
        req("POST", "/echo", [("Transfer-Encoding", "chunked")], b"ffffffffffffffffff\r\n")
    s["incomplete"] = req("POST", "/count", [("Content-Length", "100")], b"x" * 10)
    s["incomplete-head"] = b"GET / HTTP/1.1\r\nHost: fuzz\r\nX-Slow: 1\r\n"
    s["bad-requests"] = req("GET", "/", [("X-Big", "b" * 3000)]) + \
        b"GET / HTTP/1.1\r\n\r\n" + req("GET", "/", [("Expect", "magic")]) + \
        req("POST", "/echo", [("Content-Length", "1"), ("Transfer-Encoding", "chunked")], b"0")
    s["h2-preface"] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) + \
        h2_frame(6, 0, 0, b"01234567")
    s["h2-after-request"] = get + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    s["garbage"] = b"\x00\xffGARBAGE /\x01 HTTP/9.9\r\n\r\n\r\n" + bytes(range(256))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, body in seeds().items():
        for cut, suffix in ((0, ""), (3, "-split")):
            with open(os.path.join(OUT, name + suffix), "wb") as f:
                f.write(bytes([cut]) + body)


if __name__ == "__main__":
    main()
