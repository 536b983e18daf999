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
// It signs with an RSA key of its own. Commands on stdin, one a line, each answered on stdout:
// `rotate` makes a new signing key, published first in the JWKS with the old ones kept (a
// provider rotating its keys; answers `rotated <kid>`); `requests <path>` answers
// `requests <path> <n>`, how many requests for that path it has served (`/jwks`: how often a
// relying party fetched the keys).
//
// Usage: node provider.mjs <config.json>; prints `listening <port>` once it serves.
// config: { cert?, key?, clientId, clientSecret, redirectUris: [..], hd?, ignoreReauthentication? }
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import readline from 'node:readline';
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

// Newest first: oidc-provider signs with the first key that fits the algorithm.
const keys = [];
function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  keys.unshift({ ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' });
  return keys[0].kid;
}

// A provider over the current keys. Every instance shares oidc-provider's in-process store
// (sessions, interactions, codes), so a rotation does not end a sign-in under way.
function provider(issuer) {
  return new Provider(issuer, {
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
    jwks: { keys },
  });
}

const served = new Map();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${base}:${port}`;
  newKey();
  let handler = provider(issuer).callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    served.set(path, (served.get(path) ?? 0) + 1);
    handler(req, res);
  });
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const [command, arg] = line.trim().split(' ');
    if (command === 'rotate') {
      const kid = newKey();
      handler = provider(issuer).callback();
      console.log(`rotated ${kid}`);
    } else if (command === 'requests') {
      console.log(`requests ${arg} ${served.get(arg) ?? 0}`);
    }
  });
  console.log(`listening ${port}`);
});
