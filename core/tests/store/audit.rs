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
