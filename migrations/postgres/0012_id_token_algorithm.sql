-- An OAuthClient's ID-token algorithm, PostgreSQL. Mirrors
-- migrations/sqlite/0012_id_token_algorithm.sql.
--
-- `idTokenSignedResponseAlg` of the resource: the algorithm the client's ID tokens are signed
-- with (RS256, which every tenant keeps a key of, or the tenant's own); NULL signs them like
-- the tenant's access tokens.
ALTER TABLE oauth_clients ADD COLUMN id_token_signed_response_alg text
    CONSTRAINT oauth_clients_id_token_alg CHECK (id_token_signed_response_alg IN ('RS256', 'ES256', 'EdDSA'));
