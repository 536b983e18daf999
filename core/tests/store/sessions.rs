//! Sessions and refresh-token families: atomic rotation, reuse detection, revocation.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn concurrent_rotations_have_one_winner(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let s = session(&**db, acme.id, ann.id).await;
    let mut current = refresh(&**db, &s, "gen0").await.hash;

    for round in 0..5 {
        let contenders = 4;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(contenders));
        let mut tasks = Vec::new();
        for c in 0..contenders {
            let store = db.store.clone();
            let barrier = barrier.clone();
            let presented = current.clone();
            let next = hash(&format!("gen{}-{c}", round + 1));
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let out = store
                    .rotate_refresh_token(acme.id, &presented, None, &next, t(86_400), t(round + 1))
                    .await
                    .unwrap();
                (next, out)
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for task in tasks {
            let (next, out) = task.await.unwrap();
            match out {
                RotateOutcome::Rotated { next: rec } => {
                    assert_eq!(rec.hash, next);
                    assert_eq!(rec.session_id, s.id);
                    winners.push(rec);
                }
                other => losers.push(other),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one rotation wins, got {winners:?}"
        );
        let winner = winners.remove(0);
        for lost in losers {
            match lost {
                RotateOutcome::AlreadyRotated {
                    family,
                    replaced_by,
                    ..
                } => {
                    assert_eq!(family, s.id);
                    assert_eq!(replaced_by.as_deref(), Some(&winner.hash[..]));
                }
                other => {
                    panic!("round {round}: a losing rotation must see the winner, got {other:?}")
                }
            }
        }
        // Exactly one successor exists in the family.
        assert_eq!(
            db.raw.count("refresh_tokens", "session_id", s.id.0).await,
            round + 2
        );
        current = winner.hash;
    }
}

pub async fn rotated_token_reveals_family(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let s = session(&**db, acme.id, ann.id).await;
    let r0 = refresh(&**db, &s, "r0").await;
    assert_eq!(r0.session_id, s.id);
    assert_eq!(r0.rotated_at, None);

    // Named by another client than its session's, it does not rotate and stays unspent.
    assert_eq!(
        db.rotate_refresh_token(
            acme.id,
            &r0.hash,
            Some("other-app"),
            &hash("r1x"),
            t(86_400),
            t(5)
        )
        .await
        .unwrap(),
        RotateOutcome::WrongClient { family: s.id }
    );
    let unspent = db.refresh_token(acme.id, &r0.hash).await.unwrap().unwrap();
    assert_eq!(unspent.rotated_at, None);
    assert!(
        db.refresh_token(acme.id, &hash("r1x"))
            .await
            .unwrap()
            .is_none()
    );

    let out = db
        .rotate_refresh_token(
            acme.id,
            &r0.hash,
            Some(s.client_id.as_str()),
            &hash("r1"),
            t(86_400),
            t(10),
        )
        .await
        .unwrap();
    let RotateOutcome::Rotated { next: r1 } = out else {
        panic!("first rotation wins: {out:?}")
    };
    assert_eq!(r1.issued_at, t(10));
    assert_eq!(r1.expires_at, t(86_400));

    // The rotated token still resolves, naming its family and successor.
    let old = db.refresh_token(acme.id, &r0.hash).await.unwrap().unwrap();
    assert_eq!(old.session_id, s.id);
    assert_eq!(old.rotated_at, Some(t(10)));
    assert_eq!(old.replaced_by.as_deref(), Some(&r1.hash[..]));

    // Presenting it again is reuse: the caller learns the family to revoke.
    let again = db
        .rotate_refresh_token(acme.id, &r0.hash, None, &hash("r1b"), t(86_400), t(20))
        .await
        .unwrap();
    assert_eq!(
        again,
        RotateOutcome::AlreadyRotated {
            family: s.id,
            rotated_at: t(10),
            replaced_by: Some(r1.hash.clone()),
        }
    );
    assert!(
        db.refresh_token(acme.id, &hash("r1b"))
            .await
            .unwrap()
            .is_none(),
        "a loser stores nothing"
    );

    // The successor rotates normally; unknown and expired tokens say so.
    assert!(matches!(
        db.rotate_refresh_token(acme.id, &r1.hash, None, &hash("r2"), t(86_400), t(30))
            .await
            .unwrap(),
        RotateOutcome::Rotated { .. }
    ));
    assert_eq!(
        db.rotate_refresh_token(acme.id, &hash("nope"), None, &hash("r9"), t(86_400), t(30))
            .await
            .unwrap(),
        RotateOutcome::Unknown
    );
    let short = db
        .insert_refresh_token(&NewRefreshToken {
            hash: hash("short"),
            tenant_id: acme.id,
            session_id: s.id,
            issued_at: t0(),
            expires_at: t(60),
        })
        .await
        .unwrap();
    assert_eq!(
        db.rotate_refresh_token(acme.id, &short.hash, None, &hash("r10"), t(86_400), t(60))
            .await
            .unwrap(),
        RotateOutcome::Expired { family: s.id }
    );
    assert_conflict(
        db.insert_refresh_token(&NewRefreshToken {
            hash: hash("short"),
            tenant_id: acme.id,
            session_id: s.id,
            issued_at: t0(),
            expires_at: t(60),
        })
        .await,
        "refresh_tokens_hash",
    );
}

