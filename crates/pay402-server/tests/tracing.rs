//! Tracing: the layer's spans and events carry reasons and token ids, never
//! macaroons, keys or preimages. Its own test binary, so that the global
//! subscriber sees every callsite (tracing caches callsite interest process-wide).

mod common;

use common::*;
use http::StatusCode;
use pay402_server::L402Config;

#[tokio::test]
async fn tracing_records_mint_verify_and_reject_without_secrets() {
    let captured = pay402_testkit::logs::capture_global(tracing::Level::TRACE);

    let env = env(L402Config::new("api"));
    let r = send(&env.app, get_req("/paid", &[])).await;
    let auth = pay(&env.payer, &r).await;
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    let (mac, pre) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let bad = format!("L402 {mac}:{}", "ab".repeat(32));
    assert_eq!(
        send(&env.app, get_req("/paid", &[&bad])).await.status,
        StatusCode::PAYMENT_REQUIRED
    );

    let logs = captured.text();
    assert!(logs.contains("l402.request"), "{logs}");
    assert!(logs.contains("l402.mint"), "{logs}");
    assert!(logs.contains("l402.verify"), "{logs}");
    assert!(
        logs.contains("l402.reject") && logs.contains("preimage_mismatch"),
        "{logs}"
    );
    assert!(!logs.contains(mac), "macaroon leaked into logs");
    assert!(
        !logs.contains(&mac[..40]),
        "macaroon prefix leaked into logs"
    );
    assert!(!logs.contains(pre), "preimage leaked into logs");
}
