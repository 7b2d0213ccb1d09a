'use strict';
// The showdown's `fastify` peer (bench/peers/SHOWDOWN.md): Fastify 4 and node-postgres (`pg`),
// both pinned in package.json. Serves plaintext, json, db, queries, fortunes, updates, todos and
// hash, and GET /healthz; and the chat WebSocket /ws/chat?room=R&name=N (rooms) with Fastify's
// own plugin, @fastify/websocket 10 (the Fastify 4 line; ws 8 underneath), pinned too. The
// fastify-rooms peer (fastify-rooms.peer.json) is this program measured on chat + REST in one
// process: rooms are Sets of sockets in a process's memory, so under the cluster each worker
// would have rooms of its own (spanning them takes a broker, such as Redis pub/sub).
// Env: HOST, PORT, WORKERS (1: one process; more: Node's `cluster` module forks that many
// processes sharing the port, as PM2's cluster mode does), DATABASE_URL.
//
// Written as Fastify's docs show: routes with JSON schemas, so request bodies are checked by its
// Ajv validator and answers serialised per request by fast-json-stringify from the response
// schema (Fastify's own serializer); logging off (Fastify's default).
// Database: one pg.Pool per process with its defaults (at most 10 connections); named queries,
// which pg prepares once per connection. /updates reads the rows, then writes them back with ONE
// UPDATE statement (an implicit transaction; unnest() of two int arrays), the ids sorted so that
// concurrent updates lock rows in one order (no deadlocks).
// hash: crypto.pbkdf2 with a callback, on libuv's threadpool (4 threads, its default), off the
// event loop: Node's documented way for its built-in CPU-heavy calls.
//
// Changed defaults, and why:
// - keepAliveTimeout 120 s (Fastify's default 72 s): as every Node peer, idle connections stay
//   open through a run; the server's headersTimeout 121 s (Node's 60 s) stays above it.
// - Ajv coerceTypes false (Fastify's default 'array'): the contract wants no coercion ("done": 1
//   is a 422), so the query strings' numbers are parsed in the handlers.
// - validation errors answer 422 (Fastify's default 400), by an error handler: the contract's
//   status for a field missing, of the wrong type or too long.
// - /work/hash takes any body as bytes: a catch-all content-type parser in its own scope.
// - ws maxPayload 1 MiB (its default 100 MiB), passed through @fastify/websocket's options:
//   crest's limit for a message; permessage-deflate stays off (ws's default for a server).
const cluster = require('cluster');
const crypto = require('crypto');
const { Pool } = require('pg');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const WORKERS = Math.max(1, Number(process.env.WORKERS || 1));

if (WORKERS > 1 && cluster.isPrimary) {
  primary();
  return;
}

const fastify = require('fastify')({
  keepAliveTimeout: 120 * 1000,
  ajv: { customOptions: { coerceTypes: false } },
});
fastify.server.headersTimeout = 121 * 1000;

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
  return /^[0-9]+$/.test(v) && +v >= min && +v <= max ? +v : NaN;
}
// ?queries=N: N clamped to 1..500; missing or not a number: 1.
function queriesParam(v) {
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v)) return 1;
  return Math.min(500, Math.max(1, Number(v)));
}
// An id from the path: a whole number below 2^53, else -1 (it names no todo).
const todoId = (s) => (/^[0-9]{1,16}$/.test(s) && +s <= Number.MAX_SAFE_INTEGER ? +s : -1);

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;');
}

class HttpError extends Error {
  constructor(statusCode, message, field) {
    super(message);
    this.statusCode = statusCode;
    this.field = field;
  }
}
const notFound = () => new HttpError(404, 'no such todo');

// ---- schemas ----

