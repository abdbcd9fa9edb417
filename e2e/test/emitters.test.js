// Existing emitters reach Sidecast's clients unchanged, and Sidecast drives an existing
// Flask-SocketIO server: the real python-socketio / Flask-SocketIO (from e2e/.venv, see
// e2e/python/requirements.txt) and the real @socket.io/redis-emitter, against `sidecast serve`
// with `[[broker.ingress]]` on a real redis-server, received by the official socket.io-client.
// The same through kombu and RabbitMQ: cli/tests/emitters_amqp.rs.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Emitter } from '@socket.io/redis-emitter';
import { createClient } from 'redis';

import { CLIENTS, E2E_DIR, Harness, NEEDS_REDIS, REPO_ROOT, nextEvent, waitUntil, record } from '../lib/harness.js';

/** The Python with python-socketio, Flask-SocketIO, redis and kombu (scripts/test installs it). */
const PYTHON = process.env.E2E_PYTHON || path.join(E2E_DIR, '.venv', 'bin', 'python');
const PY_DIR = path.join(E2E_DIR, 'python');
const FIXTURES = path.join(REPO_ROOT, 'core', 'tests', 'fixtures', 'ingress');

const INGRESS = '[{format="python-socketio"}, {format="node-emitter"}]';
const TOKENS = { alice: 'alice-token', bob: 'bob-token' };

const h = new Harness('emitters');
const sockets = [];
let redis;
after(async () => {
  for (const s of sockets) s.close();
  if (redis?.isOpen) await redis.quit();
  await h.close();
});

/** An official client with a record of every event; `user` sets the token (room `user:<user>`). */
function connect(url, { user, path: socketPath = '/ws/socket.io', query } = {}) {
  const socket = CLIENTS.latest.io(url, {
    path: socketPath,
    forceNew: true,
    auth: user ? { token: TOKENS[user] } : undefined,
    query,
  });
  socket.received = [];
  record(socket, (event, args) => socket.received.push([event, ...args]));
  sockets.push(socket);
  return socket;
}

