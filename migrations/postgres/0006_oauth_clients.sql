-- OAuthClient resources, PostgreSQL. Mirrors migrations/sqlite/0006_oauth_clients.sql.
--
-- A registered client of one tenant: the operator writes it from an OAuthClient resource,
-- the gateway reads it to decide which `client_id`, redirect URI, grant and scope it accepts.
-- `client_id` is unique per tenant; `owner_uid` is the resource's uid (orphan cleanup, and a
-- second resource cannot take over a client id another one holds).
CREATE TABLE oauth_clients (
    id                          uuid        NOT NULL,
    tenant_id                   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner_uid                   text        NOT NULL,
    client_id                   text        NOT NULL,
    display_name                text        NOT NULL,
    client_type                 text        NOT NULL,
    token_endpoint_auth_method  text        NOT NULL,
    redirect_uris               jsonb       NOT NULL,
    post_logout_redirect_uris   jsonb       NOT NULL,
    grant_types                 jsonb       NOT NULL,
    allowed_scopes              jsonb       NOT NULL,
    audience                    jsonb       NOT NULL,
    consent                     text        NOT NULL,
    access_token_ttl_secs       bigint,
    id_token_ttl_secs           bigint,
    refresh_token_ttl_secs      bigint,
    generation                  bigint      NOT NULL,
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL,
    CONSTRAINT oauth_clients_pkey PRIMARY KEY (id),
    CONSTRAINT oauth_clients_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT oauth_clients_client_id UNIQUE (tenant_id, client_id),
    CONSTRAINT oauth_clients_type CHECK (client_type IN ('public', 'confidential'))
);
CREATE INDEX oauth_clients_owner ON oauth_clients (tenant_id, owner_uid);

-- A confidential client's secrets: SHA-256 only, like API keys; during a rotation the
-- superseded secret keeps working until `grace_until`. Removed with their client.
CREATE TABLE oauth_client_secrets (
    id               uuid        NOT NULL,
    tenant_id        uuid        NOT NULL,
    oauth_client_id  uuid        NOT NULL,
    prefix           text        NOT NULL,
    hash             bytea       NOT NULL,
    created_at       timestamptz NOT NULL,
    superseded_at    timestamptz,
    grace_until      timestamptz,
    revoked_at       timestamptz,
    CONSTRAINT oauth_client_secrets_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, oauth_client_id) REFERENCES oauth_clients (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_client_secrets_client ON oauth_client_secrets (tenant_id, oauth_client_id);

-- Deleting a client revokes the sessions (and so the refresh families) issued to it.
CREATE INDEX sessions_client ON sessions (tenant_id, client_id) WHERE revoked_at IS NULL;

GRANT SELECT ON oauth_clients, oauth_client_secrets TO keygate_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_clients, oauth_client_secrets TO keygate_operator;
-- The operator revokes a deleted client's sessions: it may find them and stamp their
-- revocation, nothing else of a session.
GRANT SELECT (id, tenant_id, client_id, revoked_at) ON sessions TO keygate_operator;
GRANT UPDATE (revoked_at, updated_at) ON sessions TO keygate_operator;
