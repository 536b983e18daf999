//! Tenant isolation: every lookup and every change through tenant B misses tenant A's rows.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn other_tenant_rows_invisible(db: &Db) {
    let a = tenant(&**db, "alpha").await;
    let b = tenant(&**db, "bravo").await;
    let (a, b) = (a.id, b.id);

    let ann = user(&**db, a, "ann@example.com").await;
    let s = session(&**db, a, ann.id).await;
    refresh(&**db, &s, "r0").await;
    let key = db
        .insert_api_key(&new_api_key(a, "uid-key", "pfxA"))
        .await
        .unwrap();
    db.insert_signing_key(&signing_key(a, "kid-a", t0()))
        .await
        .unwrap();
    let role = db
        .upsert_role(&RoleUpsert {
            tenant_id: a,
            name: "admin".into(),
            owner_uid: "uid-role".into(),
            description: "all".into(),
            permissions: vec!["*".into()],
            subjects: vec![
                RoleSubject::UserEmail("ann@example.com".into()),
                RoleSubject::Group("staff".into()),
            ],
            generation: 1,
        })
        .await
        .unwrap();
    let idp = db
        .upsert_idp(&IdpUpsert {
            tenant_id: a,
            name: "corp".into(),
            owner_uid: "uid-idp".into(),
            kind: IdpKind::Saml,
            config: serde_json::json!({ "entityId": "x" }),
            client_secret: Some(vec![1, 2, 3]),
            generation: 1,
        })
        .await
        .unwrap();
    let link = db
        .link_identity(&NewExternalIdentity {
            tenant_id: a,
            user_id: ann.id,
            idp_id: idp.id,
            subject: "sub-ann".into(),
            groups: vec![],
        })
        .await
        .unwrap();
    let factor = db
        .insert_factor(&NewFactor {
            tenant_id: a,
            user_id: ann.id,
            kind: FactorKind::Totp,
            label: "phone".into(),
            secret: vec![7; 20],
        })
        .await
        .unwrap();
    db.replace_backup_codes(a, ann.id, &[hash("code")])
        .await
        .unwrap();
    db.insert_one_time_token(&NewOneTimeToken {
        token_hash: hash("verify"),
        tenant_id: a,
        user_id: Some(ann.id),
        purpose: TokenPurpose::VerifyEmail,
        data: serde_json::json!({}),
        expires_at: t(3600),
    })
    .await
    .unwrap();
    db.record_failure(a, ann.id, t0()).await.unwrap();
    db.append_audit(&event(a, "login.ok", Some(ann.id), t0()))
        .await
        .unwrap();

    // Users and credentials.
    assert!(db.user(b, ann.id).await.unwrap().is_none());
    assert!(
        db.user_by_email(b, "ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.list_users(b, None, 100).await.unwrap().is_empty());
    assert!(matches!(
        db.update_user(b, ann.id, &UserPatch::default()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.set_password(b, ann.id, Some("x"), 3, false).await,
        Err(StoreError::NotFound)
    ));
    assert!(db.password_history(b, ann.id, 10).await.unwrap().is_empty());
    assert!(!db.erase_user(b, ann.id).await.unwrap());
    // Identity links and IdPs.
    assert!(
        db.identity_by_subject(b, idp.id, "sub-ann")
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.identities_of_user(b, ann.id).await.unwrap().is_empty());
    assert!(!db.touch_identity(b, link.id, t0(), &[]).await.unwrap());
    assert!(!db.unlink_identity(b, ann.id, idp.id).await.unwrap());
    assert!(db.idp(b, idp.id).await.unwrap().is_none());
    assert!(db.idp_by_name(b, "corp").await.unwrap().is_none());
    assert!(db.list_idps(b).await.unwrap().is_empty());
    assert!(!db.delete_idp(b, idp.id).await.unwrap());
    // Roles.
    assert!(db.role(b, role.id).await.unwrap().is_none());
    assert!(db.role_by_name(b, "admin").await.unwrap().is_none());
    assert!(db.list_roles(b).await.unwrap().is_empty());
    assert!(!db.delete_role(b, role.id).await.unwrap());
    let facts = SubjectFacts {
        email: Some("ann@example.com".into()),
        groups: vec!["staff".into()],
        idp_groups: vec![],
    };
    assert!(db.roles_for_subject(b, &facts).await.unwrap().is_empty());
    assert_eq!(db.roles_for_subject(a, &facts).await.unwrap().len(), 1);
    assert!(
        db.roles_by_names(b, &["admin".into()])
            .await
            .unwrap()
            .is_empty()
    );
    // API keys.
    assert!(db.api_key_by_prefix(b, "pfxA").await.unwrap().is_none());
    assert!(db.api_key(b, key.id).await.unwrap().is_none());
    assert!(db.api_keys_of_owner(b, "uid-key").await.unwrap().is_empty());
    assert!(db.list_api_keys(b).await.unwrap().is_empty());
    assert!(!db.supersede_api_key(b, key.id, t0(), t(60)).await.unwrap());
    assert!(!db.revoke_api_key(b, key.id, t0()).await.unwrap());
    assert_eq!(
        db.revoke_api_keys_of_owner(b, "uid-key", t0())
            .await
            .unwrap(),
        0
    );
    assert!(!db.touch_api_key(b, key.id, t0()).await.unwrap());
    // Signing keys.
    assert!(db.signing_keys(b).await.unwrap().is_empty());
    assert!(matches!(
        db.set_signing_key_retires_at(b, "kid-a", t0()).await,
        Err(StoreError::NotFound)
    ));
    let sealed = db.signing_keys(a).await.unwrap()[0].private_key.clone();
    assert!(
        !db.reseal_signing_key(b, "kid-a", &sealed, b"x")
            .await
            .unwrap()
    );
    // Sessions and refresh tokens.
    assert!(db.session(b, s.id).await.unwrap().is_none());
    assert!(
        db.active_sessions_of_user(b, ann.id, t0())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!db.touch_session(b, s.id, t0(), t(60)).await.unwrap());
    assert!(!db.revoke_session(b, s.id, t0()).await.unwrap());
    assert_eq!(db.revoke_user_sessions(b, ann.id, t0()).await.unwrap(), 0);
    assert!(db.refresh_token(b, &hash("r0")).await.unwrap().is_none());
    assert_eq!(
        db.rotate_refresh_token(b, &hash("r0"), None, &hash("r1"), t(600), t(1))
            .await
            .unwrap(),
        RotateOutcome::Unknown
    );
    // MFA.
    assert!(db.factor(b, factor.id).await.unwrap().is_none());
    assert!(db.factors_of_user(b, ann.id).await.unwrap().is_empty());
    assert!(!db.confirm_factor(b, factor.id).await.unwrap());
    assert!(!db.update_factor_secret(b, factor.id, &[0]).await.unwrap());
    assert!(!db.advance_totp_step(b, factor.id, 1, t0()).await.unwrap());
    assert!(!db.delete_factor(b, factor.id).await.unwrap());
    assert!(
        !db.use_backup_code(b, ann.id, &hash("code"), t0())
            .await
            .unwrap()
    );
    assert_eq!(db.remaining_backup_codes(b, ann.id).await.unwrap(), 0);
    // One-time tokens and lockout.
    assert!(
        db.consume_one_time_token(b, TokenPurpose::VerifyEmail, &hash("verify"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.invalidate_one_time_tokens(b, ann.id, TokenPurpose::VerifyEmail, t0())
            .await
            .unwrap(),
        0
    );
    assert!(db.lockout(b, ann.id).await.unwrap().is_none());
    assert!(!db.lock_until(b, ann.id, t(60)).await.unwrap());
    // Audit.
    assert!(
        db.query_audit(b, &AuditFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Nothing of A was changed by all that.
    assert!(db.user(a, ann.id).await.unwrap().is_some());
    assert!(
        db.session(a, s.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        db.api_key(a, key.id)
            .await
            .unwrap()
            .unwrap()
            .is_usable(t0())
    );
    assert!(
        db.refresh_token(a, &hash("r0"))
            .await
            .unwrap()
            .unwrap()
            .rotated_at
            .is_none()
    );
    let f = db.factor(a, factor.id).await.unwrap().unwrap();
    assert!(!f.confirmed && f.last_used_step.is_none());
    assert_eq!(db.remaining_backup_codes(a, ann.id).await.unwrap(), 1);
    assert!(
        db.lockout(a, ann.id)
            .await
            .unwrap()
            .unwrap()
            .locked_until
            .is_none()
    );
    assert_eq!(db.signing_keys(a).await.unwrap()[0].retires_at, None);
    assert_eq!(
        db.query_audit(a, &AuditFilter::default(), 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        db.consume_one_time_token(a, TokenPurpose::VerifyEmail, &hash("verify"), t0())
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn cross_tenant_references_refused(db: &Db) {
    let a = tenant(&**db, "alpha").await.id;
    let b = tenant(&**db, "bravo").await.id;
    let ann = user(&**db, a, "ann@example.com").await;
    let s = session(&**db, a, ann.id).await;
    let idp_b = db
        .upsert_idp(&IdpUpsert {
            tenant_id: b,
            name: "corp".into(),
            owner_uid: "uid".into(),
            kind: IdpKind::Github,
            config: serde_json::json!({}),
            client_secret: None,
            generation: 1,
        })
        .await
        .unwrap();

    // A row in B can never point at A's user or session: the parent is "not found".
    let nf = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound));
    assert!(nf(db
        .insert_session(&new_session(b, ann.id))
        .await
        .map(|_| ())));
    assert!(nf(db
        .insert_refresh_token(&NewRefreshToken {
            hash: hash("x"),
            tenant_id: b,
            session_id: s.id,
            issued_at: t0(),
            expires_at: t(60),
        })
        .await
        .map(|_| ())));
    assert!(nf(db
        .link_identity(&NewExternalIdentity {
            tenant_id: a,
            user_id: ann.id,
            idp_id: idp_b.id,
            subject: "s".into(),
            groups: vec![],
        })
        .await
        .map(|_| ())));
    assert!(nf(db
        .insert_factor(&NewFactor {
            tenant_id: b,
            user_id: ann.id,
            kind: FactorKind::Totp,
            label: "x".into(),
            secret: vec![1],
        })
        .await
        .map(|_| ())));
    assert!(nf(db.replace_backup_codes(b, ann.id, &[hash("c")]).await));
    assert!(nf(db.record_failure(b, ann.id, t0()).await.map(|_| ())));
    assert!(nf(db
        .insert_one_time_token(&NewOneTimeToken {
            token_hash: hash("t"),
            tenant_id: b,
            user_id: Some(ann.id),
            purpose: TokenPurpose::Link,
            data: serde_json::json!({}),
            expires_at: t(60),
        })
        .await
        .map(|_| ())));
}
