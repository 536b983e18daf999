//! What the fuzz targets feed hostile bytes to, as plain functions so that `cargo test`
//! (stable) replays seeds and saved crashes through exactly what `cargo fuzz` runs.
//!
//! - [`token`]: a credential as forward-auth and the JSON API receive it — a bearer token,
//!   an API key, a session cookie — either raw bytes or a real token of the fuzz tenant with
//!   bytes spliced in, so JWT header, claims and signature parsing are all reached.
//! - [`forward_auth_headers`]: a forward-auth request as a proxy sends it: the requirements
//!   query string and any headers (ingress-nginx's `X-Original-*`, Traefik's
//!   `X-Forwarded-*`, Envoy's appended path).
//! - [`manifests`]: a manifest folder's YAML, loaded and judged as `keygate dev` does.
//!
//! Each asserts what a user would notice: no panic, and no 5xx for bad input (forward-auth
//! answers 2xx, 302, 401 or 403; the API 4xx).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use keygate_core::clock::SystemClock;
use keygate_core::crypto::envelope::MasterKeys;
use keygate_core::crypto::password::{HashParams, PasswordHasher};
use keygate_core::crypto::random::{random_alphanumeric, random_token};
use keygate_core::crypto::sha256;
use keygate_core::crypto::signing::{self, SigningAlgorithm};
use keygate_core::store::{NewApiKey, NewUser, SigningKeyRecord, Store, TenantUpsert, UserStatus};
use keygate_gateway::AppState;
use keygate_gateway::identity::{IdentityDeps, IdentityService, PasswordSignIn, RequestMeta};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const TENANT: &str = "fuzz";
const PUBLIC_URL: &str = "https://auth.example.com";
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "violet-anchor-tundra-42";

/// One gateway (SQLite in a temp dir, a real `IdentityService`) shared by every run of a
/// process, with a real access token, API key and session cookie of its tenant.
struct Gateway {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    access_token: String,
    api_key: String,
    cookie: String,
    _dir: tempfile::TempDir,
}

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(start)
}

fn start() -> Gateway {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("fuzz.db").display());
    let (app, access_token, api_key, cookie) = rt.block_on(async {
        let store = keygate_core::store::connect(&db).await.unwrap();
        store.migrate().await.unwrap();
        let master = MasterKeys::parse(&MasterKeys::generate_spec("k1").unwrap()).unwrap();
        let hasher = PasswordHasher::new(HashParams::insecure_for_tests(), 1).unwrap();
        let api_key = seed(store.as_ref(), &master, &hasher).await;
        let mut deps = IdentityDeps::new(store, master, PUBLIC_URL, Arc::new(SystemClock)).unwrap();
        deps.hasher = hasher;
        let identity = IdentityService::new(deps);
        let done = identity
            .sign_in(
                TENANT,
                PasswordSignIn {
                    email: EMAIL.into(),
                    password: PASSWORD.into(),
                    browser: true,
                    ..PasswordSignIn::default()
                },
                &RequestMeta::default(),
            )
            .await
            .unwrap()
            .signed_in()
            .expect("the fuzz tenant asks for no second factor");
        let app = keygate_gateway::app(AppState::builder(identity).build());
        (
            app,
            done.tokens.access_token,
            api_key,
            done.session_cookie
                .expect("a browser sign-in sets a cookie"),
        )
    });
    Gateway {
        rt,
        app,
        access_token,
        api_key,
        cookie,
        _dir: dir,
    }
}

