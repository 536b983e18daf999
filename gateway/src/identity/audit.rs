//! Audit events of every security-relevant action, tenant-scoped, with request id and IP.
//! Event data carries ids and reasons only — never emails, passwords or tokens.

use super::tenants::LiveTenant;
use super::{IdentityError, IdentityService, RequestMeta};
use keygate_core::ids::UserId;
use keygate_core::store::NewAuditEvent;
use serde_json::Value;

/// Stable event labels.
pub(crate) mod kind {
    pub const SIGN_UP: &str = "account.signed_up";
    pub const EMAIL_VERIFIED: &str = "account.email_verified";
    pub const VERIFICATION_SENT: &str = "account.verification_sent";
    pub const LOGIN_OK: &str = "login.succeeded";
    pub const LOGIN_FAILED: &str = "login.failed";
    pub const LOCKED: &str = "account.locked";
    pub const DEVICE_LOCKED: &str = "device.locked";
    pub const UNLOCK_REQUESTED: &str = "account.unlock_requested";
    pub const UNLOCKED: &str = "account.unlocked";
    pub const RESET_REQUESTED: &str = "password.reset_requested";
    pub const RESET_DONE: &str = "password.reset";
    pub const PASSWORD_CHANGED: &str = "password.changed";
    pub const REFRESH_REUSE: &str = "refresh.reuse_detected";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    pub const SESSION_REVOKED: &str = "session.revoked";
    pub const SESSION_HANDOFF: &str = "session.handoff";
    pub const LOGOUT_ALL: &str = "session.logout_all";
    pub const SUSPENDED: &str = "account.suspended";
    pub const REACTIVATED: &str = "account.reactivated";
    pub const ERASED: &str = "account.erased";
    pub const BOOTSTRAPPED: &str = "account.bootstrap_admin";
    pub const INVITED: &str = "account.invited";
    pub const MFA_ENROLLED: &str = "mfa.enrolled";
    pub const MFA_REMOVED: &str = "mfa.removed";
    pub const MFA_FAILED: &str = "mfa.failed";
    pub const MFA_LOCKED: &str = "mfa.locked";
    pub const BACKUP_CODES_GENERATED: &str = "mfa.backup_codes_generated";
    pub const STEP_UP: &str = "session.stepped_up";
    pub const AUTHORIZED: &str = "oauth.authorized";
    pub const TOKEN_ISSUED: &str = "oauth.token_issued";
    pub const CODE_REUSE: &str = "oauth.code_reuse_detected";
    pub const DEVICE_DECIDED: &str = "oauth.device_decided";
    /// A person approved a client's scopes on the consent page.
    pub const CONSENT_GRANTED: &str = "oauth.consent_granted";
    /// A person denied a client on the consent page.
    pub const CONSENT_DENIED: &str = "oauth.consent_denied";
    /// A person withdrew a consent (and the client's sessions of theirs were revoked).
    pub const CONSENT_REVOKED: &str = "oauth.consent_revoked";
    /// An upstream identity was linked to the account (first sign-in, or claimed).
    pub const IDENTITY_LINKED: &str = "account.identity_linked";
    /// The person removed an upstream identity's link from their account.
    pub const IDENTITY_UNLINKED: &str = "account.identity_unlinked";
    /// The person ended every session but the one they used.
    pub const OTHER_SESSIONS_ENDED: &str = "session.others_ended";
}

impl IdentityService {
    /// Appends one event; a failure to audit fails the action.
    pub(super) async fn audit(
        &self,
        tenant: &LiveTenant,
        kind: &str,
        actor: Option<UserId>,
        meta: &RequestMeta,
        data: Value,
    ) -> Result<(), IdentityError> {
        let event = self.audit_event(tenant, kind, actor, meta, data);
        self.deps().store.append_audit(&event).await?;
        Ok(())
    }

    /// The event [`Self::audit`] appends, for a write that records it in its own transaction.
    pub(super) fn audit_event(
        &self,
        tenant: &LiveTenant,
        kind: &str,
        actor: Option<UserId>,
        meta: &RequestMeta,
        data: Value,
    ) -> NewAuditEvent {
        NewAuditEvent {
            tenant_id: tenant.row.id,
            at: self.now(),
            kind: kind.to_owned(),
            actor_user_id: actor,
            ip: meta.ip.map(|ip| ip.to_string()),
            request_id: meta.request_id.clone(),
            data,
        }
    }
}
