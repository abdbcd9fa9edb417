// A Redis Sentinel set for end-to-end tests: a master, two replicas and three sentinels on free
// loopback ports, with fast failover settings, started as processes of a Harness (so that they
// are stopped with it and their output is in its logs). Sentinel is `redis-server FILE
// --sentinel`: no package beyond redis-server is needed.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { freePort, waitUntil } from './harness.js';

/** The service name the sentinels monitor. */
export const SERVICE = 'mymaster';

/** How long the sentinels wait before they call the master down (Redis' default is 30 s). */
const DOWN_AFTER_MS = 1000;

/** Runs redis-cli against 127.0.0.1:`port`; resolves with its trimmed output. */
export function redisCli(port, args, { timeout = 5_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli -p ${port} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

export class SentinelSet {
  constructor(h) {
    this.h = h;
    this.data = new Map(); // port -> Proc
    this.sentinels = [];
  }

  /** Starts the set and waits until every sentinel knows the master and both replicas. */
  async start({ minReplicasToWrite = 0 } = {}) {
    const ports = [await freePort(), await freePort(), await freePort()];
    this.masterPort = ports[0];
    for (const [i, port] of ports.entries()) {
      const dir = path.join(this.h.dir, `redis-${port}`);
      fs.mkdirSync(dir);
      const args = [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
        // Replicas left behind a failover accept writes only from their master.
        '--replica-read-only', 'yes',
      ];
      if (minReplicasToWrite > 0) args.push('--min-replicas-to-write', String(minReplicasToWrite), '--min-replicas-max-lag', '10');
      if (i > 0) args.push('--replicaof', '127.0.0.1', String(ports[0]));
      const proc = this.h.spawn(`redis:${port}`, 'redis-server', args);
      await proc.waitForLine(/Ready to accept connections/, { what: 'redis readiness' });
      this.data.set(port, proc);
    }
    await waitUntil(async () => (await redisCli(this.masterPort, ['INFO', 'replication'])).includes('connected_slaves:2'), {
      what: 'both replicas connected to the master',
      ms: 15_000,
    });
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const file = path.join(this.h.dir, `sentinel-${port}.conf`);
      // One writable file per sentinel: a sentinel rewrites its own.
      fs.writeFileSync(file, [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${this.h.dir}`,
        `sentinel monitor ${SERVICE} 127.0.0.1 ${this.masterPort} 2`,
        `sentinel down-after-milliseconds ${SERVICE} ${DOWN_AFTER_MS}`,
        `sentinel failover-timeout ${SERVICE} 5000`,
        `sentinel parallel-syncs ${SERVICE} 1`,
        '',
      ].join('\n'));
      const proc = this.h.spawn(`sentinel:${port}`, 'redis-server', [file, '--sentinel']);
      await proc.waitForLine(/Sentinel ID is|Running mode=sentinel/, { what: 'sentinel start' });
      this.sentinels.push({ port, proc });
    }
    await waitUntil(async () => {
      for (const { port } of this.sentinels) {
        const info = await redisCli(port, ['SENTINEL', 'MASTER', SERVICE]).catch(() => '');
        const lines = info.split('\n');
        const at = lines.indexOf('num-other-sentinels');
        const replicas = lines.indexOf('num-slaves');
        if (at < 0 || lines[at + 1] !== '2' || replicas < 0 || lines[replicas + 1] !== '2') return false;
      }
      return true;
    }, { what: 'every sentinel knows the two others and both replicas', ms: 20_000, every: 100 });
    return this;
  }

  /** `redis+sentinel://` with the three sentinels, database 0, the service name. */
  url() {
    return `redis+sentinel://${this.sentinels.map(({ port }) => `127.0.0.1:${port}`).join(',')}/0/${SERVICE}`;
  }

  /** The master's port as the sentinels name it now (asks the first that answers). */
  async currentMasterPort() {
    for (const { port } of this.sentinels) {
      try {
        const [, p] = (await redisCli(port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SERVICE])).split('\n');
        return Number(p);
      } catch {
        // try the next sentinel
      }
    }
    throw new Error('no sentinel answered');
  }

  /** SIGKILLs the master (a crash); resolves with its port. */
  async killMaster() {
    const port = await this.currentMasterPort();
    await this.data.get(port).stop({ signal: 'SIGKILL' });
    return port;
  }

  /**
   * Waits until the sentinels name a master other than `oldPort` and that server says it is a
   * master; resolves with `{port, at}` (`at`: `Date.now()` when the promotion was seen).
   */
  async waitForPromotion(oldPort, { ms = 30_000 } = {}) {
    let port;
    await waitUntil(async () => {
      port = await this.currentMasterPort().catch(() => oldPort);
      if (port === oldPort) return false;
      const role = await redisCli(port, ['ROLE']).catch(() => '');
      return role.startsWith('master');
    }, { what: `a master other than ${oldPort}`, ms, every: 20 });
    return { port, at: Date.now() };
  }
}
