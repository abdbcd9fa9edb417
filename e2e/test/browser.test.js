// The page in headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with no
// network beyond loopback: the page loads the npm-installed socket.io client from the server.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createRequire } from 'node:module';

import { ARTIFACTS_DIR, CLIENTS, Harness, NEEDS_REDIS, login, publish, waitUntil } from '../lib/harness.js';
import { CHROMIUM, launchChromium } from '../lib/browser.js';
import { startProxy } from '../lib/proxy.js';
import { Publisher } from '../lib/publisher.js';

const DEADLINE = 10_000;
export const SCREENSHOT = path.join(ARTIFACTS_DIR, 'page.png');

const h = new Harness('browser');
let browser;
const proxies = [];

before(async () => {
  browser = await launchChromium();
  h.logs.push(`[chromium] version ${browser.version()}`);
});
after(async () => {
  await browser?.close();
  for (const p of proxies) await p.close();
  await h.close();
});

/**
 * A fresh browser profile whose requests may go to loopback only; anything else is aborted and
 * recorded in `blocked`. Page errors and console errors are recorded in `errors`.
 */
async function newContext(label) {
  const context = await browser.newContext({ viewport: { width: 800, height: 480 } });
  context.blocked = [];
  context.errors = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return route.continue();
    context.blocked.push(url.href);
    return route.abort('blockedbyclient');
  });
  context.on('page', (page) => {
    page.on('pageerror', (e) => context.errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      h.logs.push(`[${label} console.${m.type()}] ${m.text()}`);
      if (m.type() === 'error') context.errors.push(`console.error: ${m.text()}`);
    });
  });
  return context;
}

/** Opens `/` (after `/login` when `loggedIn`) and waits for the status to reach `state`. */
async function openPage(url, label, { loggedIn, state }) {
  const context = await newContext(label);
  const page = await context.newPage();
  if (loggedIn) {
    const res = await page.goto(new URL('login', url).href);
    assert.equal(res.status(), 200);
    assert.deepEqual(JSON.parse(await page.locator('body').innerText()), { name: 'Gonzalo' });
  }
  await page.goto(url);
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout: DEADLINE }).catch(async (e) => {
    const status = await page.locator('#status').evaluate((el) => `${el.dataset.state}: ${el.textContent}`);
    throw new Error(`${label}: status never became "${state}" (it is ${status}): ${e.message}`);
  });
  return { context, page };
}

/** The texts of the page's message list. */
function messages(page) {
  return page.locator('#messages li').allInnerTexts();
}

/** Waits until the page's list contains `text`. */
function waitForMessage(page, text) {
  return page.locator('#messages li', { hasText: text }).first().waitFor({ timeout: DEADLINE });
}

test('versions', (t) => {
  const playwright = createRequire(import.meta.url)('playwright-core/package.json').version;
  t.diagnostic(`chromium ${browser.version()} (${CHROMIUM}), playwright-core ${playwright}`);
  t.diagnostic(`page clients: socket.io-client ${CLIENTS.latest.version} and ${CLIENTS['4.0.0'].version}`);
});

