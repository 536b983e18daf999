//! The second factor in the pages: the second step of a password sign-in (the form the
//! sign-in answers with, posted to `/t/{tenant}/mfa`; an enrolment first where the tenant
//! requires a factor and the person has none) and step-up (`/t/{tenant}/step-up`, where
//! forward-auth sends a browser whose session is too weak or too old for a route: a code,
//! the password, or enrolling a first authenticator on the spot; then back to the route,
//! through the handoff when it is on another host).
//!
//! The pending sign-in's token and an enrolment's key travel as hidden fields of the form
//! (CSRF-protected, `no-store`), never in a URL.

use super::handoff::{checked_handoff, onwards};
use super::{Errors, Page, Pages, PagesState, checked_rd, csrf_ok, query_param, refusal};
use crate::error::ApiError;
use crate::identity::{
    ACR_PASSWORD, BackupCodes, BrowserSignIn, DEVICE_TOKEN_TTL, FlowError, LiveTenant, Principal,
    ProviderButton, StepUpOffer, StepUpProof, TotpEnrolment, acr_satisfies,
};
use crate::meta::Meta;
use crate::return_url::signin_url;
use crate::tenant_path::TenantName;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::{Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;

const SECOND_FACTOR: Page = Page {
    template: "second_factor.html",
    title: "Two-step verification",
};
const STEP_UP: Page = Page {
    template: "second_factor.html",
    title: "Confirm it is you",
};
const BACKUP_CODES: Page = Page {
    template: "backup_codes.html",
    title: "Save your backup codes",
};
const QR_PREFIX: &str = "data:image/svg+xml;base64,";

/// The fields of the second-factor and step-up forms.
#[derive(Deserialize, Default)]
pub(super) struct SecondFactorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
    #[serde(default)]
    handoff: String,
    #[serde(default)]
    mfa_token: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    factor_id: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    qr: String,
    #[serde(default)]
    acr_values: String,
    #[serde(default)]
    max_age: String,
}

/// What the form asks for, and the hidden fields that carry its state.
struct Ask {
    what: &'static str,
    intro: &'static str,
    hidden: BTreeMap<&'static str, String>,
    qr: Option<String>,
    secret: Option<String>,
    /// The upstream providers a person without a password steps up through.
    providers: Vec<Value>,
}

impl Ask {
    fn new(what: &'static str, intro: &'static str) -> Self {
        Self {
            what,
            intro,
            hidden: BTreeMap::new(),
            qr: None,
            secret: None,
            providers: Vec::new(),
        }
    }

    /// A fresh sign-in at one of `providers` (a link each, starting a step-up that comes
    /// back to `rd`).
    fn upstream(mut self, providers: Vec<ProviderButton>, rd: Option<&str>) -> Self {
        self.providers = providers
            .into_iter()
            .map(|p| {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("step_up", "1");
                if let Some(rd) = rd {
                    query.append_pair("rd", rd);
                }
                context! { name => p.name, query => query.finish(), label => p.display_name }
            })
            .collect();
        self
    }

    /// Shows an enrolment: its QR code and key, carried along for a second try.
    fn enrolling(mut self, qr: Option<String>, secret: String) -> Self {
        if let Some(qr) = &qr {
            self.hidden.insert("qr", qr.clone());
        }
        self.hidden.insert("secret", secret.clone());
        self.qr = qr;
        self.secret = Some(secret);
        self
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.hidden.insert(name, value);
        }
        self
    }

    fn context(self, action: String, rd: Option<String>, handoff: Option<String>) -> Value {
        context! {
            ask => self.what,
            intro => self.intro,
            hidden => self.hidden,
            qr => self.qr,
            secret => self.secret,
            providers => self.providers,
            action,
            rd,
            handoff,
        }
    }
}

/// The enrolment's QR code as an image the pages' CSP admits (`img-src data:`).
fn qr_data_uri(e: &TotpEnrolment) -> String {
    format!("{QR_PREFIX}{}", STANDARD.encode(e.qr_svg.as_bytes()))
}

/// A QR image carried back by the form, if it is one.
fn checked_qr(raw: &str) -> Option<String> {
    raw.strip_prefix(QR_PREFIX)
        .filter(|b| STANDARD.decode(b).is_ok())
        .map(|_| raw.to_owned())
}

/// A base32 key carried back by the form, if it is one.
fn checked_secret(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect()
}

/// A refusal with no form to show again: the message and a way back to signing in.
fn dead_end(state: &PagesState, tenant: &LiveTenant, e: FlowError) -> Response {
    let (_, text, status) = refusal(e);
    let back = signin_url(&state.public_url, tenant.name(), None);
    SECOND_FACTOR.on(state, tenant).message(
        "Two-step verification",
        &text,
        status,
        Some(("Back to sign in", back)),
    )
}

