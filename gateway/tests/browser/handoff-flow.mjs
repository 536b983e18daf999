// Single sign-on across hosts, as a person meets it: two apps on other hosts than the
// gateway (app-a.test, other.example), behind nginx with TLS from a CA the test made and the
// browser trusts (NSS database in $HOME; no certificate error is ignored). Sign in once
// (at the gateway's host, reached through app A), reach app B without a password, then sign
// out once and find both apps refusing. Uses Debian's chromium through playwright-core.
// With KG_COOKIE_DOMAIN set (cookie-domain mode: the tenant shares its session cookie with
// that parent domain of every host), no handoff may happen at all: no navigation to
// /.keygate/callback, no app-host cookie, and sign-out clears the shared cookie.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const appA = env('KG_APP_A_URL');
const appB = env('KG_APP_B_URL');
const gatewayHost = env('KG_GATEWAY_HOST');
const accountUrl = env('KG_ACCOUNT_URL');
const email = env('KG_EMAIL');
const shots = env('KG_SCREENSHOTS');
const prefix = process.env.KG_SHOT_PREFIX || 'handoff';
const cookieDomain = process.env.KG_COOKIE_DOMAIN || '';
const check = (cond, msg) => { if (!cond) throw new Error(msg); };
const host = (u) => new URL(u).hostname;

const browser = await chromium.launch({
  executablePath: process.env.KG_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--host-resolver-rules=${env('KG_RESOLVER_RULES')}`],
  env: { ...process.env, HOME: env('KG_HOME') },
  timeout: 30000,
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const passwordPrompts = [];
  const handoffs = [];
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame() && /\/signin/.test(f.url())) passwordPrompts.push(f.url());
  });
  page.on('request', (r) => {
    if (r.url().includes('/.keygate/callback')) handoffs.push(r.url());
  });

  // App A: sent through app A's handoff path to the gateway's sign-in page.
  await page.goto(appA);
  check(host(page.url()) === gatewayHost && page.url().includes('/signin?rd='),
    `expected the sign-in page on ${gatewayHost}, got ${page.url()}`);
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(env('KG_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(appA);
  check((await page.textContent('body')).includes(email), `app A did not see the identity: ${await page.textContent('body')}`);
  await page.screenshot({ path: path.join(shots, `${prefix}-app-a.png`), fullPage: true });

  // App B on an unrelated domain: no second password.
  const promptsBefore = passwordPrompts.length;
  await page.goto(appB);
  await page.waitForURL(appB);
  check((await page.textContent('body')).includes(email), `app B did not see the identity: ${await page.textContent('body')}`);
  check(passwordPrompts.length === promptsBefore, `app B asked for a password: ${passwordPrompts}`);
  await page.screenshot({ path: path.join(shots, `${prefix}-app-b.png`), fullPage: true });

  // Which cookie lives where: the session cookie only on the gateway's host.
  const cookies = await context.cookies();
  const where = cookies.map((c) => `${c.name}@${c.domain}`).sort();
  console.log('COOKIES', where.join(' '));
  for (const c of cookies) {
    if (c.name.includes('keygate_session') && !c.name.includes('app_session')) {
      check(c.domain === gatewayHost || c.domain === `.${process.env.KG_COOKIE_DOMAIN}`,
        `the session cookie reached ${c.domain}`);
    }
    check(c.secure && c.httpOnly, `${c.name} is not Secure and HttpOnly`);
  }
  if (cookieDomain) {
    check(handoffs.length === 0, `cookie-domain mode went through a handoff: ${handoffs}`);
    check(!cookies.some((c) => c.name.includes('app_session')), `an app-host cookie was set: ${where}`);
    check(cookies.some((c) => c.name.startsWith('__Secure-keygate_session_') && c.domain === `.${cookieDomain}`),
      `no session cookie shared with ${cookieDomain}: ${where}`);
  }

  // Sign out once, on the gateway's account page; both apps send to sign in again.
  await page.goto(accountUrl);
  await page.screenshot({ path: path.join(shots, `${prefix}-account.png`), fullPage: true });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/signin/);
  const left = (await context.cookies()).filter((c) => c.name.includes('keygate_session'));
  check(left.length === 0 || !cookieDomain, `sign-out left session cookies: ${left.map((c) => `${c.name}@${c.domain}`)}`);
  for (const app of [appA, appB]) {
    await page.goto(app);
    check(host(page.url()) === gatewayHost && (await page.getByLabel('Password').count()) === 1,
      `after sign-out ${app} was reachable: ${page.url()}`);
  }
  console.log('HANDOFF FLOW OK');
} finally {
  await browser.close();
}
