'use strict';
// The showdown's `express` peer (bench/peers/SHOWDOWN.md): Express 4 and node-postgres (`pg`),
// both pinned in package.json. Serves plaintext, json, db, queries, fortunes, updates, todos and
// hash, and GET /healthz. (rest.js, chat.js and downstream.js are the twins of crest's examples.)
// Env: HOST, PORT, WORKERS (1: one process; more: Node's `cluster` module forks that many
// processes sharing the port, as PM2's cluster mode does), DATABASE_URL; NODE_ENV=production
// is set by the peer's start command, as Express's production guide asks.
//
// Written as Express's docs show: routers and middleware, express.json() for the todo bodies,
// express.raw() for the hash's, res.json() (JSON.stringify) for answers, an error-handling
// middleware at the end; no request logging. Express 4 does not catch a rejected promise from an
// async handler, so each one is wrapped to pass its error to next().
// Database: one pg.Pool per process with its defaults (at most 10 connections); named queries,
// which pg prepares once per connection. /updates reads the rows, then writes them back with ONE
// UPDATE statement (an implicit transaction; unnest() of two int arrays), the ids sorted so that
// concurrent updates lock rows in one order (no deadlocks).
// hash: crypto.pbkdf2 with a callback, on libuv's threadpool (4 threads, its default), off the
// event loop: Node's documented way for its built-in CPU-heavy calls.
//
// Changed defaults, and why:
// - keepAliveTimeout 120 s (Node's 5 s): as every Node peer, idle connections stay open through
//   a run; headersTimeout 121 s (Node's 60 s) stays above it, as Node's docs advise.
// - x-powered-by off: Express's security best practices ask for it.
const cluster = require('cluster');
const crypto = require('crypto');
const express = require('express');
const { Pool } = require('pg');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const WORKERS = Math.max(1, Number(process.env.WORKERS || 1));

const SALT = 'crest-work-hash';
const EXTRA = 'Additional fortune added at request time.';
const SQL = {
  world: 'SELECT id, randomNumber FROM World WHERE id = $1',
  update:
    'UPDATE World SET randomNumber = v.r FROM ' +
    '(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v WHERE World.id = v.id',
  fortunes: 'SELECT id, message FROM Fortune',
  page: 'SELECT id, title, done FROM todo WHERE id > $1 ORDER BY id LIMIT $2',
  get: 'SELECT id, title, done FROM todo WHERE id = $1',
  add: 'INSERT INTO todo (title, done) VALUES ($1, $2) RETURNING id, title, done',
  set:
    'UPDATE todo SET title = coalesce($1, title), done = coalesce($2, done) WHERE id = $3 ' +
    'RETURNING id, title, done',
  del: 'DELETE FROM todo WHERE id = $1',
};

const pool = new Pool({ connectionString: process.env.DATABASE_URL });
// An idle pooled client that loses its connection emits 'error' on the pool; without a listener
// that would end the process.
pool.on('error', (err) => console.error('pool:', err.message));

const randomId = () => 1 + Math.floor(Math.random() * 10000);
// Unquoted identifiers are folded to lower case by PostgreSQL: the column is `randomnumber`.
const readWorld = async () => {
  const { rows } = await pool.query({ name: 'world', text: SQL.world, values: [randomId()] });
  return { id: rows[0].id, randomNumber: rows[0].randomnumber };
};
const readWorlds = (n) => Promise.all(Array.from({ length: n }, readWorld));
// bigint ids come back from pg as strings; they stay below 2^53 (the path's ids are checked).
const todo = (row) => ({ id: Number(row.id), title: row.title, done: row.done === 1 });

// A whole number from min to max, dflt when absent, or NaN.
function intParam(v, dflt, min, max) {
  if (v === undefined) return dflt;
  return typeof v === 'string' && /^[0-9]+$/.test(v) && +v >= min && +v <= max ? +v : NaN;
}
// ?queries=N: N clamped to 1..500; missing or not a number: 1.
function queriesParam(v) {
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v)) return 1;
  return Math.min(500, Math.max(1, Number(v)));
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;');
}

// Express 4 leaves a rejected promise of a handler unhandled: hand it to the error middleware.
const wrap = (fn) => (req, res, next) => fn(req, res, next).catch(next);

const app = express();
app.disable('x-powered-by');

app.get('/healthz', (req, res) => res.type('text/plain').send('ok\n'));
app.get('/plaintext', (req, res) => res.type('text/plain').send('Hello, World!'));
app.get('/json', (req, res) => res.json({ message: 'Hello, World!' }));

app.get('/db', wrap(async (req, res) => res.json(await readWorld())));

app.get('/queries', wrap(async (req, res) => res.json(await readWorlds(queriesParam(req.query.queries)))));

app.get('/updates', wrap(async (req, res) => {
  const rows = await readWorlds(queriesParam(req.query.queries));
  // An id drawn twice keeps its last new number, as when the rows are written one by one.
  const last = new Map();
  for (const w of rows) {
    w.randomNumber = randomId();
    last.set(w.id, w.randomNumber);
  }
  const ids = [...last.keys()].sort((a, b) => a - b);
  await pool.query({ name: 'update', text: SQL.update, values: [ids, ids.map((id) => last.get(id))] });
  res.json(rows);
}));

