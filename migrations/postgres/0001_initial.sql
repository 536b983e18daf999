-- keygate schema, PostgreSQL. Applied migrations never change: add a new file instead.
-- Mirrors migrations/sqlite/0001_initial.sql table for table, column for column.
--
-- Every row is tenant-scoped. Child tables reference their parent by (tenant_id, id), so a
-- row can never point at another tenant's parent. Deleting a tenant or a user cascades to
-- everything it owns except audit_events, which has no foreign key on purpose.

CREATE TABLE tenants (
    id           uuid        NOT NULL,
    name         text        NOT NULL,
    namespace    text        NOT NULL,
    owner_uid    text        NOT NULL,
    display_name text        NOT NULL,
    settings     jsonb       NOT NULL,
    generation   bigint      NOT NULL,
    disabled     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT tenants_pkey PRIMARY KEY (id),
    CONSTRAINT tenants_name UNIQUE (name)
);

CREATE TABLE users (
    id                   uuid        NOT NULL,
    tenant_id            uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email                text        NOT NULL,
    email_lower          text        NOT NULL,
    display_name         text        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('active', 'suspended')),
    email_verified       boolean     NOT NULL,
    must_change_password boolean     NOT NULL,
    password_hash        text,
    groups               jsonb       NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_tenant_id UNIQUE (tenant_id, id)
);
-- Case-insensitive uniqueness: email_lower is computed by keygate (Unicode lowercase), so
-- both backends agree on what "the same email" means.
CREATE UNIQUE INDEX users_email ON users (tenant_id, email_lower);

CREATE TABLE password_history (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    CONSTRAINT password_history_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX password_history_user ON password_history (tenant_id, user_id, created_at);

CREATE TABLE identity_providers (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text        NOT NULL,
    owner_uid     text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('oidc', 'github', 'google', 'saml')),
    config        jsonb       NOT NULL,
    client_secret bytea,
    generation    bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT identity_providers_pkey PRIMARY KEY (id),
    CONSTRAINT identity_providers_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT identity_providers_name UNIQUE (tenant_id, name)
);

CREATE TABLE external_identities (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    idp_id        uuid        NOT NULL,
    subject       text        NOT NULL,
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz,
    CONSTRAINT external_identities_pkey PRIMARY KEY (id),
    CONSTRAINT external_identities_subject UNIQUE (idp_id, subject),
    CONSTRAINT external_identities_user_idp UNIQUE (user_id, idp_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, idp_id) REFERENCES identity_providers (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE roles (
    id          uuid        NOT NULL,
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    owner_uid   text        NOT NULL,
    description text        NOT NULL,
    permissions jsonb       NOT NULL,
    generation  bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT roles_pkey PRIMARY KEY (id),
    CONSTRAINT roles_tenant_id UNIQUE (tenant_id, id),
    CONSTRAINT roles_name UNIQUE (tenant_id, name)
);

-- match_key is computed by keygate from (subject_kind, value, idp_name) so that matching an
-- identity against every binding is one indexed IN (...) on both backends.
CREATE TABLE role_bindings (
    id           uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    role_id      uuid        NOT NULL,
    subject_kind text        NOT NULL CHECK (subject_kind IN ('user_email', 'group', 'idp_group')),
    value        text        NOT NULL,
    idp_name     text,
    match_key    text        NOT NULL,
    created_at   timestamptz NOT NULL,
    CONSTRAINT role_bindings_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX role_bindings_match ON role_bindings (tenant_id, match_key);
CREATE INDEX role_bindings_role ON role_bindings (role_id);

CREATE TABLE api_keys (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner_uid     text        NOT NULL,
    name          text        NOT NULL,
    prefix        text        NOT NULL,
    hash          bytea       NOT NULL,
    roles         jsonb       NOT NULL,
    permissions   jsonb       NOT NULL,
    scopes        jsonb       NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    superseded_at timestamptz,
    grace_until   timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_prefix UNIQUE (prefix)
);
CREATE INDEX api_keys_owner ON api_keys (tenant_id, owner_uid);

CREATE TABLE signing_keys (
    kid          text        NOT NULL,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    algorithm    text        NOT NULL,
    public_jwk   jsonb       NOT NULL,
    private_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    activates_at timestamptz NOT NULL,
    retires_at   timestamptz,
    CONSTRAINT signing_keys_kid PRIMARY KEY (kid)
);
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id, activates_at);

CREATE TABLE sessions (
    id                  uuid        NOT NULL,
    tenant_id           uuid        NOT NULL,
    user_id             uuid        NOT NULL,
    user_agent          text,
    ip                  text,
    amr                 jsonb       NOT NULL,
    acr                 text,
    auth_time           timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    last_seen_at        timestamptz NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    revoked_at          timestamptz,
    updated_at          timestamptz NOT NULL,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_tenant_id UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_absolute_expiry ON sessions (absolute_expires_at);

CREATE TABLE refresh_tokens (
    hash        bytea       NOT NULL,
    tenant_id   uuid        NOT NULL,
    session_id  uuid        NOT NULL,
    issued_at   timestamptz NOT NULL,
    rotated_at  timestamptz,
    replaced_by bytea,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT refresh_tokens_hash PRIMARY KEY (hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE mfa_factors (
    id             uuid        NOT NULL,
    tenant_id      uuid        NOT NULL,
    user_id        uuid        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('totp', 'webauthn')),
    label          text        NOT NULL,
    secret         bytea       NOT NULL,
    confirmed      boolean     NOT NULL,
    last_used_step bigint,
    last_used_at   timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT mfa_factors_pkey PRIMARY KEY (id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mfa_factors_user ON mfa_factors (tenant_id, user_id);

CREATE TABLE backup_codes (
    id         uuid        NOT NULL,
    tenant_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    code_hash  bytea       NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL,
    CONSTRAINT backup_codes_pkey PRIMARY KEY (id),
    CONSTRAINT backup_codes_hash UNIQUE (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE one_time_tokens (
    token_hash bytea       NOT NULL,
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    uuid,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'link', 'invite')),
    data       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL,
    CONSTRAINT one_time_tokens_hash PRIMARY KEY (token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (tenant_id, user_id, purpose);
CREATE INDEX one_time_tokens_expiry ON one_time_tokens (expires_at);

CREATE TABLE lockout (
    tenant_id       uuid        NOT NULL,
    user_id         uuid        NOT NULL,
    failures        bigint      NOT NULL,
    locked_until    timestamptz,
    last_failure_at timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT lockout_pkey PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Append-only. No foreign keys: erasing a user or a tenant keeps its trail, and the random
-- user id left behind is the pseudonym. No email or other PII columns.
CREATE TABLE audit_events (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL,
    actor_user_id uuid,
    ip            text,
    request_id    text,
    data          jsonb       NOT NULL,
    CONSTRAINT audit_events_pkey PRIMARY KEY (id)
);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at DESC, id DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
