'use strict';
// Express twin of the crest REST example: the /api/todos resource of bench/peers/README.md with
// validation, bearer-token auth on writes, CORS and SQLite (better-sqlite3).
// Env: PORT (8080), HOST (127.0.0.1), DB_PATH (todos.db), API_TOKEN (secret), CORS_ORIGIN.
const express = require('express');
const cors = require('cors');
const Database = require('better-sqlite3');

const TOKEN = process.env.API_TOKEN || 'secret';
const db = new Database(process.env.DB_PATH || 'todos.db');
db.pragma('journal_mode = WAL');
db.exec(`CREATE TABLE IF NOT EXISTS todos (
  id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, done INTEGER NOT NULL)`);
const sql = {
  page: db.prepare('SELECT * FROM todos WHERE id > ? ORDER BY id LIMIT ?'),
  get: db.prepare('SELECT * FROM todos WHERE id = ?'),
  add: db.prepare('INSERT INTO todos (title, done) VALUES (?, ?) RETURNING *'),
  set: db.prepare('UPDATE todos SET title = ?, done = ? WHERE id = ? RETURNING *'),
  del: db.prepare('DELETE FROM todos WHERE id = ?'),
};
const todo = (row) => row && { id: row.id, title: row.title, done: row.done === 1 };

const app = express();
app.use(cors({ origin: process.env.CORS_ORIGIN }));
app.use(express.json());

// Writes need `Authorization: Bearer <API_TOKEN>`.
function auth(req, res, next) {
  if (req.get('Authorization') === `Bearer ${TOKEN}`) return next();
  res.set('WWW-Authenticate', 'Bearer').status(401).json({ error: 'unauthorized' });
}

// The first field of a todo body at fault (all of them required unless partial), or null.
const rules = {
  title: (v) => typeof v === 'string' && [...v].length >= 1 && [...v].length <= 200,
  done: (v) => typeof v === 'boolean',
};
function validate(partial) {
  return (req, res, next) => {
    const body = req.body;
    if (typeof body !== 'object' || Array.isArray(body))
      return res.status(422).json({ error: 'the body must be a JSON object' });
    for (const [field, ok] of Object.entries(rules)) {
      if (body[field] === undefined ? !partial : !ok(body[field]))
        return res.status(422).json({ error: `missing or invalid ${field}`, field });
    }
    next();
  };
}

// A whole number from min to max from the query string, the default when absent, or NaN.
function intParam(v, dflt, min, max) {
  if (v === undefined) return dflt;
  return /^[0-9]+$/.test(v) && +v >= min && +v <= max ? +v : NaN;
}

function methodNotAllowed(allow) {
  return (req, res) => res.set('Allow', allow).status(405).json({ error: 'method not allowed' });
}

app.get('/healthz', (req, res) => res.send('ok\n'));

app
  .route('/api/todos')
  .get((req, res) => {
    const limit = intParam(req.query.limit, 100, 1, 1000);
    const after = intParam(req.query.after, 0, 0, Number.MAX_SAFE_INTEGER);
    if (Number.isNaN(limit)) return res.status(422).json({ error: 'bad limit', field: 'limit' });
    if (Number.isNaN(after)) return res.status(422).json({ error: 'bad after', field: 'after' });
    const rows = sql.page.all(after, limit + 1);
    if (rows.length > limit) {
      rows.pop();
      const last = rows[rows.length - 1].id;
      res.set('Link', `</api/todos?limit=${limit}&after=${last}>; rel="next"`);
    }
    res.json(rows.map(todo));
  })
  .post(auth, validate(false), (req, res) => {
    const row = todo(sql.add.get(req.body.title, req.body.done ? 1 : 0));
    res.status(201).location(`/api/todos/${row.id}`).json(row);
  })
  .all(methodNotAllowed('GET, HEAD, POST'));

// Loads the todo of :id into res.locals.todo, or answers 404.
function load(req, res, next) {
  res.locals.todo = todo(sql.get.get(/^[0-9]+$/.test(req.params.id) ? +req.params.id : -1));
  if (!res.locals.todo) return res.status(404).json({ error: 'no such todo' });
  next();
}

function save(req, res) {
  const { id } = res.locals.todo;
  const { title, done } = { ...res.locals.todo, ...req.body };
  res.json(todo(sql.set.get(title, done ? 1 : 0, id)));
}

app
  .route('/api/todos/:id')
  .get(load, (req, res) => res.json(res.locals.todo))
  .put(auth, validate(false), load, save)
  .patch(auth, validate(true), load, save)
  .delete(auth, load, (req, res) => {
    sql.del.run(res.locals.todo.id);
    res.status(204).end();
  })
  .all(methodNotAllowed('GET, HEAD, PUT, PATCH, DELETE'));

// Errors from express.json() (malformed JSON: 400, too large: 413) and any other, as JSON.
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ error: err.expose ? err.message : 'internal error' });
});

const server = app.listen(+(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
