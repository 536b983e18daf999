//! A Tenant's `branding` on the sign-in pages: the logo (`branding.logoUrl`) is shown over
//! https only, escaped, with the tenant's display name as its `alt`; colours travel in the
//! tenant's stylesheet.

use crate::support::env::env;
use keygate_core::crypto::signing::SigningAlgorithm;
use reqwest::StatusCode;
use serde_json::json;

async fn page(env: &crate::support::env::Env, path: &str) -> String {
    let r = env
        .http
        .get(format!("{}{path}", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.text().await.unwrap()
}

#[sqlx::test(migrations = false)]
async fn the_sign_in_page_shows_the_tenants_logo_and_colours(pool: sqlx::PgPool) {
    let env = env(pool).await;
    // A value written to break out of the attribute is shown as text in it, never as markup.
    let logo = r#"https://cdn.example.com/acme.svg?v=1&x="><script>alert(1)</script>"#;
    let branding = json!({ "logoUrl": logo, "primaryColor": "#8a2be2" });
    env.tenant(
        "acme",
        SigningAlgorithm::EdDSA,
        json!({ "branding": branding }),
    )
    .await;
    env.tenant("plain", SigningAlgorithm::EdDSA, json!({}))
        .await;
    // Stored by an older version, whose schema took http: not loaded (the CSP would block it).
    let old = json!({ "logoUrl": "http://cdn.example.com/old.svg" });
    env.tenant("old", SigningAlgorithm::EdDSA, json!({ "branding": old }))
        .await;

    let html = page(&env, "/t/acme/signin").await;
    assert!(
        html.contains(
            // minijinja's HTML escaping also writes `/` as `&#x2f;`; browsers read it back.
            r#"<img class="logo" src="https:&#x2f;&#x2f;cdn.example.com&#x2f;acme.svg?v=1&amp;x=&quot;&gt;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;" alt="acme">"#
        ),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    // Every page has it, the others too.
    assert!(
        page(&env, "/t/acme/signup")
            .await
            .contains(r#"<img class="logo""#)
    );
    let css = page(&env, "/t/acme/theme.css").await;
    assert!(css.contains("--kg-primary: #8a2be2;"), "{css}");

    for tenant in ["plain", "old"] {
        let html = page(&env, &format!("/t/{tenant}/signin")).await;
        assert!(!html.contains("<img"), "{tenant}: {html}");
        assert!(html.contains(r#"<p class="tenant">"#), "{tenant}");
    }
}
