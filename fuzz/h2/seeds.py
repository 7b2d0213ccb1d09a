#!/usr/bin/python3
"""Writes the seed corpus of fuzz_h2 (fuzz/h2/corpus/): each file is one byte choosing the read
size (see fuzz_h2.c), then the frames a client sends after the connection preface. Needs
python3-hpack. Run from anywhere: python3 fuzz/h2/seeds.py"""

import os
import struct

from hpack import Encoder

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINUP, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9
ES, EH, ACK = 0x1, 0x4, 0x1


def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) \
        + payload


def req(enc, method, path, extra=()):
    return enc.encode([(":method", method), (":scheme", "http"), (":path", path),
                       (":authority", "fuzz")] + list(extra))


def settings(**kv):
    ids = {"table": 1, "push": 2, "streams": 3, "window": 4, "frame": 5, "list": 6}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kv.items()))


def seeds():
    e = Encoder()
    s = {}
    s["get"] = settings() + frame(HEADERS, ES | EH, 1, req(e, "GET", "/"))
    e = Encoder()
    s["post-echo"] = settings() + frame(HEADERS, EH, 1, req(
        e, "POST", "/echo", [("content-type", "text/plain"), ("content-length", "5")])) + \
        frame(DATA, ES, 1, b"hello")
    e = Encoder()
    s["many"] = settings() + b"".join(
        frame(HEADERS, ES | EH, 1 + 2 * i, req(e, "GET", p))
        for i, p in enumerate(["/", "/later", "/stream", "/abort", "/big", "/fail", "/nope", "/"]))
    e = Encoder()
    s["small-window"] = settings(window=100) + frame(HEADERS, ES | EH, 1, req(e, "GET", "/big")) \
        + frame(HEADERS, ES | EH, 3, req(e, "GET", "/stream")) + \
        b"".join(frame(WINUP, 0, sid, struct.pack(">I", 5000)) for sid in (0, 1, 3) * 8)
    e = Encoder()
    s["reset"] = settings() + frame(HEADERS, ES | EH, 1, req(e, "GET", "/stream")) + \
        frame(RST, 0, 1, struct.pack(">I", 8)) + frame(HEADERS, ES | EH, 3, req(e, "GET", "/later")) \
        + frame(RST, 0, 3, struct.pack(">I", 8))
    e = Encoder()
    blk = req(e, "GET", "/", [("cookie", "a=1"), ("cookie", "b=2"), ("x-long", "v" * 100)])
    s["continuation"] = settings() + frame(HEADERS, ES, 1, blk[:10]) + frame(CONT, 0, 1, blk[10:30]) \
        + frame(CONT, EH, 1, blk[30:])
    e = Encoder()
    s["trailers"] = settings() + frame(HEADERS, EH, 1, req(e, "PUT", "/echo")) + \
        frame(DATA, 0, 1, b"abc") + frame(HEADERS, ES | EH, 1, e.encode([("x-trailer", "1")]))
    e = Encoder()
    s["too-large"] = settings() + frame(HEADERS, EH, 1, req(
        e, "POST", "/echo", [("content-length", "30000")])) + frame(DATA, 0, 1, b"x" * 16000) + \
        frame(DATA, ES, 1, b"x" * 14000) + frame(HEADERS, ES | EH, 3, req(e, "GET", "/", [
            ("x-big", "b" * 3000)]))
    e = Encoder()
    s["bomb"] = settings() + frame(HEADERS, ES | EH, 1, req(e, "GET", "/", [("x", "a" * 3000)] * 8))
    s["control"] = settings(table=0, streams=10, frame=16384) + frame(PING, 0, 0, b"01234567") + \
        frame(SETTINGS, ACK, 0) + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16)) + \
        frame(WINUP, 0, 0, struct.pack(">I", 1000)) + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))
    e = Encoder()
    s["empty-data"] = settings() + frame(HEADERS, EH, 1, req(e, "POST", "/echo")) + \
        frame(DATA, 0, 1) * 120
    e = Encoder()
    s["upload"] = settings() + frame(HEADERS, EH, 1, req(e, "POST", "/upload")) + b"".join(
        frame(DATA, 0, 1, bytes([65 + i]) * 3000) for i in range(5)) + frame(DATA, ES, 1, b"z") + \
        frame(HEADERS, EH, 3, req(e, "POST", "/upload", [("content-length", "40000")])) + \
        frame(HEADERS, EH, 5, req(e, "POST", "/upload", [("expect", "100-continue")])) + \
        frame(DATA, 0, 5, b"y" * 16000) + frame(DATA, 0, 5, b"y" * 16000) + \
        frame(RST, 0, 5, struct.pack(">I", 8))
    s["garbage"] = b"\x00\x00\x04\x0f\x00\x00\x00\x00\x01abcd" + frame(HEADERS, EH, 2, b"\x82")
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, body in seeds().items():
        for cut, suffix in ((0, ""), (3, "-split")):
            with open(os.path.join(OUT, name + suffix), "wb") as f:
                f.write(bytes([cut]) + body)


if __name__ == "__main__":
    main()
