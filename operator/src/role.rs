//! Role reconciler: a Role's permissions and subjects (users by email, groups, upstream-IdP
//! groups) into the store, so the next token issued carries them.

use crate::status::{CONDITION_EMAIL_VERIFICATION, Lookup, Reason, condition, ready};
use crate::{Context, Effects, ReconcileError, tenant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keygate_core::store::{ADMIN_GROUP, RoleSubject, RoleUpsert};
use keygate_core::tenant_settings::EmailVerification;
use keygate_crds::{Role, RoleStatus};

/// Reconciles one Role; returns the status to publish.
pub async fn reconcile(
    ctx: &Context,
    effects: &Effects,
    role: &Role,
    owner_uid: &str,
) -> Result<RoleStatus, ReconcileError> {
    let now = ctx.clock.now();
    let (name, namespace) = crate::object_key(&role.metadata)?;
    let generation = role.metadata.generation;
    let status = |ok: bool, reason, message: String| RoleStatus {
        conditions: vec![ready(ok, reason, message, generation, now)],
        observed_generation: generation,
    };

    if let Err(refused) = keygate_crds::admit(&keygate_crds::Resource::Role(role.clone())) {
        return Ok(status(false, Reason::InvalidSpec, refused.to_string()));
    }
    if let Some(why) = unsupported_subjects(role) {
        return Ok(status(false, Reason::NotSupported, why));
    }
    let stored_tenant =
        match tenant::parent(ctx, effects, namespace, &role.spec.tenant_ref.name).await? {
            Lookup::Found(t) => t,
            Lookup::Blocked(why) => return Ok(status(false, why.reason(), why.to_string())),
        };
    let wanted = upsert(role, name, owner_uid, stored_tenant.id);
    let mut missing = Vec::new();
    for g in &role.spec.subjects.idp_groups {
        let name = &g.identity_provider;
        if !missing.contains(&name)
            && ctx
                .store
                .idp_by_name(stored_tenant.id, name)
                .await?
                .is_none()
        {
            missing.push(name);
        }
    }
    let unchanged = match &effects.cache {
        Some(cache) => cache
            .roles(ctx.store.as_ref(), stored_tenant.id)
            .await?
            .get(name)
            .is_some_and(|row| same(row, &wanted)),
        None => false,
    };
    // The store skips an unchanged upsert itself; the pass cache only saves its reads.
    if !unchanged {
        ctx.store.upsert_role(&wanted).await?;
    }
    // Written all the same, so the binding is live the moment the provider appears.
    let mut done = if missing.is_empty() {
        status(
            true,
            Reason::Reconciled,
            "permissions and subjects are live".into(),
        )
    } else {
        let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
        status(
            false,
            Reason::ProviderNotFound,
            format!(
                "subjects.idpGroups name IdentityProvider `{}`, which tenant `{}` does not have: those groups bind nobody",
                names.join("`, `"),
                stored_tenant.name
            ),
        )
    };
    if !role.spec.subjects.users.is_empty() {
        let verification = stored_tenant.settings.sign_in.email_verification;
        let warning = email_verification(verification, &stored_tenant.name, generation, now);
        done.conditions.push(warning);
    }
    Ok(done)
}

/// Why the Role's subjects cannot be honoured by this version, if they cannot: local groups
/// other than [`ADMIN_GROUP`] (nothing puts an account in one). Such a Role would be `Ready`
/// while it binds nobody, so it is refused and nothing is written.
fn unsupported_subjects(role: &Role) -> Option<String> {
    let subjects = &role.spec.subjects;
    let other: Vec<&str> = subjects
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| *g != ADMIN_GROUP)
        .collect();
    (!other.is_empty()).then(|| {
        format!(
            "subjects.groups `{}` bind nobody: this keygate version puts accounts in no group but `{ADMIN_GROUP}` (the bootstrap administrator's); bind users by email",
            other.join("`, `")
        )
    })
}

