// Connection state recovery with the official socket.io-client and the helper the server serves
// (`/sidecast-recovery.js`, loaded here as served): clients whose transport closes under load,
// clients of a node stopped behind a load balancer, a client that never got an event, forged
// offsets, and a logout. "Nothing lost" is checked by counting: a publisher posts numbered events
// one after the other, and every event whose `POST /api/` answered 200 must reach every client
// exactly once and in order.

import assert from 'node:assert/strict';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';

import { CLIENTS, Harness, NEEDS_REDIS, login, nextEvent, publish, waitUntil } from '../lib/harness.js';
import { NEEDS_NGINX, startNginx } from '../lib/nginx.js';
import { startProxy } from '../lib/proxy.js';
import { Publisher } from '../lib/publisher.js';

const SOCKETIO_PATH = '/ws/socket.io';
// Sidecast's offsets on Redis: two 20-digit numbers joined by '-'.
const OFFSET = /^\d{20}-\d{20}$/;
// A starting offset may also be the start of an empty history, written "0" ("" asks for none).
const START_OFFSET = /^(\d{20}-\d{20}|0)$/;
const DEADLINE = 20_000;

const h = new Harness('recovery');
const sockets = [];
const proxies = [];
after(async () => {
  for (const s of sockets) s.close();
  for (const p of proxies) await p.close();
  await h.close();
});

/** The helper as the node serves it, evaluated as a browser would (module.exports in Node). */
async function servedHelper(url) {
  const res = await fetch(new URL('sidecast-recovery.js', url));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /javascript/);
  const module = { exports: {} };
  vm.runInNewContext(await res.text(), { module }, { filename: 'sidecast-recovery.js' });
  assert.equal(typeof module.exports, 'function', 'the helper exports sidecastRecovery');
  return module.exports;
}

/**
 * A socket.io-client socket that records, in arrival order, every `count` number, every event
 * with its offset, and every recovery report together with the events that arrived between the
 * last disconnect and the report (what the server replayed).
 */
function connect(url, { client = CLIENTS.latest, cookie, auth, helper, transports, reconnection = true } = {}) {
  const socket = client.io(url, {
    path: SOCKETIO_PATH,
    forceNew: true,
    transports,
    reconnection,
    extraHeaders: cookie ? { Cookie: cookie } : undefined,
    auth,
  });
  sockets.push(socket);
  socket.label = `${client.version} ${url}`;
  socket.counts = [];
  socket.events = [];
  socket.reports = [];
  socket.offsets = [];
  socket.errors = [];
  socket.disconnects = [];
  let sinceDisconnect = [];
  socket.on('disconnect', (reason) => {
    socket.disconnects.push(reason);
    sinceDisconnect = [];
  });
  socket.on('connect_error', (e) => socket.errors.push(e.message));
  socket.onAny((event, ...args) => {
    if (event === 'sidecast:recovery') {
      // Its last argument is the starting offset: the start of the history ('0') when it is empty.
      const offset = typeof args.at(-1) === 'string' && START_OFFSET.test(args.at(-1)) ? args.pop() : null;
      socket.reports.push({ ...args[0], offset, replayed: sinceDisconnect.slice() });
      return;
    }
    const offset = args.length > 0 && typeof args.at(-1) === 'string' && OFFSET.test(args.at(-1)) ? args.pop() : null;
    socket.events.push({ event, args, offset });
    sinceDisconnect.push({ event, args });
    if (event === 'count') {
      socket.counts.push(args[0].n);
      socket.offsets.push(offset);
    }
  });
  // After onAny above, as an app would call it right after io(): the helper sees the same events.
  if (helper) helper(socket);
  return socket;
}

/** Resolves once `socket` has its `n`-th recovery report; returns it. */
function report(socket, n) {
  return waitUntil(() => socket.reports[n - 1], {
    ms: DEADLINE,
    what: `recovery report #${n} of ${socket.label} (reports ${JSON.stringify(socket.reports.map((r) => r.status))}, errors ${JSON.stringify(socket.errors)})`,
  });
}

