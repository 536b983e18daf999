//! Emailed unlock: the owner of a locked account (or of a browser whose device cookie is
//! locked) asks for a link; the request answers the same whether or not the account exists,
//! and goes through the per-address limit and the per-recipient mail budget like a reset.
//! The link's token lives in the ephemeral store, is taken atomically (single use) and
//! expires after [`UNLOCK_TTL`]; redeeming it clears the account's lockout and hands the
//! redeeming browser or client a new device token.

use super::accounts::check_link_shape;
use super::audit::kind;
use super::mail::Mail;
use super::{IdentityError, IdentityService, RequestMeta, hex};
use chrono::{DateTime, Duration};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::sha256;
use keygate_core::ids::UserId;
use keygate_core::store::UserStatus;
use serde_json::json;

/// How long an unlock link works.
pub const UNLOCK_TTL: Duration = Duration::minutes(30);

/// A redeemed unlock link: the device token it hands out.
#[derive(Clone)]
pub struct Unlocked {
    /// A new device token for the account (an API client's `device_token`).
    pub device_token: String,
    /// The browser's device cookie value: the new token and the presented tokens of other
    /// accounts.
    pub device_cookie: String,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked").finish_non_exhaustive()
    }
}

/// Where an unlock token waits, by the SHA-256 of the token (the token itself is not kept).
fn unlock_key(tenant: &super::LiveTenant, token: &str) -> String {
    format!(
        "unlock:{}:{}",
        tenant.row.id,
        hex(&sha256(token.as_bytes()))
    )
}

impl IdentityService {
    /// Sends an unlock link if the account exists and is active (locked or not: a browser's
    /// device lock is not visible from here); answers the same either way.
    #[tracing::instrument(name = "identity.request_unlock", level = "debug", skip_all)]
    pub async fn request_unlock(
        &self,
        tenant: &str,
        email: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let t = self.tenant(tenant).await?;
        let Some(user) = self
            .link_recipient(&t, email, meta, "unlock", kind::UNLOCK_REQUESTED)
            .await?
        else {
            return Ok(());
        };
        let token = random_token()?;
        let expires = self.now() + UNLOCK_TTL;
        let value = format!("{} {}", user.id, expires.timestamp_millis());
        // Kept a little past its expiry, which is judged by the clock below.
        let ttl = UNLOCK_TTL.to_std().unwrap_or_default() + std::time::Duration::from_secs(60);
        self.deps()
            .ephemeral
            .put(&unlock_key(&t, &token), value.as_bytes(), ttl)
            .await?;
        let link = format!("{}/unlock?token={token}", t.issuer);
        self.send_later(
            &t,
            &user.email,
            Mail::Unlock {
                link: &link,
                code: &token,
            },
        );
        Ok(())
    }

    /// Spends an unlock link (single use, [`UNLOCK_TTL`]): clears the account's lockout and
    /// issues a device token, merged into the `presented` device cookie for browsers.
    #[tracing::instrument(name = "identity.unlock", level = "debug", skip_all)]
    pub async fn unlock(
        &self,
        tenant: &str,
        token: &str,
        presented: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<Unlocked, IdentityError> {
        let t = self.tenant(tenant).await?;
        check_link_shape(token)?;
        let d = self.deps();
        let taken = d.ephemeral.take(&unlock_key(&t, token)).await?;
        let (user_id, expires) = taken
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split_once(' '))
            .and_then(|(user, millis)| {
                let user: UserId = user.parse().ok()?;
                Some((user, DateTime::from_timestamp_millis(millis.parse().ok()?)?))
            })
            .ok_or(IdentityError::InvalidLink)?;
        if self.now() >= expires {
            return Err(IdentityError::InvalidLink);
        }
        let user = d
            .store
            .user(t.row.id, user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(IdentityError::InvalidLink)?;
        d.store.reset_lockout(t.row.id, user.id).await?;
        self.audit(&t, kind::UNLOCKED, Some(user.id), meta, json!({}))
            .await?;
        let device_token = self.new_device_token(&t, user.id)?;
        let device_cookie = self.device_cookie_after(&t, user.id, presented, &device_token);
        Ok(Unlocked {
            device_token,
            device_cookie,
        })
    }
}
