//! Remembered consent: widened by each approval, scoped to tenant, person and client,
//! withdrawn together with the person's sessions of that client, gone with the client.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn consent_is_remembered_widened_and_revoked_with_sessions(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let globex = tenant(&**db, "globex").await;
    let ada = user(&**db, acme.id, "ada@example.com").await;
    let eve = user(&**db, acme.id, "eve@example.com").await;
    let app = db
        .upsert_oauth_client(&oauth_client(acme.id, "uid-app", "app"))
        .await
        .unwrap();
    let scopes = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    assert!(db.consent(acme.id, ada.id, "app").await.unwrap().is_none());
    let first = db
        .grant_consent(acme.id, ada.id, "app", &scopes(&["openid", "email"]), t(10))
        .await
        .unwrap();
    assert_eq!(first.scopes, ["openid", "email"]);
    assert_eq!(first.display_name, app.display_name);
    assert_eq!(first.granted_at, t(10));
    assert!(first.covers("email openid"));
    assert!(!first.covers("openid groups"));

    // A subset changes nothing; a new scope is added to what was approved.
    let same = db
        .grant_consent(acme.id, ada.id, "app", &scopes(&["openid"]), t(20))
        .await
        .unwrap();
    assert_eq!(same, first, "nothing new, nothing written");
    let wider = db
        .grant_consent(
            acme.id,
            ada.id,
            "app",
            &scopes(&["groups", "openid"]),
            t(30),
        )
        .await
        .unwrap();
    assert_eq!(wider.scopes, ["openid", "email", "groups"]);
    assert_eq!(wider.granted_at, t(30));

    // Another person, another tenant, an unknown client: nothing of ada's.
    assert!(db.consent(acme.id, eve.id, "app").await.unwrap().is_none());
    assert!(
        db.consent(globex.id, ada.id, "app")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        db.grant_consent(acme.id, ada.id, "nobody", &scopes(&["openid"]), t(31))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.grant_consent(globex.id, ada.id, "app", &scopes(&["openid"]), t(31))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(db.consents_of_user(acme.id, ada.id).await.unwrap(), [wider]);

    // Withdrawing revokes ada's open sessions of that client, nobody else's.
    let of = |user, client: &str| {
        let mut s = new_session(acme.id, user);
        s.client_id = client.into();
        s
    };
    let hers = db.insert_session(&of(ada.id, "app")).await.unwrap();
    let own = db.insert_session(&of(ada.id, "keygate")).await.unwrap();
    let eves = db.insert_session(&of(eve.id, "app")).await.unwrap();
    let (forgotten, revoked) = db
        .revoke_consent(acme.id, ada.id, "app", t(40))
        .await
        .unwrap();
    assert!(forgotten);
    assert_eq!(revoked, [hers.id]);
    assert!(db.consent(acme.id, ada.id, "app").await.unwrap().is_none());
    for (s, active) in [(hers.id, false), (own.id, true), (eves.id, true)] {
        let row = db.session(acme.id, s).await.unwrap().unwrap();
        assert_eq!(row.is_active(t(41)), active, "{s:?}");
    }
    let (again, none) = db
        .revoke_consent(acme.id, ada.id, "app", t(50))
        .await
        .unwrap();
    assert!(!again && none.is_empty());

    // A consent goes with its client.
    db.grant_consent(acme.id, eve.id, "app", &scopes(&["openid"]), t(60))
        .await
        .unwrap();
    assert!(db.delete_oauth_client(acme.id, app.id).await.unwrap());
    assert!(
        db.consents_of_user(acme.id, eve.id)
            .await
            .unwrap()
            .is_empty()
    );
}
