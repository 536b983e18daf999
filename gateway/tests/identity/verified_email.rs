//! Issue 14.2: an unverified address is anyone's claim. Signing up as the address a Role
//! binds, where verification is optional, must grant nothing and put no address in the
//! identity headers; once the mailbox is proven, the role and the headers follow.

use crate::support::env::{Env, PASSWORD, env};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::{RoleSubject, RoleUpsert, Tenant};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::json;

const BOSS: &str = "boss@acme.example";

/// A Role `acme-boss` (permission `orders.admin`) bound to [`BOSS`] by email.
async fn bind_boss(env: &Env, tenant: &Tenant) {
    env.store
        .upsert_role(&RoleUpsert {
            tenant_id: tenant.id,
            name: "acme-boss".into(),
            owner_uid: uuid::Uuid::now_v7().to_string(),
            description: String::new(),
            permissions: vec!["orders.admin".into()],
            subjects: vec![RoleSubject::UserEmail(BOSS.into())],
            generation: 1,
        })
        .await
        .unwrap();
}

/// `/forward-auth` for tenant acme with `query` appended, presenting `credential`
/// (`bearer` or a session cookie value): the status and the answer's headers.
async fn check(
    env: &Env,
    query: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
) -> (StatusCode, HeaderMap) {
    let mut req = env
        .http
        .get(format!("{}/forward-auth?tenant=acme{query}", env.url));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(value) = cookie {
        req = req.header("cookie", format!("__Host-keygate_session={value}"));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.headers().clone())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[sqlx::test(migrations = false)]
async fn an_unverified_address_gets_no_role_and_no_email_header_until_verified(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env
        .tenant(
            "acme",
            SigningAlgorithm::EdDSA,
            json!({"signIn": {"registration": "open", "emailVerification": "optional"}}),
        )
        .await;
    bind_boss(&env, &t.row).await;

    // The attacker signs up as the bound address; the tenant lets them sign in unverified.
    let (s, _) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": BOSS, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, login) = env.login("acme", BOSS, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (_, cookie) = env.browser_login("acme", BOSS).await;

    for (what, bearer, cookie) in [
        ("token", Some(token.as_str()), None),
        ("cookie", None, Some(cookie.as_str())),
    ] {
        let (s, _) = check(&env, "&role=acme-boss", bearer, cookie).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{what}: an unverified address binds no role"
        );
        let (s, _) = check(&env, "&perm=orders.admin", bearer, cookie).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: nor its permissions");
        let (s, h) = check(&env, "", bearer, cookie).await;
        assert_eq!(s, StatusCode::OK, "{what}");
        assert_eq!(header(&h, "x-auth-request-email"), None, "{what}");
        assert_eq!(
            header(&h, "x-auth-request-email-verified"),
            Some("false"),
            "{what}"
        );
        let user = header(&h, "x-auth-request-user").unwrap();
        assert_ne!(
            user, BOSS,
            "{what}: the unverified address is not the user name"
        );
        assert_eq!(Some(user), header(&h, "x-keygate-subject"), "{what}");
        assert_eq!(header(&h, "x-auth-request-groups"), Some(""), "{what}");
    }
    let claims = crate::support::env::verify_independently(&env.url, "acme", &token).await;
    assert_eq!(claims["roles"], json!([]));
    assert_eq!(claims["email_verified"], json!(false));

    // The owner of the mailbox follows the link: the role and the address follow.
    let link = env.mailed_token(BOSS, "confirm").await;
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": link}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, login) = env.login("acme", BOSS, PASSWORD).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    // Forward-auth re-asks about a session after at most 5 s; the session from before then
    // sees the verified address on this replica (its cached account was dropped).
    env.clock.advance(chrono::Duration::seconds(6));
    for (what, bearer, cookie) in [
        ("token", Some(token.as_str()), None),
        ("cookie", None, Some(cookie.as_str())),
    ] {
        let (s, h) = check(&env, "&role=acme-boss&perm=orders.admin", bearer, cookie).await;
        assert_eq!(s, StatusCode::OK, "{what}");
        assert_eq!(header(&h, "x-auth-request-email"), Some(BOSS), "{what}");
        assert_eq!(
            header(&h, "x-auth-request-email-verified"),
            Some("true"),
            "{what}"
        );
        assert_eq!(header(&h, "x-auth-request-user"), Some(BOSS), "{what}");
        assert_eq!(
            header(&h, "x-auth-request-groups"),
            Some("acme-boss"),
            "{what}"
        );
    }
    let claims = crate::support::env::verify_independently(&env.url, "acme", &token).await;
    assert_eq!(claims["roles"], json!(["acme-boss"]));
    assert_eq!(claims["email_verified"], json!(true));
}
