'use strict';
// Express twin of the crest chat example (bench/peers/README.md): static files from public/,
// POST /messages broadcast to every GET /events stream (Server-Sent Events).
// Env: PORT (8080), HOST (127.0.0.1), PUBLIC_DIR (../public beside this file).
const path = require('path');
const express = require('express');

const KEEPALIVE_MS = 15000;
const clients = new Set(); // the open /events responses

const app = express();
app.use(express.static(process.env.PUBLIC_DIR || path.join(__dirname, '..', 'public')));
app.use(express.json());

app.get('/healthz', (req, res) => res.send('ok\n'));

app.get('/events', (req, res) => {
  res.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  res.write(': connected\n\n'); // the client is subscribed once it has read this
  clients.add(res);
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  res.on('close', () => {
    clearInterval(keepalive);
    clients.delete(res);
  });
});

app.post('/messages', (req, res) => {
  const { room, name, text } = req.body;
  for (const [field, v] of Object.entries({ room, name, text })) {
    if (typeof v !== 'string' || v === '')
      return res.status(422).json({ error: `missing or invalid ${field}`, field });
  }
  const msg = { type: 'message', room, name, text, ts: Date.now() };
  const event = `event: message\ndata: ${JSON.stringify(msg)}\n\n`;
  for (const c of clients) c.write(event);
  res.status(202).json(msg);
});

// Errors from express.json() (malformed JSON: 400, too large: 413) and any other, as JSON.
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ error: err.expose ? err.message : 'internal error' });
});

const server = app.listen(+(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
