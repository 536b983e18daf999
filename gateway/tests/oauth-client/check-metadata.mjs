// An independent OAuth client (openid-client, OpenID-certified) reads a tenant's
// authorization-server metadata the way RFC 8414 says (well-known segment inserted before the
// issuer's path), checks it (issuer match, required fields), then uses the token endpoint it
// found to redeem a refresh token. Prints one JSON line; exits non-zero on any refusal.
import * as client from 'openid-client';

const issuer = new URL(process.env.KG_ISSUER);
const clientId = process.env.KG_CLIENT_ID;
const config = await client.discovery(issuer, clientId, undefined, client.None(), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
});
const metadata = config.serverMetadata();
const tokens = await client.refreshTokenGrant(config, process.env.KG_REFRESH_TOKEN);
console.log(JSON.stringify({
  metadata,
  refreshed: { token_type: tokens.token_type, has_access_token: !!tokens.access_token, has_refresh_token: !!tokens.refresh_token },
}));
