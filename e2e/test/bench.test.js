// `sidecast bench` against a server that is not Sidecast: Node's own socket.io 4.8 server (the
// `socket.io` package), with a token check in a connect middleware and a `POST /api/` that does
// `io.emit`. The bench's websocket client, token auth, HTTP publisher and report must work there
// as they do against Sidecast (cli/tests/bench.rs).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';

import { Server } from 'socket.io';

import { SIDECAST_BIN } from '../lib/harness.js';

const TOKEN = 'node-token';

let server;
let io;
let url;

before(async () => {
  server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/api/') {
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
      return;
    }
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const { channel, body: data } = JSON.parse(body);
      io.emit(channel, data);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":true}');
    });
  });
  io = new Server(server, { path: '/ws/socket.io' });
  io.use((socket, next) => {
    next(socket.handshake.auth?.token === TOKEN ? undefined : new Error('bad token'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  io?.close();
  server?.closeAllConnections();
});

/** Runs `sidecast bench ARGS --json`; resolves with the exit code and the parsed report. */
function bench(args) {
  return new Promise((resolve) => {
    execFile(
      SIDECAST_BIN,
      ['bench', '--url', url, '--json', '--quiet', ...args],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        let report = null;
        try {
          report = JSON.parse(stdout);
        } catch {
          // reported below with stderr
        }
        resolve({ code: err ? (err.code ?? 1) : 0, report, stderr });
      },
    );
  });
}

describe('sidecast bench against Node socket.io 4.8', () => {
  test('every client receives every event, with latency percentiles', async () => {
    const { code, report, stderr } = await bench([
      '--token', TOKEN,
      '--clients', '40',
      '--rate', '20',
      '--duration', '2',
      '--idle', '0.2',
    ]);
    assert.equal(code, 0, stderr);
    assert.ok(report, `no JSON report; stderr: ${stderr}`);
    assert.equal(report.clients.connected, 40, JSON.stringify(report.clients));
    assert.equal(report.clients.refused, 0);
    assert.equal(report.messages.sent, 40, JSON.stringify(report.messages));
    assert.equal(report.messages.publish_errors, 0);
    assert.equal(report.deliveries.expected, 40 * 40);
    assert.equal(report.deliveries.received, 40 * 40, JSON.stringify(report.deliveries));
    assert.equal(report.deliveries.lost, 0);
    assert.equal(report.latency_ms.samples, 40 * 40);
    assert.ok(report.latency_ms.p99 > 0 && report.latency_ms.p99 <= report.latency_ms.max);
  });

  test("a refused connect is counted with the server's reason", async () => {
    const { code, report, stderr } = await bench([
      '--token', 'wrong',
      '--clients', '5',
      '--publish', 'none',
      '--duration', '0.2',
      '--idle', '0',
    ]);
    assert.notEqual(code, 0, 'a client that could not connect fails the run');
    assert.ok(report, `no JSON report; stderr: ${stderr}`);
    assert.equal(report.clients.refused, 5, JSON.stringify(report.clients));
    assert.equal(report.clients.connected, 0);
    assert.match(report.clients.refusal, /bad token/);
  });
});
