"""Socket.IO rooms across a cluster, from the outside: two crest demos (--redis) and the Node.js
socket.io server of bench/peers/sio-redis/server.js (@socket.io/redis-adapter 8, default key
prefix) on one real redis-server started by this file (tests/it/redisserver.py), with unchanged
npm socket.io-client clients on all three (tests/it/sio_cluster_client.js, driven line by line
from here).

Covered: `chat` from every server reaches every member on every server once, sender included,
each sender's in order (crest drops its own messages coming back from Redis); `blob` bytes
byte-exact in every direction; members who left and non-members get nothing, and a non-member
cannot send; rooms and namespaces stay apart (messages written into Redis in the adapter's
format for another namespace reach nobody); Redis stopped and started again on its port while
every server runs (local delivery goes on, the cluster comes back by itself); clients on the
default transports (long-polling, then the upgrade), WebSocket only and long-polling only.
npm socket.io-client, @socket.io/redis-adapter and ioredis come from tests/e2e/node_modules
(tests/run.sh installs them)."""

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403
import redisserver  # noqa: E402

T = Suite()
HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = os.path.join(os.path.dirname(HERE), "e2e", "node_modules")
NODE_PEER = os.path.join(ROOT, "bench", "peers", "sio-redis", "server.js")
DRIVER = os.path.join(HERE, "sio_cluster_client.js")
_TMP = tempfile.mkdtemp(prefix="crest-sio-cluster-")
atexit.register(shutil.rmtree, _TMP, True)
_R = None
_n = [0]

WAIT_MS = 8000  # a client's wait for what it should get (sanitizer builds are slow)
BACK_S = 15  # the cluster after Redis comes back: the bridges' backoff is 2 s at most


def redis():
    global _R
    if _R is None:
        _R = redisserver.RedisServer()
    return _R


def need_modules():
    for m in ("socket.io-client", "socket.io", "@socket.io/redis-adapter", "ioredis"):
        check(os.path.isdir(os.path.join(MODULES, m)),
              "npm %s missing in %s (tests/run.sh installs it)" % (m, MODULES))


def crest():
    _n[0] += 1
    db = os.path.join(_TMP, "c%d.db" % _n[0])
    # Cleartext like the Node.js peer, also in TLS mode (this file is not in tests/run.sh's
    # TLS list: the cluster's link is Redis, not the clients' transport).
    return demo("--db", "sqlite:" + db, "--threads", "2", "--redis", redis().url(), tls=False)


class Proc:
    """A Node.js process with its stdout read line by line by a thread (lines in a queue) and
    its stderr kept for the report."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _err(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.err.append(line.decode("utf-8", "replace"))

    def line(self, timeout, what):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            fail("no %s within %.0f s; stderr: %s" % (what, timeout, "".join(self.err)[-1500:]))
        if line is None:
            self.proc.wait(2)
            fail("%s: the process exited (%r); stderr: %s"
                 % (what, self.proc.returncode, "".join(self.err)[-1500:]))
        return line

    def end(self, sig=signal.SIGTERM, timeout=5):
        """Sends sig (unless it already exited) and waits; SIGKILL after timeout. Its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def node_env():
    return dict(os.environ, NODE_PATH=MODULES)


@contextlib.contextmanager
def node_peer():
    """bench/peers/sio-redis/server.js on a free port; its http:// URL. Stopped with SIGTERM; it
    must exit 0."""
    env = node_env()
    env.update(PORT="0", REDIS_URL=redis().url())
    p = Proc(["node", NODE_PEER], env)
    ok = False
    try:
        line = p.line(START_TIMEOUT, "listening line of the Node.js peer")
        check(line.startswith("listening on "), "Node.js peer said %r" % line)
        yield "http://127.0.0.1:%d" % int(line.split()[-1])
        ok = True
    finally:
        rc = p.end()
        if ok:
            eq(rc, 0, "the Node.js peer's exit status (stderr: %s)" % "".join(p.err)[-500:])