/// [`CONDITION_EMAIL_VERIFICATION`] for a Role with `subjects.users` in a tenant whose
/// `signIn.emailVerification` is `verification`. The bindings stay live either way; the
/// warning tells the operator why a bound person may not get the role yet.
fn email_verification(
    verification: EmailVerification,
    tenant: &str,
    generation: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Condition {
    let (ok, reason, message) = match verification {
        EmailVerification::Required => (
            true,
            "Required",
            format!(
                "Tenant `{tenant}` admits only verified addresses; users bound by email get this role when they sign in"
            ),
        ),
        EmailVerification::Optional => (
            false,
            "VerificationOptional",
            format!(
                "Tenant `{tenant}` lets people sign in without verifying their address (signIn.emailVerification: optional): anyone may sign up as a bound address, so users bound by email get this role only after verifying it; set emailVerification to required"
            ),
        ),
        EmailVerification::Off => (
            false,
            "VerificationOff",
            format!(
                "Tenant `{tenant}` never verifies addresses (signIn.emailVerification: off): users bound by email get this role only as invited accounts or the bootstrap admin; set emailVerification to required"
            ),
        ),
    };
    condition(
        CONDITION_EMAIL_VERIFICATION,
        ok,
        reason,
        message,
        generation,
        now,
    )
}

/// The row a Role resource describes. Lists are sorted and deduplicated so the same spec
/// always yields the same row, and a resync of an unchanged Role compares equal.
pub fn upsert(
    role: &Role,
    name: &str,
    owner_uid: &str,
    tenant: keygate_core::ids::TenantId,
) -> RoleUpsert {
    let mut permissions = role.spec.permissions.clone();
    permissions.sort();
    permissions.dedup();
    let subjects = &role.spec.subjects;
    let mut bound: Vec<RoleSubject> = subjects
        .users
        .iter()
        .map(|u| RoleSubject::UserEmail(u.clone()))
        .chain(
            subjects
                .groups
                .iter()
                .map(|g| RoleSubject::Group(g.clone())),
        )
        .chain(subjects.idp_groups.iter().map(|g| RoleSubject::IdpGroup {
            idp: g.identity_provider.clone(),
            group: g.group.clone(),
        }))
        .collect();
    bound.sort();
    bound.dedup();
    RoleUpsert {
        tenant_id: tenant,
        name: name.to_owned(),
        owner_uid: owner_uid.to_owned(),
        description: role.spec.description.clone().unwrap_or_default(),
        permissions,
        subjects: bound,
        generation: role.metadata.generation.unwrap_or(0),
    }
}

/// Whether a stored role already is what `wanted` describes.
fn same(row: &keygate_core::store::Role, wanted: &RoleUpsert) -> bool {
    let mut subjects = row.subjects.clone();
    subjects.sort();
    row.owner_uid == wanted.owner_uid
        && row.description == wanted.description
        && row.permissions == wanted.permissions
        && row.generation == wanted.generation
        && subjects == wanted.subjects
}

/// Handles a deleted Role: removes the role row it owns (bindings go with it).
pub async fn cleanup(
    ctx: &Context,
    effects: &Effects,
    role: &Role,
    owner_uid: &str,
) -> Result<(), ReconcileError> {
    let (name, namespace) = crate::object_key(&role.metadata)?;
    let Lookup::Found(stored_tenant) =
        tenant::parent(ctx, effects, namespace, &role.spec.tenant_ref.name).await?
    else {
        // A disabled (retained) tenant keeps its roles; a missing one has none.
        return Ok(());
    };
    if let Some(existing) = ctx.store.role_by_name(stored_tenant.id, name).await?
        && existing.owner_uid == owner_uid
    {
        ctx.store.delete_role(stored_tenant.id, existing.id).await?;
        tracing::info!(
            role = name,
            namespace,
            "Role deleted: role removed from the store"
        );
    }
    Ok(())
}