/** Stops `publisher`, publishes the end marker and waits until every socket has received it. */
async function finish(publisher, url, cookie, clients) {
  await publisher.stop();
  const res = await publish(url, { channel: 'done', body: 'end' }, { cookie });
  assert.equal(res.status, 200);
  for (const s of clients) {
    await waitUntil(() => s.events.some((e) => e.event === 'done'), { ms: DEADLINE, what: `the end marker at ${s.label}` });
  }
}

/**
 * Every acknowledged event reached `socket` exactly once and in order: the numbers it received
 * strictly increase (no duplicate, no reordering), are numbers that were published, and include
 * every acknowledged one; their offsets strictly increase too.
 */
function assertEveryAcknowledged(socket, publisher) {
  const got = socket.counts;
  for (let i = 1; i < got.length; i++) {
    assert.ok(got[i] > got[i - 1], `${socket.label}: event ${got[i]} after ${got[i - 1]} (duplicate or out of order)`);
    assert.ok(socket.offsets[i] > socket.offsets[i - 1], `${socket.label}: offsets ${socket.offsets[i - 1]} then ${socket.offsets[i]}`);
  }
  const received = new Set(got);
  const missing = publisher.acked.filter((n) => !received.has(n));
  assert.deepEqual(missing, [], `${socket.label}: acknowledged events never received (${missing.length} of ${publisher.acked.length})`);
  assert.ok(got.every((n) => Number.isInteger(n) && n < publisher.next), `${socket.label}: numbers never published`);
  // Received but not acknowledged: only events whose POST got no answer.
  const extra = got.filter((n) => !publisher.acked.includes(n));
  assert.ok(extra.length <= publisher.failed.length, `${socket.label}: ${extra.length} unacknowledged events received`);
  assert.ok(socket.offsets.every((o) => OFFSET.test(o)), `${socket.label}: an event without its offset`);
}

/** The recovery report after a reconnect: `recovered`, with the count of events replayed. */
function assertRecovered(socket, n) {
  const r = socket.reports[n - 1];
  assert.equal(r.status, 'recovered', `${socket.label}: report #${n} ${JSON.stringify(r)}`);
  assert.ok(r.recovered > 0, `${socket.label}: events were missed while away, none recovered`);
  assert.equal(r.recovered, r.replayed.length, `${socket.label}: the count is the events replayed before the report`);
  assert.ok(r.replayed.every((e) => e.event === 'count'));
  assert.match(r.offset, OFFSET);
}

/** The number of sockets connected to the node at `url`, from its `/metrics`. */
async function socketsOn(url) {
  const text = await (await fetch(new URL('metrics', url))).text();
  const m = text.match(/^sidecast_sockets_connected (\d+)$/m);
  assert.ok(m, 'sidecast_sockets_connected in /metrics');
  return Number(m[1]);
}

async function logout(url, cookie) {
  const res = await fetch(new URL('logout', url), { headers: { Cookie: cookie } });
  assert.equal(res.status, 200, await res.text());
}

