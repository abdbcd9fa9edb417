// Test harness: starts redis-server, rabbitmq-server and `sidecast serve` processes on free
// loopback ports, runs `sidecast emit`, keeps every process's output, and stops everything at the
// end (also when a test fails or the test process is interrupted).

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..');

/** Where artifacts (the screenshot) go: the repository's target/ directory. */
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'target', 'e2e');

/** The broker the servers run on: `redis` (default) or `memory` (HTTP/page checks only). */
export const BROKER = process.env.E2E_BROKER || 'redis';
if (!['redis', 'memory'].includes(BROKER)) {
  throw new Error(`E2E_BROKER=${BROKER}: expected "redis" or "memory"`);
}
/** Skip option for checks that need a broker shared between processes. */
export const NEEDS_REDIS =
  BROKER === 'redis' ? false : `needs a shared broker (E2E_BROKER=${BROKER}); run with E2E_BROKER=redis`;

/** The `sidecast` binary: $SIDECAST_BIN (set by ./run), else target/debug/sidecast. */
export const SIDECAST_BIN =
  process.env.SIDECAST_BIN || path.join(REPO_ROOT, 'target', 'debug', 'sidecast');

/** The official Socket.IO clients under test, by label. */
export const CLIENTS = {
  latest: loadClient('socket.io-client'),
  '4.0.0': loadClient('socket.io-client-4.0.0'),
};

function loadClient(pkg) {
  const manifest = require.resolve(`${pkg}/package.json`);
  const dir = path.dirname(manifest);
  return {
    pkg,
    version: JSON.parse(fs.readFileSync(manifest, 'utf8')).version,
    io: require(pkg).io,
    /** The browser build the server serves to the page (server.client_js). */
    browserBuild: path.join(dir, 'dist', 'socket.io.min.js'),
  };
}

/** Session secret shared by the nodes of a cluster (cookies signed by one are valid on all). */
const CLUSTER_SECRET = 'e2e-secret-0123456789abcdef0123456789abcdef';

const DEFAULT_DEADLINE_MS = 10_000;

// Every child still running when this process exits is killed, whatever the reason.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) {
    try {
      // A process group (rabbitmq-server and the Erlang VM it starts) goes as a whole.
      if (child.group) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(130));
}

