//! The one place a Tenant resource's spec becomes the settings the gateway reads
//! ([`TenantSettings`]) and the deletion policy the store keeps beside them.

use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::DeletionPolicy;
use keygate_core::tenant_settings::{
    Audit, Branding, EmailVerification, InvalidSettings, Lockout, Mfa, MfaPolicy, Network,
    PasswordPolicy, Problem, Redirects, Registration, Sessions, SignIn, Signing, TenantSettings,
    Tokens,
};
use keygate_crds::TenantSpec;

/// The settings `spec` declares, checked by [`TenantSettings::validate`] and against the
/// gateway's `public_url` (a cookie domain must contain its host): `Err` lists every rule
/// broken (for an `InvalidSpec` condition), including what the CRD schema cannot see.
pub fn settings_of(spec: &TenantSpec, public_url: &str) -> Result<TenantSettings, InvalidSettings> {
    let mut problems = Vec::new();
    let mut cidrs = |field: &'static str, list: &[String]| {
        list.iter()
            .filter_map(|text| match text.parse() {
                Ok(net) => Some(net),
                Err(_) => {
                    problems.push(Problem {
                        field,
                        message: format!(
                            "`{text}` is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"
                        ),
                    });
                    None
                }
            })
            .collect()
    };
    let network = Network {
        allow: cidrs("network.allow", &spec.network.allow),
        deny: cidrs("network.deny", &spec.network.deny),
    };
    let branding = spec.branding.clone().unwrap_or_default();
    let settings = TenantSettings {
        branding: Branding {
            primary_color: branding.primary_color,
            accent_color: branding.accent_color,
            logo_url: branding.logo_url,
        },
        sign_in: SignIn {
            password: spec.sign_in.password,
            registration: match spec.sign_in.registration {
                keygate_crds::Registration::Open => Registration::Open,
                keygate_crds::Registration::Invite => Registration::Invite,
                keygate_crds::Registration::Closed => Registration::Closed,
            },
            email_verification: match spec.sign_in.email_verification {
                keygate_crds::EmailVerification::Required => EmailVerification::Required,
                keygate_crds::EmailVerification::Optional => EmailVerification::Optional,
                keygate_crds::EmailVerification::Off => EmailVerification::Off,
            },
        },
        password_policy: PasswordPolicy {
            min_length: spec.password_policy.min_length,
            max_length: spec.password_policy.max_length,
            history: spec.password_policy.history,
            breached_check: spec.password_policy.breached_check,
        },
        lockout: Lockout {
            enabled: spec.lockout.enabled,
        },
        sessions: Sessions {
            idle_timeout: spec.session_idle_timeout(),
            absolute_lifetime: spec.session_absolute_lifetime(),
            cookie_domain: spec.sessions.cookie_domain.clone(),
        },
        tokens: Tokens {
            access_token_ttl: spec.access_token_ttl(),
            refresh_idle_ttl: spec.refresh_idle_ttl(),
            refresh_absolute_ttl: spec.refresh_absolute_ttl(),
            refresh_reuse_grace: spec.refresh_reuse_grace(),
            audience: spec.tokens.audience.clone(),
        },
        mfa: Mfa {
            policy: match spec.mfa.policy {
                keygate_crds::MfaPolicy::Off => MfaPolicy::Off,
                keygate_crds::MfaPolicy::Optional => MfaPolicy::Optional,
                keygate_crds::MfaPolicy::Required => MfaPolicy::Required,
            },
            passkey_sign_in: spec.mfa.passkey_sign_in,
        },
        redirects: Redirects {
            allowed_origins: spec.redirects.allowed_origins.clone(),
        },
        network,
        signing: Signing {
            algorithm: match spec.signing.algorithm {
                keygate_crds::SigningAlgorithm::RS256 => SigningAlgorithm::RS256,
                keygate_crds::SigningAlgorithm::ES256 => SigningAlgorithm::ES256,
                keygate_crds::SigningAlgorithm::EdDSA => SigningAlgorithm::EdDSA,
            },
            rotate_every: spec.key_rotation_period(),
            publish_lead: spec.signing.publish_lead.get(),
        },
        audit: Audit {
            retention_days: spec.audit.retention_days,
        },
    };
    if let Err(invalid) = settings.validate() {
        problems.extend(invalid.problems);
    } else if let Err(invalid) = settings.check_public_url(public_url) {
        problems.extend(invalid.problems);
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(InvalidSettings { problems })
    }
}

