'use strict';
// Node.js peer for bench/db.sh: the TechEmpower database tests with the plain `http` module and
// node-postgres (pg, pinned in package.json), one process, one pg.Pool. Same bodies as crest demo:
//   GET /db                 {"id":n,"randomNumber":m}
//   GET /queries?queries=N  N such objects (N clamped to 1..500; missing or not a number: 1)
//   GET /updates?queries=N  N rows read, each given a new random number, written back
//   GET /fortunes           the Fortune table plus one row added at request time, as HTML
// Usage: node server.js PORT DATABASE_URL [pipeline]   (listens on 127.0.0.1)
//
// Two variants, one file (so their bodies cannot drift apart):
// - default: pool.query() for each query, as pg's documentation shows. The N queries of
//   /queries and /updates are started together (Promise.all), so they run on up to `max`
//   pooled connections at once, one query per connection at a time.
// - `pipeline`: the pool's clients are made with `pipeline: true` (pg >= 8.23). pg pipelines
//   the queries sent on one client, not queries of different pool.query() calls, so, as its
//   documentation shows, a request with several queries checks one client out (pool.connect())
//   and sends them all on it at once. /db and /fortunes have a single query: pool.query() as
//   in the default variant (pg's docs: pipelining has no effect there).
// /updates writes the rows back with ONE UPDATE statement (an implicit transaction; unnest() of
// two int arrays), ids sorted so that concurrent updates lock rows in one order (no deadlocks);
// an id drawn twice keeps its last new number, as when the rows are written one by one.
// Prepared statements: every query is a named query, so pg prepares it once per connection.
//
// Changed defaults: none of pg.Pool's (max 10 connections, idleTimeoutMillis 10 s) apart from
// `pipeline` in that variant; none of the http server's. The Server header is set by hand
// (Node sends none); Date is Node's own; Content-Length is set so that no response is chunked.
const http = require('http');
const { Pool } = require('pg');

const port = Number(process.argv[2] || 8080);
const databaseUrl = process.argv[3] || process.env.DATABASE_URL;
const pipeline = process.argv[4] === 'pipeline';

const pool = new Pool({ connectionString: databaseUrl, pipeline });
// An idle pooled client that loses its connection emits 'error' on the pool; without a
// listener that would end the process.
pool.on('error', (err) => console.error('pool:', err.message));

const WORLD = 'SELECT id, randomNumber FROM World WHERE id = $1';
const FORTUNES = 'SELECT id, message FROM Fortune';
const UPDATE =
  'UPDATE World SET randomNumber = v.r FROM ' +
  '(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v WHERE World.id = v.id';
const EXTRA = 'Additional fortune added at request time.';

const randomId = () => 1 + Math.floor(Math.random() * 10000);
const worldQuery = (id) => ({ name: 'world', text: WORLD, values: [id] });
// Unquoted identifiers are folded to lower case by PostgreSQL: the column is `randomnumber`.
const world = (result) => ({ id: result.rows[0].id, randomNumber: result.rows[0].randomnumber });

function queriesParam(url) {
  const q = url.indexOf('?');
  const v = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('queries');
  if (!v || !/^[0-9]+$/.test(v)) return 1;
  const n = Number(v);
  return n < 1 ? 1 : n > 500 ? 500 : n;
}

function updateQuery(worlds) {
  const last = new Map();
  for (const w of worlds) last.set(w.id, w.randomNumber);
  const ids = [...last.keys()].sort((a, b) => a - b);
  return { name: 'update', text: UPDATE, values: [ids, ids.map((id) => last.get(id))] };
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;');
}

function send(res, status, type, body) {
  res.writeHead(status, {
    'Server': 'node',
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function readWorlds(n, client) {
  const db = client || pool;
  const results = await Promise.all(Array.from({ length: n }, () => db.query(worldQuery(randomId()))));
  return results.map(world);
}

async function queries(n) {
  if (!pipeline) return readWorlds(n);
  const client = await pool.connect();
  try {
    return await readWorlds(n, client);
  } finally {
    client.release();
  }
}

async function updates(n) {
  let client = null;
  if (pipeline) client = await pool.connect();
  try {
    const worlds = await readWorlds(n, client);
    for (const w of worlds) w.randomNumber = randomId();
    await (client || pool).query(updateQuery(worlds));
    return worlds;
  } finally {
    if (client) client.release();
  }
}

async function fortunes() {
  const result = await pool.query({ name: 'fortunes', text: FORTUNES });
  const rows = result.rows.map((r) => ({ id: r.id, message: r.message }));
  rows.push({ id: 0, message: EXTRA });
  rows.sort((a, b) => (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
  let html = '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>' +
    '<tr><th>id</th><th>message</th></tr>';
  for (const r of rows) html += `<tr><td>${r.id}</td><td>${escapeHtml(r.message)}</td></tr>`;
  return html + '</table></body></html>';
}

async function handle(req, res) {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (req.method !== 'GET') return send(res, 405, 'text/plain', 'method not allowed');
  switch (path) {
    case '/db':
      return send(res, 200, 'application/json',
        JSON.stringify(world(await pool.query(worldQuery(randomId())))));
    case '/queries':
      return send(res, 200, 'application/json', JSON.stringify(await queries(queriesParam(req.url))));
    case '/updates':
      return send(res, 200, 'application/json', JSON.stringify(await updates(queriesParam(req.url))));
    case '/fortunes':
      return send(res, 200, 'text/html; charset=utf-8', await fortunes());
    default:
      return send(res, 404, 'text/plain', 'not found');
  }
}

http
  .createServer((req, res) => {
    handle(req, res).catch((err) => {
      console.error(req.url, err.message);
      if (!res.headersSent) send(res, 500, 'text/plain', 'database error');
    });
  })
  .listen(port, '127.0.0.1', () =>
    console.log(`node pg${pipeline ? ' (pipeline)' : ''} on 127.0.0.1:${port}`));
