//! What a protected route demands, read from the auth URL's query string (ingress-nginx,
//! Traefik) or from the `X-Keygate-Requirements` header Envoy adds (same syntax).
//!
//! Syntax: `tenant=acme&role=a,b&perm=orders.read&perm=orders.write&scope=x&mfa=1&acr=urn:x&max_age=300&method=GET,HEAD&jwt=1`.
//! Lists may repeat a key or separate values with commas. `role` is satisfied by any one
//! of the listed roles; every listed `perm` and `scope` is required; `acr` by any one listed.
//! Anything unknown or malformed is a configuration error: the proxy's operator must fix
//! the URL, and until then every request is denied.

use axum::http::Method;
use std::collections::BTreeSet;

/// Longest requirement string accepted; auth URLs are short, anything longer is a mistake.
const MAX_LEN: usize = 4096;

/// The demands of one protected route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    /// The tenant whose credentials are accepted (required).
    pub tenant: String,
    /// Any one of these roles suffices; empty means no role is needed.
    pub any_role: BTreeSet<String>,
    /// Every one of these permissions is needed.
    pub permissions: BTreeSet<String>,
    /// Every one of these scopes is needed.
    pub scopes: BTreeSet<String>,
    /// A second factor must have been used at sign-in.
    pub mfa: bool,
    /// Any one of these authentication context classes is needed.
    pub acr_values: Vec<String>,
    /// The person must have authenticated at most this many seconds ago.
    pub max_age: Option<u64>,
    /// Only these HTTP methods of the original request are allowed; empty means any.
    pub methods: BTreeSet<Method>,
    /// Hand the upstream a short-lived signed JWT of the identity.
    pub upstream_jwt: bool,
}

/// Why requirements could not be read; each names the offending key so the log says what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequirementsError {
    /// No `tenant=` given.
    #[error("no `tenant` in the forward-auth requirements; add `tenant=<name>` to the auth URL")]
    MissingTenant,
    /// `tenant` given twice with different values.
    #[error("`tenant` given more than once")]
    TenantRepeated,
    /// A key keygate does not know (typo?).
    #[error(
        "unknown requirement `{0}`; known: tenant, role, perm, scope, mfa, acr, max_age, method, jwt"
    )]
    UnknownKey(String),
    /// A value that does not parse for its key.
    #[error("requirement `{key}` has an invalid value `{value}`")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given (truncated).
        value: String,
    },
    /// Longer than any sensible auth URL.
    #[error("forward-auth requirements longer than {MAX_LEN} bytes")]
    TooLong,
}

fn bad(key: &'static str, value: &str) -> RequirementsError {
    RequirementsError::BadValue {
        key,
        value: value.chars().take(64).collect(),
    }
}

/// A name as roles, permissions and scopes are spelled: short, printable, no separators
/// (tenants are DNS labels, `identity::is_tenant_name`).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b))
}

fn flag(key: &'static str, value: &str) -> Result<bool, RequirementsError> {
    match value {
        "1" | "true" | "yes" | "" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(bad(key, other)),
    }
}

fn list(
    key: &'static str,
    value: &str,
    mut push: impl FnMut(&str),
) -> Result<(), RequirementsError> {
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !is_name(item) {
            return Err(bad(key, item));
        }
        push(item);
    }
    Ok(())
}

