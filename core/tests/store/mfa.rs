//! Second factors: the TOTP replay guard and single-use backup codes.

use crate::fixtures::*;
use keygate_core::store::*;

async fn totp(db: &Db) -> (Factor, keygate_core::ids::TenantId) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let f = db
        .insert_factor(&NewFactor {
            tenant_id: acme.id,
            user_id: ann.id,
            kind: FactorKind::Totp,
            label: "phone".into(),
            secret: vec![42; 20],
        })
        .await
        .unwrap();
    (f, acme.id)
}

pub async fn totp_step_refuses_replay_and_older_steps(db: &Db) {
    let (f, tenant) = totp(db).await;
    assert!(
        db.advance_totp_step(tenant, f.id, 1000, t(1))
            .await
            .unwrap()
    );
    assert!(
        !db.advance_totp_step(tenant, f.id, 1000, t(2))
            .await
            .unwrap(),
        "replay"
    );
    assert!(
        !db.advance_totp_step(tenant, f.id, 999, t(3)).await.unwrap(),
        "older step"
    );
    assert!(
        db.advance_totp_step(tenant, f.id, 1001, t(31))
            .await
            .unwrap()
    );
    let now = db.factor(tenant, f.id).await.unwrap().unwrap();
    assert_eq!(now.last_used_step, Some(1001));
    assert_eq!(now.last_used_at, Some(t(31)));

    // The same code submitted concurrently is accepted once.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .advance_totp_step(tenant, f.id, 1005, t(150))
                .await
                .unwrap()
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

pub async fn webauthn_use_is_a_compare_and_set_and_factors_rename(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let f = db
        .insert_factor(&NewFactor {
            tenant_id: acme.id,
            user_id: ann.id,
            kind: FactorKind::Webauthn,
            label: "key".into(),
            secret: vec![1; 8],
        })
        .await
        .unwrap();
    // Two assertions read the credential at counter 1; the first write wins.
    assert!(
        db.record_factor_use(acme.id, f.id, &[1; 8], &[2; 8], t(5))
            .await
            .unwrap()
    );
    assert!(
        !db.record_factor_use(acme.id, f.id, &[1; 8], &[3; 8], t(6))
            .await
            .unwrap(),
        "a stale credential"
    );
    let now = db.factor(acme.id, f.id).await.unwrap().unwrap();
    assert_eq!(now.secret, vec![2; 8]);
    assert_eq!(now.last_used_at, Some(t(5)));
    assert!(db.rename_factor(acme.id, f.id, "office").await.unwrap());
    let now = db.factor(acme.id, f.id).await.unwrap().unwrap();
    assert_eq!(now.label, "office");
    // Another tenant reaches neither.
    let other = tenant(&**db, "other").await;
    assert!(
        !db.record_factor_use(other.id, f.id, &[2; 8], &[4; 8], t(7))
            .await
            .unwrap()
    );
    assert!(!db.rename_factor(other.id, f.id, "x").await.unwrap());
}

pub async fn backup_codes_single_use(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let codes: Vec<_> = (0..4).map(|i| hash(&format!("code-{i}"))).collect();
    db.replace_backup_codes(acme.id, ann.id, &codes)
        .await
        .unwrap();
    assert_eq!(db.remaining_backup_codes(acme.id, ann.id).await.unwrap(), 4);

    assert!(
        db.use_backup_code(acme.id, ann.id, &codes[0], t(1))
            .await
            .unwrap()
    );
    assert!(
        !db.use_backup_code(acme.id, ann.id, &codes[0], t(2))
            .await
            .unwrap(),
        "single use"
    );
    assert!(
        !db.use_backup_code(acme.id, ann.id, &hash("unknown"), t(2))
            .await
            .unwrap()
    );
    assert_eq!(db.remaining_backup_codes(acme.id, ann.id).await.unwrap(), 3);

    // Concurrent use of one code: one winner.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = db.store.clone();
        let code = codes[1].clone();
        tasks.push(tokio::spawn(async move {
            store
                .use_backup_code(acme.id, ann.id, &code, t(3))
                .await
                .unwrap()
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);

    // Regenerating voids the old set.
    let fresh = vec![hash("fresh-1"), hash("fresh-2")];
    db.replace_backup_codes(acme.id, ann.id, &fresh)
        .await
        .unwrap();
    assert!(
        !db.use_backup_code(acme.id, ann.id, &codes[2], t(4))
            .await
            .unwrap()
    );
    assert_eq!(db.remaining_backup_codes(acme.id, ann.id).await.unwrap(), 2);
    // A duplicate within one set is refused, and nothing is half-written.
    assert_conflict(
        db.replace_backup_codes(acme.id, ann.id, &[hash("dup"), hash("dup")])
            .await,
        "backup_codes_hash",
    );
    assert_eq!(db.remaining_backup_codes(acme.id, ann.id).await.unwrap(), 2);
}

pub async fn factor_lifecycle(db: &Db) {
    let (f, tenant) = totp(db).await;
    assert_eq!(f.kind, FactorKind::Totp);
    assert!(!f.confirmed);
    assert_eq!(f.secret, vec![42; 20]);
    assert!(db.confirm_factor(tenant, f.id).await.unwrap());
    assert!(db.factor(tenant, f.id).await.unwrap().unwrap().confirmed);

    let webauthn = db
        .insert_factor(&NewFactor {
            tenant_id: tenant,
            user_id: f.user_id,
            kind: FactorKind::Webauthn,
            label: "key".into(),
            secret: vec![1],
        })
        .await
        .unwrap();
    assert!(
        !db.advance_totp_step(tenant, webauthn.id, 1, t0())
            .await
            .unwrap(),
        "only TOTP has steps"
    );
    assert!(
        db.update_factor_secret(tenant, webauthn.id, &[2, 3])
            .await
            .unwrap()
    );
    let listed = db.factors_of_user(tenant, f.user_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FactorKind::Totp, FactorKind::Webauthn]
    );
    assert_eq!(listed[1].secret, [2, 3]);
    assert!(db.delete_factor(tenant, f.id).await.unwrap());
    assert!(!db.delete_factor(tenant, f.id).await.unwrap());
    assert_eq!(
        db.factors_of_user(tenant, f.user_id).await.unwrap().len(),
        1
    );
}

/// The operator's re-seal pass reads factors page by page and replaces a secret only if it
/// is still the one it read.
pub async fn factors_paged_and_resealed_by_compare_and_set(db: &Db) {
    let (first, tenant) = totp(db).await;
    let ann = first.user_id;
    let mut ids = vec![first.id];
    for label in ["two", "three"] {
        let f = db
            .insert_factor(&NewFactor {
                tenant_id: tenant,
                user_id: ann,
                kind: FactorKind::Totp,
                label: label.into(),
                secret: vec![7; 20],
            })
            .await
            .unwrap();
        ids.push(f.id);
    }
    ids.sort();
    let page = db.factors_page(tenant, None, 2).await.unwrap();
    assert_eq!(page.iter().map(|f| f.id).collect::<Vec<_>>(), ids[..2]);
    let rest = db.factors_page(tenant, Some(page[1].id), 2).await.unwrap();
    assert_eq!(rest.iter().map(|f| f.id).collect::<Vec<_>>(), ids[2..]);
    let other = tenant_named(db, "other").await;
    assert!(db.factors_page(other, None, 10).await.unwrap().is_empty());

    assert!(
        db.reseal_factor_secret(tenant, first.id, &[42; 20], &[1; 30])
            .await
            .unwrap()
    );
    assert!(
        !db.reseal_factor_secret(tenant, first.id, &[42; 20], &[2; 30])
            .await
            .unwrap(),
        "a secret changed meanwhile is left alone"
    );
    assert!(
        !db.reseal_factor_secret(other, first.id, &[1; 30], &[2; 30])
            .await
            .unwrap()
    );
    assert_eq!(
        db.factor(tenant, first.id).await.unwrap().unwrap().secret,
        vec![1; 30]
    );
}

async fn tenant_named(db: &Db, name: &str) -> keygate_core::ids::TenantId {
    tenant(&**db, name).await.id
}
