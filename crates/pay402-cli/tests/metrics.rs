//! `/metrics` of the real `pay402 proxy`, scraped after paid requests:
//! requests, 402s issued, payments by rail and outcome, revenue per unit,
//! and the verify and upstream latency histograms.

mod common;

use common::{BIN, Proxy, simnet_config, temp_dir};

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-metrics";

/// The value of the sample `name{labels}` in a Prometheus text scrape.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_requests_402s_payments_revenue_and_latencies_after_paid_requests() {
    let upstream = common::start_upstream().await;
    let dir = temp_dir("metrics");
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    let toml = simnet_config(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = {{ file = "{dir}/admin-token" }}

[bitrequests]
network = "regtest"
transfer_username = "shop"

[[services]]
name = "ln"
path = "^/paid/"
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 25 }}

[[services]]
name = "btc"
upstream = "http://{upstream}"
rails = ["bitreq"]
price = {{ sats = 7 }}
"#,
        dir = dir.display()
    ));
    let proxy = Proxy::start(&dir, &toml).await;

    // One unpaid request (a 402), then L402 paid once and its token reused.
    let unpaid = reqwest::get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let client = common::l402_client(&proxy);
    let first = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.receipt.is_some());
    let again = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.reused_token);

    // BitRequests paid by the real `pay402 fetch`.
    let seed = common::open_account(&proxy, ADMIN_TOKEN, &dir, "carol", 100).await;
    let fetch_config = dir.join("fetch.toml");
    std::fs::write(
        &fetch_config,
        format!(
            "[bitrequests]\nseed_file = \"{}\"\nusername = \"carol\"\nnetwork = \"regtest\"\n",
            seed.display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["fetch", "-s", "-o", "/dev/null", "--config"])
        .arg(&fetch_config)
        .arg(proxy.url("/echo"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let scrape = common::get_text(proxy.url("/metrics")).await;
    let get = |s: &str| sample(&scrape, s).unwrap_or_else(|| panic!("{s} in\n{scrape}"));
    // Requests (the 402 ones included), by service and status.
    assert_eq!(
        get(r#"pay402_requests_total{service="ln",status="402"}"#),
        2.0
    );
    assert_eq!(
        get(r#"pay402_requests_total{service="ln",status="200"}"#),
        2.0
    );
    assert_eq!(
        get(r#"pay402_requests_total{service="btc",status="200"}"#),
        1.0
    );
    // 402s issued: the unpaid request and the L402 client's first try on
    // "ln", the fetch's first try on "btc".
    assert_eq!(get(r#"pay402_challenges_total{service="ln"}"#), 2.0);
    assert_eq!(get(r#"pay402_challenges_total{service="btc"}"#), 1.0);
    // Payments by rail and outcome.
    assert_eq!(
        get(r#"pay402_payments_total{service="ln",rail="l402",outcome="accepted"}"#),
        2.0
    );
    assert_eq!(
        get(r#"pay402_payments_total{service="btc",rail="bitreq",outcome="accepted"}"#),
        1.0
    );
    // Revenue per unit: the L402 token's price once (25 sat in msat), the
    // bit-transfer's 7 sat.
    assert_eq!(
        get(r#"pay402_revenue_total{service="ln",rail="l402",unit="msat"}"#),
        25_000.0
    );
    assert_eq!(
        get(r#"pay402_revenue_total{service="btc",rail="bitreq",unit="sat"}"#),
        7.0
    );
    // Latency histograms: one verify sample per accepted paid request, one
    // upstream sample per forwarded request.
    assert_eq!(
        get(r#"pay402_verify_latency_seconds_count{service="ln",rail="l402"}"#),
        2.0
    );
    assert_eq!(
        get(r#"pay402_verify_latency_seconds_count{service="btc",rail="bitreq"}"#),
        1.0
    );
    assert!(
        scrape.contains(
            r#"pay402_verify_latency_seconds_bucket{service="ln",rail="l402",le="0.001"}"#
        )
    );
    assert_eq!(
        get(r#"pay402_upstream_latency_seconds_count{service="ln"}"#),
        2.0
    );
    assert_eq!(
        get(r#"pay402_upstream_latency_seconds_count{service="btc"}"#),
        1.0
    );
    assert!(get(r#"pay402_upstream_latency_seconds_sum{service="ln"}"#) > 0.0);
}