impl Requirements {
    /// Reads requirements from a query string (`a=b&c=d`, percent-encoded).
    pub fn parse(query: &str) -> Result<Self, RequirementsError> {
        if query.len() > MAX_LEN {
            return Err(RequirementsError::TooLong);
        }
        let mut r = Requirements::default();
        let mut tenant: Option<String> = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "tenant" => {
                    if !crate::identity::is_tenant_name(value) {
                        return Err(bad("tenant", value));
                    }
                    if tenant.as_deref().is_some_and(|t| t != value) {
                        return Err(RequirementsError::TenantRepeated);
                    }
                    tenant = Some(value.to_owned());
                }
                "role" => list("role", value, |v| {
                    r.any_role.insert(v.to_owned());
                })?,
                "perm" => list("perm", value, |v| {
                    r.permissions.insert(v.to_owned());
                })?,
                "scope" => list("scope", value, |v| {
                    r.scopes.insert(v.to_owned());
                })?,
                "acr" => list("acr", value, |v| {
                    if !r.acr_values.iter().any(|a| a == v) {
                        r.acr_values.push(v.to_owned());
                    }
                })?,
                "mfa" => r.mfa = flag("mfa", value)?,
                "jwt" => r.upstream_jwt = flag("jwt", value)?,
                "max_age" => {
                    let secs: u64 = value.parse().map_err(|_| bad("max_age", value))?;
                    if secs > 10 * 365 * 24 * 3600 {
                        return Err(bad("max_age", value));
                    }
                    r.max_age = Some(r.max_age.map_or(secs, |m| m.min(secs)));
                }
                "method" => {
                    for m in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let upper = m.to_ascii_uppercase();
                        let known = [
                            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                            "CONNECT",
                        ];
                        if !known.contains(&upper.as_str()) {
                            return Err(bad("method", m));
                        }
                        r.methods.insert(
                            Method::from_bytes(upper.as_bytes()).map_err(|_| bad("method", m))?,
                        );
                    }
                }
                other => {
                    return Err(RequirementsError::UnknownKey(
                        other.chars().take(64).collect(),
                    ));
                }
            }
        }
        r.tenant = tenant.ok_or(RequirementsError::MissingTenant)?;
        Ok(r)
    }

    /// Whether signing in again (with a second factor, a stronger method, or just recently)
    /// could satisfy what is asked beyond roles, permissions and scopes.
    pub fn asks_for_authentication_strength(&self) -> bool {
        self.mfa || !self.acr_values.is_empty() || self.max_age.is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_with_repeats_and_commas() {
        let r = Requirements::parse(
            "tenant=acme&role=a,b&role=c&perm=orders.read&perm=orders.write&scope=x&mfa=1&acr=urn:kg:mfa&max_age=300&method=get,HEAD&jwt=1",
        )
        .unwrap();
        assert_eq!(r.tenant, "acme");
        assert_eq!(r.any_role.len(), 3);
        assert_eq!(r.permissions.len(), 2);
        assert!(r.mfa && r.upstream_jwt);
        assert_eq!(r.max_age, Some(300));
        assert!(r.methods.contains(&Method::GET) && r.methods.contains(&Method::HEAD));
        assert_eq!(r.acr_values, vec!["urn:kg:mfa"]);
    }

    #[test]
    fn mistakes_are_errors_not_silently_weaker_rules() {
        assert_eq!(
            Requirements::parse("role=a"),
            Err(RequirementsError::MissingTenant)
        );
        assert!(matches!(
            Requirements::parse("tenant=a&rol=x"),
            Err(RequirementsError::UnknownKey(_))
        ));
        assert!(Requirements::parse("tenant=a&max_age=soon").is_err());
        assert!(Requirements::parse("tenant=a&mfa=maybe").is_err());
        assert!(Requirements::parse("tenant=a&method=FETCH").is_err());
        assert!(Requirements::parse("tenant=a&tenant=b").is_err());
        assert!(Requirements::parse("tenant=a&role=%3Cscript%3E").is_err());
        assert!(Requirements::parse("tenant=../x").is_err());
        for bad_tenant in ["%0a", "..", "Acme", "-a", "a_b"] {
            assert!(Requirements::parse(&format!("tenant={bad_tenant}")).is_err());
        }
        let long = "a".repeat(64);
        assert!(Requirements::parse(&format!("tenant={long}")).is_err());
        assert!(Requirements::parse(&format!("tenant={}", &long[1..])).is_ok());
        assert!(Requirements::parse(&"tenant=a&role=x".repeat(1000)).is_err());
    }
}

