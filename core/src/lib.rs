//! keygate-core: what the operator and the gateway share — typed ids, time, crypto,
//! configuration and the storage traits with their Postgres and SQLite implementations.

pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod ephemeral;
pub mod federation;
pub mod ids;
pub mod keyring;
pub mod store;
pub mod tenant_settings;