const world = {
  type: 'object',
  properties: { id: { type: 'integer' }, randomNumber: { type: 'integer' } },
};
const worlds = { type: 'array', items: world };
const todoOut = {
  type: 'object',
  properties: { id: { type: 'integer' }, title: { type: 'string' }, done: { type: 'boolean' } },
};
const todoFields = {
  title: { type: 'string', minLength: 1, maxLength: 200 },
  done: { type: 'boolean' },
};
const todoIn = { type: 'object', required: ['title', 'done'], properties: todoFields };
const todoPatch = { type: 'object', properties: todoFields };

// ---- routes ----

fastify.get('/healthz', async (req, reply) => reply.type('text/plain').send('ok\n'));

fastify.get('/plaintext', (req, reply) => {
  reply.type('text/plain').send('Hello, World!');
});

fastify.get(
  '/json',
  { schema: { response: { 200: { type: 'object', properties: { message: { type: 'string' } } } } } },
  (req, reply) => {
    reply.send({ message: 'Hello, World!' });
  },
);

fastify.get('/db', { schema: { response: { 200: world } } }, readWorld);

fastify.get('/queries', { schema: { response: { 200: worlds } } }, (req) =>
  readWorlds(queriesParam(req.query.queries)),
);

fastify.get('/updates', { schema: { response: { 200: worlds } } }, async (req) => {
  const rows = await readWorlds(queriesParam(req.query.queries));
  // An id drawn twice keeps its last new number, as when the rows are written one by one.
  const last = new Map();
  for (const w of rows) {
    w.randomNumber = randomId();
    last.set(w.id, w.randomNumber);
  }
  const ids = [...last.keys()].sort((a, b) => a - b);
  await pool.query({ name: 'update', text: SQL.update, values: [ids, ids.map((id) => last.get(id))] });
  return rows;
});