describe('the page in headless Chromium, with the latest socket.io client', { concurrency: 1 }, () => {
  let server;
  let a;
  let b;
  let anonymous;

  before(async () => {
    server = await h.startServer({ label: 'node-browser', channel: 'e2e-browser' });
  });
  after(async () => {
    for (const p of [a, b, anonymous]) await p?.context.close();
  });

  test('the page loads the socket.io client from the server, not a CDN', h.withLogs(async () => {
    const html = await (await fetch(server.url)).text();
    assert.match(html, /<script src="\/socket\.io\.min\.js"><\/script>/);
    assert.doesNotMatch(html, /cdn\.socket\.io/);
    const res = await fetch(new URL('socket.io.min.js', server.url));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /javascript/);
    const served = Buffer.from(await res.arrayBuffer());
    assert.ok(served.equals(fs.readFileSync(CLIENTS.latest.browserBuild)), 'the npm file, byte for byte');
  }));

  test('after /login the page shows it is connected', h.withLogs(async () => {
    a = await openPage(server.url, 'page A', { loggedIn: true, state: 'connected' });
    assert.equal(await a.page.locator('#status').innerText(), 'connected');
  }));

  test('a second logged-in browser context connects too', h.withLogs(async () => {
    b = await openPage(server.url, 'page B', { loggedIn: true, state: 'connected' });
  }));

  test('without logging in, the page shows the refusal', h.withLogs(async () => {
    anonymous = await openPage(server.url, 'anonymous page', { loggedIn: false, state: 'refused' });
    assert.match(await anonymous.page.locator('#status').innerText(), /^refused: unauthorized/);
  }));

  test('type a message, click Send: it appears once on both logged-in pages, not on the refused one', h.withLogs(async () => {
    const text = `Hello from Chromium ${Date.now()}`;
    await a.page.locator('#message').fill(text);
    const posted = a.page.waitForResponse((r) => r.url().endsWith('/api/'), { timeout: DEADLINE });
    await a.page.locator('#send').click();
    const res = await posted;
    assert.equal(res.status(), 200);
    assert.deepEqual(await res.json(), { status: true });
    await Promise.all([waitForMessage(a.page, text), waitForMessage(b.page, text)]);
    assert.deepEqual(await messages(a.page), [text]);
    assert.deepEqual(await messages(b.page), [text]);

    fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await a.page.screenshot({ path: SCREENSHOT });

    // The refused page got nothing, and stays refused.
    assert.deepEqual(await messages(anonymous.page), []);
    assert.equal(await anonymous.page.locator('#status').getAttribute('data-state'), 'refused');
    await anonymous.page.screenshot({ path: path.join(ARTIFACTS_DIR, 'refused.png') });
  }));

  test('events from POST /api/ and `sidecast emit` appear, in order', { skip: NEEDS_REDIS }, h.withLogs(async () => {
    const { cookie } = await login(server.url);
    await publish(server.url, { channel: 'message', body: 'from POST /api/' }, { cookie });
    await publish(server.url, { channel: 'message', body: { an: 'object' } }, { cookie });
    await publish(server.url, { channel: 'other-event', body: 'not shown: the page listens to "message"' }, { cookie });
    await h.emit('message', 'from sidecast emit', { channel: server.channel });
    for (const p of [a.page, b.page]) {
      await waitForMessage(p, 'from sidecast emit');
      assert.deepEqual((await messages(p)).slice(1), ['from POST /api/', '{"an":"object"}', 'from sidecast emit']);
    }
    assert.deepEqual(await messages(anonymous.page), []);
    fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await a.page.screenshot({ path: SCREENSHOT });
  }));

  test('no request left loopback, no page errors', h.withLogs(async () => {
    for (const p of [a, b, anonymous]) {
      assert.deepEqual(p.context.blocked, [], 'requests beyond loopback');
      assert.deepEqual(p.context.errors, [], 'page errors');
    }
  }));
});

describe('the page joins a room over HTTP and gets only that room\'s events', { concurrency: 1 }, () => {
  let server;
  let page;

  before(async () => {
    server = await h.startServer({
      label: 'node-browser-rooms',
      channel: 'e2e-browser-rooms',
      extraEnv: { SIDECAST_AUTH__SESSION_ROOMS: '["game:*"]' },
    });
  });
  after(async () => {
    await page?.context.close();
  });

  test('POST /api/rooms from the page, then events to its room and to another', h.withLogs(async () => {
    page = await openPage(server.url, 'page rooms', { loggedIn: true, state: 'connected' });
    // The page's own script could do this: a same-origin fetch with its session cookie.
    const ask = (body) => page.page.evaluate(async (b) => {
      const res = await fetch('/api/rooms', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(b),
      });
      return { status: res.status, body: await res.json() };
    }, body);
    assert.deepEqual(await ask({ op: 'join', rooms: 'game:1', to: 'user:Gonzalo' }), { status: 200, body: { status: true } });
    // auth.session_rooms allows game:* only, and only for the page's own sockets.
    assert.equal((await ask({ op: 'join', rooms: 'chat', to: 'user:Gonzalo' })).status, 403);
    assert.equal((await ask({ op: 'join', rooms: 'game:2', to: 'user:alice' })).status, 403);

    const { cookie } = await login(server.url);
    for (const [body, to] of [['for game 2', 'game:2'], ['for game 1', 'game:1'], ['for everyone', undefined]]) {
      const res = await publish(server.url, { channel: 'message', body, ...(to ? { to } : {}) }, { cookie });
      assert.equal(res.status, 200);
    }
    await waitForMessage(page.page, 'for everyone');
    assert.deepEqual(await messages(page.page), ['for game 1', 'for everyone']);

    assert.deepEqual(await ask({ op: 'leave', rooms: 'game:1', to: 'user:Gonzalo' }), { status: 200, body: { status: true } });
    await publish(server.url, { channel: 'message', body: 'game 1 again', to: 'game:1' }, { cookie });
    await publish(server.url, { channel: 'message', body: 'everyone again' }, { cookie });
    await waitForMessage(page.page, 'everyone again');
    assert.deepEqual(await messages(page.page), ['for game 1', 'for everyone', 'everyone again']);
    assert.deepEqual(page.context.blocked, [], 'requests beyond loopback');
    // Chromium logs the two refusals above as failed resources; nothing else went wrong.
    const unexpected = page.context.errors.filter((e) => !/status of 403 \(Forbidden\)/.test(e));
    assert.deepEqual(unexpected, [], 'page errors');
  }));
});

