//! The device authorization grant (RFC 8628) for clients on devices without a usable browser
//! (a CLI on a server, a TV): the client gets a device code and a short user code; a person
//! signed in on any browser enters the user code at `/t/{tenant}/device` and approves or
//! denies; the client polls the token endpoint with the device code until then.
//!
//! Both codes live in the ephemeral store for [`DEVICE_CODE_TTL`]: the device code (256 bits)
//! only as its SHA-256, the user code (8 letters of an alphabet without vowels or look-alikes,
//! RFC 8628 §6.1) as the key that leads to it. Approved tokens are handed out once: the poll
//! that finds the grant approved takes it atomically.

use super::audit::kind;
use super::metrics::Grant;
use super::person_grant::PersonGrant;
use super::relying_party::{ClientCredentials, GrantType};
use super::signin::admit_network;
use super::tenants::LiveTenant;
use super::{
    IdentityError, IdentityService, IssuedTokens, Principal, RequestMeta, chrono_duration, hex,
};
use chrono::{DateTime, Utc};
use keygate_core::crypto::random::{random_bytes, random_token};
use keygate_core::crypto::sha256;
use keygate_core::ids::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long a device code (and its user code) can be used.
pub const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// Seconds a client waits between polls (RFC 8628 §3.2's default).
pub const DEVICE_POLL_INTERVAL: u64 = 5;
/// The user code alphabet: consonants only, so no word is spelled and none look alike.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code (shown as two groups of four).
const USER_CODE_LEN: usize = 8;

/// What a client gets from the device authorization endpoint (RFC 8628 §3.2).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    /// The secret the client polls with.
    pub device_code: String,
    /// What the person types (`XXXX-XXXX`).
    pub user_code: String,
    /// Where the person goes.
    pub verification_uri: String,
    /// The same with the user code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .finish_non_exhaustive()
    }
}

/// A device authorization waiting for its person, as shown before they approve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDevice {
    /// The user code, normalized (`XXXX-XXXX`).
    pub user_code: String,
    /// The client's display name.
    pub client_name: String,
    /// The scopes it asks for.
    pub scope: String,
}