/** Runs a Python program of the venv; resolves with its stdout, rejects with its output. */
function python(args) {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { cwd: h.dir, timeout: 20_000 }, (err, stdout, stderr) => {
      h.logs.push(`[python ${args.join(' ').slice(0, 120)}] exit ${err ? err.code ?? err.signal : 0}`);
      if (stderr.trim()) h.logs.push(`[python] stderr: ${stderr.trim()}`);
      if (err) reject(new Error(`python ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** e2e/python/emit.py: the original's `SocketIO(message_queue=URL).emit(EVENT, DATA, to=ROOM)`. */
function pyEmit(event, data, { to } = {}) {
  const args = [path.join(PY_DIR, 'emit.py'), h.redisUrl, event, JSON.stringify(data)];
  if (to) args.push('--to', to);
  return python(args);
}

/** Waits until every socket has received `marker`; returns and clears what each received. */
async function takeUntil(marker, ...clients) {
  await waitUntil(() => clients.every((s) => s.received.some(([e]) => e === marker)), {
    what: `"${marker}" on every client`,
  });
  return clients.map((s) => {
    const events = s.received.splice(0).filter(([e]) => e !== marker);
    return events;
  });
}

async function metrics(url) {
  const res = await fetch(new URL('metrics', url));
  assert.equal(res.status, 200);
  return res.text();
}

describe('existing emitters reach Sidecast clients', { concurrency: 1, skip: NEEDS_REDIS }, () => {
  let node;
  let alice;
  let bob;
  before(async () => {
    assert.ok(
      fs.existsSync(PYTHON),
      `${PYTHON} is missing: run scripts/test, which creates it, or python3 -m venv e2e/.venv && ` +
        'e2e/.venv/bin/pip install -r e2e/python/requirements.txt',
    );
    node = await h.startServer({
      label: 'node',
      channel: 'e2e-emitters',
      extraEnv: {
        SIDECAST_BROKER__INGRESS: INGRESS,
        SIDECAST_AUTH__POLICY: 'token',
        SIDECAST_AUTH__TOKENS__ALICE: TOKENS.alice,
        SIDECAST_AUTH__TOKENS__BOB: TOKENS.bob,
      },
    });
    alice = connect(node.url, { user: 'alice' });
    bob = connect(node.url, { user: 'bob' });
    await Promise.all([nextEvent(alice, 'connect'), nextEvent(bob, 'connect')]);
    redis = createClient({ url: h.redisUrl });
    await redis.connect();
  });

  test("the original's external script: SocketIO(message_queue=…).emit('message', 'Hi')", h.withLogs(async () => {
    await python([
      '-c',
      `from flask_socketio import SocketIO; SocketIO(message_queue='${h.redisUrl}').emit('message', 'Hi')`,
    ]);
    await pyEmit('marker', 1);
    const [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['message', 'Hi']]);
    assert.deepEqual(b, [['message', 'Hi']]);
  }));

  test("python-socketio's emit(…, to=room) reaches only that room", h.withLogs(async () => {
    await pyEmit('news', { title: 'Release', unread: 3 }, { to: 'user:alice' });
    await pyEmit('marker', 1);
    const [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['news', { title: 'Release', unread: 3 }]]);
    assert.deepEqual(b, []);
  }));

  test('python-socketio: several arguments, none, a list as one argument', h.withLogs(async () => {
    await python([
      '-c',
      [
        'from flask_socketio import SocketIO',
        `s = SocketIO(message_queue='${h.redisUrl}')`,
        "s.emit('move', (3, 4))",
        "s.emit('ping')",
        "s.emit('list', [1, 2])",
        "s.emit('marker', 1)",
      ].join('\n'),
    ]);
    const [a] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['move', 3, 4], ['ping'], ['list', [1, 2]]]);
  }));

  test("Node's @socket.io/redis-emitter: to everyone and to one room", h.withLogs(async () => {
    const io = new Emitter(redis);
    io.emit('message', 'from node', { n: 1 });
    io.to('user:bob').emit('private', 'for bob');
    io.except('user:bob').emit('not-bob', 'for alice');
    io.emit('marker', 1);
    const [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['message', 'from node', { n: 1 }], ['not-bob', 'for alice']]);
    assert.deepEqual(b, [['message', 'from node', { n: 1 }], ['private', 'for bob']]);
  }));

  test("Node's @socket.io/redis-emitter: socketsJoin, socketsLeave, disconnectSockets; serverSideEmit unsupported", h.withLogs(async () => {
    const io = new Emitter(redis);
    // One Redis connection publishes requests and events in order; the node applies them in order.
    io.in('user:alice').socketsJoin('game:1');
    io.to('game:1').emit('move', 'e4');
    io.in('user:alice').socketsLeave('game:1');
    io.to('game:1').emit('move', 'lost');
    io.except('user:bob').socketsJoin(['game:2', 'game:3']);
    io.to('game:3').emit('in-game-3', 'everyone but bob');
    io.emit('marker', 1);
    let [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['move', 'e4'], ['in-game-3', 'everyone but bob']]);
    assert.deepEqual(b, []);

    io.serverSideEmit('hello', 'nodes');
    io.serverSideEmit('hello', 'again');
    await node.proc.waitForLine(/unsupported node-emitter request `server_side_emit`/, { what: 'the unsupported request warning' });
    io.in('game:2').socketsLeave('game:2');
    io.emit('marker', 2);
    [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual([a, b], [[], []]);
    assert.match(await metrics(node.url), /^sidecast_events_dropped_total\{reason="unsupported_request"\} 2$/m);
    // Counted every time, logged once.
    assert.equal(node.proc.lines.filter((l) => /WARN.*unsupported node-emitter request/.test(l)).length, 1);

    // One socket by its id, as socket.io servers do.
    const extra = connect(node.url, { user: 'bob' });
    await nextEvent(extra, 'connect');
    const closed = nextEvent(extra, 'disconnect');
    io.in(extra.id).disconnectSockets(true);
    assert.equal((await closed)[0], 'io server disconnect');
    io.emit('marker', 3);
    [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual([a, b], [[], []]);
    assert.ok(alice.connected && bob.connected);
  }));

  test("python-socketio's write-only manager: enter_room, leave_room, close_room by sid; a server's disconnect", h.withLogs(async () => {
    await python([
      '-c',
      [
        'import socketio, sys',
        `m = socketio.RedisManager('${h.redisUrl}', channel='flask-socketio', write_only=True)`,
        'sid = sys.argv[1]',
        "m.enter_room(sid, '/', 'game:py')",
        "m.emit('move', 'py', room='game:py')",
        "m.leave_room(sid, '/', 'game:py')",
        "m.emit('move', 'lost', room='game:py')",
        "m.enter_room(sid, '/', 'game:closed')",
        "m.close_room('game:closed', '/')",
        "m.emit('move', 'closed', room='game:closed')",
        "m.emit('marker', 1)",
      ].join('\n'),
      alice.id,
    ]);
    const [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['move', 'py']]);
    assert.deepEqual(b, []);

    // A Flask-SocketIO server publishes `disconnect` for a sid another host holds
    // (its write-only manager cannot: it has no server to disconnect locally first).
    const extra = connect(node.url, { user: 'alice' });
    await nextEvent(extra, 'connect');
    const closed = nextEvent(extra, 'disconnect');
    await python([
      '-c',
      [
        'import socketio, sys',
        `m = socketio.RedisManager('${h.redisUrl}', channel='flask-socketio', write_only=True)`,
        "m._publish({'method': 'disconnect', 'sid': sys.argv[1], 'namespace': '/', 'host_id': m.host_id})",
      ].join('\n'),
      extra.id,
    ]);
    assert.equal((await closed)[0], 'io server disconnect');
    assert.ok(alice.connected);
  }));

  test('a pickle message (python-socketio 5.13) is refused and counted; the node keeps serving', h.withLogs(async () => {
    // The bytes python-socketio 5.13.0 published for emit('message', 'Hi').
    const pickle = fs.readFileSync(path.join(FIXTURES, 'python-socketio', '5.13.0-pickle-message-hi.bin'));
    assert.equal(pickle[0], 0x80);
    assert.equal(await redis.publish('flask-socketio', pickle), 1, 'the node is subscribed');
    await node.proc.waitForLine(/pickled message refused.*upgrade/, { what: 'the pickle warning' });
    await pyEmit('after-pickle', 'still serving');
    await pyEmit('marker', 1);
    const [a, b] = await takeUntil('marker', alice, bob);
    assert.deepEqual(a, [['after-pickle', 'still serving']]);
    assert.deepEqual(b, [['after-pickle', 'still serving']]);
    const text = await metrics(node.url);
    assert.match(text, /^sidecast_events_dropped_total\{reason="pickle"\} 1$/m);
    assert.match(text, /^sidecast_bus_messages_received_total\{source="python-socketio"\} \d+$/m);
    assert.match(text, /^sidecast_bus_messages_received_total\{source="node-emitter"\} [1-9]\d*$/m);
  }));
});

describe('Sidecast drives an existing Flask-SocketIO server', { concurrency: 1, skip: NEEDS_REDIS }, () => {
  test('sidecast emit --format python-socketio reaches a client of a real Flask-SocketIO server', h.withLogs(async () => {
    await h.startRedis();
    const flask = h.spawn('flask', PYTHON, [path.join(PY_DIR, 'flask_server.py'), h.redisUrl]);
    const [, url] = await flask.waitForLine(/^listening (http:\S+)/, { what: 'the Flask-SocketIO URL' });
    const client = connect(url, { path: '/socket.io', query: { room: 'jobs' } });
    await nextEvent(client, 'connect');
    // python-socketio subscribes to Redis when its first client connects, in a background
    // thread: emit until it listens.
    await waitUntil(
      async () => {
        await h.emit('probe', 'x', { format: 'python-socketio' });
        return client.received.length > 0;
      },
      { what: 'the Flask-SocketIO server to relay a probe', every: 200 },
    );
    await h.emit('message', 'Hi', { format: 'python-socketio', to: ['jobs'] });
    await h.emit('message', 'elsewhere', { format: 'python-socketio', to: ['other-room'] });
    await h.emit('multi', { k: [1, 2] }, { format: 'python-socketio', json: true });
    await h.emit('marker', '1', { format: 'python-socketio' });
    const [events] = await takeUntil('marker', client);
    assert.deepEqual(
      events.filter(([e]) => e !== 'probe'),
      [['message', 'Hi'], ['multi', { k: [1, 2] }]],
    );
  }));
});
