// nginx with the repository's own deploy/nginx.conf in front of test nodes: the config as shipped,
// with its upstream servers (app1, app2) replaced by the nodes' addresses and its port by a free
// loopback one. Used when nginx is installed (`E2E_NGINX`, else `nginx` on the PATH).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { REPO_ROOT, freePort, waitUntil } from './harness.js';

/** The nginx binary, or null when there is none. */
export const NGINX = (() => {
  const candidates = process.env.E2E_NGINX ? [process.env.E2E_NGINX] : ['nginx', '/usr/sbin/nginx'];
  for (const bin of candidates) {
    try {
      execFileSync(bin, ['-v'], { stdio: 'ignore' });
      return bin;
    } catch {
      // not this one
    }
  }
  return null;
})();

/** Skip option for checks that need nginx. */
export const NEEDS_NGINX = NGINX ? false : 'needs nginx (apt-get install nginx-light, or E2E_NGINX=PATH)';

/**
 * Starts nginx with deploy/nginx.conf in front of `nodes` (node URLs, in the order of app1,
 * app2); resolves with its URL. The harness stops it with the other processes.
 */
export async function startNginx(h, nodes) {
  const dir = fs.mkdtempSync(path.join(h.dir, 'nginx-'));
  const port = await freePort();
  let site = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'nginx.conf'), 'utf8');
  nodes.forEach((url, i) => {
    const from = `server app${i + 1}:5000`;
    if (!site.includes(from)) throw new Error(`deploy/nginx.conf has no "${from}"`);
    site = site.replace(from, `server ${new URL(url).host}`);
  });
  site = site.replace(/listen 8080;/, `listen 127.0.0.1:${port};`);
  fs.writeFileSync(path.join(dir, 'site.conf'), site);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), [
    // As root, nginx's workers would run as nobody, who cannot write to the scratch directory.
    process.getuid?.() === 0 ? 'user root;' : '',
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    'error_log stderr warn;',
    'events {}',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${dir}/body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  include ${dir}/site.conf;`,
    '}',
  ].join('\n'));
  h.spawn('nginx', NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
  const url = `http://127.0.0.1:${port}/`;
  await waitUntil(async () => {
    try {
      return (await fetch(new URL('healthz', url))).ok;
    } catch {
      return false;
    }
  }, { what: 'nginx answering /healthz' });
  return url;
}
