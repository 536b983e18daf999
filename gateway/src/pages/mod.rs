//! Server-rendered sign-in pages, usable without JavaScript: sign in (with its second step,
//! a TOTP or backup code, or the enrolment of a first authenticator where the tenant
//! requires one), sign up, verify email, forgot / reset password, the emailed unlock of a
//! locked account, sign out, the account page (sessions, factors, backup codes, linked
//! identities and the password, each with its form), step-up (`second_factor`), and the handoff
//! path `/.keygate/callback` that gives apps on other hosts their cookie
//! (`handoff`). Every form carries a CSRF token ([`csrf`]); the session cookie is
//! `__Host-keygate_session` (Secure, HttpOnly, SameSite=Lax, Path=/), the device cookie
//! `__Host-keygate_device`. Tenant name
//! and colours come from the Tenant spec; colours travel in `/t/{tenant}/theme.css` so the
//! CSP can forbid inline styles.
//!
//! The pages own their cookie settings, CSRF and templates ([`PagesState`]) and
//! reach tenants and the account workflows only through the identity service (the
//! workflows behind the [`AccountFlows`] seam, so tests can stand one in).
//!
//! One module per group of pages; each page is a [`Page`] (template and title) rendered
//! through `Screen`, which adds the CSRF token and the common context. A refused workflow
//! is shown by `refusal`, the one place a [`FlowError`] becomes a field, a message and a
//! status.

mod account;
mod account_actions;
pub(crate) mod authorize;
mod consent;
pub mod csrf;
mod device;
pub(crate) mod end_session;
mod handoff;
mod recovery;
mod second_factor;
mod signin;
mod signup;
mod sso;
mod theme;
mod unlock;