fastify.get('/fortunes', async (req, reply) => {
  const { rows } = await pool.query({ name: 'fortunes', text: SQL.fortunes });
  rows.push({ id: 0, message: EXTRA });
  rows.sort((a, b) => (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
  let html =
    '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>' +
    '<tr><th>id</th><th>message</th></tr>';
  for (const r of rows) html += `<tr><td>${r.id}</td><td>${escapeHtml(r.message)}</td></tr>`;
  reply.type('text/html; charset=utf-8');
  return html + '</table></body></html>';
});

fastify.get('/api/todos', { schema: { response: { 200: { type: 'array', items: todoOut } } } },
  async (req, reply) => {
    const limit = intParam(req.query.limit, 100, 1, 1000);
    const after = intParam(req.query.after, 0, 0, Number.MAX_SAFE_INTEGER);
    if (Number.isNaN(limit)) throw new HttpError(422, 'limit must be 1 to 1000', 'limit');
    if (Number.isNaN(after)) throw new HttpError(422, 'after must be a whole number', 'after');
    const { rows } = await pool.query({ name: 'page', text: SQL.page, values: [after, limit + 1] });
    if (rows.length > limit) {
      rows.pop();
      reply.header('Link', `</api/todos?limit=${limit}&after=${rows[rows.length - 1].id}>; rel="next"`);
    }
    return rows.map(todo);
  });

fastify.post('/api/todos', { schema: { body: todoIn, response: { 201: todoOut } } },
  async (req, reply) => {
    const { title, done } = req.body;
    const { rows } = await pool.query({ name: 'add', text: SQL.add, values: [title, done ? 1 : 0] });
    const t = todo(rows[0]);
    reply.code(201).header('Location', `/api/todos/${t.id}`);
    return t;
  });

fastify.get('/api/todos/:id', { schema: { response: { 200: todoOut } } }, async (req) => {
  const id = todoId(req.params.id);
  if (id < 0) throw notFound();
  const { rows } = await pool.query({ name: 'get', text: SQL.get, values: [id] });
  if (!rows.length) throw notFound();
  return todo(rows[0]);
});

fastify.patch('/api/todos/:id', { schema: { body: todoPatch, response: { 200: todoOut } } },
  async (req) => {
    const id = todoId(req.params.id);
    if (id < 0) throw notFound();
    const { title = null, done } = req.body;
    const values = [title, done === undefined ? null : done ? 1 : 0, id];
    const { rows } = await pool.query({ name: 'set', text: SQL.set, values });
    if (!rows.length) throw notFound();
    return todo(rows[0]);
  });

fastify.delete('/api/todos/:id', async (req, reply) => {
  const id = todoId(req.params.id);
  if (id < 0) throw notFound();
  const { rowCount } = await pool.query({ name: 'del', text: SQL.del, values: [id] });
  if (!rowCount) throw notFound();
  reply.code(204).send();
});

// The hash takes the body as bytes, whatever its type: in a scope of its own, so the JSON
// parser stays for the routes above.
fastify.register(async (scope) => {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => done(null, body));
  scope.post('/work/hash', async (req, reply) => {
    const rounds = intParam(req.query.rounds, 1000, 1, 1000000);
    if (Number.isNaN(rounds)) throw new HttpError(400, 'rounds must be 1 to 1000000', 'rounds');
    const key = await new Promise((resolve, reject) =>
      crypto.pbkdf2(req.body || Buffer.alloc(0), SALT, rounds, 32, 'sha256',
        (err, k) => (err ? reject(err) : resolve(k))));
    return { algorithm: 'PBKDF2-HMAC-SHA256', rounds, salt: SALT, length: 32, digest: key.toString('hex') };
  });
});

// The chat: a room is a Set of its members' sockets. One serialisation per event, sent to every
// open member; ws.send queues in call order, so one sender's messages reach every member in the
// order sent.
const rooms = new Map();

function broadcast(room, event) {
  const data = JSON.stringify(event);
  for (const ws of rooms.get(room) || []) if (ws.readyState === ws.OPEN) ws.send(data);
}

// The plugin in a scope of its own, with the one route that uses it: it adds onRequest and
// onResponse hooks and wraps every route's handler of the scope it is registered in, which at the
// root would add work to every HTTP request the other workloads measure.
fastify.register(async (scope) => {
  await scope.register(require('@fastify/websocket'), { options: { maxPayload: 1 << 20 } });
  scope.get('/ws/chat', { websocket: true }, (socket, req) => {
    const room = req.query.room || 'lobby';
    const name = req.query.name || 'anonymous';
    if (!rooms.has(room)) rooms.set(room, new Set());
    rooms.get(room).add(socket);
    broadcast(room, { type: 'join', room, name });
    socket.on('message', (data, isBinary) => {
      if (isBinary) return;
      let m;
      try {
        m = JSON.parse(data);
      } catch (err) {
        return; // not JSON: ignored, as crest's demo does
      }
      if (m === null || typeof m.text !== 'string') return;
      broadcast(room, { type: 'message', room, name, text: m.text, ts: Date.now() });
    });
    socket.on('close', () => {
      const members = rooms.get(room);
      members.delete(socket);
      if (members.size) broadcast(room, { type: 'leave', room, name });
      else rooms.delete(room);
    });
  });
});

// Errors as JSON: a schema's complaint is a 422 naming the field; Fastify's own client errors
// (a body that is not JSON: 400, too large: 413, ...) keep their status.
fastify.setErrorHandler((err, req, reply) => {
  if (err.validation) {
    const v = err.validation[0];
    const field = (v.params && v.params.missingProperty) || v.instancePath.slice(1) || undefined;
    return reply.code(422).send({ error: err.message, field });
  }
  if (err.statusCode >= 400 && err.statusCode < 500)
    return reply.code(err.statusCode).send(err.field ? { error: err.message, field: err.field } : { error: err.message });
  console.error(req.method, req.url, err.message);
  return reply.code(500).send({ error: 'internal error' });
});

fastify.listen({ host: HOST, port: PORT }, (err) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
});

process.on('SIGTERM', () => {
  fastify
    .close()
    .then(() => pool.end())
    .finally(() => process.exit(0));
});

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
