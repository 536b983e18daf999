-- Sessions, SQLite. Mirrors migrations/postgres/0002_session_tokens.sql.
--
-- The browser cookie carries an opaque 256-bit token; only its SHA-256 is kept here, and the
-- cookie is resolved by it (tenant-scoped). The session id (a UUIDv7, the `sid` claim and
-- the revocation id) is no secret and no longer what the cookie holds. Sessions of token
-- clients have no cookie, and sessions opened before this migration had none either: NULL.
-- SQLite cannot add a UNIQUE column with ALTER TABLE: the column, then a unique index.
ALTER TABLE sessions ADD COLUMN token_hash BLOB;
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);

-- The OAuth client and scope a session was opened for: a refresh issues access tokens for
-- the same. Older sessions were refreshed with keygate's defaults, so they keep those.
ALTER TABLE sessions ADD COLUMN client_id TEXT NOT NULL DEFAULT 'keygate';
ALTER TABLE sessions ADD COLUMN scope     TEXT NOT NULL DEFAULT 'openid';
