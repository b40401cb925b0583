//! Tracing: the layer's spans and events carry reasons and token ids, never
//! macaroons, keys or preimages. Its own test binary, so that the global
//! subscriber sees every callsite (tracing caches callsite interest process-wide).

mod common;

use std::sync::Arc;

use common::*;
use http::StatusCode;
use pay402_server::L402Config;

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tracing_records_mint_verify_and_reject_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

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

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
