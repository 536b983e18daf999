-- OAuthClient resources, SQLite. Mirrors migrations/postgres/0006_oauth_clients.sql
-- (SQLite has no roles, so no grants).
CREATE TABLE oauth_clients (
    id                          BLOB        NOT NULL,
    tenant_id                   BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner_uid                   TEXT        NOT NULL,
    client_id                   TEXT        NOT NULL,
    display_name                TEXT        NOT NULL,
    client_type                 TEXT        NOT NULL,
    token_endpoint_auth_method  TEXT        NOT NULL,
    redirect_uris               TEXT        NOT NULL,
    post_logout_redirect_uris   TEXT        NOT NULL,
    grant_types                 TEXT        NOT NULL,
    allowed_scopes              TEXT        NOT NULL,
    audience                    TEXT        NOT NULL,
    consent                     TEXT        NOT NULL,
    access_token_ttl_secs       INTEGER    ,
    id_token_ttl_secs           INTEGER    ,
    refresh_token_ttl_secs      INTEGER    ,
    generation                  INTEGER     NOT NULL,
    created_at                  TEXT        NOT NULL,
    updated_at                  TEXT        NOT NULL,
    CONSTRAINT oauth_clients_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_clients_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT oauth_clients_client_id UNIQUE (tenant_id, client_id),
    CONSTRAINT oauth_clients_type CHECK (client_type IN ('public', 'confidential'))
) STRICT;
CREATE INDEX oauth_clients_owner ON oauth_clients (tenant_id, owner_uid);

CREATE TABLE oauth_client_secrets (
    id               BLOB        NOT NULL,
    tenant_id        BLOB        NOT NULL,
    oauth_client_id  BLOB        NOT NULL,
    prefix           TEXT        NOT NULL,
    hash             BLOB        NOT NULL,
    created_at       TEXT        NOT NULL,
    superseded_at    TEXT       ,
    grace_until      TEXT       ,
    revoked_at       TEXT       ,
    CONSTRAINT oauth_client_secrets_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, oauth_client_id) REFERENCES oauth_clients (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX oauth_client_secrets_client ON oauth_client_secrets (tenant_id, oauth_client_id);

CREATE INDEX sessions_client ON sessions (tenant_id, client_id) WHERE revoked_at IS NULL;
