// A cold start (decision 21): a node started before its redis-server stays up, refuses
// Socket.IO handshakes in a way the official client retries by itself, and serves once Redis
// runs: a client created while Redis was down connects and receives an event published then.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { CLIENTS, Harness, NEEDS_REDIS, login, nextEvent, publish, record, waitUntil } from '../lib/harness.js';

const h = new Harness('cold-start');
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await h.close();
});

test('a client created before Redis is up keeps retrying and connects once it runs', { skip: NEEDS_REDIS }, h.withLogs(async () => {
  await h.reserveRedis();
  const node = await h.startServer({ label: 'cold', channel: 'e2e-cold-start' });

  assert.equal((await fetch(new URL('healthz', node.url))).status, 200);
  const ready = await fetch(new URL('readyz', node.url));
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).status, 'starting');
  const { cookie } = await login(node.url);
  const early = await publish(node.url, { channel: 'message', body: 'too early' }, { cookie });
  assert.equal(early.status, 503, JSON.stringify(early.body));

  // Polling first (the default), and websocket only: both handshakes are refused while starting.
  const clients = [undefined, ['websocket']].map((transports) => {
    const socket = CLIENTS.latest.io(node.url, {
      path: '/ws/socket.io',
      forceNew: true,
      extraHeaders: { Cookie: cookie },
      transports,
      // The client's defaults, stated: reconnection on, 1 s ± 50 % growing to 5 s.
      reconnection: true,
    });
    sockets.push(socket);
    record(socket);
    socket.errors = 0;
    socket.on('connect_error', () => {
      socket.errors += 1;
    });
    return socket;
  });
  // Refused handshakes are transport errors: the client retries by itself.
  for (const socket of clients) {
    await waitUntil(() => socket.errors >= 2, { what: 'two refused handshakes, retried by the client' });
    assert.equal(socket.connected, false);
  }

  await h.startReservedRedis();
  await Promise.all(clients.map((socket) => socket.connected || nextEvent(socket, 'connect', { ms: 15_000 })));
  const res = await publish(node.url, { channel: 'message', body: 'after the cold start' }, { cookie });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  for (const socket of clients) {
    await waitUntil(() => socket.received.length > 0, { what: 'the event published after the start' });
    assert.deepEqual(socket.received, [{ event: 'message', args: ['after the cold start'] }]);
  }
}));
