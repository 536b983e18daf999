use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn empty_settings_get_the_tenant_resource_defaults() {
    let s = TenantSettings::from_json(json!({})).unwrap();
    assert_eq!(s, TenantSettings::default());
    assert!(s.sign_in.password);
    assert_eq!(s.sign_in.registration, Registration::Closed);
    assert_eq!(s.sign_in.email_verification, EmailVerification::Required);
    assert_eq!(s.password_policy.min_length, 8);
    assert_eq!(s.password_policy.max_length, 128);
    assert_eq!(s.password_policy.history, 5);
    assert!(s.password_policy.breached_check);
    assert!(s.lockout.enabled);
    assert_eq!(s.session_idle_timeout(), Duration::from_secs(24 * 3600));
    assert_eq!(
        s.session_absolute_lifetime(),
        Duration::from_secs(720 * 3600)
    );
    assert_eq!(s.access_token_ttl(), Duration::from_secs(300));
    assert_eq!(s.refresh_idle_ttl(), Duration::from_secs(168 * 3600));
    assert_eq!(s.refresh_absolute_ttl(), Duration::from_secs(720 * 3600));
    assert_eq!(s.refresh_reuse_grace(), Duration::from_secs(10));
    assert!(s.tokens.audience.is_empty());
    assert_eq!(s.mfa.policy, MfaPolicy::Optional);
    assert_eq!(s.branding, Branding::default());
    assert!(s.redirects.allowed_origins.is_empty());
    assert!(s.network.allow.is_empty() && s.network.deny.is_empty());
    assert_eq!(s.validate(), Ok(()));
}

/// A spec as the operator stored it before settings were typed, deletion policy, display name
/// and signing included: it still reads, and what the gateway uses comes through.
#[test]
fn a_stored_tenant_spec_reads_as_settings() {
    let spec = json!({
        "displayName": "Acme Corp",
        "deletionPolicy": "Delete",
        "branding": { "primaryColor": "#8a2be2", "logoUrl": "https://acme.example/logo.svg" },
        "signIn": { "password": false, "registration": "invite", "emailVerification": "off" },
        "passwordPolicy": { "minLength": 12, "maxLength": 256, "history": 0, "breachedCheck": false },
        "lockout": { "enabled": false },
        "sessions": { "idleTimeout": "8h", "absoluteLifetime": "168h" },
        "tokens": { "accessTokenTtl": "90s", "refreshIdleTtl": "24h", "refreshAbsoluteTtl": "168h",
                    "refreshReuseGrace": "2s", "audience": ["api://acme"] },
        "mfa": { "policy": "required" },
        "signing": { "algorithm": "ES256", "rotateEvery": "720h" },
        "redirects": { "allowedOrigins": ["https://app.acme.example"] },
        "network": { "allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16", "2001:db8::/32"] },
    });
    let s = TenantSettings::from_json(spec).unwrap();
    assert_eq!(s.branding.primary_color.as_deref(), Some("#8a2be2"));
    assert_eq!(
        s.branding.logo_url.as_deref(),
        Some("https://acme.example/logo.svg")
    );
    assert!(!s.sign_in.password);
    assert_eq!(s.sign_in.registration, Registration::Invite);
    assert_eq!(s.sign_in.email_verification, EmailVerification::Off);
    assert_eq!(s.password_policy.min_length, 12);
    assert!(!s.password_policy.breached_check);
    assert!(!s.lockout.enabled);
    assert_eq!(s.session_idle_timeout(), Duration::from_secs(8 * 3600));
    assert_eq!(s.access_token_ttl(), Duration::from_secs(90));
    assert_eq!(s.refresh_reuse_grace(), Duration::from_secs(2));
    assert_eq!(s.tokens.audience, ["api://acme"]);
    assert_eq!(s.mfa.policy, MfaPolicy::Required);
    assert_eq!(s.redirects.allowed_origins, ["https://app.acme.example"]);
    assert_eq!(s.network.allow.len(), 1);
    assert_eq!(s.network.deny[1].to_string(), "2001:db8::/32");
}

