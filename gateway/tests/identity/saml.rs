//! Sign-in through a SAML 2.0 identity provider, driven over HTTP as a browser would: a real
//! IdP (pysaml2, signing with a key the test makes) imports keygate's SP metadata, answers
//! the AuthnRequest sent with the redirect binding, and its page posts the SAMLResponse to
//! keygate's assertion consumer service. Refused: unsigned, tampered, wrongly addressed,
//! expired, replayed answers and ones to another request.

use crate::support::env::{Env, env_federated};
use crate::support::saml::{Person, SamlIdp};
use crate::support::upstream::{Browser, Page};
use keygate_core::crypto::signing::SigningAlgorithm;
use keygate_core::federation::{
    ClaimNames, Linking, Protocol, ProviderSettings, SamlMetadataSource, SamlProtocol,
};
use keygate_core::store::{IdpKind, IdpUpsert, RoleSubject, RoleUpsert, Tenant};
use keygate_gateway::identity::Federation;
use serde_json::{Value, json};

const SESSION: &str = "__Host-keygate_session";
const ENTITY_ID: &str = "urn:keygate:test:acme";
/// pysaml2 names the email attribute by its OID (FriendlyName `email`): the mapping names it
/// by `Name`.
const EMAIL_OID: &str = "urn:oid:1.2.840.113549.1.9.1.1";

fn ada() -> Person<'static> {
    Person {
        subject: "ada-persistent-id",
        email: "ada@example.com",
        name: "Ada Lovelace",
        groups: &["eng", "ops"],
    }
}

/// Starts a gateway (plain-HTTP loopback IdPs allowed, as `keygate dev` does), tenant `acme`,
/// and an IdP that imports the SP metadata of provider `corp`.
async fn setup(pool: sqlx::PgPool) -> (Env, Tenant, SamlIdp) {
    let federation = Federation {
        allow_loopback_http: true,
        ..Federation::default()
    };
    let (env, _) = env_federated(pool, federation).await;
    let acme = env
        .tenant("acme", SigningAlgorithm::ES256, json!({}))
        .await
        .row;
    let idp = SamlIdp::start(&format!("{}/t/acme/sso/corp/saml/metadata", env.url));
    (env, acme, idp)
}

/// Stores SAML provider `corp` as the operator would.
async fn provider(env: &Env, tenant: &Tenant, idp: &SamlIdp, linking: Linking) {
    let settings = ProviderSettings {
        display_name: "Sign in with Corp SAML".into(),
        protocol: Protocol::Saml(SamlProtocol {
            metadata: SamlMetadataSource::Url(idp.metadata_url.clone()),
            entity_id: ENTITY_ID.into(),
            attributes: ClaimNames {
                email: EMAIL_OID.into(),
                name: "name".into(),
                groups: "groups".into(),
            },
        }),
        allowed_email_domains: vec![],
        linking,
        ca_bundle: None,
    };
    env.store
        .upsert_idp(&IdpUpsert {
            tenant_id: tenant.id,
            name: "corp".into(),
            owner_uid: "uid-corp".into(),
            kind: IdpKind::Saml,
            config: serde_json::to_value(&settings).unwrap(),
            client_secret: None,
            generation: 1,
        })
        .await
        .unwrap();
}

fn start(env: &Env) -> String {
    format!("{}/t/acme/sso/corp/start", env.url)
}

/// The value of a hidden form field.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[at..at + html[at..].find('"').unwrap()].replace("&amp;", "&")
}

/// Starts a sign-in in `browser` and stops at the IdP's page with the form to post.
async fn at_idp(browser: &Browser, url: &str) -> Page {
    let page = browser.get(url).await;
    assert_eq!(page.status, 200, "the IdP's answer page: {}", page.body);
    assert!(page.body.contains("SAMLResponse"), "{}", page.body);
    page
}