/// What the sign-in answers after a right password when a second factor is needed: the
/// code form, or first the enrolment of an authenticator.
pub(super) async fn challenge(
    state: &PagesState,
    tenant: &LiveTenant,
    jar: CookieJar,
    meta: &crate::identity::RequestMeta,
    (token, enrol): (String, bool),
    rd: Option<String>,
    handoff: Option<String>,
) -> Response {
    let screen = SECOND_FACTOR.on(state, tenant);
    let ask = if enrol {
        match state
            .flows
            .begin_sign_in_enrolment(tenant, &token, meta)
            .await
        {
            Ok(e) => Ask::new("enrol", "This organisation requires two-step verification.")
                .enrolling(Some(qr_data_uri(&e)), e.secret),
            Err(e) => return dead_end(state, tenant, e),
        }
    } else {
        Ask::new("code", "")
    };
    let action = format!("/t/{}/mfa", tenant.name());
    let ctx = ask.with("mfa_token", token).context(action, rd, handoff);
    screen.fresh(jar, ctx).await
}

/// `GET /t/{tenant}/mfa`: the code form exists only as the answer to a sign-in, so a
/// browser that opens the address is sent to sign in.
pub(super) async fn mfa_page(
    State(state): Pages,
    TenantName(name): TenantName,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    let target = signin_url(&state.public_url, tenant.name(), rd.as_deref());
    Ok(Redirect::to(&target).into_response())
}

/// `POST /t/{tenant}/mfa`: the second step of a sign-in.
pub(super) async fn mfa_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<SecondFactorForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = SECOND_FACTOR.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let handoff = checked_handoff(Some(form.handoff.clone()));
    let enrolling = !form.secret.is_empty();
    let ask = if enrolling {
        Ask::new("enrol", "This organisation requires two-step verification.")
            .enrolling(checked_qr(&form.qr), checked_secret(&form.secret))
    } else {
        Ask::new("code", "")
    };
    let action = format!("/t/{}/mfa", tenant.name());
    let again =
        ask.with("mfa_token", form.mfa_token.clone())
            .context(action, rd.clone(), handoff.clone());
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    if form.code.trim().is_empty() {
        let errors = Errors::from([("code", "Enter the code.".to_owned())]);
        return Ok(screen
            .show(jar, StatusCode::UNPROCESSABLE_ENTITY, errors, again)
            .await);
    }
    let done = state
        .flows
        .complete_sign_in(&tenant, &form.mfa_token, form.code.trim(), &meta)
        .await;
    let (session, codes) = match done {
        Ok(BrowserSignIn::Session(session, codes)) => (session, codes),
        Ok(BrowserSignIn::SecondFactor { .. }) => {
            return Ok(screen.refused(jar, FlowError::SignInExpired, again).await);
        }
        Err(e) => return Ok(screen.refused(jar, e, again).await),
    };
    let cookie = state
        .session_cookie(&tenant)
        .issue(session.cookie_value.clone(), session.max_age);
    let mut jar = jar.add(cookie);
    if let Some(device) = session.device_cookie {
        let max_age = DEVICE_TOKEN_TTL.to_std().unwrap_or_default();
        jar = jar.add(state.cookies.device(device, max_age));
    }
    if let Some(codes) = codes {
        let next = continue_url(&state, &tenant, rd.as_deref(), handoff.as_deref());
        return Ok((jar, show_codes(&state, &tenant, codes, next)).into_response());
    }
    let next = onwards(&state, &tenant, &session.cookie_value, rd, handoff).await;
    Ok((jar, next).into_response())
}

/// Where "Continue" after the backup codes leads: the sign-in page, which sends a signed-in
/// browser on to `rd` (through the handoff on another host).
fn continue_url(
    state: &PagesState,
    tenant: &LiveTenant,
    rd: Option<&str>,
    handoff: Option<&str>,
) -> String {
    let mut next = signin_url(&state.public_url, tenant.name(), rd);
    if let Some(h) = handoff {
        next.push(if rd.is_some() { '&' } else { '?' });
        next.push_str("handoff=");
        next.push_str(h);
    }
    next
}

