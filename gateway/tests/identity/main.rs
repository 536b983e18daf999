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
mod admin;
mod api;
mod client_address;
mod mail;
mod replicas;
mod sessions;
mod signin;
mod tokens;
mod walks;