use crate::AppState;
use crate::cookies::{CookieMode, SessionCookie};
use crate::error::ApiError;
use crate::identity::{AccountFlows, FlowError, IdentityService, LiveTenant};
use crate::return_url::safe_return_url;
use crate::tenant_path::TenantName;
use axum::Router;
use axum::extract::{FromRef, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use keygate_core::crypto::envelope::MacPurpose;
use keygate_core::tenant_settings::Registration;
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The compiled page templates.
#[derive(Debug)]
pub struct Templates(Environment<'static>);

impl Templates {
    /// Loads the templates compiled into the binary.
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("macros.html", include_str!("templates/macros.html")),
            ("signin.html", include_str!("templates/signin.html")),
            ("signup.html", include_str!("templates/signup.html")),
            ("forgot.html", include_str!("templates/forgot.html")),
            ("reset.html", include_str!("templates/reset.html")),
            ("verify.html", include_str!("templates/verify.html")),
            ("signout.html", include_str!("templates/signout.html")),
            ("message.html", include_str!("templates/message.html")),
            ("account.html", include_str!("templates/account.html")),
            ("locked.html", include_str!("templates/locked.html")),
            ("unlock.html", include_str!("templates/unlock.html")),
            (
                "second_factor.html",
                include_str!("templates/second_factor.html"),
            ),
            (
                "backup_codes.html",
                include_str!("templates/backup_codes.html"),
            ),
            ("device.html", include_str!("templates/device.html")),
            ("consent.html", include_str!("templates/consent.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                // Covered by the page tests; a broken template renders as a 500 with this logged.
                tracing::error!(template = name, error = %e, "page template does not compile");
            }
        }
        Self(env)
    }

    fn render(&self, name: &str, status: StatusCode, ctx: Value) -> Response {
        match self.0.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => ApiError::Internal(format!("template {name}: {e}")).into_response(),
        }
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// What the pages hold: the door to tenants and workflows, cookie settings, CSRF and the
/// compiled templates.
#[derive(Debug)]
pub struct PagesState {
    identity: IdentityService,
    flows: Arc<dyn AccountFlows>,
    public_url: Arc<str>,
    cookies: CookieMode,
    session_cookies: crate::cookies::SessionCookies,
    csrf: csrf::Csrf,
    templates: Templates,
}

impl PagesState {
    /// Pages over `identity`, whose workflows are `flows` (the service itself in production),
    /// with cookies named and flagged by `cookies`.
    pub fn new(
        identity: IdentityService,
        flows: Arc<dyn AccountFlows>,
        public_url: Arc<str>,
        cookies: CookieMode,
    ) -> Self {
        Self {
            csrf: csrf::Csrf::new(
                identity.master_keys().mac(MacPurpose::PageForms).clone(),
                identity.clock().clone(),
                cookies,
            ),
            session_cookies: crate::cookies::SessionCookies::new(cookies, &public_url),
            identity,
            flows,
            public_url,
            cookies,
            templates: Templates::new(),
        }
    }

    /// The session cookie of tenant `t` (host-only, or shared with its `sessions.cookieDomain`).
    fn session_cookie(&self, t: &LiveTenant) -> SessionCookie {
        self.session_cookies
            .of(t.name(), t.settings.sessions.cookie_domain.as_deref())
    }

    /// The live tenant by URL segment; a missing or disabled one is a 404.
    async fn live(&self, name: &str) -> Result<Arc<LiveTenant>, ApiError> {
        Ok(self.identity.tenant(name).await?)
    }
}

impl FromRef<AppState> for Arc<PagesState> {
    fn from_ref(state: &AppState) -> Self {
        state.pages.clone()
    }
}

/// The state page handlers take.
type Pages = State<Arc<PagesState>>;

/// How a refused workflow is shown on any page: the field the message goes beside, the
/// message (never revealing whether an account exists) and the status.
fn refusal(e: FlowError) -> (&'static str, String, StatusCode) {
    let (field, text, status) = match e {
        FlowError::InvalidCredentials => (
            "password",
            "The email address or password is not right.",
            StatusCode::UNAUTHORIZED,
        ),
        FlowError::Locked(_) => (
            "email",
            "Too many attempts. Wait a few minutes and try again.",
            StatusCode::TOO_MANY_REQUESTS,
        ),
        FlowError::EmailNotVerified => (
            "email",
            "Verify your email address first: follow the link we sent you.",
            StatusCode::FORBIDDEN,
        ),
        FlowError::RegistrationClosed => (
            "email",
            "This organisation does not take new registrations.",
            StatusCode::FORBIDDEN,
        ),
        FlowError::PasswordSignInDisabled => (
            "email",
            "This organisation does not offer sign-in with a password.",
            StatusCode::FORBIDDEN,
        ),
        FlowError::NetworkDenied => (
            "email",
            "This organisation does not allow sign-in from your network.",
            StatusCode::FORBIDDEN,
        ),
        FlowError::PasswordRejected(why) => {
            return ("password", why, StatusCode::UNPROCESSABLE_ENTITY);
        }
        FlowError::Unusable(why) => {
            let text = format!("This cannot be used: {why}.");
            return ("email", text, StatusCode::UNPROCESSABLE_ENTITY);
        }
        FlowError::InvalidLink => (
            "token",
            "This link is no longer valid.",
            StatusCode::BAD_REQUEST,
        ),
        FlowError::Unavailable => (
            "email",
            "This is not available right now. Try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        FlowError::InvalidCode => (
            "code",
            "That code is not right, or it was used already. Enter the current code from your app, or a backup code.",
            StatusCode::UNAUTHORIZED,
        ),
        FlowError::SignInExpired => (
            "code",
            "This sign-in expired. Sign in again.",
            StatusCode::UNAUTHORIZED,
        ),
        FlowError::MfaDisabled => (
            "code",
            "This organisation does not offer a second factor.",
            StatusCode::FORBIDDEN,
        ),
        FlowError::Busy(_) => (
            "email",
            "Too many people are signing in right now. Try again in a few seconds.",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        FlowError::MailUnavailable => (
            "email",
            "This service cannot send email, so this is not available. Ask its administrator to configure email (SMTP).",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        FlowError::Upstream(r) => {
            let (status, _, _) = crate::error::federation_parts(&r);
            return ("email", r.to_string(), status);
        }
        FlowError::AlreadyLinked => (
            "email",
            "That account from your identity provider is already linked to another account, or this account is already linked at that provider.",
            StatusCode::CONFLICT,
        ),
        FlowError::UnknownProvider => (
            "email",
            "This organisation has no such sign-in option.",
            StatusCode::NOT_FOUND,
        ),
    };
    (field, text.to_owned(), status)
}

/// [`form_page`] for one page, as a handler.
macro_rules! form {
    ($page:expr, $prefill:expr) => {
        |s: Pages, p: TenantName, q: RawQuery, j: CookieJar| form_page($page, $prefill, s, p, q, j)
    };
}

/// The pages, the stylesheet and the per-tenant theme.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(authorize::router())
        .merge(consent::router())
        .merge(end_session::router())
        .merge(device::router())
        .route("/assets/keygate.css", get(theme::stylesheet))
        .route("/t/{tenant}/theme.css", get(theme::theme))
        .route(
            "/t/{tenant}/signin",
            get(signin::signin_page).post(signin::signin_submit),
        )
        // POST /login is the JSON sign-in (routes::login); it sends form posts on to /signin with a 307.
        .route("/t/{tenant}/login", get(signin::signin_page))
        .route("/t/{tenant}/account", get(account::account))
        .route(
            "/t/{tenant}/account/{action}",
            axum::routing::post(account_actions::submit),
        )
        .route(crate::return_url::HANDOFF_PATH, get(handoff::callback))
        .route(
            "/t/{tenant}/signup",
            get(form!(signup::SIGN_UP, Prefill::ReturnUrl)).post(signup::signup_submit),
        )
        .route(
            "/t/{tenant}/forgot-password",
            get(form!(recovery::FORGOT, Prefill::Nothing)).post(recovery::forgot_submit),
        )
        .route(
            "/t/{tenant}/reset-password",
            get(form!(recovery::RESET, Prefill::Token)).post(recovery::reset_submit),
        )
        .route(
            "/t/{tenant}/locked",
            get(form!(unlock::LOCKED, Prefill::Nothing)).post(unlock::locked_submit),
        )
        .route(
            "/t/{tenant}/unlock",
            // A button, not an action on GET, for the same reason as verify-email below.
            get(form!(unlock::UNLOCK, Prefill::Token)).post(unlock::unlock_submit),
        )
        .route(
            "/t/{tenant}/verify-email",
            // A button, not an action on GET: mail scanners that open links must not spend them.
            get(form!(signup::VERIFY, Prefill::Token)).post(signup::verify_submit),
        )
        .route(
            "/t/{tenant}/signout",
            get(form!(signin::SIGN_OUT, Prefill::ReturnUrl)).post(signin::signout_submit),
        )
        .route(
            "/t/{tenant}/mfa",
            get(second_factor::mfa_page).post(second_factor::mfa_submit),
        )
        .route(
            "/t/{tenant}/step-up",
            get(second_factor::step_up_page).post(second_factor::step_up_submit),
        )
        .route("/t/{tenant}/sso/{provider}/start", get(sso::start))
        .route("/t/{tenant}/sso/{provider}/callback", get(sso::callback))
        .route("/t/{tenant}/sso/{provider}/acs", post(sso::acs))
        .route(
            "/t/{tenant}/sso/{provider}/saml/metadata",
            get(sso::saml_metadata),
        )
}

fn query_param(raw: &Option<String>, key: &str) -> Option<String> {
    raw.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

/// The return URL if it is on the tenant's allow-list (or the gateway's own); else nothing.
fn checked_rd(state: &PagesState, tenant: &LiveTenant, rd: Option<&str>) -> Option<String> {
    rd.and_then(|rd| {
        safe_return_url(
            rd,
            &tenant.settings.redirects.allowed_origins,
            &state.public_url,
        )
    })
}

/// What a form page fills in from its URL when it is opened.
#[derive(Clone, Copy, Debug)]
enum Prefill {
    /// `rd`, the return URL after signing in, if it is allowed.
    ReturnUrl,
    /// `token`, from an emailed link.
    Token,
    /// Nothing.
    Nothing,
}

/// The GET handler of a form page: the empty form with what `prefill` takes from the URL.
async fn form_page(
    page: Page,
    prefill: Prefill,
    State(state): Pages,
    TenantName(name): TenantName,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = state.live(&name).await?;
    let extra = match prefill {
        Prefill::ReturnUrl => {
            let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
            context! { rd, email => "" }
        }
        Prefill::Token => context! { token => query_param(&q, "token").unwrap_or_default() },
        Prefill::Nothing => context! { email => "" },
    };
    Ok(page.on(&state, &tenant).fresh(jar, extra).await)
}

/// Field errors of a form, by field name, shown beside the fields.
type Errors = BTreeMap<&'static str, String>;

/// A page: its template and title.
#[derive(Clone, Copy, Debug)]
struct Page {
    template: &'static str,
    title: &'static str,
}

impl Page {
    /// This page for `tenant`.
    fn on<'a>(self, state: &'a PagesState, tenant: &'a LiveTenant) -> Screen<'a> {
        Screen {
            state,
            tenant,
            page: self,
        }
    }
}

/// A page being answered for one tenant.
struct Screen<'a> {
    state: &'a PagesState,
    tenant: &'a LiveTenant,
    page: Page,
}

impl Screen<'_> {
    /// The form with a fresh CSRF token, `errors` beside its fields and `extra` context.
    async fn show(
        &self,
        jar: CookieJar,
        status: StatusCode,
        errors: Errors,
        extra: Value,
    ) -> Response {
        let (csrf, jar) = match self.state.csrf.issue(jar) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot issue a CSRF token");
                return ApiError::Unavailable.into_response();
            }
        };
        let tenant = self.tenant;
        let ctx = context! {
            title => self.page.title,
            csrf,
            errors,
            tenant => tenant_context(tenant),
            registration_open => tenant.settings.sign_in.registration != Registration::Closed,
            password_sign_in => tenant.settings.sign_in.password,
            min_length => tenant.settings.password_policy.min_length,
            ..extra
        };
        let mut response = self.state.templates.render(self.page.template, status, ctx);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        (jar, response).into_response()
    }

    /// The empty form (a GET).
    async fn fresh(&self, jar: CookieJar, extra: Value) -> Response {
        self.show(jar, StatusCode::OK, Errors::new(), extra).await
    }

    /// The form again, explaining that its CSRF token did not check out.
    async fn expired(&self, jar: CookieJar, status: StatusCode, extra: Value) -> Response {
        let errors = Errors::from([(
            "csrf",
            "This form expired or was opened in another browser. Please try again.".to_owned(),
        )]);
        self.show(jar, status, errors, extra).await
    }

    /// The form again, showing why the workflow refused ([`refusal`]).
    async fn refused(&self, jar: CookieJar, e: FlowError, extra: Value) -> Response {
        let retry_after = match &e {
            FlowError::Busy(after) | FlowError::Locked(after) => Some(after.as_secs().max(1)),
            FlowError::Unavailable => Some(crate::identity::OUTAGE_RETRY_AFTER.as_secs()),
            _ => None,
        };
        let (field, text, status) = refusal(e);
        let mut page = self.invalid(jar, status, field, text, extra).await;
        if let Some(secs) = retry_after {
            page.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        page
    }

    /// The form again with one field's error.
    async fn invalid(
        &self,
        jar: CookieJar,
        status: StatusCode,
        field: &'static str,
        text: impl Into<String>,
        extra: Value,
    ) -> Response {
        self.show(jar, status, Errors::from([(field, text.into())]), extra)
            .await
    }

    /// A plain message page (no form), with an optional link onwards.
    fn message(
        &self,
        title: &str,
        text: &str,
        status: StatusCode,
        link: Option<(&str, String)>,
    ) -> Response {
        let tenant = self.tenant;
        let ctx = context! {
            title,
            message => text,
            tenant => tenant_context(tenant),
            link => link.map(|(t, h)| context! { text => t, href => h }),
        };
        self.state.templates.render("message.html", status, ctx)
    }
}

/// What every page shows of its tenant: URL name, display name and the logo
/// (`branding.logoUrl`) when it is an `https://` URL (the pages' CSP loads images over
/// https only, and a page served over TLS would not show an `http://` one). The templates
/// escape every value; the logo's `alt` is the display name.
fn tenant_context(tenant: &LiveTenant) -> Value {
    let logo_url =
        tenant.settings.branding.logo_url.as_deref().filter(|u| {
            url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" && u.host().is_some())
        });
    context! {
        name => tenant.name(),
        display_name => tenant.display_name(),
        logo_url,
    }
}

/// Whether the submitted CSRF token matches the browser's binding cookie.
async fn csrf_ok(state: &PagesState, jar: &CookieJar, token: &str) -> Result<bool, ApiError> {
    Ok(state.csrf.check(jar, token))
}

/// The email-and-password form (sign in, sign up; forgot password uses only the email).
#[derive(Deserialize, Default)]
struct EmailPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    rd: String,
    /// The app host's nonce hash of a handoff in progress (sign-in only).
    #[serde(default)]
    handoff: String,
    /// A link token from an upstream sign-in to claim once signed in (sign-in only).
    #[serde(default)]
    link: String,
}

