-- Remembered consent, SQLite. Mirrors migrations/postgres/0010_oauth_consents.sql
-- (SQLite has no roles, so no grants).
CREATE TABLE oauth_consents (
    tenant_id   BLOB        NOT NULL,
    user_id     BLOB        NOT NULL,
    client_id   TEXT        NOT NULL,
    scopes      TEXT        NOT NULL,
    granted_at  TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL,
    CONSTRAINT oauth_consents_pkey PRIMARY KEY (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES oauth_clients (tenant_id, client_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX oauth_consents_client ON oauth_consents (tenant_id, client_id);
