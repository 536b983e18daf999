//! Server-rendered sign-in pages, usable without JavaScript: sign in, sign up, verify email,
//! forgot / reset password, sign out, and the MFA and step-up prompts (placeholders until
//! the MFA issue). Every form carries a CSRF token ([`csrf`]); the session cookie is
//! `__Host-keygate_session` (Secure, HttpOnly, SameSite=Lax, Path=/). Tenant name and
//! colours come from the Tenant spec; colours travel in `/t/{tenant}/theme.css` so the CSP
//! can forbid inline styles.

pub mod csrf;
pub mod flows;

pub use flows::{AccountFlows, FlowError, SignInAttempt, SignedIn, UnwiredFlows};

use crate::AppState;
use crate::error::ApiError;
use crate::forward_auth::cache::TenantView;
use crate::forward_auth::redirect::{safe_return_url, signin_url};
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use keygate_crds::Registration;
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
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

/// The pages, the stylesheet and the per-tenant theme.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/assets/keygate.css", get(stylesheet))
        .route("/t/{tenant}/theme.css", get(theme))
        .route("/t/{tenant}/signin", get(signin_page).post(signin_submit))
        // POST /login is the JSON sign-in (routes::login); it sends form posts on to /signin with a 307.
        .route("/t/{tenant}/login", get(signin_page))
        .route("/t/{tenant}/signup", get(signup_page).post(signup_submit))
        .route(
            "/t/{tenant}/forgot-password",
            get(forgot_page).post(forgot_submit),
        )
        .route(
            "/t/{tenant}/reset-password",
            get(reset_page).post(reset_submit),
        )
        .route(
            "/t/{tenant}/verify-email",
            get(verify_page).post(verify_submit),
        )
        .route(
            "/t/{tenant}/signout",
            get(signout_page).post(signout_submit),
        )
        .route("/t/{tenant}/mfa", get(mfa_placeholder))
        .route("/t/{tenant}/step-up", get(mfa_placeholder))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("keygate.css"),
    )
}

fn is_colour(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

async fn theme(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let mut css = String::from(":root {");
    if let Some(b) = &tenant.spec.branding {
        for (var, value) in [
            ("--kg-primary", &b.primary_color),
            ("--kg-accent", &b.accent_color),
        ] {
            if let Some(c) = value.as_deref().filter(|c| is_colour(c)) {
                css.push_str(&format!(" {var}: {c};"));
            }
        }
    }
    css.push_str(" }\n");
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        css,
    )
        .into_response())
}

async fn live(state: &AppState, name: &str) -> Result<Arc<TenantView>, ApiError> {
    match state.edge.tenant(state, name).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(ApiError::TenantNotFound),
        Err(e) => Err(ApiError::Store(e)),
    }
}

fn query_param(raw: &Option<String>, key: &str) -> Option<String> {
    raw.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

/// The return URL if it is on the tenant's allow-list (or the gateway's own); else nothing.
fn checked_rd(state: &AppState, tenant: &TenantView, rd: Option<&str>) -> Option<String> {
    rd.and_then(|rd| {
        safe_return_url(
            rd,
            &tenant.spec.redirects.allowed_origins,
            &state.public_url,
        )
    })
}

/// The TCP peer's address when the server was started with connect info; never rejects.
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

type Errors = BTreeMap<&'static str, String>;

/// Renders `template` with a fresh CSRF token and the common context.
// Every argument is a distinct part of the page; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    tenant: &TenantView,
    jar: CookieJar,
    template: &str,
    title: &str,
    status: StatusCode,
    errors: Errors,
    extra: Value,
) -> Response {
    let (csrf, jar) = match csrf::issue(&state.edge, jar).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot issue a CSRF token");
            return ApiError::Unavailable.into_response();
        }
    };
    let ctx = context! {
        title,
        csrf,
        errors,
        tenant => context! { name => tenant.tenant.name.clone(), display_name => tenant.display_name() },
        registration_open => tenant.spec.sign_in.registration != Registration::Closed,
        min_length => tenant.spec.password_policy.min_length,
        ..extra
    };
    let mut response = state.edge.templates().render(template, status, ctx);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    (jar, response).into_response()
}

fn message(
    state: &AppState,
    tenant: &TenantView,
    title: &str,
    text: &str,
    status: StatusCode,
    link: Option<(&str, String)>,
) -> Response {
    let ctx = context! {
        title,
        message => text,
        tenant => context! { name => tenant.tenant.name.clone(), display_name => tenant.display_name() },
        link => link.map(|(t, h)| context! { text => t, href => h }),
    };
    state.edge.templates().render("message.html", status, ctx)
}

