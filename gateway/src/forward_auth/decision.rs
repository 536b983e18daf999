//! The authorization decision: an identity against a route's requirements. Pure, so every
//! rule is unit-tested without HTTP. Each requirement is one named check; the hot path stops
//! at nothing (the checks are set look-ups) and `keygate explain` is told every outcome
//! through the same function, so what it prints is what the live check decided.

use super::reason::Reason;
use super::requirements::Requirements;
use crate::identity::{ACR_MFA, CredentialKind, Identity, acr_satisfies, has_second_factor};
use axum::http::Method;
use chrono::{DateTime, Utc};

/// Why an identity does not meet the requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The original request's method is not allowed here.
    Method,
    /// Roles, permissions, scopes (or, for an API key, authentication strength) are
    /// missing: signing in again would not help. The reason names which.
    Insufficient(Reason),
    /// Stronger or fresher authentication would help (RFC 9470 step-up).
    StepUp {
        /// `acr_values` to ask for.
        acr_values: Vec<String>,
        /// `max_age` to ask for.
        max_age: Option<u64>,
        /// The first unmet one of `mfa`, `acr` and `max_age`.
        reason: Reason,
    },
}

impl Refusal {
    /// The stable reason word of this refusal.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Method => Reason::MethodNotAllowed,
            Self::Insufficient(r) | Self::StepUp { reason: r, .. } => *r,
        }
    }
}

/// One requirement check as `keygate explain` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The requirement key (`method`, `role`, `perm`, `scope`, `mfa`, `acr`, `max_age`).
    pub key: &'static str,
    /// Whether the route asks for it at all (a check not asked for passes).
    pub asked: bool,
    /// Whether the identity meets it.
    pub met: bool,
}

/// Decides whether `id` may make a request with `method` under `req` at `now`.
pub fn decide(
    req: &Requirements,
    method: Option<&Method>,
    id: &Identity,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    decide_traced(req, method, id, now, &mut |_| {})
}

