// keygate's consent page, driven by an independent, OpenID-certified relying party
// (openid-client) with a real browser (Debian's chromium through playwright-core): a client
// with `consent: required` is denied (access_denied), approved (the code flow completes and
// the library checks the ID token), remembered (no page for the same scopes), asked again for
// a new scope and for prompt=consent; after the test withdraws the consent
// (DELETE /me/consents, when this script prints {"waiting":"revoke"}) the old refresh token
// is refused, prompt=none answers consent_required and the page is shown again. Run by
// gateway/tests/identity/provider.rs; prints one JSON line of results at the end.
import * as client from 'openid-client';
import { check, env, launchChromium, listenRelyingParty } from './relying-party.mjs';
import readline from 'node:readline';

const issuer = new URL(env('KG_ISSUER'));
const redirectUri = env('KG_REDIRECT_URI');
const clientName = env('KG_CLIENT_NAME');
const insecure = { execute: [client.allowInsecureRequests] };
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const results = {};
const rpConfig = await client.discovery(issuer, env('KG_CLIENT'), undefined, client.None(), insecure);

const browser = await launchChromium();
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  // The relying party's callback: the browser's arrival is the answer.
  const rp = await listenRelyingParty(redirectUri);

  async function authorization(scope, extra = {}) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(rpConfig, {
      redirect_uri: redirectUri, scope, state, nonce, code_challenge_method: 'S256',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), ...extra,
    });
    return { url, verifier, state, nonce };
  }
  // Opens the request in the browser (signing in when asked) and, if the consent page comes,
  // notes what it shows and presses `decide`. Returns where the browser rp.arrived and the page.
  async function visit(req, decide, signIn = false) {
    rp.arrived = null;
    await page.goto(req.url.href);
    if (signIn && !rp.arrived) {
      check(page.url().includes('/signin'), `expected the sign-in page, got ${page.url()}`);
      await page.getByLabel('Email address').fill(env('KG_EMAIL'));
      await page.getByLabel('Password').fill(env('KG_PASSWORD'));
      await page.getByRole('button', { name: 'Sign in' }).click();
    }
    let shown = null;
    for (let i = 0; i < 100 && !rp.arrived && !shown; i++) {
      if (await page.getByRole('button', { name: 'Approve' }).count() > 0) {
        const text = await page.textContent('body');
        shown = { names_client: text.includes(clientName), scopes: await page.locator('ul.scopes code').allTextContents() };
      } else {
        await page.waitForTimeout(100);
      }
    }
    if (shown) {
      check(decide, `a consent page nobody expected: ${JSON.stringify(shown)}`);
      await page.getByRole('button', { name: decide }).click();
    }
    for (let i = 0; i < 100 && !rp.arrived; i++) await page.waitForTimeout(100);
    check(rp.arrived, `never reached the relying party; at ${page.url()}: ${await page.textContent('body')}`);
    return { at: new URL(rp.arrived), shown };
  }
  const grant = (req, at) => client.authorizationCodeGrant(rpConfig, at, {
    pkceCodeVerifier: req.verifier, expectedState: req.state, expectedNonce: req.nonce,
  });

  // 1. Deny: the client hears access_denied with its state.
  const denied = await authorization('openid email');
  const d = await visit(denied, 'Deny', true);
  results.deny = { page: d.shown, error: d.at.searchParams.get('error'), state_ok: d.at.searchParams.get('state') === denied.state };

  // 2. Approve: the code flow completes, the library checks the ID token.
  const approved = await authorization('openid email');
  const a = await visit(approved, 'Approve');
  const tokens = await grant(approved, a.at);
  results.approve = { page: a.shown, sub: tokens.claims().sub, email: tokens.claims().email, scope: tokens.scope };

  // 3. The same scopes again (or fewer): no page.
  const again = await authorization('openid');
  const r = await visit(again, null);
  results.remembered = { page: r.shown, has_code: !!r.at.searchParams.get('code') };

  // 4. A new scope asks again, for the scopes of this request.
  const wider = await authorization('openid email profile');
  const w = await visit(wider, 'Approve');
  results.new_scope = { page: w.shown, has_code: !!w.at.searchParams.get('code') };

  // 5. prompt=consent asks even though everything was approved.
  const forced = await authorization('openid', { prompt: 'consent' });
  const f = await visit(forced, 'Approve');
  results.prompt_consent = { page: f.shown, has_code: !!f.at.searchParams.get('code') };

  // 6. The test withdraws the consent; then the refresh token of step 2 is refused,
  // prompt=none cannot ask, and the page comes again.
  console.log(JSON.stringify({ waiting: 'revoke' }));
  await lines.next();
  try {
    await client.refreshTokenGrant(rpConfig, tokens.refresh_token);
    results.refresh_after_revoke = 'accepted';
  } catch (e) {
    results.refresh_after_revoke = e.error ?? e.code;
  }
  const silent = await authorization('openid', { prompt: 'none' });
  const s = await visit(silent, null);
  results.prompt_none_after_revoke = s.at.searchParams.get('error');
  const after = await authorization('openid');
  const p = await visit(after, 'Approve');
  results.page_after_revoke = { page: p.shown, has_code: !!p.at.searchParams.get('code') };
  rp.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results }));
process.exit(0);
