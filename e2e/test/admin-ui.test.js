// The real Socket.IO Admin UI (@socket.io/admin-ui from npm, its ui/dist served by the node at
// /admin/ through `admin.ui_dir`) in headless Chromium, against two Sidecast nodes on one broker:
// it logs in, shows both nodes with their socket counts, lists a socket connected to the other
// node with its rooms, and disconnects it with its button; a wrong password is refused.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { ARTIFACTS_DIR, CLIENTS, E2E_DIR, Harness, NEEDS_REDIS, SIDECAST_BIN, freePort, login, nextEvent, waitUntil } from '../lib/harness.js';
import { launchChromium } from '../lib/browser.js';

const DEADLINE = 15_000;
const UI_DIR = path.join(E2E_DIR, 'node_modules', '@socket.io', 'admin-ui', 'ui', 'dist');
const PASSWORD = 'correct horse battery';

const h = new Harness('admin-ui');
let browser;
const sockets = [];
const servers = [];

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** The UI's files on another origin (`port`), as the hosted copy at admin.socket.io is. */
function serveUiElsewhere(port) {
  const server = http.createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
    const file = path.join(UI_DIR, path.normalize(name));
    if (!file.startsWith(UI_DIR) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
}

/** `sidecast admin hash-password`, as an operator makes the hash. */
function hashPassword(password) {
  return new Promise((resolve, reject) => {
    const child = execFile(SIDECAST_BIN, ['admin', 'hash-password', '--cost', '6'], (err, stdout, stderr) => {
      if (err) reject(new Error(`hash-password failed: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
    child.stdin.end(`${password}\n`);
  });
}

before(async () => {
  browser = await launchChromium();
});
after(async () => {
  for (const s of sockets) s.close();
  for (const s of servers) s.close();
  await browser?.close();
  await h.close();
});

/**
 * A browser profile that reaches loopback only (the UI's web fonts from Google and jsDelivr are
 * refused: the UI works without them), with the UI's Socket.IO path preset as an operator types
 * it once under "Advanced options" (the UI remembers it).
 */
async function newUiPage(label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['127.0.0.1', 'localhost'].includes(url.hostname)) return route.continue();
    return route.abort('blockedbyclient');
  });
  await context.addInitScript(() => {
    if (!localStorage.getItem('path')) localStorage.setItem('path', '/ws/socket.io');
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => h.logs.push(`[${label} pageerror] ${e.message}`));
  page.on('console', (m) => h.logs.push(`[${label} console.${m.type()}] ${m.text()}`));
  return { context, page };
}

/** Fills the UI's login dialog and submits it. */
async function logIn(page, serverUrl, password) {
  const dialog = page.locator('.v-dialog form');
  await dialog.waitFor({ timeout: DEADLINE });
  const inputs = dialog.locator('input');
  await inputs.nth(0).fill(serverUrl);
  await inputs.nth(1).fill('admin');
  await inputs.nth(2).fill(password);
  await dialog.locator('button[type=submit]').click();
}

describe('the Socket.IO Admin UI against two nodes', { concurrency: 1, skip: NEEDS_REDIS }, () => {
  let a;
  let b;
  let app;
  let hostedPort;

  before(async () => {
    assert.ok(fs.existsSync(path.join(UI_DIR, 'index.html')), `${UI_DIR}: run npm ci in e2e/`);
    const hash = await hashPassword(PASSWORD);
    hostedPort = await freePort();
    await serveUiElsewhere(hostedPort);
    const extraEnv = {
      SIDECAST_ADMIN__ENABLED: 'true',
      SIDECAST_ADMIN__PASSWORD_HASH: hash,
      SIDECAST_ADMIN__UI_DIR: UI_DIR,
      SIDECAST_ADMIN__ALLOWED_ORIGINS: JSON.stringify([`http://127.0.0.1:${hostedPort}`]),
    };
    a = await h.startServer({ label: 'a', channel: 'e2e-admin', cluster: true, extraEnv });
    b = await h.startServer({ label: 'b', channel: 'e2e-admin', cluster: true, extraEnv });
    // The application's client, official and unchanged, on node b, in a room of its user.
    const { cookie } = await login(b.url);
    app = CLIENTS.latest.io(b.url, {
      path: '/ws/socket.io',
      forceNew: true,
      reconnection: false,
      extraHeaders: { Cookie: cookie },
    });
    sockets.push(app);
    await nextEvent(app, 'connect');
  });

  test('logs in on node a, shows both nodes, lists and disconnects the socket of node b', h.withLogs(async () => {
    const { context, page } = await newUiPage('ui');
    try {
      await page.goto(new URL('admin/', a.url).href);
      await logIn(page, a.url.replace(/\/$/, ''), PASSWORD);
      await page.locator('.v-dialog form').waitFor({ state: 'hidden', timeout: DEADLINE });

      // Servers: both nodes, node a with no application socket, node b with one.
      await page.goto(new URL('admin/#/servers/', a.url).href);
      const rows = page.locator('.v-data-table tbody tr');
      await waitUntil(async () => (await rows.count()) === 2, { ms: DEADLINE, what: 'two servers listed' });
      await waitUntil(async () => {
        const counts = (await rows.allInnerTexts()).map((r) => r.split('\t')[4]?.trim()).sort();
        return JSON.stringify(counts) === JSON.stringify(['0', '1']);
      }, { ms: DEADLINE, what: 'the socket counts 0 and 1' });
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-servers.png'), fullPage: true });

      // Sockets: the socket of node b, listed on node a.
      await page.goto(new URL('admin/#/sockets/', a.url).href);
      const row = page.locator('.v-data-table tbody tr', { hasText: app.id });
      await row.waitFor({ timeout: DEADLINE });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-sockets.png'), fullPage: true });

      // Its page: its rooms, the room of its id and its user's.
      await row.click();
      const card = (title) => page.locator('.v-card', { has: page.locator('.v-card__title', { hasText: title }) });
      const rooms = card('Rooms');
      await rooms.locator('td', { hasText: 'user:Gonzalo' }).waitFor({ timeout: DEADLINE });
      await rooms.locator('td', { hasText: app.id }).first().waitFor({ timeout: DEADLINE });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-socket.png'), fullPage: true });

      // The socket's disconnect button: the client on node b is disconnected by the server.
      const disconnected = nextEvent(app, 'disconnect', { ms: DEADLINE });
      const details = card('Details');
      await details.locator('button').last().click();
      assert.equal((await disconnected)[0], 'io server disconnect');
      await waitUntil(async () => (await page.locator('.v-card__title', { hasText: 'Details' }).count()) > 0
        && (await details.innerText()).toLowerCase().includes('disconnected'),
      { ms: DEADLINE, what: 'the UI shows the socket disconnected' });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-disconnected.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }));

  test('a UI served from an allowed origin logs in across origins (CORS with credentials)', h.withLogs(async () => {
    const { context, page } = await newUiPage('ui-hosted');
    try {
      await page.goto(`http://127.0.0.1:${hostedPort}/`);
      await logIn(page, b.url.replace(/\/$/, ''), PASSWORD);
      await page.locator('.v-dialog form').waitFor({ state: 'hidden', timeout: DEADLINE });
      await page.goto(`http://127.0.0.1:${hostedPort}/#/servers/`);
      const rows = page.locator('.v-data-table tbody tr');
      await waitUntil(async () => (await rows.count()) === 2, { ms: DEADLINE, what: 'two servers listed' });
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-hosted.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }));

  test('a wrong password is refused and the UI says so', h.withLogs(async () => {
    const { context, page } = await newUiPage('ui-wrong');
    try {
      await page.goto(new URL('admin/', b.url).href);
      await logIn(page, b.url.replace(/\/$/, ''), 'not the password');
      await page.locator('.v-dialog .red--text', { hasText: 'Invalid credentials' }).waitFor({ timeout: DEADLINE });
      fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'admin-ui-wrong-password.png') });
    } finally {
      await context.close();
    }
  }));
});
