//! `pay402 facilitator`'s own operations endpoints, through the real
//! binary on anvil with Circle's USDC: `/healthz`, `/readyz` and Prometheus
//! `/metrics` on its `ops_listen` address, scraped after a refused call, a
//! valid and an invalid verify, a settle on chain and per-payer rate-limit
//! refusals: each counter moved as the calls went.

mod facilitator_support;

use std::time::Duration;

use alloy_primitives::U256;
use facilitator_support as fs;

/// The value of the first sample line starting with `prefix` (name and
/// labels as rendered), or `None`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(http: &reqwest::Client, ops: &str) -> String {
    let resp = http.get(format!("{ops}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    resp.text().await.unwrap()
}

async fn verify(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    request: &pay402_core::x402::PaymentRequest,
) -> (u16, serde_json::Value) {
    let resp = http
        .post(format!("http://{addr}/verify"))
        .bearer_auth(fs::API_KEY)
        .json(request)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_metrics_count_verify_settle_gas_and_refusals_on_anvil() {
    let chain = fs::start_chain();
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let dir = fs::temp_dir("facilitator-metrics");
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = fs::write_config(
        &dir,
        &chain,
        usdc.address,
        "sqlite::memory:",
        &format!(
            "ops_listen = \"127.0.0.1:{ops_port}\"\npayer_rate_limit = {{ per_second = 1, burst = 4 }}"
        ),
    );
    let fac = fs::Facilitator::start(&config, &[]).await;
    let ops = format!("http://127.0.0.1:{ops_port}");
    let http = reqwest::Client::new();

    // Health and readiness on the operations listener, not on the API's.
    let mut healthy = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{ops}/healthz")).send().await {
            healthy = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy = healthy.expect("the operations listener answers");
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.text().await.unwrap(), "ok\n");
    let ready = http.get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        ready,
        serde_json::json!({ "ready": true, "chain": "ok", "store": "ok" })
    );
    let on_api = http
        .get(format!("http://{}/metrics", fac.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        on_api.status(),
        404,
        "with ops_listen, /metrics is not on the API's listener"
    );

    // Nothing counted yet but what the recorder shows after the start.
    let start = scrape(&http, &ops).await;
    assert_eq!(
        sample(&start, "pay402_facilitator_settle_total"),
        None,
        "{start}"
    );

    // A call without the API key: 401, counted.
    let payer = fs::funded_payer(&usdc, 1_000_000);
    let good = fs::payment(usdc.address, &payer, 10_000, "metrics-good");
    let refused = http
        .post(format!("http://{}/verify", fac.addr))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // A valid verify, and an invalid one (more than the payer holds).
    let (status, body) = verify(&http, fac.addr, &good).await;
    assert_eq!(
        (status, body["isValid"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let too_much = fs::payment(usdc.address, &payer, 5_000_000, "metrics-too-much");
    let (status, body) = verify(&http, fac.addr, &too_much).await;
    assert_eq!(
        (status, body["isValid"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    let invalid_reason = body["invalidReason"].as_str().unwrap().to_owned();

    // A settle on chain: the payee is paid once.
    let payee_before = usdc.balance_of(fs::payee()).unwrap();
    let (status, body) = fs::settle(&http, fac.addr, &good).await.expect("an answer");
    assert_eq!(
        (status, body["success"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(
        fs::payee_received(&usdc, payee_before, U256::from(10_000u64)).await,
        U256::from(10_000u64)
    );

    // The payer's limit is a burst of 4: three calls were its; the next
    // ones are refused with 429 before any work.
    // (A fresh payment: the settled one would now verify invalid.)
    let another = fs::payment(usdc.address, &payer, 10_000, "metrics-another");
    let mut limited = 0;
    for _ in 0..3 {
        let (status, _) = verify(&http, fac.addr, &another).await;
        if status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "the per-payer limit refused a call");

    // The gas of the settlement is read from its receipt after the answer.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = scrape(&http, &ops).await;
        if sample(&metrics, "pay402_facilitator_gas_spent_total{unit=\"wei\"}").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = |prefix: &str| {
        sample(&metrics, prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
    };
    assert_eq!(
        get("pay402_facilitator_unauthorized_total{endpoint=\"verify\"}"),
        1.0
    );
    assert_eq!(
        get("pay402_facilitator_http_requests_total{endpoint=\"verify\",status=\"401\"}"),
        1.0
    );
    // The valid verify, plus those of the rate-limit loop that passed.
    assert!(
        get("pay402_facilitator_verify_total{outcome=\"valid\",reason=\"none\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        get(&format!(
            "pay402_facilitator_verify_total{{outcome=\"invalid\",reason=\"{invalid_reason}\"}}"
        )),
        1.0
    );
    assert_eq!(
        get("pay402_facilitator_settle_total{outcome=\"settled\",reason=\"none\"}"),
        1.0
    );
    assert_eq!(
        get("pay402_facilitator_settle_latency_seconds_count{outcome=\"settled\"}"),
        1.0
    );
    assert!(get("pay402_facilitator_settle_latency_seconds_sum{outcome=\"settled\"}") > 0.0);
    assert_eq!(
        get("pay402_facilitator_verify_latency_seconds_count{outcome=\"invalid\"}"),
        1.0
    );
    assert_eq!(get("pay402_facilitator_settlements_in_flight"), 0.0);
    assert_eq!(
        get("pay402_facilitator_rate_limited_total{endpoint=\"verify\"}"),
        f64::from(limited)
    );
    assert_eq!(
        get("pay402_facilitator_http_requests_total{endpoint=\"settle\",status=\"200\"}"),
        1.0
    );
    // A USDC transferWithAuthorization costs tens of thousands of gas.
    let gas = get("pay402_facilitator_gas_spent_total{unit=\"gas\"}");
    assert!((30_000.0..200_000.0).contains(&gas), "{gas}");
    assert!(get("pay402_facilitator_gas_spent_total{unit=\"wei\"}") >= gas);
    // The reconcile at start found nothing unfinished.
    assert_eq!(get("pay402_facilitator_unfinished_settlements"), 0.0);

    // Without ops_listen, the operations endpoints are on the API's
    // listener (no API key needed).
    let dir = fs::temp_dir("facilitator-metrics-default");
    let config = fs::write_config(&dir, &chain, usdc.address, "sqlite::memory:", "");
    let plain = fs::Facilitator::start(&config, &[]).await;
    let base = format!("http://{}", plain.addr);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let (status, _) = verify(&http, plain.addr, &too_much).await;
    assert_eq!(status, 200);
    let metrics = scrape(&http, &base).await;
    assert_eq!(
        sample(
            &metrics,
            "pay402_facilitator_verify_latency_seconds_count{outcome=\"invalid\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
