// Clients nobody here wrote, written as their users write them, against `sidecast serve` in its
// default configuration (recovery on), on Redis and on RabbitMQ: the official socket.io-client
// (4.0.0, the original page's, and the latest 4.x) and python-socketio's Client, AsyncClient and
// SimpleClient (e2e/python/unchanged_clients.py). Unchanged, each receives exactly the published
// arguments and no event of Sidecast's own: a one-argument handler gets one argument, a
// catch-all sees the exact list. Opted in to recovery (the served /sidecast-recovery.js;
// `auth={"offset": ...}` in Python), each gets the offset as the last argument, the
// `sidecast:recovery` report, and what it missed while disconnected.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import vm from 'node:vm';
import { after, describe, test } from 'node:test';

import { CLIENTS, E2E_DIR, Harness, NEEDS_REDIS, login, publish, waitUntil } from '../lib/harness.js';

const SOCKETIO_PATH = '/ws/socket.io';
/** The Python with python-socketio 5.18.1 (e2e/python/requirements.txt; scripts/test installs it). */
const PYTHON = process.env.E2E_PYTHON || path.join(E2E_DIR, '.venv', 'bin', 'python');
const BROKERS = { redis: 'Redis', amqp: 'RabbitMQ (broker.kind = "amqp")' };
const TRANSPORTS = { 'websocket only': ['websocket'], 'default transport': undefined };
// An offset of the brokers tested here: 20 digits (RabbitMQ) or two such numbers joined by '-'
// (Redis). "0" is the start of a history that was empty when the socket went live.
const OFFSET = /^\d{20}(-\d{20})?$/;
const EMPTY_HISTORY = '0';
// The same object as e2e/python/unchanged_clients.py publishes.
const OBJECT = { text: 'héllo ✓', n: 42, ok: true, none: null, list: [1, 'two', { three: 3 }] };
const DEADLINE = 20_000;

const h = new Harness('unchanged-clients');
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await h.close();
});

/** A node of its own (own broker channel, so no other test's events reach it) and a session. */
async function node(broker, group) {
  const channel = `unchanged-${broker}-${group}`;
  const server = await h.startServer({ label: `node-${channel}`, channel, broker });
  const { cookie } = await login(server.url);
  return { ...server, cookie };
}

/** `POST /api/` `{"channel": "message", "body": body}` with the session, expecting 200. */
async function post(server, body) {
  const res = await publish(server.url, { channel: 'message', body }, { cookie: server.cookie });
  assert.deepEqual(res, { status: 200, body: { status: true } }, `POST /api/ ${JSON.stringify(body)}`);
}

/**
 * Every socket.io-client under test (4.0.0 and 4.x, websocket only and default transport),
 * with a natural one-argument `message` handler (`handler`: its calls, with all the arguments
 * it was given) and a catch-all (`any`: every event and its exact arguments), in arrival order.
 * `wrap` (the recovery helper) is applied as an app does, right after `io()`.
 */
function jsClients(server, { wrap } = {}) {
  const clients = [];
  for (const client of Object.values(CLIENTS)) {
    for (const [mode, transports] of Object.entries(TRANSPORTS)) {
      const socket = client.io(server.url, {
        path: SOCKETIO_PATH,
        forceNew: true,
        transports,
        reconnection: false,
        extraHeaders: { Cookie: server.cookie },
      });
      sockets.push(socket);
      socket.label = `socket.io-client ${client.version}, ${mode}`;
      socket.handler = [];
      socket.any = [];
      socket.errors = [];
      if (wrap) wrap(socket);
      // The original page's handler; `arguments` holds whatever the server sent.
      socket.on('message', function (msg) { // eslint-disable-line no-unused-vars
        socket.handler.push(Array.from(arguments));
      });
      socket.onAny((event, ...args) => socket.any.push([event, ...args]));
      socket.on('connect_error', (e) => socket.errors.push(e.message));
      clients.push(socket);
    }
  }
  return clients;
}