pub async fn session_revoke_revokes_family(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let s1 = session(&**db, acme.id, ann.id).await;
    let s2 = session(&**db, acme.id, ann.id).await;
    let s3 = session(&**db, acme.id, ann.id).await;
    let r1 = refresh(&**db, &s1, "s1r0").await;
    let r2 = refresh(&**db, &s2, "s2r0").await;
    assert_eq!(s1.amr, ["pwd"]);
    assert_eq!(s1.last_seen_at, t0());
    assert_eq!(
        db.active_sessions_of_user(acme.id, ann.id, t(1))
            .await
            .unwrap()
            .len(),
        3
    );

    assert!(db.revoke_session(acme.id, s1.id, t(5)).await.unwrap());
    assert!(
        !db.revoke_session(acme.id, s1.id, t(6)).await.unwrap(),
        "already revoked"
    );
    let revoked = db.session(acme.id, s1.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t(5)));
    assert!(!revoked.is_active(t(6)));
    // The family goes with the session: its refresh token no longer rotates.
    assert_eq!(
        db.rotate_refresh_token(acme.id, &r1.hash, None, &hash("s1r1"), t(86_400), t(7))
            .await
            .unwrap(),
        RotateOutcome::FamilyRevoked { family: s1.id }
    );
    assert!(
        !db.touch_session(acme.id, s1.id, t(7), t(3600))
            .await
            .unwrap()
    );

    // Logout-all takes the rest.
    assert_eq!(
        db.revoke_user_sessions(acme.id, ann.id, t(8))
            .await
            .unwrap(),
        2
    );
    assert!(
        db.active_sessions_of_user(acme.id, ann.id, t(9))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.rotate_refresh_token(acme.id, &r2.hash, None, &hash("s2r1"), t(86_400), t(9))
            .await
            .unwrap(),
        RotateOutcome::FamilyRevoked { family: s2.id }
    );

    let revoked = db.revoked_sessions_since(t(6), t(9)).await.unwrap();
    // Each row says when it was revoked: at or after `since`, never after `now`.
    assert!(revoked.iter().all(|(_, _, at)| *at >= t(6) && *at <= t(9)));
    let mut since: Vec<_> = revoked.into_iter().map(|(t, s, _)| (t, s)).collect();
    since.sort();
    let mut expected = vec![(acme.id, s2.id), (acme.id, s3.id)];
    expected.sort();
    assert_eq!(since, expected);
    assert_eq!(
        db.revoked_sessions_since(t0(), t(9)).await.unwrap().len(),
        3
    );
}

pub async fn session_expiry_and_janitor(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let s = session(&**db, acme.id, ann.id).await;
    let r0 = refresh(&**db, &s, "r0").await;

    // Activity slides the idle expiry.
    assert!(
        db.touch_session(acme.id, s.id, t(20 * 60), t(50 * 60))
            .await
            .unwrap()
    );
    let touched = db.session(acme.id, s.id).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, t(20 * 60));
    assert_eq!(touched.idle_expires_at, t(50 * 60));
    assert!(touched.is_active(t(40 * 60)));

    // Idle for too long: the family no longer rotates, and a touch cannot revive it.
    assert!(!touched.is_active(t(50 * 60)));
    assert_eq!(
        db.rotate_refresh_token(acme.id, &r0.hash, None, &hash("r1"), t(86_400), t(50 * 60))
            .await
            .unwrap(),
        RotateOutcome::Expired { family: s.id }
    );
    assert!(
        !db.touch_session(acme.id, s.id, t(51 * 60), t(80 * 60))
            .await
            .unwrap()
    );
    assert!(
        db.active_sessions_of_user(acme.id, ann.id, t(51 * 60))
            .await
            .unwrap()
            .is_empty()
    );

    // Past absolute expiry the janitor removes session and family (the scheduled sweep
    // runs the same delete on either backend).
    assert_eq!(
        db.delete_expired_sessions(t(12 * 3600 - 1)).await.unwrap(),
        0
    );
    let swept = db.sweep_expired(t(12 * 3600)).await.unwrap();
    assert_eq!(swept.map(|s| s.sessions), Some(1));
    assert!(db.session(acme.id, s.id).await.unwrap().is_none());
    assert!(db.refresh_token(acme.id, &r0.hash).await.unwrap().is_none());
}