class Driver:
    """sio_cluster_client.js: every call is one command, answered by one line."""

    def __init__(self):
        self.p = Proc(["node", DRIVER], node_env())

    def call(self, op, timeout=None, **kw):
        kw["op"] = op
        self.p.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.p.proc.stdin.flush()
        if timeout is None:
            timeout = kw.get("ms", WAIT_MS) / 1000 + 5
        a = json.loads(self.p.line(timeout, "answer to %s" % op))
        if not a["ok"]:
            fail("%s %s: %s" % (op, kw.get("id", ""), a["error"]))
        return a

    def connect(self, cid, url, transports=None):
        kw = {"transports": transports} if transports else {}
        return self.call("connect", id=cid, url=url, name=cid, **kw)["first"]

    def join(self, cid, *rooms):
        for room in rooms:
            eq(self.call("join", id=cid, room=room)["ack"], {"room": room, "ok": True},
               "%s's join ack for %s" % (cid, room))

    def chat(self, cid, room, *texts):
        self.call("chat", id=cid, room=room, texts=list(texts))

    def wait(self, cid, event, count, room=None, prefix=None, ms=WAIT_MS):
        """The client's events of that name (chat: in room, the text starting with prefix) once
        it holds count of them; fails when it does not within ms."""
        kw = {k: v for k, v in (("room", room), ("prefix", prefix)) if v is not None}
        return self.call("wait", id=cid, event=event, count=count, ms=ms, **kw)["events"]

    def heard(self, cid, room, prefix):
        """How many chat messages in room starting with prefix the client holds now."""
        return sum(1 for m in chats(self.events(cid), room) if m["text"].startswith(prefix))

    def events(self, cid):
        return self.call("events", id=cid)["events"]

    def close(self):
        try:
            self.p.proc.stdin.close()
        except OSError:
            pass
        self.p.end(signal.SIGTERM, 5)


def psub_clients():
    """How many Redis connections hold a pattern subscription (CLIENT LIST's psub)."""
    n = 0
    for line in redis().cmd("CLIENT", "LIST").splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if int(fields.get("psub", "0")) > 0:
            n += 1
    return n


@contextlib.contextmanager
def cluster():
    """crest A, crest B, the Node.js peer and a driver; (urls {"a", "b", "n"}, driver, crests).
    Returns once every server holds its pattern subscription on Redis."""
    need_modules()
    with crest() as a, crest() as b, node_peer() as n:
        for s in (a, b):
            wait_until(lambda: metric(s, "crest_redis_up") == 1, 10, "the bridge to come up")
        # One pattern subscription per server ("socket.io#/#*"); those of an earlier case's
        # servers are gone with their connections.
        wait_until(lambda: psub_clients() == 3, 10, "three pattern subscriptions on Redis")
        d = Driver()
        try:
            yield {"a": a.url(), "b": b.url(), "n": n}, d, (a, b)
        finally:
            d.close()


def chats(events, room=None):
    return [e[1] for e in events if e[0] == "chat" and (room is None or e[1]["room"] == room)]


def texts_by(msgs, name):
    return [m["text"] for m in msgs if m["name"] == name]


@T.case("chat across crest A, crest B and Node.js, clients on every transport: every member "
        "gets every message once, sender included, each sender's in order", timeout=40)
def _():
    with cluster() as (url, d, _):
        members = {  # id: (server, transports); None is socket.io-client's default
            "a1": ("a", None), "a2": ("a", ["websocket"]),
            "b1": ("b", ["websocket"]), "b2": ("b", ["polling"]),
            "n1": ("n", None), "n2": ("n", ["websocket"]),
        }
        for cid, (srv, tr) in members.items():
            first = d.connect(cid, url[srv], tr)
            eq(first, (tr or ["polling"])[0], "%s's first transport" % cid)
            d.join(cid, "r1")
        senders, N = ("a1", "b1", "n1"), 20
        for i in range(N):
            for s in senders:
                d.chat(s, "r1", "%s-%d" % (s, i))
        for cid in members:
            d.wait(cid, "chat", len(senders) * N, room="r1")
        # Each sender once more, after every member had everything: an echo of the first 20
        # from Redis (a server not dropping its own) would reach its members before these.
        for s in senders:
            d.chat(s, "r1", s + "-end")
        for cid in members:
            got = chats(d.wait(cid, "chat", len(senders) * (N + 1), room="r1"))
            eq(len(got), len(senders) * (N + 1), "messages at %s" % cid)
            for s in senders:
                eq(texts_by(got, s), ["%s-%d" % (s, i) for i in range(N)] + [s + "-end"],
                   "%s's messages at %s (in order, once each)" % (s, cid))
            for m in got:
                eq(sorted(m), ["name", "room", "text", "ts"], "a chat's fields at %s" % cid)
                check(isinstance(m["ts"], int) and m["ts"] > 1.6e12, "ts %r" % m["ts"])
        for cid, (srv, tr) in members.items():
            if tr is None:  # the default: polling, then the upgrade to WebSocket
                eq(d.call("upgraded", id=cid)["transport"], "websocket", "%s upgraded" % cid)


