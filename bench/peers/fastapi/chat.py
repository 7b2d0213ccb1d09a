"""FastAPI twin of the crest chat example (bench/peers/README.md): static files from public/,
POST /messages broadcast to every GET /events stream (Server-Sent Events).
Env: PUBLIC_DIR (../public beside this file). Run:
  python3 -m uvicorn chat:app --app-dir bench/peers/fastapi --host 127.0.0.1 --port $PORT
"""

import asyncio
import json
import os
import time

from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, constr

KEEPALIVE = 15.0
PUBLIC = os.environ.get("PUBLIC_DIR", os.path.join(os.path.dirname(__file__), "..", "public"))
Text = constr(strict=True, min_length=1)

app = FastAPI()
clients = set()  # one queue per open /events stream


class Message(BaseModel):
    room: Text
    name: Text
    text: Text


@app.get("/healthz")
def healthz():
    return Response("ok\n")


@app.get("/events")
async def events():
    async def stream():
        queue = asyncio.Queue()
        clients.add(queue)
        try:
            yield ": connected\n\n"  # the client is subscribed once it has read this
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            clients.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@app.post("/messages", status_code=202)
async def post_message(body: Message):
    msg = {"type": "message", **body.dict(), "ts": int(time.time() * 1000)}
    event = f"event: message\ndata: {json.dumps(msg)}\n\n"
    for queue in clients:
        queue.put_nowait(event)
    return msg


app.mount("/", StaticFiles(directory=PUBLIC, html=True), name="public")
