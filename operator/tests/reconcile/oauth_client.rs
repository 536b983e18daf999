//! OAuthClients through the directory source and the mocked Kubernetes API: the client is
//! registered, a confidential client's secret is written only to its owned Secret and
//! rotates with grace, a lost Secret gets a new secret, deleting the client revokes the
//! sessions issued to it, and a bad spec says why and writes nothing.

use super::*;
use keygate_core::ids::TenantId;
use keygate_core::store::{
    ClientAuthMethod, ClientType, GrantType, NewSession, NewUser, UserStatus,
};
use keygate_operator::Status;
use keygate_operator::secrets::{parse_secrets, secret_value};

fn client(name: &str, body: &str) -> String {
    format!(
        "apiVersion: keygate.dev/v1alpha1\nkind: OAuthClient\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n{body}"
    )
}

const GRAFANA: &str = "  displayName: Grafana\n  type: confidential\n  secretName: grafana-oidc\n  redirectUris: [\"https://grafana.example.com/login/generic_oauth\"]\n  allowedScopes: [openid, email, profile]\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n";
const CLI: &str = "  type: public\n  redirectUris: [\"http://127.0.0.1/callback\"]\n  grantTypes: [authorization_code, refresh_token, device_code]\n";

/// The client secret the operator wrote into a Secret file, and the whole Secret's text.
fn written_secret(h: &Harness, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(h.secret_file("default", name)).unwrap();
    let secret = parse_secrets(&text).unwrap().pop().unwrap();
    assert_eq!(
        secret_value(&secret, "clientId").as_deref(),
        Some(&b"grafana"[..])
    );
    let raw = String::from_utf8(secret_value(&secret, "clientSecret").unwrap()).unwrap();
    (raw, text)
}

/// Whether `raw` authenticates client `client_id` now, as the gateway compares it.
async fn secret_accepted(h: &Harness, client_id: &str, raw: &str) -> bool {
    let tenant = h.tenant_id("demo").await;
    let Some(client) = h.ctx.store.oauth_client(tenant, client_id).await.unwrap() else {
        return false;
    };
    let now = h.clock.now_utc();
    let hash = keygate_core::crypto::sha256(raw.as_bytes());
    h.ctx
        .store
        .client_secrets(tenant, client.id)
        .await
        .unwrap()
        .iter()
        .any(|s| s.is_usable(now) && keygate_core::crypto::constant_time_eq(&s.hash, &hash))
}

/// A session of a new account issued to `client_id`, as the gateway opens one.
async fn session_for(
    h: &Harness,
    tenant: TenantId,
    client_id: &str,
) -> keygate_core::ids::SessionId {
    let now = h.clock.now_utc();
    let user = h
        .ctx
        .store
        .insert_user(&NewUser {
            tenant_id: tenant,
            email: format!("{client_id}-user@example.com"),
            display_name: "someone".into(),
            status: UserStatus::Active,
            email_verified: true,
            must_change_password: false,
            password_hash: None,
            groups: Vec::new(),
        })
        .await
        .unwrap();
    h.ctx
        .store
        .insert_session(&NewSession {
            tenant_id: tenant,
            user_id: user.id,
            user_agent: None,
            ip: None,
            amr: vec!["pwd".into()],
            acr: None,
            auth_time: now,
            created_at: now,
            idle_expires_at: now + Duration::hours(1),
            absolute_expires_at: now + Duration::hours(8),
            token_hash: None,
            client_id: client_id.into(),
            scope: "openid".into(),
        })
        .await
        .unwrap()
        .id
}

