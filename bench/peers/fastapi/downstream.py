"""FastAPI twin of the crest downstream example (bench/peers/README.md): GET /combined calls
UPSTREAM_A and UPSTREAM_B in parallel (httpx), each with a 200 ms timeout, and merges their JSON.
Env: UPSTREAM_A, UPSTREAM_B. Run:
  python3 -m uvicorn downstream:app --app-dir bench/peers/fastapi --host 127.0.0.1 --port $PORT
"""

import asyncio
import os

import httpx
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

TIMEOUT = 0.2
UPSTREAMS = {"a": os.environ.get("UPSTREAM_A"), "b": os.environ.get("UPSTREAM_B")}

app = FastAPI()
client = httpx.AsyncClient()


async def call(url):
    """One upstream's JSON; raises on a timeout (asyncio.TimeoutError), a failed connection, a
    non-2xx status or a body that is not JSON."""
    res = await asyncio.wait_for(client.get(url), TIMEOUT)
    res.raise_for_status()
    return res.json()


@app.get("/healthz")
def healthz():
    return Response("ok\n")


@app.get("/combined")
async def combined():
    results = await asyncio.gather(*(call(u) for u in UPSTREAMS.values()), return_exceptions=True)
    body = {"timed_out": []}
    for name, r in zip(UPSTREAMS, results):
        body[name] = None if isinstance(r, Exception) else r
        if isinstance(r, asyncio.TimeoutError):
            body["timed_out"].append(name)
    ok = any(not isinstance(r, Exception) for r in results)
    return JSONResponse(body, status_code=200 if ok else 504 if body["timed_out"] else 502)
