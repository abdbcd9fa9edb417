// Presence with the official socket.io client: sockets in a presence room (presence.rooms) get the
// room's state after they join (`sidecast:presence`) and then the joins and leaves of users
// (`sidecast:presence_diff`); a user's second tab is no join, its closing no leave; the last
// tab's close is the leave. GET /api/presence answers the same.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CLIENTS, Harness, nextEvent, publish, record, waitUntil } from '../lib/harness.js';

const h = new Harness('presence');
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  await h.close();
});

const ROOM = 'chat:e2e';
const client = CLIENTS.latest;

describe(`socket.io-client ${client.version}: presence`, { concurrency: 1 }, () => {
  let node;
  const connect = (token) => {
    const socket = client.io(node.url, {
      path: '/ws/socket.io',
      forceNew: true,
      auth: { token },
    });
    record(socket);
    sockets.push(socket);
    return socket;
  };
  const service = async (path, { method = 'POST', body } = {}) => {
    const res = await fetch(new URL(path, node.url), {
      method,
      headers: { Authorization: 'Bearer s3cret', 'Content-Type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  const join = async (user) => {
    const res = await service('/api/rooms', { body: { op: 'join', rooms: ROOM, to: `user:${user}` } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  };
  const presence = async () => (await service(`/api/presence?room=${ROOM}`, { method: 'GET' })).body;
  const events = (socket, name) => socket.received.filter((e) => e.event === name).map((e) => e.args[0]);

  before(async () => {
    node = await h.startServer({
      label: 'presence',
      channel: 'e2e-presence',
      extraEnv: {
        SIDECAST_AUTH__POLICY: '["session", "token"]',
        SIDECAST_AUTH__TOKENS__CRON: 's3cret',
        SIDECAST_AUTH__TOKENS__ADA: 'tok-ada',
        SIDECAST_AUTH__TOKENS__BOB: 'tok-bob',
        SIDECAST_PRESENCE__ROOMS: '["chat:*"]',
        SIDECAST_PRESENCE__DIFF_INTERVAL_MS: '50',
      },
    });
  });

  test('a snapshot after the join, then coalesced joins and leaves per user', h.withLogs(async () => {
    const ada = connect('tok-ada');
    await nextEvent(ada, 'connect');
    await join('ada');
    await waitUntil(() => events(ada, 'sidecast:presence').length === 1, { what: "ada's snapshot" });
    const [snapshot] = events(ada, 'sidecast:presence');
    assert.deepEqual(snapshot, {
      room: ROOM,
      users: [{ user: 'ada', connections: 1 }],
      user_count: 1,
      connection_count: 1,
      truncated: false,
    });

    const bob = connect('tok-bob');
    await nextEvent(bob, 'connect');
    await join('bob');
    await waitUntil(() => events(bob, 'sidecast:presence').length === 1, { what: "bob's snapshot" });
    assert.deepEqual(events(bob, 'sidecast:presence')[0].users.map((u) => u.user), ['ada', 'bob']);
    await waitUntil(
      () => events(ada, 'sidecast:presence_diff').some((d) => d.joins.some((j) => j.user === 'bob')),
      { what: "bob's join at ada" },
    );
    const bobJoined = events(ada, 'sidecast:presence_diff').find((d) => d.joins.some((j) => j.user === 'bob'));
    assert.equal(bobJoined.room, ROOM);
    assert.equal(bobJoined.user_count, 2);

    // The diff of Bob's join reached Bob too (it may repeat Ada's join, which his snapshot
    // showed: diffs are applied as set operations). What Bob receives from here on is watched.
    await waitUntil(
      () => events(bob, 'sidecast:presence_diff').some((d) => d.joins.some((j) => j.user === 'bob')),
      { what: "bob's own join at bob" },
    );
    const mark = bob.received.length;

    // Ada's second tab rejoins her rooms (remembered memberships) and gets the state, in which
    // Ada has two connections; Bob sees no join, and no leave when it closes.
    const tab = connect('tok-ada');
    await waitUntil(() => events(tab, 'sidecast:presence').length === 1, { what: "the tab's snapshot" });
    const ada2 = events(tab, 'sidecast:presence')[0].users.find((u) => u.user === 'ada');
    assert.equal(ada2.connections, 2);
    tab.close();
    await waitUntil(async () => (await presence()).connection_count === 2, { what: 'the tab gone from the view' });
    const marker = await service('/api/', { body: { channel: 'marker', body: 'm' } });
    assert.equal(marker.status, 200);
    await waitUntil(() => bob.received.some((e) => e.event === 'marker'), { what: 'the marker' });
    const aboutAda = bob.received.slice(mark)
      .filter((e) => e.event === 'sidecast:presence_diff')
      .map((e) => e.args[0])
      .filter((d) => [...d.joins, ...d.leaves].some((u) => u.user === 'ada'));
    assert.deepEqual(aboutAda, [], 'a second tab is neither a join nor a leave');

    // Bob's last (only) tab closes: the leave.
    bob.close();
    await waitUntil(
      () => events(ada, 'sidecast:presence_diff').some((d) => d.leaves.some((l) => l.user === 'bob')),
      { what: "bob's leave at ada" },
    );
    const left = events(ada, 'sidecast:presence_diff').find((d) => d.leaves.length > 0);
    assert.deepEqual(left.leaves, [{ user: 'bob' }]);
    assert.equal(left.user_count, 1);
    assert.deepEqual(await presence(), {
      room: ROOM,
      users: [{ user: 'ada', connections: 1 }],
      user_count: 1,
      connection_count: 1,
      truncated: false,
    });
    ada.close();
  }));
});