/** Resolves once every socket is connected (fails on a refusal). */
function connected(clients) {
  return Promise.all(clients.map((s) => waitUntil(() => {
    if (s.errors.length) throw new Error(`${s.label}: connect_error ${s.errors}`);
    return s.connected;
  }, { ms: DEADLINE, what: `${s.label} connected` })));
}

/** Resolves once every socket's catch-all has seen an event matching `predicate`. */
function received(clients, what, predicate) {
  return Promise.all(clients.map((s) => waitUntil(() => s.any.some(predicate), {
    ms: DEADLINE,
    what: `${what} at ${s.label} (got ${JSON.stringify(s.any)})`,
  })));
}

const withData = (data) => (item) => item[0] === 'message' && isDeepStrictEqual(item[1], data);
const reports = (n) => (item, i, all) => all.filter((x) => x[0] === 'sidecast:recovery').length >= n;

/** The helper as the node serves it (`/sidecast-recovery.js`), evaluated as a browser would. */
async function servedHelper(url) {
  const res = await fetch(new URL('sidecast-recovery.js', url));
  assert.equal(res.status, 200, 'GET /sidecast-recovery.js');
  const module = { exports: {} };
  vm.runInNewContext(await res.text(), { module }, { filename: 'sidecast-recovery.js' });
  assert.equal(typeof module.exports, 'function', 'the helper exports sidecastRecovery');
  return module.exports;
}

/**
 * What an opted-in client's handlers saw, each item `[event, ...args]` with the offset last:
 * its first report (`new`, from "0": its channel's history was empty), "one", then — after a disconnect while "two" and "three" were published and
 * a reconnect with the offset of "one" — "two" and "three" replayed before the report
 * `recovered` 2, then the object, live. Offsets strictly increase; the second report starts
 * from the offset of "three".
 */
function assertRecoveredAcrossReconnect(label, items) {
  const shape = items.map(([event, ...args]) => [event, ...args.slice(0, -1)]);
  assert.deepEqual(shape, [
    ['sidecast:recovery', { status: 'new', recovered: 0 }],
    ['message', 'one'],
    ['message', 'two'],
    ['message', 'three'],
    ['sidecast:recovery', { status: 'recovered', recovered: 2 }],
    ['message', OBJECT],
  ], `${label}: events, replay and reports (offsets left out)`);
  const offsets = items.map((item) => item.at(-1));
  assert.equal(offsets[0], EMPTY_HISTORY, `${label}: the first report starts from the empty history`);
  for (const o of offsets.slice(1)) assert.match(o, OFFSET, `${label}: an offset as the last argument`);
  const [one, two, three, reported, object] = offsets.slice(1);
  assert.ok(one < two && two < three && three < object, `${label}: offsets increase (${offsets})`);
  assert.equal(reported, three, `${label}: the report after the replay starts from the last replayed event`);
}

