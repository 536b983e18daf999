//! One-time tokens (single use, expiry, purpose) and lockout counters.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn one_time_token_single_use_and_expiry(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let new = |tag: &str, purpose, expires_at| NewOneTimeToken {
        token_hash: hash(tag),
        tenant_id: acme.id,
        user_id: Some(ann.id),
        purpose,
        data: serde_json::json!({ "tag": tag }),
        expires_at,
    };
    let v = db
        .insert_one_time_token(&new("verify", TokenPurpose::VerifyEmail, t(3600)))
        .await
        .unwrap();
    assert_eq!(v.used_at, None);
    assert_conflict(
        db.insert_one_time_token(&new("verify", TokenPurpose::VerifyEmail, t(3600)))
            .await,
        "one_time_tokens_hash",
    );

    // Wrong purpose is nothing.
    assert!(
        db.consume_one_time_token(acme.id, TokenPurpose::ResetPassword, &v.token_hash, t(1))
            .await
            .unwrap()
            .is_none()
    );
    let used = db
        .consume_one_time_token(acme.id, TokenPurpose::VerifyEmail, &v.token_hash, t(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.used_at, Some(t(2)));
    assert_eq!(used.data["tag"], "verify");
    assert!(
        db.consume_one_time_token(acme.id, TokenPurpose::VerifyEmail, &v.token_hash, t(3))
            .await
            .unwrap()
            .is_none(),
        "single use"
    );

    // Expiry: refused at and after `expires_at`, and not consumed by the refusal.
    let r = db
        .insert_one_time_token(&new("reset", TokenPurpose::ResetPassword, t(600)))
        .await
        .unwrap();
    assert!(
        db.consume_one_time_token(acme.id, TokenPurpose::ResetPassword, &r.token_hash, t(600))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.consume_one_time_token(acme.id, TokenPurpose::ResetPassword, &r.token_hash, t(599))
            .await
            .unwrap()
            .is_some()
    );

    // Concurrent consumption: one winner.
    let l = db
        .insert_one_time_token(&new("link", TokenPurpose::Link, t(600)))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let store = db.store.clone();
        let h = l.token_hash.clone();
        let tenant = acme.id;
        tasks.push(tokio::spawn(async move {
            store
                .consume_one_time_token(tenant, TokenPurpose::Link, &h, t(10))
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);

    // A new reset link voids the older ones.
    let r1 = db
        .insert_one_time_token(&new("reset-1", TokenPurpose::ResetPassword, t(600)))
        .await
        .unwrap();
    let r2 = db
        .insert_one_time_token(&new("reset-2", TokenPurpose::ResetPassword, t(600)))
        .await
        .unwrap();
    assert_eq!(
        db.invalidate_one_time_tokens(acme.id, ann.id, TokenPurpose::ResetPassword, t(20))
            .await
            .unwrap(),
        2
    );
    for r in [r1, r2] {
        assert!(
            db.consume_one_time_token(acme.id, TokenPurpose::ResetPassword, &r.token_hash, t(21))
                .await
                .unwrap()
                .is_none()
        );
    }

    // An invitation has no account yet.
    let invite = db
        .insert_one_time_token(&NewOneTimeToken {
            user_id: None,
            ..new("invite", TokenPurpose::Invite, t(7200))
        })
        .await
        .unwrap();
    assert_eq!(invite.user_id, None);

    // The janitor removes expired tokens only.
    assert_eq!(db.delete_expired_one_time_tokens(t(3600)).await.unwrap(), 5);
    assert_eq!(
        db.raw
            .count("one_time_tokens", "tenant_id", acme.id.0)
            .await,
        1
    );
}

pub async fn lockout_counters(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    assert!(db.lockout(acme.id, ann.id).await.unwrap().is_none());
    assert!(
        !db.lock_until(acme.id, ann.id, t(60)).await.unwrap(),
        "no counter yet"
    );

    for i in 1..=5 {
        let st = db.record_failure(acme.id, ann.id, t(i)).await.unwrap();
        assert_eq!(st.failures, i);
        assert_eq!(st.last_failure_at, Some(t(i)));
    }
    assert!(db.lock_until(acme.id, ann.id, t(5 + 300)).await.unwrap());
    let st = db.lockout(acme.id, ann.id).await.unwrap().unwrap();
    assert!(st.is_locked(t(6)));
    assert!(!st.is_locked(t(305)));

    // Concurrent failures all count.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store.record_failure(acme.id, ann.id, t(400)).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        db.lockout(acme.id, ann.id).await.unwrap().unwrap().failures,
        15
    );

    // A run of failures is forgotten once its first is a window old: the count starts over
    // there, and the new run's window starts with it.
    let first = t(1);
    let later = first + keygate_core::store::FAILURE_WINDOW;
    let st = db.record_failure(acme.id, ann.id, later).await.unwrap();
    assert_eq!((st.failures, st.created_at), (1, later));
    let st = db
        .record_failure(acme.id, ann.id, later + chrono::Duration::hours(23))
        .await
        .unwrap();
    assert_eq!((st.failures, st.created_at), (2, later));

    db.reset_lockout(acme.id, ann.id).await.unwrap();
    assert!(db.lockout(acme.id, ann.id).await.unwrap().is_none());
    assert_eq!(
        db.record_failure(acme.id, ann.id, t(500))
            .await
            .unwrap()
            .failures,
        1
    );
}