/// What a poll of the token endpoint with a device code finds (RFC 8628 §3.5).
#[derive(Debug)]
pub enum DevicePoll {
    /// Approved: the tokens (handed out once).
    Issued(IssuedTokens),
    /// The person has not decided yet.
    Pending,
    /// Polled faster than the interval.
    SlowDown,
    /// The person denied it.
    Denied,
    /// The codes expired (or never existed for this client).
    Expired,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Decision {
    Pending,
    Approved {
        user_id: UserId,
        session_id: SessionId,
        auth_time: DateTime<Utc>,
        amr: Vec<String>,
        acr: Option<String>,
    },
    Denied,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceRecord {
    client_id: String,
    scope: String,
    user_code: String,
    expires_at: DateTime<Utc>,
    decision: Decision,
}

fn device_key(t: &LiveTenant, device_hash: &str) -> String {
    format!("device-code:{}:{device_hash}", t.row.id)
}

fn user_key(t: &LiveTenant, user_code: &str) -> String {
    format!("device-user:{}:{user_code}", t.row.id)
}

/// A user code as typed (any case, with or without dashes and spaces) in its stored form
/// `XXXX-XXXX`; `None` when it cannot be one.
pub(crate) fn normalize_user_code(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok =
        letters.len() == USER_CODE_LEN && letters.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    ok.then(|| format!("{}-{}", &letters[..4], &letters[4..]))
}

fn new_user_code() -> Result<String, IdentityError> {
    let mut out = String::with_capacity(USER_CODE_LEN + 1);
    // Rejection sampling keeps every letter equally likely (20 does not divide 256).
    while out.len() < USER_CODE_LEN + 1 {
        for b in random_bytes::<16>()? {
            if out.len() == USER_CODE_LEN + 1 {
                break;
            }
            if b < 240 {
                if out.len() == 4 {
                    out.push('-');
                }
                out.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    Ok(out)
}

impl IdentityService {
    /// RFC 8628 §3.1: a device code and user code for the client `credentials` prove (a
    /// public client by its id), which must be allowed the device grant and the scopes.
    pub async fn authorize_device(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        scope: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<DeviceAuthorization, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        self.limit_oauth(&t, &client.client_id, meta).await?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(IdentityError::UnauthorizedClient);
        }
        let scope = client.scope_for(scope)?;
        let device_code = random_token()?;
        let user_code = new_user_code()?;
        let record = DeviceRecord {
            client_id: client.client_id.clone(),
            scope,
            user_code: user_code.clone(),
            expires_at: self.now() + chrono_duration(DEVICE_CODE_TTL),
            decision: Decision::Pending,
        };
        let device_hash = hex(&sha256(device_code.as_bytes()));
        let value =
            serde_json::to_vec(&record).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let d = self.deps();
        d.ephemeral
            .put(&device_key(&t, &device_hash), &value, DEVICE_CODE_TTL)
            .await?;
        d.ephemeral
            .put(
                &user_key(&t, &user_code),
                device_hash.as_bytes(),
                DEVICE_CODE_TTL,
            )
            .await?;
        let verification_uri = format!("{}/device", t.issuer);
        let verification_uri_complete = format!("{verification_uri}?user_code={user_code}");
        Ok(DeviceAuthorization {
            device_code,
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in: DEVICE_CODE_TTL.as_secs(),
            interval: DEVICE_POLL_INTERVAL,
        })
    }

    /// The pending device authorization behind a typed user code, to show before approval;
    /// `InvalidLink` for an unknown, expired or decided one. Counted against the address's
    /// sign-in budget, so user codes cannot be guessed at speed.
    pub async fn pending_device(
        &self,
        t: &LiveTenant,
        typed: &str,
        meta: &RequestMeta,
    ) -> Result<PendingDevice, IdentityError> {
        if let Some(ip) = meta.ip {
            self.limit(
                "device-ip",
                &format!("{}:{ip}", t.row.id),
                self.deps().limits.sign_in_per_ip,
            )
            .await?;
        }
        let (_, record) = self.device_by_user_code(t, typed).await?;
        let client = self
            .relying_party(t, &record.client_id)
            .await?
            .ok_or(IdentityError::InvalidLink)?;
        Ok(PendingDevice {
            user_code: record.user_code,
            client_name: client.record.display_name,
            scope: record.scope,
        })
    }

    async fn device_by_user_code(
        &self,
        t: &LiveTenant,
        typed: &str,
    ) -> Result<(String, DeviceRecord), IdentityError> {
        let user_code = normalize_user_code(typed).ok_or(IdentityError::InvalidLink)?;
        let d = self.deps();
        let Some(hash) = d.ephemeral.get(&user_key(t, &user_code)).await? else {
            return Err(IdentityError::InvalidLink);
        };
        let hash = String::from_utf8(hash).map_err(|_| IdentityError::InvalidLink)?;
        let record: DeviceRecord = d
            .ephemeral
            .get(&device_key(t, &hash))
            .await?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(IdentityError::InvalidLink)?;
        if !matches!(record.decision, Decision::Pending) || self.now() >= record.expires_at {
            return Err(IdentityError::InvalidLink);
        }
        Ok((hash, record))
    }

    /// The person behind `person` (a browser session) approves (`approve`) or denies the
    /// device authorization of `typed`. Every scope must be one they may be granted.
    pub async fn decide_device(
        &self,
        t: &LiveTenant,
        typed: &str,
        approve: bool,
        person: &Principal,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let (hash, mut record) = self.device_by_user_code(t, typed).await?;
        let (Some(user_id), Some(session_id), Some(auth_time)) =
            (person.user_id, person.session_id(), person.auth_time())
        else {
            return Err(IdentityError::InvalidToken);
        };
        if approve
            && !record
                .scope
                .split_whitespace()
                .all(|s| super::scopes::grantable(s, &person.permissions))
        {
            return Err(IdentityError::InvalidScope);
        }
        record.decision = if approve {
            Decision::Approved {
                user_id,
                session_id,
                auth_time,
                amr: person.amr().to_vec(),
                acr: person.acr().map(str::to_owned),
            }
        } else {
            Decision::Denied
        };
        let left = (record.expires_at - self.now())
            .to_std()
            .unwrap_or_default();
        let value =
            serde_json::to_vec(&record).map_err(|e| IdentityError::Internal(e.to_string()))?;
        let d = self.deps();
        d.ephemeral.put(&device_key(t, &hash), &value, left).await?;
        // The user code is spent: nobody else can decide this authorization.
        d.ephemeral.take(&user_key(t, &record.user_code)).await?;
        self.audit(
            t,
            kind::DEVICE_DECIDED,
            Some(user_id),
            meta,
            json!({"client_id": record.client_id, "approved": approve, "session": session_id}),
        )
        .await?;
        Ok(())
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code`: what the device code's
    /// authorization has come to, for the client it was issued to.
    pub async fn poll_device(
        &self,
        tenant: &str,
        credentials: &ClientCredentials,
        device_code: &str,
        meta: &RequestMeta,
    ) -> Result<DevicePoll, IdentityError> {
        let t = self.tenant(tenant).await?;
        admit_network(&t, meta)?;
        let client = self.authenticate_relying_party(&t, credentials).await?;
        self.limit_oauth(&t, &client.client_id, meta).await?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(IdentityError::UnauthorizedClient);
        }
        if device_code.len() > 128 {
            return Err(IdentityError::InvalidGrant);
        }
        let hash = hex(&sha256(device_code.as_bytes()));
        let d = self.deps();
        let key = device_key(&t, &hash);
        let Some(record) = d
            .ephemeral
            .get(&key)
            .await?
            .and_then(|v| serde_json::from_slice::<DeviceRecord>(&v).ok())
        else {
            return Ok(DevicePoll::Expired);
        };
        if record.client_id != client.client_id {
            return Err(IdentityError::InvalidGrant);
        }
        if self.now() >= record.expires_at {
            return Ok(DevicePoll::Expired);
        }
        let polls = d
            .ephemeral
            .hit(
                &format!("device-poll:{}:{hash}", t.row.id),
                // A second short of the interval: a client that waits it is never told off.
                Duration::from_secs(DEVICE_POLL_INTERVAL - 1),
            )
            .await?;
        if polls > 1 {
            return Ok(DevicePoll::SlowDown);
        }
        match record.decision {
            Decision::Pending => Ok(DevicePoll::Pending),
            Decision::Denied => {
                d.ephemeral.take(&key).await?;
                Ok(DevicePoll::Denied)
            }
            Decision::Approved { .. } => {
                // Taken atomically: only one poll hands out the tokens.
                let Some(taken) = d.ephemeral.take(&key).await? else {
                    return Ok(DevicePoll::Expired);
                };
                let record: DeviceRecord =
                    serde_json::from_slice(&taken).map_err(|_| IdentityError::InvalidGrant)?;
                let Decision::Approved {
                    user_id,
                    session_id,
                    auth_time,
                    amr,
                    acr,
                } = record.decision
                else {
                    return Ok(DevicePoll::Expired);
                };
                let (issued, _) = self
                    .issue_to_person(
                        &t,
                        &client,
                        PersonGrant {
                            user_id,
                            browser_session: session_id,
                            auth_time,
                            amr,
                            acr,
                            scope: record.scope,
                            nonce: None,
                            grant: Grant::DeviceCode,
                        },
                        meta,
                    )
                    .await?;
                Ok(DevicePoll::Issued(issued))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_two_groups_of_four_consonants_and_typing_is_forgiven() {
        let code = new_user_code().unwrap();
        assert_eq!(code.len(), 9);
        assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        let typed = code.replace('-', " ").to_ascii_lowercase();
        assert_eq!(normalize_user_code(&typed).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are never in a code"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }
}
