"""The showdown's aiohttp peer (bench/peers/SHOWDOWN.md): aiohttp.web with asyncpg, served by
gunicorn's aiohttp worker (aiohttp's documented deployment). Workloads: plaintext json db queries
fortunes updates todos hash ws, and rooms (aiohttp-rooms.peer.json: one process only).

Run (aiohttp.peer.json does): DATABASE_URL=postgres://... /usr/bin/python3 -m gunicorn
  app:make_app --bind 127.0.0.1:8080 --worker-class aiohttp.GunicornUVLoopWebWorker --workers 1

- The pool: asyncpg's defaults (10 connections per worker process), opened by a cleanup context.
- /queries and /updates: N reads one after the other on one pooled connection; /updates writes
  them back with one executemany(), ids sorted so that concurrent updates lock rows in the same
  order; an id drawn twice keeps its last number.
- /work/hash: hashlib.pbkdf2_hmac in the loop's default ThreadPoolExecutor (run_in_executor);
  CPython 3.11 releases the GIL for the whole PBKDF2 computation.
- WebSockets: aiohttp's WebSocketResponse, compression off (as crest), no heartbeat (its
  default). A room is a set of the process's sockets: rooms do not span gunicorn workers, hence
  the separate peer with "workers_max": 1.
- JSON: web.json_response (json.dumps per request). Errors are {"error": message, "field":
  name}, the shape crest's demo answers.
"""

import asyncio
import hashlib
import html
import json
import os
import random
import time

import asyncpg
from aiohttp import WSMsgType, web

WORLD = "SELECT id, randomNumber FROM World WHERE id = $1"
UPDATE = "UPDATE World SET randomNumber = $1 WHERE id = $2"
FORTUNES = "SELECT id, message FROM Fortune"
EXTRA = "Additional fortune added at request time."
TODO_COLUMNS = "id, title, done"
SALT = b"crest-work-hash"
MAX_ID = 1 << 53  # ids beyond this would not survive a JSON number as a double

routes = web.RouteTableDef()


def error(status, message, field=None):
    body = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def whole(text, lo, hi):
    """text as an int when it is a plain decimal number in lo..hi, else None."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    n = int(text)
    return n if lo <= n <= hi else None


@routes.get("/healthz")
async def healthz(request):
    return web.Response(text="ok\n")


@routes.get("/plaintext")
async def plaintext(request):
    return web.Response(text="Hello, World!")


@routes.get("/json")
async def hello_json(request):
    return web.json_response({"message": "Hello, World!"})


def random_id():
    return random.randint(1, 10000)


def queries_param(request):
    q = request.query.get("queries", "")
    if not q.isascii() or not q.isdigit():
        return 1
    return min(max(int(q), 1), 500)


@routes.get("/db")
async def single_query(request):
    row = await request.app["pool"].fetchrow(WORLD, random_id())
    return web.json_response({"id": row[0], "randomNumber": row[1]})


async def read_worlds(conn, n):
    statement = await conn.prepare(WORLD)
    worlds = []
    for _ in range(n):
        row = await statement.fetchrow(random_id())
        worlds.append({"id": row[0], "randomNumber": row[1]})
    return worlds


@routes.get("/queries")
async def multiple_queries(request):
    async with request.app["pool"].acquire() as conn:
        worlds = await read_worlds(conn, queries_param(request))
    return web.json_response(worlds)


@routes.get("/updates")
async def updates(request):
    async with request.app["pool"].acquire() as conn:
        worlds = await read_worlds(conn, queries_param(request))
        for w in worlds:
            w["randomNumber"] = random_id()
        # A stable sort by id: a repeated id keeps its order, so its last number wins.
        rows = sorted(((w["randomNumber"], w["id"]) for w in worlds), key=lambda r: r[1])
        await conn.executemany(UPDATE, rows)
    return web.json_response(worlds)


@routes.get("/fortunes")
async def fortunes(request):
    rows = [(r[0], r[1]) for r in await request.app["pool"].fetch(FORTUNES)]
    rows.append((0, EXTRA))
    rows.sort(key=lambda r: r[1])
    parts = ["<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
             "<tr><th>id</th><th>message</th></tr>"]
    for fid, message in rows:
        parts.append("<tr><td>%d</td><td>%s</td></tr>" % (fid, html.escape(message)))
    parts.append("</table></body></html>")
    return web.Response(text="".join(parts), content_type="text/html", charset="utf-8")


# ---- /api/todos ----


def todo(row):
    return {"id": row[0], "title": row[1], "done": bool(row[2])}


async def todo_fields(request, partial):
    """(fields, None) from the request's body, or (None, an error response)."""
    try:
        obj = json.loads(await request.read())
    except ValueError:
        return None, error(400, "body is not JSON")
    if not isinstance(obj, dict):
        return None, error(422, "body must be a JSON object")
    fields = {}
    for name in ("title", "done"):
        if name not in obj:
            if partial:
                continue
            return None, error(422, name + " is required", name)
        v = obj[name]
        if name == "title" and not (isinstance(v, str) and 1 <= len(v) <= 200):
            return None, error(422, "title must be a string of 1 to 200 characters", name)
        if name == "done" and not isinstance(v, bool):
            return None, error(422, "done must be a boolean", name)
        fields[name] = v
    return fields, None


