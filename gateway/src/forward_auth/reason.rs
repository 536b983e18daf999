//! Why forward-auth answered as it did, as a stable machine-readable word and a decision
//! id: sent in `X-Keygate-Reason` and `X-Keygate-Decision-Id` on every denial (HTTP and
//! gRPC), logged, and counted by reason. The words are part of the interface: dashboards,
//! alerts and scripts match on them, so they are never renamed, only added to.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Response header naming the reason of a denial.
pub const REASON_HEADER: &str = "x-keygate-reason";
/// Response header naming the decision, the id the gateway log has it under.
pub const DECISION_ID_HEADER: &str = "x-keygate-decision-id";

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $word:literal,)*) => {
        /// The reason of one forward-auth decision.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in the order of [`Reason::ALL`]'s words.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable word (`missing_role`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $word,)*
                }
            }
        }
    };
}

reasons! {
    /// The request was let through.
    Allowed => "allowed",
    /// No credential was presented.
    NoCredentials => "no_credentials",
    /// A credential was presented but is unusable as sent (repeated, wrong scheme, too long).
    CredentialMalformed => "credential_malformed",
    /// An access token that is not one of this tenant's (signature, issuer, audience, type).
    TokenInvalid => "token_invalid",
    /// An access token past its `exp`.
    TokenExpired => "token_expired",
    /// An access token whose token id or session was revoked (sign-out, revoke).
    TokenRevoked => "token_revoked",
    /// An API key this tenant does not know (or whose secret does not match).
    ApiKeyInvalid => "api_key_invalid",
    /// An API key past its expiry or the grace period of its rotation.
    ApiKeyExpired => "api_key_expired",
    /// An API key that was revoked (deleted, rotated out).
    ApiKeyRevoked => "api_key_revoked",
    /// A session cookie that names no session of this tenant.
    SessionInvalid => "session_invalid",
    /// A session past its idle or absolute lifetime.
    SessionExpired => "session_expired",
    /// A session that was ended (sign-out, revoke, refresh-token reuse).
    SessionRevoked => "session_revoked",
    /// The original request's method is not among the route's `method=`.
    MethodNotAllowed => "method_not_allowed",
    /// None of the route's `role=` is held.
    MissingRole => "missing_role",
    /// One of the route's `perm=` is not held.
    MissingPermission => "missing_permission",
    /// One of the route's `scope=` is not granted.
    MissingScope => "missing_scope",
    /// The route asks for a second factor (`mfa=1`) the sign-in did not use.
    MfaRequired => "mfa_required",
    /// The route asks for an `acr=` the sign-in did not reach.
    AcrTooLow => "acr_too_low",
    /// The person authenticated longer ago than the route's `max_age=`.
    AuthTooOld => "auth_too_old",
    /// The client's address is outside the tenant's network lists.
    IpDenied => "ip_denied",
    /// The route's requirements cannot be read or name no live tenant.
    Misconfigured => "misconfigured",
    /// A dependency is down: the credential could not be checked.
    Unavailable => "unavailable",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of one decision: unique across replicas and restarts (a random per-process
/// prefix and a counter), cheap enough to make for every check, printed as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecisionId(u128);

impl DecisionId {
    /// The next id of this process.
    pub fn next() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self((u128::from(prefix) << 64) | u128::from(n))
    }
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_discriminant() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn words_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let w = r.as_str();
            assert!(seen.insert(w), "{w} twice");
            assert!(w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn decision_ids_differ_and_are_32_hex_digits() {
        let (a, b) = (DecisionId::next(), DecisionId::next());
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