/// Posts the IdP page's form (as its script would) and follows keygate's redirects.
async fn post(browser: &Browser, idp_page: &Page) -> Page {
    let fields = [
        ("SAMLResponse", hidden(&idp_page.body, "SAMLResponse")),
        ("RelayState", hidden(&idp_page.body, "RelayState")),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.submit(idp_page, &fields, |_| false).await
}

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

#[sqlx::test(migrations = false)]
async fn a_saml_sign_in_creates_the_person_with_groups_that_reach_roles(pool: sqlx::PgPool) {
    let (env, acme, idp) = setup(pool).await;
    provider(&env, &acme, &idp, Linking::None).await;
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

    // What the IdP's administrator imports: entity id and assertion consumer service.
    let metadata = env
        .http
        .get(format!("{}/t/acme/sso/corp/saml/metadata", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    assert_eq!(
        metadata.headers()["content-type"],
        "application/samlmetadata+xml"
    );
    let xml = metadata.text().await.unwrap();
    assert!(xml.contains(&format!("entityID=\"{ENTITY_ID}\"")), "{xml}");
    assert!(
        xml.contains(&format!("Location=\"{}/t/acme/sso/corp/acs\"", env.url)),
        "{xml}"
    );

    let browser = Browser::new(None);
    let signin = browser.get(&format!("{}/t/acme/signin", env.url)).await;
    assert!(
        signin.body.contains("/t/acme/sso/corp/start"),
        "{}",
        signin.body
    );
    assert!(signin.body.contains("Sign in with Corp SAML"));

    idp.next(&ada(), "none").await;
    let page = at_idp(&browser, &start(&env)).await;
    let request = idp.last_request().await;
    assert_eq!(request["issuer"], ENTITY_ID);
    assert_eq!(request["acs"], format!("{}/t/acme/sso/corp/acs", env.url));
    assert_eq!(request["force_authn"], false);
    let done = post(&browser, &page).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.url.ends_with("/t/acme/account"), "{}", done.url);
    let me = userinfo(&env, &browser).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["roles"], json!(["engineers"]));

    let user = env
        .store
        .user_by_email(acme.id, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.display_name, "Ada Lovelace");
    assert!(user.password_hash.is_none());
    let links = env
        .store
        .identities_of_user(acme.id, user.id)
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].subject, "ada-persistent-id");
    assert_eq!(links[0].groups, vec!["eng".to_owned(), "ops".to_owned()]);

    // The same form posted again (a replayed answer): its RelayState is spent.
    let again = post(&browser, &page).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(
        again.body.contains("unknown, used or expired"),
        "{}",
        again.body
    );

    // A second sign-in finds the same person through the link; groups refresh.
    let second = Browser::new(None);
    let person = Person {
        groups: &["ops"],
        ..ada()
    };
    idp.next(&person, "none").await;
    let page = at_idp(&second, &start(&env)).await;
    assert_eq!(post(&second, &page).await.status, 200);
    let me = userinfo(&env, &second).await;
    assert_eq!(me["sub"], user.id.to_string());
    assert_eq!(me["roles"], json!([]), "eng is gone, so is the role");
}

#[sqlx::test(migrations = false)]
async fn unsigned_tampered_misaddressed_expired_and_replayed_answers_are_refused(
    pool: sqlx::PgPool,
) {
    let (env, acme, idp) = setup(pool).await;
    provider(&env, &acme, &idp, Linking::None).await;
    for (flaw, says) in [
        ("unsigned", "must be signed"),
        ("tampered", "must be signed"),
        ("wrong_audience", "Audience"),
        ("in_response_to", "InResponseTo"),
    ] {
        idp.next(&ada(), flaw).await;
        let browser = Browser::new(None);
        let page = at_idp(&browser, &start(&env)).await;
        let refused = post(&browser, &page).await;
        assert_eq!(refused.status, 400, "{flaw}: {}", refused.body);
        assert!(
            refused.body.contains("failed validation"),
            "{flaw}: {}",
            refused.body
        );
        assert!(refused.body.contains(says), "{flaw}: {}", refused.body);
        assert!(browser.cookie(&env.url, SESSION).is_none(), "{flaw}");
    }
    for email in ["ada@example.com", "mallory@example.com"] {
        assert!(
            env.store
                .user_by_email(acme.id, email)
                .await
                .unwrap()
                .is_none()
        );
    }

    // The answer arrives in a browser that did not start the sign-in.
    idp.next(&ada(), "none").await;
    let browser = Browser::new(None);
    let page = at_idp(&browser, &start(&env)).await;
    let other = Browser::new(None);
    let refused = post(&other, &page).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(other.cookie(&env.url, SESSION).is_none());

    // Expired by keygate's clock (pysaml2 gives assertions five minutes).
    let browser = Browser::new(None);
    let page = at_idp(&browser, &start(&env)).await;
    env.clock.advance(chrono::Duration::minutes(10));
    let refused = post(&browser, &page).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("expired"), "{}", refused.body);
    env.clock.advance(chrono::Duration::minutes(-10));

    // Two sign-ins whose answers carry one assertion ID: the second is a replay, refused
    // although its request and RelayState are its own.
    idp.next(&ada(), "fixed_id").await;
    let first = Browser::new(None);
    let page = at_idp(&first, &start(&env)).await;
    assert_eq!(post(&first, &page).await.status, 200);
    let second = Browser::new(None);
    let page = at_idp(&second, &start(&env)).await;
    let refused = post(&second, &page).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("used before"), "{}", refused.body);
    assert!(second.cookie(&env.url, SESSION).is_none());
}

#[sqlx::test(migrations = false)]
async fn a_fresh_sign_in_sends_force_authn_and_refuses_an_old_login(pool: sqlx::PgPool) {
    let (env, acme, idp) = setup(pool).await;
    provider(&env, &acme, &idp, Linking::VerifiedEmail).await;
    // An existing account with the address verified: `verifiedEmail` joins it.
    let bob = env.user(&acme, "bob@example.com").await;
    let person = Person {
        subject: "bob-id",
        email: "bob@example.com",
        name: "Bob",
        groups: &[],
    };
    idp.next(&person, "none").await;
    let browser = Browser::new(None);
    let page = at_idp(&browser, &format!("{}?fresh=1", start(&env))).await;
    assert_eq!(idp.last_request().await["force_authn"], true);
    assert_eq!(post(&browser, &page).await.status, 200);
    assert_eq!(userinfo(&env, &browser).await["sub"], bob.to_string());

    // An IdP that ignores ForceAuthn and reports an hour-old login is refused.
    idp.next(&person, "stale_login").await;
    let browser = Browser::new(None);
    let page = at_idp(&browser, &format!("{}?fresh=1", start(&env))).await;
    let refused = post(&browser, &page).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("ForceAuthn"), "{}", refused.body);
}
