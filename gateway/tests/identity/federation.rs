//! Sign-in through upstream identity providers, driven over HTTP as a browser would:
//! `oidc-provider` (npm, OpenID certified) as the generic and the Google provider, a minting
//! provider for the ID tokens a well-behaved one never sends, and a stand-in answering
//! GitHub's documented shapes.

use crate::support::env::{Env, PASSWORD, env_federated, env_federated_with};
use crate::support::upstream::{
    Browser, CLIENT_ID, CLIENT_SECRET, Flaw, GithubPerson, GithubStandIn, Minter, ProviderOptions,
    oidc_provider, through_provider,
};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::federation::{
    ClaimNames, Endpoints, GithubEndpoints, GithubProtocol, GoogleProtocol, Linking, OidcProtocol,
    Protocol, ProviderSettings,
};
use keygate_core::store::{IdpKind, IdpUpsert, RoleSubject, RoleUpsert, Tenant};
use keygate_gateway::identity::Federation;
use serde_json::{Value, json};

const SESSION: &str = "__Host-keygate_session";

pub(crate) fn oidc(issuer: &str, ca: Option<&str>) -> ProviderSettings {
    ProviderSettings {
        display_name: "Sign in with Corp".into(),
        protocol: Protocol::Oidc(OidcProtocol {
            issuer: issuer.into(),
            client_id: CLIENT_ID.into(),
            scopes: ["openid", "email", "profile", "groups"]
                .map(String::from)
                .to_vec(),
            claims: ClaimNames::default(),
        }),
        allowed_email_domains: vec![],
        linking: Linking::None,
        ca_bundle: ca.map(str::to_owned),
    }
}

/// Stores a provider as the operator would: its settings, its client secret sealed to its row.
pub(crate) async fn provider(env: &Env, tenant: &Tenant, name: &str, settings: ProviderSettings) {
    let kind = match settings.protocol {
        Protocol::Oidc(_) => IdpKind::Oidc,
        Protocol::Google(_) => IdpKind::Google,
        Protocol::Github(_) => IdpKind::Github,
        Protocol::Saml(_) => IdpKind::Saml,
    };
    let mut upsert = IdpUpsert {
        tenant_id: tenant.id,
        name: name.into(),
        owner_uid: format!("uid-{name}"),
        kind,
        config: serde_json::to_value(&settings).unwrap(),
        client_secret: None,
        generation: 1,
    };
    let row = env.store.upsert_idp(&upsert).await.unwrap();
    upsert.client_secret = Some(
        env.master
            .seal(CLIENT_SECRET.as_bytes(), &format!("idp_secret:{}", row.id))
            .unwrap(),
    );
    upsert.generation = 2;
    env.store.upsert_idp(&upsert).await.unwrap();
}

pub(super) fn callback(env: &Env, name: &str) -> String {
    format!("{}/t/acme/sso/{name}/callback", env.url)
}

pub(super) fn start(env: &Env, name: &str) -> String {
    format!("{}/t/acme/sso/{name}/start", env.url)
}

