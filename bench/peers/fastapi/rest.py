"""FastAPI twin of the crest REST example: the /api/todos resource of bench/peers/README.md with
validation (pydantic), bearer-token auth on writes, CORS and SQLite (sqlite3).
Env: DB_PATH (todos.db), API_TOKEN (secret), CORS_ORIGIN. Run:
  python3 -m uvicorn rest:app --app-dir bench/peers/fastapi --host 127.0.0.1 --port $PORT
"""

import os
import secrets
import sqlite3
from typing import List, Optional

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, StrictBool, constr, validator

TOKEN = os.environ.get("API_TOKEN", "secret")
db = sqlite3.connect(os.environ.get("DB_PATH", "todos.db"), check_same_thread=False,
                     isolation_level=None)
db.row_factory = sqlite3.Row
db.execute("PRAGMA journal_mode = WAL")
db.execute("CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY AUTOINCREMENT, "
           "title TEXT NOT NULL, done INTEGER NOT NULL)")

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
app.add_middleware(CORSMiddleware, allow_origins=[os.environ.get("CORS_ORIGIN", "")],
                   allow_methods=["*"], allow_headers=["*"])
bearer = HTTPBearer(auto_error=False)


def auth(cred: Optional[HTTPAuthorizationCredentials] = Depends(bearer)):
    if cred is None or not secrets.compare_digest(cred.credentials, TOKEN):
        raise HTTPException(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


@app.exception_handler(RequestValidationError)
async def malformed_json(request: Request, exc: RequestValidationError):
    """Malformed JSON is a 400; every other validation error keeps FastAPI's 422."""
    if any(e["type"] == "value_error.jsondecode" for e in exc.errors()):
        return JSONResponse({"detail": "malformed JSON"}, status_code=400)
    return await request_validation_exception_handler(request, exc)


def todo(row) -> Todo:
    if row is None:
        raise HTTPException(404, "no such todo")
    return Todo(id=row["id"], title=row["title"], done=bool(row["done"]))


@app.get("/healthz")
def healthz():
    return Response("ok\n")


@app.get("/api/todos", response_model=List[Todo])
def list_todos(response: Response, limit: int = Query(100, ge=1, le=1000),
               after: int = Query(0, ge=0)):
    rows = db.execute("SELECT * FROM todos WHERE id > ? ORDER BY id LIMIT ?",
                      (after, limit + 1)).fetchall()
    if len(rows) > limit:
        rows = rows[:limit]
        response.headers["Link"] = f'</api/todos?limit={limit}&after={rows[-1]["id"]}>; rel="next"'
    return [todo(r) for r in rows]


@app.post("/api/todos", status_code=201, response_model=Todo, dependencies=[Depends(auth)])
def add_todo(body: TodoIn, response: Response):
    row = db.execute("INSERT INTO todos (title, done) VALUES (?, ?) RETURNING *",
                     (body.title, body.done)).fetchone()
    response.headers["Location"] = f"/api/todos/{row['id']}"
    return todo(row)


@app.get("/api/todos/{id}", response_model=Todo)
def get_todo(id: int):
    return todo(db.execute("SELECT * FROM todos WHERE id = ?", (id,)).fetchone())


def save(id: int, changes: dict) -> Todo:
    new = {**get_todo(id).dict(), **changes}
    return todo(db.execute("UPDATE todos SET title = ?, done = ? WHERE id = ? RETURNING *",
                           (new["title"], new["done"], id)).fetchone())


@app.put("/api/todos/{id}", response_model=Todo, dependencies=[Depends(auth)])
def put_todo(id: int, body: TodoIn):
    return save(id, body.dict())


@app.patch("/api/todos/{id}", response_model=Todo, dependencies=[Depends(auth)])
def patch_todo(id: int, body: TodoPatch):
    return save(id, body.dict(exclude_unset=True))


@app.delete("/api/todos/{id}", status_code=204, dependencies=[Depends(auth)])
def delete_todo(id: int):
    if db.execute("DELETE FROM todos WHERE id = ?", (id,)).rowcount == 0:
        raise HTTPException(404, "no such todo")
    return Response(status_code=204)
