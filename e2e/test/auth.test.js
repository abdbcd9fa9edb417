// Authentication end to end: every session store's cookie with the Node client (websocket and
// polling) and in headless Chromium (the Python clients: web/tests/session_cookies.rs); a browser
// logged into the real Flask application gets events from Sidecast behind one reverse proxy
// (auth.policy = "flask-session", docs/migrating.md); the official client with a JWT, disconnected
// when it expires and reconnecting with a fresh one through an `auth` function.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BROKER, CLIENTS, E2E_DIR, Harness, login, nextEvent, publish, waitUntil } from '../lib/harness.js';
import { launchChromium } from '../lib/browser.js';

const SOCKETIO_PATH = '/ws/socket.io';
const DEADLINE = 10_000;

const h = new Harness('auth');
let browser;

before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await h.close();
});

/** A Node socket.io client (latest) to `url`, sending `cookie` and `auth` when given. */
function connect(url, { cookie, transports, auth, path = SOCKETIO_PATH } = {}) {
  const opts = { path, forceNew: true, reconnection: false, timeout: 5_000 };
  if (transports) opts.transports = transports;
  if (cookie) opts.extraHeaders = { Cookie: cookie };
  if (auth) opts.auth = auth;
  return CLIENTS.latest.io(url, opts);
}

/** Resolves 'connected' or the connect_error message, whichever comes first. */
function outcome(socket) {
  return Promise.race([
    nextEvent(socket, 'connect').then(() => 'connected'),
    nextEvent(socket, 'connect_error').then(([e]) => `refused: ${e.message}`),
  ]);
}

/** Opens `path` on `url` in a fresh Chromium context; waits for the page's status `state`. */
async function pageState(context, url, state) {
  const page = await context.newPage();
  await page.goto(url);
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout: DEADLINE }).catch(async (e) => {
    const status = await page.locator('#status').evaluate((el) => `${el.dataset.state}: ${el.textContent}`);
    throw new Error(`status never became "${state}" (it is ${status}): ${e.message}`);
  });
  return page;
}

for (const store of ['cookie', 'memory', 'redis']) {
  const skip = store === 'redis' && BROKER !== 'redis' ? 'the redis store needs E2E_BROKER=redis' : false;
  describe(`session.store = "${store}": the session cookie works in every client`, { concurrency: 1, skip }, () => {
    let server;
    before(async () => {
      server = await h.startServer({
        label: `node-session-${store}`,
        channel: `e2e-session-${store}`,
        extraEnv: {
          SIDECAST_SESSION__STORE: store,
          SIDECAST_SESSION__SECRET: 'e2e-secret-0123456789abcdef0123456789abcdef',
        },
      });
    });

    test('Node client, websocket only and polling, with the cookie from /login', h.withLogs(async () => {
      const { cookie } = await login(server.url);
      assert.match(cookie.split('=').slice(1).join('='), /^[A-Za-z0-9._~%-]+$/, 'no raw +, / or =');
      for (const transports of [['websocket'], ['polling']]) {
        const socket = connect(server.url, { cookie, transports });
        assert.equal(await outcome(socket), 'connected', `${transports}`);
        socket.close();
      }
    }));

    test('Chromium: after /login the page connects', h.withLogs(async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        const res = await page.goto(new URL('login', server.url).href);
        assert.equal(res.status(), 200);
        await pageState(context, server.url, 'connected');
      } finally {
        await context.close();
      }
    }));
  });
}

/**
 * A reverse proxy on a free port: `/ws/`, `/api/` and the client script go to Sidecast, the rest
 * to the Flask application, as the nginx set-up of docs/migrating.md does. Websocket upgrades
 * are piped through.
 */
