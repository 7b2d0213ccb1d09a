'use strict';
// Node.js peer for bench/http.sh: the plain `http` module, one process, serving the bench
// endpoints with the same bodies as crest demo. JSON is serialised per request.
// Usage: node http.js [PORT] [HOST]   (defaults 8080, 127.0.0.1)
// Changed from Node's defaults (stated in the bench output): keepAliveTimeout 120 s (default
// 5 s) so idle connections survive the memory measurement; headersTimeout follows it, as
// Node's docs advise keeping it above keepAliveTimeout.
const http = require('http');

const port = Number(process.argv[2] || process.env.PORT || 8080);
const host = process.argv[3] || process.env.HOST || '127.0.0.1';
const plaintext = 'Hello, World!';

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
  } else {
    res.writeHead(404, { 'Server': 'node', 'Content-Type': 'text/plain', 'Content-Length': 9 });
    res.end('Not Found');
  }
});

server.keepAliveTimeout = 120 * 1000;
server.headersTimeout = 121 * 1000;

server.listen(port, host, () => {
  console.log(`node listening on http://${host}:${port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
