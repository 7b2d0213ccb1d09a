"""The Redis bridge (--redis): chat rooms and /events spanning several crest instances on one real
redis-server started by this file (tests/it/redisserver.py, a free loopback port): exactly once,
in order per sender, one PUBLISH per message, subscriptions only for rooms with local members,
Redis killed and restarted mid-test, an instance that joins late, oversized messages refused."""

import asyncio
import json
import os
import tempfile
import time

from harness import *
import redisserver

T = Suite()
_TMP = tempfile.mkdtemp(prefix="crest-redis-")
_R = None


def redis():
    global _R
    if _R is None:
        _R = redisserver.RedisServer()
    return _R


def instance(name, *args):
    return demo("--db", "sqlite:" + os.path.join(_TMP, name + ".db"), "--threads", "2",
                "--redis", redis().url(), *args)


def wait_until(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def wait_up(*servers):
    for s in servers:
        wait_until(lambda: metric(s, "crest_redis_up") == 1, "the bridge to come up")


async def member(srv, room, name):
    ws = await srv.ws_connect("/ws/chat?room=%s&name=%s" % (room, name), max_size=None)
    return ws


async def collect(ws, want, timeout=10):
    """Chat messages (type message) until `want` of them or the time is up: [(name, text)]."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            break
        if m.get("type") == "message":
            got.append((m["name"], m["text"]))
    return got


async def quiet(ws, seconds=0.5):
    """Chat messages that arrive within `seconds` (to show that none does)."""
    return await collect(ws, 1 << 30, timeout=seconds)


@T.case("three instances: every message reaches every member on every instance exactly once, "
        "each sender's in order, with one PUBLISH per message")
def _():
    with instance("a") as a, instance("b") as b, instance("c") as c:
        wait_up(a, b, c)

        async def go():
            members = []
            for srv, names in ((a, ("a1", "a2")), (b, ("b1", "b2")), (c, ("c1",))):
                for n in names:
                    members.append(await member(srv, "r1", n))
            # Every instance is subscribed before anyone sends.
            wait_until(lambda: redis().numsub("crest:room:r1") == 3, "three subscriptions")
            with redis().monitor() as mon:
                senders = [members[0], members[2]]  # a1 on a, b1 on b
                for i in range(20):
                    for s, who in zip(senders, ("a1", "b1")):
                        await s.send(json.dumps({"text": "%s-%d" % (who, i)}))
                results = [await collect(m, 40) for m in members]
                wait_until(lambda: sum(1 for x in mon.seen("PUBLISH")
                                       if x[1] == "crest:room:r1") >= 40, "40 PUBLISH commands")
                time.sleep(0.3)  # a 41st would show up now
                publishes = [x for x in mon.seen("PUBLISH") if x[1] == "crest:room:r1"]
            for m in members:
                await m.close()
            return results, publishes

        results, publishes = asyncio.run(asyncio.wait_for(go(), 60))
        for k, got in enumerate(results):
            eq(len(got), 40, "messages at member %d" % k)
            eq(len(set(got)), 40, "no duplicates at member %d" % k)
            for who in ("a1", "b1"):
                eq([t for n, t in got if n == who], ["%s-%d" % (who, i) for i in range(20)],
                   "%s's order at member %d" % (who, k))
        eq(len(publishes), 40, "PUBLISH commands for 40 chat messages")


@T.case("Node.js ws members on one instance get every message sent by a Python member on "
        "another, once each, in order")
def _():
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NODE_PATH=os.path.join(here, "..", "e2e", "node_modules"))
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)
        node = subprocess.Popen(["node", os.path.join(here, "redis_node_member.js"),
                                 b.ws_url("/ws/chat?room=r7&name=node#"), "3", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            eq(node.stdout.readline().strip(), b"ready", "node members connected")
            wait_until(lambda: redis().numsub("crest:room:r7") == 1, "b subscribed")

            async def send():
                ws = await member(a, "r7", "py")
                for i in range(30):
                    await ws.send(json.dumps({"text": "m%d" % i}))
                await collect(ws, 30)
                await ws.close()
            asyncio.run(asyncio.wait_for(send(), 30))
            out, err = node.communicate(timeout=20)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
        lines = [json.loads(l) for l in out.decode().splitlines() if l.strip()]
        eq(len(lines), 3, "three members reported (stderr %r)" % err[-300:])
        for k, got in enumerate(lines):
            eq(got, [["py", "m%d" % i] for i in range(30)], "member %d" % k)


@T.case("an event stream on one instance gets the chat messages sent on another")
def _():
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)
        c = b.connect()
        c.send(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        head = c.read_until(b"\r\n\r\n", what="SSE head")
        check(head.startswith(b"HTTP/1.1 200 "), "status %r" % head[:60])
        wait_until(lambda: redis().numsub("crest:events") >= 1, "b subscribed to events")

        async def send():
            ws = await member(a, "r2", "alice")
            await ws.send(json.dumps({"text": "across"}))
            await collect(ws, 1)
            await ws.close()
        asyncio.run(asyncio.wait_for(send(), 20))
        data = c.read_until(b'"text":"across"', timeout=10, what="the event on b's stream")
        check(b"event: message" in data, "an event: %r" % data[-300:])
        c.close()


@T.case("an instance subscribes in Redis only to rooms with local members, and unsubscribes "
        "when the last one leaves")
def _():
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)
        eq(redis().numsub("crest:room:r3"), 0, "nobody yet")

        async def go():
            with redis().monitor() as mon:
                m1 = await member(a, "r3", "x")
                wait_until(lambda: redis().numsub("crest:room:r3") == 1, "a subscribed")
                m2 = await member(a, "r3", "y")
                m3 = await member(b, "r3", "z")
                wait_until(lambda: redis().numsub("crest:room:r3") == 2, "b subscribed")
                await m1.close()
                await m3.close()
                wait_until(lambda: redis().numsub("crest:room:r3") == 1, "b unsubscribed")
                await m2.close()
                wait_until(lambda: redis().numsub("crest:room:r3") == 0, "a unsubscribed")
                subs = [x for x in mon.seen("SUBSCRIBE") if "crest:room:r3" in x[1:]]
                unsubs = [x for x in mon.seen("UNSUBSCRIBE") if "crest:room:r3" in x[1:]]
            eq(len(subs), 2, "one SUBSCRIBE per instance")
            eq(len(unsubs), 2, "one UNSUBSCRIBE per instance")
        asyncio.run(asyncio.wait_for(go(), 30))


@T.case("Redis killed mid-chat: each instance goes on delivering locally, /healthz stays 200, "
        "the metric and one log line say so; restarted: every room is subscribed again and "
        "messages cross again, none twice")
def _():
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)

        async def go():
            ma = await member(a, "r4", "ann")
            mb = await member(b, "r4", "bob")
            wait_until(lambda: redis().numsub("crest:room:r4") == 2, "both subscribed")
            await ma.send(json.dumps({"text": "before"}))
            eq(await collect(mb, 1), [("ann", "before")], "before, across")
            eq(await collect(ma, 1), [("ann", "before")], "before, locally")
            redis().kill()
            wait_until(lambda: metric(a, "crest_redis_up") == 0, "a sees the bridge down")
            with a.connect() as c:
                eq(c.request("GET", "/healthz").status, 200, "/healthz while Redis is down")
            await ma.send(json.dumps({"text": "during"}))
            eq(await collect(ma, 1), [("ann", "during")], "during, locally")
            redis().start()
            wait_up(a, b)
            wait_until(lambda: redis().numsub("crest:room:r4") == 2, "subscribed again")
            await ma.send(json.dumps({"text": "after"}))
            got_b = await collect(mb, 2, timeout=3)
            got_a = await collect(ma, 2, timeout=1)
            await ma.close()
            await mb.close()
            return got_a, got_b

        got_a, got_b = asyncio.run(asyncio.wait_for(go(), 60))
        eq(got_b, [("ann", "after")], "b after the restart: 'after' once, 'during' never")
        eq(got_a, [("ann", "after")], "a after the restart: once")
        check(metric(a, "crest_redis_reconnects_total") >= 1, "reconnect counted")
        check(metric(a, "crest_redis_dropped_total") >= 1, "the message during the outage counted")
        log = a.stderr_text()
        eq(log.count("redis: bridge down"), 1, "one log line for the outage: %r" % log[-600:])
        check("redis: bridge connected again" in log, "one when it is back: %r" % log[-600:])


@T.case("three Redis restarts in a row: still one subscription per instance, and a message "
        "reaches each member once")
def _():
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)

        async def go():
            ma = await member(a, "r10", "ann")
            mb = await member(b, "r10", "bob")
            for i in range(3):
                wait_until(lambda: redis().numsub("crest:room:r10") == 2, "subscribed (%d)" % i)
                if i % 2:
                    redis().kill()
                else:
                    redis().stop()
                redis().start()
                wait_up(a, b)
            wait_until(lambda: redis().numsub("crest:room:r10") == 2, "subscribed at the end")
            time.sleep(0.3)
            eq(redis().numsub("crest:room:r10"), 2, "one subscription per instance")
            await ma.send(json.dumps({"text": "once"}))
            got_b = await collect(mb, 2, timeout=2)
            got_a = await collect(ma, 2, timeout=1)
            await ma.close()
            await mb.close()
            return got_a, got_b
        got_a, got_b = asyncio.run(asyncio.wait_for(go(), 60))
        eq(got_b, [("ann", "once")], "bob")
        eq(got_a, [("ann", "once")], "ann")
        check(metric(a, "crest_redis_reconnects_total") >= 3, "three reconnects counted")


@T.case("an instance that joins late gets the messages published after it joined")
def _():
    with instance("a") as a:
        wait_up(a)

        async def go():
            ma = await member(a, "r5", "early")
            with instance("late") as late:
                wait_up(late)
                ml = await member(late, "r5", "late")
                wait_until(lambda: redis().numsub("crest:room:r5") == 2, "late subscribed")
                await ma.send(json.dumps({"text": "hello late"}))
                got = await collect(ml, 1)
                await ml.close()
            await ma.close()
            return got
        eq(asyncio.run(asyncio.wait_for(go(), 40)), [("early", "hello late")], "late member")


@T.case("a message from Redis over --ws-max-message is refused (skipped, counted), and the next "
        "one is delivered")
def _():
    with instance("a", "--ws-max-message", "1k") as a:
        wait_up(a)

        def foreign(text):
            # What another instance would publish: the bridge's header (another instance's id),
            # then the chat JSON.
            body = json.dumps({"type": "message", "room": "r6", "name": "far", "text": text,
                               "ts": 1}).encode()
            return b"c1" + b"\x07" * 8 + b"\x00" + b"\xff\xff\xff\xff" + body

        async def go():
            m = await member(a, "r6", "near")
            wait_until(lambda: redis().numsub("crest:room:r6") == 1, "subscribed")
            redis().cmd("PUBLISH", "crest:room:r6", foreign("x" * 100000))
            redis().cmd("PUBLISH", "crest:room:r6", foreign("small"))
            got = await collect(m, 2, timeout=2)
            await m.close()
            return got
        eq(asyncio.run(asyncio.wait_for(go(), 30)), [("far", "small")], "only the small one")
        eq(metric(a, "crest_redis_refused_total"), 1, "refused counted")


@T.case("a Redis that stops reading (SIGSTOP): the queue to it stays bounded, the excess is "
        "dropped and counted, local delivery goes on; resumed (SIGCONT), the bridge carries on")
def _():
    import signal as sig
    with instance("a") as a, instance("b") as b:
        wait_up(a, b)

        async def go():
            ma = await member(a, "r9", "ann")
            mb = await member(b, "r9", "bob")
            wait_until(lambda: redis().numsub("crest:room:r9") == 2, "both subscribed")
            os.kill(redis().proc.pid, sig.SIGSTOP)
            try:
                big = "x" * 60000
                last = []

                async def read_own():  # the sender reads as it sends (else crest pauses it)
                    while True:
                        m = json.loads(await ma.recv())
                        if m.get("type") == "message" and m["text"].startswith("799 "):
                            last.append(m)
                            return

                reader = asyncio.ensure_future(read_own())
                for i in range(800):  # 48 MB against a 16 MiB queue and the socket buffers
                    await ma.send(json.dumps({"text": "%d %s" % (i, big)}))
                await asyncio.wait_for(reader, 30)
                eq(len(last), 1, "local delivery while Redis does not read")
                dropped = metric(a, "crest_redis_dropped_total")
                check(dropped > 0, "dropped and counted: %r" % dropped)
                queued = metric(a, "crest_redis_queued_bytes")
                check(0 < queued <= 16 * 1024 * 1024 + 70000, "queued for Redis: %d" % queued)
                # Resident memory says the same, but only without a sanitizer (ASan holds freed
                # memory in quarantine).
                if "build-san" not in CREST_BIN and "build-tsan" not in CREST_BIN:
                    rss = 0
                    for line in open("/proc/%d/status" % a.proc.pid):
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) * 1024
                    check(rss < 200 * 1024 * 1024, "RSS %d MB" % (rss >> 20))
            finally:
                os.kill(redis().proc.pid, sig.SIGCONT)
            await quiet(mb, 3)  # what Redis got before it stopped reaching b is fine
            await ma.send(json.dumps({"text": "resumed"}))
            got = await collect(mb, 1, timeout=10)
            await ma.close()
            await mb.close()
            return got
        got = asyncio.run(asyncio.wait_for(go(), 90))
        eq(got, [("ann", "resumed")], "after SIGCONT")


@T.case("a Redis with a password: the right one in the URL bridges, a wrong one leaves the "
        "bridge down (metric 0, one log line naming the refusal) and delivery local")
def _():
    locked = redisserver.RedisServer(password="s3cret")
    try:
        base = "redis://:%s@127.0.0.1:%d"
        with demo("--db", "sqlite:" + os.path.join(_TMP, "p.db"), "--redis",
                  base % ("s3cret", locked.port)) as good, \
                demo("--db", "sqlite:" + os.path.join(_TMP, "q.db"), "--redis",
                     base % ("wrong", locked.port)) as bad:
            wait_until(lambda: metric(good, "crest_redis_up") == 1, "the right password")

            async def go():
                m = await member(good, "r8", "g")
                wait_until(lambda: locked.numsub("crest:room:r8") == 1, "subscribed with AUTH")
                await m.close()
            asyncio.run(asyncio.wait_for(go(), 20))
            wait_until(lambda: "WRONGPASS" in bad.stderr_text(), "the refusal logged")
            eq(metric(bad, "crest_redis_up"), 0, "a wrong password: down")
            check("bridge connected" not in bad.stderr_text(),
                  "never claims to be connected: %r" % bad.stderr_text()[-400:])
    finally:
        locked.close()


@T.case("--redis with a malformed URL is refused at start with a message")
def _():
    rc, out, err = run_cli([CREST_BIN, "demo", "--port", "0", "--redis", "http://x"])
    check(rc == 2 and "--redis" in err, "bad scheme: %d %r" % (rc, err))
    rc, out, err = run_cli([CREST_BIN, "demo", "--port", "0", "--db",
                            "sqlite:" + os.path.join(_TMP, "u.db"), "--redis",
                            "redis://no-such-host.invalid:6379"])
    check(rc != 0 and "--redis" in err, "unresolvable host: %d %r" % (rc, err))


if __name__ == "__main__":
    try:
        T.main(needs=("crest",))
    finally:
        if _R is not None:
            _R.close()
        import shutil
        shutil.rmtree(_TMP, ignore_errors=True)
