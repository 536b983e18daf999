//! The operator end to end, one test binary (few binaries link faster on small machines):
//! the reconcile core through the directory source, against a real PostgreSQL (a fresh
//! database per test via `#[sqlx::test]`) and, where the backend matters, SQLite (apply →
//! change → delete per kind, idempotence, drift correction, bad specs, tenant deletion
//! policies, ApiKey rotation with its grace window, a lost Secret, metrics); the Kubernetes
//! source over a mocked API server (`kubernetes`); leader election (`leader`). Shared
//! fixtures are in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a failed unwrap is a failed test

mod api_key;
mod kubernetes;
mod leader;
mod oauth_client;
mod role;
mod run;
mod saml;
mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use keygate_core::clock::ManualClock;
use keygate_core::ephemeral::Ephemeral;
use keygate_core::store::RoleSubject;
use sqlx::PgPool;
use std::sync::Arc;
use support::*;

#[sqlx::test(migrations = false)]
async fn tenant_apply_change_and_retain_on_delete(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant default/demo").0, "True");
    let status = tenant_status(&view, "Tenant default/demo");
    assert_eq!(
        status.issuer_url.as_deref(),
        Some("https://auth.example.com/t/demo")
    );
    assert_eq!(
        status.jwks_url.as_deref(),
        Some("https://auth.example.com/t/demo/jwks.json")
    );
    let id = h.tenant_id("demo").await;
    let keys = h.ctx.store.signing_keys(id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(status.active_key_id.as_deref(), Some(keys[0].kid.as_str()));
    // The private key is sealed, bound to its kid.
    let opened = h
        .ctx
        .master_keys
        .open(
            &keys[0].private_key,
            &format!("signing_key:{}", keys[0].kid),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&opened).contains("PRIVATE KEY"));

    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  mfa:\n    policy: \"off\"\n"),
    );
    h.sync().await;
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(
        stored.settings.mfa.policy,
        keygate_core::tenant_settings::MfaPolicy::Off
    );
    assert_eq!(stored.display_name, "demo tenant");

    // A required second factor is enforced by the gateway (sign-in sends a person without
    // one to enrolment), so the operator stores the policy and the tenant is Ready.
    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  mfa:\n    policy: required\n"),
    );
    let view = h.sync().await;
    let (state, _, message) = ready(&view, "Tenant default/demo");
    assert_eq!(state.as_str(), "True", "{message}");
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(
        stored.settings.mfa.policy,
        keygate_core::tenant_settings::MfaPolicy::Required
    );

    // Removing the manifest is a deletion; Retain (the default) disables and keeps data.
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.sync().await;
    h.remove("tenant.yaml");
    let view = h.sync().await;
    assert!(view.get("Tenant default/demo").is_none());
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert!(stored.disabled);
    assert_eq!(h.ctx.store.signing_keys(id).await.unwrap().len(), 1);
    assert!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .is_some(),
        "a retained tenant keeps its roles"
    );
    assert_eq!(ready(&view, "Role default/admin").1, "TenantNotFound");

    // Re-applying takes the retained tenant back, same row and keys.
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant default/demo").0, "True");
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert!(!stored.disabled);
}

#[sqlx::test(migrations = false)]
async fn tenant_delete_policy_erases_its_data(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write(
        "tenant.yaml",
        &tenant("demo", "default", "  deletionPolicy: Delete\n"),
    );
    h.write("role.yaml", &role("admin", &["users.read"], &[]));
    h.write("key.yaml", &api_key("ci", ""));
    h.sync().await;
    let id = h.tenant_id("demo").await;
    assert_eq!(
        h.ctx
            .store
            .tenant_by_name("demo")
            .await
            .unwrap()
            .unwrap()
            .deletion_policy,
        keygate_core::store::DeletionPolicy::Delete,
        "the policy is stored with the tenant, for a deletion the operator never sees"
    );
    let raw = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &raw).await);

    h.remove("tenant.yaml");
    h.remove("role.yaml");
    h.remove("key.yaml");
    h.sync().await;
    assert!(h.ctx.store.tenant_by_name("demo").await.unwrap().is_none());
    assert!(h.ctx.store.signing_keys(id).await.unwrap().is_empty());
    assert!(h.ctx.store.list_roles(id).await.unwrap().is_empty());
    assert!(
        !h.secret_file("default", "ci-secret").exists(),
        "the key's Secret goes with its ApiKey"
    );
}

