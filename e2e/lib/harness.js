// Test harness: starts redis-server and `sidecast serve` processes on free loopback ports, runs
// `sidecast emit`, keeps every process's output, and stops everything at the end (also when a test
// fails or the test process is interrupted).

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
      child.kill('SIGKILL');
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

/** A process whose output is kept, line by line, with a label. */
class Proc {
  constructor(label, command, args, options, logs) {
    this.label = label;
    this.logs = logs;
    this.lines = [];
    this.waiters = new Set();
    this.exited = false;
    this.child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
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

  /** SIGTERM, then SIGKILL if it has not exited within `ms`. */
  async stop({ ms = 5_000 } = {}) {
    if (this.exited) return this.exitPromise;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.log(`did not stop within ${ms} ms of SIGTERM; killing`);
      this.child.kill('SIGKILL');
    }, ms);
    const result = await this.exitPromise;
    clearTimeout(timer);
    return result;
  }
}

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

  /** The environment of a sidecast process: the broker, the local client script, quiet colours. */
  env({ channel = 'sidecast', clientJs = CLIENTS.latest.browserBuild, extra = {} } = {}) {
    const env = {
      ...process.env,
      NO_COLOR: '1',
      SIDECAST_BROKER__KIND: BROKER,
      SIDECAST_BROKER__CHANNEL: channel,
      SIDECAST_SERVER__CLIENT_JS: clientJs,
      SIDECAST_LOG__FILTER: 'info,sidecast=debug,sidecast_web=debug',
      ...extra,
    };
    delete env.RUST_LOG;
    if (BROKER === 'redis') env.SIDECAST_BROKER__URL = this.redisUrl;
    return env;
  }

  spawn(label, command, args, env = process.env) {
    const proc = new Proc(label, command, args, { cwd: this.dir, env }, this.logs);
    this.procs.push(proc);
    return proc;
  }

  /**
   * Starts `sidecast serve` on 127.0.0.1:0 and resolves with `{url, proc}` once it logs its URL.
   * `channel` isolates nodes sharing the test redis; `clientJs` picks the client build for pages.
   */
  async startServer({ label = 'node', channel, clientJs, cluster = false, extraEnv = {} } = {}) {
    await this.startRedis();
    const extra = cluster ? { SIDECAST_SESSION__SECRET: CLUSTER_SECRET, ...extraEnv } : extraEnv;
    const proc = this.spawn(
      label,
      SIDECAST_BIN,
      ['serve', '--bind', '127.0.0.1:0', '--broker', BROKER],
      this.env({ channel, clientJs, extra }),
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

/** `POST /api/` with a JSON body; resolves with `{status, body}`. */
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
  return { status: res.status, body };
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
