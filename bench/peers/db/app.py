"""FastAPI peer for bench/db.sh: the TechEmpower database tests with asyncpg, one uvicorn worker,
one asyncpg pool. Same bodies as crest demo:
  GET /db                 {"id":n,"randomNumber":m}
  GET /queries?queries=N  N such objects (N clamped to 1..500; missing or not a number: 1)
  GET /updates?queries=N  N rows read, each given a new random number, written back
  GET /fortunes           the Fortune table plus one row added at request time, as HTML

Run: DATABASE_URL=postgres://... /usr/bin/python3 -m uvicorn app:app --app-dir bench/peers/db \
         --host 127.0.0.1 --port PORT --workers 1 --no-access-log --log-level warning
(bench/db.sh does; with Debian's python3-uvloop and python3-httptools installed, uvicorn's
defaults --loop auto and --http auto pick them, as `uvicorn[standard]` would.)

The N queries of /queries and /updates run one after the other on one pooled connection: an
asyncpg connection runs one query at a time, and that is how its documentation uses it.
/updates writes the rows back with executemany() of one UPDATE, ids sorted so that concurrent
updates lock rows in one order (no deadlocks); asyncpg sends the batch at once and applies it
atomically (one implicit transaction). An id drawn twice keeps its last new number, as when the
rows are written one by one.

Changed defaults: none of asyncpg's pool (min_size 10, max_size 10; statements are prepared
and cached per connection by asyncpg itself). uvicorn: --no-access-log (crest writes no
per-request log; uvicorn's docs advise it for performance) and --log-level warning. `queries` is
read as text: FastAPI would answer 422 to a non-numeric value where TechEmpower asks for 1.
JSON goes through FastAPI's default JSONResponse (json.dumps per request, compact separators).
uvicorn sends its own Server and Date headers; Starlette's responses set Content-Length.
"""

import html
import os
import random

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

WORLD = "SELECT id, randomNumber FROM World WHERE id = $1"
FORTUNES = "SELECT id, message FROM Fortune"
UPDATE = "UPDATE World SET randomNumber = $1 WHERE id = $2"
EXTRA = "Additional fortune added at request time."

app = FastAPI()
pool = None


@app.on_event("startup")
async def open_pool():
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])


@app.on_event("shutdown")
async def close_pool():
    await pool.close()


def random_id():
    return random.randint(1, 10000)


def queries_param(queries):
    if not queries or not queries.isdigit() or not queries.isascii():
        return 1
    return min(max(int(queries), 1), 500)


@app.get("/db")
async def single_query():
    row = await pool.fetchrow(WORLD, random_id())
    return {"id": row[0], "randomNumber": row[1]}


@app.get("/queries")
async def multiple_queries(queries: str = None):
    n = queries_param(queries)
    async with pool.acquire() as conn:
        statement = await conn.prepare(WORLD)
        worlds = []
        for _ in range(n):
            row = await statement.fetchrow(random_id())
            worlds.append({"id": row[0], "randomNumber": row[1]})
    return worlds


@app.get("/updates")
async def updates(queries: str = None):
    n = queries_param(queries)
    async with pool.acquire() as conn:
        statement = await conn.prepare(WORLD)
        worlds = []
        for _ in range(n):
            row = await statement.fetchrow(random_id())
            worlds.append({"id": row[0], "randomNumber": random_id()})
        # Sorted by id (a stable sort: a repeated id keeps its order, so its last number wins).
        rows = sorted(((w["randomNumber"], w["id"]) for w in worlds), key=lambda r: r[1])
        await conn.executemany(UPDATE, rows)
    return worlds


@app.get("/fortunes", response_class=HTMLResponse)
async def fortunes():
    rows = [(r[0], r[1]) for r in await pool.fetch(FORTUNES)]
    rows.append((0, EXTRA))
    rows.sort(key=lambda r: r[1])
    parts = [
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        "<tr><th>id</th><th>message</th></tr>"
    ]
    for fid, message in rows:
        parts.append("<tr><td>%d</td><td>%s</td></tr>" % (fid, html.escape(message)))
    parts.append("</table></body></html>")
    return HTMLResponse("".join(parts))
