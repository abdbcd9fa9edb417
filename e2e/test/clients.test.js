// The official socket.io-client (latest 4.x and 4.0.0, the version the original page loads), on
// the default transport (HTTP long-polling, then upgrade to WebSocket) and WebSocket only.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  BROKER,
  CLIENTS,
  Harness,
  NEEDS_REDIS,
  login,
  nextEvent,
  publish,
  waitUntil,
  record,
} from '../lib/harness.js';

const SOCKETIO_PATH = '/ws/socket.io';
const MODES = {
  default: undefined, // the client's default: ["polling", "websocket"] with upgrade
  'websocket-only': ['websocket'],
  // Not asked for, but cheap: the default transport upgrades before the first event arrives, so
  // this is the mode where events travel over long-polling.
  'polling-only': ['polling'],
};

const h = new Harness('clients');
before(() => h.startRedis());
after(() => h.close());

/** A new client socket (never multiplexed) with fast reconnection, so retries would show. */
function connect(client, url, { cookie, transports } = {}) {
  const opts = {
    path: SOCKETIO_PATH,
    forceNew: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
    timeout: 5_000,
  };
  if (transports) opts.transports = transports;
  if (cookie) opts.extraHeaders = { Cookie: cookie };
  const socket = client.io(url, opts);
  // Every event the server sends, in arrival order.
  socket.received = [];
  record(socket);
  return socket;
}

/** The argument lists of the events named `event` received so far. */
function argsOf(socket, event) {
  return socket.received.filter((r) => r.event === event).map((r) => r.args);
}

/** Waits until `socket` has received `count` events named `event`; returns their arguments. */
function waitForEvents(socket, event, count = 1, ms = 10_000) {
  return waitUntil(() => argsOf(socket, event).length >= count && argsOf(socket, event), {
    ms,
    what: `${count} "${event}" event(s) (got ${JSON.stringify(argsOf(socket, event))})`,
  });
}

/**
 * Waits until `socket` has received an `event` whose first argument is 'marker'; returns the
 * argument lists of the `event`s before it.
 */
function argsBeforeMarker(socket, event) {
  return waitUntil(() => {
    const all = argsOf(socket, event);
    const at = all.findIndex((a) => a[0] === 'marker');
    return at >= 0 && all.slice(0, at);
  }, { what: `the "${event}" marker` });
}

test('the clients under test are socket.io-client 4.0.0 and the latest 4.x', (t) => {
  assert.equal(CLIENTS['4.0.0'].version, '4.0.0');
  assert.match(CLIENTS.latest.version, /^4\./);
  t.diagnostic(`socket.io-client latest = ${CLIENTS.latest.version}, pinned = ${CLIENTS['4.0.0'].version}, broker = ${BROKER}`);
});

