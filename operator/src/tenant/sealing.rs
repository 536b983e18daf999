//! A tenant's signing keys under the active master key. Master-key rotation
//! (docs/operations.md) prepends a key, waits for the operator, then removes the old one:
//! every pass re-seals each private key still sealed under an older master key, and a key
//! that no configured master key opens makes the tenant not Ready, since the gateway could
//! not sign with it.

use crate::{Context, ReconcileError};
use keygate_core::crypto::CryptoError;
use keygate_core::ids::TenantId;

/// Signing keys no configured master key opens; the tenant cannot issue tokens with them.
#[derive(Debug, thiserror::Error)]
#[error(
    "signing key {kid} cannot be opened: {cause}. Add the master key that sealed it back to the master keys (KEYGATE_MASTER_KEYS), restart the operator and the gateway, and remove it only after every Tenant is Ready"
)]
pub struct Unreadable {
    /// The first key that does not open.
    pub kid: String,
    /// Why (usually a master key that is no longer configured).
    #[source]
    pub cause: CryptoError,
}

/// Re-seals under the active master key every signing key of `tenant` sealed under another
/// one; returns how many were re-sealed, or the first key no configured master key opens.
pub async fn reseal_signing_keys(
    ctx: &Context,
    tenant: TenantId,
) -> Result<Result<usize, Unreadable>, ReconcileError> {
    let mut resealed = 0;
    for key in ctx.store.signing_keys(tenant).await? {
        let context = super::signing_key_context(&key.kid);
        let plain = match ctx.master_keys.open(&key.private_key, &context) {
            Ok(plain) => plain,
            Err(cause) => {
                return Ok(Err(Unreadable {
                    kid: key.kid,
                    cause,
                }));
            }
        };
        if !ctx.master_keys.needs_reseal(&key.private_key) {
            continue;
        }
        let sealed = ctx.master_keys.seal(&plain, &context)?;
        // Compare-and-set: a key another writer changed meanwhile is left to its next pass.
        if ctx
            .store
            .reseal_signing_key(tenant, &key.kid, &key.private_key, &sealed)
            .await?
        {
            resealed += 1;
        }
    }
    if resealed > 0 {
        tracing::info!(
            %tenant,
            resealed,
            master_key = ctx.master_keys.active_id(),
            "signing keys re-sealed under the active master key"
        );
    }
    Ok(Ok(resealed))
}

/// A TOTP seed no configured master key opens; the person cannot use that factor.
#[derive(Debug, thiserror::Error)]
#[error(
    "the second factor {factor} cannot be opened: {cause}. Add the master key that sealed it back to the master keys (KEYGATE_MASTER_KEYS), restart the operator and the gateway, and remove it only after every Tenant is Ready"
)]
pub struct UnreadableFactor {
    /// The first factor that does not open.
    pub factor: keygate_core::ids::FactorId,
    /// Why (usually a master key that is no longer configured).
    #[source]
    pub cause: CryptoError,
}

/// How many factors one page of the re-seal pass reads.
const FACTOR_PAGE: u32 = 500;

/// Re-seals under the active master key every second-factor secret (TOTP seed) of `tenant`
/// sealed under another one, page by page; returns how many were re-sealed, or the first
/// factor no configured master key opens.
pub async fn reseal_factor_secrets(
    ctx: &Context,
    tenant: TenantId,
) -> Result<Result<usize, UnreadableFactor>, ReconcileError> {
    let mut resealed = 0;
    let mut after = None;
    loop {
        let page = ctx.store.factors_page(tenant, after, FACTOR_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let full = page.len() == FACTOR_PAGE as usize;
        for factor in page {
            if !ctx.master_keys.needs_reseal(&factor.secret) {
                continue;
            }
            let context = factor.seal_context();
            let plain = match ctx.master_keys.open(&factor.secret, &context) {
                Ok(plain) => plain,
                Err(cause) => {
                    return Ok(Err(UnreadableFactor {
                        factor: factor.id,
                        cause,
                    }));
                }
            };
            let sealed = ctx.master_keys.seal(&plain, &context)?;
            // Compare-and-set: a factor re-enrolled meanwhile is left as it is.
            if ctx
                .store
                .reseal_factor_secret(tenant, factor.id, &factor.secret, &sealed)
                .await?
            {
                resealed += 1;
            }
        }
        if !full {
            break;
        }
    }
    if resealed > 0 {
        tracing::info!(
            %tenant,
            resealed,
            master_key = ctx.master_keys.active_id(),
            "second-factor secrets re-sealed under the active master key"
        );
    }
    Ok(Ok(resealed))
}