/// Properties over generated auth URLs: whatever a proxy's operator writes, parsing ends in
/// requirements or an error (never a panic), every requirement set can be written and is read
/// back exactly, and a mistake added to a valid URL is an error, never weaker requirements.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    const MAX_AGE_LIMIT: u64 = 10 * 365 * 24 * 3600;

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:/@-]{1,24}"
    }

    fn requirements() -> impl Strategy<Value = Requirements> {
        (
            "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            prop::collection::btree_set(name(), 0..4),
            prop::collection::btree_set(name(), 0..4),
            prop::collection::btree_set(name(), 0..4),
            any::<bool>(),
            prop::collection::vec(name(), 0..3),
            prop::option::of(0..=MAX_AGE_LIMIT),
            prop::collection::btree_set(prop::sample::select(&METHODS[..]), 0..4),
            any::<bool>(),
        )
            .prop_map(
                |(tenant, any_role, permissions, scopes, mfa, acr, max_age, methods, jwt)| {
                    let mut acr_values: Vec<String> = Vec::new();
                    for a in acr {
                        if !acr_values.contains(&a) {
                            acr_values.push(a);
                        }
                    }
                    Requirements {
                        tenant,
                        any_role,
                        permissions,
                        scopes,
                        mfa,
                        acr_values,
                        max_age,
                        methods: methods
                            .into_iter()
                            .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                            .collect(),
                        upstream_jwt: jwt,
                    }
                },
            )
    }

    /// `r` as the (key, value) pairs of an auth URL, lists either repeated or comma-joined.
    fn pairs(r: &Requirements, commas: bool) -> Vec<(String, String)> {
        let mut out = vec![("tenant".to_owned(), r.tenant.clone())];
        let mut list = |key: &str, items: Vec<String>| {
            if commas && !items.is_empty() {
                out.push((key.to_owned(), items.join(",")));
            } else {
                out.extend(items.into_iter().map(|i| (key.to_owned(), i)));
            }
        };
        list("role", r.any_role.iter().cloned().collect());
        list("perm", r.permissions.iter().cloned().collect());
        list("scope", r.scopes.iter().cloned().collect());
        list("acr", r.acr_values.clone());
        list(
            "method",
            r.methods
                .iter()
                .map(|m| m.as_str().to_lowercase())
                .collect(),
        );
        if r.mfa {
            out.push(("mfa".into(), "1".into()));
        }
        if r.upstream_jwt {
            out.push(("jwt".into(), "true".into()));
        }
        if let Some(secs) = r.max_age {
            out.push(("max_age".into(), secs.to_string()));
        }
        out
    }

    fn render(pairs: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(query in any::<String>()) {
            let _ = Requirements::parse(&query);
        }

        #[test]
        fn known_keys_with_any_values_never_panic(
            pairs in prop::collection::vec(
                (prop::sample::select(&["tenant", "role", "perm", "scope", "mfa", "acr",
                    "max_age", "method", "jwt", "x"][..]), any::<String>()),
                0..8,
            ),
        ) {
            let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            if let Ok(r) = Requirements::parse(&query) {
                prop_assert!(crate::identity::is_tenant_name(&r.tenant));
                prop_assert!(r.max_age.is_none_or(|s| s <= MAX_AGE_LIMIT));
            }
        }

        #[test]
        fn every_requirement_set_reads_back_exactly_in_any_order(
            (r, p) in (requirements(), any::<bool>()).prop_flat_map(|(r, commas)| {
                let p = pairs(&r, commas);
                (Just(r), Just(p).prop_shuffle())
            }),
        ) {
            // `acr` values keep the order they are written in (the step-up challenge lists
            // them in that order of preference); nothing else depends on order.
            let mut expected = r;
            expected.acr_values = p
                .iter()
                .filter(|(k, _)| k == "acr")
                .flat_map(|(_, v)| v.split(','))
                .map(str::to_owned)
                .collect();
            prop_assert_eq!(Requirements::parse(&render(&p)), Ok(expected));
        }

        #[test]
        fn a_mistake_added_to_a_valid_url_is_an_error_never_weaker_rules(
            r in requirements(),
            mistake in prop_oneof![
                ("[a-z_]{1,12}", "[a-z0-9]{0,8}")
                    .prop_filter("an unknown key", |(k, _)| ![
                        "tenant", "role", "perm", "scope", "mfa", "acr", "max_age", "method", "jwt"
                    ].contains(&k.as_str())),
                (prop::sample::select(&["role", "perm", "scope", "acr"][..]).prop_map(str::to_owned),
                    "[a-z]{0,4}[<>\"';%()\\[\\]{}]+[a-z]{0,4}"),
                Just(("mfa".to_owned(), "maybe".to_owned())),
                Just(("method".to_owned(), "FETCH".to_owned())),
                Just(("max_age".to_owned(), "-1".to_owned())),
                // Longer than any generated tenant, so always another one.
                Just(("tenant".to_owned(), "another-tenant-abcdefghij".to_owned())),
            ],
        ) {
            let mut p = pairs(&r, false);
            p.push(mistake);
            prop_assert!(Requirements::parse(&render(&p)).is_err());
        }
    }
}
