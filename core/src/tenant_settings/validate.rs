//! The rules of [`TenantSettings`]: the Tenant resource's schema and CEL rules again (settings
//! can come from places no API server checked), plus combinations no schema can express.

use std::fmt;

use super::{Branding, PasswordPolicy, Sessions, TenantSettings, Tokens};

/// One broken rule: the camelCase path of the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `passwordPolicy.minLength`.
    pub field: &'static str,
    /// What is wrong, in words for the person who wrote the Tenant.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule the settings break (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSettings {
    /// The broken rules, in field order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Longest list the Tenant resource allows for origins and each network list.
const MAX_LIST: usize = 64;
/// Most audience values.
const MAX_AUDIENCE: usize = 16;

impl TenantSettings {
    /// Checks every rule; `Err` lists all broken ones, so one pass fixes a Tenant.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let mut problems = Vec::new();
        let mut fail = |field: &'static str, message: String| {
            problems.push(Problem { field, message });
        };
        check_branding(&self.branding, &mut fail);
        check_password_policy(&self.password_policy, &mut fail);
        check_lifetimes(&self.sessions, &self.tokens, &mut fail);
        check_lists(self, &mut fail);
        check_rotation(self, &mut fail);
        if let Some(domain) = self
            .sessions
            .cookie_domain
            .as_deref()
            .filter(|d| !super::cookie_domain::is_cookie_domain(d))
        {
            fail(
                "sessions.cookieDomain",
                format!(
                    "`{domain}` is not a domain such as example.com (lower-case DNS name of at least two labels, no leading dot, no IP address)"
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSettings { problems })
        }
    }

    /// Checks what depends on where the gateway is served (`public_url`, `KEYGATE_PUBLIC_URL`):
    /// a `sessions.cookieDomain` must contain its host, or browsers would drop the cookie
    /// the sign-in page sets and every sign-in would loop. Only the operator knows the
    /// public URL when it reads a Tenant, so this is not part of [`Self::validate`].
    pub fn check_public_url(&self, public_url: &str) -> Result<(), InvalidSettings> {
        let public_host = super::cookie_domain::public_host(public_url);
        match self.sessions.cookie_domain.as_deref() {
            Some(domain) if !super::cookie_domain::covers(domain, &public_host) => {
                Err(InvalidSettings {
                    problems: vec![Problem {
                        field: "sessions.cookieDomain",
                        message: format!(
                            "`{domain}` does not contain the gateway's public host `{public_host}`; browsers would refuse a cookie for it"
                        ),
                    }],
                })
            }
            _ => Ok(()),
        }
    }
}

