'use strict';
// The showdown's `node-http` peer (bench/peers/SHOWDOWN.md): Node's own `http` module and
// node-postgres (`pg`, pinned in package.json), no framework. Serves plaintext, json, db,
// queries, fortunes, updates, todos and hash, and GET /healthz; and the chat WebSocket
// /ws/chat?room=R&name=N (rooms) with the `ws` package (pinned too) on the same http server, the
// pairing ws's README shows. The node-http-rooms peer (node-http-rooms.peer.json) is this program
// measured on chat + REST, in one process.
// Env: HOST, PORT, WORKERS (1: one process; more: Node's `cluster` module forks that many
// processes sharing the port, as PM2's cluster mode does), DATABASE_URL.
//
// Database: one pg.Pool per process with its defaults (at most 10 connections). Every query is a
// named query, so pg prepares it once per connection. The N reads of /queries and /updates are
// started together and run on up to 10 pooled connections at once. /updates then writes the
// rows back with ONE UPDATE statement (an implicit transaction; unnest() of two int arrays), the
// ids sorted so that concurrent updates lock rows in one order (no deadlocks); an id drawn twice
// keeps its last new number, as when the rows are written one by one.
// hash: crypto.pbkdf2 with a callback runs on libuv's threadpool (4 threads, its default), off
// the event loop, which keeps answering /healthz meanwhile: Node's documented way for its
// built-in CPU-heavy calls.
//
// Changed defaults, and why:
// - keepAliveTimeout 120 s (default 5 s): idle client connections stay open through a run (the
//   other peers keep theirs), and headersTimeout 121 s (default 60 s) above it, as Node's docs
//   advise.
// - ws maxPayload 1 MiB (its default 100 MiB): crest's limit for a message. permessage-deflate
//   stays off (ws's default for a server, as crest's).
// JSON is serialised per request with JSON.stringify; Date is Node's own; Content-Length is set
// so that no answer is chunked. Nothing is logged per request.
//
// Rooms are Sets of sockets in this process's memory: with WORKERS > 1 each cluster worker has
// rooms of its own, and members of one room that landed on two workers would not hear each other
// (spanning processes takes a broker, such as Redis pub/sub). So the rooms and chat + REST
// measures run this program as one process (node-http-rooms.peer.json, workers_max 1).
const cluster = require('cluster');
const crypto = require('crypto');
const http = require('http');
const { Pool } = require('pg');
const { WebSocketServer } = require('ws');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8080);
const WORKERS = Math.max(1, Number(process.env.WORKERS || 1));

const SALT = 'crest-work-hash';
const MAX_BODY = 1 << 20; // crest's --max-body
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

// ---- the cluster's primary: forks the workers, stops them on SIGTERM ----

function primary() {
  let alive = 0;
  let stopping = false;
  for (let i = 0; i < WORKERS; i++, alive++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    alive--;
    if (!stopping) {
      // Not replaced: a benchmark must see a peer that lost a worker, not hide it.
      console.error(`worker ${worker.process.pid} died (${signal || code})`);
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
      process.exitCode = 1;
    }
    if (alive === 0) process.exit();
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  });
}

// ---- a server process ----

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

function send(res, status, type, body, headers) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}
const sendJson = (res, status, value, headers) =>
  send(res, status, 'application/json', JSON.stringify(value), headers);
const sendError = (res, status, error, field) =>
  sendJson(res, status, field ? { error, field } : { error });

// ?queries=N: N clamped to 1..500; missing or not a number: 1.
function queriesParam(query) {
  const v = query.get('queries');
  if (!v || !/^[0-9]+$/.test(v)) return 1;
  return Math.min(500, Math.max(1, Number(v)));
}

// A whole number from min to max from the query string, dflt when absent, or NaN.
function intParam(v, dflt, min, max) {
  if (v === null) return dflt;
  return /^[0-9]+$/.test(v) && +v >= min && +v <= max ? +v : NaN;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;');
}

async function updates(n) {
  const worlds = await readWorlds(n);
  const last = new Map();
  for (const w of worlds) {
    w.randomNumber = randomId();
    last.set(w.id, w.randomNumber);
  }
  const ids = [...last.keys()].sort((a, b) => a - b);
  await pool.query({ name: 'update', text: SQL.update, values: [ids, ids.map((id) => last.get(id))] });
  return worlds;
}

