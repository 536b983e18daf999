-- The operator re-seals TOTP seeds under the active master key (master-key rotation), as it
-- does signing keys: it reads a tenant's factors and replaces a sealed secret, nothing else.
GRANT SELECT ON mfa_factors TO keygate_operator;
GRANT UPDATE (secret) ON mfa_factors TO keygate_operator;
