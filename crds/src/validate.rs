//! Checks for manifests that never pass through an API server (the operator's directory
//! source, `keygate dev`): the rules the CRD schema cannot express (`metadata` constraints),
//! and the schema's patterns, bounds and CEL relations written out in Rust, so a manifest that
//! `kubectl apply` would refuse is refused here with the same message.
//!
//! Enum values, duration syntax, timestamps and unknown fields are already rejected by
//! [`crate::load_manifests`] when it deserializes a document.

use std::net::IpAddr;

use crate::{ApiKey, IdentityProvider, Resource, Role, SecretKeyRef, Tenant, TenantRef};

/// Checks one resource; `Err` lists every problem as `<field path>: <message>`.
pub fn validate(resource: &Resource) -> Result<(), Vec<String>> {
    let mut check = Check::default();
    let meta = resource.metadata();
    match meta.name.as_deref() {
        None | Some("") => check.fail("metadata.name", "is required"),
        Some(name) if !is_dns_subdomain(name) => check.fail(
            "metadata.name",
            "must be a DNS subdomain: lowercase letters, digits, '-' and '.'",
        ),
        Some(_) => {}
    }
    if let Some(namespace) = meta.namespace.as_deref()
        && !is_dns_label(namespace)
    {
        check.fail("metadata.namespace", "must be a DNS label");
    }
    match resource {
        Resource::Tenant(tenant) => check_tenant(tenant, &mut check),
        Resource::IdentityProvider(idp) => check_identity_provider(idp, &mut check),
        Resource::Role(role) => check_role(role, &mut check),
        Resource::ApiKey(key) => check_api_key(key, &mut check),
    }
    if check.errors.is_empty() {
        Ok(())
    } else {
        Err(check.errors)
    }
}

/// Collects problems instead of stopping at the first.
#[derive(Default)]
struct Check {
    errors: Vec<String>,
}

impl Check {
    fn fail(&mut self, path: &str, message: &str) {
        self.errors.push(format!("{path}: {message}"));
    }

    fn require(&mut self, ok: bool, path: &str, message: &str) {
        if !ok {
            self.fail(path, message);
        }
    }

    fn each(&mut self, path: &str, items: &[String], ok: fn(&str) -> bool, message: &str) {
        for (i, item) in items.iter().enumerate() {
            if !ok(item) {
                self.fail(&format!("{path}[{i}]"), &format!("{item:?} {message}"));
            }
        }
    }

    fn tenant_ref(&mut self, tenant_ref: &TenantRef) {
        self.require(
            is_dns_label(&tenant_ref.name),
            "spec.tenantRef.name",
            "must be the name of a Tenant (a DNS label)",
        );
    }

    fn secret_key_ref(&mut self, path: &str, secret: &SecretKeyRef) {
        self.require(
            is_dns_subdomain(&secret.name),
            &format!("{path}.name"),
            "must be a Secret name (a DNS subdomain)",
        );
        self.require(
            !secret.key.is_empty()
                && secret.key.len() <= 253
                && secret
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            &format!("{path}.key"),
            "must be a Secret data key: letters, digits, '-', '.', '_'",
        );
    }
}

