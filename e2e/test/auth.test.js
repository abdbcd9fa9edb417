// Authentication end to end: every session store's cookie with the Node client (websocket and
// polling) and in headless Chromium. (The Python clients: web/tests/session_cookies.rs.)

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { BROKER, CLIENTS, Harness, login, nextEvent } from '../lib/harness.js';

const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];
const SOCKETIO_PATH = '/ws/socket.io';
const DEADLINE = 10_000;

const h = new Harness('auth');
let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, timeout: 30_000 });
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
    nextEvent(socket, 'connect_error').then((e) => `refused: ${e.message}`),
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
