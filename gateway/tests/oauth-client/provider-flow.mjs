// keygate as an OpenID Provider, driven by an independent, OpenID-certified relying party
// (openid-client) with a real browser (Debian's chromium through playwright-core) for the
// person's part: discovery, authorization code with PKCE through keygate's sign-in page, the
// library's ID-token checks, userinfo, refresh, a replayed code (and its tokens revoked), an
// expired code, client credentials with introspection and revocation, RP-initiated logout,
// and the refusals. Run by gateway/tests/identity/provider.rs, which advances keygate's clock
// when this script prints {"waiting":"clock"} and answers on stdin. Prints one JSON line of
// results at the end; exits non-zero on any unexpected answer.
import * as client from 'openid-client';
import { check, env, launchChromium, listenRelyingParty } from './relying-party.mjs';
import readline from 'node:readline';

const issuer = new URL(env('KG_ISSUER'));
const redirectUri = env('KG_REDIRECT_URI');
const postLogoutUri = env('KG_POST_LOGOUT_URI');
const insecure = { execute: [client.allowInsecureRequests] };
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Expect `promise` to be refused with OAuth error `code`.
async function refused(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    let got = e.error ?? e.cause?.error ?? e.code;
    // A 401 with a challenge (invalid_client answers `WWW-Authenticate: Basic`): the body says why.
    if (e.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' && e.response) got = (await e.response.json()).error;
    check(got === code, `${what}: expected ${code}, got ${got} (${e.message})`);
    return got;
  }
  throw new Error(`${what}: accepted`);
}

const results = {};
const pub = await client.discovery(issuer, env('KG_PUBLIC_CLIENT'), undefined, client.None(), insecure);
const meta = pub.serverMetadata();
results.discovered = { issuer: meta.issuer, authorization_endpoint: meta.authorization_endpoint };