/// The store's deletion policy for the resource's.
pub fn deletion_policy(policy: keygate_crds::DeletionPolicy) -> DeletionPolicy {
    match policy {
        keygate_crds::DeletionPolicy::Retain => DeletionPolicy::Retain,
        keygate_crds::DeletionPolicy::Delete => DeletionPolicy::Delete,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::time::Duration;

    const GATEWAY: &str = "https://auth.acme.example";

    fn spec(json: serde_json::Value) -> TenantSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_empty_spec_maps_to_the_default_settings() {
        assert_eq!(
            settings_of(&spec(serde_json::json!({})), GATEWAY).unwrap(),
            TenantSettings::default()
        );
    }

    #[test]
    fn every_part_the_gateway_reads_is_carried_over() {
        let s = settings_of(&spec(serde_json::json!({
            "branding": { "primaryColor": "#8a2be2", "accentColor": "#4b0082",
                          "logoUrl": "https://acme.example/logo.svg" },
            "signIn": { "password": false, "registration": "invite", "emailVerification": "optional" },
            "passwordPolicy": { "minLength": 12, "maxLength": 64, "history": 3, "breachedCheck": false },
            "lockout": { "enabled": false },
            "sessions": { "idleTimeout": "8h", "absoluteLifetime": "168h" },
            "tokens": { "accessTokenTtl": "90s", "refreshIdleTtl": "24h", "refreshAbsoluteTtl": "168h",
                        "refreshReuseGrace": "2s", "audience": ["api://acme"] },
            "mfa": { "policy": "required" },
            "redirects": { "allowedOrigins": ["https://app.acme.example"] },
            "network": { "allow": ["10.0.0.0/8"], "deny": ["2001:db8::/32"] },
        })), GATEWAY)
        .unwrap();
        assert_eq!(
            s.branding.logo_url.as_deref(),
            Some("https://acme.example/logo.svg")
        );
        assert_eq!(s.branding.accent_color.as_deref(), Some("#4b0082"));
        assert!(!s.sign_in.password);
        assert_eq!(s.sign_in.registration, Registration::Invite);
        assert_eq!(s.sign_in.email_verification, EmailVerification::Optional);
        assert_eq!(
            s.password_policy,
            PasswordPolicy {
                min_length: 12,
                max_length: 64,
                history: 3,
                breached_check: false
            }
        );
        assert!(!s.lockout.enabled);
        assert_eq!(s.session_idle_timeout(), Duration::from_secs(8 * 3600));
        assert_eq!(
            s.session_absolute_lifetime(),
            Duration::from_secs(168 * 3600)
        );
        assert_eq!(s.access_token_ttl(), Duration::from_secs(90));
        assert_eq!(s.refresh_idle_ttl(), Duration::from_secs(24 * 3600));
        assert_eq!(s.refresh_absolute_ttl(), Duration::from_secs(168 * 3600));
        assert_eq!(s.refresh_reuse_grace(), Duration::from_secs(2));
        assert_eq!(s.tokens.audience, ["api://acme"]);
        assert_eq!(s.mfa.policy, MfaPolicy::Required);
        assert_eq!(s.redirects.allowed_origins, ["https://app.acme.example"]);
        assert_eq!(s.network.allow[0].to_string(), "10.0.0.0/8");
        assert_eq!(s.network.deny[0].to_string(), "2001:db8::/32");
    }

    #[test]
    fn what_the_schema_cannot_catch_is_refused_with_every_reason() {
        let err = settings_of(&spec(serde_json::json!({
            "tokens": { "accessTokenTtl": "0s", "refreshIdleTtl": "5s", "refreshReuseGrace": "10s" },
            "network": { "deny": ["10.0.0.0/33"] },
        })), GATEWAY)
        .unwrap_err();
        let fields: Vec<_> = err.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "network.deny",
                "tokens.accessTokenTtl",
                "tokens.refreshReuseGrace"
            ]
        );
    }

    #[test]
    fn a_cookie_domain_is_carried_over_only_when_it_holds_the_gateway_host() {
        let s = settings_of(
            &spec(serde_json::json!({ "sessions": { "cookieDomain": "acme.example" } })),
            GATEWAY,
        )
        .unwrap();
        assert_eq!(s.sessions.cookie_domain.as_deref(), Some("acme.example"));
        let err = settings_of(
            &spec(serde_json::json!({ "sessions": { "cookieDomain": "apps.acme.example" } })),
            GATEWAY,
        )
        .unwrap_err();
        assert_eq!(err.problems[0].field, "sessions.cookieDomain");
        assert!(
            err.to_string().contains("auth.acme.example"),
            "the message names the public host: {err}"
        );
    }

    #[test]
    fn deletion_policies_map_one_to_one() {
        assert_eq!(
            deletion_policy(keygate_crds::DeletionPolicy::Retain),
            DeletionPolicy::Retain
        );
        assert_eq!(
            deletion_policy(keygate_crds::DeletionPolicy::Delete),
            DeletionPolicy::Delete
        );
    }
}
