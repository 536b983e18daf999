-- Upstream sign-in, PostgreSQL. Mirrors migrations/sqlite/0008_upstream_groups.sql.
--
-- The groups a provider asserted at the person's last sign-in through a link: Role subjects
-- of kind `idpGroups` match them, and every sign-in through the link replaces them.
ALTER TABLE external_identities ADD COLUMN groups jsonb NOT NULL DEFAULT '[]'::jsonb;
