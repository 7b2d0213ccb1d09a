'use strict';
// Node.js peer for bench/tls.sh: one process serving the bench endpoints with the same bodies as
// crest demo over TLS, with Node's own modules, each the way its documentation shows:
//   - `https` on PORT: HTTP/1.1 (ALPN http/1.1), the same handler as peers/node/http.js;
//   - `http2` on H2PORT: HTTP/2 (ALPN h2), the core stream API (`'stream'` events).
// JSON is serialised per request. TLS as Node ships it: TLSv1.2 and TLSv1.3 (Node's default
// minVersion and maxVersion), Node's default ciphers, session tickets on (the default).
// Usage: node tls.js PORT H2PORT CERT KEY [HOST]   (HOST defaults to 127.0.0.1)
// Changed from Node's defaults (stated in the bench output): the https server's
// keepAliveTimeout 120 s (default 5 s) so idle connections survive the memory measurement, and
// headersTimeout 121 s above it, as Node's docs advise. The http2 server keeps its defaults (no
// idle timeout).
const fs = require('fs');
const https = require('https');
const http2 = require('http2');

const [port, h2port] = [Number(process.argv[2]), Number(process.argv[3])];
const tlsOptions = { cert: fs.readFileSync(process.argv[4]), key: fs.readFileSync(process.argv[5]) };
const host = process.argv[6] || '127.0.0.1';
const plaintext = 'Hello, World!';
const keepAliveS = 120;

const server = https.createServer(tlsOptions, (req, res) => {
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
server.keepAliveTimeout = keepAliveS * 1000;
server.headersTimeout = (keepAliveS + 1) * 1000;

const h2server = http2.createSecureServer(tlsOptions);
h2server.on('stream', (stream, headers) => {
  const path = headers[':path'];
  if (path === '/plaintext') {
    stream.respond({
      ':status': 200,
      'server': 'node',
      'content-type': 'text/plain',
      'content-length': plaintext.length,
    });
    stream.end(plaintext);
  } else if (path === '/json') {
    const body = JSON.stringify({ message: 'Hello, World!' });
    stream.respond({
      ':status': 200,
      'server': 'node',
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    stream.end(body);
  } else {
    stream.respond({ ':status': 404, 'server': 'node', 'content-type': 'text/plain' });
    stream.end('Not Found');
  }
});
h2server.on('sessionError', () => {}); // a client going away mid-run is not the server's error

server.listen(port, host, () => console.log(`node https listening on https://${host}:${port}`));
h2server.listen(h2port, host, () => console.log(`node http2 listening on https://${host}:${h2port}`));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    h2server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
