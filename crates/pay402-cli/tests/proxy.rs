//! `pay402 proxy` through the real binary: bodies of every kind, headers,
//! an L402 payment over simnet, metrics, and SIGTERM during a request.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, big_body, config, start_upstream, temp_dir};
use futures_util::StreamExt;

fn free_service(upstream: std::net::SocketAddr) -> String {
    config(&format!(
        "[[services]]\nname = \"plain\"\nupstream = \"http://{upstream}\"\nstrip_headers = [\"X-Secret\"]\nadd_headers = {{ \"X-Added\" = \"yes\" }}\n"
    ))
}

#[tokio::test]
async fn plain_requests_are_forwarded_with_forwarding_headers_and_without_hop_by_hop_ones() {
    let upstream = start_upstream().await;
    let dir = temp_dir("plain");
    let mut proxy = Proxy::start(&dir, &free_service(upstream)).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(proxy.url("/echo?q=1"))
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "drop me")
        .header("Keep-Alive", "timeout=5")
        .header("X-Secret", "strip me")
        .header("X-Kept", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(v["uri"], "/echo?q=1");
    assert_eq!(h["x-kept"], "kept");
    assert_eq!(h["x-added"], "yes");
    assert!(
        h.get("x-hop").is_none() && h.get("keep-alive").is_none(),
        "{h}"
    );
    assert!(h.get("x-secret").is_none(), "{h}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], proxy.addr.to_string());
    assert_eq!(
        h["forwarded"],
        format!("for=127.0.0.1;host=\"{}\";proto=http", proxy.addr)
    );

    // One JSON log line per request, without the query string.
    let line = loop {
        let line = tokio::time::timeout(Duration::from_secs(5), proxy.lines.recv())
            .await
            .expect("a request log line")
            .unwrap();
        if line.contains("\"message\":\"request\"") {
            break line;
        }
    };
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["service"], "plain", "{log}");
    assert_eq!(log["method"], "GET");
    assert_eq!(log["path"], "/echo");
    assert_eq!(log["status"], 200);
    assert!(log["elapsed_ms"].is_u64(), "{log}");
    assert!(!line.contains("q=1"), "{line}");

    // A path with dot segments never reaches a service (sent raw: URL
    // parsers in clients would resolve it).
    let raw = common::raw_request(
        proxy.addr,
        "GET /a/%2e%2e/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("invalid_path"), "{raw}");
}

#[tokio::test]
async fn large_and_streamed_bodies_pass_both_ways() {
    let upstream = start_upstream().await;
    let dir = temp_dir("bodies");
    let proxy = Proxy::start(&dir, &free_service(upstream)).await;
    let http = reqwest::Client::new();

    // 8 MiB up and back.
    let big = big_body();
    let resp = http
        .post(proxy.url("/body"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == big);

    // A chunked (unknown length) request body.
    let chunks = futures_util::stream::iter(
        (0..64).map(|i| Ok::<_, std::io::Error>(vec![i as u8; 16 * 1024])),
    );
    let resp = http
        .post(proxy.url("/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["body_len"], 64 * 16 * 1024);
    assert_eq!(v["headers"]["transfer-encoding"], "chunked");

    // 8 MiB down.
    let resp = http.get(proxy.url("/big")).send().await.unwrap();
    assert!(resp.bytes().await.unwrap() == big);

    // A streamed response arrives chunk by chunk: the upstream sends its
    // second chunk only after the first came through the proxy.
    let resp = http.get(proxy.url("/gated")).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first chunk before the upstream finished: not buffered")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first\n");
    common::GATE.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = stream.next().await {
        rest.extend_from_slice(&c.unwrap());
    }
    assert_eq!(rest, b"rest\n");
}

#[tokio::test]
async fn upgrades_are_passed_through_and_bytes_flow_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = start_upstream().await;
    let dir = temp_dir("upgrade");
    let proxy = Proxy::start(&dir, &free_service(upstream)).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let head = common::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for msg in [&b"ping"[..], b"a second message"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn http2_clients_are_served() {
    let upstream = start_upstream().await;
    let dir = temp_dir("h2");
    let proxy = Proxy::start(&dir, &free_service(upstream)).await;
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = http.get(proxy.url("/echo")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn l402_route_is_paid_through_the_proxy_and_the_upstream_never_sees_the_proof() {
    let upstream = start_upstream().await;
    let dir = temp_dir("l402");
    let toml = common::simnet_config(&format!(
        r#"
[[services]]
name = "paid"
path = '^/paid/'
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 25 }}
free_paths = ["/paid/free/*"]
identity_header = "X-Pay402-Payment"
l402_capabilities = ["read"]
l402_caveats = ["tenant=7"]

[[services]]
name = "open"
path = '^/free/'
upstream = "http://{upstream}"
"#
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let http = reqwest::Client::new();

    // Unpaid: 402 with an L402 challenge.
    let resp = http.get(proxy.url("/paid/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 402);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("L402 "), "{challenge}");
    // The configured capabilities and caveats are minted into the macaroon.
    let mac = challenge_macaroon(&challenge);
    let has = |needle: &[u8]| mac.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"paid_capabilities=read") && has(b"tenant=7"));

    // No upgrade before payment.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(b"GET /paid/upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        let head = common::read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 402"), "{head}");
    }

    // A free path of the paid service, and the free service, need nothing.
    assert_eq!(
        http.get(proxy.url("/free/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Paid with the L402 client through simnet's LND REST face.
    let client = common::l402_client(&proxy);
    let paid = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(paid.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&paid.text().await.unwrap()).unwrap();
    let h = &v["headers"];
    assert!(
        h.get("authorization").is_none(),
        "the proof reached the upstream: {h}"
    );
    let id = h["x-pay402-payment"].as_str().unwrap();
    assert!(id.starts_with("l402:") && id.len() == 5 + 64, "{id}");

    // A client cannot forge the identity header.
    let forged = client
        .send(
            client
                .request(http::Method::GET, proxy.url("/paid/echo"))
                .header("X-Pay402-Payment", "l402:forged"),
        )
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&forged.text().await.unwrap()).unwrap();
    assert_eq!(v["headers"]["x-pay402-payment"], id);

    // Metrics count the challenge and the payments.
    let metrics = common::get_text(proxy.url("/metrics")).await;
    assert!(
        metrics.contains("pay402_challenges_total{service=\"paid\"}"),
        "{metrics}"
    );
    let accepted = metrics
        .lines()
        .find(|l| {
            l.starts_with("pay402_payments_total")
                && l.contains("rail=\"l402\"")
                && l.contains("outcome=\"accepted\"")
                && l.contains("service=\"paid\"")
        })
        .unwrap_or_else(|| panic!("no accepted l402 payment counted:\n{metrics}"));
    assert!(accepted.ends_with(" 2"), "{accepted}");
    assert!(
        metrics.contains("pay402_upstream_latency_seconds_bucket{service=\"paid\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("pay402_requests_total{service=\"open\",status=\"200\"} 1"),
        "{metrics}"
    );

    // Health and readiness.
    assert_eq!(
        http.get(proxy.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = http.get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["lightning"], true, "{ready}");
    assert!(ready["facilitator"].is_null(), "{ready}");
}

#[tokio::test]
async fn readyz_fails_when_an_upstream_is_down() {
    // A port that was free a moment ago: nothing listens on it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = temp_dir("readyz");
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[services]]\nname = \"down\"\nupstream = \"http://{dead}\"\n"
        )),
    )
    .await;
    let http = reqwest::Client::new();
    let ready = http.get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let resp = http.get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["reason"], "upstream_unreachable");
}

#[tokio::test]
async fn an_upstream_slower_than_the_timeout_gets_504() {
    let upstream = start_upstream().await;
    let dir = temp_dir("timeout");
    let proxy = Proxy::start(
        &dir,
        &config(&format!(
            "[[services]]\nname = \"slow\"\nupstream = \"http://{upstream}\"\ntimeout_secs = 1\n"
        )),
    )
    .await;
    let resp = reqwest::get(proxy.url("/stall")).await.unwrap();
    assert_eq!(resp.status(), 504);
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["reason"], "upstream_timeout");
    // A stream slower in total than the timeout (1.5 s), but never idle that
    // long (300 ms between chunks), passes.
    let body = reqwest::get(proxy.url("/stream"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count(), 5);
}

#[tokio::test]
async fn sigterm_during_a_slow_request_lets_it_finish() {
    let upstream = start_upstream().await;
    let dir = temp_dir("sigterm");
    let mut proxy = Proxy::start(&dir, &free_service(upstream)).await;
    let url = proxy.url("/slow");
    let slow = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    // SIGTERM once the request is at the upstream.
    common::SLOW_STARTED.notified().await;
    let pid = rustix::process::Pid::from_raw(proxy.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(slow.await.unwrap(), "slow done");
    let status = tokio::time::timeout(Duration::from_secs(10), proxy.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // New connections are refused once it is gone.
    assert!(reqwest::get(proxy.url("/echo")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_paid_request_serves_it() {
    let upstream = start_upstream().await;
    let dir = temp_dir("sigterm-paid");
    let toml = common::simnet_config(&format!(
        r#"
[[services]]
name = "paid"
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 25 }}
"#
    ));
    let mut proxy = Proxy::start(&dir, &toml).await;
    let client = Arc::new(common::l402_client(&proxy));
    // Buy the token (the service is its scope), then use it on a slow path.
    assert_eq!(
        client.get(proxy.url("/paid/echo")).await.unwrap().status(),
        200
    );
    let url = proxy.url("/paid/slow");
    let c = client.clone();
    let slow = tokio::spawn(async move {
        let paid = c.get(url).await.unwrap();
        let reused = paid.reused_token && paid.receipt.is_none();
        (paid.status(), reused, paid.text().await.unwrap())
    });
    common::PAID_SLOW_STARTED.notified().await;
    let pid = rustix::process::Pid::from_raw(proxy.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (status, reused, body) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slow done");
    // Served with the token already bought: nothing paid a second time.
    assert!(reused);
    let exit = tokio::time::timeout(Duration::from_secs(10), proxy.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_revokes_a_paid_l402_token_and_wants_its_bearer_token() {
    let upstream = start_upstream().await;
    let dir = temp_dir("admin");
    let token = "0123456789abcdef0123456789abcdef-admin";
    std::fs::write(dir.join("admin-token"), format!("{token}\n")).unwrap();
    let toml = config(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = {{ file = "{dir}/admin-token" }}

[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:0"

[[services]]
name = "paid"
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 25 }}
identity_header = "X-Pay402-Payment"
"#,
        dir = dir.display()
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let admin = format!("http://{}", proxy.admin.expect("admin address"));
    let client = common::l402_client(&proxy);
    let paid = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert!(paid.receipt.is_some());
    let v: serde_json::Value = serde_json::from_str(&paid.text().await.unwrap()).unwrap();
    let id = v["headers"]["x-pay402-payment"]
        .as_str()
        .unwrap()
        .strip_prefix("l402:")
        .unwrap()
        .to_owned();

    // The token works until revoked.
    let again = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert!(again.reused_token && again.receipt.is_none());

    let http = reqwest::Client::new();
    let revoke = format!("{admin}/v1/l402/tokens/{id}/revoke");
    // No token, a wrong token: 401, nothing revoked.
    assert_eq!(http.post(&revoke).send().await.unwrap().status(), 401);
    let wrong = http
        .post(&revoke)
        .bearer_auth("0123456789abcdef0123456789abcdef-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let p: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(p["reason"], "unauthorized");
    let bad = http
        .post(format!("{admin}/v1/l402/tokens/zz/revoke"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let done = http.post(&revoke).bearer_auth(token).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let v: serde_json::Value = done.json().await.unwrap();
    assert_eq!(v["revoked"], true);

    // The revoked token is refused at once: the client pays for a new one.
    let after = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(after.status(), 200);
    assert!(after.receipt.is_some() && !after.reused_token);

    let services: serde_json::Value = http
        .get(format!("{admin}/v1/services"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(services["services"][0]["rails"][0], "l402");
    // The admin API is not on the public listener.
    assert_eq!(
        reqwest::get(proxy.url("/v1/services"))
            .await
            .unwrap()
            .status(),
        402
    );
}

#[tokio::test]
async fn freebies_serve_n_unpaid_requests_per_client_then_402() {
    let upstream = start_upstream().await;
    let dir = temp_dir("freebies");
    let toml = config(&format!(
        r#"
[lightning]
kind = "simnet"

[[services]]
name = "tasting"
upstream = "http://{upstream}"
rails = ["l402"]
price = {{ sats = 5 }}
freebies = {{ requests = 2, period_secs = 3600 }}
"#
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    for _ in 0..2 {
        assert_eq!(
            reqwest::get(proxy.url("/echo")).await.unwrap().status(),
            200
        );
    }
    let third = reqwest::get(proxy.url("/echo")).await.unwrap();
    assert_eq!(third.status(), 402);
    assert!(third.headers().contains_key("www-authenticate"));
    let metrics = common::get_text(proxy.url("/metrics")).await;
    assert!(
        metrics.contains("pay402_freebies_total{service=\"tasting\"} 2"),
        "{metrics}"
    );
}

/// A pricer: 50 sat under `/paid`, 5 sat elsewhere, 500 under `/broken`;
/// counts the questions it is asked.
async fn start_pricer() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::post;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/price",
        post(move |axum::Json(q): axum::Json<serde_json::Value>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let path = q["path"].as_str().unwrap_or_default().to_owned();
                assert_eq!(q["service"], "priced");
                if path.starts_with("/broken") {
                    return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
                }
                let sats = if path.starts_with("/paid") { 50 } else { 5 };
                Ok(axum::Json(serde_json::json!({ "sats": sats })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, asked)
}

/// The macaroon bytes of an L402 challenge.
fn challenge_macaroon(challenge: &str) -> Vec<u8> {
    let b64 = challenge
        .split("macaroon=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    pay402_core::b64::decode_any(b64, 8192).unwrap()
}

/// The `_paid_msat` caveat of the macaroon in a 402's L402 challenge.
fn challenged_msat(resp: &reqwest::Response) -> String {
    let mac = challenge_macaroon(resp.headers()["www-authenticate"].to_str().unwrap());
    let text = String::from_utf8_lossy(&mac).into_owned();
    let at =
        text.find("priced_paid_msat=").expect("a paid_msat caveat") + "priced_paid_msat=".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pricer_sets_the_price_is_cached_and_fails_closed() {
    let upstream = start_upstream().await;
    let (pricer, asked) = start_pricer().await;
    let dir = temp_dir("pricer");
    let toml = common::simnet_config(&format!(
        r#"
[[services]]
name = "priced"
upstream = "http://{upstream}"
rails = ["l402"]
pricer = {{ url = "http://{pricer}/price", timeout_ms = 2000, cache_secs = 60 }}
"#
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let http = reqwest::Client::new();

    let cheap = http.get(proxy.url("/echo")).send().await.unwrap();
    assert_eq!(cheap.status(), 402);
    assert_eq!(challenged_msat(&cheap), "5000");
    let dear = http.get(proxy.url("/paid/echo")).send().await.unwrap();
    assert_eq!(challenged_msat(&dear), "50000");
    // A client cannot set its own price.
    let forged = http
        .get(proxy.url("/paid/echo"))
        .header("x-pay402-internal-price-msat", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(challenged_msat(&forged), "50000");

    // Paid at the pricer's price; the internal header never reaches the upstream.
    let client = common::l402_client(&proxy);
    let paid = client.get(proxy.url("/paid/echo")).await.unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(
        paid.receipt.as_ref().unwrap().amount,
        pay402_core::money::Msat(50_000)
    );
    let v: serde_json::Value = serde_json::from_str(&paid.text().await.unwrap()).unwrap();
    assert!(
        v["headers"].get("x-pay402-internal-price-msat").is_none(),
        "{v}"
    );

    // Cached per method and path: two questions for all of the above.
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);

    // No price: 503, never free, nothing forwarded.
    let broken = http.get(proxy.url("/broken")).send().await.unwrap();
    assert_eq!(broken.status(), 503);
    let p: serde_json::Value = broken.json().await.unwrap();
    assert_eq!(p["reason"], "pricer_unavailable");
}