describe('socket.io-client', { concurrency: true }, () => {
  for (const [label, client] of Object.entries(CLIENTS)) {
    for (const [mode, transports] of Object.entries(MODES)) {
      describe(`${client.version} (${label}), ${mode} transport`, { concurrency: 1 }, () => {
        // Each combination has its own node and broker channel, so events do not cross.
        const channel = `e2e-${label}-${mode}`.replace(/[^a-z0-9-]/gi, '-');
        let server;
        let cookie;
        let socket;
        const sockets = [];
        const open = (opts) => {
          const s = connect(client, server.url, { transports, ...opts });
          sockets.push(s);
          return s;
        };

        before(async () => {
          server = await h.startServer({ label: `node-${channel}`, channel });
          ({ cookie } = await login(server.url));
        });
        after(() => {
          for (const s of sockets) s.close();
        });

        test('refused without a session: connect_error with the reason, no retries', h.withLogs(async () => {
          const refused = open();
          let opens = 0;
          refused.io.on('open', () => opens++);
          const errors = [];
          refused.on('connect_error', (e) => errors.push(e));
          let connected = false;
          refused.on('connect', () => (connected = true));

          await waitUntil(() => errors.length > 0, { what: 'connect_error' });
          assert.match(errors[0].message, /^unauthorized/, 'the reason is the server\'s');
          assert.ok(errors[0].message.length < 200, 'a short reason');
          // Retries would come every 50-100 ms (reconnectionDelay); watch a few of those periods.
          await new Promise((r) => setTimeout(r, 600));
          assert.equal(errors.length, 1, `one connect_error only: ${errors.map((e) => e.message)}`);
          assert.equal(opens, 1, 'one handshake only');
          assert.equal(refused.connected, false);
          if (label === 'latest') assert.equal(refused.active, false, 'the socket gave up');
          assert.deepEqual(refused.received, []);
          assert.equal(connected, false, 'never connected');
          refused.close();
        }));

        test('accepted with the cookie from /login', h.withLogs(async () => {
          socket = open({ cookie });
          const transportsSeen = [];
          socket.io.on('open', () => {
            const engine = socket.io.engine;
            transportsSeen.push(engine.transport.name);
            engine.on('upgrade', (t) => transportsSeen.push(t?.name ?? engine.transport.name));
          });
          await nextEvent(socket, 'connect');
          assert.equal(socket.connected, true);
          assert.ok(socket.id, 'has a socket id');
          if (transports) {
            assert.deepEqual(transportsSeen, transports);
          } else {
            await waitUntil(() => transportsSeen.length === 2, { what: `the upgrade (${transportsSeen})` });
            assert.deepEqual(transportsSeen, ['polling', 'websocket'], 'polling, then upgraded');
          }
          assert.equal(socket.io.engine.transport.name, transports ? transports[0] : 'websocket');
        }));

        test('receives POST /api/ events: string and object bodies, custom event names', h.withLogs(async () => {
          assert.ok(socket?.connected, 'connected (previous test)');
          const object = {
            text: 'héllo ✓ "quoted" <b>',
            n: 42,
            f: 1.5,
            ok: true,
            none: null,
            list: [1, 'two', { three: 3 }],
            nested: { deeper: { deepest: [] } },
          };
          const sent = [
            ['message', 'Hi'],
            ['message', 'unicode ✓ 日本語 🚀'],
            ['message', object],
            ['order.created', { id: 7, items: ['a', 'b'] }],
            ['e2e:custom-event', 'custom'],
            ['notification', ''],
          ];
          for (const [channel, body] of sent) {
            const res = await publish(server.url, { channel, body }, { cookie });
            assert.deepEqual(res, { status: 200, body: { status: true } }, `POST ${channel}`);
          }
          const expected = sent.map(([event, body]) => ({ event, args: [body] }));
          await waitUntil(() => socket.received.length >= expected.length, {
            what: `${expected.length} events (got ${JSON.stringify(socket.received)})`,
          });
          assert.deepEqual(socket.received, expected);
          socket.received.length = 0;
        }));

        test('receives `sidecast emit` events', { skip: NEEDS_REDIS }, h.withLogs(async () => {
          assert.ok(socket?.connected, 'connected (previous test)');
          await h.emit('message', 'Hi from the command line', { channel });
          await h.emit('e2e:json', { from: 'cli', n: [1, 2] }, { json: true, channel });
          await h.emit('message', '-starts with a dash', { channel });
          await waitUntil(() => socket.received.length >= 3, {
            what: `3 events (got ${JSON.stringify(socket.received)})`,
          });
          assert.deepEqual(socket.received, [
            { event: 'message', args: ['Hi from the command line'] },
            { event: 'e2e:json', args: [{ from: 'cli', n: [1, 2] }] },
            { event: 'message', args: ['-starts with a dash'] },
          ]);
          socket.received.length = 0;
        }));

        test('POST /api/: every event once, in order (from the first moment of the connection)', h.withLogs(async (t) => {
          // A fresh socket: publishing starts as soon as it connects, so on the default transport
          // the sequence spans the upgrade from polling to websocket.
          const fresh = open({ cookie });
          let beforeUpgrade = null;
          let initialTransport;
          fresh.io.on('open', () => {
            initialTransport = fresh.io.engine.transport.name;
            fresh.io.engine.on('upgrade', () => (beforeUpgrade = argsOf(fresh, 'seq').length));
          });
          await nextEvent(fresh, 'connect');
          const N = 60;
          for (let n = 0; n < N; n++) {
            const res = await publish(server.url, { channel: 'seq', body: { n } }, { cookie });
            assert.equal(res.status, 200, JSON.stringify(res.body));
          }
          await publish(server.url, { channel: 'seq', body: 'marker' }, { cookie });
          const seq = await argsBeforeMarker(fresh, 'seq');
          assert.deepEqual(seq.map((a) => a[0].n), Array.from({ length: N }, (_, i) => i));
          assert.ok(seq.every((a) => a.length === 1), 'one argument each');
          assert.equal(argsOf(fresh, 'seq').length, N + 1, 'nothing after the marker');
          assert.equal(fresh.io.engine.transport.name, transports ? transports[0] : 'websocket');
          t.diagnostic(`opened on ${initialTransport}; ` + (beforeUpgrade === null
            ? 'no upgrade during the sequence'
            : `upgraded after ${beforeUpgrade} of ${N + 1} events`));
          // The long-lived socket received the same sequence too.
          await waitUntil(() => argsOf(socket, 'seq').length >= N + 1, { what: 'the older socket' });
          assert.deepEqual(argsOf(socket, 'seq'), argsOf(fresh, 'seq'));
        }));

        test('`sidecast emit`: every event once, in order', { skip: NEEDS_REDIS }, h.withLogs(async () => {
          const N = 8;
          for (let n = 0; n < N; n++) await h.emit('cli-seq', { n }, { json: true, channel });
          await h.emit('cli-seq', 'marker', { channel });
          const seq = await argsBeforeMarker(socket, 'cli-seq');
          assert.deepEqual(seq.map((a) => a[0].n), Array.from({ length: N }, (_, i) => i));
          assert.equal(argsOf(socket, 'cli-seq').length, N + 1, 'nothing after the marker');
        }));
      });
    }
  }
});
