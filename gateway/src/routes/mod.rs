//! The JSON and OAuth endpoints of the identity area, one router per area, each handler
//! in the order authorize → validate → call the [`IdentityService`] → map to a response
//! type. Request and response types live here, apart from storage rows.
//!
//! [`IdentityService`]: crate::identity::IdentityService

pub mod accounts;
pub mod consents;
pub mod extract;
pub mod identities;
pub mod login;
pub mod mfa;
pub mod oauth2;
pub mod sessions;
pub mod userinfo;
pub mod webauthn;

use crate::AppState;
use axum::Router;

/// Every identity-area route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(mfa::router())
        .merge(oauth2::router())
        .merge(userinfo::router())
        .merge(sessions::router())
        .merge(consents::router())
        .merge(accounts::router())
        .merge(webauthn::router())
        .merge(identities::router())
}