#[sqlx::test(migrations = false)]
async fn a_taken_tenant_name_changes_nothing_of_the_first(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("a.yaml", &tenant("demo", "team-a", ""));
    h.sync().await;
    let before = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    h.write(
        "b.yaml",
        &tenant("demo", "team-b", "  mfa:\n    policy: \"off\"\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant team-a/demo").0, "True");
    let (state, reason, message) = ready(&view, "Tenant team-b/demo");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "TenantNameTaken")
    );
    assert!(message.contains("another namespace"), "{message}");
    assert_eq!(
        h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap(),
        before
    );
    // Deleting the loser touches nothing either.
    h.remove("b.yaml");
    h.sync().await;
    assert_eq!(
        h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap(),
        before
    );
}

#[sqlx::test(migrations = false)]
async fn role_apply_change_drift_and_delete(pool: PgPool) {
    let h = Harness::postgres(pool.clone()).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "role.yaml",
        &role("admin", &["users.write", "users.read"], &["a@example.com"]),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "Role default/admin").0, "True");
    let id = h.tenant_id("demo").await;
    let stored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.permissions, ["users.read", "users.write"]);
    assert!(
        stored
            .subjects
            .contains(&RoleSubject::UserEmail("a@example.com".into()))
    );
    assert!(
        stored
            .subjects
            .contains(&RoleSubject::Group("keygate-admins".into()))
    );

    // Change: a permission added is live at once.
    h.write(
        "role.yaml",
        &role(
            "admin",
            &["users.read", "users.write", "billing.read"],
            &["a@example.com"],
        ),
    );
    h.sync().await;
    let stored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.permissions,
        ["billing.read", "users.read", "users.write"]
    );

    // Drift: someone edits the row behind the operator's back; the next pass puts it back.
    sqlx::query("UPDATE roles SET permissions = '[\"everything\"]'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM role_bindings")
        .execute(&pool)
        .await
        .unwrap();
    h.sync().await;
    let restored = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.permissions, stored.permissions);
    assert_eq!(restored.subjects, stored.subjects);

    // Delete.
    h.remove("role.yaml");
    let view = h.sync().await;
    assert!(view.get("Role default/admin").is_none());
    assert!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test(migrations = false)]
async fn settings_no_schema_can_check_are_refused_in_the_status(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.sync().await;
    let before = h.snapshot().await;

    // Both lifetimes match the schema's pattern; together they make reuse detection blind.
    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  tokens:\n    refreshIdleTtl: 10s\n    refreshReuseGrace: 10s\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("tokens.refreshReuseGrace"), "{message}");
    assert_eq!(h.snapshot().await, before, "a bad spec writes nothing");
}

/// A cookie domain the gateway's public host (`auth.example.com` here) is not under would
/// make browsers drop the session cookie: refused, nothing written. One that holds it is
/// stored for the gateway.
#[sqlx::test(migrations = false)]
async fn a_cookie_domain_outside_the_public_host_is_refused(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.sync().await;
    let before = h.snapshot().await;

    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  sessions:\n    cookieDomain: example.org\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("sessions.cookieDomain") && message.contains("auth.example.com"),
        "{message}"
    );
    assert_eq!(h.snapshot().await, before, "a bad spec writes nothing");

    // Not a domain at all: the CRD's pattern, applied by the judge to the folder too.
    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  sessions:\n    cookieDomain: .example.com\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.sessions.cookieDomain"), "{message}");

    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  sessions:\n    cookieDomain: example.com\n",
        ),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "Tenant default/demo").0, "True");
    let stored = h.ctx.store.tenant_by_name("demo").await.unwrap().unwrap();
    assert_eq!(
        stored.settings.sessions.cookie_domain.as_deref(),
        Some("example.com")
    );
}

