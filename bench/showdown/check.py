#!/usr/bin/python3
"""Checks a running peer against bench/peers/SHOWDOWN.md before it is measured: a figure from a
server that answers something else is no figure.

    python3 bench/showdown/check.py http://127.0.0.1:PORT WORKLOAD... [--db DATABASE_URL]

WORKLOAD: plaintext json db queries fortunes updates todos hash ws rooms. With --db the rows
/updates answered are compared with the table afterwards. Prints one line per failed check and
exits 1 when any failed, 0 when all passed. The showdown calls check() itself.
"""

import asyncio
import hashlib
import html
import http.client
import json
import subprocess
import sys
import urllib.parse

WORKLOADS = ("plaintext", "json", "db", "queries", "fortunes", "updates", "todos", "hash", "ws",
             "rooms")

EXTRA_FORTUNE = "Additional fortune added at request time."


class Peer:
    def __init__(self, base, db=None, timeout=10):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.db = db
        self.timeout = timeout
        self.problems = []

    def bad(self, what):
        self.problems.append(what)

    def request(self, method, path, body=None, headers=None):
        """(status, headers as a lower-case dict, body bytes); a fresh connection each time."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def expect(self, method, path, status, body=None, headers=None):
        """The answer when its status is `status`, else None (and the problem noted)."""
        try:
            st, hd, data = self.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as e:
            self.bad("%s %s: %s" % (method, path, e))
            return None
        if st != status:
            self.bad("%s %s: status %d, want %d (%r)" % (method, path, st, status, data[:120]))
            return None
        if "date" not in hd:
            self.bad("%s %s: no Date header" % (method, path))
        if status not in (204, 304) and "content-length" not in hd and \
                hd.get("transfer-encoding", "") != "chunked":
            self.bad("%s %s: neither Content-Length nor chunked" % (method, path))
        return hd, data

    def json_of(self, method, path, status, body=None, headers=None):
        got = self.expect(method, path, status, body, headers)
        if got is None:
            return None
        hd, data = got
        if not hd.get("content-type", "").startswith("application/json"):
            self.bad("%s %s: Content-Type %r" % (method, path, hd.get("content-type")))
        try:
            return json.loads(data)
        except ValueError:
            self.bad("%s %s: not JSON: %r" % (method, path, data[:120]))
            return None

    def psql(self, sql):
        out = subprocess.run(["psql", "-X", "-At", "-F", "\t", self.db, "-c", sql],
                             capture_output=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.decode(errors="replace"))
        return [line.split("\t") for line in out.stdout.decode().splitlines() if line]


def is_row(v):
    return (isinstance(v, dict) and set(v) == {"id", "randomNumber"}
            and all(isinstance(v[k], int) and not isinstance(v[k], bool) for k in v)
            and 1 <= v["id"] <= 10000 and 1 <= v["randomNumber"] <= 10000)


def check_plaintext(p):
    got = p.expect("GET", "/plaintext", 200)
    if got:
        hd, data = got
        if data != b"Hello, World!":
            p.bad("/plaintext: body %r" % data[:60])
        if not hd.get("content-type", "").startswith("text/plain"):
            p.bad("/plaintext: Content-Type %r" % hd.get("content-type"))


def check_json(p):
    v = p.json_of("GET", "/json", 200)
    if v is not None and v != {"message": "Hello, World!"}:
        p.bad("/json: %r" % v)


def check_db(p):
    v = p.json_of("GET", "/db", 200)
    if v is not None and not is_row(v):
        p.bad("/db: not a World row: %r" % v)


def check_queries(p, path="/queries"):
    for q, n in (("5", 5), ("1", 1), ("0", 1), ("foo", 1), ("", 1), ("501", 500)):
        target = path + ("?queries=" + q if q else "")
        v = p.json_of("GET", target, 200)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) != n or not all(is_row(r) for r in v):
            p.bad("%s: want %d rows, got %r" % (target, n, v if len(repr(v)) < 200 else
                                               "%d items" % len(v)))


def check_fortunes(p):
    got = p.expect("GET", "/fortunes", 200)
    if not got:
        return
    hd, data = got
    if hd.get("content-type", "").replace(" ", "").lower() != "text/html;charset=utf-8":
        p.bad("/fortunes: Content-Type %r" % hd.get("content-type"))
    text = data.decode("utf-8", errors="replace")
    from pg import FORTUNES  # the rows the tool seeds
    rows = sorted(FORTUNES + [(0, EXTRA_FORTUNE)], key=lambda r: r[1])
    want = ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id"
            "</th><th>message</th></tr>" +
            "".join("<tr><td>%d</td><td>%s</td></tr>" % (i, html.escape(m, quote=True))
                    for i, m in rows) + "</table></body></html>")
    squeeze = lambda s: "".join(s.split())  # noqa: E731 (whitespace between tags is free)
    norm = lambda s: squeeze(s).replace("&#x27;", "&#39;").replace("&#039;", "&#39;") \
        .replace("&quot;", "&#34;").replace("&#x22;", "&#34;")  # noqa: E731
    if norm(text) != norm(want):
        p.bad("/fortunes: the table differs from TechEmpower's: %r" % text[:300])


def check_updates(p):
    v = p.json_of("GET", "/updates?queries=10", 200)
    if v is None:
        return
    if not isinstance(v, list) or len(v) != 10 or not all(is_row(r) for r in v):
        p.bad("/updates?queries=10: %r" % v)
        return
    if p.db:  # compared before any other /updates can rewrite a row
        last = {r["id"]: r["randomNumber"] for r in v}  # an id drawn twice keeps its last
        ids = ",".join(str(i) for i in last)
        table = {int(i): int(n) for i, n in p.psql(
            "SELECT id, randomNumber FROM World WHERE id IN (%s)" % ids)}
        differ = {i: (n, table.get(i)) for i, n in last.items() if table.get(i) != n}
        if differ:
            p.bad("/updates: answered numbers not in the table: %r" % differ)
    check_queries(p, "/updates")


def check_todos(p):
    j = {"Content-Type": "application/json"}
    v = p.json_of("POST", "/api/todos", 201, json.dumps({"title": "buy milk", "done": False}), j)
    if v is None:
        return
    if not (isinstance(v, dict) and isinstance(v.get("id"), int) and v.get("title") == "buy milk"
            and v.get("done") is False):
        p.bad("POST /api/todos: %r" % v)
        return
    tid = v["id"]
    p.request("POST", "/api/todos", json.dumps({"title": "x", "done": True}), j)  # for the page
    got = p.request("GET", "/api/todos/%d" % tid)
    if got[0] != 200 or json.loads(got[2] or b"null") != v:
        p.bad("GET /api/todos/%d: %r" % (tid, got[:3:2]))
    st, hd, _ = p.request("POST", "/api/todos", json.dumps({"title": "loc", "done": False}), j)
    if st != 201 or "/api/todos/" not in hd.get("location", ""):
        p.bad("POST /api/todos: Location %r" % hd.get("location"))
    w = p.json_of("PATCH", "/api/todos/%d" % tid, 200, json.dumps({"done": True}), j)
    if w is not None and w != {"id": tid, "title": "buy milk", "done": True}:
        p.bad("PATCH /api/todos/%d: %r" % (tid, w))
    page = p.json_of("GET", "/api/todos?limit=2&after=%d" % (tid - 1), 200)
    if page is not None and (not isinstance(page, list) or len(page) != 2 or
                             page[0].get("id") != tid):
        p.bad("GET /api/todos?limit=2&after=%d: %r" % (tid - 1, page))
    p.expect("DELETE", "/api/todos/%d" % tid, 204)
    p.expect("GET", "/api/todos/%d" % tid, 404)
    p.expect("PATCH", "/api/todos/%d" % tid, 404, json.dumps({"done": True}), j)
    p.expect("POST", "/api/todos", 400, "{not json", j)
    for body in ({"done": True}, {"title": 5, "done": True}, {"title": "t", "done": 1}):
        p.expect("POST", "/api/todos", 422, json.dumps(body), j)


def check_hash(p):
    body = b"correct horse battery staple"
    v = p.json_of("POST", "/work/hash?rounds=1000", 200, body,
                  {"Content-Type": "application/octet-stream"})
    want = hashlib.pbkdf2_hmac("sha256", body, b"crest-work-hash", 1000, 32).hex()
    if v is not None and (v.get("digest") != want or v.get("rounds") != 1000):
        p.bad("/work/hash: %r, want digest %s" % (v, want))
    p.expect("POST", "/work/hash?rounds=0", 400, body)
    p.expect("GET", "/healthz", 200)


async def _ws_checks(p, workloads):
    import websockets  # Debian python3-websockets
    base = "ws://%s:%d" % (p.host, p.port)
    if "ws" in workloads:
        try:
            async with websockets.connect(base + "/ws/echo", open_timeout=p.timeout) as ws:
                for msg in ("hello", b"\x00\x01binary\xff", "x" * 70000):
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), p.timeout)
                    if got != msg:
                        p.bad("/ws/echo: sent %r, got %r" % (msg[:20], got[:20]))
        except Exception as e:  # noqa: BLE001 (any failure is the peer's)
            p.bad("/ws/echo: %s: %s" % (type(e).__name__, e))
    if "rooms" in workloads:
        try:
            url = base + "/ws/chat?room=check&name="
            async with websockets.connect(url + "a", open_timeout=p.timeout) as a, \
                    websockets.connect(url + "b", open_timeout=p.timeout) as b:
                await asyncio.sleep(0.2)  # both joined
                await a.send(json.dumps({"text": "hi there"}))
                for who, ws in (("a", a), ("b", b)):
                    while True:
                        m = json.loads(await asyncio.wait_for(ws.recv(), p.timeout))
                        if m.get("type") == "message":
                            break
                    if (m.get("room"), m.get("name"), m.get("text")) != ("check", "a", "hi there") \
                            or not isinstance(m.get("ts"), int):
                        p.bad("/ws/chat: member %s got %r" % (who, m))
        except Exception as e:  # noqa: BLE001
            p.bad("/ws/chat: %s: %s" % (type(e).__name__, e))


# Each workload's endpoint, as failures name it (run.py ties a failure to its workload).
ENDPOINTS = {"plaintext": "/plaintext", "json": "/json", "db": "/db", "queries": "/queries",
             "fortunes": "/fortunes", "updates": "/updates", "todos": "/api/todos",
             "hash": "/work/hash", "ws": "/ws/echo", "rooms": "/ws/chat"}

CHECKS = {"plaintext": check_plaintext, "json": check_json, "db": check_db,
          "queries": check_queries, "fortunes": check_fortunes, "updates": check_updates,
          "todos": check_todos, "hash": check_hash}


def check(base, workloads, db=None, ready="/healthz"):
    """The problems found (an empty list: the peer answers as the contract says). ready: the
    path that answers 200 once the peer is up (a peer without /healthz names another)."""
    p = Peer(base, db)
    p.expect("GET", ready, 200)
    for w in workloads:
        if w in CHECKS:
            CHECKS[w](p)
    if "ws" in workloads or "rooms" in workloads:
        asyncio.run(_ws_checks(p, workloads))
    return p.problems


def main(argv):
    args, db = [], None
    it = iter(argv)
    for a in it:
        if a == "--db":
            db = next(it, None)
        else:
            args.append(a)
    if len(args) < 2 or any(w not in WORKLOADS for w in args[1:]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = check(args[0], args[1:], db)
    for line in problems:
        print(line)
    print("%s: %s" % (args[0], "ok" if not problems else "%d problems" % len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    import os
    # Python libraries come from Debian's packages: run under Debian's python3, not another on
    # PATH (a pyenv one lacks python3-websockets).
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
            os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