/// [`decide`], telling `trace` the outcome of every check (all are evaluated; the refusal
/// is the first unmet one, in the order they are traced).
pub fn decide_traced(
    req: &Requirements,
    method: Option<&Method>,
    id: &Identity,
    now: DateTime<Utc>,
    trace: &mut (dyn FnMut(Check) + Send),
) -> Result<(), Refusal> {
    let mut check = |key: &'static str, asked: bool, met: bool| {
        trace(Check { key, asked, met });
        !asked || met
    };
    let method_ok = check(
        "method",
        !req.methods.is_empty(),
        method.is_some_and(|m| req.methods.contains(m)),
    );
    let role_ok = check(
        "role",
        !req.any_role.is_empty(),
        id.roles.iter().any(|r| req.any_role.contains(r)),
    );
    let perm_ok = check(
        "perm",
        !req.permissions.is_empty(),
        req.permissions.iter().all(|p| id.permissions.contains(p)),
    );
    let scope_ok = check(
        "scope",
        !req.scopes.is_empty(),
        req.scopes.iter().all(|s| id.scopes.contains(s)),
    );
    let mfa_ok = check("mfa", req.mfa, has_second_factor(&id.amr));
    // Levels are ordered (identity::levels): a multi-factor session meets a request for
    // password level; a value keygate does not know is met only by itself.
    let acr_ok = check(
        "acr",
        !req.acr_values.is_empty(),
        req.acr_values
            .iter()
            .any(|want| acr_satisfies(id.acr.as_deref(), want)),
    );
    let fresh_ok = check(
        "max_age",
        req.max_age.is_some(),
        req.max_age.is_some_and(|max| {
            id.auth_time.is_some_and(|t| {
                now.signed_duration_since(t).num_seconds() <= i64::try_from(max).unwrap_or(i64::MAX)
            })
        }),
    );
    if !method_ok {
        return Err(Refusal::Method);
    }
    for (ok, reason) in [
        (role_ok, Reason::MissingRole),
        (perm_ok, Reason::MissingPermission),
        (scope_ok, Reason::MissingScope),
    ] {
        if !ok {
            return Err(Refusal::Insufficient(reason));
        }
    }
    let strength = [
        (mfa_ok, Reason::MfaRequired),
        (acr_ok, Reason::AcrTooLow),
        (fresh_ok, Reason::AuthTooOld),
    ]
    .into_iter()
    .find(|(ok, _)| !ok)
    .map(|(_, reason)| reason);
    let Some(reason) = strength else {
        return Ok(());
    };
    if id.kind == CredentialKind::ApiKey {
        // A machine cannot sign in again; say so plainly instead of asking it to.
        return Err(Refusal::Insufficient(reason));
    }
    let mut acr_values = req.acr_values.clone();
    if !mfa_ok && acr_values.is_empty() {
        acr_values.push(ACR_MFA.to_owned());
    }
    Err(Refusal::StepUp {
        acr_values,
        max_age: req.max_age,
        reason,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use keygate_core::ids::TenantId;

    pub(crate) fn person() -> Identity {
        Identity {
            tenant_id: TenantId::new(),
            tenant: "acme".into(),
            subject: "u1".into(),
            username: "ada@example.com".into(),
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
            roles: vec!["reader".into()],
            permissions: vec!["orders.read".into()],
            scopes: vec!["openid".into()],
            amr: vec!["pwd".into()],
            acr: None,
            auth_time: Some(Utc::now() - chrono::Duration::seconds(600)),
            kind: CredentialKind::Session,
            revocation_ids: vec!["s1".into()],
            session_id: None,
            expires_at: Utc::now() + chrono::Duration::seconds(600),
            api_key: None,
        }
    }

    fn req(q: &str) -> Requirements {
        Requirements::parse(q).unwrap()
    }

    #[test]
    fn roles_any_permissions_and_scopes_all() {
        let id = person();
        let now = Utc::now();
        assert!(decide(&req("tenant=acme&role=admin,reader"), None, &id, now).is_ok());
        assert_eq!(
            decide(&req("tenant=acme&role=admin"), None, &id, now),
            Err(Refusal::Insufficient(Reason::MissingRole))
        );
        assert!(
            decide(
                &req("tenant=acme&perm=orders.read&perm=orders.write"),
                None,
                &id,
                now
            )
            .is_err()
        );
        assert!(decide(&req("tenant=acme&scope=openid"), None, &id, now).is_ok());
    }

    #[test]
    fn every_refusal_names_its_reason_and_every_check_is_traced() {
        let id = person();
        let now = Utc::now();
        let cases = [
            ("tenant=acme&method=POST", Reason::MethodNotAllowed),
            ("tenant=acme&role=admin", Reason::MissingRole),
            ("tenant=acme&perm=orders.write", Reason::MissingPermission),
            ("tenant=acme&scope=email", Reason::MissingScope),
            ("tenant=acme&mfa=1", Reason::MfaRequired),
            ("tenant=acme&acr=urn:gold", Reason::AcrTooLow),
            ("tenant=acme&max_age=60", Reason::AuthTooOld),
            // The first unmet one in check order names the refusal.
            ("tenant=acme&role=admin&mfa=1", Reason::MissingRole),
        ];
        for (q, reason) in cases {
            let refusal = decide(&req(q), Some(&Method::GET), &id, now).unwrap_err();
            assert_eq!(refusal.reason(), reason, "{q}");
        }
        let mut seen = Vec::new();
        let r = decide_traced(
            &req("tenant=acme&role=admin&mfa=1"),
            Some(&Method::GET),
            &id,
            now,
            &mut |c| seen.push(c),
        );
        assert!(r.is_err());
        let keys: Vec<&str> = seen.iter().map(|c| c.key).collect();
        assert_eq!(
            keys,
            ["method", "role", "perm", "scope", "mfa", "acr", "max_age"],
            "all checks are told, not only up to the first failure"
        );
        assert!(seen.iter().any(|c| c.key == "mfa" && c.asked && !c.met));
        assert!(seen.iter().any(|c| c.key == "perm" && !c.asked));
    }

    #[test]
    fn methods_are_checked_and_unknown_method_fails_closed() {
        let id = person();
        let r = req("tenant=acme&method=GET");
        assert!(decide(&r, Some(&Method::GET), &id, Utc::now()).is_ok());
        assert_eq!(
            decide(&r, Some(&Method::POST), &id, Utc::now()),
            Err(Refusal::Method)
        );
        assert_eq!(decide(&r, None, &id, Utc::now()), Err(Refusal::Method));
    }

    #[test]
    fn mfa_and_max_age_ask_for_step_up_but_not_of_api_keys() {
        let mut id = person();
        let r = req("tenant=acme&mfa=1&max_age=60");
        assert_eq!(
            decide(&r, None, &id, Utc::now()),
            Err(Refusal::StepUp {
                acr_values: vec![ACR_MFA.into()],
                max_age: Some(60),
                reason: Reason::MfaRequired,
            })
        );
        id.amr.push("otp".into());
        id.auth_time = Some(Utc::now());
        assert!(decide(&r, None, &id, Utc::now()).is_ok());
        id.kind = CredentialKind::ApiKey;
        id.auth_time = None;
        assert_eq!(
            decide(&r, None, &id, Utc::now()),
            Err(Refusal::Insufficient(Reason::AuthTooOld))
        );
    }

    #[test]
    fn acr_levels_are_ordered() {
        let mut id = person();
        id.acr = Some(crate::identity::ACR_PASSWORD.into());
        let mfa = req(&format!("tenant=acme&acr={ACR_MFA}"));
        assert!(matches!(
            decide(&mfa, None, &id, Utc::now()),
            Err(Refusal::StepUp { .. })
        ));
        let pwd = req(&format!(
            "tenant=acme&acr={}",
            crate::identity::ACR_PASSWORD
        ));
        assert!(decide(&pwd, None, &id, Utc::now()).is_ok());
        id.acr = Some(ACR_MFA.into());
        assert!(decide(&mfa, None, &id, Utc::now()).is_ok());
        assert!(decide(&pwd, None, &id, Utc::now()).is_ok(), "mfa meets pwd");
    }
}