#[sqlx::test(migrations = false)]
async fn a_bad_spec_says_why_and_changes_nothing(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.sync().await;
    let before = h.snapshot().await;
    let id = h.tenant_id("demo").await;
    let role_before = h
        .ctx
        .store
        .role_by_name(id, "admin")
        .await
        .unwrap()
        .unwrap();

    // Permissions must be lowercase (a schema pattern, which the folder source applies too).
    h.write(
        "role.yaml",
        &role("admin", &["Users.Read"], &["a@example.com"]),
    );
    // A password policy whose minimum exceeds its maximum (a CEL rule in the CRD).
    h.write(
        "tenant.yaml",
        &tenant(
            "demo",
            "default",
            "  passwordPolicy:\n    minLength: 64\n    maxLength: 32\n",
        ),
    );
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "Role default/admin");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.permissions[0]"), "{message}");
    let (state, reason, message) = ready(&view, "Tenant default/demo");
    assert_eq!((state.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("minLength"), "{message}");
    assert_eq!(h.snapshot().await, before, "a bad spec writes nothing");
    assert_eq!(
        h.ctx
            .store
            .role_by_name(id, "admin")
            .await
            .unwrap()
            .unwrap(),
        role_before
    );

    // A Role pointing at a tenant that does not exist.
    h.write(
        "other.yaml",
        &role("admin", &["users.read"], &[])
            .replace("name: admin", "name: stray")
            .replace("name: demo", "name: nowhere"),
    );
    let view = h.sync().await;
    let (_, reason, message) = ready(&view, "Role default/stray");
    assert_eq!(reason, "TenantNotFound");
    assert!(message.contains("nowhere"), "{message}");
}

#[sqlx::test(migrations = false)]
async fn identity_provider_secret_from_the_folder_sealed_in_the_store(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("idp.yaml", IDP);
    let view = h.sync().await;
    let (state, reason, message) = ready(&view, "IdentityProvider default/corp");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "SecretNotFound")
    );
    assert!(
        message.contains("default/corp-oidc") && message.contains("clientSecret"),
        "{message}"
    );
    let id = h.tenant_id("demo").await;
    assert!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().is_none(),
        "nothing stored without its secret"
    );

    h.write("secret.yaml", &idp_secret("s3cret-one"));
    let view = h.sync().await;
    // Stored and sealed, but not Ready: its issuer cannot be reached, so nobody could sign
    // in through it. The status says why and names the redirect URI to register.
    let (state, reason, message) = ready(&view, "IdentityProvider default/corp");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ProviderUnreachable"),
        "{message}"
    );
    assert!(message.contains("https://idp.example.com"), "{message}");
    let row = h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap();
    let sealed = row.client_secret.clone().unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("s3cret-one"),
        "stored sealed"
    );
    let context = keygate_operator::identity_provider::idp_secret_context(row.id);
    assert_eq!(
        &*h.ctx.master_keys.open(&sealed, &context).unwrap(),
        b"s3cret-one"
    );
    // Stored as the settings the gateway signs people in with.
    assert_eq!(row.config["protocol"]["type"], "oidc");
    assert_eq!(row.config["protocol"]["clientId"], "keygate");
    assert_eq!(row.config["protocol"]["issuer"], "https://idp.example.com");

    // Unchanged secret: the same ciphertext, nothing written.
    h.sync().await;
    assert_eq!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap(),
        row
    );

    // A changed Secret is picked up.
    h.write("secret.yaml", &idp_secret("s3cret-two"));
    h.sync().await;
    let row = h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap();
    assert_eq!(
        &*h.ctx
            .master_keys
            .open(row.client_secret.as_ref().unwrap(), &context)
            .unwrap(),
        b"s3cret-two"
    );

    // The Secret disappears: status says so, the stored provider is left as it was.
    h.remove("secret.yaml");
    let view = h.sync().await;
    assert_eq!(
        ready(&view, "IdentityProvider default/corp").1,
        "SecretNotFound"
    );
    assert_eq!(
        h.ctx.store.idp_by_name(id, "corp").await.unwrap().unwrap(),
        row
    );

    h.remove("idp.yaml");
    h.sync().await;
    assert!(h.ctx.store.idp_by_name(id, "corp").await.unwrap().is_none());
}