fn check_tenant(tenant: &Tenant, check: &mut Check) {
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    check.require(
        name.is_empty() || is_dns_label(name),
        "metadata.name",
        "metadata.name of a Tenant is its URL segment and must be a DNS label: at most 63 \
         lowercase letters, digits or '-', starting and ending with a letter or digit",
    );
    let spec = &tenant.spec;
    if let Some(branding) = &spec.branding {
        for (path, color) in [
            ("spec.branding.primaryColor", &branding.primary_color),
            ("spec.branding.accentColor", &branding.accent_color),
        ] {
            if let Some(color) = color {
                check.require(is_hex_color(color), path, "must be a colour as #rrggbb");
            }
        }
        if let Some(url) = &branding.logo_url {
            check.require(
                is_http_url(url),
                "spec.branding.logoUrl",
                "must be an http(s) URL",
            );
        }
    }
    let policy = &spec.password_policy;
    check.require(
        (8..=128).contains(&policy.min_length),
        "spec.passwordPolicy.minLength",
        "must be between 8 and 128",
    );
    check.require(
        (8..=1024).contains(&policy.max_length),
        "spec.passwordPolicy.maxLength",
        "must be between 8 and 1024",
    );
    check.require(
        policy.history <= 24,
        "spec.passwordPolicy.history",
        "must be between 0 and 24",
    );
    check.require(
        policy.min_length <= policy.max_length,
        "spec.passwordPolicy",
        "passwordPolicy.minLength must not be greater than passwordPolicy.maxLength",
    );
    check.require(
        spec.sessions.idle_timeout.get() <= spec.sessions.absolute_lifetime.get(),
        "spec.sessions",
        "sessions.idleTimeout must not be longer than sessions.absoluteLifetime",
    );
    check.require(
        spec.tokens.refresh_idle_ttl.get() <= spec.tokens.refresh_absolute_ttl.get(),
        "spec.tokens",
        "tokens.refreshIdleTtl must not be longer than tokens.refreshAbsoluteTtl",
    );
    check.each(
        "spec.redirects.allowedOrigins",
        &spec.redirects.allowed_origins,
        is_origin,
        "must be an origin such as https://app.example.com (scheme, host, optional port; no path)",
    );
    if !spec.network.allow.iter().all(|c| is_cidr(c)) {
        check.fail(
            "spec.network.allow",
            "network.allow entries must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32",
        );
    }
    if !spec.network.deny.iter().all(|c| is_cidr(c)) {
        check.fail(
            "spec.network.deny",
            "network.deny entries must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32",
        );
    }
}

fn check_identity_provider(idp: &IdentityProvider, check: &mut Check) {
    let spec = &idp.spec;
    check.tenant_ref(&spec.tenant_ref);
    let wanted = spec.provider_type.as_str();
    let present = spec.settings_present();
    if !present.contains(&wanted) {
        check.fail(
            "spec",
            &format!("type {wanted} needs the {wanted} settings block"),
        );
    }
    for other in present.into_iter().filter(|p| *p != wanted) {
        check.fail(
            "spec",
            &format!("the {other} settings block is only allowed when type is {other}"),
        );
    }
    check.each(
        "spec.allowedEmailDomains",
        &spec.allowed_email_domains,
        is_domain,
        "must be a DNS domain such as example.com",
    );
    if let Some(oidc) = &spec.oidc {
        check.require(
            is_https_url(&oidc.issuer),
            "spec.oidc.issuer",
            "must be an https:// URL without query or fragment",
        );
        check.require(
            !oidc.client_id.is_empty(),
            "spec.oidc.clientId",
            "is required",
        );
        check.secret_key_ref("spec.oidc.clientSecretRef", &oidc.client_secret_ref);
    }
    if let Some(github) = &spec.github {
        check.require(
            !github.client_id.is_empty(),
            "spec.github.clientId",
            "is required",
        );
        check.secret_key_ref("spec.github.clientSecretRef", &github.client_secret_ref);
    }
    if let Some(google) = &spec.google {
        check.require(
            !google.client_id.is_empty(),
            "spec.google.clientId",
            "is required",
        );
        check.secret_key_ref("spec.google.clientSecretRef", &google.client_secret_ref);
        if let Some(domain) = &google.hosted_domain {
            check.require(
                is_domain(domain),
                "spec.google.hostedDomain",
                "must be a DNS domain",
            );
        }
    }
    if let Some(saml) = &spec.saml {
        let metadata = &saml.metadata;
        check.require(
            metadata.inline.is_some() != metadata.url.is_some(),
            "spec.saml.metadata",
            "saml.metadata needs exactly one of inline or url",
        );
        if let Some(url) = &metadata.url {
            check.require(
                is_http_url(url),
                "spec.saml.metadata.url",
                "must be an http(s) URL",
            );
        }
        check.require(
            !saml.entity_id.is_empty(),
            "spec.saml.entityId",
            "is required",
        );
        if let Some(key) = &saml.sp_key_secret_ref {
            check.secret_key_ref("spec.saml.spKeySecretRef", key);
        }
    }
}

