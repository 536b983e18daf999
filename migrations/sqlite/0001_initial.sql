-- keygate schema, SQLite. Applied migrations never change: add a new file instead.
-- Mirrors migrations/postgres/0001_initial.sql table for table, column for column.
--
-- Every row is tenant-scoped. Child tables reference their parent by (tenant_id, id), so a
-- row can never point at another tenant's parent. Deleting a tenant or a user cascades to
-- everything it owns except audit_events, which has no foreign key on purpose.

CREATE TABLE tenants (
    id           BLOB        NOT NULL,
    name         TEXT        NOT NULL,
    namespace    TEXT        NOT NULL,
    owner_uid    TEXT        NOT NULL,
    display_name TEXT        NOT NULL,
    settings     TEXT        NOT NULL,
    generation   INTEGER     NOT NULL,
    disabled     INTEGER     NOT NULL DEFAULT 0,
    created_at   TEXT        NOT NULL,
    updated_at   TEXT        NOT NULL,
    CONSTRAINT tenants_pkey PRIMARY KEY (id),
    CONSTRAINT tenants_name UNIQUE (name)
) STRICT;

CREATE TABLE users (
    id                   BLOB        NOT NULL,
    tenant_id            BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email                TEXT        NOT NULL,
    email_lower          TEXT        NOT NULL,
    display_name         TEXT        NOT NULL,
    status               TEXT        NOT NULL CHECK (status IN ('active', 'suspended')),
    email_verified       INTEGER     NOT NULL,
    must_change_password INTEGER     NOT NULL,
    password_hash        TEXT,
    groups               TEXT        NOT NULL,
    created_at           TEXT        NOT NULL,
    updated_at           TEXT        NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_tenant_id UNIQUE (tenant_id, id)
) STRICT;
-- Case-insensitive uniqueness: email_lower is computed by keygate (Unicode lowercase), so
-- both backends agree on what "the same email" means.
CREATE UNIQUE INDEX users_email ON users (tenant_id, email_lower);

