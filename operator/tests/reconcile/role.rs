//! Issue 14.2: a Role that binds users by email warns (a condition beside `Ready`) when its
//! tenant lets people sign in without verifying their address, since such a binding only
//! takes effect once the address is verified.

use crate::support::*;
use keygate_operator::Status;
use sqlx::PgPool;

/// (status, reason, message) of the Role's `EmailVerificationRequired` condition, if any.
fn email_condition(
    view: &keygate_operator::directory::StatusView,
    name: &str,
) -> Option<(String, String, String)> {
    let Some(Status::Role(status)) = view.get(name) else {
        panic!("{name} is not a Role status in {view:#?}");
    };
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "EmailVerificationRequired")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[sqlx::test(migrations = false)]
async fn a_role_binding_emails_warns_while_its_tenant_does_not_require_verification(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    let with = |verification: &str| {
        tenant(
            "demo",
            "default",
            &format!(
                "  signIn:\n    registration: open\n    emailVerification: \"{verification}\"\n"
            ),
        )
    };
    h.write("tenant.yaml", &with("optional"));
    h.write(
        "role.yaml",
        &role("boss", &["orders.admin"], &["boss@demo.example"]),
    );
    let view = h.sync().await;
    assert_eq!(
        ready(&view, "Role default/boss").0,
        "True",
        "the bindings stay live"
    );
    let (status, reason, message) = email_condition(&view, "Role default/boss").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "VerificationOptional")
    );
    assert!(message.contains("emailVerification: optional"), "{message}");

    h.write("tenant.yaml", &with("off"));
    let view = h.sync().await;
    let (status, reason, _) = email_condition(&view, "Role default/boss").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "VerificationOff")
    );

    h.write("tenant.yaml", &with("required"));
    let view = h.sync().await;
    let (status, reason, _) = email_condition(&view, "Role default/boss").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Required"));

    // A Role that binds no one by email has nothing to warn about.
    h.write("tenant.yaml", &with("optional"));
    h.write("role.yaml", &role("boss", &["orders.admin"], &[]));
    let view = h.sync().await;
    assert_eq!(email_condition(&view, "Role default/boss"), None);
}

#[sqlx::test(migrations = false)]
async fn the_shipped_dev_example_binds_emails_only_where_verification_is_required(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dev");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            h.write(&name, &std::fs::read_to_string(&path).unwrap());
        }
    }
    let view = h.sync().await;
    // demo-admin binds admin@demo.local: signing up as it must not be a way in.
    let (status, reason, message) = email_condition(&view, "Role default/demo-admin").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Required"),
        "{message}"
    );
}

/// A Role whose local groups nobody can be in is refused rather than reported Ready while it
/// binds nobody (issue 13); one naming an upstream provider's groups is written, and Ready
/// only once its tenant has that provider (issue 16).
#[sqlx::test(migrations = false)]
async fn a_role_binding_groups_nobody_can_be_in_is_refused(pool: PgPool) {
    let h = Harness::postgres(pool).await;
    h.write("tenant.yaml", &tenant("demo", "default", ""));
    let with = |subjects: &str| {
        format!(
            "apiVersion: keygate.dev/v1alpha1\nkind: Role\nmetadata:\n  name: ops\n  namespace: default\nspec:\n  tenantRef:\n    name: demo\n  permissions: [orders.read]\n  subjects:\n    users: [ops@demo.example]\n{subjects}"
        )
    };
    let id = |h: &Harness| {
        let h = h.ctx.store.clone();
        async move {
            let t = h.tenant_by_name("demo").await.unwrap().unwrap();
            h.role_by_name(t.id, "ops").await.unwrap()
        }
    };
    h.write(
        "role.yaml",
        &with("    groups: [keygate-admins, on-call]\n"),
    );
    let view = h.sync().await;
    let (status, reason, message) = ready(&view, "Role default/ops");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NotSupported")
    );
    assert!(message.contains("on-call"), "{message}");
    assert!(id(&h).await.is_none(), "nothing is written");

    // Upstream groups of a provider the tenant does not have: written, not Ready.
    h.write(
        "role.yaml",
        &with("    idpGroups:\n      - identityProvider: corp\n        group: engineering\n"),
    );
    let view = h.sync().await;
    let (status, reason, message) = ready(&view, "Role default/ops");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ProviderNotFound")
    );
    assert!(message.contains("`corp`"), "{message}");
    let role = id(&h).await.expect("written");
    assert!(
        role.subjects
            .contains(&keygate_core::store::RoleSubject::IdpGroup {
                idp: "corp".into(),
                group: "engineering".into(),
            })
    );
    // Once the provider exists (stored, even while its issuer is unreachable), it is Ready.
    h.write("idp.yaml", IDP);
    h.write("secret.yaml", &idp_secret("s3cret"));
    let view = h.sync().await;
    let view = if ready(&view, "Role default/ops").0 == "True" {
        view
    } else {
        // The Role may have been reconciled before the provider in that pass.
        h.sync().await
    };
    assert_eq!(ready(&view, "Role default/ops").0, "True");

    // The one group accounts can be in is bound, with the users.
    h.write("role.yaml", &with("    groups: [keygate-admins]\n"));
    let view = h.sync().await;
    assert_eq!(ready(&view, "Role default/ops").0, "True");
    assert!(id(&h).await.is_some());
}
