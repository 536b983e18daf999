//! The audit log: append-only in the database itself, queried per tenant with a cap.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn audit_update_and_delete_refused(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let e = db
        .append_audit(&event(acme.id, "login.failed", None, t0()))
        .await
        .unwrap();
    assert_eq!(e.kind, "login.failed");
    assert_eq!(e.data["reason"], "test");

    for sql in [
        "UPDATE audit_events SET kind = 'login.ok'",
        "UPDATE audit_events SET data = data WHERE kind = 'login.failed'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE kind = 'login.failed'",
    ] {
        let err = db.raw.execute(sql).await.expect_err(sql);
        let msg = err
            .as_database_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("audit_events is append-only"), "{sql}: {err}");
        assert!(
            matches!(StoreError::from(err), StoreError::AppendOnly),
            "{sql}"
        );
    }
    if let Raw::Pg(_) = db.raw {
        let err = db
            .raw
            .execute("TRUNCATE audit_events")
            .await
            .expect_err("truncate");
        assert!(matches!(StoreError::from(err), StoreError::AppendOnly));
    }

    // Deleting the tenant does not touch the trail either.
    assert!(db.delete_tenant(acme.id).await.unwrap());
    let after = db
        .query_audit(acme.id, &AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(after, [e]);
}

pub async fn audit_query_capped_and_filtered(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let total = AUDIT_QUERY_MAX as i64 + 5;
    for i in 0..total {
        let (kind, actor) = if i % 2 == 0 {
            ("login.ok", Some(ann.id))
        } else {
            ("login.failed", None)
        };
        db.append_audit(&event(acme.id, kind, actor, t(i)))
            .await
            .unwrap();
    }
    let all = db
        .query_audit(acme.id, &AuditFilter::default(), u32::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), AUDIT_QUERY_MAX as usize, "the limit is capped");
    assert_eq!(all[0].at, t(total - 1), "newest first");
    assert!(all.windows(2).all(|w| w[0].at > w[1].at));

    let three = db
        .query_audit(acme.id, &AuditFilter::default(), 3)
        .await
        .unwrap();
    assert_eq!(
        three.iter().map(|e| e.at).collect::<Vec<_>>(),
        [t(total - 1), t(total - 2), t(total - 3)]
    );

    let failed = AuditFilter {
        kind: Some("login.failed".into()),
        ..AuditFilter::default()
    };
    let got = db.query_audit(acme.id, &failed, 10).await.unwrap();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|e| e.kind == "login.failed" && e.actor_user_id.is_none())
    );

    let window = AuditFilter {
        actor_user_id: Some(ann.id),
        since: Some(t(10)),
        until: Some(t(20)),
        ..AuditFilter::default()
    };
    let got = db.query_audit(acme.id, &window, 100).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.at).collect::<Vec<_>>(),
        [t(18), t(16), t(14), t(12), t(10)]
    );
    assert!(
        got.iter()
            .all(|e| e.actor_user_id == Some(ann.id) && e.ip.as_deref() == Some("198.51.100.7"))
    );

    // Paging backwards with `until` reaches the oldest events past the cap.
    let oldest = AuditFilter {
        until: Some(all[all.len() - 1].at),
        ..AuditFilter::default()
    };
    assert_eq!(
        db.query_audit(acme.id, &oldest, 100).await.unwrap().len(),
        5
    );
}

/// Audit retention per tenant (`audit.retentionDays`): the janitor's sweep removes rows older
/// than their tenant's retention and keeps the rest; a deleted tenant's trail keeps the default
/// 400 days; the database's clock bounds "now", so a caller's clock far ahead deletes nothing
/// more; and a plain DELETE of a row within retention is still refused.
pub async fn audit_rows_past_their_tenants_retention_are_swept(db: &Db) {
    let now = chrono::Utc::now();
    let days = |n: i64| now - chrono::Duration::days(n);
    let globex = tenant(&**db, "globex").await; // the default, 400 days
    let mut short = TenantUpsert {
        name: "acme".into(),
        namespace: "ns-acme".into(),
        owner_uid: "uid-acme".into(),
        display_name: "ACME".into(),
        settings: keygate_core::tenant_settings::TenantSettings::default(),
        deletion_policy: DeletionPolicy::Retain,
        generation: 1,
    };
    short.settings.audit.retention_days = 30;
    let acme = db.upsert_tenant(&short).await.unwrap();
    let gone_tenant = keygate_core::ids::TenantId::new();
    for (tenant, age) in [
        (acme.id, 31),
        (acme.id, 29),
        (globex.id, 401),
        (globex.id, 399),
        (globex.id, 31),
        (gone_tenant, 401),
        (gone_tenant, 399),
    ] {
        db.append_audit(&event(tenant, "user.sign_in", None, days(age)))
            .await
            .unwrap();
    }
    let ages = |rows: Vec<AuditEvent>| -> Vec<i64> {
        rows.iter().map(|e| (now - e.at).num_days()).collect()
    };
    let kept = |tenant| async move {
        ages(
            db.query_audit(tenant, &AuditFilter::default(), 100)
                .await
                .unwrap(),
        )
    };

    // Nothing is deleted within retention, even with a plain DELETE as the schema owner.
    let within = "DELETE FROM audit_events WHERE kind = 'user.sign_in'";
    let refused = db.raw.execute(within).await.expect_err(within);
    assert!(matches!(StoreError::from(refused), StoreError::AppendOnly));

    let swept = db.sweep_expired(now).await.unwrap().unwrap();
    assert_eq!(swept.audit_events, 3);
    assert_eq!(kept(acme.id).await, [29]);
    assert_eq!(kept(globex.id).await, [31, 399]);
    assert_eq!(kept(gone_tenant).await, [399]);

    // A caller whose clock is far ahead cannot reach rows the database's clock keeps.
    let ahead = db
        .sweep_expired(now + chrono::Duration::days(1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ahead.audit_events, 0);
    assert_eq!(kept(acme.id).await, [29]);

    // Shortening a tenant's retention takes effect at the next sweep.
    short.settings.audit.retention_days = 1;
    short.generation = 2;
    db.upsert_tenant(&short).await.unwrap();
    assert_eq!(
        db.sweep_expired(now).await.unwrap().unwrap().audit_events,
        1
    );
    assert!(kept(acme.id).await.is_empty());
}
