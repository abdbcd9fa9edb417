// A plain Node socket.io server for comparison runs of `scripts/bench node`: the `socket.io`
// package of e2e/ (run `npm ci` in e2e/ first), one process, no adapter. Connects need the auth
// payload {"token": TOKEN}; `POST /api/` {"channel", "body"} does `io.emit(channel, body)`, as
// Sidecast's does (the bench publishes there).
//
//   node scripts/node-socketio-server.mjs PORT [TOKEN]
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'e2e', 'package.json'));
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const token = process.argv[3] || 'bench';
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node scripts/node-socketio-server.mjs PORT [TOKEN]');
  process.exit(2);
}

let io;
const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/api/') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    try {
      const { channel, body: data } = JSON.parse(body);
      io.emit(channel, data);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":true}');
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
    }
  });
});
io = new Server(server, { path: '/ws/socket.io' });
io.use((socket, next) => next(socket.handshake.auth?.token === token ? undefined : new Error('bad token')));
server.listen(port, '127.0.0.1', () => console.log(`node socket.io ${require('socket.io/package.json').version} on 127.0.0.1:${port}`));