/// A form whose CSRF token did not check out: shown again with a plain explanation.
fn expired_form() -> Errors {
    Errors::from([(
        "csrf",
        "This form expired or was opened in another browser. Please try again.".to_owned(),
    )])
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    rd: String,
}

async fn signin_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    Ok(page(
        &state,
        &tenant,
        jar,
        "signin.html",
        "Sign in",
        StatusCode::OK,
        Errors::new(),
        context! { rd, email => "" },
    )
    .await)
}

async fn signin_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let Ok(Form(form)) = form else {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "signin.html",
            "Sign in",
            StatusCode::BAD_REQUEST,
            expired_form(),
            context! {},
        )
        .await);
    };
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let again = |errors: Errors, status: StatusCode, jar: CookieJar| {
        let (state, tenant, rd, email) = (
            state.clone(),
            tenant.clone(),
            rd.clone(),
            form.email.clone(),
        );
        async move {
            page(
                &state,
                &tenant,
                jar,
                "signin.html",
                "Sign in",
                status,
                errors,
                context! { rd, email },
            )
            .await
        }
    };
    if !csrf::check(&state.edge, &jar, &form.csrf)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(again(expired_form(), StatusCode::FORBIDDEN, jar).await);
    }
    let mut errors = Errors::new();
    if form.email.trim().is_empty() {
        errors.insert("email", "Enter your email address.".into());
    }
    if form.password.is_empty() {
        errors.insert("password", "Enter your password.".into());
    }
    if !errors.is_empty() {
        return Ok(again(errors, StatusCode::UNPROCESSABLE_ENTITY, jar).await);
    }
    let attempt = SignInAttempt {
        email: form.email.trim().to_owned(),
        password: form.password.clone(),
        ip: peer,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    match state.edge.flows.sign_in(&tenant.tenant, &attempt).await {
        Ok(signed_in) => {
            let cookie = Cookie::build((
                state.edge.cookie_mode.session_cookie(),
                signed_in.cookie_value,
            ))
            .path("/")
            .http_only(true)
            .secure(state.edge.cookie_mode.secure())
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(signed_in.max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .build();
            let target = rd.unwrap_or_else(|| {
                format!("{}/t/{}/signout", state.public_url, tenant.tenant.name)
            });
            Ok((jar.add(cookie), Redirect::to(&target)).into_response())
        }
        Err(e) => {
            let (field, text, status) = match e {
                FlowError::InvalidCredentials => (
                    "password",
                    "The email address or password is not right.",
                    StatusCode::UNAUTHORIZED,
                ),
                FlowError::Locked => (
                    "email",
                    "Too many attempts. Wait a few minutes and try again.",
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                FlowError::EmailNotVerified => (
                    "email",
                    "Verify your email address first: follow the link we sent you.",
                    StatusCode::FORBIDDEN,
                ),
                FlowError::MfaRequired => (
                    "password",
                    "This account needs a second factor, which arrives with the MFA issue.",
                    StatusCode::FORBIDDEN,
                ),
                FlowError::Unavailable => (
                    "email",
                    "Signing in is not available right now. Try again shortly.",
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                _ => (
                    "email",
                    "Signing in did not work. Try again.",
                    StatusCode::BAD_REQUEST,
                ),
            };
            Ok(again(Errors::from([(field, text.to_owned())]), status, jar).await)
        }
    }
}

#[derive(Deserialize)]
struct EmailPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    rd: String,
}

async fn signup_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    Ok(page(
        &state,
        &tenant,
        jar,
        "signup.html",
        "Create an account",
        StatusCode::OK,
        Errors::new(),
        context! { rd, email => "" },
    )
    .await)
}

async fn signup_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let form = form.map(|Form(f)| f).unwrap_or_else(|_| EmailPasswordForm {
        csrf: String::new(),
        email: String::new(),
        password: String::new(),
        rd: String::new(),
    });
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    let render = |errors: Errors, status: StatusCode, jar: CookieJar| {
        let (state, tenant, rd, email) = (
            state.clone(),
            tenant.clone(),
            rd.clone(),
            form.email.clone(),
        );
        async move {
            page(
                &state,
                &tenant,
                jar,
                "signup.html",
                "Create an account",
                status,
                errors,
                context! { rd, email },
            )
            .await
        }
    };
    if !csrf::check(&state.edge, &jar, &form.csrf)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(render(expired_form(), StatusCode::FORBIDDEN, jar).await);
    }
    let mut errors = Errors::new();
    if !form.email.contains('@') {
        errors.insert(
            "email",
            "Enter an email address like name@example.com.".into(),
        );
    }
    if (form.password.chars().count() as u32) < tenant.spec.password_policy.min_length {
        errors.insert(
            "password",
            format!(
                "Use at least {} characters.",
                tenant.spec.password_policy.min_length
            ),
        );
    }
    if !errors.is_empty() {
        return Ok(render(errors, StatusCode::UNPROCESSABLE_ENTITY, jar).await);
    }
    match state
        .edge
        .flows
        .sign_up(&tenant.tenant, form.email.trim(), &form.password)
        .await
    {
        Ok(()) => Ok(message(
            &state,
            &tenant,
            "Check your email",
            "If the address can be registered, we have sent a link to confirm it.",
            StatusCode::OK,
            Some((
                "Sign in",
                signin_url(&state.public_url, &tenant.tenant.name, rd.as_deref()),
            )),
        )),
        Err(FlowError::PasswordRejected(why)) => Ok(render(
            Errors::from([("password", why)]),
            StatusCode::UNPROCESSABLE_ENTITY,
            jar,
        )
        .await),
        Err(FlowError::RegistrationClosed) => Ok(render(
            Errors::from([(
                "email",
                "This organisation does not take new registrations.".to_owned(),
            )]),
            StatusCode::FORBIDDEN,
            jar,
        )
        .await),
        Err(_) => Ok(render(
            Errors::from([(
                "email",
                "Registration is not available right now. Try again shortly.".to_owned(),
            )]),
            StatusCode::SERVICE_UNAVAILABLE,
            jar,
        )
        .await),
    }
}