/** A free TCP port on 127.0.0.1 (for redis-server, which cannot bind port 0 and report it). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves with the value of `fn()` once it is truthy; rejects after `ms` with `what`. */
export async function waitUntil(fn, { ms = DEFAULT_DEADLINE_MS, what = 'condition', every = 10 } = {}) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Resolves with the arguments of the next `event` on `emitter`; rejects after `ms`. */
export function nextEvent(emitter, event, { ms = DEFAULT_DEADLINE_MS } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for event "${event}"`));
    }, ms);
    function handler(...args) {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

/**
 * A process whose output is kept, line by line, with a label. With `group`, it leads a process
 * group of its own and is signalled as a group (for scripts whose real server is a child).
 */
class Proc {
  constructor(label, command, args, options, logs, { group = false, stdin = 'ignore' } = {}) {
    this.label = label;
    this.logs = logs;
    this.lines = [];
    this.waiters = new Set();
    this.exited = false;
    this.stopSignal = 'SIGTERM';
    this.child = spawn(command, args, { ...options, detached: group, stdio: [stdin, 'pipe', 'pipe'] });
    this.child.group = group;
    liveChildren.add(this.child);
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        liveChildren.delete(this.child);
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        this.log(`exited (code ${code}, signal ${signal})`);
        for (const w of this.waiters) w.check();
        resolve({ code, signal });
      });
    });
    this.child.on('error', (e) => this.log(`spawn error: ${e.message}`));
    for (const stream of ['stdout', 'stderr']) {
      let partial = '';
      this.child[stream].setEncoding('utf8');
      this.child[stream].on('data', (chunk) => {
        partial += chunk;
        const parts = partial.split('\n');
        partial = parts.pop();
        for (const line of parts) this.onLine(stream, line);
      });
      this.child[stream].on('end', () => partial && this.onLine(stream, partial));
    }
  }

  log(line) {
    this.logs.push(`[${this.label}] ${line}`);
  }

  onLine(stream, line) {
    this.lines.push(line);
    this.log(`${stream}: ${line}`);
    for (const w of this.waiters) w.check();
  }

  /** Resolves with the first match of `regex` in the output; rejects on exit or after `ms`. */
  waitForLine(regex, { ms = DEFAULT_DEADLINE_MS, what = String(regex) } = {}) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          for (const line of this.lines) {
            const m = line.match(regex);
            if (m) return done(null, m);
          }
          if (this.exited) {
            done(new Error(`${this.label} exited (code ${this.exitCode}) before printing ${what}${this.tail()}`));
          }
        },
      };
      const timer = setTimeout(
        () => done(new Error(`${this.label}: no ${what} within ${ms} ms${this.tail()}`)),
        ms,
      );
      const done = (err, value) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        if (err) reject(err);
        else resolve(value);
      };
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  /** The last lines of output, for error messages. */
  tail(n = 40) {
    const lines = this.lines.slice(-n);
    return lines.length ? `; its output:\n${lines.map((l) => `  ${l}`).join('\n')}` : '; it printed nothing';
  }

  /** Sends `signal` to the process, or to its whole group. */
  signal(signal) {
    try {
      if (this.child.group) process.kill(-this.child.pid, signal);
      else this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** `signal` (default `stopSignal`: SIGTERM), then SIGKILL if it has not exited within `ms`. */
  async stop({ ms = 5_000, signal = this.stopSignal } = {}) {
    if (this.exited) {
      // Children of a group leader that exited may still run.
      if (this.child.group) this.signal('SIGKILL');
      return this.exitPromise;
    }
    this.signal(signal);
    const timer = setTimeout(() => {
      this.log(`did not stop within ${ms} ms of ${signal}; killing`);
      this.signal('SIGKILL');
    }, ms);
    const result = await this.exitPromise;
    clearTimeout(timer);
    if (this.child.group) this.signal('SIGKILL');
    return result;
  }
}

/**
 * Resolves once something on 127.0.0.1:`port` answers `hello` with a first byte `firstByte`
 * (or, without `hello`, once it accepts a TCP connection); rejects on the first failure.
 */
function probe(port, hello, firstByte) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(2_000, () => socket.destroy(new Error('no answer')));
    socket.once('error', reject);
    socket.once('connect', () => {
      if (!hello) {
        socket.destroy();
        resolve();
        return;
      }
      socket.write(hello);
    });
    socket.once('data', (data) => {
      socket.destroy();
      if (data[0] === firstByte) resolve();
      else reject(new Error(`unexpected answer (first byte ${data[0]})`));
    });
    socket.once('end', () => reject(new Error('closed before an answer')));
  });
}

/** Polls `probe(...)` until it succeeds; rejects when `proc` exits or after `ms`. */
async function awaitPort(proc, port, { hello, firstByte, ms, what }) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await probe(port, hello, firstByte);
      return;
    } catch (e) {
      if (proc.exited) throw new Error(`${proc.label} exited (code ${proc.exitCode}) before ${what}${proc.tail()}`);
      if (Date.now() > end) throw new Error(`${proc.label}: no ${what} within ${ms} ms (${e.message})${proc.tail()}`);
    }
    // Another process: there is no event to await.
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Debian's real server scripts (not the /usr/sbin wrappers, which switch to the rabbitmq user). */
const RABBITMQ_BIN = process.env.E2E_RABBITMQ_BIN || '/usr/lib/rabbitmq/bin/rabbitmq-server';

/** The AMQP 0-9-1 protocol header; a broker answers it with a method frame (type 1). */
const AMQP_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

/** How long RabbitMQ may take to boot (3-7 s on a quiet machine, far more while compiling). */
const RABBITMQ_DEADLINE_MS = 90_000;

/**
 * One harness per test file: owns a scratch directory, an optional redis-server and any number of
 * sidecast nodes. `close()` stops them all.
 */
export class Harness {
  constructor(name) {
    this.name = name;
    this.logs = [];
    this.procs = [];
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `sidecast-e2e-${name}-`));
    this.redisUrl = null;
    this.amqpUrl = null;
  }

  /**
   * Starts a private rabbitmq-server on free loopback ports (retried on a port race) and
   * resolves with its `amqp://` URL; concurrent calls share one start. As root, without systemd:
   * every port private (AMQP, Erlang distribution, a private epmd), every file in the scratch
   * directory, the node killed as a process group at the end (its data is thrown away).
   */
  startRabbitMq() {
    this.rabbitStarting ??= (async () => {
      if (!fs.existsSync(RABBITMQ_BIN)) {
        throw new Error(`${RABBITMQ_BIN} is missing: apt-get install rabbitmq-server (scripts/test does), or set E2E_RABBITMQ_BIN`);
      }
      let lastError;
      for (let attempt = 1; attempt <= 3; attempt++) {
        try {
          return await this.spawnRabbitMq(attempt);
        } catch (e) {
          lastError = e;
        }
      }
      throw lastError;
    })();
    return this.rabbitStarting;
  }

  async spawnRabbitMq(attempt) {
    const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
    const dir = path.join(this.dir, `rabbitmq-${attempt}`);
    fs.mkdirSync(dir);
    // Test machines often have little free disk: the default 50 MB alarm would block publishers.
    fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), [
      'disk_free_limit.absolute = 1MB',
      'log.console = true',
      'log.console.level = warning',
      'log.file = false',
      '',
    ].join('\n'));
    fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    fs.writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');
    const env = {
      ...process.env,
      HOME: dir, // the Erlang cookie lives there
      ERL_EPMD_PORT: String(epmdPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_NODENAME: `sidecast-e2e-${process.pid}-${attempt}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    delete env.NOTIFY_SOCKET;
    // epmd first, or the node starts a daemonized one of its own that outlives the test.
    const epmd = this.spawn(`epmd:${epmdPort}`, 'epmd', ['-port', String(epmdPort)], env, { group: true });
    let server;
    try {
      await awaitPort(epmd, epmdPort, { ms: 10_000, what: 'epmd listening' });
      server = this.spawn(`rabbitmq:${port}`, RABBITMQ_BIN, [], env, { group: true });
      await awaitPort(server, port, {
        hello: AMQP_HEADER,
        firstByte: 1,
        ms: RABBITMQ_DEADLINE_MS,
        what: 'an AMQP answer',
      });
    } catch (e) {
      await Promise.all([server?.stop({ signal: 'SIGKILL' }), epmd.stop({ signal: 'SIGKILL' })]);
      throw e;
    }
    // Its data is thrown away: killed at the end rather than shut down in order (seconds).
    server.stopSignal = 'SIGKILL';
    epmd.stopSignal = 'SIGKILL';
    this.amqpUrl = `amqp://guest:guest@127.0.0.1:${port}/%2f`;
    return this.amqpUrl;
  }

  /**
   * Starts redis-server on a free port (retried on a port race) when the broker is Redis. Nodes
   * started together share it: concurrent calls wait for the same start.
   */
  startRedis() {
    if (BROKER !== 'redis') return Promise.resolve(null);
    // A reserved server (reserveRedis) is started by its test, later: nodes get its URL now.
    if (this.reservedRedisPort !== undefined) return Promise.resolve(this.redisUrl);
    this.redisStarting ??= this.startRedisOnFreePort();
    return this.redisStarting;
  }

  async startRedisOnFreePort() {
    let lastError;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const port = await freePort();
      try {
        await this.spawnRedis(port);
        return this.redisUrl;
      } catch (e) {
        lastError = e;
      }
    }
    throw lastError;
  }

  /**
   * Picks the port of a redis-server without starting it: nodes started now find their broker
   * down (a cold start) until `startReservedRedis()` starts it on that port.
   */
  async reserveRedis() {
    const port = await freePort();
    this.reservedRedisPort = port;
    this.redisUrl = `redis://127.0.0.1:${port}`;
    return this.redisUrl;
  }

  /** Starts the redis-server of `reserveRedis()` on its port. */
  async startReservedRedis() {
    await this.spawnRedis(this.reservedRedisPort);
    return this.redisUrl;
  }

  /**
   * Makes `url` (a Redis the test started itself, such as a `redis+sentinel://` set) the Redis of
   * the nodes started from now on, instead of the harness' own redis-server.
   */
  useRedis(url) {
    this.redisUrl = url;
    this.redisStarting = Promise.resolve(url);
  }

  /**
   * Makes `url` (a RabbitMQ the test started itself, such as a cluster's URL list) the RabbitMQ
   * of the nodes started from now on with `broker: 'amqp'`, instead of the harness' own.
   */
  useAmqp(url) {
    this.amqpUrl = url;
    this.rabbitStarting = Promise.resolve(url);
  }

  /** Runs redis-server on `port` and waits until it accepts connections. */
  async spawnRedis(port) {
    const proc = this.spawn(`redis:${port}`, 'redis-server', [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', this.dir,
    ]);
    try {
      await proc.waitForLine(/Ready to accept connections/, { what: 'redis readiness' });
    } catch (e) {
      await proc.stop();
      throw e;
    }
    this.redisUrl = `redis://127.0.0.1:${port}`;
    this.redis = proc;
    return proc;
  }

  /**
   * The environment of a sidecast process: the broker (`broker`: the suite's, or `amqp` for the
   * harness' RabbitMQ), the local client script, quiet colours.
   */
  env({ channel = 'sidecast', clientJs = CLIENTS.latest.browserBuild, extra = {}, broker = BROKER } = {}) {
    const env = {
      ...process.env,
      NO_COLOR: '1',
      SIDECAST_BROKER__KIND: broker,
      SIDECAST_BROKER__CHANNEL: channel,
      SIDECAST_SERVER__CLIENT_JS: clientJs,
      SIDECAST_LOG__FILTER: 'info,sidecast=debug,sidecast_web=debug,sidecast_auth=debug',
      ...extra,
    };
    delete env.RUST_LOG;
    if (broker === 'redis') env.SIDECAST_BROKER__URL = this.redisUrl;
    // A node of a RabbitMQ cluster may be given its own list of the cluster's URLs.
    if (broker === 'amqp' && !extra.SIDECAST_BROKER__URL) env.SIDECAST_BROKER__URL = this.amqpUrl;
    return env;
  }

  spawn(label, command, args, env = process.env, { group = false, stdin = 'ignore' } = {}) {
    const proc = new Proc(label, command, args, { cwd: this.dir, env }, this.logs, { group, stdin });
    this.procs.push(proc);
    return proc;
  }

  /**
   * Starts `sidecast serve` on 127.0.0.1:0 and resolves with `{url, proc}` once it logs its URL.
   * `channel` isolates nodes sharing the test broker; `clientJs` picks the client build for pages;
   * `broker: 'amqp'` runs it on the harness' RabbitMQ (started on first use) instead.
   */
  async startServer({ label = 'node', channel, clientJs, cluster = false, extraEnv = {}, broker = BROKER } = {}) {
    if (broker === 'amqp') await this.startRabbitMq();
    else await this.startRedis();
    const extra = cluster ? { SIDECAST_SESSION__SECRET: CLUSTER_SECRET, ...extraEnv } : extraEnv;
    const proc = this.spawn(
      label,
      SIDECAST_BIN,
      ['serve', '--bind', '127.0.0.1:0', '--broker', broker],
      this.env({ channel, clientJs, extra, broker }),
    );
    const m = await proc.waitForLine(/listening.*\burl=(http:\/\/\S+?\/)(\s|$)/, {
      what: 'the "listening url=" line',
    });
    return { url: m[1], proc, channel: channel ?? 'sidecast' };
  }

  /**
   * Runs `sidecast emit EVENT DATA [--json]` against the test redis on `channel`; `format`
   * (`python-socketio`) publishes in that format instead, on its default channel.
   */
  emit(event, data, { json = false, channel = 'sidecast', to = [], format } = {}) {
    const args = ['emit', '--broker', 'redis'];
    if (json) args.push('--json');
    if (format) args.push('--format', format);
    for (const room of to) args.push('--to', room);
    // `--` so that data starting with a dash is not read as a flag.
    args.push('--', event, json ? JSON.stringify(data) : data);
    const env = this.env({ channel });
    env.SIDECAST_BROKER__KIND = 'redis';
    env.SIDECAST_BROKER__URL = this.redisUrl;
    return new Promise((resolve, reject) => {
      execFile(SIDECAST_BIN, args, { cwd: this.dir, env, timeout: 10_000 }, (err, stdout, stderr) => {
        this.logs.push(`[emit ${event}] exit ${err ? err.code ?? err.signal : 0}`);
        if (stderr.trim()) this.logs.push(`[emit ${event}] stderr: ${stderr.trim()}`);
        if (err) reject(new Error(`sidecast ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }

  /** Server output so far, for failure reports. */
  dump() {
    return this.logs.join('\n');
  }

  /** Stops every process (SIGTERM, then SIGKILL) and removes the scratch directory. */
  async close() {
    await Promise.all(this.procs.map((p) => p.stop()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Wraps a test function so that, when it fails, the processes' logs are appended to the error.
   */
  withLogs(fn) {
    return async (t) => {
      try {
        return await fn(t);
      } catch (e) {
        const logs = `----- process logs (${this.name}) -----\n${this.dump()}\n-----`;
        if (e instanceof Error) {
          // Reporters print the stack, which V8 may already have formatted with the old message.
          try {
            e.message = `${e.message}\n${logs}`;
            if (typeof e.stack === 'string' && !e.stack.includes(logs)) e.stack = `${e.stack}\n${logs}`;
          } catch {
            process.stderr.write(`${logs}\n`);
          }
        } else {
          process.stderr.write(`${logs}\n`);
        }
        throw e;
      }
    };
  }
}

/** `GET /login` and the session cookie it set, as a `Cookie` header value. */
export async function login(url) {
  const res = await fetch(new URL('login', url), { redirect: 'manual' });
  if (!res.ok) throw new Error(`GET /login: ${res.status} ${await res.text()}`);
  const body = await res.json();
  const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]);
  if (cookies.length === 0) throw new Error('GET /login set no cookie');
  return { cookie: cookies.join('; '), body };
}

/** `POST /api/` with a JSON body; resolves with `{status, body}` (and `retryAfter`, the header). */
export async function publish(url, payload, { cookie } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (cookie) headers.Cookie = cookie;
  const res = await fetch(new URL('api/', url), {
    method: 'POST',
    headers,
    body: JSON.stringify(payload),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const result = { status: res.status, body };
  // Not enumerable, so that tests comparing the whole result with {status, body} keep doing so.
  Object.defineProperty(result, 'retryAfter', { value: res.headers.get('retry-after') });
  return result;
}

// Sidecast's offsets, as the brokers tested here write them (20 digits, two such numbers joined
// by '-', or "0", the start of an empty history): recovery appends one to every event of a socket
// that asked for offsets (`auth: {offset}`, decision 26) as its last argument.
const OFFSET = /^(\d{20}(-\d{20})?|0)$/;

/** Whether `socket` asked for offsets: an `offset` in its `auth` object, or an `auth` function. */
function asksForOffsets(socket) {
  const auth = socket.auth;
  return typeof auth === 'function' || (auth !== null && typeof auth === 'object' && 'offset' in auth);
}

// Records what `socket` receives in `socket.received` as { event, args } — without the offset
// (kept in `socket.offset`) when the socket asked for offsets, exactly as received otherwise —
// and the recovery reports (`sidecast:recovery`) in `socket.reports`.
export function record(socket, push = (event, args) => socket.received.push({ event, args })) {
  socket.received = [];
  socket.reports = [];
  socket.offset = null;
  const withOffsets = asksForOffsets(socket);
  socket.onAny((event, ...args) => {
    if (withOffsets && args.length > 0 && typeof args[args.length - 1] === 'string' && OFFSET.test(args[args.length - 1])) {
      socket.offset = args.pop();
    }
    if (event === 'sidecast:recovery') socket.reports.push(args[0]);
    else push(event, args);
  });
  return socket;
}
