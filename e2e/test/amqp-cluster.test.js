// RabbitMQ cluster failover under load, on the test kit's three-node cluster (one cluster for the
// file, started by `sidecast-rabbitmq-cluster`, lib/rabbitmq-cluster.js): two nodes with recovery
// on (the default), so that the history is a stream queue with a replica on each RabbitMQ node,
// each given every URL but starting at a different RabbitMQ node (A at node 0, B at node 1);
// official socket.io clients on each (default transport and websocket-only); a publisher at
// 50 events/s through `POST /api/` alternating between the nodes. SIGKILL (1) the RabbitMQ node
// A is connected to, then, with it back, (2) the node that leads the channel's stream: every
// acknowledged event reaches every client exactly once and in order, meanwhile `POST /api/`
// answers 503 with Retry-After and never hangs, and the node that lost its RabbitMQ node
// acknowledges publishes again. The times (kill to reconnect, to the first acknowledged
// publish, to the first delivery) are printed as figures, not asserted: they depend on the
// machine.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CLIENTS, Harness, NEEDS_REDIS, login, nextEvent, record, waitUntil } from '../lib/harness.js';
import { Publisher } from '../lib/publisher.js';
import { RabbitMqClusterSet } from '../lib/rabbitmq-cluster.js';

const h = new Harness('amqp-cluster');
const sockets = [];
let cluster;
after(async () => {
  for (const s of sockets) s.close();
  await cluster?.stop();
  await h.close();
});

const CHANNEL = 'e2e-amqp-cluster';
/** The channel's history stream queue (AmqpOptions::history_queue_prefix + channel). */
const QUEUE = `sidecast.history.${CHANNEL}`;
/** How long a node may take to acknowledge a publish again after a kill before the test fails. */
const RECOVERY_DEADLINE_MS = 30_000;

/** An official client on `url`, logged in with `cookie`; `websocket` skips long-polling. */
function connect(url, cookie, { websocket = false, label }) {
  const socket = CLIENTS.latest.io(url, {
    path: '/ws/socket.io',
    forceNew: true,
    extraHeaders: { Cookie: cookie },
    transports: websocket ? ['websocket'] : undefined,
  });
  socket.label = label;
  record(socket);
  // When each event arrived, for the time from the kill to the first delivery.
  socket.arrivals = new Map();
  socket.on('message', (body) => socket.arrivals.set(number(body), Date.now()));
  sockets.push(socket);
  return socket;
}

/** The number of event body `amqp-<test>-<n>`. */
function number(body) {
  return Number(String(body).split('-').pop());
}

/** The event numbers a socket received on `message` with `prefix`, in arrival order. */
function numbers(socket, prefix) {
  return socket.received
    .filter((r) => r.event === 'message' && String(r.args[0]).startsWith(prefix))
    .map((r) => number(r.args[0]));
}

/**
 * The RabbitMQ node (index) a Sidecast node is connected to now, from the last node of the
 * cluster it logged connecting to (its first connection may already have moved: two nodes
 * creating the stream at once can make RabbitMQ close one's connection).
 */