@T.case("blob: bytes 0..255 and 70000 bytes, byte-exact, crest <-> Node.js and crest <-> crest")
def _():
    with cluster() as (url, d, _):
        members = {"a1": ("a", ["websocket"]), "a2": ("a", None), "b1": ("b", None),
                   "n1": ("n", ["websocket"]), "n2": ("n", None)}
        for cid, (srv, tr) in members.items():
            d.connect(cid, url[srv], tr)
            d.join(cid, "bin")
        every = bytes(range(256))
        big = bytes((i * 7919 + (i >> 8)) & 255 for i in range(70000))  # over bin16's 65535
        sent = {"a1": [every, big], "n1": [every[::-1], big[::-1]], "b1": [every + b"\0"]}
        for s, blobs in sent.items():
            for blob in blobs:
                d.call("blob", id=s, room="bin", hex=blob.hex())
        total = sum(len(v) for v in sent.values())
        for cid in members:
            got = d.wait(cid, "blob", total)
            eq(len(got), total, "blobs at %s" % cid)
            for _, name, hexed, is_buffer in got:
                check(is_buffer, "%s got %s's bytes as something else than a Buffer" % (cid, name))
            for s, blobs in sent.items():
                mine = [bytes.fromhex(e[2]) for e in got if e[1] == s]
                eq([len(b) for b in mine], [len(b) for b in blobs],
                   "%s's blob sizes at %s" % (s, cid))
                check(mine == blobs, "%s's bytes differ at %s" % (s, cid))


@T.case("members who left and non-members get nothing, on every server; a non-member cannot send")
def _():
    with cluster() as (url, d, _):
        members = ("a1", "b1", "n1")
        leavers = ("la", "lb", "ln")
        outsiders = ("oa", "ob", "on")
        for trio in (members, leavers, outsiders):
            for cid, srv in zip(trio, "abn"):
                d.connect(cid, url[srv], ["websocket"] if srv == "b" else None)
                d.join(cid, "fence")
                if trio != outsiders:
                    d.join(cid, "r1")
        # One message while the leavers are members: they are in the room on every server.
        d.chat("a1", "r1", "before")
        for cid in members + leavers:
            eq(texts_by(chats(d.wait(cid, "chat", 1, room="r1")), "a1"), ["before"],
               "r1 at %s before the leave" % cid)
        for cid in leavers:
            d.call("leave", id=cid, room="r1")
            d.join(cid, "after-leave")  # its ack comes after the leave was handled
        for s in outsiders:  # sends to a room it is not in: dropped by its server
            d.chat(s, "r1", "from outside")
        for s in members:
            d.chat(s, "r1", "after")
            d.call("blob", id=s, room="r1", hex="00ff")
        # Fences: each sender's next message in "fence" comes after its r1 messages everywhere.
        for s in members + outsiders:
            d.chat(s, "fence", "fence " + s)
        everyone = members + leavers + outsiders
        for cid in everyone:
            d.wait(cid, "chat", len(members + outsiders), room="fence")
        for cid in members:
            r1 = chats(d.events(cid), "r1")
            eq(sorted((m["name"], m["text"]) for m in r1[1:]),
               [("a1", "after"), ("b1", "after"), ("n1", "after")], "r1 at member %s" % cid)
            eq(sum(1 for e in d.events(cid) if e[0] == "blob"), 3, "blobs at member %s" % cid)
        for cid in leavers:
            events = d.events(cid)
            eq(len(chats(events, "r1")), 1, "r1 messages at %s after it left" % cid)
            eq([e for e in events if e[0] == "blob"], [], "blobs at %s after it left" % cid)
        for cid in outsiders:
            events = d.events(cid)
            eq(chats(events, "r1"), [], "r1 messages at non-member %s" % cid)
            eq([e for e in events if e[0] == "blob"], [], "blobs at non-member %s" % cid)


@T.case("rooms and namespaces stay apart: r1's messages never reach r2's members on any server, "
        "and the adapter's messages for another namespace reach nobody")