#[sqlx::test(migrations = false)]
async fn the_orphan_sweep_leaves_unwatched_namespaces_alone(pool: PgPool) {
    use keygate_operator::orphans::{Cleaned, LiveSet, clean};
    let h = Harness::postgres(pool).await;
    h.write("a.yaml", &tenant("team-a", "ns-a", ""));
    h.write("b.yaml", &tenant("team-b", "ns-b", ""));
    h.sync().await;
    let effects = keygate_operator::Effects {
        secrets: Arc::new(keygate_operator::secrets::DirectorySecrets::default()),
        events: Arc::new(keygate_operator::effects::LogEvents),
        revocations: None,
        cache: None,
    };
    let disabled = |name: &'static str| {
        let store = h.ctx.store.clone();
        async move { store.tenant_by_name(name).await.unwrap().unwrap().disabled }
    };
    // An operator watching ns-a (and ns-c, empty) sees team-a; team-b is not its to judge.
    let watched = Some(["ns-a".to_owned(), "ns-c".to_owned()].into());
    let live = LiveSet {
        tenants: ["dir:ns-a/Tenant/team-a".to_owned()].into(),
        namespaces: watched.clone(),
        ..LiveSet::default()
    };
    assert_eq!(
        clean(&h.ctx, &effects, &live).await.unwrap(),
        Cleaned::default()
    );
    assert!(
        !disabled("team-b").await,
        "a tenant of an unwatched namespace is kept"
    );
    // Within its namespaces it still cleans: team-a gone from the view is retired.
    let live = LiveSet {
        namespaces: watched,
        ..LiveSet::default()
    };
    assert_eq!(clean(&h.ctx, &effects, &live).await.unwrap().tenants, 1);
    assert!(disabled("team-a").await);
    assert!(!disabled("team-b").await);
}

#[sqlx::test(migrations = false)]
async fn a_second_pass_writes_nothing(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("idp.yaml", IDP);
    h.write("secret.yaml", &idp_secret("s3cret"));
    h.write(
        "role.yaml",
        &role("admin", &["users.read"], &["a@example.com"]),
    );
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let first = h.sync().await;
    let before = h.snapshot().await;
    let secret_before = std::fs::read(h.secret_file("default", "ci-secret")).unwrap();
    h.clock.advance(Duration::minutes(5));
    let second = h.sync().await;
    assert_eq!(h.snapshot().await, before);
    assert_eq!(
        std::fs::read(h.secret_file("default", "ci-secret")).unwrap(),
        secret_before
    );
    assert_eq!(
        first.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        second.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    // The status view keeps transition times of unchanged conditions.
    let status_file = std::fs::read_to_string(h.dir.path().join("data/status.yaml")).unwrap();
    assert!(
        status_file.contains("Tenant default/demo") && status_file.contains("ApiKey default/ci"),
        "{status_file}"
    );
    assert_eq!(first, second, "nothing changed, so no status changed");
}
/// `/metrics` lists the per-kind families after a pass, with fixed short label values.
#[sqlx::test(migrations = false)]
async fn metrics_count_reconciles_per_kind(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("role.yaml", &role("admin", &["users.read"], &[]));
    h.sync().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = keygate_operator::health_router(h.registry.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("keygate_operator_reconciles_total{kind=\"tenant\"}"),
        "{response}"
    );
    assert!(
        response.contains("keygate_operator_reconciles_total{kind=\"role\"}"),
        "{response}"
    );
    assert!(
        response.contains("keygate_operator_reconcile_duration_seconds_bucket{kind=\"role\""),
        "{response}"
    );
    assert!(!response.contains("admin"), "no resource names in labels");
}
