//! ApiKeys through the directory source: issue, rotation with grace, a lost or foreign
//! Secret, grants changed in place, expiry, paging, and the raw key kept out of logs and
//! status; the same lifecycle on SQLite.

use super::*;

#[sqlx::test(migrations = false)]
async fn api_key_issue_rotate_with_grace_and_revoke_on_delete(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let first = h.raw_key("default", "ci-secret");
    assert!(first.starts_with("kg_"));
    assert!(h.accepted("demo", &first).await);
    let status = api_key_status(&view, "ApiKey default/ci");
    let prefix = first
        .strip_prefix("kg_")
        .unwrap()
        .split_once('_')
        .unwrap()
        .0;
    assert_eq!(status.key_prefix.as_deref(), Some(prefix));
    assert_eq!(status.secret_name.as_deref(), Some("ci-secret"));
    assert!(
        !serde_json::to_string(status).unwrap().contains(&first),
        "the raw key never appears in status"
    );
    let record = h.lookup("demo", &first).await.unwrap();
    assert_eq!(record.roles, ["viewer"]);
    assert_eq!(record.scopes, ["read"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.secret_file("default", "ci-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(h.secret_file("default", "ci-secret")).unwrap();
    assert!(
        text.contains("keygate.dev/api-key: ci")
            && text.contains("app.kubernetes.io/managed-by: keygate-operator"),
        "{text}"
    );

    // Not yet due: nothing changes.
    h.clock.advance(Duration::hours(23));
    h.sync().await;
    assert_eq!(h.raw_key("default", "ci-secret"), first);

    // Due: a new key in the Secret; both work during the grace period.
    h.clock.advance(Duration::hours(1));
    h.sync().await;
    let second = h.raw_key("default", "ci-secret");
    assert_ne!(second, first);
    assert!(
        h.accepted("demo", &first).await,
        "the old key works during the grace period"
    );
    assert!(h.accepted("demo", &second).await);
    h.clock.advance(Duration::minutes(59));
    assert!(h.accepted("demo", &first).await);
    h.clock.advance(Duration::minutes(1));
    assert!(
        !h.accepted("demo", &first).await,
        "the old key is refused after the grace period"
    );
    assert!(h.accepted("demo", &second).await);

    // Deleting the ApiKey revokes at once and pushes the revocation to gateway replicas.
    h.remove("key.yaml");
    h.sync().await;
    assert!(!h.accepted("demo", &second).await);
    let id = h.lookup("demo", &second).await.unwrap().id;
    assert!(h.revocations.revocations().contains(&id.to_string()));
    assert!(!h.secret_file("default", "ci-secret").exists());
}

#[sqlx::test(migrations = false)]
async fn a_deleted_secret_gets_a_new_key_and_the_old_one_is_revoked(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("key.yaml", &api_key("ci", ""));
    h.sync().await;
    let first = h.raw_key("default", "ci-secret");
    std::fs::remove_file(h.secret_file("default", "ci-secret")).unwrap();
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let second = h.raw_key("default", "ci-secret");
    assert_ne!(first, second);
    assert!(
        !h.accepted("demo", &first).await,
        "the old key is revoked at once"
    );
    assert!(h.accepted("demo", &second).await);
    let old = h.lookup("demo", &first).await.unwrap();
    assert!(h.revocations.revocations().contains(&old.id.to_string()));
}

#[sqlx::test(migrations = false)]
async fn changed_grants_apply_in_place_and_the_secret_keeps_its_key(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key(
            "ci",
            "  permissions: [orders.read, orders.write]\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n",
        ),
    );
    h.sync().await;
    let first = h.raw_key("default", "ci-secret");

    // A rotation leaves the previous key in its grace period.
    h.clock.advance(Duration::hours(24));
    h.sync().await;
    let raw = h.raw_key("default", "ci-secret");
    assert_ne!(raw, first);
    assert!(h.accepted("demo", &first).await);
    let before = h.lookup("demo", &raw).await.unwrap();

    // Take a permission away, add a scope and a role, set an expiry: same key, new grants.
    h.clock.advance(Duration::minutes(5));
    h.write(
        "key.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: ci\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n  roles: [viewer, auditor]\n  scopes: [read, write]\n  permissions: [orders.read]\n  expiresAt: \"2026-03-01T00:00:00Z\"\n  rotation:\n    every: 24h\n    gracePeriod: 1h\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    assert_eq!(
        h.raw_key("default", "ci-secret"),
        raw,
        "the Secret keeps its value"
    );
    assert!(h.accepted("demo", &raw).await, "the key keeps working");
    let after = h.lookup("demo", &raw).await.unwrap();
    assert_eq!(after.id, before.id, "the same stored key");
    assert_eq!(after.permissions, ["orders.read"], "orders.write is gone");
    assert_eq!(after.roles, ["auditor", "viewer"]);
    assert_eq!(after.scopes, ["read", "write"]);
    assert_eq!(
        after.expires_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        api_key_status(&view, "ApiKey default/ci")
            .key_prefix
            .as_deref(),
        Some(raw.strip_prefix("kg_").unwrap().split_once('_').unwrap().0)
    );
    // The key still in its grace period lost the permission too.
    let previous = h.lookup("demo", &first).await.unwrap();
    assert!(h.accepted("demo", &first).await);
    assert_eq!(previous.permissions, ["orders.read"]);
    assert!(
        !h.revocations.revocations().contains(&after.id.to_string()),
        "nothing was revoked"
    );

    // Once in place, the next pass writes nothing.
    let snapshot = h.snapshot().await;
    h.sync().await;
    assert_eq!(h.snapshot().await, snapshot);

    // An expiry moved into the past takes the key away at once, in place.
    h.write(
        "key.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: ci\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n  roles: [viewer, auditor]\n  scopes: [read, write]\n  permissions: [orders.read]\n  expiresAt: \"2026-01-02T00:00:00Z\"\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").1, "Expired");
    assert!(!h.accepted("demo", &raw).await);
    assert_eq!(h.raw_key("default", "ci-secret"), raw);
}

#[sqlx::test(migrations = false)]
async fn a_foreign_secret_of_the_same_name_is_left_alone(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    // A Secret someone declared themselves, without keygate's labels.
    h.write(
        "mine.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ci-secret\n  namespace: default\nstringData:\n  apiKey: my-own-value\n",
    );
    h.write("key.yaml", &api_key("ci", ""));
    let view = h.sync().await;
    let (status, reason, message) = ready(&view, "ApiKey default/ci");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretConflict")
    );
    assert!(
        message.contains("Secret default/ci-secret") && message.contains("spec.secretName"),
        "{message}"
    );
    assert!(
        !h.secret_file("default", "ci-secret").exists(),
        "nothing written over it"
    );
    assert!(
        h.ctx
            .store
            .list_api_keys(h.tenant_id("demo").await)
            .await
            .unwrap()
            .is_empty(),
        "no key issued into a Secret it cannot write"
    );
    assert!(
        std::fs::read_to_string(h.source.manifests.join("mine.yaml"))
            .unwrap()
            .contains("my-own-value")
    );

    // Another ApiKey's Secret is foreign too: the second ApiKey naming it gets the conflict.
    h.remove("mine.yaml");
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let raw = h.raw_key("default", "ci-secret");
    h.write(
        "other.yaml",
        "apiVersion: keygate.dev/v1alpha1\nkind: ApiKey\nmetadata:\n  name: other\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  secretName: ci-secret\n",
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/other").1, "SecretConflict");
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    assert_eq!(h.raw_key("default", "ci-secret"), raw, "ci's key untouched");
    assert!(h.accepted("demo", &raw).await);
}

#[sqlx::test(migrations = false)]
async fn every_key_of_a_tenant_is_seen_across_pages(pool: PgPool) {
    // Pages of 2 rows: 5 keys take three pages.
    let h = Harness::postgres(pool).await.with_api_key_pages(2);
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let keys: String = (0..5)
        .map(|i| format!("---\n{}", api_key(&format!("k{i}"), "")))
        .collect();
    h.write("keys.yaml", &keys);
    h.sync().await;
    let raws: Vec<String> = (0..5)
        .map(|i| h.raw_key("default", &format!("k{i}-secret")))
        .collect();

    // A steady pass finds each key (on whichever page) and issues nothing new.
    let before = h.snapshot().await;
    h.sync().await;
    assert_eq!(h.snapshot().await, before, "no key re-issued");

    // The ApiKeys and their Secret files vanish together (a wiped data folder): only the
    // orphan sweep can find their rows, on every page.
    h.remove("keys.yaml");
    std::fs::remove_dir_all(h.dir.path().join("data/secrets")).unwrap();
    h.sync().await;
    for raw in &raws {
        assert!(!h.accepted("demo", raw).await, "an orphaned key is revoked");
    }
}

#[sqlx::test(migrations = false)]
async fn an_expired_key_is_refused_and_reported(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  expiresAt: \"2026-01-02T00:00:00Z\"\n"),
    );
    let view = h.sync().await;
    let expires_at = &api_key_status(&view, "ApiKey default/ci").expires_at;
    assert_eq!(
        serde_json::to_value(expires_at).unwrap(),
        "2026-01-02T00:00:00Z"
    );
    let raw = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &raw).await);
    h.clock.advance(Duration::days(2));
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").1, "Expired");
    assert!(!h.accepted("demo", &raw).await);
    assert_eq!(
        h.raw_key("default", "ci-secret"),
        raw,
        "no new key for an expired ApiKey"
    );
}

