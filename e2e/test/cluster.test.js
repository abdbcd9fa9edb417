// Two nodes on one redis-server behave as one: a cookie from one node is accepted by the other,
// and events published on either node (or with `sidecast emit`) reach the clients of both, once
// and in order. Also: publishing without a session is refused and delivers nothing.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BROKER, CLIENTS, Harness, NEEDS_REDIS, login, nextEvent, publish, waitUntil, record } from '../lib/harness.js';

const h = new Harness('cluster');
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await h.close();
});

function connect(url, cookie) {
  const socket = CLIENTS.latest.io(url, {
    path: '/ws/socket.io',
    forceNew: true,
    extraHeaders: cookie ? { Cookie: cookie } : undefined,
  });
  socket.received = [];
  record(socket);
  sockets.push(socket);
  return socket;
}

describe('one node', { concurrency: 1 }, () => {
  let node;
  let socket;
  before(async () => {
    node = await h.startServer({ label: 'single', channel: 'e2e-single' });
    const { cookie } = await login(node.url);
    socket = connect(node.url, cookie);
    await nextEvent(socket, 'connect');
  });

  test('POST /api/ without a session: 401, and nothing is delivered', h.withLogs(async () => {
    const refused = await publish(node.url, { channel: 'message', body: 'anonymous' });
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    // A later, authorized event arrives alone: the refused one was never published.
    const { cookie } = await login(node.url);
    const ok = await publish(node.url, { channel: 'message', body: 'authorized' }, { cookie });
    assert.equal(ok.status, 200);
    await waitUntil(() => socket.received.length > 0, { what: 'the authorized event' });
    assert.deepEqual(socket.received, [{ event: 'message', args: ['authorized'] }]);
  }));

  test('/readyz reports the broker connected', h.withLogs(async () => {
    const res = await fetch(new URL('readyz', node.url));
    assert.equal(res.status, 200);
    assert.equal((await res.json()).status, 'ready');
  }));
});

describe(`two nodes on one ${BROKER}`, { concurrency: 1, skip: NEEDS_REDIS }, () => {
  let a;
  let b;
  let onA;
  let onB;
  let cookie;
  before(async () => {
    if (NEEDS_REDIS) return;
    [a, b] = await Promise.all([
      h.startServer({ label: 'node-a', channel: 'e2e-cluster', cluster: true }),
      h.startServer({ label: 'node-b', channel: 'e2e-cluster', cluster: true }),
    ]);
    ({ cookie } = await login(a.url));
  });

  test('a session cookie from node A is accepted by node B', h.withLogs(async () => {
    onA = connect(a.url, cookie);
    onB = connect(b.url, cookie);
    await Promise.all([nextEvent(onA, 'connect'), nextEvent(onB, 'connect')]);
  }));

  test('events published on either node and with `sidecast emit` reach both, once, in order', h.withLogs(async () => {
    const N = 40;
    for (let n = 0; n < N; n++) {
      const via = n % 2 === 0 ? a : b;
      const res = await publish(via.url, { channel: 'seq', body: { n } }, { cookie });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    await h.emit('seq', 'marker', { channel: 'e2e-cluster' });
    const expected = [
      ...Array.from({ length: N }, (_, n) => ({ event: 'seq', args: [{ n }] })),
      { event: 'seq', args: ['marker'] },
    ];
    for (const socket of [onA, onB]) {
      await waitUntil(() => socket.received.some((r) => r.args[0] === 'marker'), { what: 'the marker' });
      assert.deepEqual(socket.received, expected);
    }
  }));
});