const browser = await launchChromium();
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  // The relying party's callback: the browser's arrival is the answer.
  const rp = await listenRelyingParty(redirectUri);
  // Opens `url` in the browser, signing in if keygate asks, and returns where it rp.arrived.
  async function visit(url, signIn) {
    rp.arrived = null;
    await page.goto(url.href ?? url);
    if (signIn && !rp.arrived) {
      check(page.url().includes('/signin'), `expected the sign-in page, got ${page.url()}`);
      await page.getByLabel('Email address').fill(env('KG_EMAIL'));
      await page.getByLabel('Password').fill(env('KG_PASSWORD'));
      await page.getByRole('button', { name: 'Sign in' }).click();
    }
    for (let i = 0; i < 100 && !rp.arrived; i++) await page.waitForTimeout(100);
    check(rp.arrived, `never reached the relying party; at ${page.url()}: ${await page.textContent('body')}`);
    return new URL(rp.arrived);
  }
  async function authorization(extra = {}) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(pub, {
      redirect_uri: redirectUri,
      scope: 'openid email profile groups',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...extra,
    });
    return { url, verifier, state, nonce };
  }

  // 1. Code with PKCE through the sign-in page; the library checks the ID token.
  const first = await authorization();
  const callback = await visit(first.url, true);
  const tokens = await client.authorizationCodeGrant(pub, callback, {
    pkceCodeVerifier: first.verifier, expectedState: first.state, expectedNonce: first.nonce,
  });
  const claims = tokens.claims();
  check(claims.email === env('KG_EMAIL') && claims.email_verified === true, `ID token claims: ${JSON.stringify(claims)}`);
  results.id_token = {
    sub: claims.sub, aud: claims.aud, nonce_ok: claims.nonce === first.nonce, has_at_hash: !!claims.at_hash,
    has_auth_time: typeof claims.auth_time === 'number', amr: claims.amr, acr: claims.acr, has_sid: !!claims.sid,
    groups: claims.groups,
  };
  const info = await client.fetchUserInfo(pub, tokens.access_token, claims.sub);
  results.userinfo = info;
  const refreshed = await client.refreshTokenGrant(pub, tokens.refresh_token);
  results.refreshed = { has_access_token: !!refreshed.access_token, rotated: refreshed.refresh_token !== tokens.refresh_token };

  // 2. The same code again: refused, and what its first use issued is revoked.
  results.replay = await refused(client.authorizationCodeGrant(pub, callback, {
    pkceCodeVerifier: first.verifier, expectedState: first.state, expectedNonce: first.nonce,
  }), 'invalid_grant', 'replayed code');
  results.after_replay_refresh = await refused(client.refreshTokenGrant(pub, refreshed.refresh_token), 'invalid_grant', 'refresh after replay');
  const userinfoAfter = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${refreshed.access_token}` } });
  results.after_replay_userinfo = userinfoAfter.status;

  // 3. A verifier that does not match the challenge (the browser is signed in: no form).
  const second = await authorization();
  const secondCallback = await visit(second.url, false);
  results.pkce_mismatch = await refused(client.authorizationCodeGrant(pub, secondCallback, {
    pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: second.state, expectedNonce: second.nonce,
  }), 'invalid_grant', 'wrong verifier');

  // 4. An expired code: the test advances keygate's clock past 60 s.
  const third = await authorization();
  const thirdCallback = await visit(third.url, false);
  console.log(JSON.stringify({ waiting: 'clock' }));
  await lines.next();
  results.expired = await refused(client.authorizationCodeGrant(pub, thirdCallback, {
    pkceCodeVerifier: third.verifier, expectedState: third.state, expectedNonce: third.nonce,
  }), 'invalid_grant', 'expired code');

  // 5. Refusals answered at the redirect URI, or (untrusted redirect URI) on a page.
  const noPkce = client.buildAuthorizationUrl(pub, { redirect_uri: redirectUri, scope: 'openid', state: 's' });
  results.public_without_pkce = (await visit(noPkce, false)).searchParams.get('error');
  const wideScope = await authorization({ scope: 'openid billing.admin' });
  results.scope_outside_allowed = (await visit(wideScope.url, false)).searchParams.get('error');
  const foreign = await authorization({ redirect_uri: 'https://evil.example/callback' });
  const foreignAnswer = await fetch(foreign.url, { redirect: 'manual' });
  results.unregistered_redirect_uri = { status: foreignAnswer.status, location: foreignAnswer.headers.get('location') };

  // 6. The device grant: the device asks, the signed-in person approves on the code page
  // (checked to wait first), the device's poll gets the tokens.
  const device = await client.initiateDeviceAuthorization(pub, { scope: 'openid email' });
  check(/^[A-Z]{4}-[A-Z]{4}$/.test(device.user_code), `user code ${device.user_code}`);
  const early = await fetch(meta.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: device.device_code, client_id: env('KG_PUBLIC_CLIENT'),
    }),
  });
  results.device_before_approval = (await early.json()).error;
  await page.goto(device.verification_uri_complete);
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForLoadState();
  check((await page.textContent('body')).includes('Device connected'), `device page: ${await page.textContent('body')}`);
  const deviceTokens = await client.pollDeviceAuthorizationGrant(pub, device);
  results.device = { sub: deviceTokens.claims()?.sub, scope: deviceTokens.scope, has_refresh_token: !!deviceTokens.refresh_token };

  // 7. RP-initiated logout with the ID token as hint, back to the registered URI; then the
  // browser has no session (prompt=none says so).
  const done = await visit(client.buildEndSessionUrl(pub, {
    id_token_hint: tokens.id_token, post_logout_redirect_uri: postLogoutUri, state: 'bye',
  }), false);
  results.logout = { landed: done.origin + done.pathname === postLogoutUri, state: done.searchParams.get('state') };
  const silent = await authorization({ prompt: 'none' });
  results.after_logout_prompt_none = (await visit(silent.url, false)).searchParams.get('error');
  rp.close();
} finally {
  await browser.close();
}

// 8. Client credentials for the confidential client (HTTP Basic), introspection and revocation
// by the same client, and a wrong secret.
const conf = await client.discovery(issuer, env('KG_CONFIDENTIAL_CLIENT'), undefined,
  client.ClientSecretBasic(env('KG_CONFIDENTIAL_SECRET')), insecure);
const machine = await client.clientCredentialsGrant(conf, { scope: env('KG_MACHINE_SCOPE') });
const before = await client.tokenIntrospection(conf, machine.access_token);
await client.tokenRevocation(conf, machine.access_token);
const after = await client.tokenIntrospection(conf, machine.access_token);
results.client_credentials = {
  scope: machine.scope, has_refresh_token: !!machine.refresh_token,
  introspected: { active: before.active, sub: before.sub, client_id: before.client_id }, after_revoke: after.active,
};
const wrong = await client.discovery(issuer, env('KG_CONFIDENTIAL_CLIENT'), undefined,
  client.ClientSecretBasic('not-the-secret'), insecure);
results.wrong_secret = await refused(client.clientCredentialsGrant(wrong, { scope: env('KG_MACHINE_SCOPE') }), 'invalid_client', 'wrong secret');

console.log(JSON.stringify({ results }));
process.exit(0);