describe('the page with socket.io client 4.0.0, the version the original page loads', { concurrency: 1 }, () => {
  let server;
  let loggedIn;
  let anonymous;

  before(async () => {
    server = await h.startServer({
      label: 'node-browser-4.0.0',
      channel: 'e2e-browser-4.0.0',
      clientJs: CLIENTS['4.0.0'].browserBuild,
    });
  });
  after(async () => {
    for (const p of [loggedIn, anonymous]) await p?.context.close();
  });

  test('not logged in: never connects and shows the server\'s reason', h.withLogs(async () => {
    const context = await newContext('anonymous page 4.0.0');
    anonymous = { context, page: await context.newPage() };
    await anonymous.page.goto(server.url);
    await anonymous.page.locator('#status', { hasText: 'unauthorized' }).waitFor({ timeout: DEADLINE });
    assert.notEqual(await anonymous.page.locator('#status').getAttribute('data-state'), 'connected');
  }));

  test('logged in: connects, Send shows the message; the anonymous page receives nothing', h.withLogs(async () => {
    loggedIn = await openPage(server.url, 'page 4.0.0', { loggedIn: true, state: 'connected' });
    const text = `Hello from 4.0.0 ${Date.now()}`;
    await loggedIn.page.locator('#message').fill(text);
    await loggedIn.page.locator('#send').click();
    await waitForMessage(loggedIn.page, text);
    assert.deepEqual(await messages(loggedIn.page), [text]);
    assert.deepEqual(await messages(anonymous.page), []);
    for (const p of [loggedIn, anonymous]) {
      assert.deepEqual(p.context.blocked, [], 'requests beyond loopback');
      assert.deepEqual(p.context.errors, [], 'page errors');
    }
  }));

  test('not logged in: the refusal is shown as final (data-state="refused")', async () => {
    assert.equal(await anonymous.page.locator('#status').getAttribute('data-state'), 'refused');
  });
});

describe('the page recovers what it missed while its connection was cut', { concurrency: 1 }, () => {
  let server;
  let proxy;
  let page;

  before(async () => {
    server = await h.startServer({ label: 'node-browser-recovery', channel: 'e2e-browser-recovery' });
    // The page's network: every byte between Chromium and the node goes through this proxy.
    proxy = await startProxy([server.url]);
    proxies.push(proxy);
  });
  after(async () => {
    await page?.context.close();
  });

  test('cut under load, then back: every acknowledged event once, in order, and the recovered count shown', h.withLogs(async (t) => {
    page = await openPage(proxy.url, 'page recovery', { loggedIn: true, state: 'connected' });
    const recovery = page.page.locator('#recovery');
    // Empty (so hidden) until something was recovered: attached is enough.
    await page.page.locator('#recovery[data-status="new"]').waitFor({ state: 'attached', timeout: DEADLINE });

    const { cookie } = await login(server.url);
    const publisher = new Publisher([server.url], { cookie, channel: 'message', body: (n) => `event ${n}` }).start();
    let missed;
    try {
      await waitUntil(async () => (await messages(page.page)).length >= 20, { ms: DEADLINE, what: '20 events on the page' });
      // The network goes down: connections cut, new ones refused, until it is back.
      proxy.pause();
      await page.page.locator('#status:not([data-state="connected"])').waitFor({ timeout: DEADLINE });
      const before = publisher.acked.length;
      await publisher.acknowledged(40);
      proxy.resume();
      // Acknowledged while the page surely had no connection: it can only have them by recovery.
      missed = publisher.acked.length - before;
      await page.page.locator('#recovery[data-status="recovered"]').waitFor({ timeout: DEADLINE });
      await page.page.locator('#status[data-state="connected"]').waitFor({ timeout: DEADLINE });
      await publisher.acknowledged(20);
    } finally {
      await publisher.stop();
    }
    assert.equal((await publish(server.url, { channel: 'message', body: 'end' }, { cookie })).status, 200);
    await waitForMessage(page.page, 'end');

    assert.deepEqual(publisher.failed, [], 'every POST answered 200');
    const expected = [...publisher.acked.map((n) => `event ${n}`), 'end'];
    assert.deepEqual(await messages(page.page), expected, 'every event once, in order');
    const recovered = Number(await recovery.getAttribute('data-recovered'));
    assert.ok(recovered >= missed, `recovered ${recovered}, at least the ${missed} published while the page was cut off`);
    assert.equal(await recovery.innerText(), `recovered ${recovered} event(s)`);
    t.diagnostic(`${publisher.acked.length} acknowledged, ${expected.length - 1} shown, ${recovered} recovered (${missed} published while cut off)`);

    fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await page.page.screenshot({ path: path.join(ARTIFACTS_DIR, 'recovered.png') });

    assert.deepEqual(page.context.blocked, [], 'requests beyond loopback');
    // Chromium logs the failed reconnects while the network was down; nothing else went wrong.
    const unexpected = page.context.errors.filter((e) => !/ERR_CONNECTION|ERR_EMPTY_RESPONSE|WebSocket connection .* failed|Failed to load resource/.test(e));
    assert.deepEqual(unexpected, [], 'page errors');
  }));
});
