"""Python peer for bench/ws.sh: the same /ws/echo and /ws/chat as crest's demo on the
`websockets` library (Debian python3-websockets), one process, rooms as sets,
websockets.broadcast() for fan-out (the library's recommended way: one serialisation, frames
written without awaiting each client). Compression off, as in crest.

Also the showdown's `websockets` peer (websockets.peer.json, bench/peers/SHOWDOWN.md: workloads
ws and rooms): it listens on HOST (default 127.0.0.1) and PORT, answers GET /healthz with 200
over plain HTTP from process_request (the library's hook for answering before the handshake),
and exits 0 on SIGTERM. One process: a room is a set of this process's connections."""

import asyncio
import json
import os
import signal
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets

rooms = {}


def broadcast(room, obj):
    websockets.broadcast(rooms.get(room, ()), json.dumps(obj, separators=(",", ":")))


async def handler(ws, path):
    url = urlsplit(path)
    if url.path == "/ws/echo":
        async for msg in ws:
            await ws.send(msg)
        return
    if url.path != "/ws/chat":
        return
    q = parse_qs(url.query)
    room = q.get("room", ["lobby"])[0]
    name = q.get("name", ["anonymous"])[0]
    members = rooms.setdefault(room, set())
    members.add(ws)
    broadcast(room, {"type": "join", "room": room, "name": name})
    try:
        async for msg in ws:
            try:
                text = json.loads(msg)["text"]
            except (ValueError, KeyError, TypeError):
                continue
            broadcast(room, {"type": "message", "room": room, "name": name, "text": text,
                             "ts": int(time.time() * 1000)})
    finally:
        members.discard(ws)
        broadcast(room, {"type": "leave", "room": room, "name": name})


async def healthz(path, request_headers):
    """GET /healthz: 200 before any handshake; every other path goes on to the WebSocket."""
    if urlsplit(path).path == "/healthz":
        return HTTPStatus.OK, [("Content-Type", "text/plain")], b"ok\n"
    return None


async def main():
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(handler, os.environ.get("HOST", "127.0.0.1"),
                                int(os.environ.get("PORT", "8080")), process_request=healthz,
                                compression=None, max_size=1 << 20, ping_interval=None,
                                max_queue=None):
        print("listening", flush=True)
        await stop


asyncio.run(main())