/// A form that carries a token from an emailed link (verify email, reset password).
#[derive(Deserialize, Default)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_field_a_message_and_a_client_or_outage_status() {
        let cases = [
            (FlowError::InvalidCredentials, "password", 401),
            (
                FlowError::Locked(std::time::Duration::from_secs(60)),
                "email",
                429,
            ),
            (FlowError::EmailNotVerified, "email", 403),
            (FlowError::RegistrationClosed, "email", 403),
            (FlowError::PasswordSignInDisabled, "email", 403),
            (
                FlowError::PasswordRejected("too short".into()),
                "password",
                422,
            ),
            (
                FlowError::Unusable("email is not a valid address".into()),
                "email",
                422,
            ),
            (FlowError::InvalidLink, "token", 400),
            (FlowError::Unavailable, "email", 503),
            (FlowError::MailUnavailable, "email", 503),
            (FlowError::InvalidCode, "code", 401),
            (FlowError::SignInExpired, "code", 401),
            (FlowError::MfaDisabled, "code", 403),
            (
                FlowError::Busy(std::time::Duration::from_secs(2)),
                "email",
                503,
            ),
        ];
        for (error, field, status) in cases {
            let (f, text, s) = refusal(error.clone());
            assert_eq!((f, s.as_u16()), (field, status), "{error:?}");
            assert!(!text.is_empty(), "{error:?}");
        }
        let (_, text, _) = refusal(FlowError::PasswordRejected("too short".into()));
        assert_eq!(text, "too short", "the policy's reason is shown as it is");
    }
}
