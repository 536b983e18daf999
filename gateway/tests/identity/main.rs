//! The identity area over HTTP on a real socket: PostgreSQL (a fresh database per test via
//! `#[sqlx::test]`, `DATABASE_URL`), Redis on `KEYGATE_TEST_REDIS_URL` (a unique key prefix
//! per test), tokens checked by an independent verifier that fetches the JWKS over HTTP.
//!
//! One test binary, one module per workflow; the environment and fixtures they share are in
//! `support::env`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod addresses;
mod admin;
mod api;
mod branding;
mod client_address;
mod clients;
mod cookie_domain;
mod devices;
mod faults;
mod federated_step_up;
mod federation;
mod federation_limits;
mod handoff;
mod hashing;
mod janitor;
mod mail;
mod me;
mod metadata;
mod metrics;
mod mfa;
mod network;
mod page_state;
mod provider;
mod replicas;
mod request_ids;
mod saml;
mod scopes;
mod sessions;
mod signin;
mod tenant_names;
mod tokens;
mod upstream_token;
mod verified_email;
mod walks;
mod webauthn;