describe('two nodes on one redis, recovering on the same node', { concurrency: 1, skip: NEEDS_REDIS }, () => {
  let a;
  let b;
  let cookie;
  let helper;
  before(async () => {
    if (NEEDS_REDIS) return;
    const extraEnv = {
      // Server-side sessions, so that a logout revokes the cookie (the cookie store cannot).
      SIDECAST_SESSION__STORE: 'redis',
      SIDECAST_AUTH__POLICY: '["session", "token"]',
      SIDECAST_AUTH__TOKENS__ALICE: 'alice-token',
      SIDECAST_AUTH__TOKENS__BOB: 'bob-token',
    };
    [a, b] = await Promise.all([
      h.startServer({ label: 'node-a', channel: 'e2e-recovery', cluster: true, extraEnv }),
      h.startServer({ label: 'node-b', channel: 'e2e-recovery', cluster: true, extraEnv }),
    ]);
    ({ cookie } = await login(a.url));
    helper = await servedHelper(a.url);
  });

  test('a client that had received no event recovers from the starting offset it was given', h.withLogs(async () => {
    const socket = connect(a.url, { cookie, helper });
    const first = await report(socket, 1);
    assert.deepEqual({ status: first.status, recovered: first.recovered }, { status: 'new', recovered: 0 });
    assert.match(first.offset, START_OFFSET, 'the report carries the starting offset');
    assert.equal(socket.sidecast.offset, first.offset, 'the helper kept it');
    assert.deepEqual(socket.events, []);

    // Away (no automatic reconnect, so the events are surely missed), then back.
    socket.io.reconnection(false);
    socket.io.engine.close();
    await waitUntil(() => socket.disconnects.length === 1, { what: 'the disconnect' });
    for (let n = 0; n < 5; n++) {
      assert.equal((await publish(b.url, { channel: 'count', body: { n } }, { cookie })).status, 200);
    }
    socket.io.reconnection(true);
    socket.connect();
    const second = await report(socket, 2);
    assert.equal(second.status, 'recovered', JSON.stringify(second));
    assert.equal(second.recovered, 5);
    assert.deepEqual(socket.counts, [0, 1, 2, 3, 4]);
    assert.deepEqual(second.replayed.map((e) => e.args[0].n), [0, 1, 2, 3, 4], 'replayed before the report');
    assert.equal(second.offset, socket.offsets.at(-1), 'live from the last event replayed');
    socket.close();
  }));

  test('alice recovers her events and everyone\'s, never bob\'s', h.withLogs(async () => {
    const alice = connect(a.url, { auth: { token: 'alice-token' }, helper });
    const bob = connect(b.url, { auth: { token: 'bob-token' }, helper });
    await Promise.all([report(alice, 1), report(bob, 1)]);
    alice.io.reconnection(false);
    alice.io.engine.close();
    await waitUntil(() => alice.disconnects.length === 1, { what: 'alice\'s disconnect' });
    for (const [body, to] of [['bob-secret', 'user:bob'], ['for-alice', 'user:alice'], ['for-all', undefined]]) {
      const res = await publish(a.url, { channel: 'note', body, to }, { cookie });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    await waitUntil(() => bob.events.length === 2, { what: 'bob\'s two events' });
    assert.deepEqual(bob.events.map((e) => e.args[0]), ['bob-secret', 'for-all'], 'bob\'s event exists and is delivered to bob');
    alice.io.reconnection(true);
    alice.connect();
    const r = await report(alice, 2);
    assert.equal(r.status, 'recovered');
    assert.deepEqual(r.replayed.map((e) => e.args[0]), ['for-alice', 'for-all']);
    assert.equal(r.recovered, 2);
    assert.deepEqual(alice.events.map((e) => e.args[0]), ['for-alice', 'for-all']);
    alice.close();
    bob.close();
  }));

  test('forged or malformed offsets: a clean report, live events, never another user\'s', h.withLogs(async () => {
    const forged = {
      'not an offset': ['abc', ['unknown']],
      'a number too large, short second part': ['99999999999999999999-0', ['unknown']],
      'numbers too large for the history': ['99999999999999999999-99999999999999999999', ['unknown']],
      'after the end of the history': ['18446744073709551615-18446744073709551615', ['unknown']],
      'a huge string (90 KB)': ['9'.repeat(90_000), ['unknown']],
      'the whole history (zero)': ['00000000000000000000-00000000000000000000', ['recovered', 'trimmed']],
      'the whole history (start)': ['0', ['recovered', 'trimmed']],
      'no offset yet (a first connect)': ['', ['new']],
      'null': [null, ['new']],
      'not a string': [12345, ['unknown']],
      'an object': [{ $gt: '' }, ['unknown']],
    };
    const clients = {};
    for (const [name, [offset]] of Object.entries(forged)) {
      clients[name] = connect(a.url, { auth: { token: 'alice-token', offset }, reconnection: false });
      clients[name].label = `alice, offset ${name}`;
    }
    for (const [name, [, statuses]] of Object.entries(forged)) {
      const socket = clients[name];
      const r = await report(socket, 1);
      assert.ok(statuses.includes(r.status), `${name}: status ${r.status}, expected ${statuses}`);
      assert.match(r.offset, START_OFFSET, `${name}: a starting offset to recover from next time`);
      assert.ok(socket.connected, `${name}: still connected`);
      // Whatever was replayed was alice's or everyone's (the history holds bob's "bob-secret").
      const texts = r.replayed.map((e) => e.args[0]);
      assert.ok(!texts.includes('bob-secret'), `${name}: replayed bob's event: ${JSON.stringify(texts)}`);
      if (r.status === 'recovered') assert.ok(texts.includes('for-alice') && texts.includes('for-all'), `${name}: ${JSON.stringify(texts)}`);
      else assert.deepEqual(texts, [], `${name}: nothing replayed`);
    }
    const live = await publish(b.url, { channel: 'note', body: 'live' }, { cookie });
    assert.equal(live.status, 200);
    for (const [name, socket] of Object.entries(clients)) {
      await waitUntil(() => socket.events.some((e) => e.args[0] === 'live'), { what: `the live event at ${name}` });
      assert.ok(socket.connected, `${name}: still connected`);
      assert.deepEqual(socket.disconnects, [], `${name}: never disconnected`);
      assert.ok(!socket.events.some((e) => e.args[0] === 'bob-secret'), `${name}: got bob's event`);
      socket.close();
    }
  }));

  test('a transport closed under load: every acknowledged event once, in order, the missed ones recovered', h.withLogs(async (t) => {
    // Clients of both nodes, latest and 4.0.0, on the default transport (polling, then upgrade)
    // and websocket only; each closes its transport at a different moment.
    const clients = [
      connect(a.url, { cookie, helper }),
      connect(b.url, { cookie, helper, transports: ['websocket'] }),
      connect(a.url, { cookie, helper, client: CLIENTS['4.0.0'] }),
      connect(b.url, { cookie, helper, client: CLIENTS['4.0.0'], transports: ['websocket'] }),
    ];
    await Promise.all(clients.map((s) => report(s, 1)));
    const publisher = new Publisher([a.url, b.url], { cookie }).start();
    try {
      for (const [i, socket] of clients.entries()) {
        const at = 20 + 30 * i;
        await waitUntil(() => socket.counts.length >= at, { ms: DEADLINE, what: `${at} events at ${socket.label}` });
        // What a lost network does: the transport closes, the client reconnects by itself
        // (after its randomized delay, 0.5-1.5 s) to the same node.
        socket.io.engine.close();
      }
      await Promise.all(clients.map((s) => report(s, 2)));
      // Live again: more events after every switch from replay to live.
      await publisher.acknowledged(50);
    } finally {
      await finish(publisher, a.url, cookie, clients);
    }
    for (const socket of clients) {
      assert.equal(socket.disconnects.length, 1, `${socket.label}: ${socket.disconnects}`);
      assertRecovered(socket, 2);
      assertEveryAcknowledged(socket, publisher);
      t.diagnostic(`${socket.label}: ${publisher.acked.length} acknowledged, ${socket.counts.length} received, ${socket.reports[1].recovered} recovered`);
    }
    assert.deepEqual(publisher.failed, [], 'every POST answered 200');
  }));

  test('a logout ends recovery: the old cookie and its offset are refused on every node', h.withLogs(async () => {
    const { cookie: session } = await login(a.url);
    const socket = connect(a.url, { cookie: session, helper });
    await report(socket, 1);
    assert.equal((await publish(a.url, { channel: 'note', body: 'before-logout' }, { cookie })).status, 200);
    await waitUntil(() => socket.events.length === 1, { what: 'the event before the logout' });
    const offset = socket.sidecast.offset;
    assert.match(offset, OFFSET);

    await logout(a.url, session);
    await waitUntil(() => socket.disconnects.length === 1, { what: 'the disconnect by the logout' });
    assert.equal(socket.disconnects[0], 'io server disconnect');
    const { cookie: other } = await login(b.url);
    assert.equal((await publish(b.url, { channel: 'note', body: 'after-logout' }, { cookie: other })).status, 200);

    for (const node of [a, b]) {
      const again = connect(node.url, { cookie: session, auth: { offset }, reconnection: false });
      await waitUntil(() => again.errors.length > 0, { what: `the refusal by ${node.url}` });
      assert.match(again.errors[0], /unauthori[sz]ed/i);
      assert.deepEqual(again.events, []);
      assert.deepEqual(again.reports, []);
    }
    // The same offset with a live session recovers what was missed: the refusal is the logout's.
    const control = connect(b.url, { cookie: other, auth: { offset }, reconnection: false });
    const r = await report(control, 1);
    assert.equal(r.status, 'recovered');
    assert.deepEqual(r.replayed.map((e) => e.args[0]), ['after-logout']);
  }));
});

// The load balancers: the harness' TCP proxy (each new connection to the first node that accepts
// it), and nginx with deploy/nginx.conf as shipped (ip_hash: every loopback client to one node).
const BALANCERS = {
  'a TCP proxy': {
    skip: false,
    async start(nodes) {
      const proxy = await startProxy(nodes.map((n) => n.url));
      proxies.push(proxy);
      return proxy.url;
    },
  },
  'nginx with deploy/nginx.conf': {
    skip: NEEDS_NGINX,
    start: (nodes) => startNginx(h, nodes.map((n) => n.url)),
  },
};

for (const [balancer, { skip, start }] of Object.entries(BALANCERS)) {
  describe(`a node stopped behind ${balancer}: its clients recover on the other node`, { concurrency: 1, skip: NEEDS_REDIS || skip }, () => {
    let nodes;
    let url;
    let cookie;
    let helper;
    before(async () => {
      if (NEEDS_REDIS || skip) return;
      const extraEnv = { SIDECAST_SERVER__SHUTDOWN_JITTER_MS: '500' };
      const channel = `e2e-recovery-rolling-${balancer.split(' ')[0].toLowerCase()}`;
      nodes = await Promise.all(['c', 'd'].map((name) =>
        h.startServer({ label: `node-${name} (${balancer})`, channel, cluster: true, extraEnv })));
      url = await start(nodes);
      ({ cookie } = await login(url));
      helper = await servedHelper(url);
    });

    test('SIGTERM on the clients\' node while events flow: no acknowledged event lost or duplicated at any client', h.withLogs(async (t) => {
      // Websocket only: one TCP connection per client, so no sticky sessions are needed.
      const clients = [CLIENTS.latest, CLIENTS.latest, CLIENTS.latest, CLIENTS['4.0.0']].map((client) =>
        connect(url, { cookie, helper, client, transports: ['websocket'] }));
      await Promise.all(clients.map((s) => report(s, 1)));
      const counts = await Promise.all(nodes.map((n) => socketsOn(n.url)));
      const from = counts.indexOf(clients.length);
      assert.ok(from >= 0, `every client on one node (sockets per node: ${counts})`);
      const [stopping, other] = [nodes[from], nodes[1 - from]];
      // The publisher goes through the load balancer too, as a service behind it would.
      const publisher = new Publisher([url], { cookie }).start();
      try {
        await waitUntil(() => clients.every((s) => s.counts.length >= 30), { ms: DEADLINE, what: '30 events at every client' });
        const stopped = await stopping.proc.stop({ ms: 15_000 });
        assert.deepEqual(stopped, { code: 0, signal: null }, 'the node shut down gracefully');
        await Promise.all(clients.map((s) => report(s, 2)));
        await publisher.acknowledged(50);
      } finally {
        await finish(publisher, url, cookie, clients);
      }
      assert.equal(await socketsOn(other.url), clients.length, 'every client is now on the other node');
      for (const socket of clients) {
        assert.deepEqual(socket.disconnects, ['transport close'], `${socket.label}: the stopping node closed the transport`);
        assert.ok(socket.connected);
        assertRecovered(socket, 2);
        assertEveryAcknowledged(socket, publisher);
        t.diagnostic(`${socket.label}: ${publisher.acked.length} acknowledged, ${socket.counts.length} received, ${socket.reports[1].recovered} recovered on the other node`);
      }
      t.diagnostic(`POSTs without a 200 while the node stopped: ${publisher.failed.length} ${JSON.stringify(publisher.failed)}`);
    }));
  });
}
