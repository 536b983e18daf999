//! Device cookies, after OWASP's "Slow down online guessing attacks with device cookies":
//! a browser that signed in to an account gets `__Host-keygate_device` (an API client the same
//! token as `device_token`), naming the tenant, the account, a random nonce and when it was
//! issued, tagged with a key derived from the master key ([`MacPurpose::DeviceCookies`]). A
//! sign-in to that account presenting it is judged by the device's own failure budget, not
//! the account's lockout, so a stranger's wrong passwords cannot lock the owner out of the
//! browsers they already use; a device that spends its budget is locked on its own. Without
//! a valid token (another account's, forged, expired, or none) a sign-in takes the account's
//! progressive lockout as before. An account that has no such device can be unlocked by an
//! emailed link (`unlock.rs`).
//!
//! One cookie serves every account signed in from a browser: its value is up to
//! [`MAX_TOKENS`] tokens joined by `.`, newest first.

use super::audit::kind;
use super::lockout::time_left;
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, PasswordSignIn, RequestMeta, hex};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use keygate_core::crypto::envelope::MacPurpose;
use keygate_core::crypto::random::random_bytes;
use keygate_core::ephemeral::EphemeralError;
use keygate_core::ids::{TenantId, UserId};
use keygate_core::store::User;
use serde_json::json;

/// How long a device token is honoured after it was issued (each sign-in issues a new one).
pub const DEVICE_TOKEN_TTL: Duration = Duration::days(180);
/// Wrong passwords a device may send for its account per [`DEVICE_FAILURE_WINDOW`].
pub const DEVICE_FAILURE_BUDGET: u64 = 10;
/// The window of a device's failure budget, counted from its first failure.
pub const DEVICE_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(86_400);
/// How long a device that spent its budget is locked (its nonce is on the lockout list).
pub const DEVICE_LOCK: Duration = Duration::hours(24);
/// Most tokens (accounts) one browser's device cookie holds; the oldest are dropped.
const MAX_TOKENS: usize = 5;
/// Format version, tenant, account, nonce, issue time (seconds).
const BODY_LEN: usize = 1 + 16 + 16 + 16 + 8;
/// HMAC-SHA256.
const TAG_LEN: usize = 32;
const VERSION: u8 = 1;
/// Tolerated clock skew between replicas for a token issued "in the future".
const SKEW_SECS: i64 = 60;

/// A device that proved it signed in to the account being tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Device {
    /// The token's nonce in hex: the key of the device's budget and lock.
    nonce: String,
}

/// What a device token says, once its tag checked out.
struct Claims {
    tenant: TenantId,
    user: UserId,
    nonce: [u8; 16],
    issued: DateTime<Utc>,
}

fn body(tenant: TenantId, user: UserId, nonce: &[u8; 16], issued: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(BODY_LEN);
    b.push(VERSION);
    b.extend_from_slice(tenant.0.as_bytes());
    b.extend_from_slice(user.0.as_bytes());
    b.extend_from_slice(nonce);
    b.extend_from_slice(&issued.to_be_bytes());
    b
}

/// What the tag covers: a label (so the tag is nothing to any other MAC) and the body.
fn signed_text(body: &[u8]) -> Vec<u8> {
    [b"keygate device cookie\0".as_slice(), body].concat()
}

impl IdentityService {
    fn device_mac(&self) -> &keygate_core::crypto::mac::Mac {
        self.master_keys().mac(MacPurpose::DeviceCookies)
    }

    /// A fresh device token for `user` of `t`.
    pub(super) fn new_device_token(
        &self,
        t: &LiveTenant,
        user: UserId,
    ) -> Result<String, IdentityError> {
        let nonce = random_bytes::<16>()?;
        let b = body(t.row.id, user, &nonce, self.now().timestamp());
        let tag = self.device_mac().tag(&signed_text(&b));
        Ok(URL_SAFE_NO_PAD.encode([b, tag].concat()))
    }

    /// The claims of one token if its tag checks out and it is within its lifetime.
    fn open_device_token(&self, token: &str) -> Option<Claims> {
        if token.len() > 4 * (BODY_LEN + TAG_LEN) / 3 + 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if raw.len() != BODY_LEN + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        let (b, tag) = raw.split_at(BODY_LEN);
        if !self.device_mac().verify(&signed_text(b), tag) {
            return None;
        }
        let id = |at: usize| uuid::Uuid::from_slice(&b[at..at + 16]).ok();
        let issued = i64::from_be_bytes(b[49..57].try_into().ok()?);
        let issued = DateTime::from_timestamp(issued, 0)?;
        let age = self.now() - issued;
        if age < Duration::seconds(-SKEW_SECS) || age > DEVICE_TOKEN_TTL {
            return None;
        }
        Some(Claims {
            tenant: TenantId(id(1)?),
            user: UserId(id(17)?),
            nonce: b[33..49].try_into().ok()?,
            issued,
        })
    }