async function fortunes() {
  const { rows } = await pool.query({ name: 'fortunes', text: SQL.fortunes });
  rows.push({ id: 0, message: EXTRA });
  rows.sort((a, b) => (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
  let html =
    '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>' +
    '<tr><th>id</th><th>message</th></tr>';
  for (const r of rows) html += `<tr><td>${r.id}</td><td>${escapeHtml(r.message)}</td></tr>`;
  return html + '</table></body></html>';
}

// The request's body, at most MAX_BODY bytes (else an Error with status 413).
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        req.pause();
        return reject(Object.assign(new Error('body too large'), { status: 413 }));
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// The todo body's first fault as [message, field], or null. partial (PATCH): fields may be
// absent, not null. No coercion: "done": 1 is wrong. title: 1..200 characters (code points).
function checkTodo(body, partial) {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return ['the body must be a JSON object', null];
  const { title, done } = body;
  if (title === undefined ? !partial : typeof title !== 'string')
    return ['title must be a string', 'title'];
  if (title !== undefined) {
    const n = [...title].length;
    if (n < 1 || n > 200) return ['title must have 1 to 200 characters', 'title'];
  }
  if (done === undefined ? !partial : typeof done !== 'boolean')
    return ['done must be a boolean', 'done'];
  return null;
}

// The JSON body of a todo write, checked; answers 400/422 itself and returns null on a fault.
async function todoBody(req, res, partial) {
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch (err) {
    if (err.status) throw err;
    sendError(res, 400, 'the body is not JSON');
    return null;
  }
  const fault = checkTodo(body, partial);
  if (fault) {
    sendError(res, 422, fault[0], fault[1]);
    return null;
  }
  return body;
}

async function todos(req, res, query) {
  if (req.method === 'GET') {
    const limit = intParam(query.get('limit'), 100, 1, 1000);
    const after = intParam(query.get('after'), 0, 0, Number.MAX_SAFE_INTEGER);
    if (Number.isNaN(limit)) return sendError(res, 422, 'limit must be 1 to 1000', 'limit');
    if (Number.isNaN(after)) return sendError(res, 422, 'after must be a whole number', 'after');
    const { rows } = await pool.query({ name: 'page', text: SQL.page, values: [after, limit + 1] });
    const headers = {};
    if (rows.length > limit) {
      rows.pop();
      headers.Link = `</api/todos?limit=${limit}&after=${rows[rows.length - 1].id}>; rel="next"`;
    }
    return sendJson(res, 200, rows.map(todo), headers);
  }
  if (req.method === 'POST') {
    const body = await todoBody(req, res, false);
    if (!body) return;
    const { rows } = await pool.query({ name: 'add', text: SQL.add, values: [body.title, body.done ? 1 : 0] });
    const t = todo(rows[0]);
    return sendJson(res, 201, t, { Location: `/api/todos/${t.id}` });
  }
  res.setHeader('Allow', 'GET, POST');
  return sendError(res, 405, 'method not allowed');
}

async function oneTodo(req, res, idText) {
  // An id that is not a whole number below 2^53 names no todo.
  const id = /^[0-9]{1,16}$/.test(idText) && +idText <= Number.MAX_SAFE_INTEGER ? +idText : -1;
  const notFound = () => sendError(res, 404, 'no such todo');
  if (req.method === 'GET') {
    if (id < 0) return notFound();
    const { rows } = await pool.query({ name: 'get', text: SQL.get, values: [id] });
    return rows.length ? sendJson(res, 200, todo(rows[0])) : notFound();
  }
  if (req.method === 'PATCH') {
    if (id < 0) return notFound();
    const body = await todoBody(req, res, true);
    if (!body) return;
    const done = body.done === undefined ? null : body.done ? 1 : 0;
    const values = [body.title === undefined ? null : body.title, done, id];
    const { rows } = await pool.query({ name: 'set', text: SQL.set, values });
    return rows.length ? sendJson(res, 200, todo(rows[0])) : notFound();
  }
  if (req.method === 'DELETE') {
    if (id < 0) return notFound();
    const { rowCount } = await pool.query({ name: 'del', text: SQL.del, values: [id] });
    if (!rowCount) return notFound();
    res.writeHead(204);
    return res.end();
  }
  res.setHeader('Allow', 'GET, PATCH, DELETE');
  return sendError(res, 405, 'method not allowed');
}

async function hash(req, res, query) {
  const rounds = intParam(query.get('rounds'), 1000, 1, 1000000);
  if (Number.isNaN(rounds)) return sendError(res, 400, 'rounds must be 1 to 1000000', 'rounds');
  const body = await readBody(req);
  const digest = await new Promise((resolve, reject) =>
    crypto.pbkdf2(body, SALT, rounds, 32, 'sha256', (err, key) => (err ? reject(err) : resolve(key))));
  sendJson(res, 200, {
    algorithm: 'PBKDF2-HMAC-SHA256', rounds, salt: SALT, length: 32, digest: digest.toString('hex'),
  });
}

async function route(req, res) {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = () => new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
  const get = req.method === 'GET';
  switch (path) {
    case '/plaintext':
      if (get) return send(res, 200, 'text/plain', 'Hello, World!');
      break;
    case '/json':
      if (get) return sendJson(res, 200, { message: 'Hello, World!' });
      break;
    case '/healthz':
      if (get) return send(res, 200, 'text/plain', 'ok\n');
      break;
    case '/db':
      if (get) return sendJson(res, 200, await readWorld());
      break;
    case '/queries':
      if (get) return sendJson(res, 200, await readWorlds(queriesParam(query())));
      break;
    case '/updates':
      if (get) return sendJson(res, 200, await updates(queriesParam(query())));
      break;
    case '/fortunes':
      if (get) return send(res, 200, 'text/html; charset=utf-8', await fortunes());
      break;
    case '/work/hash':
      if (req.method === 'POST') return hash(req, res, query());
      break;
    case '/api/todos':
      return todos(req, res, query());
    default:
      if (path.startsWith('/api/todos/') && path.indexOf('/', 11) < 0)
        return oneTodo(req, res, path.slice(11));
      return sendError(res, 404, 'not found');
  }
  res.setHeader('Allow', path === '/work/hash' ? 'POST' : 'GET');
  return sendError(res, 405, 'method not allowed');
}

// ---- the chat WebSocket ----

const rooms = new Map(); // room name -> Set of its members' sockets

// One serialisation per event, sent to every open member; ws.send queues in call order, so one
// sender's messages reach every member in the order sent.
function broadcast(room, event) {
  const data = JSON.stringify(event);
  for (const ws of rooms.get(room) || []) if (ws.readyState === ws.OPEN) ws.send(data);
}

function chat(ws, req) {
  const query = new URLSearchParams(req.url.slice(req.url.indexOf('?') + 1));
  const room = query.get('room') || 'lobby';
  const name = query.get('name') || 'anonymous';
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(ws);
  broadcast(room, { type: 'join', room, name });
  ws.on('message', (data, isBinary) => {
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
  ws.on('close', () => {
    const members = rooms.get(room);
    members.delete(ws);
    if (members.size) broadcast(room, { type: 'leave', room, name });
    else rooms.delete(room);
  });
}

function serve() {
  const server = http.createServer((req, res) => {
    route(req, res).catch((err) => {
      if (!err.status) console.error(req.method, req.url, err.message);
      if (res.headersSent) return res.destroy();
      res.setHeader('Connection', 'close');
      sendError(res, err.status || 500, err.status ? err.message : 'internal error');
    });
  });
  server.keepAliveTimeout = 120 * 1000;
  server.headersTimeout = 121 * 1000;
  // Upgrades of /ws/chat (any query) become chat members; ws answers other upgrade paths 400.
  const wss = new WebSocketServer({ server, path: '/ws/chat', maxPayload: 1 << 20 });
  wss.on('connection', chat);
  server.listen(PORT, HOST);
  process.on('SIGTERM', () => {
    for (const ws of wss.clients) ws.terminate();
    server.close();
    server.closeAllConnections();
    pool.end().finally(() => process.exit(0));
  });
}

if (WORKERS > 1 && cluster.isPrimary) primary();
else serve();
