//! What a sign-in may be granted: the client its tokens are issued to and their scopes.
//! Forward-auth's `scope=` and every resource server trust the `scope` claim, so a scope is
//! granted only when the tenant allows it to everyone (the OpenID Connect standard scopes)
//! or the person holds it as a permission through a Role; anything else is refused with
//! `invalid_scope` (RFC 6749 §5.2), never copied from the request. Which client may ask
//! for which scopes at all (its `allowedScopes`) is `clients`' rule.

use super::IdentityError;

/// `client_id` of tokens issued to keygate's own sign-in: the tenant's built-in client.
pub(crate) const DEFAULT_CLIENT_ID: &str = "keygate";
/// Scope granted when none is asked for.
pub(crate) const DEFAULT_SCOPE: &str = "openid";
/// Scopes every person of a tenant may be granted (OpenID Connect Core §5.4, §11, and
/// `groups`, which releases the local groups): they say what the token may read of the
/// person, not what the person may do.
pub(crate) const STANDARD_SCOPES: [&str; 5] =
    ["openid", "profile", "email", "offline_access", "groups"];
/// Longest `scope` parameter looked at.
const MAX_SCOPE_BYTES: usize = 2048;

/// Whether a person holding `permissions` may be granted scope `s`.
pub(super) fn grantable(s: &str, permissions: &[String]) -> bool {
    STANDARD_SCOPES.contains(&s) || permissions.iter().any(|p| p == s)
}

/// The scope granted to a sign-in that asked for `asked` (space-separated; `openid` when
/// absent or blank), as the asked scopes in order without repeats. Refused whole with
/// `InvalidScope` when one of them is neither standard nor held, or the list is malformed:
/// a client learns at once what it cannot have rather than finding it missing later.
pub(super) fn grant_for_sign_in(
    asked: Option<&str>,
    permissions: &[String],
) -> Result<String, IdentityError> {
    let Some(asked) = asked.filter(|s| !s.trim().is_empty()) else {
        return Ok(DEFAULT_SCOPE.into());
    };
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by spaces.
    let well_formed = asked.len() <= MAX_SCOPE_BYTES
        && asked
            .bytes()
            .all(|b| b == b' ' || (b'!'..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if !well_formed {
        return Err(IdentityError::InvalidScope);
    }
    let mut granted: Vec<&str> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if !grantable(s, permissions) {
            return Err(IdentityError::InvalidScope);
        }
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    Ok(granted.join(" "))
}

/// Of a session's `scope`, what the person still holds: a Role taken away since sign-in
/// takes its scope out of the next refreshed token.
pub(super) fn still_held(scope: &str, permissions: &[String]) -> String {
    scope
        .split_whitespace()
        .filter(|s| grantable(s, permissions))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Vec<String> {
        vec!["orders.write".into()]
    }

    #[test]
    fn only_standard_scopes_and_held_permissions_are_granted() {
        let grant = |asked| grant_for_sign_in(asked, &held()).ok();
        assert_eq!(grant(None).as_deref(), Some("openid"));
        assert_eq!(grant(Some("  ")).as_deref(), Some("openid"));
        assert_eq!(
            grant(Some("openid  email orders.write openid")).as_deref(),
            Some("openid email orders.write")
        );
        assert_eq!(grant(Some("openid billing.admin")), None);
        assert_eq!(grant(Some("orders.write\tbilling.admin")), None);
        assert_eq!(grant(Some("openid \"x\"")), None);
        assert_eq!(grant(Some("openid ".repeat(400).as_str())), None);
    }

    #[test]
    fn a_refresh_keeps_only_what_is_still_held() {
        assert_eq!(
            still_held("openid orders.write", &held()),
            "openid orders.write"
        );
        assert_eq!(still_held("openid orders.write", &[]), "openid");
    }
}
