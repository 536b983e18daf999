//! Audit records: what happened, to which tenant, by which (pseudonymous) account.

use crate::ids::{AuditId, TenantId, UserId};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One audit event; carries no email or other PII (the user id is the pseudonym).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Row id (time-ordered).
    pub id: AuditId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Stable event label, e.g. `login.failed`.
    pub kind: String,
    /// Acting account, if any.
    pub actor_user_id: Option<UserId>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id for correlation with logs.
    pub request_id: Option<String>,
    /// Event details (ids, reasons; never emails, passwords or tokens).
    #[sqlx(json)]
    pub data: Value,
}

/// An audit event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    /// Tenant.
    pub tenant_id: TenantId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Stable event label.
    pub kind: String,
    /// Acting account.
    pub actor_user_id: Option<UserId>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Details without PII.
    pub data: Value,
}

/// Which audit events to return; every field narrows, `None` does not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this actor.
    pub actor_user_id: Option<UserId>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Strictly before (page backwards by passing the oldest `at` seen).
    pub until: Option<DateTime<Utc>>,
}
