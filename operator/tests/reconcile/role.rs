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