CREATE TABLE password_history (
    id            BLOB        NOT NULL,
    tenant_id     BLOB        NOT NULL,
    user_id       BLOB        NOT NULL,
    password_hash TEXT        NOT NULL,
    created_at    TEXT        NOT NULL,
    CONSTRAINT password_history_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX password_history_user ON password_history (tenant_id, user_id, created_at);

CREATE TABLE identity_providers (
    id            BLOB        NOT NULL,
    tenant_id     BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT        NOT NULL,
    owner_uid     TEXT        NOT NULL,
    kind          TEXT        NOT NULL CHECK (kind IN ('oidc', 'github', 'google', 'saml')),
    config        TEXT        NOT NULL,
    client_secret BLOB,
    generation    INTEGER     NOT NULL,
    created_at    TEXT        NOT NULL,
    updated_at    TEXT        NOT NULL,
    CONSTRAINT identity_providers_pkey PRIMARY KEY (id),
    CONSTRAINT identity_providers_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT identity_providers_name UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE external_identities (
    id            BLOB        NOT NULL,
    tenant_id     BLOB        NOT NULL,
    user_id       BLOB        NOT NULL,
    idp_id        BLOB        NOT NULL,
    subject       TEXT        NOT NULL,
    created_at    TEXT        NOT NULL,
    last_login_at TEXT       ,
    CONSTRAINT external_identities_pkey PRIMARY KEY (id),
    CONSTRAINT external_identities_subject UNIQUE (idp_id, subject),
    CONSTRAINT external_identities_user_idp UNIQUE (user_id, idp_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, idp_id) REFERENCES identity_providers (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE roles (
    id          BLOB        NOT NULL,
    tenant_id   BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    owner_uid   TEXT        NOT NULL,
    description TEXT        NOT NULL,
    permissions TEXT        NOT NULL,
    generation  INTEGER     NOT NULL,
    created_at  TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL,
    CONSTRAINT roles_pkey PRIMARY KEY (id),
    CONSTRAINT roles_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT roles_name UNIQUE (tenant_id, name)
) STRICT;

-- match_key is computed by keygate from (subject_kind, value, idp_name) so that matching an
-- identity against every binding is one indexed IN (...) on both backends.
CREATE TABLE role_bindings (
    id           BLOB        NOT NULL,
    tenant_id    BLOB        NOT NULL,
    role_id      BLOB        NOT NULL,
    subject_kind TEXT        NOT NULL CHECK (subject_kind IN ('user_email', 'group', 'idp_group')),
    value        TEXT        NOT NULL,
    idp_name     TEXT,
    match_key    TEXT        NOT NULL,
    created_at   TEXT        NOT NULL,
    CONSTRAINT role_bindings_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX role_bindings_match ON role_bindings (tenant_id, match_key);
CREATE INDEX role_bindings_role ON role_bindings (role_id);

CREATE TABLE api_keys (
    id            BLOB        NOT NULL,
    tenant_id     BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner_uid     TEXT        NOT NULL,
    name          TEXT        NOT NULL,
    prefix        TEXT        NOT NULL,
    hash          BLOB        NOT NULL,
    roles         TEXT        NOT NULL,
    permissions   TEXT        NOT NULL,
    scopes        TEXT        NOT NULL,
    expires_at    TEXT       ,
    revoked_at    TEXT       ,
    superseded_at TEXT       ,
    grace_until   TEXT       ,
    last_used_at  TEXT       ,
    created_at    TEXT        NOT NULL,
    updated_at    TEXT        NOT NULL,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_prefix UNIQUE (prefix)
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (tenant_id, owner_uid);

CREATE TABLE signing_keys (
    kid          TEXT        NOT NULL,
    tenant_id    BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    algorithm    TEXT        NOT NULL,
    public_jwk   TEXT        NOT NULL,
    private_key  BLOB        NOT NULL,
    created_at   TEXT        NOT NULL,
    activates_at TEXT        NOT NULL,
    retires_at   TEXT       ,
    CONSTRAINT signing_keys_kid PRIMARY KEY (kid)
) STRICT;
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id, activates_at);

CREATE TABLE sessions (
    id                  BLOB        NOT NULL,
    tenant_id           BLOB        NOT NULL,
    user_id             BLOB        NOT NULL,
    user_agent          TEXT,
    ip                  TEXT,
    amr                 TEXT        NOT NULL,
    acr                 TEXT,
    auth_time           TEXT        NOT NULL,
    created_at          TEXT        NOT NULL,
    last_seen_at        TEXT        NOT NULL,
    idle_expires_at     TEXT        NOT NULL,
    absolute_expires_at TEXT        NOT NULL,
    revoked_at          TEXT       ,
    updated_at          TEXT        NOT NULL,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_tenant_id UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_absolute_expiry ON sessions (absolute_expires_at);

CREATE TABLE refresh_tokens (
    hash        BLOB        NOT NULL,
    tenant_id   BLOB        NOT NULL,
    session_id  BLOB        NOT NULL,
    issued_at   TEXT        NOT NULL,
    rotated_at  TEXT       ,
    replaced_by BLOB,
    expires_at  TEXT        NOT NULL,
    CONSTRAINT refresh_tokens_hash PRIMARY KEY (hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE mfa_factors (
    id             BLOB        NOT NULL,
    tenant_id      BLOB        NOT NULL,
    user_id        BLOB        NOT NULL,
    kind           TEXT        NOT NULL CHECK (kind IN ('totp', 'webauthn')),
    label          TEXT        NOT NULL,
    secret         BLOB        NOT NULL,
    confirmed      INTEGER     NOT NULL,
    last_used_step INTEGER,
    last_used_at   TEXT       ,
    created_at     TEXT        NOT NULL,
    updated_at     TEXT        NOT NULL,
    CONSTRAINT mfa_factors_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX mfa_factors_user ON mfa_factors (tenant_id, user_id);

CREATE TABLE backup_codes (
    id         BLOB        NOT NULL,
    tenant_id  BLOB        NOT NULL,
    user_id    BLOB        NOT NULL,
    code_hash  BLOB        NOT NULL,
    used_at    TEXT       ,
    created_at TEXT        NOT NULL,
    CONSTRAINT backup_codes_pkey PRIMARY KEY (id),
    CONSTRAINT backup_codes_hash UNIQUE (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE one_time_tokens (
    token_hash BLOB        NOT NULL,
    tenant_id  BLOB        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    BLOB,
    purpose    TEXT        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'link', 'invite')),
    data       TEXT        NOT NULL,
    expires_at TEXT        NOT NULL,
    used_at    TEXT       ,
    created_at TEXT        NOT NULL,
    CONSTRAINT one_time_tokens_hash PRIMARY KEY (token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX one_time_tokens_user ON one_time_tokens (tenant_id, user_id, purpose);
CREATE INDEX one_time_tokens_expiry ON one_time_tokens (expires_at);

CREATE TABLE lockout (
    tenant_id       BLOB        NOT NULL,
    user_id         BLOB        NOT NULL,
    failures        INTEGER     NOT NULL,
    locked_until    TEXT       ,
    last_failure_at TEXT       ,
    created_at      TEXT        NOT NULL,
    updated_at      TEXT        NOT NULL,
    CONSTRAINT lockout_pkey PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- Append-only. No foreign keys: erasing a user or a tenant keeps its trail, and the random
-- user id left behind is the pseudonym. No email or other PII columns.
CREATE TABLE audit_events (
    id            BLOB        NOT NULL,
    tenant_id     BLOB        NOT NULL,
    at            TEXT        NOT NULL,
    kind          TEXT        NOT NULL,
    actor_user_id BLOB,
    ip            TEXT,
    request_id    TEXT,
    data          TEXT        NOT NULL,
    CONSTRAINT audit_events_pkey PRIMARY KEY (id)
) STRICT;
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at DESC, id DESC);

-- Timestamps are RFC 3339 text written by keygate (never by SQLite's own date functions),
-- UUIDs 16-byte blobs, booleans 0/1, JSON text: all bound by sqlx, compared as stored.

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)');
END;
