//! Registered OAuth clients: upsert by client id (owner kept), tenant scoping, secrets with
//! rotation grace, and revoking the sessions issued to a client.

use crate::fixtures::*;
use keygate_core::store::*;

pub async fn oauth_client_upsert_lookup_and_owner(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let globex = tenant(&**db, "globex").await;
    let declared = oauth_client(acme.id, "uid-app", "app");
    let app = db.upsert_oauth_client(&declared).await.unwrap();
    assert_eq!(app.client_id, "app");
    assert_eq!(app.client_type, ClientType::Confidential);
    assert_eq!(
        app.grant_types,
        [GrantType::AuthorizationCode, GrantType::RefreshToken]
    );
    assert_eq!(app.consent, ConsentMode::Required);
    assert_eq!(
        app.lifetimes.access_token,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(app.lifetimes.refresh_token, None);
    assert_eq!(
        db.oauth_client(acme.id, "app").await.unwrap().as_ref(),
        Some(&app)
    );
    assert!(
        db.oauth_client(globex.id, "app").await.unwrap().is_none(),
        "another tenant's client is nothing"
    );

    // Unchanged: same row back; changed: updated in place, same id.
    assert_eq!(db.upsert_oauth_client(&declared).await.unwrap(), app);
    let mut changed = declared.clone();
    changed.allowed_scopes = vec!["openid".into()];
    changed.client_type = ClientType::Public;
    changed.token_endpoint_auth_method = ClientAuthMethod::None;
    changed.lifetimes.access_token = None;
    changed.generation = 2;
    let updated = db.upsert_oauth_client(&changed).await.unwrap();
    assert_eq!(updated.id, app.id);
    assert_eq!(updated.allowed_scopes, ["openid"]);
    assert_eq!(updated.client_type, ClientType::Public);
    assert_eq!(updated.lifetimes.access_token, None);

    // Another resource cannot take the client id over, and nothing of it changes.
    let mut intruder = oauth_client(acme.id, "uid-other", "app");
    intruder.redirect_uris = vec!["https://evil.example/cb".into()];
    assert_conflict(
        db.upsert_oauth_client(&intruder).await,
        "oauth_clients_client_id",
    );
    assert_eq!(
        db.oauth_client(acme.id, "app")
            .await
            .unwrap()
            .unwrap()
            .redirect_uris,
        changed.redirect_uris
    );
    // The same client id in another tenant is another client.
    db.upsert_oauth_client(&oauth_client(globex.id, "uid-g", "app"))
        .await
        .unwrap();
    assert_eq!(db.list_oauth_clients(acme.id).await.unwrap().len(), 1);

    assert!(!db.delete_oauth_client(globex.id, app.id).await.unwrap());
    assert!(db.delete_oauth_client(acme.id, app.id).await.unwrap());
    assert!(db.oauth_client(acme.id, "app").await.unwrap().is_none());
}

pub async fn client_secrets_rotate_with_grace(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let globex = tenant(&**db, "globex").await;
    let app = db
        .upsert_oauth_client(&oauth_client(acme.id, "uid-app", "app"))
        .await
        .unwrap();
    let s1 = db
        .insert_client_secret(&client_secret(&app, "s1"))
        .await
        .unwrap();
    assert_eq!(s1.hash, hash("s1"));
    assert!(s1.is_usable(t0()));
    let mut foreign = client_secret(&app, "x");
    foreign.tenant_id = globex.id;
    assert!(
        matches!(
            db.insert_client_secret(&foreign).await,
            Err(StoreError::NotFound)
        ),
        "a secret cannot point at another tenant's client"
    );

    let s2 = db
        .insert_client_secret(&client_secret(&app, "s2"))
        .await
        .unwrap();
    assert!(
        db.supersede_client_secret(acme.id, s1.id, t(100), t(400))
            .await
            .unwrap()
    );
    assert!(
        !db.supersede_client_secret(acme.id, s1.id, t(101), t(900))
            .await
            .unwrap(),
        "once"
    );
    let secrets = db.client_secrets(acme.id, app.id).await.unwrap();
    assert_eq!(
        secrets.iter().map(|s| s.id).collect::<Vec<_>>(),
        [s2.id, s1.id],
        "newest first"
    );
    let old = &secrets[1];
    assert!(old.is_usable(t(399)));
    assert!(!old.is_usable(t(400)));
    assert!(
        db.client_secrets(globex.id, app.id)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        db.revoke_client_secret(acme.id, s2.id, t(200))
            .await
            .unwrap()
    );
    assert!(
        !db.revoke_client_secret(acme.id, s2.id, t(201))
            .await
            .unwrap()
    );
    assert!(!db.client_secrets(acme.id, app.id).await.unwrap()[0].is_usable(t(200)));

    // Secrets go with their client.
    assert!(db.delete_oauth_client(acme.id, app.id).await.unwrap());
    assert!(db.client_secrets(acme.id, app.id).await.unwrap().is_empty());
}

pub async fn client_sessions_revoked_by_client_id(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let globex = tenant(&**db, "globex").await;
    let ada = user(&**db, acme.id, "ada@example.com").await;
    let bob = user(&**db, globex.id, "bob@example.com").await;
    let for_client = |tenant, user, client: &str| {
        let mut s = new_session(tenant, user);
        s.client_id = client.into();
        s
    };
    let a1 = db
        .insert_session(&for_client(acme.id, ada.id, "app"))
        .await
        .unwrap();
    let a2 = db
        .insert_session(&for_client(acme.id, ada.id, "app"))
        .await
        .unwrap();
    let own = db
        .insert_session(&for_client(acme.id, ada.id, "keygate"))
        .await
        .unwrap();
    let other = db
        .insert_session(&for_client(globex.id, bob.id, "app"))
        .await
        .unwrap();
    db.revoke_session(acme.id, a2.id, t(10)).await.unwrap();

    let revoked = db
        .revoke_client_sessions(acme.id, "app", t(20))
        .await
        .unwrap();
    assert_eq!(
        revoked,
        [a1.id],
        "only open sessions of that client in that tenant"
    );
    assert!(
        !db.session(acme.id, a1.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(t(21))
    );
    assert!(
        db.session(acme.id, own.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(t(21))
    );
    assert!(
        db.session(globex.id, other.id)
            .await
            .unwrap()
            .unwrap()
            .is_active(t(21))
    );
    assert!(
        db.revoke_client_sessions(acme.id, "app", t(30))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn redirect_uris_match_exactly_or_on_any_loopback_port(db: &Db) {
    let acme = tenant(&**db, "acme").await;
    let app = db
        .upsert_oauth_client(&oauth_client(acme.id, "uid-app", "app"))
        .await
        .unwrap();
    assert!(app.redirect_uri_allowed("https://app.example.com/callback"));
    assert!(!app.redirect_uri_allowed("https://app.example.com/callback/"));
    assert!(!app.redirect_uri_allowed("https://app.example.com/callback?x=1"));
    assert!(!app.redirect_uri_allowed("https://app.example.com:444/callback"));
    assert!(!app.redirect_uri_allowed("HTTPS://app.example.com/callback"));
    assert!(app.redirect_uri_allowed("http://127.0.0.1:53124/native"));
    assert!(app.redirect_uri_allowed("http://127.0.0.1/native"));
    assert!(!app.redirect_uri_allowed("http://127.0.0.1:53124/other"));
    assert!(!app.redirect_uri_allowed("http://localhost:53124/native"));
    assert!(!app.redirect_uri_allowed("https://127.0.0.1:53124/native"));
    assert!(!app.redirect_uri_allowed("http://127.0.0.1:53124/native#frag"));
    assert!(app.post_logout_uri_allowed("https://app.example.com/"));
    assert!(!app.post_logout_uri_allowed("https://app.example.com/x"));
    assert!(app.allows_scopes(["openid", "orders.read"]));
    assert!(!app.allows_scopes(["openid", "orders.write"]));
    assert!(app.allows_grant(GrantType::RefreshToken));
    assert!(!app.allows_grant(GrantType::ClientCredentials));
    assert_eq!(
        GrantType::from_parameter("urn:ietf:params:oauth:grant-type:device_code"),
        Some(GrantType::DeviceCode)
    );
    assert_eq!(GrantType::from_parameter("device_code"), None);
    assert!(is_loopback_redirect("http://[::1]:8000/cb"));
    assert!(!is_loopback_redirect("http://localhost:8000/cb"));
}
