"""The showdown's FastAPI peer (bench/peers/SHOWDOWN.md): FastAPI with pydantic models for the
todos, asyncpg for PostgreSQL, served by uvicorn. Workloads: plaintext json db queries fortunes
updates todos hash, and rooms: the chat WebSocket /ws/chat?room=R&name=N, a FastAPI WebSocket
route (Starlette's), which fastapi-rooms.peer.json measures in one process. (rest.py, chat.py
and downstream.py beside it are the examples' twins.)

Run (fastapi.peer.json does): DATABASE_URL=postgres://... /usr/bin/python3 -m uvicorn
  showdown:app --host 127.0.0.1 --port 8080 --workers 1 --no-access-log --log-level warning
With Debian's python3-uvloop and python3-httptools installed, uvicorn's defaults pick them.

- The pool: asyncpg's defaults (10 connections per process), opened at startup.
- /queries and /updates: N reads one after the other on one pooled connection; /updates writes
  them back with one executemany(), ids sorted so that concurrent updates lock rows in the same
  order. `queries` is read as text: FastAPI would answer 422 to a
  non-numeric value where TechEmpower asks for 1. `rounds` likewise (the contract wants 400).
- /work/hash: hashlib.pbkdf2_hmac through Starlette's run_in_threadpool (anyio's worker threads,
  what FastAPI itself uses for blocking work); CPython 3.11 releases the GIL while PBKDF2 runs.
- /ws/chat: a room is a set of this process's WebSockets, so rooms do not span uvicorn workers
  (that would take a broker, such as Redis pub/sub): fastapi-rooms.peer.json runs one worker.
  A message is sent to the members one after the other (await send_text each), in the sender's
  own handler, so each sender's messages keep their order. uvicorn serves WebSockets with Debian's
  python3-websockets (--ws websockets).
- Errors keep FastAPI's {"detail": ...} shape; malformed JSON is turned into a 400 (FastAPI
  answers 422 by default). Path ids are typed: /api/todos/abc is FastAPI's 422, not a 404.
"""

import hashlib
import html
import json
import os
import random
import time
from typing import List, Optional

import asyncpg
from fastapi import FastAPI, HTTPException, Query, Request, Response, WebSocket
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, StrictBool, constr, validator
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState
from websockets.exceptions import ConnectionClosed

WORLD = "SELECT id, randomNumber FROM World WHERE id = $1"
UPDATE = "UPDATE World SET randomNumber = $1 WHERE id = $2"
FORTUNES = "SELECT id, message FROM Fortune"
EXTRA = "Additional fortune added at request time."
SALT = b"crest-work-hash"

Title = constr(strict=True, min_length=1, max_length=200)


class TodoIn(BaseModel):
    title: Title
    done: StrictBool


class TodoPatch(BaseModel):
    title: Optional[Title]
    done: Optional[StrictBool]

    @validator("*", pre=True)
    def not_null(cls, v):
        if v is None:
            raise ValueError("must not be null")
        return v


class Todo(TodoIn):
    id: int


app = FastAPI()
pool = None
rooms = {}  # room name -> the set of its members' WebSockets (this process's only)


@app.on_event("startup")
async def open_pool():
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])


@app.on_event("shutdown")
async def close_pool():
    await pool.close()


@app.exception_handler(RequestValidationError)
async def malformed_json(request: Request, exc: RequestValidationError):
    """Malformed JSON is a 400; every other validation error keeps FastAPI's 422."""
    if any(e["type"] == "value_error.jsondecode" for e in exc.errors()):
        return JSONResponse({"detail": "malformed JSON"}, status_code=400)
    return await request_validation_exception_handler(request, exc)


@app.get("/healthz")
async def healthz():
    return PlainTextResponse("ok\n")


@app.get("/plaintext")
async def plaintext():
    return PlainTextResponse("Hello, World!")


@app.get("/json")
async def hello_json():
    return {"message": "Hello, World!"}


def random_id():
    return random.randint(1, 10000)


def queries_param(queries: Optional[str]) -> int:
    if not queries or not queries.isascii() or not queries.isdigit():
        return 1
    return min(max(int(queries), 1), 500)


@app.get("/db")
async def single_query():
    row = await pool.fetchrow(WORLD, random_id())
    return {"id": row[0], "randomNumber": row[1]}


async def read_worlds(conn, n):
    statement = await conn.prepare(WORLD)
    worlds = []
    for _ in range(n):
        row = await statement.fetchrow(random_id())
        worlds.append({"id": row[0], "randomNumber": row[1]})
    return worlds


@app.get("/queries")
async def multiple_queries(queries: Optional[str] = None):
    async with pool.acquire() as conn:
        return await read_worlds(conn, queries_param(queries))


