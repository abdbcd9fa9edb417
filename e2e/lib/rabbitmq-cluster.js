// A three-node RabbitMQ cluster for end-to-end tests, started by the test kit's
// `sidecast-rabbitmq-cluster` binary (the Rust tests' RabbitMqCluster: three private
// rabbitmq-server nodes on loopback, one epmd, one cookie, join_cluster), driven through its
// standard input: `kill I`, `restart I`, `leader QUEUE`, `members QUEUE`, one JSON answer a line.

import fs from 'node:fs';
import path from 'node:path';

import { SIDECAST_BIN } from './harness.js';

/** The binary: $E2E_RABBITMQ_CLUSTER_BIN (set by ./run), else next to the sidecast binary. */
export const CLUSTER_BIN = process.env.E2E_RABBITMQ_CLUSTER_BIN
  || path.join(path.dirname(SIDECAST_BIN), 'sidecast-rabbitmq-cluster');

/** A boot of three Erlang VMs and two joins: tens of seconds, far more on a busy machine. */
const START_DEADLINE_MS = 180_000;

export class RabbitMqClusterSet {
  constructor(h) {
    this.h = h;
  }

  /** Starts the cluster; resolves once its three nodes run together. */
  async start() {
    if (!fs.existsSync(CLUSTER_BIN)) {
      throw new Error(`${CLUSTER_BIN} is missing: cargo build -p sidecast-testkit --bin sidecast-rabbitmq-cluster (./run does)`);
    }
    this.proc = this.h.spawn('rabbitmq-cluster', CLUSTER_BIN, [], process.env, { stdin: 'pipe' });
    // Stopped through its standard input (it then stops the nodes in order and exits).
    const line = await this.proc.waitForLine(/^\{"urls":/, { ms: START_DEADLINE_MS, what: 'the cluster\'s addresses' });
    // {urls, ports, nodes, started_ms}
    Object.assign(this, JSON.parse(line.input));
    return this;
  }

  /** The URLs of every node, comma-separated, starting at node `first` (then the next ones). */
  urlList(first = 0) {
    return this.urls.map((_, i) => this.urls[(first + i) % this.urls.length]).join(',');
  }

  /** Sends `command` and resolves with its answer (the next JSON line), or rejects with its error. */
  async command(command, { ms = 120_000 } = {}) {
    const before = this.proc.lines.length;
    this.proc.child.stdin.write(`${command}\n`);
    const deadline = Date.now() + ms;
    for (;;) {
      const answer = this.proc.lines.slice(before).find((l) => l.startsWith('{"ok":'));
      if (answer) {
        const parsed = JSON.parse(answer);
        if (!parsed.ok) throw new Error(`${command}: ${parsed.error}`);
        return parsed;
      }
      if (this.proc.exited) throw new Error(`the cluster exited before answering ${command}${this.proc.tail()}`);
      if (Date.now() > deadline) throw new Error(`no answer to ${command} within ${ms} ms${this.proc.tail()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** SIGKILLs node `i`; resolves with when the signal was sent (ms since the epoch). */
  async kill(i) {
    return (await this.command(`kill ${i}`)).killed_at;
  }

  /** Starts node `i` again; resolves once it is back in the cluster. */
  async restart(i) {
    await this.command(`restart ${i}`, { ms: START_DEADLINE_MS });
  }

  /** The node (index) that leads stream `queue`, or null. */
  async leader(queue) {
    return (await this.command(`leader ${queue}`)).leader;
  }

  /** The nodes (indexes) that hold a replica of `queue`. */
  async members(queue) {
    return (await this.command(`members ${queue}`)).members;
  }

  /** Stops the nodes and waits for the binary to exit (then the harness' close has nothing to do). */
  async stop() {
    if (!this.proc || this.proc.exited) return;
    this.proc.child.stdin.end('stop\n');
    const timer = setTimeout(() => this.proc.stop({ signal: 'SIGKILL' }), 30_000);
    await this.proc.exitPromise;
    clearTimeout(timer);
  }
}