fn check_role(role: &Role, check: &mut Check) {
    let spec = &role.spec;
    check.tenant_ref(&spec.tenant_ref);
    check.each(
        "spec.permissions",
        &spec.permissions,
        is_permission,
        "is not a permission: lowercase letters, digits, '.', '_', ':', '-'",
    );
    check.each(
        "spec.subjects.users",
        &spec.subjects.users,
        is_email,
        "is not an email address",
    );
    check.require(
        !has_duplicates(&spec.permissions),
        "spec.permissions",
        "lists a permission twice",
    );
    for (i, group) in spec.subjects.idp_groups.iter().enumerate() {
        check.require(
            is_dns_subdomain(&group.identity_provider),
            &format!("spec.subjects.idpGroups[{i}].identityProvider"),
            "must be the name of an IdentityProvider",
        );
        check.require(
            !group.group.is_empty(),
            &format!("spec.subjects.idpGroups[{i}].group"),
            "is required",
        );
    }
}

fn check_api_key(key: &ApiKey, check: &mut Check) {
    let spec = &key.spec;
    check.tenant_ref(&spec.tenant_ref);
    check.require(
        is_dns_subdomain(&spec.secret_name),
        "spec.secretName",
        "must be a Secret name (a DNS subdomain)",
    );
    check.each(
        "spec.roles",
        &spec.roles,
        is_dns_subdomain,
        "is not a Role name",
    );
    check.each(
        "spec.permissions",
        &spec.permissions,
        is_permission,
        "is not a permission: lowercase letters, digits, '.', '_', ':', '-'",
    );
    check.each(
        "spec.scopes",
        &spec.scopes,
        is_scope,
        "is not an OAuth scope (printable ASCII without space, '\"' or '\\')",
    );
    if let Some(rotation) = &spec.rotation {
        check.require(
            rotation.grace() < rotation.period(),
            "spec.rotation",
            "rotation.gracePeriod must be shorter than rotation.every",
        );
    }
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && is_dns_subdomain(s)
        && s.rsplit('.')
            .next()
            .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_lowercase()))
}

fn is_permission(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._:-".contains(c))
}

fn is_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

fn url_rest<'a>(s: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes
        .iter()
        .find_map(|scheme| s.strip_prefix(scheme))
        .filter(|rest| !rest.is_empty() && !rest.chars().any(char::is_whitespace))
}

fn is_http_url(s: &str) -> bool {
    s.len() <= 2048 && url_rest(s, &["https://", "http://"]).is_some()
}

fn is_https_url(s: &str) -> bool {
    s.len() <= 2048 && url_rest(s, &["https://"]).is_some_and(|rest| !rest.contains(['?', '#']))
}

fn is_origin(s: &str) -> bool {
    s.len() <= 256
        && url_rest(s, &["https://", "http://"]).is_some_and(|rest| !rest.contains(['/', '?', '#']))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => prefix <= 32,
        Ok(IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
                && s.len() <= 320
        }
        None => false,
    }
}

fn has_duplicates(items: &[String]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    !items.iter().all(|item| seen.insert(item))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn predicates_agree_with_the_schema_patterns() {
        assert!(is_dns_label("demo") && is_dns_label("a-1") && !is_dns_label("-a"));
        assert!(!is_dns_label("Acme") && !is_dns_label(&"a".repeat(64)));
        assert!(
            is_dns_subdomain("demo-api-key")
                && is_dns_subdomain("a.b")
                && !is_dns_subdomain("a..b")
        );
        assert!(is_permission("orders.read") && is_permission("billing:invoices.write"));
        assert!(!is_permission("orders read") && !is_permission(".x") && !is_permission("Orders"));
        assert!(is_hex_color("#1f6FEB") && !is_hex_color("blue") && !is_hex_color("#12345"));
        assert!(is_origin("http://127.0.0.1:8080") && !is_origin("https://a.example/cb"));
        assert!(
            is_https_url("https://idp.example/realms/x") && !is_https_url("http://idp.example")
        );
        assert!(is_cidr("10.0.0.0/8") && is_cidr("2001:db8::/32") && !is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0") && !is_cidr("example.com/8"));
        assert!(is_email("admin@demo.local") && !is_email("admin") && !is_email("a b@c"));
        assert!(is_domain("example.com") && !is_domain("localhost"));
        assert!(is_scope("orders:read") && !is_scope("a b"));
    }
}
