-- Audit retention per tenant (Tenant `audit.retentionDays`, default 400), PostgreSQL.
--
-- The gateway's role keeps INSERT and SELECT only on audit_events: it never gets UPDATE or
-- DELETE there. Expired rows are deleted by `keygate_expire_audit`, a SECURITY DEFINER
-- function owned by the schema owner that only the gateway's role (whose janitor calls it,
-- one replica at a time) may execute. It deletes only rows older than their tenant's
-- retention, read from `tenants.audit_retention_days`, which only the operator's role writes;
-- rows of a tenant no longer in `tenants` keep the default 400 days. "Now" is the earlier of
-- the caller's clock and the database's, so a caller cannot reach into the future.
--
-- The append-only trigger now lets a DELETE through only for a row past its retention by the
-- database's clock, whoever runs it; UPDATE and TRUNCATE stay refused for everyone.

ALTER TABLE tenants ADD COLUMN audit_retention_days integer NOT NULL DEFAULT 400
    CONSTRAINT tenants_audit_retention_days CHECK (audit_retention_days BETWEEN 1 AND 36500);

UPDATE tenants SET audit_retention_days = (settings #>> '{audit,retentionDays}')::integer
    WHERE jsonb_typeof(settings #> '{audit,retentionDays}') = 'number';

CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.at <= now() - make_interval(days => coalesce(
            (SELECT t.audit_retention_days FROM tenants t WHERE t.id = OLD.tenant_id), 400)) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_events is append-only (DELETE refused for a row within its tenant''s retention)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Deletes at most `p_limit` expired rows; returns how many. Tenants are found by a loose
-- index scan of audit_events_tenant_at (one probe per tenant, not a table scan), and each
-- tenant's expired rows by a range of the same index.
CREATE FUNCTION keygate_expire_audit(p_now timestamptz, p_limit integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    v_now    timestamptz := least(p_now, now());
    v_left   bigint := greatest(p_limit, 0);
    v_tenant uuid;
    v_days   integer;
    v_gone   bigint;
BEGIN
    FOR v_tenant IN
        WITH RECURSIVE ids(tenant_id) AS (
            (SELECT a.tenant_id FROM audit_events a ORDER BY a.tenant_id LIMIT 1)
            UNION ALL
            SELECT (SELECT a.tenant_id FROM audit_events a WHERE a.tenant_id > ids.tenant_id
                    ORDER BY a.tenant_id LIMIT 1)
            FROM ids WHERE ids.tenant_id IS NOT NULL)
        SELECT ids.tenant_id FROM ids WHERE ids.tenant_id IS NOT NULL
    LOOP
        EXIT WHEN v_left <= 0;
        v_days := coalesce(
            (SELECT t.audit_retention_days FROM tenants t WHERE t.id = v_tenant), 400);
        DELETE FROM audit_events WHERE id IN (
            SELECT a.id FROM audit_events a
            WHERE a.tenant_id = v_tenant AND a.at <= v_now - make_interval(days => v_days)
            ORDER BY a.at LIMIT v_left);
        GET DIAGNOSTICS v_gone = ROW_COUNT;
        v_left := v_left - v_gone;
    END LOOP;
    RETURN greatest(p_limit, 0) - v_left;
END;
$$;

-- A SECURITY DEFINER function resolves names in a fixed path: this schema, then the
-- catalog's, never one a caller could create first.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION keygate_expire_audit(timestamptz, integer) SET search_path = %I, pg_catalog, pg_temp',
        current_schema());
END
$$;

REVOKE ALL ON FUNCTION keygate_expire_audit(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keygate_expire_audit(timestamptz, integer) TO keygate_gateway;
