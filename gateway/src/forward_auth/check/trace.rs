//! What `keygate explain` shows of a check: each step with its outcome and what it looked
//! at. The live checks carry a [`Trace::off`], which keeps nothing and builds no text.

use crate::forward_auth::request::Inbound;
use crate::forward_auth::requirements::Requirements;
use crate::identity::Identity;
use chrono::{DateTime, Utc};

/// How a step of a check came out, as `keygate explain` shows it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step held.
    Pass,
    /// The step decided a denial (or would have, had an earlier one not).
    Fail,
    /// The step did not apply (the route does not ask for it, the tenant has no lists).
    Skip,
}

/// One step of a check with its outcome and what it looked at (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// The step (`requirements`, `tenant`, `network`, `credential`, `identity`, or a
    /// requirement key such as `role`).
    pub step: String,
    /// How it came out.
    pub outcome: Outcome,
    /// What it looked at.
    pub detail: String,
}

/// Where a check tells its steps: nowhere on the hot path, a list for `keygate explain`.
/// The detail text is built only when the steps are kept.
#[derive(Debug, Default)]
pub struct Trace {
    steps: Option<Vec<Step>>,
}

impl Trace {
    /// A trace that keeps nothing (the live checks).
    pub fn off() -> Self {
        Self { steps: None }
    }

    /// A trace that keeps every step.
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
        }
    }

    pub(super) fn note(
        &mut self,
        step: &'static str,
        outcome: Outcome,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(steps) = &mut self.steps {
            steps.push(Step {
                step: step.to_owned(),
                outcome,
                detail: detail(),
            });
        }
    }

    /// The steps kept, in order.
    pub fn into_steps(self) -> Vec<Step> {
        self.steps.unwrap_or_default()
    }
}

/// `a,b,c`, or `none`.
fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(",")
    }
}

/// A client address as explained.
pub(super) fn shown(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

/// A proven identity as explained, and where it came from (`cache`, `resolver`).
pub(super) fn described(id: &Identity, source: &str) -> String {
    format!(
        "{} ({:?}, from the {source}); roles {}; amr {}; acr {}",
        id.subject,
        id.kind,
        list(id.roles.iter().map(String::as_str)),
        list(id.amr.iter().map(String::as_str)),
        id.acr.as_deref().unwrap_or("none"),
    )
}

/// What a requirement check compared, for `keygate explain`.
pub(super) fn requirement_detail(
    key: &str,
    req: &Requirements,
    inbound: &Inbound<'_>,
    id: &Identity,
    now: DateTime<Utc>,
) -> String {
    match key {
        "method" => format!(
            "asked {}; the request's is {}",
            list(req.methods.iter().map(axum::http::Method::as_str)),
            inbound.method.as_ref().map_or("unknown", |m| m.as_str())
        ),
        "role" => format!(
            "any of {}; held {}",
            list(req.any_role.iter().map(String::as_str)),
            list(id.roles.iter().map(String::as_str))
        ),
        "perm" => format!(
            "all of {}; held {}",
            list(req.permissions.iter().map(String::as_str)),
            list(id.permissions.iter().map(String::as_str))
        ),
        "scope" => format!(
            "all of {}; granted {}",
            list(req.scopes.iter().map(String::as_str)),
            list(id.scopes.iter().map(String::as_str))
        ),
        "mfa" => format!("amr {}", list(id.amr.iter().map(String::as_str))),
        "acr" => format!(
            "any of {}; reached {}",
            list(req.acr_values.iter().map(String::as_str)),
            id.acr.as_deref().unwrap_or("none")
        ),
        "max_age" => match id.auth_time {
            Some(t) => format!(
                "at most {} s; authenticated {} s ago",
                req.max_age.unwrap_or_default(),
                now.signed_duration_since(t).num_seconds()
            ),
            None => format!(
                "at most {} s; no authentication time",
                req.max_age.unwrap_or_default()
            ),
        },
        _ => String::new(),
    }
}