fn show_codes(
    state: &PagesState,
    tenant: &LiveTenant,
    codes: BackupCodes,
    next: String,
) -> Response {
    let ctx = context! {
        title => BACKUP_CODES.title,
        tenant => super::tenant_context(tenant),
        codes => codes.0,
        next,
    };
    let mut response = state
        .templates
        .render(BACKUP_CODES.template, StatusCode::OK, ctx);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Whether `acr_values` (space-separated, from forward-auth's challenge) ask for more than a
/// password.
fn wants_second_factor(acr_values: &str) -> bool {
    acr_values
        .split_whitespace()
        .any(|want| !acr_satisfies(Some(ACR_PASSWORD), want))
}

/// The person signed in on this browser, if any, and the session cookie's value.
pub(super) async fn signed_in(
    state: &PagesState,
    tenant: &LiveTenant,
    jar: &CookieJar,
) -> Option<(Principal, String)> {
    let cookie = jar
        .get(state.session_cookie(tenant).name())?
        .value()
        .to_owned();
    let principal = state
        .identity
        .resolve_from_session_cookie(tenant.name(), &cookie)
        .await
        .ok()?;
    Some((principal, cookie))
}

const STEP_UP_INTRO: &str = "This page needs you to confirm it is you.";
const UPSTREAM_INTRO: &str = "This page needs you to confirm it is you: sign in again at your organisation's identity provider.";

/// `GET /t/{tenant}/step-up?rd&acr_values&max_age`: asks the signed-in person for what
/// their account can prove (a browser not signed in is sent to sign in).
pub(super) async fn step_up_page(
    State(state): Pages,
    TenantName(name): TenantName,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    let Some((principal, _)) = signed_in(&state, &tenant, &jar).await else {
        let target = signin_url(&state.public_url, tenant.name(), rd.as_deref());
        return Ok(Redirect::to(&target).into_response());
    };
    let acr_values = query_param(&q, "acr_values").unwrap_or_default();
    let max_age = query_param(&q, "max_age")
        .filter(|m| m.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_default();
    let screen = STEP_UP.on(&state, &tenant);
    let offer = match state.identity.step_up_offer(&principal).await {
        Ok(offer) => offer,
        Err(e) => return Ok(dead_end(&state, &tenant, e.into())),
    };
    let ask = match offer {
        StepUpOffer::Code => Ask::new("code", STEP_UP_INTRO),
        StepUpOffer::Password { can_enrol: true }
        | StepUpOffer::Upstream {
            can_enrol: true, ..
        } if wants_second_factor(&acr_values) => {
            match state.identity.begin_totp_enrolment(&principal, None).await {
                Ok(e) => Ask::new("enrol", "This page needs two-step verification.")
                    .enrolling(Some(qr_data_uri(&e)), e.secret.clone())
                    .with("factor_id", e.factor_id.to_string()),
                Err(e) => return Ok(dead_end(&state, &tenant, e.into())),
            }
        }
        StepUpOffer::Password { .. } => Ask::new("password", STEP_UP_INTRO),
        StepUpOffer::Upstream { providers, .. } => {
            Ask::new("upstream", UPSTREAM_INTRO).upstream(providers, rd.as_deref())
        }
    };
    let action = format!("/t/{}/step-up", tenant.name());
    let ctx = ask
        .with("acr_values", acr_values)
        .with("max_age", max_age)
        .context(action, rd, None);
    Ok(screen.fresh(jar, ctx).await)
}

/// `POST /t/{tenant}/step-up`: raises the browser's session, then back to `rd`.
pub(super) async fn step_up_submit(
    State(state): Pages,
    TenantName(name): TenantName,
    Meta(meta): Meta,
    jar: CookieJar,
    form: Result<Form<SecondFactorForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let screen = STEP_UP.on(&state, &tenant);
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let enrolling = !form.factor_id.is_empty();
    let by_password = !enrolling && form.code.is_empty() && !form.password.is_empty();
    let ask = if enrolling {
        Ask::new("enrol", "This page needs two-step verification.")
            .enrolling(checked_qr(&form.qr), checked_secret(&form.secret))
            .with("factor_id", form.factor_id.clone())
    } else if by_password {
        Ask::new("password", STEP_UP_INTRO)
    } else {
        Ask::new("code", STEP_UP_INTRO)
    };
    let action = format!("/t/{}/step-up", tenant.name());
    let again = ask
        .with("acr_values", form.acr_values.clone())
        .with("max_age", form.max_age.clone())
        .context(action, rd.clone(), None);
    if !csrf_ok(&state, &jar, &form.csrf).await? {
        return Ok(screen.expired(jar, StatusCode::FORBIDDEN, again).await);
    }
    let Some((principal, cookie)) = signed_in(&state, &tenant, &jar).await else {
        let target = signin_url(&state.public_url, tenant.name(), rd.as_deref());
        return Ok(Redirect::to(&target).into_response());
    };
    let result = if enrolling {
        match form.factor_id.parse() {
            Ok(factor) => {
                state
                    .identity
                    .step_up_by_enrolling(&principal, factor, form.code.trim(), &meta)
                    .await
            }
            Err(_) => Err(crate::identity::IdentityError::NotFound),
        }
    } else if by_password {
        let proof = StepUpProof::Password(form.password.clone());
        state.identity.step_up(&principal, proof, &meta).await
    } else if form.code.trim().is_empty() {
        let errors = Errors::from([("code", "Enter the code.".to_owned())]);
        return Ok(screen
            .show(jar, StatusCode::UNPROCESSABLE_ENTITY, errors, again)
            .await);
    } else {
        let proof = StepUpProof::Code(form.code.trim().to_owned());
        state.identity.step_up(&principal, proof, &meta).await
    };
    match result {
        Ok(stepped) => match stepped.backup_codes {
            Some(codes) => {
                let next = continue_url(&state, &tenant, rd.as_deref(), None);
                Ok(show_codes(&state, &tenant, codes, next))
            }
            None => Ok(onwards(&state, &tenant, &cookie, rd, None).await),
        },
        Err(e) => {
            let e = FlowError::from(e);
            let (field, text, status) = refusal(e);
            Ok(screen.invalid(jar, status, field, text, again).await)
        }
    }
}
