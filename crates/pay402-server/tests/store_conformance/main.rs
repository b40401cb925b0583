//! One conformance suite per store trait, written once and run against
//! every implementation: memory, SQLite (a file) and PostgreSQL (a real
//! server started by `pay402-testkit`, a fresh database per test).
//!
//! Each test body receives two handles on one state (`a` and `b`): for
//! memory the same store twice; for SQLite and PostgreSQL two stores on two
//! pools of one database, as two server processes would open them. Bodies
//! cover every operation, its error cases, and concurrent use (many tasks
//! racing on one key through both handles). Tests marked `persistent` also
//! reopen the database and run only on SQLite and PostgreSQL.
//!
//! A PostgreSQL test that cannot start the server fails with what is
//! missing; nothing is skipped.
#![cfg(all(feature = "x402", feature = "x402-mock", feature = "bitreq"))]

mod backend;
mod bitreq;
mod l402;
#[path = "../common/mock_jobs.rs"]
mod mock_jobs;
mod mpp;
mod settlements;
mod x402;
mod x402_mock;
