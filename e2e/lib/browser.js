// Headless Chromium for the e2e tests, loopback only: one launch set-up for every test file
// that drives a page.

import { chromium } from 'playwright-core';

/** The Chromium binary (Debian's package unless E2E_CHROMIUM names another). */
export const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';

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
  // Belt and braces: no host name resolves, so nothing can leave loopback even by accident.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];

/** Launches headless Chromium with the arguments above. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS, timeout: 30_000 });
}