#[sqlx::test(migrations = false)]
async fn the_raw_key_never_reaches_logs_or_status(pool: PgPool) {
    let captured = Captured::start();

    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let mut views = vec![h.sync().await];
    let mut raws = vec![h.raw_key("default", "ci-secret")];
    h.clock.advance(Duration::hours(25));
    views.push(h.sync().await);
    raws.push(h.raw_key("default", "ci-secret"));
    std::fs::remove_file(h.secret_file("default", "ci-secret")).unwrap();
    views.push(h.sync().await);
    raws.push(h.raw_key("default", "ci-secret"));
    h.remove("key.yaml");
    views.push(h.sync().await);

    let logs = captured.logs();
    assert!(
        logs.contains("KeyRotated") && logs.contains("SecretLost"),
        "events are logged: {logs}"
    );
    let status_file =
        std::fs::read_to_string(h.dir.path().join("data/status.yaml")).unwrap_or_default();
    for raw in &raws {
        let secret_part = secret_of(raw);
        let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(secret_part)).collect();
        assert!(leaked.is_empty(), "raw key in logs: {leaked:?}");
        assert!(
            !status_file.contains(secret_part),
            "raw key in the status file"
        );
        for view in &views {
            assert!(
                !serde_json::to_string(view).unwrap().contains(secret_part),
                "raw key in status"
            );
        }
    }
}

#[tokio::test]
async fn sqlite_runs_the_same_api_key_lifecycle() {
    let h = Harness::sqlite().await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    h.write("role.yaml", &role("viewer", &["users.read"], &[]));
    h.write(
        "key.yaml",
        &api_key("ci", "  rotation:\n    every: 24h\n    gracePeriod: 1h\n"),
    );
    let view = h.sync().await;
    assert_eq!(ready(&view, "ApiKey default/ci").0, "True");
    let first = h.raw_key("default", "ci-secret");
    h.clock.advance(Duration::hours(24));
    h.sync().await;
    let second = h.raw_key("default", "ci-secret");
    assert!(h.accepted("demo", &first).await && h.accepted("demo", &second).await);
    h.clock.advance(Duration::hours(1));
    assert!(!h.accepted("demo", &first).await);
    h.remove("key.yaml");
    h.sync().await;
    assert!(!h.accepted("demo", &second).await);
}
