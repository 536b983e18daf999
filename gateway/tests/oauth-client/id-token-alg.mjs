// The ID-token algorithm a client registers, checked by an independent, OpenID-certified
// relying party (openid-client) with a real browser (Debian's chromium through
// playwright-core) for the sign-in: a client registered with `id_token_signed_response_alg:
// 'RS256'` at a tenant that signs with another algorithm gets RS256 ID tokens the library
// validates (it refuses any other algorithm for such a client), and a client without one
// gets the tenant's. Run by gateway/tests/identity/provider.rs; prints one JSON line of
// results; exits non-zero on any unexpected answer.
import * as client from 'openid-client';
import { check, env, launchChromium, listenRelyingParty } from './relying-party.mjs';

const issuer = new URL(env('KG_ISSUER'));
const redirectUri = env('KG_REDIRECT_URI');
const insecure = { execute: [client.allowInsecureRequests] };
const header = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());

// The RS256 client declares its algorithm as client metadata, as a relying party limited
// to RS256 would; the other takes what discovery offers.
const rs256 = await client.discovery(issuer, env('KG_RS256_CLIENT'),
  { id_token_signed_response_alg: 'RS256' }, client.None(), insecure);
const tenantAlg = await client.discovery(issuer, env('KG_DEFAULT_CLIENT'), undefined, client.None(), insecure);
const meta = rs256.serverMetadata();
const results = { id_token_signing_alg_values_supported: meta.id_token_signing_alg_values_supported };
const jwks = await (await fetch(meta.jwks_uri)).json();
results.jwks = jwks.keys.map((k) => ({ kid: k.kid, alg: k.alg, kty: k.kty }));

const browser = await launchChromium();
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  // The relying party's callback: the browser's arrival is the answer.
  const rp = await listenRelyingParty(redirectUri);

  // Code with PKCE through keygate's sign-in page (signing in the first time); the library
  // validates the ID token (signature against the JWKS, algorithm, issuer, audience, nonce).
  async function signIn(config, first) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri, scope: 'openid email', state, nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    rp.arrived = null;
    await page.goto(url.href);
    if (first && !rp.arrived) {
      check(page.url().includes('/signin'), `expected the sign-in page, got ${page.url()}`);
      await page.getByLabel('Email address').fill(env('KG_EMAIL'));
      await page.getByLabel('Password').fill(env('KG_PASSWORD'));
      await page.getByRole('button', { name: 'Sign in' }).click();
    }
    for (let i = 0; i < 100 && !rp.arrived; i++) await page.waitForTimeout(100);
    check(rp.arrived, `never reached the relying party; at ${page.url()}: ${await page.textContent('body')}`);
    const tokens = await client.authorizationCodeGrant(config, new URL(rp.arrived), {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
    });
    const claims = tokens.claims();
    const id = header(tokens.id_token);
    return {
      id_token: { alg: id.alg, kid: id.kid, typ: id.typ, sub: claims.sub, aud: claims.aud, has_at_hash: !!claims.at_hash },
      access_token: { alg: header(tokens.access_token).alg },
    };
  }
  results.rs256_client = await signIn(rs256, true);
  results.default_client = await signIn(tenantAlg, false);
  rp.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results }));
process.exit(0);