    /// The tokens of a presented cookie (or an API client's `device_token`) that are valid,
    /// in their order; junk and anything past [`MAX_TOKENS`] are ignored.
    fn presented_tokens<'a>(&self, presented: Option<&'a str>) -> Vec<(&'a str, Claims)> {
        presented
            .unwrap_or_default()
            .split('.')
            .take(MAX_TOKENS)
            .filter_map(|tok| self.open_device_token(tok).map(|c| (tok, c)))
            .collect()
    }

    /// The device behind `presented` if it holds a valid token for `user` of `t`.
    pub(super) fn known_device(
        &self,
        t: &LiveTenant,
        user: &User,
        presented: Option<&str>,
    ) -> Option<Device> {
        self.presented_tokens(presented)
            .into_iter()
            .find(|(_, c)| c.tenant == t.row.id && c.user == user.id)
            .map(|(_, c)| Device {
                nonce: hex(&c.nonce),
            })
    }

    /// The device cookie's value after `user` of `t` signed in with `fresh` issued: `fresh`
    /// first, then the presented tokens of other accounts that are still valid.
    pub(super) fn device_cookie_after(
        &self,
        t: &LiveTenant,
        user: UserId,
        presented: Option<&str>,
        fresh: &str,
    ) -> String {
        let mut tokens: Vec<(&str, DateTime<Utc>)> = self
            .presented_tokens(presented)
            .into_iter()
            .filter(|(_, c)| !(c.tenant == t.row.id && c.user == user))
            .map(|(tok, c)| (tok, c.issued))
            .collect();
        tokens.sort_by_key(|tok| std::cmp::Reverse(tok.1));
        std::iter::once(fresh)
            .chain(tokens.into_iter().map(|(tok, _)| tok))
            .take(MAX_TOKENS)
            .collect::<Vec<_>>()
            .join(".")
    }

    fn device_key(t: &LiveTenant, what: &str, device: &Device) -> String {
        format!("device-{what}:{}:{}", t.row.id, device.nonce)
    }

    /// How long `device` stays locked, if it spent its budget.
    pub(super) async fn device_lock_left(
        &self,
        t: &LiveTenant,
        device: &Device,
    ) -> Result<Option<std::time::Duration>, EphemeralError> {
        let e = self.deps().ephemeral.as_ref();
        let until = e
            .get(&Self::device_key(t, "lock", device))
            .await?
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        Ok(until.and_then(|until| time_left(until, self.now())))
    }

    /// Counts a wrong password from `device` against its own budget, locking the device
    /// when it is spent. If the budget cannot be counted the failure counts against the
    /// account instead (the account's lockout is in the database), so an outage of the
    /// ephemeral store never lifts every limit.
    pub(super) async fn count_device_failure(
        &self,
        t: &LiveTenant,
        user: &User,
        device: &Device,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let e = self.deps().ephemeral.as_ref();
        let failures = match e
            .hit(&Self::device_key(t, "fail", device), DEVICE_FAILURE_WINDOW)
            .await
        {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(error = %err, "device budget unavailable; counting the account");
                return self.count_failure(t, user, meta, self.now()).await;
            }
        };
        if failures < DEVICE_FAILURE_BUDGET {
            return Ok(());
        }
        let until = self.now() + DEVICE_LOCK;
        let ttl = DEVICE_LOCK.to_std().unwrap_or_default() + std::time::Duration::from_secs(60);
        e.put(
            &Self::device_key(t, "lock", device),
            until.timestamp_millis().to_string().as_bytes(),
            ttl,
        )
        .await?;
        self.audit(
            t,
            kind::DEVICE_LOCKED,
            Some(user.id),
            meta,
            json!({"failures": failures, "seconds": DEVICE_LOCK.num_seconds()}),
        )
        .await
    }

    /// The password check of a sign-in from a device that signed in to the account before:
    /// the device's lock instead of the account's, and a wrong password counted against the
    /// device's budget only. A success leaves the account's lockout as it is (it holds for
    /// every other client, the attacker's included), so the second value is `false`. If the
    /// device's lock cannot be read, the attempt takes the account's path.
    pub(super) async fn check_password_on_device(
        &self,
        t: &LiveTenant,
        req: &PasswordSignIn,
        user: User,
        device: &Device,
        meta: &RequestMeta,
    ) -> Result<(User, bool), IdentityError> {
        let lock = match self.device_lock_left(t, device).await {
            Ok(lock) => lock,
            Err(err) => {
                tracing::warn!(error = %err, "device lock unreadable; judging by the account");
                return self.check_password_on_account(t, req, user, meta).await;
            }
        };
        if let Some(left) = lock {
            self.deps().hasher.verify_dummy(&req.password).await?;
            let locked = IdentityError::AccountLocked { retry_after: left };
            return self.refuse(t, &user, meta, "device_locked", locked).await;
        }
        if !self.password_matches(&user, &req.password).await? {
            self.audit_failure(t, Some(user.id), meta, "bad_password_known_device")
                .await?;
            self.count_device_failure(t, &user, device, meta).await?;
            return Err(IdentityError::InvalidCredentials);
        }
        Ok((user, false))
    }
}