function rabbitOf(node) {
  const lines = node.proc.lines.filter((l) => /amqp (re)?connected to a node of the cluster/.test(l));
  const port = Number(lines.at(-1)?.match(/url=\S*?:(\d+)\//)?.[1]);
  const index = cluster.ports.indexOf(port);
  assert.ok(index >= 0, `${node.label} logged no connection to a node of the cluster`);
  return index;
}

/** When (ms since the epoch) `node` logged its first reconnect to a RabbitMQ node after `since`. */
function reconnectedAt(node, since) {
  for (const line of node.proc.lines) {
    if (!line.includes('amqp reconnected to a node of the cluster')) continue;
    const at = Date.parse(line.split(/\s+/)[0]);
    if (at >= since) return at;
  }
  return null;
}

describe('RabbitMQ cluster failover under load', { skip: NEEDS_REDIS, concurrency: 1 }, () => {
  let a;
  let b;
  let cookie;
  before(async () => {
    if (NEEDS_REDIS) return;
    const started = Date.now();
    cluster = await new RabbitMqClusterSet(h).start();
    console.log(`three-node RabbitMQ cluster started in ${Date.now() - started} ms`);
    h.useAmqp(cluster.urlList(0));
    const node = (label, first) => h.startServer({
      label,
      channel: CHANNEL,
      cluster: true,
      broker: 'amqp',
      extraEnv: { SIDECAST_BROKER__URL: cluster.urlList(first) },
    });
    // In order, A connects to node 0 and B to node 1 (unless a first connection failed).
    [a, b] = await Promise.all([node('A', 0), node('B', 1)]);
    a.label = 'A';
    b.label = 'B';
    ({ cookie } = await login(a.url));
  }, { timeout: 240_000 }); // the cluster's start: ~20 s here, far more on a busy machine

  /**
   * Four clients, the publisher at 50 events/s alternating between A and B, `kill()` (resolves
   * with the time of the SIGKILL) after 50 acknowledged events, 50 more acknowledged after it;
   * then the checks, and the figures.
   */
  async function underLoad(name, kill) {
    const prefix = `amqp-${name}-`;
    const clients = [
      connect(a.url, cookie, { label: `A polling+ws (${name})` }),
      connect(a.url, cookie, { websocket: true, label: `A websocket (${name})` }),
      connect(b.url, cookie, { label: `B polling+ws (${name})` }),
      connect(b.url, cookie, { websocket: true, label: `B websocket (${name})` }),
    ];
    await Promise.all(clients.map((s) => nextEvent(s, 'connect')));

    const publisher = new Publisher([a.url, b.url], {
      cookie,
      channel: 'message',
      body: (n) => `${prefix}${n}`,
      interval: 20,
      deadline: RECOVERY_DEADLINE_MS,
    }).start();
    await publisher.acknowledged(50);
    const { killedAt, victims } = await kill();
    await publisher.acknowledged(50);
    // Each node whose RabbitMQ node died acknowledges again (not only the other one).
    for (const node of victims) {
      await waitUntil(
        () => publisher.attempts.some((t) => t.status === 200 && t.sent > killedAt && t.url === node.url),
        { ms: RECOVERY_DEADLINE_MS, what: `an acknowledged publish through ${node.label} after the kill` },
      );
    }
    await publisher.stop();

    const acked = publisher.acked;
    const last = acked[acked.length - 1];
    for (const socket of clients) {
      await waitUntil(() => numbers(socket, prefix).includes(last), {
        ms: 20_000,
        what: `${socket.label}: event ${last} (has ${numbers(socket, prefix).length})`,
      });
    }
    let duplicated = 0;
    let lost = 0;
    for (const socket of clients) {
      const got = numbers(socket, prefix);
      for (let i = 1; i < got.length; i++) {
        if (got[i] <= got[i - 1]) duplicated++;
        assert.ok(got[i] > got[i - 1], `${socket.label}: ${got[i]} after ${got[i - 1]} (duplicate or out of order)`);
      }
      const missing = acked.filter((n) => !got.includes(n));
      lost += missing.length;
      assert.deepEqual(missing, [], `${socket.label}: acknowledged events never delivered`);
    }
    const refused = publisher.attempts.filter((t) => t.status !== 200);
    for (const t of refused) {
      assert.equal(t.status, 503, `event ${t.n}: ${t.status} instead of 503`);
      assert.ok(t.retryAfter, `event ${t.n}: 503 without Retry-After`);
    }
    const slowest = Math.max(...publisher.attempts.map((t) => t.answered - t.sent));
    assert.ok(slowest < 10_000, `a POST took ${slowest} ms`);

    // Figures, not assertions.
    const afterKill = publisher.attempts.filter((t) => t.status === 200 && t.sent > killedAt);
    const firstAck = afterKill[0];
    const parts = [];
    for (const node of victims) {
      const reconnected = reconnectedAt(node, killedAt);
      const ack = afterKill.find((t) => t.url === node.url);
      parts.push(`${node.label}: kill->reconnect ${reconnected ? reconnected - killedAt : '?'} ms, `
        + `kill->first acknowledged publish through it ${ack.answered - killedAt} ms`);
    }
    const firstDelivery = Math.min(...clients.flatMap((s) => afterKill.map((t) => s.arrivals.get(t.n) ?? Infinity)));
    const figures = `${parts.join('; ')}; kill->first acknowledged publish (either node) ${firstAck.answered - killedAt} ms, `
      + `kill->first delivery ${firstDelivery - killedAt} ms, 503 answers ${refused.length}, slowest POST ${slowest} ms, `
      + `acknowledged ${acked.length}, lost ${lost}, duplicated ${duplicated}`;
    h.logs.push(`[figures] ${figures}`);
    console.log(`RabbitMQ cluster, ${name}: ${figures}`);
    for (const socket of clients) socket.close();
  }

  // Each with the killed node's restart (seconds, more on a busy machine).
  test('SIGKILL of the RabbitMQ node a Sidecast node is connected to', { timeout: 180_000 }, h.withLogs(async () => {
    const killed = rabbitOf(a);
    await underLoad('connected-node', async () => {
      const victims = [a, b].filter((n) => rabbitOf(n) === killed);
      console.log(`killing node ${killed}; Sidecast nodes on it: ${victims.map((n) => n.label).join(', ')}`);
      return { killedAt: await cluster.kill(killed), victims };
    });
    await cluster.restart(killed);
  }));

  test('SIGKILL of the RabbitMQ node that leads the stream', { timeout: 180_000 }, h.withLogs(async () => {
    const { leader } = await waitUntil(async () => {
      const node = await cluster.leader(QUEUE);
      return node === null ? false : { leader: node };
    }, { ms: 20_000, every: 200, what: `a leader for ${QUEUE}` });
    await underLoad('stream-leader', async () => {
      const victims = [a, b].filter((n) => rabbitOf(n) === leader);
      console.log(`killing node ${leader}, the stream's leader; Sidecast nodes on it: ${victims.map((n) => n.label).join(', ') || 'none'}`);
      return { killedAt: await cluster.kill(leader), victims };
    });
  }));
});