async fn forgot_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    Ok(page(
        &state,
        &tenant,
        jar,
        "forgot.html",
        "Reset your password",
        StatusCode::OK,
        Errors::new(),
        context! { email => "" },
    )
    .await)
}

async fn forgot_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
    form: Result<Form<EmailPasswordForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let email = form
        .as_ref()
        .map(|f| f.email.trim().to_owned())
        .unwrap_or_default();
    let token = form.as_ref().map(|f| f.csrf.as_str()).unwrap_or("");
    if !csrf::check(&state.edge, &jar, token)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "forgot.html",
            "Reset your password",
            StatusCode::FORBIDDEN,
            expired_form(),
            context! { email },
        )
        .await);
    }
    if !email.contains('@') {
        let errors = Errors::from([(
            "email",
            "Enter an email address like name@example.com.".to_owned(),
        )]);
        return Ok(page(
            &state,
            &tenant,
            jar,
            "forgot.html",
            "Reset your password",
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
            context! { email },
        )
        .await);
    }
    // Same answer whether or not the account exists.
    let _ = state
        .edge
        .flows
        .request_password_reset(&tenant.tenant, &email)
        .await;
    Ok(message(
        &state,
        &tenant,
        "Check your email",
        "If an account uses this address, we have sent it a link to set a new password.",
        StatusCode::OK,
        None,
    ))
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

async fn reset_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let token = query_param(&q, "token").unwrap_or_default();
    Ok(page(
        &state,
        &tenant,
        jar,
        "reset.html",
        "Choose a new password",
        StatusCode::OK,
        Errors::new(),
        context! { token },
    )
    .await)
}

async fn reset_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let Ok(Form(form)) = form else {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "reset.html",
            "Choose a new password",
            StatusCode::BAD_REQUEST,
            expired_form(),
            context! {},
        )
        .await);
    };
    let token = form.token.clone();
    if !csrf::check(&state.edge, &jar, &form.csrf)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "reset.html",
            "Choose a new password",
            StatusCode::FORBIDDEN,
            expired_form(),
            context! { token },
        )
        .await);
    }
    match state
        .edge
        .flows
        .reset_password(&tenant.tenant, &form.token, &form.password)
        .await
    {
        Ok(()) => Ok(message(
            &state,
            &tenant,
            "Password changed",
            "Your password is set. Sign in with it now.",
            StatusCode::OK,
            Some((
                "Sign in",
                signin_url(&state.public_url, &tenant.tenant.name, None),
            )),
        )),
        Err(FlowError::PasswordRejected(why)) => Ok(page(
            &state,
            &tenant,
            jar,
            "reset.html",
            "Choose a new password",
            StatusCode::UNPROCESSABLE_ENTITY,
            Errors::from([("password", why)]),
            context! { token },
        )
        .await),
        Err(FlowError::InvalidLink) => Ok(message(
            &state,
            &tenant,
            "Link expired",
            "This link is no longer valid. Ask for a new one.",
            StatusCode::BAD_REQUEST,
            Some((
                "Reset your password",
                format!(
                    "{}/t/{}/forgot-password",
                    state.public_url, tenant.tenant.name
                ),
            )),
        )),
        Err(_) => Ok(message(
            &state,
            &tenant,
            "Try again later",
            "Changing passwords is not available right now.",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        )),
    }
}

