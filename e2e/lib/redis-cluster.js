// A Redis Cluster for end-to-end tests: three primaries with `replicas` replicas each (1 by
// default), redis-server processes of a Harness on free loopback ports (each with an explicit
// cluster bus port), created with `redis-cli --cluster create` and a short node time-out so that
// a failover takes seconds. With two replicas each, a promoted replica still has one of its own,
// so that `broker.min_replicas = 1` can be met again after a failover.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { freePort, waitUntil } from './harness.js';
import { redisCli } from './sentinel.js';

/** Milliseconds before a silent primary is failed over (Redis' default is 15 s). */
const NODE_TIMEOUT_MS = 1000;

/** The lines of `CLUSTER NODES`: {id, port, primary, failing, slots: [[first, last]...]}. */
function parseNodes(text) {
  return text.split('\n').filter(Boolean).map((line) => {
    const f = line.trim().split(/\s+/);
    const flags = f[2].split(',');
    return {
      id: f[0],
      port: Number(f[1].split('@')[0].split(':').pop()),
      primary: flags.includes('master'),
      failing: flags.includes('fail') || flags.includes('fail?'),
      primaryId: f[3] === '-' ? null : f[3],
      slots: f.slice(8).filter((s) => !s.startsWith('[')).map((s) => {
        const [a, b] = s.split('-').map(Number);
        return [a, b ?? a];
      }),
    };
  });
}

export class RedisClusterSet {
  constructor(h) {
    this.h = h;
    this.procs = new Map(); // port -> Proc
  }

  async start({ replicas = 1 } = {}) {
    const ports = [];
    for (let i = 0; i < 3 * (1 + replicas); i++) {
      const [port, bus] = [await freePort(), await freePort()];
      const dir = path.join(this.h.dir, `cluster-${port}`);
      fs.mkdirSync(dir);
      const proc = this.h.spawn(`redis-cluster:${port}`, 'redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--cluster-port', String(bus),
      ]);
      await proc.waitForLine(/Ready to accept connections/, { what: 'redis readiness' });
      this.procs.set(port, proc);
      ports.push(port);
    }
    this.ports = ports;
    const out = await new Promise((resolve, reject) => {
      execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
        { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${stderr}${stdout}`)) : resolve(stdout)));
    });
    if (!out.includes('All 16384 slots covered')) throw new Error(`redis-cli --cluster create:\n${out}`);
    await waitUntil(async () => {
      const nodes = await this.nodes().catch(() => []);
      const primaries = nodes.filter((n) => n.primary && n.slots.length > 0 && !n.failing);
      const served = primaries.flatMap((n) => n.slots).reduce((sum, [a, b]) => sum + b - a + 1, 0);
      return served === 16384
        && primaries.every((p) => nodes.filter((r) => r.primaryId === p.id && !r.failing).length === replicas);
    }, { what: 'every slot served by a replicated primary', ms: 30_000, every: 100 });
    return this;
  }

  /** `redis+cluster://` with the first three nodes as seeds. */
  url() {
    return `redis+cluster://${this.ports.slice(0, 3).map((p) => `127.0.0.1:${p}`).join(',')}`;
  }

  /** `CLUSTER NODES` of the first live node. */
  async nodes() {
    for (const [port, proc] of this.procs) {
      if (proc.exited) continue;
      try {
        return parseNodes(await redisCli(port, ['CLUSTER', 'NODES']));
      } catch {
        // the next node
      }
    }
    throw new Error('no cluster node answered');
  }

  /** The port of the primary that holds a key matching `pattern` (SCAN of every live primary). */
  async primaryHolding(pattern) {
    for (const node of (await this.nodes()).filter((n) => n.primary && !n.failing)) {
      const keys = await redisCli(node.port, ['--scan', '--pattern', pattern]).catch(() => '');
      if (keys.trim()) return { port: node.port, key: keys.trim().split('\n')[0] };
    }
    throw new Error(`no primary holds a key matching ${pattern}`);
  }

  /** SIGKILLs the node on `port`. */
  async kill(port) {
    await this.procs.get(port).stop({ signal: 'SIGKILL' });
  }

  /**
   * Waits until the slot of `key` is served by a live primary other than `oldPort` and the cluster
   * says it is ok; resolves with `{port, at}` (`at`: when that was seen).
   */
  async waitForPromotion(key, oldPort, { ms = 30_000 } = {}) {
    let port;
    await waitUntil(async () => {
      const nodes = await this.nodes().catch(() => []);
      const alive = nodes.filter((n) => !n.failing && n.port !== oldPort);
      const slot = Number(await redisCli(alive[0]?.port ?? this.ports[0], ['CLUSTER', 'KEYSLOT', key]).catch(() => -1));
      const owner = nodes.find((n) => n.primary && !n.failing && n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!owner || owner.port === oldPort) return false;
      const info = await redisCli(owner.port, ['CLUSTER', 'INFO']).catch(() => '');
      port = owner.port;
      return info.includes('cluster_state:ok');
    }, { what: `a new primary for ${key}`, ms, every: 20 });
    return { port, at: Date.now() };
  }
}
