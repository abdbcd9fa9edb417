// Namespaces with the official socket.io client: a node serving "/" and "/chat" (server.namespaces)
// delivers each event to the namespace it names only, refuses an unserved namespace with the
// client's own "Invalid namespace" error, and recovers per namespace (each namespace's socket
// gets its own report and only its own missed events).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CLIENTS, Harness, login, nextEvent, publish, record, waitUntil } from '../lib/harness.js';

const h = new Harness('namespaces');
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await h.close();
});

for (const client of [CLIENTS.latest, CLIENTS['4.0.0']]) {
  describe(`socket.io-client ${client.version}: namespaces`, { concurrency: 1 }, () => {
    let node;
    let cookie;
    const connect = (ns, auth) => {
      const socket = client.io(new URL(ns, node.url).href, {
        path: '/ws/socket.io',
        forceNew: true,
        transports: ['websocket'],
        extraHeaders: { Cookie: cookie },
        // Asks for offsets, so that the recovery report tells when the socket is live.
        auth: auth ?? { offset: '' },
      });
      record(socket);
      sockets.push(socket);
      return socket;
    };

    before(async () => {
      node = await h.startServer({
        label: `ns-${client.version}`,
        channel: `e2e-ns-${client.version}`,
        extraEnv: { SIDECAST_SERVER__NAMESPACES: '["/", "/chat"]' },
      });
      ({ cookie } = await login(node.url));
    });

    test('events reach the namespace they name, and no other', h.withLogs(async () => {
      const root = connect('/');
      const chat = connect('/chat');
      await Promise.all([nextEvent(root, 'connect'), nextEvent(chat, 'connect')]);
      await waitUntil(() => root.reports.length === 1 && chat.reports.length === 1, { what: 'both reports' });
      for (const [namespace, body] of [['/chat', 'to chat'], ['/', 'to root'], [undefined, 'default']]) {
        const res = await publish(node.url, { channel: 'message', body, namespace }, { cookie });
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      await waitUntil(() => root.received.length === 2 && chat.received.length === 1, { what: 'the events' });
      assert.deepEqual(chat.received, [{ event: 'message', args: ['to chat'] }]);
      assert.deepEqual(root.received, [
        { event: 'message', args: ['to root'] },
        { event: 'message', args: ['default'] },
      ]);
      root.close();
      chat.close();
    }));

    test('an unserved namespace: the client gets "Invalid namespace", /api/ a 422', h.withLogs(async () => {
      const other = connect('/other');
      const [err] = await nextEvent(other, 'connect_error');
      assert.equal(err.message, 'Invalid namespace');
      const res = await publish(node.url, { channel: 'message', body: 'x', namespace: '/other' }, { cookie });
      assert.equal(res.status, 422);
      assert.equal(res.body.field, 'namespace');
      other.close();
    }));

    test('recovery is per namespace: each socket gets only its own missed events', h.withLogs(async () => {
      const chat = connect('/chat');
      const root = connect('/');
      await waitUntil(() => chat.reports.length === 1 && root.reports.length === 1, { what: 'the reports' });
      const [chatFrom, rootFrom] = [chat.offset, root.offset];
      assert.ok(chatFrom && rootFrom, 'every socket gets a starting offset');
      chat.close();
      root.close();
      for (const [namespace, body] of [['/chat', 'c1'], ['/', 'r1'], ['/chat', 'c2']]) {
        assert.equal((await publish(node.url, { channel: 'message', body, namespace }, { cookie })).status, 200);
      }
      const chatBack = connect('/chat', { offset: chatFrom });
      const rootBack = connect('/', { offset: rootFrom });
      await waitUntil(() => chatBack.reports.length === 1 && rootBack.reports.length === 1, { what: 'the reports' });
      assert.deepEqual(chatBack.reports[0], { status: 'recovered', recovered: 2 });
      assert.deepEqual(rootBack.reports[0], { status: 'recovered', recovered: 1 });
      assert.deepEqual(chatBack.received.map((e) => e.args[0]), ['c1', 'c2']);
      assert.deepEqual(rootBack.received.map((e) => e.args[0]), ['r1']);
    }));
  });
}