async fn verify_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    // A button, not an action on GET: mail scanners that open links must not spend them.
    let token = query_param(&q, "token").unwrap_or_default();
    Ok(page(
        &state,
        &tenant,
        jar,
        "verify.html",
        "Verify your email",
        StatusCode::OK,
        Errors::new(),
        context! { token },
    )
    .await)
}

async fn verify_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let (token, csrf_token) = form.map(|Form(f)| (f.token, f.csrf)).unwrap_or_default();
    if !csrf::check(&state.edge, &jar, &csrf_token)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "verify.html",
            "Verify your email",
            StatusCode::FORBIDDEN,
            expired_form(),
            context! { token },
        )
        .await);
    }
    let signin = Some((
        "Sign in",
        signin_url(&state.public_url, &tenant.tenant.name, None),
    ));
    Ok(
        match state.edge.flows.verify_email(&tenant.tenant, &token).await {
            Ok(()) => message(
                &state,
                &tenant,
                "Email verified",
                "Thank you, your email address is confirmed.",
                StatusCode::OK,
                signin,
            ),
            Err(FlowError::InvalidLink) => message(
                &state,
                &tenant,
                "Link expired",
                "This link is no longer valid. Sign in to get a new one.",
                StatusCode::BAD_REQUEST,
                signin,
            ),
            Err(_) => message(
                &state,
                &tenant,
                "Try again later",
                "Verification is not available right now.",
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
        },
    )
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

async fn signout_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let rd = checked_rd(&state, &tenant, query_param(&q, "rd").as_deref());
    Ok(page(
        &state,
        &tenant,
        jar,
        "signout.html",
        "Sign out",
        StatusCode::OK,
        Errors::new(),
        context! { rd },
    )
    .await)
}

async fn signout_submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    jar: CookieJar,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    let form = form.map(|Form(f)| f).unwrap_or_else(|_| SignOutForm {
        csrf: String::new(),
        rd: String::new(),
    });
    let rd = checked_rd(
        &state,
        &tenant,
        Some(form.rd.as_str()).filter(|r| !r.is_empty()),
    );
    if !csrf::check(&state.edge, &jar, &form.csrf)
        .await
        .map_err(|_| ApiError::Unavailable)?
    {
        return Ok(page(
            &state,
            &tenant,
            jar,
            "signout.html",
            "Sign out",
            StatusCode::FORBIDDEN,
            expired_form(),
            context! { rd },
        )
        .await);
    }
    let cookie_name = state.edge.cookie_mode.session_cookie();
    if let Some(session) = jar.get(cookie_name).map(|c| c.value().to_owned())
        && let Err(e) = state.edge.flows.sign_out(&tenant.tenant, &session).await
    {
        tracing::warn!(error = %e, "sign-out could not end the session");
        return Ok(message(
            &state,
            &tenant,
            "Try again",
            "Signing out did not work. Try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ));
    }
    let removal = Cookie::build((cookie_name, ""))
        .path("/")
        .http_only(true)
        .secure(state.edge.cookie_mode.secure())
        .same_site(SameSite::Lax)
        .build();
    let target = signin_url(&state.public_url, &tenant.tenant.name, rd.as_deref());
    Ok((jar.remove(removal), Redirect::to(&target)).into_response())
}

async fn mfa_placeholder(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = live(&state, &name).await?;
    Ok(message(
        &state,
        &tenant,
        "Additional verification",
        "A second factor is needed here. MFA arrives with the MFA issue; until then this step cannot be completed.",
        StatusCode::OK,
        Some((
            "Back to sign in",
            signin_url(&state.public_url, &tenant.tenant.name, None),
        )),
    ))
}
