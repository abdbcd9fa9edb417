// Redis failover under load, on a Sentinel set (a master, two replicas, three sentinels: the
// master is killed) and on a Redis Cluster (three primaries with two replicas each: the primary of
// the channel's slot is killed): two nodes with `broker.min_replicas = 1`, official socket.io
// clients on each (default transport and websocket-only) and the page in Chromium, a publisher at
// 50 events/s through `POST /api/` alternating between the nodes, the kill mid-stream: every
// acknowledged event reaches every client exactly once and in order, and meanwhile `POST /api/`
// answers 503 with Retry-After, never 200 for an event that is then lost, and never hangs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CLIENTS, Harness, NEEDS_REDIS, login, nextEvent, publish, record, waitUntil } from '../lib/harness.js';
import { launchChromium } from '../lib/browser.js';
import { Publisher } from '../lib/publisher.js';
import { RedisClusterSet } from '../lib/redis-cluster.js';
import { SentinelSet, redisCli } from '../lib/sentinel.js';

const h = new Harness('failover');
const sockets = [];
let browser;
after(async () => {
  for (const s of sockets) s.close();
  await browser?.close();
  await h.close();
});

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
  socket.on('message', (body) => socket.arrivals.set(Number(String(body).split('-')[1]), Date.now()));
  sockets.push(socket);
  return socket;
}

/** The event numbers a socket received on `message`, in arrival order. */
function numbers(socket) {
  return socket.received.filter((r) => r.event === 'message').map((r) => Number(String(r.args[0]).split('-')[1]));
}

/**
 * Two nodes on `topology` (started by `startTopology()`, which resolves with `{url, kill}`:
 * `kill()` SIGKILLs the server that holds the channel's history and resolves with the time of
 * the kill and the time the replacement was seen, `{killedAt, promotedAt}`), four official
 * clients and a Chromium page; a publisher at 50 events/s alternating between the nodes;
 * `kill()` mid-stream. Every acknowledged event must reach every client exactly once and in
 * order.
 */
function failoverUnderLoad(name, startTopology) {
  describe(`${name} failover, min_replicas = 1`, { skip: NEEDS_REDIS, concurrency: 1 }, () => {
    let topology;
    let a;
    let b;
    let cookie;
    before(async () => {
      if (NEEDS_REDIS) return;
      topology = await startTopology();
      h.useRedis(topology.url);
      const extraEnv = {
        SIDECAST_BROKER__MIN_REPLICAS: '1',
        SIDECAST_BROKER__REPLICA_TIMEOUT_MS: '500',
      };
      const channel = `e2e-failover-${name.toLowerCase()}`;
      [a, b] = await Promise.all([
        h.startServer({ label: `${name}-a`, channel, cluster: true, extraEnv }),
        h.startServer({ label: `${name}-b`, channel, cluster: true, extraEnv }),
      ]);
      ({ cookie } = await login(a.url));
      browser ??= await launchChromium();
    });

    test('a SIGKILLed master: nothing acknowledged is lost, duplicated or reordered', h.withLogs(async () => {
      const clients = [
        connect(a.url, cookie, { label: `${name} A polling+ws` }),
        connect(a.url, cookie, { websocket: true, label: `${name} A websocket` }),
        connect(b.url, cookie, { label: `${name} B polling+ws` }),
        connect(b.url, cookie, { websocket: true, label: `${name} B websocket` }),
      ];
      await Promise.all(clients.map((s) => nextEvent(s, 'connect')));

      const context = await browser.newContext();
      await context.addCookies(cookie.split('; ').map((pair) => {
        const [cookieName, ...value] = pair.split('=');
        return { name: cookieName, value: value.join('='), url: b.url };
      }));
      const page = await context.newPage();
      await page.goto(b.url);
      await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10_000 });

      // 50 events/s: one POST every 20 ms, alternating between the nodes.
      const publisher = new Publisher([a.url, b.url], {
        cookie,
        channel: 'message',
        body: (n) => `failover-${n}`,
        interval: 20,
        deadline: 30_000,
      }).start();
      await publisher.acknowledged(50);

      const { killedAt, promotedAt } = await topology.kill();
      await publisher.acknowledged(50);
      await publisher.stop();

      const acked = publisher.acked;
      const last = acked[acked.length - 1];
      for (const socket of clients) {
        await waitUntil(() => numbers(socket).includes(last), {
          ms: 20_000,
          what: `${socket.label}: event ${last} (has ${numbers(socket).length})`,
        });
      }
      await waitUntil(async () => (await page.locator('#messages li').allInnerTexts()).includes(`failover-${last}`), {
        ms: 20_000,
        what: `the page shows failover-${last}`,
      });

      for (const socket of clients) {
        const got = numbers(socket);
        for (let i = 1; i < got.length; i++) {
          assert.ok(got[i] > got[i - 1], `${socket.label}: ${got[i]} after ${got[i - 1]} (duplicate or out of order)`);
        }
        const missing = acked.filter((n) => !got.includes(n));
        assert.deepEqual(missing, [], `${socket.label}: acknowledged events never delivered`);
      }
      const shown = (await page.locator('#messages li').allInnerTexts())
        .filter((t) => t.startsWith('failover-'))
        .map((t) => Number(t.split('-')[1]));
      assert.deepEqual(acked.filter((n) => !shown.includes(n)), [], 'the page lacks acknowledged events');

      // During the switch: 503 with Retry-After, nothing else; no POST hung.
      const refused = publisher.attempts.filter((t) => t.status !== 200);
      for (const t of refused) {
        assert.equal(t.status, 503, `event ${t.n}: ${t.status} instead of 503`);
        assert.ok(t.retryAfter, `event ${t.n}: 503 without Retry-After`);
      }
      const slowest = Math.max(...publisher.attempts.map((t) => t.answered - t.sent));
      assert.ok(slowest < 10_000, `a POST took ${slowest} ms`);

      // Figures for the operations guide, not assertions: timing depends on the machine.
      const afterKill = publisher.attempts.filter((t) => t.status === 200 && t.sent > killedAt);
      const firstAck = afterKill[0];
      const firstDelivery = Math.min(...clients.flatMap((s) => afterKill.map((t) => s.arrivals.get(t.n) ?? Infinity)));
      const figures = `kill->promotion ${promotedAt - killedAt} ms, kill->first acknowledged publish ${firstAck.answered - killedAt} ms `
        + `(promotion->first ack ${firstAck.answered - promotedAt} ms), kill->first delivery ${firstDelivery - killedAt} ms, `
        + `503 answers ${refused.length}, slowest POST ${slowest} ms, acknowledged ${acked.length}, acknowledged lost 0`;
      h.logs.push(`[figures] ${figures}`);
      console.log(`${name} failover: ${figures}`);
      await context.close();
    }));
  });
}