/** Runs e2e/python/unchanged_clients.py against `server`; resolves with its JSON report. */
function pythonClients(server, mode) {
  assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: run scripts/test, which creates it`);
  const script = path.join(E2E_DIR, 'python', 'unchanged_clients.py');
  const args = [script, server.url.replace(/\/$/, ''), SOCKETIO_PATH, mode];
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { cwd: h.dir, timeout: 85_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      h.logs.push(`[python unchanged_clients.py ${mode}] exit ${err ? err.code ?? err.signal : 0}`);
      if (stderr.trim()) h.logs.push(`[python ${mode}] stderr: ${stderr.trim()}`);
      if (err) reject(new Error(`python ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

/** The script's report: 12 clients, every POST answered 200, nothing logged as an error. */
function assertPythonRun(report, bodies) {
  assert.equal(report.clients.length, 12, 'Client, AsyncClient, SimpleClient x 2 transports x 2 handlers');
  assert.deepEqual(
    report.published.map((p) => [p.body.body, p.status, p.answer]),
    bodies.map((b) => [b, 200, { status: true }]),
    'POST /api/ answers',
  );
}

/** Nothing raised where the app would see it, nothing logged as an error. */
function assertPythonQuiet(report) {
  for (const c of report.clients) assert.deepEqual(c.errors, [], `${c.label}: nothing raised`);
  // What a handler raises (a TypeError for an extra argument) never reaches the app: it ends
  // python-socketio's handler thread or task, which the script records here.
  assert.deepEqual(report.logged, [], 'no error logged by python-socketio (a handler raised?)');
}

const EXACT = [['message', 'hi'], ['message', OBJECT], ['message', 'end']];

describe('clients nobody here wrote, default configuration (recovery on)', {
  concurrency: true,
  skip: NEEDS_REDIS,
}, () => {
  for (const [broker, brokerName] of Object.entries(BROKERS)) {
    describe(brokerName, { concurrency: true }, () => {
      test('socket.io-client 4.0.0 and 4.x, unchanged: one argument per event, the exact list, '
        + 'no sidecast:recovery', h.withLogs(async () => {
        const server = await node(broker, 'js');
        const clients = jsClients(server);
        await connected(clients);
        for (const body of ['hi', OBJECT, 'end']) await post(server, body);
        await received(clients, '"end"', withData('end'));
        for (const s of clients) {
          assert.deepEqual(s.any, EXACT, `${s.label}: onAny saw exactly the published events and arguments`);
          assert.deepEqual(s.handler, [['hi'], [OBJECT], ['end']], `${s.label}: the handler got one argument each time`);
        }
      }));

      test('socket.io-client 4.0.0 and 4.x, opted in with /sidecast-recovery.js: offsets, report, '
        + 'recovery across a reconnect', h.withLogs(async () => {
        const server = await node(broker, 'js-recovery');
        const helper = await servedHelper(server.url);
        const clients = jsClients(server, { wrap: helper });
        await connected(clients);
        await received(clients, 'the first report', reports(1));
        await post(server, 'one');
        await received(clients, '"one"', withData('one'));
        const lastSeen = clients.map((s) => s.sidecast.offset);
        for (const s of clients) s.disconnect();
        for (const body of ['two', 'three']) await post(server, body);
        for (const s of clients) s.connect(); // the helper's auth function sends the offset kept
        await connected(clients);
        await received(clients, 'the second report', reports(2));
        await post(server, OBJECT);
        await received(clients, 'the object', withData(OBJECT));
        clients.forEach((s, i) => {
          assertRecoveredAcrossReconnect(s.label, s.any);
          assert.equal(lastSeen[i], s.any[1].at(-1), `${s.label}: the helper kept the offset of "one"`);
          const messages = s.any.filter((item) => item[0] === 'message').map((item) => item.slice(1));
          assert.deepEqual(s.handler, messages, `${s.label}: the handler got the data and its offset`);
        });
      }));

      test('python-socketio Client, AsyncClient, SimpleClient, unchanged: one-argument handlers do not '
        + 'raise, the exact list, no sidecast:recovery', h.withLogs(async () => {
        const server = await node(broker, 'python');
        const report = await pythonClients(server, 'unchanged');
        assertPythonRun(report, ['hi', OBJECT, 'end']);
        for (const c of report.clients) {
          assert.deepEqual(c.received, EXACT, `${c.label}: exactly the published events and arguments`);
        }
        assertPythonQuiet(report);
      }));

      test('python-socketio Client, AsyncClient, SimpleClient, opted in with auth={"offset": ...}: '
        + 'offsets, report, recovery across a reconnect', h.withLogs(async () => {
        const server = await node(broker, 'python-recovery');
        const report = await pythonClients(server, 'opted-in');
        assertPythonRun(report, ['one', 'two', 'three', OBJECT]);
        for (const c of report.clients) {
          assertRecoveredAcrossReconnect(c.label, c.received);
          assert.deepEqual(c.offsets_sent, ['', c.received[1].at(-1)], `${c.label}: sent "", then the offset of "one"`);
        }
        assertPythonQuiet(report);
      }));
    });
  }
});
