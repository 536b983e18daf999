//! Consent for the OpenID Provider: a client with `consent: required` (or any request with
//! `prompt=consent`) gets no code until the signed-in person approved its scopes on the
//! consent page. Approvals are remembered per person and client as the union of the scopes
//! approved (`ConsentStore`), so a request within them skips the page and a new scope asks
//! again; the person can list and withdraw them, which also revokes the sessions (refresh
//! families) that person's grants opened for the client.
//!
//! Between showing the page and the person's answer, the checked request waits in the
//! ephemeral store under the SHA-256 of a random ticket (single use, [`CONSENT_TICKET_TTL`]),
//! bound to the person and browser session it was shown to: the answer grants exactly what
//! the page showed.

use super::audit::kind;
use super::authorization::{Authorization, AuthorizeRefusal};
use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, Principal, RequestMeta, hex};
use chrono::{DateTime, Utc};
use keygate_core::crypto::random::random_token;
use keygate_core::crypto::sha256;
use keygate_core::ids::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long a consent page can be answered.
pub const CONSENT_TICKET_TTL: Duration = Duration::from_secs(600);
/// Longest ticket looked at.
const MAX_TICKET_BYTES: usize = 128;

/// Whether an authorization request needs the person's approval before a code is issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentNeeded {
    /// Approved before (or the client does not ask): issue the code.
    No,
    /// Show the consent page.
    Ask,
}

/// What the consent page shows, and the ticket its form answers with.
#[derive(Clone, Debug)]
pub struct ConsentPrompt {
    /// Single-use handle of the waiting request (the form's hidden field).
    pub ticket: String,
    /// The client's display name.
    pub client_name: String,
    /// The client's id.
    pub client_id: String,
    /// The scopes asked for, in order.
    pub scopes: Vec<String>,
}

/// A remembered consent, as the person's list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentInfo {
    /// The client's `client_id`.
    pub client_id: String,
    /// The client's display name.
    pub display_name: String,
    /// Every scope approved.
    pub scopes: Vec<String>,
    /// When a scope was last added.
    pub granted_at: DateTime<Utc>,
}

/// A request waiting for the person's answer.
#[derive(Serialize, Deserialize)]
struct Waiting {
    auth: Authorization,
    user_id: UserId,
    session_id: SessionId,
}

fn ticket_key(t: &LiveTenant, ticket: &str) -> String {
    format!("consent:{}:{}", t.row.id, hex(&sha256(ticket.as_bytes())))
}

/// The refusal of a request whose consent page cannot be answered: nothing to redirect to.
fn stale() -> AuthorizeRefusal {
    AuthorizeRefusal::NoRedirect(
        "This request expired or was already answered. Go back to the application and sign in again.",
    )
}

impl IdentityService {
    /// Whether `person` must approve `auth` first: always for `prompt=consent`; for a client
    /// with `consent: required`, unless every scope asked was approved before. With
    /// `prompt=none` a needed approval is `consent_required` at the client.
    pub async fn consent_needed(
        &self,
        t: &LiveTenant,
        auth: &Authorization,
        person: &Principal,
    ) -> Result<ConsentNeeded, AuthorizeRefusal> {
        let needed = if auth.prompt.consent {
            true
        } else if !auth.consent_required {
            false
        } else {
            let user = person
                .user_id
                .ok_or_else(|| auth.refuse("login_required", "no signed-in person"))?;
            let remembered = self
                .deps()
                .store
                .consent(t.row.id, user, &auth.client_id)
                .await
                .map_err(|e| unavailable(auth, e.into()))?;
            !remembered.is_some_and(|c| c.covers(&auth.scope))
        };
        match (needed, auth.prompt.none) {
            (false, _) => Ok(ConsentNeeded::No),
            (true, true) => Err(auth.refuse(
                "consent_required",
                "the person has not approved these scopes for this client",
            )),
            (true, false) => Ok(ConsentNeeded::Ask),
        }
    }