failoverUnderLoad('Sentinel', async () => {
  const set = await new SentinelSet(h).start();
  return {
    url: set.url(),
    kill: async () => {
      const port = await set.currentMasterPort();
      const killedAt = Date.now();
      await set.data.get(port).stop({ signal: 'SIGKILL' });
      return { killedAt, promotedAt: (await set.waitForPromotion(port)).at };
    },
  };
});

failoverUnderLoad('Cluster', async () => {
  // Two replicas per primary: the promoted one keeps a replica, so min_replicas = 1 holds again.
  const cluster = await new RedisClusterSet(h).start({ replicas: 2 });
  return {
    url: cluster.url(),
    // The primary of the slot of the channel's history (its keys share the channel's hash tag).
    kill: async () => {
      const { port, key } = await cluster.primaryHolding('*history*e2e-failover-cluster*');
      const killedAt = Date.now();
      await cluster.kill(port);
      return { killedAt, promotedAt: (await cluster.waitForPromotion(key, port)).at };
    },
  };
});

// With min_replicas = 0 (the default) a failover can lose acknowledged events: the replica that is
// promoted had not received them. Made to happen here by cutting both replicas off (frozen with
// SIGSTOP, their links dropped by the master) before the events, so that only the master has them
// when it is killed. The loss must be reported: the
// node logs and counts it, and a client coming back from before it is told `unknown`, never
// `recovered` with the lost events silently absent.
describe('Sentinel failover, min_replicas = 0, acknowledged events lost', { skip: NEEDS_REDIS, concurrency: 1 }, () => {
  test('the loss is logged, counted, and a returning client is told unknown', h.withLogs(async () => {
    const set = await new SentinelSet(h).start();
    h.useRedis(set.url());
    const node = await h.startServer({ label: 'loss', channel: 'e2e-failover-loss', cluster: true });
    const { cookie } = await login(node.url);
    const post = async (body) => {
      const res = await publish(node.url, { channel: 'message', body }, { cookie });
      assert.equal(res.status, 200, `${body}: ${JSON.stringify(res.body)}`);
    };

    // `watcher` stays connected (the node's history reader delivers the lost events to it);
    // `returning` asks for recovery, sees before-0, leaves, and comes back after the failover.
    const watcher = connect(node.url, cookie, { label: 'watcher' });
    const returning = CLIENTS.latest.io(node.url, {
      path: '/ws/socket.io', forceNew: true, extraHeaders: { Cookie: cookie }, auth: { offset: '' },
    });
    sockets.push(returning);
    record(returning);
    await Promise.all([nextEvent(watcher, 'connect'), nextEvent(returning, 'connect')]);
    await post('before-0');
    await waitUntil(() => returning.received.some((r) => r.args[0] === 'before-0'), { what: 'before-0' });
    const offset = returning.offset;
    assert.ok(offset, 'before-0 came with an offset');
    returning.disconnect();
    assert.equal(await redisCli(set.masterPort, ['WAIT', '2', '5000']), '2', 'both replicas have before-0');

    // Frozen replicas alone are not enough: their kernels would still buffer what the master
    // sends and hand it over on SIGCONT. So the master also drops its links to them, while they
    // cannot reconnect.
    for (const proc of set.replicas()) proc.signal('SIGSTOP');
    await redisCli(set.masterPort, ['CLIENT', 'KILL', 'TYPE', 'replica']);
    await post('missed-1');
    await post('missed-2');
    await waitUntil(() => numbers(watcher).includes(2), { what: 'the watcher got missed-2' });

    const old = await set.killMaster();
    for (const proc of set.replicas()) proc.signal('SIGCONT');
    await set.waitForPromotion(old);
    for (let n = 0; n < 3; n++) {
      await waitUntil(async () => (await publish(node.url, { channel: 'message', body: `after-${n}` }, { cookie })).status === 200, {
        what: `after-${n} acknowledged`, ms: 20_000, every: 100,
      });
    }

    // The node's history reader finds the stream shorter than what it had delivered.
    const lossCount = async () => {
      const text = await (await fetch(new URL('metrics', node.url))).text();
      const m = text.match(/^sidecast_history_loss_total (\d+)/m);
      return m ? Number(m[1]) : 0;
    };
    await waitUntil(async () => (await lossCount()) >= 1, { what: 'sidecast_history_loss_total >= 1', ms: 20_000, every: 100 });

    const report = nextEvent(returning, 'sidecast:recovery');
    returning.auth = { offset };
    returning.connect();
    const [status] = await report;
    assert.equal(status.status, 'unknown', JSON.stringify(status));
    assert.ok(
      node.proc.lines.some((l) => /WARN/.test(l) && /lost/.test(l)),
      'the node logged the loss',
    );
  }));
});
