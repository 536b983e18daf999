-- Remembered consent, PostgreSQL. Mirrors migrations/sqlite/0010_oauth_consents.sql.
--
-- What a person approved on the consent page of a client with `consent: required`: the
-- scopes (a JSON array, the union of every approval), per person and client. A request for
-- scopes within them skips the page; a new scope asks again. Removed with the person, and
-- with the client (a client deleted and declared again starts without anyone's consent).
CREATE TABLE oauth_consents (
    tenant_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    client_id   text        NOT NULL,
    scopes      jsonb       NOT NULL,
    granted_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT oauth_consents_pkey PRIMARY KEY (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, client_id) REFERENCES oauth_clients (tenant_id, client_id) ON DELETE CASCADE
);
CREATE INDEX oauth_consents_client ON oauth_consents (tenant_id, client_id);

-- Consent is the person's to give and withdraw, at run time: the gateway's.
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_consents TO keygate_gateway;
