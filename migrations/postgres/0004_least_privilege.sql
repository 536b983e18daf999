-- Least privilege, PostgreSQL only (SQLite has no roles: it is `keygate dev`'s database).
--
-- Three kinds of database login, so the internet-facing gateway cannot rewrite what the
-- operator declared, nor the audit trail:
--   * the owner of these tables runs `keygate migrate` (the Helm hook Job) and nothing else;
--   * members of `keygate_gateway` (the gateway's login) get DML on the runtime tables it
--     keeps (users, sessions, tokens, factors, lockout), INSERT and SELECT only on the audit
--     trail, and SELECT only on what the operator writes (tenants, identity providers, roles,
--     API keys, signing keys) — except an API key's last-use time, its one column to write;
--   * members of `keygate_operator` (the operator's login) get DML on what it reconciles.
-- Only the owner may alter or drop tables and triggers, so neither login can remove the
-- triggers that keep audit_events append-only. Deleting a tenant cascades to its users and
-- sessions although the operator has no privilege on them: PostgreSQL runs referential
-- actions as the owner of the referencing table.
--
-- The two group roles are created here when missing (that needs CREATEROLE); a database
-- administrator may create them beforehand instead (docs/install.md). They are cluster-wide
-- names: keygate installations sharing one PostgreSQL cluster share them too.
-- A later migration that adds a table grants it to the role that needs it in the same file;
-- the test `database_roles` in core/tests fails for a table no role was given.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keygate_gateway') THEN
        CREATE ROLE keygate_gateway NOLOGIN;
    END IF;
EXCEPTION
    -- Another database of the same cluster is migrating at this very moment.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keygate_operator') THEN
        CREATE ROLE keygate_operator NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO keygate_gateway, keygate_operator', current_schema());
END
$$;

-- The gateway: what people and proxies change at run time.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    users, password_history, external_identities, sessions, refresh_tokens,
    mfa_factors, backup_codes, one_time_tokens, lockout
    TO keygate_gateway;
GRANT SELECT, INSERT ON audit_events TO keygate_gateway;
GRANT SELECT ON tenants, identity_providers, roles, role_bindings, api_keys, signing_keys
    TO keygate_gateway;
GRANT UPDATE (last_used_at) ON api_keys TO keygate_gateway;

-- The operator: what the custom resources declare.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, identity_providers, roles, role_bindings, api_keys, signing_keys
    TO keygate_operator;
