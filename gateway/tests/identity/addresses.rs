//! Issue 14.12: addresses end up in identity headers, so only the strict syntax of
//! `keygate_core::email` gets in — through the API, the sign-up page, invites and the
//! sign-in lookup — and international domains travel as punycode.

use crate::support::env::{PASSWORD, env};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::store::UserPatch;
use reqwest::StatusCode;
use serde_json::json;

/// `ſcott` upper-cases to `SCOTT`; the comma splits a header into a list.
const ATTACKS: [&str; 2] = ["ſcott@corp.example", "boss@corp.example,x.y"];

#[sqlx::test(migrations = false)]
async fn addresses_outside_the_strict_syntax_are_refused_everywhere(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let admin = env.user(&t.row, "root@corp.example").await;
    env.store
        .update_user(
            t.row.id,
            admin,
            &UserPatch {
                groups: Some(vec!["keygate-admins".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, login) = env.login("acme", "root@corp.example", PASSWORD).await;
    let admin_token = login["access_token"].as_str().unwrap().to_owned();

    for address in ATTACKS {
        let (s, body) = env
            .post_json(
                "/t/acme/accounts",
                json!({"email": address, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_email")),
            "API sign-up {address}: {body}"
        );
        assert!(
            body["detail"].as_str().unwrap().starts_with("email: "),
            "{body}"
        );

        let (s, _, html) = env
            .page_post(
                "/t/acme/signup",
                &[("email", address), ("password", PASSWORD)],
                &[],
                None,
            )
            .await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "page sign-up {address}"
        );
        assert!(html.contains("This cannot be used"), "{html}");

        let r = env
            .http
            .post(format!("{}/t/acme/invites", env.url))
            .bearer_auth(&admin_token)
            .json(&json!({"email": address}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invite {address}"
        );

        let (s, body) = env.login("acme", address, PASSWORD).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
            "sign-in {address}"
        );
        assert!(
            env.store
                .user_by_email(t.row.id, address)
                .await
                .unwrap()
                .is_none(),
            "{address} has no account"
        );
    }
    assert!(
        env.mailer
            .sent()
            .iter()
            .all(|m| m.to == "root@corp.example"),
        "nothing was mailed to a refused address"
    );
}

#[sqlx::test(migrations = false)]
async fn international_domains_are_stored_and_sent_as_punycode(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    let (s, body) = env
        .post_json(
            "/t/acme/accounts",
            json!({"email": "hans@Bücher.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let ascii = "hans@xn--bcher-kva.example";
    let user = env.store.user_by_email(t.row.id, ascii).await.unwrap();
    assert_eq!(user.map(|u| u.email).as_deref(), Some(ascii));
    let link = env.mailed_token(ascii, "confirm").await;
    let (s, _) = env
        .post_json("/t/acme/accounts/verify-email", json!({"token": link}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Either spelling signs in; the header carries the ASCII form.
    let (s, _) = env.login("acme", "hans@bücher.example", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let (s, login) = env.login("acme", ascii, PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let r = env
        .http
        .get(format!("{}/forward-auth?tenant=acme", env.url))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-email"], ascii);
}
