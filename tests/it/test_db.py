"""The database endpoints of the demo app: TechEmpower /db, /queries, /updates, /fortunes, the
/api/todos REST API, and durability across restart and kill -9, on either backend.

CREST_IT_DB=postgres runs every case against a real PostgreSQL (tests/it/pgserver.py: started by
this file, on a free loopback port) instead of SQLite. Each case gets its own database: a file in
a fresh temporary directory (--db sqlite:DIR/x.db), or a PostgreSQL database named after it.
"""

import html
import json
import os
import re
import signal
import sqlite3
import time

from harness import *

T = Suite()



BACKEND = os.environ.get("CREST_IT_DB", "sqlite")


def pg_name(tmp):
    """The case's PostgreSQL database: named after its folder, in the characters a name takes."""
    return "t_" + re.sub(r"[^a-z0-9_]", "_", os.path.basename(tmp).lower())


def db_url(tmp):
    if BACKEND == "postgres":
        import pgserver
        return pgserver.shared().create_db(pg_name(tmp))
    return "sqlite:%s/x.db" % tmp


def db_rows(tmp, sql):
    """Rows of sql run directly on the case's database (integers as int)."""
    if BACKEND == "postgres":
        import pgserver
        rows = pgserver.shared().psql(sql, pg_name(tmp))
        return [tuple(int(v) if v.lstrip("-").isdigit() else v for v in r) for r in rows]
    con = sqlite3.connect(os.path.join(tmp, "x.db"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def db_server(tmp, *args):
    return demo("--db", db_url(tmp), "--threads", "2", "--workers", "2", *args)


def get_json(c, method, target, body=None, status=200):
    headers = [("Content-Type", "application/json")] if body is not None else None
    r = c.request(method, target, headers=headers, body=body)
    eq(r.status, status, "%s %s status (body %r)" % (method, target, r.body[:200]))
    check_std_headers(r, framed=status != 204)
    if status == 204:
        eq(r.body, b"", "204 body")
        return r, None
    ct = r.header("Content-Type")
    eq(ct, "application/json", "%s %s Content-Type" % (method, target))
    return r, json.loads(r.body.decode("utf-8"))


def check_world(row):
    check(isinstance(row, dict) and set(row) == {"id", "randomNumber"}, "world row %r" % row)
    check(1 <= row["id"] <= 10000, "id out of range: %r" % row)
    check(1 <= row["randomNumber"] <= 10000, "randomNumber out of range: %r" % row)


# ---- TechEmpower ----

@T.case("/openapi.json documents the todos API from the tables that validate its bodies")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        _, doc = get_json(c, "GET", "/openapi.json")
        eq(doc["openapi"], "3.1.0", "OpenAPI version")
        ops = doc["paths"]["/api/todos/{id}"]
        eq(sorted(ops), ["delete", "get", "parameters", "patch", "put"]
           if "parameters" in ops else ["delete", "get", "patch", "put"], "operations on {id}")
        body = doc["paths"]["/api/todos"]["post"]["requestBody"]["content"]["application/json"]
        eq(body["schema"]["$ref"], "#/components/schemas/TodoIn", "POST body schema")
        eq(doc["components"]["schemas"]["TodoIn"]["required"], ["title", "done"], "required")


@T.case("/db answers one World row as JSON")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        for _ in range(20):
            _, row = get_json(c, "GET", "/db")
            check_world(row)


@T.case("the database is seeded: World has 10,000 rows, Fortune the 12 standard fortunes")
def _():
    with tmp_dir() as tmp:
        with db_server(tmp):
            pass
        if BACKEND == "sqlite":
            eq(db_rows(tmp, "PRAGMA journal_mode")[0][0], "wal", "journal mode")
        eq(db_rows(tmp, "SELECT count(*), min(id), max(id) FROM World")[0], (10000, 1, 10000),
           "World rows")
        eq(db_rows(tmp, "SELECT count(*) FROM World WHERE randomNumber NOT BETWEEN 1 AND "
                        "10000")[0][0], 0, "World numbers out of range")
        eq(db_rows(tmp, "SELECT count(*) FROM Fortune")[0][0], 12, "Fortune rows")


@T.case("/queries clamps N to 1..500; missing or non-numeric N means 1")
def _():
    cases = [("/queries", 1), ("/queries?queries=", 1), ("/queries?queries=foo", 1),
             ("/queries?queries=0", 1), ("/queries?queries=-3", 1), ("/queries?queries=1", 1),
             ("/queries?queries=20", 20), ("/queries?queries=500", 500),
             ("/queries?queries=501", 500), ("/queries?queries=99999999999999999999", 500),
             ("/queries?queries=12abc", 1)]
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        for target, n in cases:
            _, rows = get_json(c, "GET", target)
            check(isinstance(rows, list), "%s: not an array" % target)
            eq(len(rows), n, "%s row count" % target)
            for row in rows:
                check_world(row)


@T.case("/fortunes: all rows plus the request-time one, sorted by message, HTML-escaped")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        r = c.request("GET", "/fortunes")
        eq(r.status, 200, "status")
        check_std_headers(r)
        eq(r.header("Content-Type"), "text/html; charset=utf-8", "Content-Type")
        body = r.body.decode("utf-8")
        check(body.startswith("<!DOCTYPE html><html><head><title>Fortunes</title></head><body>"
                              "<table><tr><th>id</th><th>message</th></tr>"), "head %r" % body[:120])
        check(body.endswith("</table></body></html>"), "tail %r" % body[-40:])
        rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", body)
        eq(len(rows), 13, "rows")
        msgs = [html.unescape(m) for _, m in rows]
        eq(msgs, sorted(msgs), "messages sorted")
        check("Additional fortune added at request time." in msgs, "request-time fortune")
        eq(dict(rows)["0"], "Additional fortune added at request time.", "its id 0")
        check("&lt;script&gt;alert(&quot;This should not be displayed in a browser alert box."
              "&quot;);&lt;/script&gt;" in body, "script fortune escaped")
        check("<script>" not in body, "raw <script> in body")
        check("aren&#39;t broken" in body, "apostrophe escaped")
        check("\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1\u30de\u30fc\u30af"
              in body, "UTF-8 fortune intact")


@T.case("/updates: N rows with new numbers, clamped like /queries, persisted (read back)")
def _():
    with tmp_dir() as tmp:
        written = {}
        with db_server(tmp) as srv, srv.connect() as c:
            for target, n in [("/updates", 1), ("/updates?queries=x", 1),
                              ("/updates?queries=0", 1), ("/updates?queries=20", 20),
                              ("/updates?queries=501", 500)]:
                _, rows = get_json(c, "GET", target)
                eq(len(rows), n, "%s row count" % target)
                for row in rows:
                    check_world(row)
                    written[row["id"]] = row["randomNumber"]
        # A row drawn twice keeps its last value; the last /updates wrote last.
        for row in rows:
            written[row["id"]] = row["randomNumber"]
        got = dict(db_rows(tmp, "SELECT id, randomNumber FROM World WHERE id IN (%s)"
                                % ",".join(str(i) for i in rows_ids(rows))))
        for row in rows:
            eq(got[row["id"]], written[row["id"]], "World %d after /updates" % row["id"])


def rows_ids(rows):
    return sorted({r["id"] for r in rows})


# ---- /api/todos ----

@T.case("todos: create, read, list, replace, patch, delete")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        _, lst = get_json(c, "GET", "/api/todos")
        eq(lst, [], "empty list")
        r, t = get_json(c, "POST", "/api/todos", '{"title": "buy milk", "done": false}', 201)
        check(isinstance(t.get("id"), int) and t["id"] > 0, "id in %r" % t)
        tid = t["id"]
        eq(t, {"id": tid, "title": "buy milk", "done": False}, "created")
        eq(r.header("Location"), "/api/todos/%d" % tid, "Location")
        _, t2 = get_json(c, "POST", "/api/todos", '{"title":"caf\\u00e9 \\"x\\"","done":true}',
                         201)
        eq(t2["title"], 'caf\u00e9 "x"', "escaped title round trip")
        _, got = get_json(c, "GET", "/api/todos/%d" % tid)
        eq(got, t, "GET by id")
        _, lst = get_json(c, "GET", "/api/todos")
        eq(lst, [t, t2], "list")
        _, put = get_json(c, "PUT", "/api/todos/%d" % tid, '{"title":"buy oat milk","done":true}')
        eq(put, {"id": tid, "title": "buy oat milk", "done": True}, "PUT")
        _, p = get_json(c, "PATCH", "/api/todos/%d" % tid, '{"done": false}')
        eq(p, {"id": tid, "title": "buy oat milk", "done": False}, "PATCH done")
        _, p = get_json(c, "PATCH", "/api/todos/%d" % tid, '{"title": "x"}')
        eq(p, {"id": tid, "title": "x", "done": False}, "PATCH title")
        _, p = get_json(c, "PATCH", "/api/todos/%d" % tid, '{}')
        eq(p, {"id": tid, "title": "x", "done": False}, "empty PATCH")
        _, g = get_json(c, "GET", "/api/todos/%d" % tid)
        eq(g, p, "GET after PATCH")
        get_json(c, "DELETE", "/api/todos/%d" % tid, status=204)
        _, e = get_json(c, "GET", "/api/todos/%d" % tid, status=404)
        check("error" in e, "404 error body %r" % e)
        _, lst = get_json(c, "GET", "/api/todos")
        eq(lst, [t2], "list after delete")
        # A deleted id is not reused.
        _, t3 = get_json(c, "POST", "/api/todos", '{"title":"n","done":false}', 201)
        check(t3["id"] > t2["id"], "new id %r after %r" % (t3["id"], t2["id"]))


@T.case("todos: unknown or malformed ids -> 404 for GET, PUT, PATCH, DELETE")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        body = '{"title":"a","done":true}'
        for tid in ["12345", "0", "abc", "-1", "99999999999999999999999"]:
            for m, b in [("GET", None), ("PUT", body), ("PATCH", body), ("DELETE", None)]:
                _, e = get_json(c, m, "/api/todos/" + tid, b, 404)
                check("error" in e, "%s %s body %r" % (m, tid, e))


@T.case("todos: malformed JSON -> 400, missing or mistyped fields -> 422 naming the field")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        _, t = get_json(c, "POST", "/api/todos", '{"title":"a","done":false}', 201)
        one = "/api/todos/%d" % t["id"]
        for bad in ['', '{', '{"title": "a", "done": false', '{"title":"a","done":false} x',
                    "{'title':'a'}", '{"title":"a",}', 'nul']:
            for m, target in [("POST", "/api/todos"), ("PUT", one), ("PATCH", one)]:
                _, e = get_json(c, m, target, bad, 400)
                check("error" in e, "400 body %r" % e)
        for m, target, bad, field in [
            ("POST", "/api/todos", '{"done":false}', "title"),
            ("POST", "/api/todos", '{"title":"a"}', "done"),
            ("POST", "/api/todos", '{"title":5,"done":false}', "title"),
            ("POST", "/api/todos", '{"title":null,"done":false}', "title"),
            ("POST", "/api/todos", '{"title":"a","done":"yes"}', "done"),
            ("POST", "/api/todos", '{"title":"a","done":1}', "done"),
            ("PUT", one, '{"title":"a"}', "done"),
            ("PUT", one, '{"done":true}', "title"),
            ("PATCH", one, '{"done":"no"}', "done"),
            ("PATCH", one, '{"title":[]}', "title"),
        ]:
            _, e = get_json(c, m, target, bad, 422)
            eq(e.get("field"), field, "422 field for %s %s" % (m, bad))
        for m, target in [("POST", "/api/todos"), ("PATCH", one)]:
            _, e = get_json(c, m, target, '[1, 2]', 422)
            check("error" in e, "non-object body %r" % e)
        # Nothing was changed by the rejected writes.
        _, g = get_json(c, "GET", one)
        eq(g, t, "todo after rejected writes")
        _, lst = get_json(c, "GET", "/api/todos")
        eq(len(lst), 1, "rows after rejected POSTs")


@T.case("todos: a method the path lacks -> 405 with Allow")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect() as c:
        r = c.request("DELETE", "/api/todos")
        eq(r.status, 405, "DELETE /api/todos")
        allow = {a.strip() for a in r.header("Allow", "").split(",")}
        check({"GET", "POST"} <= allow, "Allow %r" % allow)
        r = c.request("POST", "/api/todos/1", body=b"{}")
        eq(r.status, 405, "POST /api/todos/1")
        allow = {a.strip() for a in r.header("Allow", "").split(",")}
        check({"GET", "PUT", "PATCH", "DELETE"} <= allow, "Allow %r" % allow)


@T.case("concurrent writers on several threads never see a busy database")
def _():
    with tmp_dir() as tmp, demo("--db", db_url(tmp), "--threads", "2", "--workers", "4") as srv:
        def writer(k):
            statuses = []
            with srv.connect(timeout=20) as c:
                for i in range(25):
                    r = c.request("POST", "/api/todos",
                                  body='{"title":"w%d-%d","done":false}' % (k, i), timeout=20)
                    statuses.append(r.status)
                    r = c.request("GET", "/updates?queries=5", timeout=20)
                    statuses.append(r.status)
            return statuses
        results = run_parallel(writer, [(k,) for k in range(8)], timeout=60)
        for res in results:
            if isinstance(res, BaseException):
                raise res
            eq(sorted(set(res)), [200, 201], "statuses")
        with srv.connect() as c:
            _, lst = get_json(c, "GET", "/api/todos?limit=1000")  # pages are 100 by default
            eq(len(lst), 200, "todos written")


@T.case("SQLite: writes that arrive together share one commit (group commit): 32 concurrent "
        "POSTs cost fewer fsyncs than writes, and each is acknowledged and kept")
def _():
    import shutil
    import subprocess
    if shutil.which("strace") is None:
        fail("strace is not installed (scripts/deps.sh test installs it)")
    with tmp_dir() as tmp, demo("--db", "sqlite:%s/x.db" % tmp, "--threads", "2") as srv:
        with srv.connect() as c:
            get_json(c, "POST", "/api/todos", '{"title":"warm","done":false}', 201)
        log = os.path.join(tmp, "trace")
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", log,
                                   "-p", str(srv.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # strace attaches to every thread; no event to wait on
            conns = [srv.connect(timeout=20) for _ in range(32)]
            for k, c in enumerate(conns):
                c.send(build_request("POST", "/api/todos",
                                     body='{"title":"g%d","done":false}' % k))
            for c in conns:
                eq(c.read_response(timeout=20).status, 201, "POST")
                c.close()
        finally:
            tracer.terminate()
            tracer.wait(5)
        syncs = [l for l in open(log).read().splitlines() if "sync(" in l]
        check(0 < len(syncs) < 32, "%d fsyncs for 32 writes" % len(syncs))
        print("# %d fsyncs for 32 writes" % len(syncs))
        with srv.connect() as c:
            _, lst = get_json(c, "GET", "/api/todos?limit=1000")
            eq(len(lst), 33, "todos kept")


@T.case("todos: a page whose rows vary in size comes whole and in order, however its slices "
        "are cut")
def _():
    with tmp_dir() as tmp, db_server(tmp) as srv, srv.connect(timeout=20) as c:
        want = []
        for i in range(150):
            # Three big rows first: the first slice is cut after them, the next asks twice as
            # many rows and gets them all without a cut, and the page must go on after it.
            title = ("big %d " % i) * 4000 if i < 3 or i % 50 == 0 else "small %d" % i
            _, t = get_json(c, "POST", "/api/todos", json.dumps({"title": title, "done": False}),
                            201)
            want.append(t)
        for limit in (150, 100, 37):
            got, after = [], 0
            while True:
                r = c.request("GET", "/api/todos?limit=%d&after=%d" % (limit, after), timeout=20)
                eq(r.status, 200, "page status")
                page = json.loads(r.body)
                got += page
                if not r.header("Link"):
                    break
                after = page[-1]["id"]
            eq([t["id"] for t in got], [t["id"] for t in want], "ids with limit %d" % limit)
            eq(got, want, "rows with limit %d" % limit)


# ---- durability ----

@T.case("data survives a restart")
def _():
    with tmp_dir() as tmp:
        with db_server(tmp) as srv, srv.connect() as c:
            _, t = get_json(c, "POST", "/api/todos", '{"title":"persist me","done":true}', 201)
            _, rows = get_json(c, "GET", "/updates?queries=3")
        with db_server(tmp) as srv, srv.connect() as c:
            _, g = get_json(c, "GET", "/api/todos/%d" % t["id"])
            eq(g, t, "todo after restart")
        for row in rows:
            got = db_rows(tmp, "SELECT randomNumber FROM World WHERE id=%d" % row["id"])[0][0]
            eq(got, row["randomNumber"], "World %d after restart" % row["id"])
        eq(db_rows(tmp, "SELECT count(*) FROM World")[0][0], 10000, "World not seeded twice")


@T.case("a POST acknowledged with 201 survives kill -9 of the server")
def _():
    with tmp_dir() as tmp:
        acked = []
        srv = db_server(tmp)
        try:
            with srv.connect() as c:
                for i in range(10):
                    _, t = get_json(c, "POST", "/api/todos",
                                    '{"title":"ack %d","done":false}' % i, 201)
                    acked.append(t)
                # The last write: SIGKILL the moment its 201 has arrived.
                c.send(build_request("POST", "/api/todos", body='{"title":"last","done":true}'))
                r = c.read_response()
                os.kill(srv.proc.pid, signal.SIGKILL)
                eq(r.status, 201, "last POST")
                acked.append(json.loads(r.body))
            eq(srv.wait_exit(5), -signal.SIGKILL, "killed")
        finally:
            srv.stopped = True
            srv.kill()
        with db_server(tmp) as srv2, srv2.connect() as c:
            for t in acked:
                _, g = get_json(c, "GET", "/api/todos/%d" % t["id"])
                eq(g, t, "todo %d after kill -9" % t["id"])


@T.case("a --db the server cannot use is refused at start with a message")
def _():
    with tmp_dir() as tmp:
        for url, what in [("postgres://127.0.0.1:1/x", "connection refused"),
                          ("postgres://no-such-host.invalid/x", "cannot resolve"),
                          ("postgresql://[::1/x", "invalid"),
                          ("mysql://x", "invalid"),
                          ("sqlite:", "invalid"),
                          ("sqlite:%s/no/such/dir/x.db" % tmp, "x.db"),
                          ("sqlite:%s/x.db?synchronous=sometimes" % tmp, "invalid")]:
            rc, out, err = run_cli([CREST_BIN, "demo", "--port", "0", "--db", url])
            check(rc != 0, "--db %s: exit status %d" % (url, rc))
            check("crest: database" in err and what in err, "--db %s: stderr %r" % (url, err))
        rc, out, err = run_cli([CREST_BIN, "demo", "--port", "0"],
                               env={"DATABASE_URL": "postgres://127.0.0.1:1/x"})
        check(rc != 0 and "postgres://127.0.0.1:1/x" in err, "DATABASE_URL: %d %r" % (rc, err))


if __name__ == "__main__":
    T.main(needs=("crest",))