/// `/userinfo` of the browser's session.
async fn userinfo(env: &Env, browser: &Browser) -> Value {
    let cookie = browser.cookie(&env.url, SESSION).expect("a session cookie");
    let r = env
        .http
        .get(format!("{}/t/acme/userinfo", env.url))
        .header("cookie", format!("{SESSION}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

#[sqlx::test(migrations = false)]
async fn an_oidc_sign_in_creates_the_person_with_groups_that_reach_roles_and_its_state_is_single_use(
    pool: sqlx::PgPool,
) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp")],
        google: false,
        ignore_reauthentication: false,
    });
    // Trusted through the provider's own CA bundle: the system store does not know it.
    provider(&env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;
    env.store
        .upsert_role(&RoleUpsert {
            tenant_id: acme.id,
            name: "engineers".into(),
            owner_uid: "role-uid".into(),
            description: String::new(),
            permissions: vec!["orders.read".into()],
            subjects: vec![RoleSubject::IdpGroup {
                idp: "corp".into(),
                group: "eng".into(),
            }],
            generation: 1,
        })
        .await
        .unwrap();
    let browser = Browser::new(Some(&op.ca_pem));

    let signin = browser.get(&format!("{}/t/acme/signin", env.url)).await;
    assert!(
        signin.body.contains("/t/acme/sso/corp/start"),
        "{}",
        signin.body
    );
    assert!(signin.body.contains("Sign in with Corp"));

    let answer = through_provider(&browser, &start(&env, "corp"), "ada@example.com+eng").await;
    let done = browser.get(&answer.url).await;
    assert_eq!(done.status, 200);
    assert!(done.url.ends_with("/t/acme/account"), "{}", done.url);
    let me = userinfo(&env, &browser).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["roles"], json!(["engineers"]));

    let user = env
        .store
        .user_by_email(acme.id, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.is_none());
    let links = env
        .store
        .identities_of_user(acme.id, user.id)
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].subject, "ada@example.com+eng");
    assert_eq!(links[0].groups, vec!["eng".to_owned()]);

    // The provider's answer once more: its state is spent.
    let again = browser.get(&answer.url).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(
        again.body.contains("unknown, used or expired"),
        "{}",
        again.body
    );

    // A second sign-in finds the same person through the link.
    let second = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&second, &start(&env, "corp"), "ada@example.com+eng").await;
    assert_eq!(second.get(&answer.url).await.status, 200);
    assert_eq!(userinfo(&env, &second).await["sub"], user.id.to_string());
}

#[sqlx::test(migrations = false)]
async fn a_tampered_state_or_an_answer_in_another_browser_is_refused(pool: sqlx::PgPool) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp")],
        google: false,
        ignore_reauthentication: false,
    });
    provider(&env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "ada@example.com").await;
    let mut tampered = url::Url::parse(&answer.url).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.get(tampered.as_str()).await;
    assert_eq!(page.status, 400, "{}", page.body);

    // The real answer, but in a browser that did not start the sign-in.
    let other = Browser::new(None);
    let page = other.get(&answer.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(other.cookie(&env.url, SESSION).is_none());
    // That spent the state: the right browser cannot use it either.
    let page = browser.get(&answer.url).await;
    assert_eq!(page.status, 400);
    assert!(browser.cookie(&env.url, SESSION).is_none());
}

#[sqlx::test(migrations = false)]
async fn emails_outside_the_allowed_domains_and_expired_id_tokens_are_refused(pool: sqlx::PgPool) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp")],
        google: false,
        ignore_reauthentication: false,
    });
    let mut settings = oidc(&op.issuer, Some(&op.ca_pem));
    settings.allowed_email_domains = vec!["example.com".into()];
    provider(&env, &acme, "corp", settings).await;

    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "eve@other.org").await;
    let page = browser.get(&answer.url).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("email domain may not sign in"),
        "{}",
        page.body
    );
    assert!(
        env.store
            .user_by_email(acme.id, "eve@other.org")
            .await
            .unwrap()
            .is_none()
    );

    // An address in the domain that the provider does not vouch for is no member either.
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "unverified@example.com").await;
    assert_eq!(browser.get(&answer.url).await.status, 403);

    // The ID token (an hour of life at oidc-provider) has expired by keygate's clock.
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "ada@example.com").await;
    env.clock.advance(chrono::Duration::hours(2));
    let page = browser.get(&answer.url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("failed validation"), "{}", page.body);
    assert!(browser.cookie(&env.url, SESSION).is_none());
}

#[sqlx::test(migrations = false)]
async fn id_tokens_with_a_wrong_nonce_audience_key_algorithm_or_expiry_are_refused(
    pool: sqlx::PgPool,
) {
    let federation = Federation {
        allow_loopback_http: true,
        ..Federation::default()
    };
    let (env, _) = env_federated(pool, federation).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let minter = Minter::start().await;
    provider(&env, &acme, "minted", oidc(&minter.issuer, None)).await;
    for flaw in [
        Flaw::WrongNonce,
        Flaw::WrongAudience,
        Flaw::WrongKey,
        Flaw::Hs256,
        Flaw::Expired,
    ] {
        minter.flaw(flaw);
        let browser = Browser::new(None);
        let page = browser.get(&start(&env, "minted")).await;
        assert_eq!(page.status, 400, "{flaw:?}: {}", page.body);
        assert!(
            page.body.contains("failed validation"),
            "{flaw:?}: {}",
            page.body
        );
        assert!(browser.cookie(&env.url, SESSION).is_none(), "{flaw:?}");
    }
    // The same provider without a flaw signs the person in: the refusals were the flaws'.
    minter.flaw(Flaw::None);
    let browser = Browser::new(None);
    let page = browser.get(&start(&env, "minted")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        userinfo(&env, &browser).await["email"],
        "minted@example.com"
    );
}

