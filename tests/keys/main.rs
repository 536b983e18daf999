//! Keys across the operator and the gateway, on PostgreSQL: master-key rotation as
//! docs/operations.md describes it, and signing-key rotation on a controllable clock. One test
//! binary (each binary is a link on CI's two cores), one module per procedure.

mod master_key_rotation;
mod signing_key_rotation;
