"""Server-Sent Events at /events, read with curl and raw sockets: the stream's head, chat
messages from every room as `event: message` with ids, Last-Event-ID replay, keep-alive comments,
HEAD (the head alone, the connection kept), and clean shutdown with streams open."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

T = Suite()
_TMP = tempfile.mkdtemp(prefix="crest-sse-it.")
DB = ("--db", "sqlite:" + os.path.join(_TMP, "demo.db"))


def open_stream(srv, last_id=None):
    c = srv.connect()
    extra = "Last-Event-ID: %s\r\n" % last_id if last_id is not None else ""
    c.send(("GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n%s\r\n"
            % extra).encode())
    head = c.read_until(b"\r\n\r\n", what="SSE head")
    check(head.startswith(b"HTTP/1.1 200 "), "status: %r" % head[:100])
    check(b"\r\nContent-Type: text/event-stream\r\n" in head, "content type: %r" % head)
    check(b"\r\nCache-Control: no-cache\r\n" in head, "no-cache: %r" % head)
    eq(c.read_until(b"\n\n", what="retry"), b"retry: 1000\n\n", "retry field")
    return c


def read_event(c, timeout=5):
    """The next event (skipping comments) as a dict of fields."""
    while True:
        block = c.read_until(b"\n\n", timeout=timeout, what="event").decode()
        fields = {}
        for line in block.strip("\n").split("\n"):
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            fields[k] = fields[k] + "\n" + v if k in fields else v
        if fields:
            return fields


def chat(srv, sends):
    """Join rooms and send messages: sends is [(room, name, text)]."""
    async def go():
        for room, name, text in sends:
            async with srv.ws_connect("/ws/chat?room=%s&name=%s" % (room, name)) as ws:
                await ws.recv()  # own join
                await ws.send(json.dumps({"text": text}))
                while True:
                    m = json.loads(await ws.recv())
                    if m["type"] == "message":
                        break
    asyncio.run(asyncio.wait_for(go(), 20))


@T.case("/events: every chat message of every room as 'event: message' with the chat JSON and ids")
def _():
    with demo("--quiet", "--threads", "2", *DB) as srv:
        streams = [open_stream(srv) for _ in range(3)]
        chat(srv, [("a", "ann", "one"), ("b", "bob", "two \u20ac"), ("a", "cid", "three")])
        for c in streams:
            ids = []
            for room, name, text in (("a", "ann", "one"), ("b", "bob", "two \u20ac"),
                                     ("a", "cid", "three")):
                ev = read_event(c)
                eq(ev.get("event"), "message", "event name")
                m = json.loads(ev["data"])
                eq((m["type"], m["room"], m["name"], m["text"]), ("message", room, name, text),
                   "event data")
                ids.append(int(ev["id"]))
            eq(ids, sorted(ids), "ids increase")
            c.close()


@T.case("/events with curl -N: the stream is readable by a stock client")
def _():
    with demo("--quiet", *DB) as srv:
        proc = subprocess.Popen(["curl", "-sS", "-N", "-m", "10", *srv.curl_args(),
                                 srv.url("/events")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # Wait until curl's stream is open: its first bytes are the retry field.
            first = proc.stdout.read(len(b"retry: 1000\n\n"))
            eq(first, b"retry: 1000\n\n", "curl got the stream's start")
            chat(srv, [("r", "curly", "via curl")])
            buf = b""
            while b"\n\n" not in buf:
                chunk = proc.stdout.read1(4096)
                check(chunk, "curl's stream ended early: %r" % buf)
                buf += chunk
            check(buf.startswith(b"event: message\nid: "), "event block: %r" % buf)
            check(b'"text":"via curl"' in buf, "chat JSON in the event: %r" % buf)
        finally:
            proc.kill()
            proc.wait()


@T.case("Last-Event-ID: a reconnecting client gets the events it missed, in order, then live ones")
def _():
    with demo("--quiet", *DB) as srv:
        first = open_stream(srv)
        chat(srv, [("x", "a", "m1"), ("x", "a", "m2"), ("x", "a", "m3")])
        evs = [read_event(first) for _ in range(3)]
        first.close()
        c = open_stream(srv, last_id=evs[0]["id"])
        got = [json.loads(read_event(c)["data"])["text"] for _ in range(2)]
        eq(got, ["m2", "m3"], "replayed after the first")
        chat(srv, [("x", "a", "m4")])
        eq(json.loads(read_event(c)["data"])["text"], "m4", "live after the replay")
        c.close()


@T.case("keep-alive comments on a quiet stream (--sse-keepalive 200ms)")
def _():
    with demo("--quiet", "--sse-keepalive", "200ms", *DB) as srv:
        c = open_stream(srv)
        t0 = time.monotonic()
        for _ in range(3):
            eq(c.read_until(b"\n\n", timeout=3, what="keep-alive"), b": keep-alive\n\n",
               "comment")
        check(time.monotonic() - t0 < 3, "three comments within 3 s")
        c.close()


@T.case("HEAD /events: the stream's head and no stream; the connection serves the next request")
def _():
    # A 100 ms keep-alive: a stream wrongly kept open would show its comment within the window.
    with demo("--quiet", "--sse-keepalive", "100ms", *DB) as srv:
        c = srv.connect()
        r = c.request("HEAD", "/events", headers=[("Accept", "text/event-stream")])
        eq(r.status, 200, "status")
        eq(r.header("Content-Type"), "text/event-stream", "content type")
        eq(r.header("Cache-Control"), "no-cache", "no-cache")
        check("close" not in r.connection_tokens(), "Connection: close on HEAD: %r" % r)
        c.expect_open(timeout=0.4)  # no body, no retry field, no keep-alive comment
        r = c.request("GET", "/plaintext")
        eq((r.status, r.body), (200, b"Hello, World!"), "the next request on that connection")
        c.close()


@T.case("curl -I /events: prompt, and curl reuses the connection for its next URL")
def _():
    # Over HTTP/1.1: Debian 12's curl (7.88) fails reusing an h2c connection whatever the server
    # (two GETs of /plaintext too), so test_h2.py checks HEAD over HTTP/2 with its own client.
    with demo("--quiet", *DB) as srv:
        t0 = time.monotonic()
        p = subprocess.run(["curl", "-sS", "-I", "-m", "5", *srv.curl_args(),
                            "-w", "connects=%{num_connects}\n", srv.url("/events"),
                            srv.url("/plaintext")], capture_output=True, timeout=10)
        took = time.monotonic() - t0
        out = p.stdout.decode("latin-1")
        eq(p.returncode, 0, "curl's exit status (stderr %r, out %r)" % (p.stderr, out))
        check(took < 3, "curl -I took %.1f s" % took)
        heads = out.split("connects=")
        eq(len(heads), 3, "two heads and their counts: %r" % out)
        check(heads[0].startswith("HTTP/1.1 200 "), "status: %r" % out)
        check("\r\nContent-Type: text/event-stream\r\n" in heads[0], "content type: %r" % out)
        check("\r\nContent-Type: text/plain" in heads[1], "the second answer: %r" % out)
        eq(heads[2].strip(), "0", "new connections for the second request")


@T.case("SIGTERM with open streams: they end and the server exits 0")
def _():
    srv = demo("--quiet", *DB)
    with srv:
        streams = [open_stream(srv) for _ in range(3)]
        srv.send_signal(signal.SIGTERM)
        for c in streams:
            c.read_until_close(timeout=5)
        eq(srv.wait_exit(), 0, "exit status")


if __name__ == "__main__":
    try:
        T.main(needs=("crest",))
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)
