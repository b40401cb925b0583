//! The PostgreSQL pools every store opens, and the migrations that create
//! and evolve their tables.
//!
//! A pool connects with the [`DatabaseOptions`]: at most `max_connections`
//! connections, each with the server-side `statement_timeout` set at
//! connect; a request waits at most `acquire_timeout` for a connection, so
//! while the database is down requests fail (503) instead of hanging, and
//! the pool reconnects by itself when it is back (each idle connection is
//! pinged before it is handed out).
//!
//! TLS: to any host but loopback or a Unix socket, a URL without `sslmode`
//! connects with `verify-full` (certificate and host name checked), and a
//! URL asking for `disable`, `allow` or `prefer` is refused: the root
//! secret and every payment record cross that connection.
//!
//! Migrations: each store keeps its SQL in `migrations/postgres/<store>/`
//! (embedded at build time) and applies what is missing when it opens, in
//! one transaction under a PostgreSQL advisory lock, so several instances
//! starting at once apply each migration exactly once. Applied versions are
//! recorded with a SHA-256 of their SQL in `pay402_schema_migrations`; a
//! recorded migration whose SQL changed is refused.

use std::net::IpAddr;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::database::DatabaseOptions;
use crate::store::StoreError;

/// One embedded migration of one store.
pub(crate) struct Migration {
    /// Applied in increasing order, once.
    pub version: i64,
    /// For operators reading `pay402_schema_migrations`.
    pub name: &'static str,
    /// The statements (run with the simple query protocol, several at once).
    pub sql: &'static str,
}

/// Serialises migrations of every pay402 store in one database
/// (`pg_advisory_xact_lock` key: "pay402mg" as a big-endian integer).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"pay402mg");

/// Whether `host` is this machine: a loopback address, `localhost`, or a
/// Unix socket directory.
fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || IpAddr::from_str(bare).is_ok_and(|ip| ip.is_loopback())
}

/// Whether the URL's query names an SSL mode itself.
fn names_ssl_mode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            key.eq_ignore_ascii_case("sslmode") || key.eq_ignore_ascii_case("ssl-mode")
        })
    })
}

/// The connect options of `url` with pay402's TLS policy and settings.
pub(crate) fn connect_options(
    url: &str,
    options: &DatabaseOptions,
) -> Result<PgConnectOptions, StoreError> {
    let mut opts = PgConnectOptions::from_str(url).map_err(|e| {
        // sqlx's message names the part that failed, never the password.
        StoreError::Config(format!("invalid PostgreSQL URL: {e}"))
    })?;
    let local = opts.get_socket().is_some() || is_local(opts.get_host());
    let weak = matches!(
        opts.get_ssl_mode(),
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
    );
    if !local && weak {
        let chosen = names_ssl_mode(url) || std::env::var_os("PGSSLMODE").is_some();
        if chosen {
            return Err(StoreError::Config(format!(
                "PostgreSQL at {} is not on this machine: its connection must use TLS \
                 (sslmode=verify-full, verify-ca or require), not {:?}",
                opts.get_host(),
                opts.get_ssl_mode()
            )));
        }
        opts = opts.ssl_mode(PgSslMode::VerifyFull);
    }
    if opts.get_application_name().is_none() {
        opts = opts.application_name("pay402");
    }
    let timeout_ms = options.statement_timeout.as_millis().max(1).to_string();
    Ok(opts.options([("statement_timeout", timeout_ms.as_str())]))
}

/// A pool on `url` (see the module docs); fails unless one connection can
/// be made within the acquire timeout.
pub(crate) async fn connect(url: &str, options: &DatabaseOptions) -> Result<PgPool, StoreError> {
    let opts = connect_options(url, options)?;
    PgPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(10).max(1))
        .min_connections(0)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(true)
        .connect_with(opts)
        .await
        .map_err(unavailable)
}

/// A database error as the stores report it.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Applies the `migrations` of `component` that the database lacks (see the
/// module docs).
pub(crate) async fn migrate(
    pool: &PgPool,
    component: &str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS pay402_schema_migrations (
            component TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            checksum BYTEA NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version)
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT version, checksum FROM pay402_schema_migrations WHERE component = $1",
    )
    .bind(component)
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    for m in migrations {
        let sum = checksum(m.sql);
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, stored)) if *stored == sum => continue,
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {component}/{} ({}) was applied with other SQL than this \
                     build's",
                    m.version, m.name
                )));
            }
            None => {}
        }
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "migration {component}/{} ({}) failed: {e}",
                m.version, m.name
            ))
        })?;
        sqlx::query(
            "INSERT INTO pay402_schema_migrations (component, version, name, checksum)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(component)
        .bind(m.version)
        .bind(m.name)
        .bind(sum)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tracing::info!(
            component,
            version = m.version,
            name = m.name,
            "pay402.migration_applied"
        );
    }
    tx.commit().await.map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_and_explicit_ssl_modes_are_recognised() {
        for local in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
            "localhost",
            "/run/pg",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["db.example.com", "10.0.0.5", "192.168.1.2", "2001:db8::1"] {
            assert!(!is_local(remote), "{remote}");
        }
        assert!(names_ssl_mode("postgres://h/db?sslmode=require"));
        assert!(names_ssl_mode("postgres://h/db?a=b&SSLMODE=disable"));
        assert!(!names_ssl_mode("postgres://h/db?application_name=x"));
        assert!(!names_ssl_mode("postgres://h/sslmode"));
    }

    #[test]
    fn remote_databases_get_verified_tls_and_plaintext_to_them_is_refused() {
        let o = DatabaseOptions::default();
        let remote = connect_options("postgres://u:pw@db.example.com/pay402", &o).unwrap();
        assert!(matches!(remote.get_ssl_mode(), PgSslMode::VerifyFull));
        for weak in ["disable", "allow", "prefer"] {
            let url = format!("postgres://u:pw@db.example.com/pay402?sslmode={weak}");
            let err = connect_options(&url, &o).unwrap_err();
            assert_eq!(pay402_core::problem::Reason::reason(&err), "store_config");
            assert!(!err.to_string().contains("pw"), "no password in {err}");
        }
        let ok = connect_options("postgres://db.example.com/p?sslmode=require", &o).unwrap();
        assert!(matches!(ok.get_ssl_mode(), PgSslMode::Require));
        // Loopback keeps what it asks for (a local test cluster has no TLS).
        let local = connect_options("postgres://postgres@127.0.0.1:5432/p", &o).unwrap();
        assert!(!matches!(local.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(local.get_application_name(), Some("pay402"));
        assert!(
            local
                .get_options()
                .is_some_and(|s| s.contains("statement_timeout=10000"))
        );
        assert!(connect_options("postgres://[bad", &o).is_err());
    }
}