pub async fn session_cookie_token_and_client(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let beta = tenant(&**db, "beta").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let opened = db
        .insert_session(&NewSession {
            token_hash: Some(hash("cookie-1")),
            client_id: "orders-spa".into(),
            scope: "openid orders.read".into(),
            ..new_session(acme.id, ann.id)
        })
        .await
        .unwrap();
    assert_eq!(opened.token_hash.as_deref(), Some(&hash("cookie-1")[..]));
    assert_eq!(opened.client_id, "orders-spa");
    assert_eq!(opened.scope, "openid orders.read");

    // The cookie resolves by the hash of its token, in its own tenant only.
    let found = db
        .session_by_token_hash(acme.id, &hash("cookie-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, opened);
    assert_eq!(
        db.session(acme.id, opened.id).await.unwrap().unwrap(),
        opened
    );
    assert!(
        db.session_by_token_hash(beta.id, &hash("cookie-1"))
            .await
            .unwrap()
            .is_none(),
        "another tenant's cookie is nothing here"
    );
    assert!(
        db.session_by_token_hash(acme.id, &hash("cookie-2"))
            .await
            .unwrap()
            .is_none()
    );

    // A token hash names one session; sessions without a cookie are many.
    assert_conflict(
        db.insert_session(&NewSession {
            token_hash: Some(hash("cookie-1")),
            ..new_session(acme.id, ann.id)
        })
        .await,
        "sessions_token_hash",
    );
    let a = session(&**db, acme.id, ann.id).await;
    let b = session(&**db, acme.id, ann.id).await;
    assert_eq!((a.token_hash, b.token_hash), (None, None));
    assert_eq!(
        (a.client_id.as_str(), a.scope.as_str()),
        ("keygate", "openid")
    );

    // A revoked session is still found (the caller checks `is_active`).
    assert!(db.revoke_session(acme.id, opened.id, t(5)).await.unwrap());
    let revoked = db
        .session_by_token_hash(acme.id, &hash("cookie-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(!revoked.is_active(t(6)));
}

/// Step-up records a fresh authentication on an active session only.
pub async fn step_up_raises_an_active_session_only(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let s = session(&**db, acme.id, ann.id).await;
    let amr = vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()];
    let at = s.auth_time + chrono::Duration::seconds(60);
    assert!(
        db.raise_session_authentication(acme.id, s.id, &amr, Some("urn:keygate:acr:mfa"), at)
            .await
            .unwrap()
    );
    let raised = db.session(acme.id, s.id).await.unwrap().unwrap();
    assert_eq!(raised.amr, amr);
    assert_eq!(raised.acr.as_deref(), Some("urn:keygate:acr:mfa"));
    assert_eq!(raised.auth_time, at);
    let other = tenant(&**db, "other").await;
    assert!(
        !db.raise_session_authentication(other.id, s.id, &amr, None, at)
            .await
            .unwrap()
    );
    db.revoke_session(acme.id, s.id, at).await.unwrap();
    assert!(
        !db.raise_session_authentication(acme.id, s.id, &amr, None, at)
            .await
            .unwrap(),
        "a revoked session is not raised"
    );
}

/// A sign-in's session, first refresh token and audit event are written together or not at
/// all: a refresh token that cannot be stored (its hash taken) leaves no session and no
/// event behind.
pub async fn open_session_writes_all_or_nothing(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let ann = user(&**db, acme.id, "ann@example.com").await;
    let id = keygate_core::ids::SessionId::new();
    let audit = event(acme.id, "login.succeeded", Some(ann.id), t(0));
    let opened = db
        .open_session(
            id,
            &new_session(acme.id, ann.id),
            &hash("first"),
            t(3600),
            Some(&audit),
        )
        .await
        .unwrap();
    assert_eq!(opened.id, id);
    let first = db
        .refresh_token(acme.id, &hash("first"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.session_id, first.expires_at), (id, t(3600)));
    assert_eq!(first.issued_at, opened.created_at);
    let events = db
        .query_audit(acme.id, &AuditFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);

    let failed = keygate_core::ids::SessionId::new();
    assert_conflict(
        db.open_session(
            failed,
            &new_session(acme.id, ann.id),
            &hash("first"),
            t(3600),
            Some(&audit),
        )
        .await,
        "refresh_tokens_hash",
    );
    assert!(
        db.session(acme.id, failed).await.unwrap().is_none(),
        "no session left behind"
    );
    assert_eq!(
        db.query_audit(acme.id, &AuditFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        1,
        "no audit event left behind"
    );
}
