'use strict';
// Express twin of the crest downstream example (bench/peers/README.md): GET /combined calls
// UPSTREAM_A and UPSTREAM_B in parallel, each with a 200 ms timeout, and merges their JSON.
// Env: PORT (8080), HOST (127.0.0.1), UPSTREAM_A, UPSTREAM_B.
const express = require('express');

const TIMEOUT_MS = 200;
const upstreams = { a: process.env.UPSTREAM_A, b: process.env.UPSTREAM_B };

// One upstream's JSON; rejects on a timeout (TimeoutError), a failed connection, a non-2xx
// status or a body that is not JSON.
async function call(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!res.ok) throw new Error(`status ${res.status}`);
  return res.json();
}

const app = express();

app.get('/healthz', (req, res) => res.send('ok\n'));

app.get('/combined', async (req, res) => {
  const names = Object.keys(upstreams);
  const results = await Promise.allSettled(names.map((n) => call(upstreams[n])));
  const body = { timed_out: [] };
  results.forEach((r, i) => {
    body[names[i]] = r.status === 'fulfilled' ? r.value : null;
    if (r.status === 'rejected' && r.reason.name === 'TimeoutError') body.timed_out.push(names[i]);
  });
  const any = results.some((r) => r.status === 'fulfilled');
  res.status(any ? 200 : body.timed_out.length ? 504 : 502).json(body);
});

const server = app.listen(+(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