/// Writes the fuzz tenant, its active EdDSA signing key, one person with a password and
/// one API key into `store`; returns the raw API key.
async fn seed(store: &dyn Store, master: &MasterKeys, hasher: &PasswordHasher) -> String {
    let tenant = store
        .upsert_tenant(&TenantUpsert {
            name: TENANT.into(),
            namespace: "default".into(),
            owner_uid: "fuzz".into(),
            display_name: "Fuzz".into(),
            settings: serde_json::from_value(serde_json::json!({
                "redirects": { "allowedOrigins": ["https://app.example.com"] },
            }))
            .unwrap(),
            deletion_policy: Default::default(),
            generation: 1,
        })
        .await
        .unwrap();
    let key = signing::generate(SigningAlgorithm::EdDSA).unwrap();
    let now = chrono::Utc::now();
    store
        .insert_signing_key(&SigningKeyRecord {
            kid: key.kid.clone(),
            tenant_id: tenant.id,
            algorithm: "EdDSA".into(),
            public_jwk: serde_json::to_value(&key.public_jwk).unwrap(),
            private_key: master
                .seal(
                    key.private_pem.as_bytes(),
                    &format!("signing_key:{}", key.kid),
                )
                .unwrap(),
            created_at: now - chrono::Duration::hours(1),
            activates_at: now - chrono::Duration::hours(1),
            retires_at: None,
        })
        .await
        .unwrap();
    let user = store
        .insert_user(&NewUser {
            tenant_id: tenant.id,
            email: EMAIL.into(),
            display_name: "Ada".into(),
            status: UserStatus::Active,
            email_verified: true,
            must_change_password: false,
            password_hash: None,
            groups: vec![],
        })
        .await
        .unwrap();
    let hash = hasher.hash(PASSWORD).await.unwrap();
    store
        .set_password(tenant.id, user.id, Some(&hash), 5, false)
        .await
        .unwrap();
    let prefix = random_alphanumeric(12).unwrap();
    let api_key = format!("kg_{prefix}_{}", random_token().unwrap());
    store
        .insert_api_key(&NewApiKey {
            tenant_id: tenant.id,
            owner_uid: "fuzz".into(),
            name: "fuzz".into(),
            prefix,
            hash: sha256(api_key.as_bytes()).to_vec(),
            roles: vec![],
            permissions: vec![],
            scopes: vec![],
            expires_at: None,
        })
        .await
        .unwrap();
    api_key
}

/// Sends `request` through the whole router; returns its status.
fn send(request: Request<Body>) -> u16 {
    let g = gateway();
    g.rt.block_on(async { g.app.clone().oneshot(request).await.unwrap() })
        .status()
        .as_u16()
}

/// `real` with `data[2..]` spliced in at the position `data[0..2]` names.
fn spliced(real: &str, data: &[u8]) -> Vec<u8> {
    let mut out = real.as_bytes().to_vec();
    let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % (out.len() + 1);
    let end = (at + data.len() / 4).min(out.len());
    out.splice(at..end, data[2..].iter().copied());
    out
}

/// A credential, raw or a mutation of a real one, at forward-auth and at `/userinfo`.
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let g = gateway();
    let value = match mode % 6 {
        0 | 1 => rest.to_vec(),
        2 | 3 if rest.len() >= 2 => spliced(&g.access_token, rest),
        4 if rest.len() >= 2 => spliced(&g.api_key, rest),
        5 if rest.len() >= 2 => spliced(&g.cookie, rest),
        _ => return,
    };
    let (name, value) = match mode % 6 {
        0 | 2 | 4 => ("authorization", [b"Bearer ".as_slice(), &value].concat()),
        1 => ("x-api-key", value),
        3 => ("authorization", value),
        _ => (
            "cookie",
            [b"__Host-keygate_session=".as_slice(), &value].concat(),
        ),
    };
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    for uri in [
        format!("/forward-auth?tenant={TENANT}"),
        format!("/t/{TENANT}/userinfo"),
    ] {
        let request = Request::builder()
            .uri(&uri)
            .header(name, value.clone())
            .body(Body::empty())
            .unwrap();
        let status = send(request);
        assert!(
            matches!(status, 200 | 302 | 401 | 403),
            "{uri} answered {status} to {name}: {value:?}"
        );
    }
}

/// A forward-auth request: the first line is the query string (after
/// `/forward-auth`, so `/path?tenant=…` is Envoy's appended path), each further line a
/// `name: value` header.
pub fn forward_auth_headers(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(first) = lines.next() else {
        return;
    };
    let Ok(first) = std::str::from_utf8(first) else {
        return;
    };
    let uri = format!("/forward-auth{first}");
    let mut builder = Request::builder().uri(&uri);
    if builder.uri_ref().is_none() {
        return;
    }
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(request) = builder.body(Body::empty()) else {
        return;
    };
    let status = send(request);
    assert!(
        matches!(status, 200..=299 | 302 | 401 | 403 | 404),
        "{uri} answered {status}"
    );
}

/// A manifest file: loaded, and each resource judged, as the directory source does.
pub fn manifests(data: &[u8]) {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(resources) = keygate_crds::load_manifests(yaml) {
        for resource in &resources {
            let _ = keygate_crds::admit(resource);
        }
    }
}
