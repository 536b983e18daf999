//! Accounts, password history and GDPR erasure.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn email_unique_case_insensitively(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let other = tenant(&**db, "other").await;
    let ann = user(&**db, acme.id, "Ann.Lee@Example.com").await;
    assert_eq!(
        ann.email, "Ann.Lee@Example.com",
        "the email is kept as typed"
    );

    assert_conflict(
        db.insert_user(&new_user(acme.id, "ann.lee@example.COM"))
            .await,
        "users_email",
    );
    assert_conflict(
        db.insert_user(&new_user(acme.id, "  ANN.LEE@EXAMPLE.COM "))
            .await,
        "users_email",
    );
    // Unicode case folding is keygate's, so both backends agree.
    user(&**db, acme.id, "ÉMILE@example.com").await;
    assert_conflict(
        db.insert_user(&new_user(acme.id, "émile@example.com"))
            .await,
        "users_email",
    );

    let found = db
        .user_by_email(acme.id, "ANN.LEE@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ann.id);

    // Another tenant may have the same address.
    let twin = user(&**db, other.id, "ann.lee@example.com").await;
    assert_ne!(twin.id, ann.id);

    // Renaming onto a taken address is the same conflict.
    let bob = user(&**db, acme.id, "bob@example.com").await;
    let patch = UserPatch {
        email: Some("ANN.lee@example.com".into()),
        ..UserPatch::default()
    };
    assert_conflict(db.update_user(acme.id, bob.id, &patch).await, "users_email");
}