@app.get("/updates")
async def updates(queries: Optional[str] = None):
    async with pool.acquire() as conn:
        worlds = await read_worlds(conn, queries_param(queries))
        for w in worlds:
            w["randomNumber"] = random_id()
        # A stable sort by id: a repeated id keeps its order, so its last number wins.
        rows = sorted(((w["randomNumber"], w["id"]) for w in worlds), key=lambda r: r[1])
        await conn.executemany(UPDATE, rows)
    return worlds


@app.get("/fortunes", response_class=HTMLResponse)
async def fortunes():
    rows = [(r[0], r[1]) for r in await pool.fetch(FORTUNES)]
    rows.append((0, EXTRA))
    rows.sort(key=lambda r: r[1])
    parts = ["<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
             "<tr><th>id</th><th>message</th></tr>"]
    for fid, message in rows:
        parts.append("<tr><td>%d</td><td>%s</td></tr>" % (fid, html.escape(message)))
    parts.append("</table></body></html>")
    return HTMLResponse("".join(parts))


# ---- /api/todos ----


def todo(row) -> Todo:
    if row is None:
        raise HTTPException(404, "no such todo")
    return Todo(id=row["id"], title=row["title"], done=bool(row["done"]))


@app.get("/api/todos", response_model=List[Todo])
async def list_todos(response: Response, limit: int = Query(100, ge=1, le=1000),
                     after: int = Query(0, ge=0)):
    rows = await pool.fetch("SELECT id, title, done FROM todo WHERE id > $1 ORDER BY id LIMIT $2",
                            after, limit + 1)
    if len(rows) > limit:
        rows = rows[:limit]
        response.headers["Link"] = f'</api/todos?limit={limit}&after={rows[-1]["id"]}>; rel="next"'
    return [todo(r) for r in rows]


@app.post("/api/todos", status_code=201, response_model=Todo)
async def add_todo(body: TodoIn, response: Response):
    row = await pool.fetchrow("INSERT INTO todo (title, done) VALUES ($1, $2) "
                              "RETURNING id, title, done", body.title, int(body.done))
    response.headers["Location"] = f"/api/todos/{row['id']}"
    return todo(row)


@app.get("/api/todos/{id}", response_model=Todo)
async def get_todo(id: int):
    return todo(await pool.fetchrow("SELECT id, title, done FROM todo WHERE id = $1", id))


@app.patch("/api/todos/{id}", response_model=Todo)
async def patch_todo(id: int, body: TodoPatch):
    changes = body.dict(exclude_unset=True)
    done = changes.get("done")
    return todo(await pool.fetchrow(
        "UPDATE todo SET title = COALESCE($1, title), done = COALESCE($2, done) WHERE id = $3 "
        "RETURNING id, title, done", changes.get("title"), None if done is None else int(done), id))


@app.delete("/api/todos/{id}", status_code=204)
async def delete_todo(id: int):
    if await pool.execute("DELETE FROM todo WHERE id = $1", id) == "DELETE 0":
        raise HTTPException(404, "no such todo")
    return Response(status_code=204)


# ---- /work/hash ----


@app.post("/work/hash")
async def work_hash(request: Request, rounds: str = "1000"):
    if not (rounds.isascii() and rounds.isdigit() and 1 <= int(rounds) <= 1000000):
        raise HTTPException(400, "rounds must be a whole number from 1 to 1000000")
    n = int(rounds)
    body = await request.body()
    dk = await run_in_threadpool(hashlib.pbkdf2_hmac, "sha256", body, SALT, n, 32)
    return {"algorithm": "PBKDF2-HMAC-SHA256", "rounds": n, "salt": SALT.decode(), "length": 32,
            "digest": dk.hex()}


# ---- /ws/chat ----


async def broadcast(members, event):
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    for ws in list(members):  # a copy: members may join or leave while a send waits
        if ws.client_state is not WebSocketState.CONNECTED:
            continue
        try:
            await ws.send_text(data)
        except ConnectionClosed:
            pass  # that member is leaving; its own handler removes it


@app.websocket("/ws/chat")
async def chat(websocket: WebSocket, room: str = "lobby", name: str = "anonymous"):
    await websocket.accept()
    members = rooms.setdefault(room, set())
    members.add(websocket)
    await broadcast(members, {"type": "join", "room": room, "name": name})
    try:
        while True:
            # receive(), not iter_text(): a binary message has no "text", which would end the
            # handler with a KeyError; here it is ignored, as crest's demo does.
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                text = json.loads(message["text"])["text"]
            except (ValueError, KeyError, TypeError):
                continue  # not a {"text": ...} object: ignored, as crest's demo does
            if isinstance(text, str):
                await broadcast(members, {"type": "message", "room": room, "name": name,
                                          "text": text, "ts": int(time.time() * 1000)})
    finally:
        members.discard(websocket)
        if members:
            await broadcast(members, {"type": "leave", "room": room, "name": name})
        else:
            rooms.pop(room, None)