def _():
    with cluster() as (url, d, _):
        for room, trio in (("r1", ("pa", "pb", "pn")), ("r2", ("qa", "qb", "qn"))):
            for cid, srv in zip(trio, "abn"):
                d.connect(cid, url[srv])
                d.join(cid, room, "fence")
        for s in ("pa", "pb", "pn"):
            d.chat(s, "r1", "to r1 from " + s)
        for s in ("qa", "qb", "qn"):
            d.chat(s, "r2", "to r2 from " + s)

        # Written into Redis as a Node.js server's adapter writes a broadcast to one room.
        def inject(channel, nsp, text, want_receivers):
            packet = {"type": 2, "data": ["chat", {"room": "r1", "name": "inj", "text": text,
                                                   "ts": 1}], "nsp": nsp}
            opts = {"rooms": ["r1"], "except": [], "flags": {}}
            got = d.call("publish", url=redis().url(), channel=channel, uid="inject",
                         packet=packet, opts=opts)["receivers"]
            eq(got, want_receivers, "Redis receivers of %s" % channel)

        inject("socket.io#/#r1#", "/", "for /", 3)  # the control: it reaches r1 everywhere
        inject("socket.io#/#r1#", "/other", "packet for /other", 3)  # dropped by every server
        inject("socket.io#/other#r1#", "/other", "channel for /other", 0)
        for s in ("pa", "qa", "pb", "qb", "pn", "qn"):
            d.chat(s, "fence", "fence")
        for cid in ("pa", "pb", "pn", "qa", "qb", "qn"):
            d.wait(cid, "chat", 6, room="fence")
        for cid in ("pa", "pb", "pn"):
            got = chats(d.events(cid))
            eq(sorted(m["text"] for m in got if m["room"] == "r1"),
               ["for /", "to r1 from pa", "to r1 from pb", "to r1 from pn"], "r1 at %s" % cid)
            eq([m for m in got if m["room"] == "r2"], [], "r2's messages at %s" % cid)
        for cid in ("qa", "qb", "qn"):
            got = chats(d.events(cid))
            eq(sorted(m["text"] for m in got if m["room"] == "r2"),
               ["to r2 from qa", "to r2 from qb", "to r2 from qn"], "r2 at %s" % cid)
            eq([m for m in got if m["room"] == "r1"], [], "r1's messages at %s" % cid)


@T.case("Redis stopped and started again on its port: local delivery on crest goes on while it "
        "is down, the cluster comes back without restarting anything", timeout=45)
def _():
    with cluster() as (url, d, (a, b)):
        members = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "n1": "n"}
        for cid, srv in members.items():
            d.connect(cid, url[srv], ["websocket"] if cid.endswith("2") else None)
            d.join(cid, "r1")
        d.chat("a1", "r1", "up")
        for cid in members:
            d.wait(cid, "chat", 1, room="r1")

        eq(redis().stop(), 0, "redis-server's exit status")
        for s in (a, b):
            wait_until(lambda: metric(s, "crest_redis_up") == 0, 10, "the bridge to go down")
        for s, pair in (("a1", ("a1", "a2")), ("b1", ("b1", "b2"))):
            d.chat(s, "r1", *("down %s %d" % (s, i) for i in range(5)))
            for cid in pair:
                got = [t for t in texts_by(chats(d.wait(cid, "chat", 6, room="r1")), s)
                       if t.startswith("down")]
                eq(got, ["down %s %d" % (s, i) for i in range(5)],
                   "local delivery at %s while Redis is down" % cid)

        redis().start()
        # Each sender probes until the members on the other servers hear it: crest's bridges
        # (backoff up to 2 s) and ioredis (its own retry) reconnect and subscribe again.
        deadline = time.monotonic() + BACK_S
        for s, far in (("a1", ("b1", "n1")), ("b1", ("a1", "n1")), ("n1", ("a1", "b1"))):
            k = 0
            while not all(d.heard(cid, "r1", "probe %s " % s) for cid in far):
                if time.monotonic() > deadline:
                    fail("%s not heard on the other servers %.0f s after Redis came back"
                         % (s, BACK_S))
                d.chat(s, "r1", "probe %s %d" % (s, k))
                k += 1
                time.sleep(0.2)
        for s in (a, b):
            eq(metric(s, "crest_redis_up"), 1, "crest_redis_up after Redis came back")

        # And once more from every server, after the probes: once each, everywhere.
        for s in ("a1", "b1", "n1"):
            d.chat(s, "r1", "back " + s)
        for cid in members:
            got = d.wait(cid, "chat", 3, room="r1", prefix="back ")
            eq(sorted(m["text"] for m in chats(got)), ["back a1", "back b1", "back n1"],
               "messages after the return at %s" % cid)
        # A fence from each sender after "back": a second copy of anything would be here now.
        for s in ("a1", "b1", "n1"):
            d.chat(s, "r1", "fence " + s)
        for cid in members:
            d.wait(cid, "chat", 3, room="r1", prefix="fence ")
            texts = [m["text"] for m in chats(d.events(cid), "r1")]
            back = [t for t in texts if t.startswith(("back ", "probe "))]
            eq(len(back), len(set(back)), "no message twice at %s" % cid)


if __name__ == "__main__":
    T.main(needs=("crest",))
