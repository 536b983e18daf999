//! The OpenAPI 3.1 description of the JSON and OAuth endpoints, generated from the handlers'
//! annotations and served at `/openapi.json`, so integrators and fuzzers (schemathesis) can
//! use it. A test fails when a route of the identity area, discovery or forward-auth's
//! explain route (`keygate explain`) is missing from it.

use crate::AppState;
use crate::routes::{
    accounts, consents, identities, login, mfa, oauth2, sessions, userinfo, webauthn,
};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "keygate", description = "Accounts, tokens and sessions of keygate tenants, and the explanation of a forward-auth decision. Errors are RFC 9457 problems with a stable `code`; the OAuth endpoints answer RFC 6749 error JSON."),
    paths(
        login::login, login::login_mfa, login::login_mfa_enrol, login::logout,
        mfa::status, mfa::enrol, mfa::confirm, mfa::remove, mfa::rename, mfa::regenerate, mfa::step_up,
        webauthn::register, webauthn::finish_register, webauthn::sign_in_options, webauthn::sign_in,
        webauthn::step_up_options, webauthn::step_up, webauthn::passkey_options, webauthn::passkey,
        oauth2::token, oauth2::revoke, oauth2::introspect, oauth2::device_authorization,
        userinfo::userinfo, userinfo::userinfo_post,
        sessions::list, sessions::revoke, sessions::logout_all, sessions::end_others,
        identities::list, identities::unlink,
        consents::list, consents::revoke,
        accounts::sign_up, accounts::verify_email, accounts::resend, accounts::request_reset,
        accounts::confirm_reset, accounts::change_password, accounts::suspend, accounts::reactivate, accounts::erase,
        accounts::invite, accounts::request_unlock, accounts::confirm_unlock,
        crate::oidc::metadata, crate::oidc::metadata_relative, crate::oidc::openid_configuration, crate::oidc::jwks,
        crate::pages::authorize::authorize_get, crate::pages::authorize::authorize_post,
        crate::pages::end_session::end_session_get, crate::pages::end_session::end_session_post,
        crate::forward_auth::explain::explain,
    ),
    components(schemas(crate::error::Problem, crate::error::StepUpProblem, oauth2::OAuthError)),
    modifiers(&BearerAuth, &SharedRejections),
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

/// The answers every problem+json operation shares because its extractors do: the
/// `{tenant}` segment (`TenantName`) answers 404 `tenant_not_found` for a name no tenant
/// has, the caller (`Authenticated`) 401 `invalid_token` or 403 `forbidden` /
/// `network_denied`, and a JSON body (`ApiJson`) 400, 413, 415 or 422 when it cannot be read.
/// Documented here, once, beside nothing else, so that no handler's annotation can forget
/// one (schemathesis found most of them forgotten). The OAuth endpoints answer in their own
/// format and document each answer themselves.
struct SharedRejections;

impl Modify for SharedRejections {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if answers_oauth_errors(operation) {
                    continue;
                }
                if path.contains("{tenant}") {
                    add_problem(operation, "404", "tenant_not_found");
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add_problem(operation, "401", "invalid_token");
                    add_problem(
                        operation,
                        "403",
                        "forbidden (the credential cannot do this, e.g. an API key where a \
                         session is needed, or a cookie sent from another origin), network_denied",
                    );
                }
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                if json_body {
                    add_problem(operation, "400", "malformed_json");
                    add_problem(operation, "413", "payload_too_large");
                    add_problem(operation, "415", "unsupported_media_type");
                    add_problem(operation, "422", "invalid_body");
                }
            }
        }
    }
}

/// Whether the operation answers RFC 6749 error JSON (`OAuthError`) rather than problems.
fn answers_oauth_errors(operation: &Operation) -> bool {
    operation.responses.responses.values().any(|r| match r {
        RefOr::T(response) => response.content.values().any(
            |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/OAuthError")),
        ),
        RefOr::Ref(_) => false,
    })
}

/// Documents a problem+json answer with `codes` unless the operation already documents the
/// status (its own description then names the codes).
fn add_problem(operation: &mut Operation, status: &str, codes: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(codes)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        });
}

/// `GET /openapi.json`.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
