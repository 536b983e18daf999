// What the browser-driven openid-client scripts share: reading their settings, failing
// loudly, headless Chromium (Debian's, through playwright-core), and the relying party's
// callback, where the browser's arrival is the answer.
import { chromium } from 'playwright-core';
import http from 'node:http';

/** The setting `k` from the environment; a missing one stops the script. */
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

/** Throws `msg` unless `cond`. */
export const check = (cond, msg) => { if (!cond) throw new Error(msg); };

process.on('uncaughtException', (e) => {
  console.error(e, 'cause:', e.cause);
  process.exit(1);
});

/** Headless Chromium. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.KG_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
}

/**
 * Listens on `redirectUri`'s port; `arrived` is the last URL the browser reached there
 * (set it to null before a new attempt), `close()` stops it.
 */
export async function listenRelyingParty(redirectUri) {
  const rp = { arrived: null };
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith('/favicon')) rp.arrived = new URL(req.url, redirectUri).href;
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('relying party');
  });
  await new Promise((ok) => server.listen(Number(new URL(redirectUri).port), '127.0.0.1', ok));
  rp.close = () => server.close();
  return rp;
}
