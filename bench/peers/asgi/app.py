"""The showdown's raw ASGI peer (bench/peers/SHOWDOWN.md): one ASGI callable, no framework,
served by uvicorn, asyncpg for PostgreSQL. Workloads: plaintext json db queries fortunes updates
todos hash.

Run (asgi.peer.json does): HOST=127.0.0.1 PORT=8080 WORKERS=1 DATABASE_URL=postgres://...
  /usr/bin/python3 -m uvicorn app:app --host 127.0.0.1 --port 8080 --workers 1 \
      --no-access-log --log-level warning
With Debian's python3-uvloop and python3-httptools installed, uvicorn's defaults (--loop auto,
--http auto) pick them, as `pip install uvicorn[standard]` would.

- The pool: asyncpg's defaults (10 connections per process), opened by the lifespan startup.
  asyncpg prepares and caches each statement per connection itself.
- /queries and /updates run their N reads one after the other on one pooled connection (an
  asyncpg connection runs one query at a time); /updates then writes the rows back with one
  executemany() of one UPDATE, ids sorted so that concurrent updates lock rows in the same order
  (no deadlocks); asyncpg runs the batch atomically. An id drawn twice keeps its last number.
- /work/hash: hashlib.pbkdf2_hmac in the event loop's default executor (a ThreadPoolExecutor of
  min(32, CPUs + 4) threads). CPython 3.11's pbkdf2_hmac (OpenSSL's PKCS5_PBKDF2_HMAC) releases
  the GIL for the whole computation, so threads are enough and /healthz keeps answering while
  hashes run; a process pool would only add pickling and a second copy of the interpreter.
- JSON: the standard json module per request, compact separators (what Starlette does).
- Errors are JSON {"error": message, "field": name}, the shape crest's demo answers.
"""

import asyncio
import hashlib
import html
import json
import os
import random
from urllib.parse import parse_qs

import asyncpg

WORLD = "SELECT id, randomNumber FROM World WHERE id = $1"
UPDATE = "UPDATE World SET randomNumber = $1 WHERE id = $2"
FORTUNES = "SELECT id, message FROM Fortune"
EXTRA = "Additional fortune added at request time."
TODO_ADD = "INSERT INTO todo (title, done) VALUES ($1, $2) RETURNING id, title, done"
TODO_GET = "SELECT id, title, done FROM todo WHERE id = $1"
TODO_SET = ("UPDATE todo SET title = COALESCE($1, title), done = COALESCE($2, done) "
            "WHERE id = $3 RETURNING id, title, done")
TODO_DEL = "DELETE FROM todo WHERE id = $1"
TODO_PAGE = "SELECT id, title, done FROM todo WHERE id > $1 ORDER BY id LIMIT $2"
SALT = b"crest-work-hash"
MAX_ID = 1 << 53  # ids beyond this would not survive a JSON number as a double

JSON = b"application/json"
pool = None


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


async def send_body(send, status, body, ctype, headers=()):
    head = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status, obj, headers=()):
    await send_body(send, status, dumps(obj), JSON, headers)


async def send_error(send, status, message, field=None):
    err = {"error": message}
    if field is not None:
        err["field"] = field
    await send_json(send, status, err)


async def read_body(receive):
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


def query(scope):
    return parse_qs(scope["query_string"].decode("latin-1"))


def whole(text, lo, hi):
    """text as an int when it is a plain decimal number in lo..hi, else None."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    n = int(text)
    return n if lo <= n <= hi else None


def queries_param(scope):
    q = query(scope).get("queries", [""])[0]
    if not q.isascii() or not q.isdigit():
        return 1
    return min(max(int(q), 1), 500)


def random_id():
    return random.randint(1, 10000)


# ---- TechEmpower's database tests ----


async def db(scope, receive, send):
    row = await pool.fetchrow(WORLD, random_id())
    await send_json(send, 200, {"id": row[0], "randomNumber": row[1]})


async def read_worlds(conn, n):
    statement = await conn.prepare(WORLD)
    worlds = []
    for _ in range(n):
        row = await statement.fetchrow(random_id())
        worlds.append({"id": row[0], "randomNumber": row[1]})
    return worlds


async def queries(scope, receive, send):
    n = queries_param(scope)
    async with pool.acquire() as conn:
        worlds = await read_worlds(conn, n)
    await send_json(send, 200, worlds)


async def updates(scope, receive, send):
    n = queries_param(scope)
    async with pool.acquire() as conn:
        worlds = await read_worlds(conn, n)
        for w in worlds:
            w["randomNumber"] = random_id()
        # A stable sort by id: a repeated id keeps its order, so its last number wins.
        rows = sorted(((w["randomNumber"], w["id"]) for w in worlds), key=lambda r: r[1])
        await conn.executemany(UPDATE, rows)
    await send_json(send, 200, worlds)


async def fortunes(scope, receive, send):
    rows = [(r[0], r[1]) for r in await pool.fetch(FORTUNES)]
    rows.append((0, EXTRA))
    rows.sort(key=lambda r: r[1])
    parts = ["<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
             "<tr><th>id</th><th>message</th></tr>"]
    for fid, message in rows:
        parts.append("<tr><td>%d</td><td>%s</td></tr>" % (fid, html.escape(message)))
    parts.append("</table></body></html>")
    await send_body(send, 200, "".join(parts).encode(), b"text/html; charset=utf-8")


# ---- /api/todos ----


def todo(row):
    return {"id": row[0], "title": row[1], "done": bool(row[2])}


def todo_fields(body, partial):
    """(fields, None) from a request body, or (None, (status, message, field))."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None, (400, "body is not JSON", None)
    if not isinstance(obj, dict):
        return None, (422, "body must be a JSON object", None)
    fields = {}
    for name in ("title", "done"):
        if name not in obj:
            if partial:
                continue
            return None, (422, name + " is required", name)
        v = obj[name]
        if name == "title" and not (isinstance(v, str) and 1 <= len(v) <= 200):
            return None, (422, "title must be a string of 1 to 200 characters", name)
        if name == "done" and not isinstance(v, bool):
            return None, (422, "done must be a boolean", name)
        fields[name] = v
    return fields, None


