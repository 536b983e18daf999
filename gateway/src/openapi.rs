//! The OpenAPI 3.1 description of the JSON and OAuth endpoints, generated from the handlers'
//! annotations and served at `/openapi.json`, so integrators and fuzzers (schemathesis) can
//! use it. A test fails when a route of the identity area or discovery is missing from it.

use crate::AppState;
use crate::routes::{accounts, login, mfa, oauth2, sessions, userinfo};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "keygate", description = "Accounts, tokens and sessions of keygate tenants. Errors are RFC 9457 problems with a stable `code`; the OAuth endpoints answer RFC 6749 error JSON."),
    paths(
        login::login, login::login_mfa, login::login_mfa_enrol, login::logout,
        mfa::status, mfa::enrol, mfa::confirm, mfa::remove, mfa::regenerate, mfa::step_up,
        oauth2::token, oauth2::revoke, oauth2::introspect, oauth2::device_authorization,
        userinfo::userinfo, userinfo::userinfo_post,
        sessions::list, sessions::revoke, sessions::logout_all,
        accounts::sign_up, accounts::verify_email, accounts::resend, accounts::request_reset,
        accounts::confirm_reset, accounts::change_password, accounts::suspend, accounts::reactivate, accounts::erase,
        accounts::invite, accounts::request_unlock, accounts::confirm_unlock,
        crate::oidc::metadata, crate::oidc::metadata_relative, crate::oidc::openid_configuration, crate::oidc::jwks,
        crate::pages::authorize::authorize_get, crate::pages::authorize::authorize_post,
        crate::pages::end_session::end_session_get, crate::pages::end_session::end_session_post,
    ),
    components(schemas(crate::error::Problem, oauth2::OAuthError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token, or an API key kg_…")
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