#[sqlx::test(migrations = false)]
async fn oauth_client_secret_owned_rotated_with_grace_and_deletion_revokes_its_tokens(
    pool: PgPool,
) {
    let captured = Captured::start();
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("grafana.yaml", &client("grafana", GRAFANA));
    h.write("cli.yaml", &client("kubectl", CLI));
    let view = h.sync().await;
    assert_eq!(ready(&view, "OAuthClient default/grafana").0, "True");
    assert_eq!(ready(&view, "OAuthClient default/kubectl").0, "True");
    let id = h.tenant_id("demo").await;

    let stored = h
        .ctx
        .store
        .oauth_client(id, "grafana")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_type, ClientType::Confidential);
    assert_eq!(
        stored.token_endpoint_auth_method,
        ClientAuthMethod::ClientSecretBasic
    );
    assert_eq!(stored.display_name, "Grafana");
    assert_eq!(stored.allowed_scopes, ["openid", "email", "profile"]);
    let cli = h
        .ctx
        .store
        .oauth_client(id, "kubectl")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cli.token_endpoint_auth_method, ClientAuthMethod::None);
    assert!(cli.allows_grant(GrantType::DeviceCode));
    assert!(cli.redirect_uri_allowed("http://127.0.0.1:49152/callback"));
    assert!(
        h.ctx
            .store
            .client_secrets(id, cli.id)
            .await
            .unwrap()
            .is_empty(),
        "a public client has no secret"
    );

    // The secret is in the owned Secret and nowhere else; the store keeps its hash.
    let (first, text) = written_secret(&h, "grafana-oidc");
    assert!(first.starts_with("kgcs_"), "never mistaken for an API key");
    assert!(
        text.contains("keygate.dev/oauth-client: grafana")
            && text.contains("app.kubernetes.io/managed-by: keygate-operator"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.secret_file("default", "grafana-oidc"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(secret_accepted(&h, "grafana", &first).await);
    let status = match view.get("OAuthClient default/grafana") {
        Some(Status::OAuthClient(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(status.client_id.as_deref(), Some("grafana"));
    assert_eq!(status.secret_name.as_deref(), Some("grafana-oidc"));
    let secret_part = first.splitn(3, '_').nth(2).unwrap();
    assert!(
        !serde_json::to_string(&status)
            .unwrap()
            .contains(secret_part)
    );

    // Not yet due: the same secret. Due: a new one, the old one accepted for the grace period.
    h.clock.advance(Duration::hours(23));
    h.sync().await;
    assert_eq!(written_secret(&h, "grafana-oidc").0, first);
    h.clock.advance(Duration::hours(1));
    h.sync().await;
    let second = written_secret(&h, "grafana-oidc").0;
    assert_ne!(second, first);
    assert!(
        secret_accepted(&h, "grafana", &first).await,
        "in its grace period"
    );
    assert!(secret_accepted(&h, "grafana", &second).await);
    h.clock.advance(Duration::minutes(60));
    assert!(
        !secret_accepted(&h, "grafana", &first).await,
        "past its grace period"
    );
    assert!(secret_accepted(&h, "grafana", &second).await);

    // A Secret deleted by hand: a new secret at once, the old one revoked at once.
    std::fs::remove_file(h.secret_file("default", "grafana-oidc")).unwrap();
    h.sync().await;
    let third = written_secret(&h, "grafana-oidc").0;
    assert_ne!(third, second);
    assert!(!secret_accepted(&h, "grafana", &second).await);
    assert!(secret_accepted(&h, "grafana", &third).await);

    // Deleting the client revokes the sessions issued to it (on every replica), not others'.
    let grafana_session = session_for(&h, id, "grafana").await;
    let own_session = session_for(&h, id, "keygate").await;
    h.remove("grafana.yaml");
    let view = h.sync().await;
    assert!(view.get("OAuthClient default/grafana").is_none());
    assert!(
        h.ctx
            .store
            .oauth_client(id, "grafana")
            .await
            .unwrap()
            .is_none()
    );
    let now = h.clock.now_utc();
    let session = h
        .ctx
        .store
        .session(id, grafana_session)
        .await
        .unwrap()
        .unwrap();
    assert!(!session.is_active(now), "the client's session is revoked");
    assert!(
        h.revocations
            .revocations()
            .contains(&grafana_session.to_string())
    );
    assert!(
        h.ctx
            .store
            .session(id, own_session)
            .await
            .unwrap()
            .unwrap()
            .is_active(now),
        "sessions of other clients stay"
    );
    assert!(!h.secret_file("default", "grafana-oidc").exists());
    assert!(!secret_accepted(&h, "grafana", &third).await);
    assert!(
        h.ctx
            .store
            .oauth_client(id, "kubectl")
            .await
            .unwrap()
            .is_some()
    );

    let logs = captured.logs();
    for raw in [&first, &second, &third] {
        assert!(
            !logs.contains(raw.splitn(3, '_').nth(2).unwrap()),
            "no secret in a log line"
        );
    }
}

#[sqlx::test(migrations = false)]
async fn an_invalid_client_spec_says_why_and_writes_nothing(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.sync().await;
    let id = h.tenant_id("demo").await;
    let cases = [
        (
            "public-with-secret",
            "  type: public\n  secretName: leaked\n  redirectUris: [\"https://app.example.com/cb\"]\n",
            "a public client has no secret",
        ),
        (
            "plain-http",
            "  type: confidential\n  secretName: app-oidc\n  redirectUris: [\"http://app.example.com/cb\"]\n",
            "spec.redirectUris[0]",
        ),
        (
            "public-machine",
            "  type: public\n  redirectUris: [\"https://app.example.com/cb\"]\n  grantTypes: [client_credentials]\n",
            "client_credentials is for confidential clients only",
        ),
        (
            "keygate",
            "  type: public\n  redirectUris: [\"https://app.example.com/cb\"]\n",
            "built-in client",
        ),
    ];
    for (name, body, _) in cases {
        h.write(&format!("{name}.yaml"), &client(name, body));
    }
    let view = h.sync().await;
    for (name, _, expect) in cases {
        let (state, reason, message) = ready(&view, &format!("OAuthClient default/{name}"));
        assert_eq!(
            (state.as_str(), reason.as_str()),
            ("False", "InvalidSpec"),
            "{name}"
        );
        assert!(message.contains(expect), "{name}: {message}");
    }
    assert!(h.ctx.store.list_oauth_clients(id).await.unwrap().is_empty());
    assert!(!h.secret_file("default", "leaked").exists());
    assert!(!h.secret_file("default", "app-oidc").exists());

    // A Secret of that name someone else made is left alone and nothing is stored.
    h.write(
        "foreign.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: taken\n  namespace: default\nstringData:\n  clientSecret: theirs\n",
    );
    h.write(
        "app.yaml",
        &client(
            "app",
            "  type: confidential\n  secretName: taken\n  redirectUris: [\"https://app.example.com/cb\"]\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "OAuthClient default/app");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "SecretConflict")
    );
    assert!(message.contains("default/taken"), "{message}");
    assert!(h.ctx.store.oauth_client(id, "app").await.unwrap().is_none());
}

#[sqlx::test(migrations = false)]
async fn an_id_token_algorithm_the_tenant_keeps_no_keys_of_is_refused(pool: PgPool) {
    use keygate_core::crypto::signing::SigningAlgorithm;
    let h = Harness::postgres(pool).await;
    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  signing:\n    algorithm: ES256\n"),
    );
    h.write(
        "legacy.yaml",
        &client(
            "legacy",
            "  type: public\n  redirectUris: [\"http://127.0.0.1/callback\"]\n  idTokenSignedResponseAlg: RS256\n",
        ),
    );
    h.write(
        "edwards.yaml",
        &client(
            "edwards",
            "  type: public\n  redirectUris: [\"http://127.0.0.1/callback\"]\n  idTokenSignedResponseAlg: EdDSA\n",
        ),
    );
    let view = h.sync().await;
    let id = h.tenant_id("demo").await;

    // RS256 is kept beside ES256 for ID tokens: the client is registered with it.
    assert_eq!(ready(&view, "OAuthClient default/legacy").0, "True");
    let legacy = h
        .ctx
        .store
        .oauth_client(id, "legacy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        legacy.id_token_signed_response_alg,
        Some(SigningAlgorithm::RS256)
    );
    let mut kept: Vec<_> = h
        .ctx
        .store
        .signing_keys(id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.algorithm)
        .collect();
    kept.sort();
    assert_eq!(kept, ["ES256", "RS256"]);

    // EdDSA is not: refused with the reason and what to do, nothing stored.
    let (state, reason, message) = ready(&view, "OAuthClient default/edwards");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "SigningAlgorithmUnavailable")
    );
    assert!(
        message.contains("EdDSA") && message.contains("ES256 and RS256"),
        "{message}"
    );
    assert!(
        h.ctx
            .store
            .oauth_client(id, "edwards")
            .await
            .unwrap()
            .is_none()
    );
}