async def todos_collection(scope, receive, send):
    if scope["method"] == "POST":
        fields, err = todo_fields(await read_body(receive), False)
        if err:
            return await send_error(send, *err)
        row = await pool.fetchrow(TODO_ADD, fields["title"], int(fields["done"]))
        return await send_json(send, 201, todo(row),
                               [(b"location", b"/api/todos/%d" % row[0])])
    if scope["method"] != "GET":
        return await send_error(send, 405, "method not allowed")
    q = query(scope)
    limit = whole(q.get("limit", ["100"])[0], 1, 1000)
    if limit is None:
        return await send_error(send, 400, "limit must be a whole number from 1 to 1000", "limit")
    after = whole(q.get("after", ["0"])[0], 0, MAX_ID)
    if after is None:
        return await send_error(send, 400, "after must be a whole number", "after")
    rows = await pool.fetch(TODO_PAGE, after, limit + 1)
    headers = []
    if len(rows) > limit:
        rows = rows[:limit]
        link = '</api/todos?limit=%d&after=%d>; rel="next"' % (limit, rows[-1][0])
        headers.append((b"link", link.encode()))
    await send_json(send, 200, [todo(r) for r in rows], headers)


async def todos_item(scope, receive, send, id_text):
    tid = whole(id_text, 1, MAX_ID)
    method = scope["method"]
    if method not in ("GET", "PATCH", "DELETE"):
        return await send_error(send, 405, "method not allowed")
    if tid is None:
        return await send_error(send, 404, "no such todo")
    if method == "GET":
        row = await pool.fetchrow(TODO_GET, tid)
    elif method == "PATCH":
        fields, err = todo_fields(await read_body(receive), True)
        if err:
            return await send_error(send, *err)
        done = fields.get("done")
        row = await pool.fetchrow(TODO_SET, fields.get("title"),
                                  None if done is None else int(done), tid)
    else:
        if await pool.execute(TODO_DEL, tid) == "DELETE 0":
            return await send_error(send, 404, "no such todo")
        return await send_body(send, 204, b"", b"text/plain")
    if row is None:
        return await send_error(send, 404, "no such todo")
    await send_json(send, 200, todo(row))


# ---- /work/hash ----


async def work_hash(scope, receive, send):
    rounds_text = query(scope).get("rounds", ["1000"])[0]
    rounds = whole(rounds_text, 1, 1000000)
    if rounds is None:
        return await send_error(send, 400, "rounds must be a whole number from 1 to 1000000",
                                "rounds")
    body = await read_body(receive)
    loop = asyncio.get_running_loop()
    dk = await loop.run_in_executor(None, hashlib.pbkdf2_hmac, "sha256", body, SALT, rounds, 32)
    await send_json(send, 200, {"algorithm": "PBKDF2-HMAC-SHA256", "rounds": rounds,
                                "salt": SALT.decode(), "length": 32, "digest": dk.hex()})


# ---- routing ----


async def plaintext(scope, receive, send):
    await send_body(send, 200, b"Hello, World!", b"text/plain")


async def json_hello(scope, receive, send):
    await send_json(send, 200, {"message": "Hello, World!"})


async def healthz(scope, receive, send):
    await send_body(send, 200, b"ok\n", b"text/plain")


GETS = {"/plaintext": plaintext, "/json": json_hello, "/db": db, "/queries": queries,
        "/updates": updates, "/fortunes": fortunes, "/healthz": healthz}


async def lifespan(receive, send):
    global pool
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path, method = scope["path"], scope["method"]
    handler = GETS.get(path)
    if handler is not None:
        if method != "GET":
            return await send_error(send, 405, "method not allowed")
        return await handler(scope, receive, send)
    if path == "/api/todos":
        return await todos_collection(scope, receive, send)
    if path.startswith("/api/todos/"):
        return await todos_item(scope, receive, send, path[len("/api/todos/"):])
    if path == "/work/hash":
        if method != "POST":
            return await send_error(send, 405, "method not allowed")
        return await work_hash(scope, receive, send)
    await send_error(send, 404, "not found")