/// Colours and logo URL, as the resource's patterns say.
fn check_branding(b: &Branding, fail: &mut impl FnMut(&'static str, String)) {
    for (field, colour) in [
        ("branding.primaryColor", &b.primary_color),
        ("branding.accentColor", &b.accent_color),
    ] {
        if let Some(c) = colour.as_deref().filter(|c| !is_colour(c)) {
            fail(field, format!("`{c}` is not a colour such as #1f6feb"));
        }
    }
    if let Some(url) = b.logo_url.as_deref()
        && (url.len() > 2048 || !is_http_url(url))
    {
        fail(
            "branding.logoUrl",
            "must be an http(s) URL without spaces, at most 2048 characters".into(),
        );
    }
}

/// Length bounds and history, as the resource's ranges and CEL rule say.
fn check_password_policy(p: &PasswordPolicy, fail: &mut impl FnMut(&'static str, String)) {
    if !(8..=128).contains(&p.min_length) {
        fail(
            "passwordPolicy.minLength",
            "must be between 8 and 128".into(),
        );
    }
    if !(8..=1024).contains(&p.max_length) {
        fail(
            "passwordPolicy.maxLength",
            "must be between 8 and 1024".into(),
        );
    }
    if p.history > 24 {
        fail("passwordPolicy.history", "must be between 0 and 24".into());
    }
    if p.min_length > p.max_length {
        fail(
            "passwordPolicy",
            "passwordPolicy.minLength must not be greater than passwordPolicy.maxLength".into(),
        );
    }
}

/// Lifetimes: the resource's CEL rules, and zero or overlapping values no schema sees.
fn check_lifetimes(s: &Sessions, t: &Tokens, fail: &mut impl FnMut(&'static str, String)) {
    let zero_means = [
        (
            s.idle_timeout,
            "sessions.idleTimeout",
            "every session would end at once",
        ),
        (
            t.access_token_ttl,
            "tokens.accessTokenTtl",
            "every token would be born expired",
        ),
        (
            t.refresh_idle_ttl,
            "tokens.refreshIdleTtl",
            "every refresh token would be born expired",
        ),
    ];
    for (lifetime, field, consequence) in zero_means {
        if lifetime.is_zero() {
            fail(field, format!("must be longer than 0s ({consequence})"));
        }
    }
    if s.idle_timeout > s.absolute_lifetime {
        fail(
            "sessions",
            "sessions.idleTimeout must not be longer than sessions.absoluteLifetime".into(),
        );
    }
    if t.refresh_idle_ttl > t.refresh_absolute_ttl {
        fail(
            "tokens",
            "tokens.refreshIdleTtl must not be longer than tokens.refreshAbsoluteTtl".into(),
        );
    }
    if !t.refresh_idle_ttl.is_zero() && t.refresh_reuse_grace >= t.refresh_idle_ttl {
        fail(
            "tokens.refreshReuseGrace",
            format!(
                "must be shorter than tokens.refreshIdleTtl ({}), or a replayed refresh token would never be noticed",
                super::duration::format(t.refresh_idle_ttl)
            ),
        );
    }
}

/// Key rotation and audit retention, as the resource's CEL rules and ranges say.
fn check_rotation(settings: &TenantSettings, fail: &mut impl FnMut(&'static str, String)) {
    let signing = &settings.signing;
    if signing.rotate_every.is_zero() {
        fail(
            "signing.rotateEvery",
            "must be longer than 0s (a new key would be due at every pass)".into(),
        );
    }
    if signing.publish_lead < super::MIN_PUBLISH_LEAD {
        fail(
            "signing.publishLead",
            "signing.publishLead must be at least 1m (the JWKS document may be cached 60 s)".into(),
        );
    }
    if signing.publish_lead > signing.rotate_every {
        fail(
            "signing",
            "signing.publishLead must not be longer than signing.rotateEvery".into(),
        );
    }
    if !(1..=36_500).contains(&settings.audit.retention_days) {
        fail("audit.retentionDays", "must be between 1 and 36500".into());
    }
}

/// Audience, origins and network lists: sizes and shapes.
fn check_lists(settings: &TenantSettings, fail: &mut impl FnMut(&'static str, String)) {
    let t = &settings.tokens;
    if t.audience.len() > MAX_AUDIENCE {
        fail("tokens.audience", format!("at most {MAX_AUDIENCE} values"));
    }
    if t.audience
        .iter()
        .any(|a| a.is_empty() || a.chars().count() > 256)
    {
        fail(
            "tokens.audience",
            "each value must be 1 to 256 characters".into(),
        );
    }

    let origins = &settings.redirects.allowed_origins;
    if origins.len() > MAX_LIST {
        fail(
            "redirects.allowedOrigins",
            format!("at most {MAX_LIST} origins"),
        );
    }
    for origin in origins.iter().filter(|o| o.len() > 256 || !is_origin(o)) {
        fail(
            "redirects.allowedOrigins",
            format!(
                "`{origin}` is not an origin such as https://app.example.com (scheme, host and optional port, no path)"
            ),
        );
    }

    for (field, list) in [
        ("network.allow", &settings.network.allow),
        ("network.deny", &settings.network.deny),
    ] {
        if list.len() > MAX_LIST {
            fail(field, format!("at most {MAX_LIST} entries"));
        }
    }
}

/// `#rrggbb`.
fn is_colour(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `^https?://\S+$`, the Tenant resource's URL pattern.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace))
}

/// `^https?://[^/\s?#]+$`, the Tenant resource's origin pattern.
fn is_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r
                .chars()
                .any(|c| c == '/' || c == '?' || c == '#' || c.is_whitespace())
    })
}
