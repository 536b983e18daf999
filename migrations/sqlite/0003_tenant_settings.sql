-- Tenant settings, SQLite. Mirrors migrations/postgres/0003_tenant_settings.sql.
--
-- `tenants.settings` now holds keygate's own tenant settings (core `TenantSettings`), not the
-- Tenant resource's spec. Their JSON shape is the spec's (same names, Go-style durations),
-- so rows written before this migration read as they are; the next reconcile rewrites them.
-- The deletion policy is the operator's business, not the gateway's: it moves out of the
-- JSON into a typed column, so a tenant whose resource vanished is retired by the policy it
-- was stored with.
ALTER TABLE tenants ADD COLUMN deletion_policy TEXT NOT NULL DEFAULT 'retain'
    CHECK (deletion_policy IN ('retain', 'delete'));

UPDATE tenants SET deletion_policy = 'delete'
    WHERE json_valid(settings) AND json_extract(settings, '$.deletionPolicy') = 'Delete';
UPDATE tenants SET settings = json_remove(settings, '$.deletionPolicy')
    WHERE json_valid(settings) AND json_type(settings, '$.deletionPolicy') IS NOT NULL;