async function startProxy(flaskUrl, sidecastUrl) {
  const target = (url) => {
    const toSidecast = url.startsWith('/ws/') || url.startsWith('/api/') || url === '/socket.io.min.js';
    return new URL(toSidecast ? sidecastUrl : flaskUrl);
  };
  const server = http.createServer((req, res) => {
    const { hostname, port } = target(req.url);
    const upstream = http.request(
      { hostname, port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    const { hostname, port } = target(req.url);
    const upstream = net.connect(Number(port), hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

describe('a browser logged into the original Flask app gets events from Sidecast (flask-session)', { concurrency: 1 }, () => {
  const SECRET_KEY = 'your_secret_key'; // the original application's
  let sidecast;
  let flask;
  let proxy;

  before(async () => {
    sidecast = await h.startServer({
      label: 'node-flask',
      channel: 'e2e-flask',
      extraEnv: {
        SIDECAST_AUTH__POLICY: 'flask-session',
        SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY: SECRET_KEY,
        SIDECAST_AUTH__DEMO_LOGIN: 'false',
      },
    });
    const python = process.env.SIDECAST_TEST_PYTHON || path.join(E2E_DIR, '.venv', 'bin', 'python');
    const proc = h.spawn('flask', python, [path.join(E2E_DIR, 'python', 'flask_app.py'), SECRET_KEY, '/socket.io.min.js']);
    const m = await proc.waitForLine(/listening (http:\/\/\S+)/, { what: 'the Flask app\'s "listening" line' });
    flask = `${m[1]}/`;
    proxy = await startProxy(flask, sidecast.url);
  });
  after(() => proxy?.server.close());

  test('logged in at Flask\'s /login, the original page receives Sidecast\'s events; logged out, it is refused', h.withLogs(async () => {
    const context = await browser.newContext();
    const anonymous = await browser.newContext();
    try {
      const page = await context.newPage();
      const consoleLines = [];
      page.on('console', (m) => consoleLines.push(m.text()));
      const res = await page.goto(new URL('login', proxy.url).href);
      assert.deepEqual(await res.json(), { name: 'Gonzalo' }, 'Flask answered /login');
      const cookies = await context.cookies();
      assert.deepEqual(cookies.map((c) => c.name), ['session'], 'Flask\'s own session cookie');
      await page.goto(proxy.url);
      await waitUntil(() => consoleLines.includes('Connected to ws'), { what: `the page's connect (${consoleLines})` });

      // Publish with the same Flask cookie, straight to Sidecast and through the page's Send.
      const cookie = `session=${cookies[0].value}`;
      const answer = await publish(sidecast.url, { channel: 'message', body: 'from sidecast' }, { cookie });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await page.locator('#messages li', { hasText: 'from sidecast' }).waitFor({ timeout: DEADLINE });
      await page.fill('#message', 'typed on the page');
      await page.click('button');
      await page.locator('#messages li', { hasText: 'typed on the page' }).waitFor({ timeout: DEADLINE });

      const other = await anonymous.newPage();
      const refusals = [];
      other.on('console', (m) => m.text().startsWith('connect_error') && refusals.push(m.text()));
      await other.goto(proxy.url);
      await waitUntil(() => refusals.length > 0, { what: 'the anonymous page\'s connect_error' });
      assert.match(refusals[0], /no Flask session cookie/);
    } finally {
      await context.close();
      await anonymous.close();
    }
  }));
});

describe('jwt: the official client connects with a token, and is disconnected when it expires', { concurrency: 1 }, () => {
  const SECRET = 'a-shared-secret-for-the-e2e-tests-0123456789abcdef0123456789abcdef';
  let server;
  /** Fresh PyJWT tokens (e2e/python/jwt_tokens.py), the short one expiring in `short` s. */
  const tokens = (short = 3) => {
    const python = process.env.SIDECAST_TEST_PYTHON || path.join(E2E_DIR, '.venv', 'bin', 'python');
    const out = execFileSync(python, [path.join(E2E_DIR, 'python', 'jwt_tokens.py'), SECRET, String(short)]);
    return JSON.parse(out).tokens;
  };

  before(async () => {
    server = await h.startServer({
      label: 'node-jwt',
      channel: 'e2e-jwt',
      extraEnv: {
        SIDECAST_AUTH__POLICY: 'jwt',
        SIDECAST_AUTH__JWT__SECRET: SECRET,
        SIDECAST_AUTH__JWT__ISSUER: 'sidecast-tests',
        SIDECAST_AUTH__JWT__AUDIENCE: '["sidecast"]',
        SIDECAST_AUTH__JWT__LEEWAY_SECS: '0',
        SIDECAST_AUTH__JWT__ROOMS_CLAIM: 'rooms',
        SIDECAST_AUTH__JWT__PUBLISH_CLAIM: 'publish',
      },
    });
  });

  test('auth: {token} connects; the token publishes to its room; a bad token is refused', h.withLogs(async () => {
    const t = tokens();
    const socket = connect(server.url, { auth: { token: t.hs256 } });
    assert.equal(await outcome(socket), 'connected');
    const got = nextEvent(socket, 'message');
    const res = await fetch(new URL('api/', server.url), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${t.hs256}` },
      body: JSON.stringify({ channel: 'message', body: 'to team 7', to: 'team:7' }),
    });
    assert.equal(res.status, 200, await res.text());
    assert.equal((await got)[0], 'to team 7');
    socket.close();
    for (const [name, says] of [['hs_expired', /expired/], ['none', /algorithm/], ['hs_wrong_secret', /signature/]]) {
      const refused = connect(server.url, { auth: { token: t[name] } });
      assert.match(await outcome(refused), says, name);
      refused.close();
    }
  }));

  test('an expiring token: sidecast:disconnect with the reason at exp, then a reconnect with a fresh token', h.withLogs(async () => {
    // 4 s: long enough for a connect on a loaded machine, short enough for the test.
    let current = tokens(4).hs_short;
    // The auth option as a function: called on every (re)connect, so each gets the current token.
    const socket = CLIENTS.latest.io(server.url, {
      path: SOCKETIO_PATH, forceNew: true, reconnection: false, auth: (cb) => cb({ token: current }),
    });
    // Listening before the connect: on a loaded machine the short token may expire moments after
    // the connect, before a listener attached afterwards would be in place.
    // Both arrive together (the reason is queued just before the DISCONNECT packet).
    const told = nextEvent(socket, 'sidecast:disconnect', { ms: 10_000 });
    const closed = nextEvent(socket, 'disconnect', { ms: 10_000 });
    assert.equal(await outcome(socket), 'connected');
    const [reason] = await told;
    assert.match(reason, /token expired/);
    assert.equal((await closed)[0], 'io server disconnect');
    current = tokens(60).hs_short;
    socket.connect();
    assert.equal(await outcome(socket), 'connected', 'the fresh token is accepted');
    socket.close();
  }));
});