@routes.post("/api/todos")
async def add_todo(request):
    fields, bad = await todo_fields(request, False)
    if bad is not None:
        return bad
    row = await request.app["pool"].fetchrow(
        "INSERT INTO todo (title, done) VALUES ($1, $2) RETURNING " + TODO_COLUMNS,
        fields["title"], int(fields["done"]))
    return web.json_response(todo(row), status=201, headers={"Location": "/api/todos/%d" % row[0]})


@routes.get("/api/todos")
async def list_todos(request):
    limit = whole(request.query.get("limit", "100"), 1, 1000)
    if limit is None:
        return error(400, "limit must be a whole number from 1 to 1000", "limit")
    after = whole(request.query.get("after", "0"), 0, MAX_ID)
    if after is None:
        return error(400, "after must be a whole number", "after")
    rows = await request.app["pool"].fetch(
        "SELECT " + TODO_COLUMNS + " FROM todo WHERE id > $1 ORDER BY id LIMIT $2", after,
        limit + 1)
    headers = {}
    if len(rows) > limit:
        rows = rows[:limit]
        headers["Link"] = '</api/todos?limit=%d&after=%d>; rel="next"' % (limit, rows[-1][0])
    return web.json_response([todo(r) for r in rows], headers=headers)


def todo_id(request):
    return whole(request.match_info["id"], 1, MAX_ID)


@routes.get("/api/todos/{id}")
async def get_todo(request):
    tid = todo_id(request)
    row = tid and await request.app["pool"].fetchrow(
        "SELECT " + TODO_COLUMNS + " FROM todo WHERE id = $1", tid)
    return web.json_response(todo(row)) if row else error(404, "no such todo")


@routes.patch("/api/todos/{id}")
async def patch_todo(request):
    tid = todo_id(request)
    if tid is None:
        return error(404, "no such todo")
    fields, bad = await todo_fields(request, True)
    if bad is not None:
        return bad
    done = fields.get("done")
    row = await request.app["pool"].fetchrow(
        "UPDATE todo SET title = COALESCE($1, title), done = COALESCE($2, done) WHERE id = $3 "
        "RETURNING " + TODO_COLUMNS, fields.get("title"), None if done is None else int(done), tid)
    return web.json_response(todo(row)) if row else error(404, "no such todo")


@routes.delete("/api/todos/{id}")
async def delete_todo(request):
    tid = todo_id(request)
    if tid is None or await request.app["pool"].execute(
            "DELETE FROM todo WHERE id = $1", tid) == "DELETE 0":
        return error(404, "no such todo")
    return web.Response(status=204)


# ---- /work/hash ----


@routes.post("/work/hash")
async def work_hash(request):
    rounds = whole(request.query.get("rounds", "1000"), 1, 1000000)
    if rounds is None:
        return error(400, "rounds must be a whole number from 1 to 1000000", "rounds")
    body = await request.read()
    loop = asyncio.get_running_loop()
    dk = await loop.run_in_executor(None, hashlib.pbkdf2_hmac, "sha256", body, SALT, rounds, 32)
    return web.json_response({"algorithm": "PBKDF2-HMAC-SHA256", "rounds": rounds,
                              "salt": SALT.decode(), "length": 32, "digest": dk.hex()})


# ---- WebSockets ----


@routes.get("/ws/echo")
async def ws_echo(request):
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def broadcast(members, obj):
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ws in list(members):  # a copy: members may join or leave while a send waits
        try:
            await ws.send_str(data)
        except ConnectionResetError:
            pass  # that member is leaving; its own handler removes it


@routes.get("/ws/chat")
async def ws_chat(request):
    room = request.query.get("room", "lobby")
    name = request.query.get("name", "anonymous")
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    members = request.app["rooms"].setdefault(room, set())
    members.add(ws)
    await broadcast(members, {"type": "join", "room": room, "name": name})
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                text = json.loads(msg.data)["text"]
            except (ValueError, KeyError, TypeError):
                continue
            await broadcast(members, {"type": "message", "room": room, "name": name,
                                      "text": text, "ts": int(time.time() * 1000)})
    finally:
        members.discard(ws)
        if members:
            await broadcast(members, {"type": "leave", "room": room, "name": name})
        else:
            request.app["rooms"].pop(room, None)
    return ws


async def database(app):
    app["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"])
    yield
    await app["pool"].close()


async def make_app():
    app = web.Application()
    app["rooms"] = {}
    app.add_routes(routes)
    if "DATABASE_URL" in os.environ:  # the rooms peer runs without a database
        app.cleanup_ctx.append(database)
    return app
