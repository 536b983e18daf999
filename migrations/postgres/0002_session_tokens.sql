-- Sessions, PostgreSQL. Mirrors migrations/sqlite/0002_session_tokens.sql.
--
-- The browser cookie carries an opaque 256-bit token; only its SHA-256 is kept here, and the
-- cookie is resolved by it (tenant-scoped). The session id (a UUIDv7, the `sid` claim and
-- the revocation id) is no secret and no longer what the cookie holds. Sessions of token
-- clients have no cookie, and sessions opened before this migration had none either: NULL.
ALTER TABLE sessions ADD COLUMN token_hash bytea;
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);

-- The OAuth client and scope a session was opened for: a refresh issues access tokens for
-- the same. Older sessions were refreshed with keygate's defaults, so they keep those.
ALTER TABLE sessions ADD COLUMN client_id text NOT NULL DEFAULT 'keygate';
ALTER TABLE sessions ADD COLUMN scope     text NOT NULL DEFAULT 'openid';
