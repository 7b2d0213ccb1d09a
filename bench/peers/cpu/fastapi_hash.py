"""Python FastAPI peer for bench/cpu.sh: GET /healthz and POST /work/hash?rounds=N, the same
PBKDF2-HMAC-SHA256 JSON as crest. The hash runs in Starlette's thread pool (run_in_threadpool,
what FastAPI does for blocking work); hashlib releases the GIL while OpenSSL computes it.
Run: /usr/bin/python3 -m uvicorn fastapi_hash:app --port PORT (one process)."""

import hashlib

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

SALT = b"crest-work-hash"
app = FastAPI()


@app.get("/healthz")
async def healthz():
    return PlainTextResponse("ok\n")


@app.post("/work/hash")
async def work_hash(request: Request, rounds: int = 1000):
    body = await request.body()
    dk = await run_in_threadpool(hashlib.pbkdf2_hmac, "sha256", body, SALT, rounds, 32)
    return JSONResponse({"algorithm": "PBKDF2-HMAC-SHA256", "rounds": rounds,
                         "salt": SALT.decode(), "length": 32, "digest": dk.hex()})
