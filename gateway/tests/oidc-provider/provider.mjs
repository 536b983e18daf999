// An upstream OpenID Provider for keygate's federation tests: oidc-provider (OpenID-certified)
// over HTTPS with the test's certificate, one confidential client registered for keygate.
// Accounts: any login is accepted (oidc-provider's development login form); the login is the
// email address, verified unless it starts with `unverified`, in the groups given as
// `+group` suffixes (`ada@example.com+eng+ops`).
//
// Without a certificate it serves plain HTTP on 127.0.0.1 (what `keygate dev` accepts).
//
// With `ignoreReauthentication` it answers `prompt=login` and `max_age` from the person's
// existing session instead of asking them to sign in again (a provider that does not
// re-authenticate; its ID tokens carry the old `auth_time`).
//
// Usage: node provider.mjs <config.json>; prints `listening <port>` once it serves.
// config: { cert?, key?, clientId, clientSecret, redirectUris: [..], hd?, ignoreReauthentication? }
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import Provider, { interactionPolicy } from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const server = cfg.cert
  ? https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) })
  : http.createServer();
const base = cfg.cert ? 'https://localhost' : 'http://127.0.0.1';

function account(login) {
  const [email, ...groups] = login.split('+');
  const claims = {
    email,
    email_verified: !email.startsWith('unverified'),
    name: `Person ${email.split('@')[0]}`,
    groups,
  };
  if (cfg.hd) claims.hd = email.split('@')[1];
  return claims;
}

const policy = interactionPolicy.base();
if (cfg.ignoreReauthentication) {
  const login = policy.get('login');
  login.checks.remove('login_prompt');
  login.checks.remove('max_age');
}

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`${base}:${port}`, {
    clients: [{
      client_id: cfg.clientId,
      client_secret: cfg.clientSecret,
      redirect_uris: cfg.redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    claims: {
      openid: ['sub'],
      // Google releases `hd` with the email scope.
      email: cfg.hd ? ['email', 'email_verified', 'hd'] : ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Google puts the claims into the ID token itself.
    conformIdTokenClaims: !cfg.hd,
    async findAccount(ctx, id) {
      // The development login form makes the login the account id, and so the subject.
      return { accountId: id, async claims() { return { ...account(id), sub: id }; } };
    },
    features: { devInteractions: { enabled: true } },
    interactions: { policy },
    pkce: { required: () => true },
    cookies: { keys: ['keygate-test-upstream-cookie-key'] },
  });
  server.on('request', provider.callback());
  console.log(`listening ${port}`);
});