    /// Puts `auth` aside for `person`'s answer and says what the consent page shows. Scopes
    /// the person may not grant are refused here (`invalid_scope`), before anyone is asked.
    pub async fn begin_consent(
        &self,
        t: &LiveTenant,
        auth: &Authorization,
        person: &Principal,
    ) -> Result<ConsentPrompt, AuthorizeRefusal> {
        let (Some(user_id), Some(session_id)) = (person.user_id, person.session_id()) else {
            return Err(auth.refuse("login_required", "no signed-in person"));
        };
        auth.check_grantable(person)?;
        let client_name = match self.relying_party(t, &auth.client_id).await {
            Ok(Some(c)) => c.record.display_name,
            Ok(None) => return Err(stale()),
            Err(e) => return Err(unavailable(auth, e)),
        };
        let ticket = random_token().map_err(|e| unavailable(auth, e.into()))?;
        let waiting = Waiting {
            auth: auth.clone(),
            user_id,
            session_id,
        };
        let value = serde_json::to_vec(&waiting)
            .map_err(|e| unavailable(auth, IdentityError::Internal(e.to_string())))?;
        self.deps()
            .ephemeral
            .put(&ticket_key(t, &ticket), &value, CONSENT_TICKET_TTL)
            .await
            .map_err(|e| unavailable(auth, e.into()))?;
        Ok(ConsentPrompt {
            ticket,
            client_name,
            client_id: auth.client_id.clone(),
            scopes: auth.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// The person's answer on the consent page for `ticket` (spent either way). Approval
    /// remembers the scopes and gives back the request to issue the code for; denial is
    /// `access_denied` at the client. Both are audited. A ticket that is unknown, spent,
    /// expired or shown to another person or browser session is refused with a page.
    pub async fn decide_consent(
        &self,
        t: &LiveTenant,
        ticket: &str,
        approve: bool,
        person: &Principal,
        meta: &RequestMeta,
    ) -> Result<Authorization, AuthorizeRefusal> {
        if ticket.is_empty() || ticket.len() > MAX_TICKET_BYTES {
            return Err(stale());
        }
        let taken = match self.deps().ephemeral.take(&ticket_key(t, ticket)).await {
            Ok(Some(v)) => v,
            Ok(None) => return Err(stale()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a consent ticket");
                return Err(AuthorizeRefusal::NoRedirect(
                    "This is not available right now. Try again shortly.",
                ));
            }
        };
        let waiting: Waiting = serde_json::from_slice(&taken).map_err(|_| stale())?;
        if person.user_id != Some(waiting.user_id)
            || person.session_id() != Some(waiting.session_id)
        {
            return Err(stale());
        }
        let auth = waiting.auth;
        let (event, data) = (
            if approve {
                kind::CONSENT_GRANTED
            } else {
                kind::CONSENT_DENIED
            },
            json!({"client_id": auth.client_id, "scope": auth.scope}),
        );
        if approve {
            auth.check_grantable(person)?;
            let scopes: Vec<String> = auth.scope.split_whitespace().map(str::to_owned).collect();
            self.deps()
                .store
                .grant_consent(
                    t.row.id,
                    waiting.user_id,
                    &auth.client_id,
                    &scopes,
                    self.now(),
                )
                .await
                .map_err(|e| unavailable(&auth, e.into()))?;
        }
        self.audit(t, event, Some(waiting.user_id), meta, data)
            .await
            .map_err(|e| unavailable(&auth, e))?;
        if approve {
            Ok(auth)
        } else {
            Err(auth.refuse("access_denied", "the person denied the request"))
        }
    }

    /// The caller's remembered consents, most recently granted first.
    pub async fn list_consents(
        &self,
        caller: &Principal,
    ) -> Result<Vec<ConsentInfo>, IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        Ok(self
            .deps()
            .store
            .consents_of_user(t.row.id, user)
            .await?
            .into_iter()
            .map(|c| ConsentInfo {
                client_id: c.client_id,
                display_name: c.display_name,
                scopes: c.scopes,
                granted_at: c.granted_at,
            })
            .collect())
    }

    /// Withdraws the caller's consent to `client_id` and revokes, on every replica, the
    /// sessions (refresh families) of the caller's grants to that client: the next
    /// authorization asks again and the client's refresh tokens are refused. `NotFound` when
    /// there was neither a consent nor a session.
    pub async fn revoke_consent(
        &self,
        caller: &Principal,
        client_id: &str,
        meta: &RequestMeta,
    ) -> Result<(), IdentityError> {
        let user = caller.user_id.ok_or(IdentityError::Forbidden)?;
        let t = self.tenant(&caller.tenant).await?;
        let d = self.deps();
        let (forgotten, sessions) = d
            .store
            .revoke_consent(t.row.id, user, client_id, self.now())
            .await?;
        if !forgotten && sessions.is_empty() {
            return Err(IdentityError::NotFound);
        }
        let ttl = self.session_revocation_ttl(&t);
        for s in &sessions {
            d.ephemeral.revoke(&s.to_string(), ttl).await?;
        }
        self.audit(
            &t,
            kind::CONSENT_REVOKED,
            Some(user),
            meta,
            json!({"client_id": client_id, "consent": forgotten, "sessions": sessions}),
        )
        .await
    }
}

fn unavailable(auth: &Authorization, e: IdentityError) -> AuthorizeRefusal {
    tracing::warn!(error = %e, "cannot decide consent");
    auth.refuse("temporarily_unavailable", "try again shortly")
}
