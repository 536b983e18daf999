// A person opens a protected URL behind nginx, is sent to keygate's sign-in page, fails once,
// signs in, lands on the app, signs out, and is sent back to sign in. Screenshots go to
// KG_SCREENSHOTS. Uses Debian's chromium through playwright-core (never a downloaded browser).
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const protectedUrl = env('KG_PROTECTED_URL');
const signoutUrl = env('KG_SIGNOUT_URL');
const shots = env('KG_SCREENSHOTS');
const check = (cond, msg) => { if (!cond) throw new Error(msg); };

const browser = await chromium.launch({
  executablePath: process.env.KG_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  timeout: 30000,
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

  await page.goto(protectedUrl);
  check(page.url().includes('/signin?rd='), `expected the sign-in page, got ${page.url()}`);
  await page.screenshot({ path: path.join(shots, 'signin.png'), fullPage: true });

  // Labels lead to the fields (what a screen reader announces).
  await page.getByLabel('Email address').fill(env('KG_EMAIL'));
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();
  const described = await page.getByLabel('Password').getAttribute('aria-describedby');
  check(described && described.includes('password-error'), 'the error is not tied to the password field');
  check(await page.getByRole('alert').isVisible(), 'no error summary');
  await page.screenshot({ path: path.join(shots, 'signin-error.png'), fullPage: true });

  await page.getByLabel('Password').fill(env('KG_PASSWORD'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(protectedUrl);
  const body = await page.textContent('body');
  check(body.includes(env('KG_EMAIL')), `the app did not see the identity: ${body}`);
  await page.screenshot({ path: path.join(shots, 'app.png'), fullPage: true });

  await page.goto(signoutUrl);
  await page.screenshot({ path: path.join(shots, 'signout.png'), fullPage: true });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/signin/);
  await page.goto(protectedUrl);
  check(page.url().includes('/signin?rd='), `after sign-out the app was reachable: ${page.url()}`);
  await page.screenshot({ path: path.join(shots, 'signed-out.png'), fullPage: true });
  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join('; ')}`);
  console.log('BROWSER FLOW OK');
} finally {
  await browser.close();
}
