// Verifies a JWT with `jose` (panva/jose, the library openid-client is built on — not
// keygate's code) against an issuer's JWKS, checking issuer and audience, and prints its
// claims as JSON. Run by tests/cli/kubectl.rs:
//   node verify-jwt.mjs <dir with node_modules/jose> <jwks url> <issuer> <audience> <jwt>
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [peer, jwksUrl, issuer, audience, token] = process.argv.slice(2);
const require = createRequire(path.join(peer, 'package.json'));
const jose = await import(pathToFileURL(require.resolve('jose')).href);
const jwks = jose.createRemoteJWKSet(new URL(jwksUrl));
const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
  issuer,
  audience,
  algorithms: ['RS256', 'ES256', 'EdDSA'],
});
process.stdout.write(JSON.stringify({ header: protectedHeader, claims: payload }));
