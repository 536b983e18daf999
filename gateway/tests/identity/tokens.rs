//! Access and refresh tokens: verified against the JWKS for every algorithm and only in
//! their tenant, forgeries refused, refresh rotation, introspection and revocation, and the
//! grant (client and scope) kept across refreshes.

use crate::support::env::{PASSWORD, env, verify_independently};
use chrono::Duration;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keygate_core::clock::Clock;
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[sqlx::test(migrations = false)]
async fn tokens_verify_against_jwks_for_every_algorithm_and_only_in_their_tenant(
    pool: sqlx::PgPool,
) {
    let env = env(pool).await;
    let other = env
        .tenant("other", SigningAlgorithm::ES256, json!({}))
        .await;
    env.user(&other.row, "bob@example.com").await;
    for (name, alg) in [
        ("rsa", SigningAlgorithm::RS256),
        ("ec", SigningAlgorithm::ES256),
        ("ed", SigningAlgorithm::EdDSA),
    ] {
        let t = env.tenant(name, alg, json!({})).await;
        env.user(&t.row, "bob@example.com").await;
        let (s, login) = env.login(name, "bob@example.com", PASSWORD).await;
        assert_eq!(s, StatusCode::OK, "{login}");
        let access = login["access_token"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(access).unwrap();
        assert_eq!(header.alg, alg.jwt_algorithm());
        assert_eq!(header.kid.as_deref(), Some(t.key.kid.as_str()));
        let claims = verify_independently(&env.url, name, access).await;
        assert_eq!(claims["tenant"], name);
        // The same token is nothing to another tenant.
        let (s, body) = env.get("/t/other/userinfo", access).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token"))
        );
        let (s, _) = env.get(&format!("/t/{name}/userinfo"), access).await;
        assert_eq!(s, StatusCode::OK);
    }
    // The authorization-server metadata lists the endpoints.
    let doc: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server/t/rsa",
        env.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    for k in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        assert!(
            doc[k].as_str().is_some_and(|u| u.starts_with(&env.url)),
            "{k} missing: {doc}"
        );
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[sqlx::test(migrations = false)]
async fn forged_and_stale_tokens_are_refused(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    let user = env.user(&t.row, "eve@example.com").await;
    let (_, login) = env.login("acme", "eve@example.com", PASSWORD).await;
    let good = login["access_token"].as_str().unwrap().to_owned();
    let (s, _) = env.get("/t/acme/userinfo", &good).await;
    assert_eq!(s, StatusCode::OK);

    let issuer = format!("{}/t/acme", env.url);
    let now = env.clock.now().timestamp();
    let claims = |iss: &str, exp: i64, nbf: i64| {
        json!({"iss": iss, "sub": user.to_string(), "aud": [issuer.clone()], "exp": exp, "iat": now, "nbf": nbf,
               "jti": "j1", "client_id": "keygate", "tenant": "acme", "roles": [], "scope": "openid", "amr": ["pwd"], "auth_time": now})
    };
    let key = EncodingKey::from_ec_pem(t.key.private_pem.as_bytes()).unwrap();
    let sign = |typ: Option<&str>, kid: &str, c: &Value| {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = typ.map(str::to_owned);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, c, &key).unwrap()
    };
    // Sanity: a token forged with the right key and claims passes, so each case below fails for its one reason.
    let (s, _) = env
        .get(
            "/t/acme/userinfo",
            &sign(Some("at+jwt"), &t.key.kid, &claims(&issuer, now + 300, now)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let payload = b64(claims(&issuer, now + 300, now).to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#));
    let public_pem = {
        let jwk = serde_json::to_value(&t.key.public_jwk).unwrap();
        jwk.to_string()
    };
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(t.key.kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims(&issuer, now + 300, now),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap()
    };
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
                .unwrap(),
        )
        .unwrap();
        c["roles"] = json!(["admin"]);
        parts[1] = b64(c.to_string().as_bytes());
        parts.join(".")
    };
    let other_issuer = format!("{}/t/other", env.url);
    let cases = [
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256),
        (
            "wrong typ",
            sign(Some("JWT"), &t.key.kid, &claims(&issuer, now + 300, now)),
        ),
        (
            "no typ",
            sign(None, &t.key.kid, &claims(&issuer, now + 300, now)),
        ),
        ("tampered payload", tampered),
        (
            "unknown kid",
            sign(
                Some("at+jwt"),
                "not-a-kid",
                &claims(&issuer, now + 300, now),
            ),
        ),
        (
            "expired",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&issuer, now - 3600, now - 7200),
            ),
        ),
        (
            "not yet valid",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&issuer, now + 7200, now + 3600),
            ),
        ),
        (
            "another tenant's issuer",
            sign(
                Some("at+jwt"),
                &t.key.kid,
                &claims(&other_issuer, now + 300, now),
            ),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in cases {
        let r = env
            .http
            .get(format!("{}/t/acme/userinfo", env.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(r.headers().get("www-authenticate").is_some(), "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_token", "{what}");
    }
    // The real token expires with the clock.
    env.clock.advance(Duration::minutes(6));
    let (s, _) = env.get("/t/acme/userinfo", &good).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = false)]
async fn concurrent_refreshes_rotate_exactly_once(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::EdDSA, json!({})).await;
    env.user(&t.row, "sam@example.com").await;
    let (_, login) = env.login("acme", "sam@example.com", PASSWORD).await;
    let old = login["refresh_token"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(env.refresh("acme", &old), env.refresh("acme", &old));
    assert_eq!(
        (a.0, b.0),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        a.1,
        b.1
    );
    assert_eq!(
        a.1["refresh_token"], b.1["refresh_token"],
        "the retry within grace gets the same pair"
    );
    let successor = a.1["refresh_token"].as_str().unwrap();
    let record = env
        .store
        .refresh_token(t.row.id, &sha256(old.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.replaced_by.as_deref(),
        Some(&sha256(successor.as_bytes())[..]),
        "one rotation, one successor"
    );
    let (s, next) = env.refresh("acme", successor).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    // Introspection: only for authenticated callers, and of their own tokens.
    let access = next["access_token"].as_str().unwrap();
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", access)],
            Some(access),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{i}"
    );
    let (s, i) = env
        .form(
            "/t/acme/oauth2/introspect",
            &[("token", successor)],
            Some(access),
        )
        .await;
    assert_eq!(
        (s, i["active"].as_bool()),
        (StatusCode::OK, Some(false)),
        "a rotated refresh token is inactive"
    );
    // RFC 7009 revoke of the live refresh token ends the family.
    let live = next["refresh_token"].as_str().unwrap();
    let (s, _) = env
        .form(
            "/t/acme/oauth2/revoke",
            &[("token", live), ("token_type_hint", "refresh_token")],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env.refresh("acme", live).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrations = false)]
async fn refresh_keeps_client_id_and_scope_and_never_widens_them(pool: sqlx::PgPool) {
    let env = env(pool).await;
    let t = env.tenant("acme", SigningAlgorithm::ES256, json!({})).await;
    env.user(&t.row, "app@example.com").await;
    env.role(
        &t.row,
        "orders",
        &["orders.read", "orders.write"],
        "app@example.com",
    )
    .await;
    let granted = "openid orders.read orders.write";
    let (s, login) = env
        .post_json(
            "/t/acme/login",
            json!({"email": "app@example.com", "password": PASSWORD,
                   "client_id": "keygate", "scope": granted}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let first =
        verify_independently(&env.url, "acme", login["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (first["client_id"].as_str(), first["scope"].as_str()),
        (Some("keygate"), Some(granted))
    );

    // Two refreshes: both access tokens keep the client and the scope.
    let mut refresh_token = login["refresh_token"].as_str().unwrap().to_owned();
    for round in 0..2 {
        let (s, next) = env.refresh("acme", &refresh_token).await;
        assert_eq!(s, StatusCode::OK, "{next}");
        assert_eq!(next["scope"], granted);
        let claims =
            verify_independently(&env.url, "acme", next["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["client_id"], "keygate", "refresh {round}");
        assert_eq!(claims["scope"], granted, "refresh {round}");
        refresh_token = next["refresh_token"].as_str().unwrap().to_owned();
    }

    // A scope asked for narrows this access token only.
    let (s, narrow) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("scope", "orders.read"),
                ("client_id", "keygate"),
            ],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{narrow}");
    assert_eq!(narrow["scope"], "orders.read");
    let claims =
        verify_independently(&env.url, "acme", narrow["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (claims["client_id"].as_str(), claims["scope"].as_str()),
        (Some("keygate"), Some("orders.read"))
    );
    refresh_token = narrow["refresh_token"].as_str().unwrap().to_owned();

    // Widening is refused, and does not spend the refresh token.
    let (s, err) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("scope", "openid admin"),
                ("client_id", "keygate"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{err}"
    );
    // A client id nobody registered is refused (`invalid_client`), and that does not spend
    // the refresh token either; its own id is accepted.
    let (s, err) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", "some-other-app"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (s, err["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{err}"
    );
    let (s, own) = env
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", "keygate"),
            ],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{own}");
    let refresh_token = own["refresh_token"].as_str().unwrap().to_owned();
    let (s, next) = env.refresh("acme", &refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    assert_eq!(next["scope"], granted, "narrowing lasted one token only");
}