#[test]
fn settings_round_trip_through_json() {
    let mut s = TenantSettings::default();
    s.branding.accent_color = Some("#4b0082".into());
    s.sign_in.registration = Registration::Open;
    s.sessions.idle_timeout = Duration::from_secs(5400);
    s.tokens.refresh_reuse_grace = Duration::from_millis(1500);
    s.tokens.audience = vec!["a".into(), "b".into()];
    s.mfa.policy = MfaPolicy::Off;
    s.network.allow = vec!["192.168.0.0/16".parse().unwrap()];
    let value = serde_json::to_value(&s).unwrap();
    assert_eq!(value["sessions"]["idleTimeout"], "1h30m");
    assert_eq!(value["tokens"]["refreshReuseGrace"], "1s500ms");
    assert_eq!(value["signIn"]["registration"], "open");
    assert_eq!(value["mfa"]["policy"], "off");
    assert_eq!(value["network"]["allow"][0], "192.168.0.0/16");
    assert_eq!(TenantSettings::from_json(value).unwrap(), s);
}

#[test]
fn a_value_of_the_wrong_shape_is_a_parse_error() {
    for bad in [
        json!({ "tokens": { "accessTokenTtl": "5 minutes" } }),
        json!({ "signIn": { "registration": "sometimes" } }),
        json!({ "network": { "deny": ["not-a-cidr"] } }),
        json!({ "passwordPolicy": { "minLength": -1 } }),
        json!("registration: open"),
    ] {
        assert!(
            matches!(
                TenantSettings::from_json(bad.clone()),
                Err(TenantSettingsError::Parse { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_parse_error_names_the_part_that_does_not_parse() {
    let err = TenantSettings::from_json(json!({
        "signIn": { "registration": "open" },
        "sessions": { "idleTimeout": "a day" },
    }))
    .unwrap_err();
    assert!(
        matches!(&err, TenantSettingsError::Parse { part: Some(p), .. } if p == "sessions"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("settings do not parse (in `sessions`): "),
        "{err}"
    );
}

fn problems(s: &TenantSettings) -> Vec<&'static str> {
    s.validate()
        .err()
        .map(|e| e.problems.iter().map(|p| p.field).collect())
        .unwrap_or_default()
}

#[test]
fn validation_repeats_the_resource_rules() {
    let mut s = TenantSettings::default();
    s.password_policy.min_length = 64;
    s.password_policy.max_length = 32;
    assert_eq!(problems(&s), ["passwordPolicy"]);

    let mut s = TenantSettings::default();
    s.password_policy.min_length = 4;
    s.password_policy.max_length = 2000;
    s.password_policy.history = 25;
    assert_eq!(
        problems(&s),
        [
            "passwordPolicy.minLength",
            "passwordPolicy.maxLength",
            "passwordPolicy.history"
        ]
    );

    let mut s = TenantSettings::default();
    s.sessions.idle_timeout = Duration::from_secs(48 * 3600);
    s.sessions.absolute_lifetime = Duration::from_secs(24 * 3600);
    s.tokens.refresh_idle_ttl = Duration::from_secs(800 * 3600);
    assert_eq!(problems(&s), ["sessions", "tokens"]);
    let message = s.validate().unwrap_err().to_string();
    assert!(
        message.contains(
            "sessions.idleTimeout must not be longer than sessions.absoluteLifetime; tokens: "
        ),
        "{message}"
    );

    let mut s = TenantSettings::default();
    s.branding.primary_color = Some("red".into());
    s.branding.logo_url = Some("ftp://logo".into());
    s.redirects.allowed_origins =
        vec!["https://ok.example".into(), "https://x.example/path".into()];
    s.tokens.audience = vec![String::new()];
    assert_eq!(
        problems(&s),
        [
            "branding.primaryColor",
            "branding.logoUrl",
            "tokens.audience",
            "redirects.allowedOrigins"
        ]
    );
}

#[test]
fn validation_refuses_what_no_schema_can_see() {
    let mut s = TenantSettings::default();
    s.tokens.access_token_ttl = Duration::ZERO;
    s.sessions.idle_timeout = Duration::ZERO;
    assert_eq!(
        problems(&s),
        ["sessions.idleTimeout", "tokens.accessTokenTtl"]
    );

    let mut s = TenantSettings::default();
    s.tokens.refresh_idle_ttl = Duration::from_secs(10);
    s.tokens.refresh_reuse_grace = Duration::from_secs(10);
    assert_eq!(problems(&s), ["tokens.refreshReuseGrace"]);

    // A stored value that parses but breaks a rule is refused when read, too.
    assert!(matches!(
        TenantSettings::from_json(json!({ "tokens": { "accessTokenTtl": "0s" } })),
        Err(TenantSettingsError::Invalid(_))
    ));
}

#[test]
fn a_cookie_domain_must_be_a_domain_holding_the_public_host() {
    let s = TenantSettings::from_json(json!({ "sessions": { "cookieDomain": "example.com" } }))
        .unwrap();
    assert_eq!(s.sessions.cookie_domain.as_deref(), Some("example.com"));
    assert!(s.check_public_url("https://auth.example.com").is_ok());
    assert!(s.check_public_url("https://example.com:8443/auth").is_ok());
    let outside = s.check_public_url("https://auth.example.org").unwrap_err();
    assert_eq!(outside.problems[0].field, "sessions.cookieDomain");
    assert!(
        outside.to_string().contains("does not contain"),
        "{outside}"
    );
    // Without the option, any public host is fine and nothing is written back.
    let plain = TenantSettings::default();
    assert!(plain.check_public_url("http://127.0.0.1:8080").is_ok());
    assert!(
        serde_json::to_value(&plain).unwrap()["sessions"]
            .get("cookieDomain")
            .is_none()
    );

    for bad in ["com", ".example.com", "10.0.0.1", "Example.com"] {
        let mut s = TenantSettings::default();
        s.sessions.cookie_domain = Some(bad.into());
        assert_eq!(problems(&s), ["sessions.cookieDomain"], "{bad}");
    }
}

#[test]
fn network_lists_deny_first_and_an_empty_allow_list_allows_all() {
    let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
    let open = TenantSettings::default().network;
    assert!(!open.is_restricted());
    assert!(open.permits(ip("198.51.100.7")) && open.permits(None));

    let s = TenantSettings::from_json(json!({ "network": {
        "allow": ["10.0.0.0/8", "2001:db8::/32"],
        "deny": ["10.6.6.0/24"],
    } }))
    .unwrap();
    let n = &s.network;
    assert!(n.is_restricted());
    assert!(n.permits(ip("10.1.2.3")));
    assert!(n.permits(ip("2001:db8::1")));
    // IPv4-mapped IPv6 (a dual-stack listener's peer) counts as its IPv4 address.
    assert!(n.permits(ip("::ffff:10.1.2.3")));
    assert!(!n.permits(ip("192.0.2.1")), "outside allow");
    assert!(!n.permits(ip("10.6.6.6")), "deny wins over allow");
    assert!(!n.permits(ip("::ffff:10.6.6.6")));
    assert!(!n.permits(None), "an unknown address is refused");

    let deny_only = TenantSettings::from_json(json!({ "network": { "deny": ["192.0.2.0/24"] } }))
        .unwrap()
        .network;
    assert!(
        deny_only.permits(ip("198.51.100.7")),
        "no allow list: all but deny"
    );
    assert!(!deny_only.permits(ip("192.0.2.9")));
    assert!(!deny_only.permits(None));
}

#[test]
fn key_rotation_and_audit_retention_have_their_defaults_and_rules() {
    let s = TenantSettings::from_json(json!({
        "signing": { "algorithm": "EdDSA", "rotateEvery": "2h", "publishLead": "15m" },
        "audit": { "retentionDays": 30 },
    }))
    .unwrap();
    assert_eq!(
        s.signing.algorithm,
        crate::crypto::signing::SigningAlgorithm::EdDSA
    );
    assert_eq!(s.signing.rotate_every, Duration::from_secs(7200));
    assert_eq!(s.signing.publish_lead, Duration::from_secs(900));
    assert_eq!(s.audit.retention_days, 30);
    let d = TenantSettings::default();
    assert_eq!(d.signing.publish_lead, Duration::from_secs(3600));
    assert_eq!(d.signing.rotate_every, Duration::from_secs(720 * 3600));
    assert_eq!(d.audit.retention_days, 400);

    let mut s = TenantSettings::default();
    s.signing.rotate_every = Duration::from_secs(1800);
    assert_eq!(problems(&s), ["signing"], "a lead longer than the rotation");
    s.signing.publish_lead = Duration::from_secs(30);
    assert_eq!(
        problems(&s),
        ["signing.publishLead"],
        "below the JWKS max-age"
    );
    let mut s = TenantSettings::default();
    s.audit.retention_days = 0;
    assert_eq!(problems(&s), ["audit.retentionDays"]);
}
