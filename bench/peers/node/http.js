'use strict';
// Node.js peer for bench/http.sh and bench/abuse.sh: the plain `http` module, one process,
// serving the bench endpoints with the same bodies as crest demo. JSON is serialised per
// request; POST /echo buffers the body (at most 1 MiB, crest's --max-body) and sends it back.
// Usage: node http.js [PORT] [HOST]   (defaults 8080, 127.0.0.1)
// Changed from Node's defaults (stated in the bench output): keepAliveTimeout 120 s (default
// 5 s) so idle connections survive the memory measurement; headersTimeout follows it, as
// Node's docs advise keeping it above keepAliveTimeout. KEEPALIVE_S=5 in the environment keeps
// Node's own default instead (bench/abuse.sh does, as it runs every server with its defaults).
const http = require('http');

const port = Number(process.argv[2] || process.env.PORT || 8080);
const host = process.argv[3] || process.env.HOST || '127.0.0.1';
const plaintext = 'Hello, World!';
const MAX_BODY = 1 << 20;
const keepAliveS = Number(process.env.KEEPALIVE_S || 120);

function echo(req, res) {
  if (Number(req.headers['content-length'] || 0) > MAX_BODY) {
    res.writeHead(413, { 'Server': 'node', 'Connection': 'close', 'Content-Length': 0 });
    res.end();
    req.destroy();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      res.writeHead(413, { 'Server': 'node', 'Connection': 'close', 'Content-Length': 0 });
      res.end();
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, {
      'Server': 'node',
      'Content-Type': req.headers['content-type'] || 'application/octet-stream',
      'Content-Length': body.length,
    });
    res.end(body);
  });
}

const server = http.createServer((req, res) => {
  if (req.url === '/plaintext') {
    res.writeHead(200, {
      'Server': 'node',
      'Content-Type': 'text/plain',
      'Content-Length': plaintext.length,
    });
    res.end(plaintext);
  } else if (req.url === '/json') {
    const body = JSON.stringify({ message: 'Hello, World!' });
    res.writeHead(200, {
      'Server': 'node',
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  } else if (req.url === '/healthz') {
    res.writeHead(200, { 'Server': 'node', 'Content-Type': 'text/plain', 'Content-Length': 3 });
    res.end('ok\n');
  } else if (req.url === '/echo' && req.method === 'POST') {
    echo(req, res);
  } else {
    res.writeHead(404, { 'Server': 'node', 'Content-Type': 'text/plain', 'Content-Length': 9 });
    res.end('Not Found');
  }
});

server.keepAliveTimeout = keepAliveS * 1000;
if (keepAliveS >= 60) server.headersTimeout = (keepAliveS + 1) * 1000; // else Node's 60 s

server.listen(port, host, () => {
  console.log(`node listening on http://${host}:${port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