#[sqlx::test(migrations = false)]
async fn an_existing_account_is_joined_by_verified_email_or_claimed_after_a_local_sign_in(
    pool: sqlx::PgPool,
) {
    let (env, _) = env_federated(pool, Federation::default()).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let op = oidc_provider(ProviderOptions {
        redirect_uris: vec![callback(&env, "corp"), callback(&env, "trusted")],
        google: false,
        ignore_reauthentication: false,
    });
    provider(&env, &acme, "corp", oidc(&op.issuer, Some(&op.ca_pem))).await;
    let mut trusted = oidc(&op.issuer, Some(&op.ca_pem));
    trusted.linking = Linking::VerifiedEmail;
    provider(&env, &acme, "trusted", trusted).await;
    let ada = env.user(&acme, "ada@example.com").await;
    let bob = env.user(&acme, "bob@example.com").await;

    // `verifiedEmail`: both sides vouch for the address, so the account is joined at once.
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "trusted"), "bob@example.com").await;
    assert_eq!(browser.get(&answer.url).await.status, 200);
    assert_eq!(userinfo(&env, &browser).await["sub"], bob.to_string());

    // `none`: the sign-in form asks for the local password, then links.
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "ada@example.com").await;
    let form = browser.get(&answer.url).await;
    assert_eq!(form.status, 200);
    assert!(form.url.contains("/t/acme/signin?link="), "{}", form.url);
    assert!(
        form.body.contains("link your identity provider"),
        "{}",
        form.body
    );
    assert!(browser.cookie(&env.url, SESSION).is_none());
    let link = hidden(&form.body, "link");
    let fields = [
        ("csrf", hidden(&form.body, "csrf")),
        ("email", "ada@example.com".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("link", link.clone()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = browser.submit(&form, &fields, |_| false).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let links = env.store.identities_of_user(acme.id, ada).await.unwrap();
    assert_eq!(links.len(), 1);
    // From now on the provider alone signs Ada in.
    let again = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&again, &start(&env, "corp"), "ada@example.com").await;
    assert_eq!(again.get(&answer.url).await.status, 200);
    assert_eq!(userinfo(&env, &again).await["sub"], ada.to_string());

    // Bob is linked at `trusted` already; claiming another identity there for him is a 409.
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "trusted"), "carol@example.com").await;
    assert_eq!(
        browser.get(&answer.url).await.status,
        200,
        "carol is new: created"
    );
    let carol = env
        .store
        .user_by_email(acme.id, "carol@example.com")
        .await
        .unwrap()
        .unwrap();
    env.store
        .update_user(
            acme.id,
            carol.id,
            &keygate_core::store::UserPatch {
                email: Some("carol@other.example".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "corp"), "bob@example.com").await;
    let form = browser.get(&answer.url).await;
    assert!(form.url.contains("link="), "{}", form.url);
    let link = hidden(&form.body, "link");
    // Bob claims it: fine, his first link at `corp`.
    let fields = [
        ("csrf", hidden(&form.body, "csrf")),
        ("email", "bob@example.com".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("link", link),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(browser.submit(&form, &fields, |_| false).await.status, 200);
    // Ada (linked at `corp`) claims a second `corp` identity: refused, 409.
    let browser = Browser::new(Some(&op.ca_pem));
    env.user(&acme, "dave@example.com").await;
    let answer = through_provider(&browser, &start(&env, "corp"), "dave@example.com").await;
    let form = browser.get(&answer.url).await;
    let fields = [
        ("csrf", hidden(&form.body, "csrf")),
        ("email", "ada@example.com".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("link", hidden(&form.body, "link")),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = browser.submit(&form, &fields, |_| false).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("already linked"), "{}", refused.body);
    assert_eq!(
        env.store
            .identities_of_user(acme.id, ada)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[sqlx::test(migrations = false)]
async fn the_google_preset_admits_only_its_hosted_domain(pool: sqlx::PgPool) {
    let mut op = None;
    let (env, _) = env_federated_with(pool, |url| {
        // Google's claim shapes (`hd`, every claim in the ID token) from oidc-provider, which
        // the test points the Google preset at.
        let p = oidc_provider(ProviderOptions {
            redirect_uris: vec![format!("{url}/t/acme/sso/google/callback")],
            google: true,
            ignore_reauthentication: false,
        });
        let federation = Federation {
            endpoints: Endpoints {
                google_issuer: p.issuer.clone(),
                ..Endpoints::default()
            },
            allow_loopback_http: false,
        };
        op = Some(p);
        federation
    })
    .await;
    let op = op.unwrap();
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    provider(&env, &acme, "google", google("example.com", &op.ca_pem)).await;

    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "google"), "ada@example.com").await;
    assert!(answer.url.starts_with(&callback(&env, "google")));
    assert_eq!(browser.get(&answer.url).await.status, 200);
    assert_eq!(userinfo(&env, &browser).await["email"], "ada@example.com");
    // The `hd` parameter went out, and the answer's `hd` claim is what is checked.
    let visited = browser.visited.lock().unwrap().clone();
    assert!(
        visited.iter().any(|u| u.contains("hd=example.com")),
        "{visited:?}"
    );

    let browser = Browser::new(Some(&op.ca_pem));
    let answer = through_provider(&browser, &start(&env, "google"), "eve@other.org").await;
    let page = browser.get(&answer.url).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("Google Workspace domain"),
        "{}",
        page.body
    );
}

#[sqlx::test(migrations = false)]
async fn the_github_preset_takes_the_primary_verified_email_and_checks_organizations(
    pool: sqlx::PgPool,
) {
    let github = GithubStandIn::start(GithubPerson {
        id: 4242,
        login: "octo".into(),
        emails: vec![
            ("octo@secondary.example".into(), false, true),
            ("octo@example.com".into(), true, true),
        ],
        orgs: vec!["acme-org".into()],
    })
    .await;
    let federation = Federation {
        endpoints: Endpoints {
            github: GithubEndpoints {
                authorize: format!("{}/login/oauth/authorize", github.url),
                token: format!("{}/login/oauth/access_token", github.url),
                api: github.url.clone(),
            },
            ..Endpoints::default()
        },
        allow_loopback_http: false,
    };
    let (env, _) = env_federated(pool, federation).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let gh = |orgs: &[&str]| ProviderSettings {
        display_name: "Sign in with GitHub".into(),
        protocol: Protocol::Github(GithubProtocol {
            client_id: CLIENT_ID.into(),
            allowed_organizations: orgs.iter().map(|o| o.to_string()).collect(),
        }),
        allowed_email_domains: vec![],
        linking: Linking::None,
        ca_bundle: None,
    };
    provider(&env, &acme, "github", gh(&["ACME-org"])).await;
    provider(&env, &acme, "elsewhere", gh(&["other-org"])).await;

    let browser = Browser::new(None);
    let page = browser.get(&start(&env, "github")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let me = userinfo(&env, &browser).await;
    assert_eq!(me["email"], "octo@example.com");
    let user = env
        .store
        .user_by_email(acme.id, "octo@example.com")
        .await
        .unwrap()
        .unwrap();
    let links = env
        .store
        .identities_of_user(acme.id, user.id)
        .await
        .unwrap();
    assert_eq!(links[0].subject, "4242");
    assert_eq!(links[0].groups, vec!["acme-org".to_owned()]);

    let browser = Browser::new(None);
    let page = browser.get(&start(&env, "elsewhere")).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("organizations may not sign in"),
        "{}",
        page.body
    );
}

fn google(hosted_domain: &str, ca: &str) -> ProviderSettings {
    ProviderSettings {
        display_name: "Sign in with Google".into(),
        protocol: Protocol::Google(GoogleProtocol {
            client_id: CLIENT_ID.into(),
            hosted_domain: Some(hosted_domain.into()),
        }),
        allowed_email_domains: vec![],
        linking: Linking::None,
        ca_bundle: Some(ca.into()),
    }
}
