// Node.js peer for bench/cpu.sh: GET /healthz and POST /work/hash?rounds=N (PBKDF2-HMAC-SHA256
// of the body, salt "crest-work-hash", 32 bytes, hex in the same JSON as crest). One process.
// Usage: node node_hash.js PORT MODE
//   inline   crypto.pbkdf2Sync in the request handler (blocks the event loop for the hash)
//   workers  a worker_threads pool, one per CPU, fed from a queue (what Node recommends for
//            CPU-bound work)
'use strict';
const http = require('http');
const crypto = require('crypto');
const os = require('os');
const { Worker, isMainThread, parentPort } = require('worker_threads');

const SALT = 'crest-work-hash';

if (!isMainThread) {
    parentPort.on('message', ({ id, body, rounds }) => {
        const dk = crypto.pbkdf2Sync(Buffer.from(body), SALT, rounds, 32, 'sha256');
        parentPort.postMessage({ id, hex: dk.toString('hex') });
    });
    return;
}

const port = Number(process.argv[2] || 8080);
const mode = process.argv[3] || 'inline';

function reply(res, rounds, hex) {
    const body = JSON.stringify({ algorithm: 'PBKDF2-HMAC-SHA256', rounds, salt: SALT,
                                  length: 32, digest: hex });
    res.writeHead(200, { 'Content-Type': 'application/json',
                         'Content-Length': Buffer.byteLength(body) });
    res.end(body);
}

let pool = null;
if (mode === 'workers') {
    const n = (os.availableParallelism ? os.availableParallelism() : os.cpus().length);
    const idle = [], queue = [], pending = new Map();
    let nextId = 1;
    const dispatch = () => {
        while (idle.length && queue.length) {
            const w = idle.pop(), job = queue.shift();
            pending.set(job.id, job);
            w.postMessage({ id: job.id, body: job.body, rounds: job.rounds });
        }
    };
    for (let i = 0; i < n; i++) {
        const w = new Worker(__filename);
        w.on('message', ({ id, hex }) => {
            const job = pending.get(id);
            pending.delete(id);
            idle.push(w);
            dispatch();
            job.done(hex);
        });
        idle.push(w);
    }
    pool = (body, rounds, done) => {
        queue.push({ id: nextId++, body, rounds, done });
        dispatch();
    };
}

const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 3 });
        res.end('ok\n');
        return;
    }
    if (req.method === 'POST' && url.pathname === '/work/hash') {
        const rounds = Number(url.searchParams.get('rounds') || 1000);
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const body = Buffer.concat(chunks);
            if (pool) {
                pool(body, rounds, (hex) => reply(res, rounds, hex));
            } else {
                reply(res, rounds, crypto.pbkdf2Sync(body, SALT, rounds, 32, 'sha256').toString('hex'));
            }
        });
        return;
    }
    res.writeHead(404, { 'Content-Length': 0 });
    res.end();
});
server.keepAliveTimeout = 120000; // changed from 5 s, as for every peer
server.listen(port, '127.0.0.1');
