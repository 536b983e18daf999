-- Audit retention per tenant (Tenant `audit.retentionDays`, default 400), SQLite. Mirrors
-- migrations/postgres/0005_audit_retention.sql.
--
-- SQLite has no roles: the trigger is the guard. A DELETE on audit_events goes through only
-- for a row older than its tenant's retention by the database's clock (rows of a tenant no
-- longer in `tenants` keep the default 400 days); UPDATE stays refused. The janitor deletes in
-- chunks (core/src/store/sqlite.rs) so the write lock is held briefly.
ALTER TABLE tenants ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 400
    CHECK (audit_retention_days BETWEEN 1 AND 36500);

UPDATE tenants SET audit_retention_days = json_extract(settings, '$.audit.retentionDays')
    WHERE json_valid(settings)
      AND json_type(settings, '$.audit.retentionDays') = 'integer';

DROP TRIGGER audit_events_no_delete;

-- `julianday` of an unreadable timestamp is NULL: such a row counts as not expired.
CREATE TRIGGER audit_events_delete_only_expired BEFORE DELETE ON audit_events
WHEN coalesce(julianday(OLD.at) <= julianday('now') - coalesce(
        (SELECT t.audit_retention_days FROM tenants t WHERE t.id = OLD.tenant_id), 400), 0) = 0
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused for a row within its tenant''s retention)');
END;
