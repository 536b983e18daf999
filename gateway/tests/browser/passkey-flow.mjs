// Passkeys in a real browser: Chromium's virtual authenticator (CDP WebAuthn domain: CTAP2,
// internal transport, resident keys, user verification) creates a discoverable credential
// through keygate's registration API and then signs in with it alone — the browser, not a
// test double, builds every clientDataJSON (origin, challenge) and picks the credential.
// Then the same passkey answers the second factor of a password sign-in.
// The gateway's public URL is http://localhost:<port> (WebAuthn's one plain-HTTP origin).
// Run by gateway/tests/identity/webauthn.rs.
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('KG_GATEWAY_URL');
const tenant = env('KG_TENANT');
const check = (cond, msg) => { if (!cond) throw new Error(msg); };

const browser = await chromium.launch({
  executablePath: process.env.KG_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  timeout: 30000,
});
try {
  // The sign-in page's CSP admits no fetch from scripts; this script is the page's client.
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  // A page of the gateway's origin, so fetch and navigator.credentials run there.
  await page.goto(`${base}/t/${tenant}/signin`);

  const result = await page.evaluate(async ({ tenant, email, password }) => {
    const post = async (path, body, token) => {
      const headers = { 'content-type': 'application/json' };
      if (token) headers.authorization = `Bearer ${token}`;
      const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
      return { status: r.status, body: await r.json().catch(() => null) };
    };
    const claims = (jwt) => JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const login = await post(`/t/${tenant}/login`, { email, password });
    if (login.status !== 200) return { step: 'login', login };
    const token = login.body.access_token;
    const begun = await post(`/t/${tenant}/me/mfa/webauthn`, { label: 'Chromium' }, token);
    if (begun.status !== 200) return { step: 'options', begun };
    const created = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(begun.body.options.publicKey),
    });
    const done = await post(`/t/${tenant}/me/mfa/webauthn/finish`,
      { ceremony_id: begun.body.ceremony_id, credential: created.toJSON() }, token);
    if (done.status !== 200) return { step: 'finish', done };
    // Passkey alone: the options name no credential; the authenticator finds its own.
    const opts = await post(`/t/${tenant}/login/passkey/options`, {});
    if (opts.status !== 200) return { step: 'passkey options', opts };
    const asserted = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.body.options.publicKey),
    });
    const signedIn = await post(`/t/${tenant}/login/passkey`,
      { ceremony_id: opts.body.ceremony_id, credential: asserted.toJSON() });
    if (signedIn.status !== 200) return { step: 'passkey sign-in', signedIn };
    // The same passkey as the second factor of a password sign-in.
    const held = await post(`/t/${tenant}/login`, { email, password });
    if (held.status !== 403 || !held.body.methods.includes('webauthn')) return { step: 'mfa_required', held };
    const mfaOpts = await post(`/t/${tenant}/login/mfa/webauthn/options`, { mfa_token: held.body.mfa_token });
    if (mfaOpts.status !== 200) return { step: 'second factor options', mfaOpts };
    const second = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(mfaOpts.body.options.publicKey),
    });
    const twoFactor = await post(`/t/${tenant}/login/mfa/webauthn`,
      { mfa_token: held.body.mfa_token, credential: second.toJSON() });
    if (twoFactor.status !== 200) return { step: 'second factor', twoFactor };
    const c = claims(signedIn.body.access_token);
    const c2 = claims(twoFactor.body.access_token);
    return { ok: true, acr: c.acr, amr: c.amr, acr2: c2.acr, amr2: c2.amr,
      backupCodes: (done.body.backup_codes || []).length };
  }, { tenant, email: env('KG_EMAIL'), password: env('KG_PASSWORD') });

  check(result.ok, `passkey flow failed: ${JSON.stringify(result)}`);
  check(result.acr === 'urn:keygate:acr:phr', `acr ${result.acr}`);
  check(result.amr.includes('user') && !result.amr.includes('pwd'), `amr ${result.amr}`);
  check(result.acr2 === 'urn:keygate:acr:phr' && result.amr2.includes('pwd') && result.amr2.includes('user'),
    `second factor: acr ${result.acr2}, amr ${result.amr2}`);
  check(result.backupCodes === 10, `backup codes ${result.backupCodes}`);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(credentials.length === 1 && credentials[0].isResidentCredential,
    `expected one discoverable credential, got ${JSON.stringify(credentials)}`);
  console.log(`PASSKEY FLOW OK ${JSON.stringify(result)}`);
} finally {
  await browser.close();
}
