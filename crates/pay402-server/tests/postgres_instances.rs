//! Servers on PostgreSQL. A store that goes away: requests that need it
//! answer 503 problem+json with `store_unavailable` (never serving unpaid
//! content, never settling a payment whose record cannot be written),
//! requests that do not need it carry on, and everything recovers by itself
//! once the database is back, on the same pool, with no restart of the
//! server. And an L402 token revoked through one instance is refused by
//! another within that instance's key cache TTL.
//!
//! The outage tests run their own PostgreSQL cluster (`pay402-testkit`),
//! stop it by its PID mid-test and start it again on the same port and
//! data.
#![cfg(feature = "x402")]

mod common;
mod x402_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use pay402_core::x402::{PaymentRequirements, TokenAmount};
use pay402_server::database::{Database, DatabaseOptions};
use pay402_server::x402::store::PaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Route, exact_offer};
use pay402_server::{L402Config, store};
use pay402_testkit::postgres::Postgres;

/// Short waits so an outage answers quickly (the default is 5 s).
fn options() -> DatabaseOptions {
    DatabaseOptions::default()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(800))
        .statement_timeout(Duration::from_secs(5))
}

async fn database(pg: &Postgres) -> Database {
    let db = pg.create_database().expect("a database");
    Database::open(db.url(), &options()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_answers_503_while_postgres_is_down_and_recovers_by_itself() {
    let pg = Postgres::start().expect("the PostgreSQL test peer must start");
    let db = database(&pg).await;
    let keys = store::open(&db).await.unwrap();
    // The store clears the layers' key caches once it listens for
    // revocation announcements: wait for that before warming one.
    let mut feed = keys
        .revocations()
        .expect("PostgreSQL announces revocations");
    let env = common::env_with(L402Config::new("outage"), keys);
    assert_eq!(feed.recv().await.unwrap(), store::Revocation::Resync);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A token used before the outage (its key is now in the layer's cache).
    let warm = common::buy(&env, "/paid").await;
    for _ in 0..2 {
        let r = common::send(&env.app, common::get_req("/paid", &[&warm])).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // A token paid for but not yet used: its first use needs the store.
    let cold = common::buy(&env, "/paid").await;

    pg.stop().unwrap();
    let r = common::send(&env.app, common::get_req("/paid", &[&cold])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(r.reason(), "store_unavailable");
    assert!(!String::from_utf8_lossy(&r.body).contains("paid:"));
    // Unpaid requests write nothing: they still get their 402.
    let r = common::send(&env.app, common::get_req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    // A warm token is verified from the key cache without the store.
    let r = common::send(&env.app, common::get_req("/paid", &[&warm])).await;
    assert_eq!(r.status, StatusCode::OK);

    pg.restart().unwrap();
    let r = common::send(&env.app, common::get_req("/paid", &[&cold])).await;
    assert_eq!(r.status, StatusCode::OK, "recovered on the same pool");
    assert!(String::from_utf8_lossy(&r.body).starts_with("paid:"));
}

const NETWORK: &str = "eip155:84532";

fn offer() -> PaymentRequirements {
    exact_offer(
        NETWORK,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        TokenAmount::from_u64(10_000),
        "USDC",
        "2",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_answers_503_while_postgres_is_down_settles_nothing_and_recovers() {
    let pg = Postgres::start().expect("the PostgreSQL test peer must start");
    let db = database(&pg).await;
    let payments: Arc<dyn PaymentStore> = pay402_server::x402::store::open(&db).await.unwrap();
    let facilitator = Arc::new(x402_support::FaultInjectingFacilitator::new(NETWORK));
    let layer = X402Layer::new(X402Config::new(), facilitator.clone(), payments.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let app: Router = Router::new().route(
        "/paid",
        get(move || {
            let runs = counter.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                "SECRET"
            }
        })
        .route_layer(layer.with_route(X402Route::new([offer()]).unwrap())),
    );
    let header = x402_support::pay_v2(&x402_support::Payer::dev(1), &offer(), None);
    let paid = || x402_support::req("/paid", &[("payment-signature", header.as_str())]);

    pg.stop().unwrap();
    let r = x402_support::send(&app, paid()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.reason(), "store_unavailable");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(!r.text().contains("SECRET"));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "no content without a record"
    );
    assert_eq!(facilitator.settle_count(), 0, "nothing charged");
    // An unpaid request still gets its offer.
    let r = x402_support::send(&app, x402_support::req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);

    pg.restart().unwrap();
    // The same payment, retried: served and settled once.
    let r = x402_support::send(&app, paid()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(facilitator.settle_count(), 1);
    let r = x402_support::send(&app, paid()).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    assert_eq!(r.reason(), "invalid_exact_evm_nonce_already_used");
    assert_eq!(facilitator.settle_count(), 1);
}

/// Two L402 instances on one database, each with its own pool.
async fn two_l402_instances(
    db: &pay402_testkit::postgres::Database,
    cfg: L402Config,
) -> (common::Env, common::Env) {
    let open = || async {
        let db = Database::open(db.url(), &options()).await.unwrap();
        store::open(&db).await.unwrap()
    };
    (
        common::env_with(cfg.clone(), open().await),
        common::env_with(cfg, open().await),
    )
}

fn token_id(token: &str) -> pay402_core::l402::TokenId {
    let cred = pay402_core::l402::Credential::parse(token).unwrap();
    let mut buf = Vec::new();
    pay402_core::l402::PresentedToken::decode(&cred, &mut buf)
        .unwrap()
        .token_id()
}

/// Sends `token` to `env` until it is refused as `unknown_token`, failing
/// when it is still served `bound` after `since`; returns the delay.
async fn refused_within(
    env: &common::Env,
    token: &str,
    since: std::time::Instant,
    bound: Duration,
) -> Duration {
    loop {
        let r = common::send(&env.app, common::get_req("/paid", &[token])).await;
        if r.status == StatusCode::PAYMENT_REQUIRED {
            assert_eq!(r.reason(), "unknown_token");
            return since.elapsed();
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            since.elapsed() <= bound,
            "still served {:?} after the revocation",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bound a revocation announced by LISTEN/NOTIFY is honoured within
/// on another instance (it arrives in milliseconds on loopback; the
/// margin is for a loaded test machine).
const ANNOUNCED_BOUND: Duration = Duration::from_secs(2);

/// Two L402 instances, each with its own pool on one database: a token
/// bought through one is accepted by the other (one root secret); once
/// revoked through the first, the second refuses it as soon as the
/// PostgreSQL notification arrives, far inside its key cache TTL (the
/// default 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_revocation_through_one_instance_is_announced_to_another_at_once() {
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let (one, two) = two_l402_instances(&db, L402Config::new("instances")).await;
    assert_eq!(one.layer.config().key_cache_ttl, Duration::from_secs(60));

    let token = common::buy(&one, "/paid").await;
    let r = common::send(&two.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(r.status, StatusCode::OK, "the other instance accepts it");
    // Warm in both caches.
    let r = common::send(&one.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(r.status, StatusCode::OK);

    assert!(one.layer.revoke(&token_id(&token)).await.unwrap());
    let r = common::send(&one.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(
        r.status,
        StatusCode::PAYMENT_REQUIRED,
        "at once where revoked"
    );
    assert_eq!(r.reason(), "unknown_token");
    let took = refused_within(&two, &token, std::time::Instant::now(), ANNOUNCED_BOUND).await;
    assert!(took < Duration::from_secs(60));
}

/// Without an announcement (a revocation written by hand, no NOTIFY), the
/// other instance still refuses the token within its key cache TTL (1 s
/// here): the fallback bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_revocation_without_an_announcement_is_honoured_within_the_key_cache_ttl() {
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let mut cfg = L402Config::new("instances");
    cfg.key_cache_ttl = Duration::from_secs(1);
    let (one, two) = two_l402_instances(&db, cfg).await;
    let token = common::buy(&one, "/paid").await;
    let r = common::send(&two.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(r.status, StatusCode::OK);

    pg.psql(
        db.name(),
        &format!(
            "UPDATE pay402_l402_tokens SET revoked = TRUE WHERE token_id = '\\x{}'",
            token_id(&token)
        ),
    )
    .unwrap();
    let revoked_at = std::time::Instant::now();
    // TTL + one second of clock granularity.
    refused_within(&two, &token, revoked_at, Duration::from_secs(2)).await;
}

/// When an instance's notification connection is cut, it listens again
/// and clears its key cache then (announcements may have been missed): a
/// revocation made while it was cut is honoured at once, not after the
/// TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_connection_reconnects_and_clears_the_key_cache() {
    let pg = Postgres::shared().expect("the PostgreSQL test peer must start");
    let db = pg.create_database().unwrap();
    let (one, two) = two_l402_instances(&db, L402Config::new("instances")).await;
    let token = common::buy(&one, "/paid").await;
    let r = common::send(&two.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(r.status, StatusCode::OK);

    // Both instances listen on their own connection, started in the
    // background: wait until both have issued LISTEN (on a loaded machine
    // that can come after the first requests are served).
    let listening = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = pg.psql(db.name(), listening).unwrap();
        if n.trim() == "2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both instances should listen within 20 s; listening: {}",
            n.trim()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cut every listening connection of this database, then revoke by
    // hand (no NOTIFY): only the cleared cache can make it visible.
    let cut = pg
        .psql(
            db.name(),
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .unwrap();
    assert_eq!(cut.trim(), "2", "one listener per instance");
    pg.psql(
        db.name(),
        &format!(
            "UPDATE pay402_l402_tokens SET revoked = TRUE WHERE token_id = '\\x{}'",
            token_id(&token)
        ),
    )
    .unwrap();
    refused_within(&two, &token, std::time::Instant::now(), ANNOUNCED_BOUND).await;

    // Listening again: a revocation through `one` reaches `two` at once.
    let token = common::buy(&one, "/paid").await;
    let r = common::send(&two.app, common::get_req("/paid", &[&token])).await;
    assert_eq!(r.status, StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening = pg
            .psql(
                db.name(),
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            .unwrap();
        if listening.trim() == "2" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "listeners came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(one.layer.revoke(&token_id(&token)).await.unwrap());
    refused_within(&two, &token, std::time::Instant::now(), ANNOUNCED_BOUND).await;
}