pub async fn user_update_and_listing(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    assert_eq!(ann.status, UserStatus::Active);
    assert_eq!(ann.groups, ["staff"]);
    assert!(
        !format!("{ann:?}").contains("argon2"),
        "Debug leaves the hash out"
    );

    let patched = db
        .update_user(
            acme.id,
            ann.id,
            &UserPatch {
                email: Some("Ann@New.example".into()),
                status: Some(UserStatus::Suspended),
                email_verified: Some(true),
                groups: Some(vec!["ops".into(), "dev".into()]),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.email, "Ann@New.example");
    assert_eq!(patched.status, UserStatus::Suspended);
    assert!(patched.email_verified);
    assert_eq!(patched.groups, ["ops", "dev"]);
    assert_eq!(
        patched.display_name, ann.display_name,
        "None leaves a field alone"
    );
    assert_eq!(patched.password_hash, ann.password_hash);
    assert!(
        db.user_by_email(acme.id, "ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.user_by_email(acme.id, "ann@new.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );

    let missing = keygate_core::ids::UserId::new();
    assert!(matches!(
        db.update_user(acme.id, missing, &UserPatch::default())
            .await,
        Err(StoreError::NotFound)
    ));

    for i in 0..5 {
        user(&**db, acme.id, &format!("u{i}@example.com")).await;
    }
    let first = db.list_users(acme.id, None, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    let rest = db
        .list_users(acme.id, first.last().map(|u| u.id), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(
        first
            .iter()
            .chain(&rest)
            .map(|u| u.id)
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 6
    );
}

pub async fn password_history_keeps_newest(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let initial = ann.password_hash.clone().unwrap();
    assert_eq!(
        db.password_history(acme.id, ann.id, 10).await.unwrap(),
        [initial]
    );

    for h in ["h1", "h2", "h3", "h4"] {
        db.set_password(acme.id, ann.id, Some(h), 3, false)
            .await
            .unwrap();
    }
    assert_eq!(
        db.password_history(acme.id, ann.id, 10).await.unwrap(),
        ["h4", "h3", "h2"]
    );
    assert_eq!(
        db.password_history(acme.id, ann.id, 2).await.unwrap(),
        ["h4", "h3"]
    );
    let now = db.user(acme.id, ann.id).await.unwrap().unwrap();
    assert_eq!(now.password_hash.as_deref(), Some("h4"));

    // An admin reset that forces a change; then removing the password (SSO only).
    db.set_password(acme.id, ann.id, Some("h5"), 3, true)
        .await
        .unwrap();
    assert!(
        db.user(acme.id, ann.id)
            .await
            .unwrap()
            .unwrap()
            .must_change_password
    );
    db.set_password(acme.id, ann.id, None, 3, false)
        .await
        .unwrap();
    let now = db.user(acme.id, ann.id).await.unwrap().unwrap();
    assert_eq!(now.password_hash, None);
    assert!(!now.must_change_password);
    assert_eq!(
        db.password_history(acme.id, ann.id, 10).await.unwrap(),
        ["h5", "h4", "h3"]
    );

    let missing = keygate_core::ids::UserId::new();
    assert!(matches!(
        db.set_password(acme.id, missing, Some("x"), 3, false).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn user_erasure_keeps_audit(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let bob = user(&**db, acme.id, "bob@example.com").await;
    db.set_password(acme.id, ann.id, Some("h1"), 5, false)
        .await
        .unwrap();
    let s = session(&**db, acme.id, ann.id).await;
    refresh(&**db, &s, "r0").await;
    db.insert_factor(&NewFactor {
        tenant_id: acme.id,
        user_id: ann.id,
        kind: FactorKind::Totp,
        label: "phone".into(),
        secret: vec![9; 16],
    })
    .await
    .unwrap();
    db.replace_backup_codes(acme.id, ann.id, &[hash("c1"), hash("c2")])
        .await
        .unwrap();
    let idp = db
        .upsert_idp(&IdpUpsert {
            tenant_id: acme.id,
            name: "corp".into(),
            owner_uid: "uid-idp".into(),
            kind: IdpKind::Oidc,
            config: serde_json::json!({}),
            client_secret: None,
            generation: 1,
        })
        .await
        .unwrap();
    db.link_identity(&NewExternalIdentity {
        tenant_id: acme.id,
        user_id: ann.id,
        idp_id: idp.id,
        subject: "sub-ann".into(),
        groups: vec![],
    })
    .await
    .unwrap();
    db.insert_one_time_token(&NewOneTimeToken {
        token_hash: hash("reset"),
        tenant_id: acme.id,
        user_id: Some(ann.id),
        purpose: TokenPurpose::ResetPassword,
        data: serde_json::json!({}),
        expires_at: t(3600),
    })
    .await
    .unwrap();
    db.record_failure(acme.id, ann.id, t0()).await.unwrap();
    db.append_audit(&event(acme.id, "login.ok", Some(ann.id), t0()))
        .await
        .unwrap();
    db.append_audit(&event(acme.id, "user.erased", Some(ann.id), t(5)))
        .await
        .unwrap();

    assert!(db.erase_user(acme.id, ann.id).await.unwrap());
    assert!(!db.erase_user(acme.id, ann.id).await.unwrap());
    assert!(db.user(acme.id, ann.id).await.unwrap().is_none());
    assert!(
        db.user_by_email(acme.id, "ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.session(acme.id, s.id).await.unwrap().is_none());
    assert!(
        db.refresh_token(acme.id, &hash("r0"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.factors_of_user(acme.id, ann.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.identities_of_user(acme.id, ann.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.identity_by_subject(acme.id, idp.id, "sub-ann")
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.lockout(acme.id, ann.id).await.unwrap().is_none());
    for table in [
        "password_history",
        "sessions",
        "mfa_factors",
        "backup_codes",
        "external_identities",
        "one_time_tokens",
        "lockout",
    ] {
        assert_eq!(
            db.raw.count(table, "user_id", ann.id.0).await,
            0,
            "{table} erased"
        );
    }
    assert_eq!(
        db.raw.count("refresh_tokens", "session_id", s.id.0).await,
        0
    );

    // The trail stays, pseudonymous: only the random id is left.
    let trail = db
        .query_audit(
            acme.id,
            &AuditFilter {
                actor_user_id: Some(ann.id),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(trail.len(), 2);
    // Bob is untouched, the IdP too.
    assert!(db.user(acme.id, bob.id).await.unwrap().is_some());
    assert!(db.idp(acme.id, idp.id).await.unwrap().is_some());
}
