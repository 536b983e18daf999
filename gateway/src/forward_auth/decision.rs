//! The authorization decision: an identity against a route's requirements. Pure, so every
//! rule is unit-tested without HTTP.

use super::requirements::Requirements;
use crate::identity::{ACR_MFA, CredentialKind, Identity, acr_satisfies, has_second_factor};
use axum::http::Method;
use chrono::{DateTime, Utc};

/// Why an identity does not meet the requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The original request's method is not allowed here.
    Method,
    /// Roles, permissions or scopes are missing: signing in again would not help.
    Insufficient(&'static str),
    /// Stronger or fresher authentication would help (RFC 9470 step-up).
    StepUp {
        /// `acr_values` to ask for.
        acr_values: Vec<String>,
        /// `max_age` to ask for.
        max_age: Option<u64>,
    },
}

/// Decides whether `id` may make a request with `method` under `req` at `now`.
pub fn decide(
    req: &Requirements,
    method: Option<&Method>,
    id: &Identity,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if !req.methods.is_empty() && !method.is_some_and(|m| req.methods.contains(m)) {
        return Err(Refusal::Method);
    }
    if !req.any_role.is_empty() && !id.roles.iter().any(|r| req.any_role.contains(r)) {
        return Err(Refusal::Insufficient("role"));
    }
    if !req.permissions.iter().all(|p| id.permissions.contains(p)) {
        return Err(Refusal::Insufficient("permission"));
    }
    if !req.scopes.iter().all(|s| id.scopes.contains(s)) {
        return Err(Refusal::Insufficient("scope"));
    }
    let mfa_ok = !req.mfa || has_second_factor(&id.amr);
    // Levels are ordered (identity::levels): a multi-factor session meets a request for
    // password level; a value keygate does not know is met only by itself.
    let acr_ok = req.acr_values.is_empty()
        || req
            .acr_values
            .iter()
            .any(|want| acr_satisfies(id.acr.as_deref(), want));
    let fresh_ok = req.max_age.is_none_or(|max| {
        id.auth_time.is_some_and(|t| {
            now.signed_duration_since(t).num_seconds() <= i64::try_from(max).unwrap_or(i64::MAX)
        })
    });
    if mfa_ok && acr_ok && fresh_ok {
        return Ok(());
    }
    if id.kind == CredentialKind::ApiKey {
        // A machine cannot sign in again; say so plainly instead of asking it to.
        return Err(Refusal::Insufficient("authentication strength"));
    }
    let mut acr_values = req.acr_values.clone();
    if !mfa_ok && acr_values.is_empty() {
        acr_values.push(ACR_MFA.to_owned());
    }
    Err(Refusal::StepUp {
        acr_values,
        max_age: req.max_age,
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
            Err(Refusal::Insufficient("role"))
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
                max_age: Some(60)
            })
        );
        id.amr.push("otp".into());
        id.auth_time = Some(Utc::now());
        assert!(decide(&r, None, &id, Utc::now()).is_ok());
        id.kind = CredentialKind::ApiKey;
        id.auth_time = None;
        assert!(matches!(
            decide(&r, None, &id, Utc::now()),
            Err(Refusal::Insufficient(_))
        ));
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