app.get('/fortunes', wrap(async (req, res) => {
  const { rows } = await pool.query({ name: 'fortunes', text: SQL.fortunes });
  rows.push({ id: 0, message: EXTRA });
  rows.sort((a, b) => (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
  let html =
    '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>' +
    '<tr><th>id</th><th>message</th></tr>';
  for (const r of rows) html += `<tr><td>${r.id}</td><td>${escapeHtml(r.message)}</td></tr>`;
  res.type('html').send(html + '</table></body></html>');
}));

// ---- /api/todos ----

const todos = express.Router();
todos.use(express.json());

// The todo body's first fault, answered 422 naming the field; partial (PATCH): fields may be
// absent, not null. No coercion: "done": 1 is wrong. title: 1..200 characters (code points).
const rules = {
  title: (v) => typeof v === 'string' && [...v].length >= 1 && [...v].length <= 200,
  done: (v) => typeof v === 'boolean',
};
function validate(partial) {
  return (req, res, next) => {
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      return res.status(422).json({ error: 'the body must be a JSON object' });
    for (const [field, ok] of Object.entries(rules)) {
      if (body[field] === undefined ? !partial : !ok(body[field]))
        return res.status(422).json({ error: `missing or invalid ${field}`, field });
    }
    next();
  };
}

// The id of the path as a number, or 404: a whole number below 2^53 (else it names no todo).
function todoId(req, res, next) {
  const s = req.params.id;
  if (!/^[0-9]{1,16}$/.test(s) || +s > Number.MAX_SAFE_INTEGER)
    return res.status(404).json({ error: 'no such todo' });
  res.locals.id = +s;
  next();
}
const notFound = (res) => res.status(404).json({ error: 'no such todo' });

todos.get('/', wrap(async (req, res) => {
  const limit = intParam(req.query.limit, 100, 1, 1000);
  const after = intParam(req.query.after, 0, 0, Number.MAX_SAFE_INTEGER);
  if (Number.isNaN(limit)) return res.status(422).json({ error: 'limit must be 1 to 1000', field: 'limit' });
  if (Number.isNaN(after)) return res.status(422).json({ error: 'after must be a whole number', field: 'after' });
  const { rows } = await pool.query({ name: 'page', text: SQL.page, values: [after, limit + 1] });
  if (rows.length > limit) {
    rows.pop();
    res.set('Link', `</api/todos?limit=${limit}&after=${rows[rows.length - 1].id}>; rel="next"`);
  }
  res.json(rows.map(todo));
}));

todos.post('/', validate(false), wrap(async (req, res) => {
  const { title, done } = req.body;
  const { rows } = await pool.query({ name: 'add', text: SQL.add, values: [title, done ? 1 : 0] });
  const t = todo(rows[0]);
  res.status(201).location(`/api/todos/${t.id}`).json(t);
}));

todos.get('/:id', todoId, wrap(async (req, res) => {
  const { rows } = await pool.query({ name: 'get', text: SQL.get, values: [res.locals.id] });
  return rows.length ? res.json(todo(rows[0])) : notFound(res);
}));

todos.patch('/:id', todoId, validate(true), wrap(async (req, res) => {
  const { title = null, done } = req.body;
  const values = [title, done === undefined ? null : done ? 1 : 0, res.locals.id];
  const { rows } = await pool.query({ name: 'set', text: SQL.set, values });
  return rows.length ? res.json(todo(rows[0])) : notFound(res);
}));

todos.delete('/:id', todoId, wrap(async (req, res) => {
  const { rowCount } = await pool.query({ name: 'del', text: SQL.del, values: [res.locals.id] });
  return rowCount ? res.status(204).end() : notFound(res);
}));

app.use('/api/todos', todos);

// ---- /work/hash: the body as bytes, whatever its type ----

app.post('/work/hash', express.raw({ type: () => true }), (req, res, next) => {
  const rounds = intParam(req.query.rounds, 1000, 1, 1000000);
  if (Number.isNaN(rounds))
    return res.status(400).json({ error: 'rounds must be 1 to 1000000', field: 'rounds' });
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  crypto.pbkdf2(body, SALT, rounds, 32, 'sha256', (err, key) => {
    if (err) return next(err);
    res.json({ algorithm: 'PBKDF2-HMAC-SHA256', rounds, salt: SALT, length: 32, digest: key.toString('hex') });
  });
});

app.use((req, res) => res.status(404).json({ error: 'not found' }));

// Errors as JSON: body-parser's own (a body that is not JSON: 400, too large: 413) keep their
// status; anything else is a 500.
app.use((err, req, res, next) => {
  if (err.status >= 400 && err.status < 500) return res.status(err.status).json({ error: err.message });
  console.error(req.method, req.url, err.message);
  res.status(500).json({ error: 'internal error' });
});

function serve() {
  const server = app.listen(PORT, HOST);
  server.keepAliveTimeout = 120 * 1000;
  server.headersTimeout = 121 * 1000;
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    pool.end().finally(() => process.exit(0));
  });
}

// ---- the cluster's primary: forks the workers, stops them on SIGTERM ----

function primary() {
  let alive = 0;
  let stopping = false;
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  };
  for (let i = 0; i < WORKERS; i++, alive++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    alive--;
    if (!stopping) {
      // Not replaced: a benchmark must see a peer that lost a worker, not hide it.
      console.error(`worker ${worker.process.pid} died (${signal || code})`);
      process.exitCode = 1;
      stop();
    }
    if (alive === 0) process.exit();
  });
  process.on('SIGTERM', stop);
}

if (WORKERS > 1 && cluster.isPrimary) primary();
else serve();
