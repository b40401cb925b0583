//! gRPC through the real `pay402 proxy`: HTTP/2 both ways, length-prefixed
//! messages, and the `grpc-status` trailers passed through: unary calls on
//! a free path and on an L402-paid path (the token bought once through
//! simnet, then presented on each call); server-streaming, client-streaming
//! and bidi calls, free and L402-paid, each message relayed as it comes
//! (not buffered); and gRPC on an x402 service settling after the upstream
//! answered (held whole, bounded, settled on anvil) and before (streamed).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use common::{Proxy, simnet_config, temp_dir};
use http_body_util::BodyExt;

/// One gRPC message: flag 0 (uncompressed), big-endian length, bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// The message of one length-prefixed gRPC frame.
fn grpc_message(body: &[u8]) -> &[u8] {
    assert!(body.len() >= 5 && body[0] == 0, "a gRPC frame: {body:?}");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    &body[5..5 + len]
}

/// A gRPC upstream (HTTP/2 only, h2c): `/demo.Greeter/Hello` answers
/// `hello <name> over HTTP/2 (authorization: ...)` with `grpc-status: 0`;
/// `/demo.Greeter/Missing` answers `grpc-status: 5` (NOT_FOUND) in its
/// trailers.
async fn start_grpc_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(grpc_handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn grpc_handler(req: Request) -> Response {
    let ok = req.version() == http::Version::HTTP_2
        && req.headers().get("content-type").map(|v| v.as_bytes()) == Some(b"application/grpc");
    let seen_authorization = req.headers().contains_key("authorization");
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let (status, reply) = if !ok {
        ("3", "not a gRPC request over HTTP/2".to_owned())
    } else if path.ends_with("/Hello") {
        let name = String::from_utf8_lossy(grpc_message(&body)).into_owned();
        (
            "0",
            format!("hello {name} (authorization seen: {seen_authorization})"),
        )
    } else {
        ("5", String::new())
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    trailers.insert("grpc-message", "done".parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(hyper::body::Frame::data(grpc_frame(reply.as_bytes()))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .unwrap()
}

/// A unary call: the status, the reply message and the trailers.
async fn unary(
    send: impl std::future::Future<Output = reqwest::Response>,
) -> (u16, Vec<u8>, http::HeaderMap) {
    let resp = send.await;
    let status = resp.status().as_u16();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let http: http::Response<reqwest::Body> = resp.into();
    let collected = http.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (status, collected.to_bytes().to_vec(), trailers)
}

fn grpc_request(http: &reqwest::Client, url: String, name: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(grpc_frame(name.as_bytes()))
}

/// A proxy in front of `upstream` (h2c) whose `/demo.Free/*` paths are
/// free and the rest paid with L402 (5 sat) on the embedded simnet.
async fn grpc_proxy(name: &str, upstream: SocketAddr, dir: &std::path::Path) -> Proxy {
    let toml = simnet_config(&format!(
        r#"
[[services]]
name = "{name}"
upstream = "http://{upstream}"
upstream_http2 = true
free_paths = ["/demo.Free/*"]
rails = ["l402"]
price = {{ sats = 5 }}
"#
    ));
    Proxy::start(dir, &toml).await
}

/// An HTTP/2 client with prior knowledge, as gRPC clients speak to h2c.
fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// An L402 client over `http` paying through the proxy's simnet wallet.
fn simnet_l402_client(proxy: &Proxy, http: &reqwest::Client) -> pay402_client::L402Client {
    let wallet = proxy.simnet.expect("simnet wallet address");
    let lnd = pay402_backends::lnd::LndRest::new(pay402_backends::lnd::LndConfig::new(
        format!("http://{wallet}").parse().unwrap(),
        pay402_core::lightning::Network::Regtest,
    ))
    .unwrap();
    pay402_client::L402Client::builder(std::sync::Arc::new(lnd))
        .network(pay402_core::lightning::Network::Regtest)
        .http(http.clone())
        .build()
}

#[tokio::test]
async fn grpc_unary_calls_pass_with_their_trailers_free_and_l402_paid() {
    let upstream = start_grpc_upstream().await;
    let dir = temp_dir("grpc");
    let proxy = grpc_proxy("greeter", upstream, &dir).await;
    let http = h2c_client();

    // A free path: the call reaches the upstream, its trailers come back.
    let (status, body, trailers) = unary(async {
        grpc_request(&http, proxy.url("/demo.Free/Hello"), "free")
            .send()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        grpc_message(&body),
        b"hello free (authorization seen: false)"
    );
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(trailers["grpc-message"], "done");
    // A non-zero grpc-status travels in the trailers too.
    let (status, _, trailers) = unary(async {
        grpc_request(&http, proxy.url("/demo.Free/Missing"), "x")
            .send()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(trailers["grpc-status"], "5", "{trailers:?}");

    // The paid path without a token: 402, the upstream is not called.
    let unpaid = grpc_request(&http, proxy.url("/demo.Paid/Hello"), "nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    assert!(unpaid.headers().contains_key("www-authenticate"));

    // Paid with L402 through the simnet wallet: the retried call carries
    // the token, the upstream never sees it, the trailers come back.
    let client = simnet_l402_client(&proxy, &http);
    for (name, pays) in [("alice", true), ("bob", false)] {
        let url = proxy.url("/demo.Paid/Hello");
        let paid = client
            .send(grpc_request(client.http(), url, name))
            .await
            .unwrap();
        assert_eq!(paid.receipt.is_some(), pays, "{name}: paid only once");
        let (status, body, trailers) = unary(async { paid.into_response() }).await;
        assert_eq!(status, 200);
        assert_eq!(
            grpc_message(&body),
            format!("hello {name} (authorization seen: false)").as_bytes()
        );
        assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    }
}

// ---------------------------------------------------------------------
// Streaming calls: server-streaming, client-streaming and bidi.
// ---------------------------------------------------------------------

/// The server-streaming upstream sends `tick 1` and `tick 2` only after
/// the gate its call names (`x-gate`) is told, so a client that reads
/// `tick 0` before telling it proves the proxy relays frames as they come.
/// One gate per call, as the tests of this file run at once.
fn ticks_gate(name: &str) -> std::sync::Arc<tokio::sync::Notify> {
    static GATES: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Notify>>>,
    > = std::sync::LazyLock::new(Default::default);
    GATES
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone()
}
/// Told by the client-streaming upstream when the first message of the
/// request arrived (before the client sent the rest).
static SUM_FIRST_SEEN: tokio::sync::Notify = tokio::sync::Notify::const_new();

type FrameTx = tokio::sync::mpsc::Sender<Result<hyper::body::Frame<Bytes>, Infallible>>;

/// A response whose frames are sent through the returned channel.
fn channel_response() -> (FrameTx, Response) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let resp = Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(http_body_util::StreamBody::new(stream)))
        .unwrap();
    (tx, resp)
}

fn ok_trailers(message: &str) -> hyper::body::Frame<Bytes> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers.insert("grpc-message", message.parse().unwrap());
    hyper::body::Frame::trailers(trailers)
}

/// Cuts the first whole length-prefixed gRPC message off `buf`.
fn take_message(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().unwrap()) as usize;
    let message = buf.get(5..5 + len)?.to_vec();
    buf.drain(..5 + len);
    Some(message)
}

/// The streaming upstream (h2c): `/demo.Stream/Ticks` (server-streaming),
/// `/demo.Stream/Sum` (client-streaming), `/demo.Stream/Echo` (bidi:
/// every message echoed as it arrives).
async fn start_streaming_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(streaming_handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn streaming_handler(req: Request) -> Response {
    assert_eq!(req.version(), http::Version::HTTP_2);
    assert!(
        !req.headers().contains_key("authorization"),
        "the token never reaches the upstream"
    );
    let path = req.uri().path().to_owned();
    let gate = req
        .headers()
        .get("x-gate")
        .map(|v| ticks_gate(v.to_str().unwrap()));
    if path.ends_with("/Unavailable") {
        // A trailers-only answer: the status in the headers, no body.
        return Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .body(Body::empty())
            .unwrap();
    }
    let mut body = req.into_body();
    let (tx, resp) = channel_response();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        if path.ends_with("/Spaced") || path.ends_with("/Big") {
            let _ = body.collect().await;
            let (count, size, gap) = if path.ends_with("/Big") {
                (100, 4096, Duration::ZERO)
            } else {
                (3, 16, Duration::from_millis(100))
            };
            for i in 0..count {
                tokio::time::sleep(gap).await;
                let mut m = format!("tick {i} ").into_bytes();
                m.resize(size, b'.');
                let _ = tx.send(Ok(hyper::body::Frame::data(grpc_frame(&m)))).await;
            }
            let _ = tx.send(Ok(ok_trailers("spaced"))).await;
            return;
        }
        if path.ends_with("/Fail") {
            let _ = body.collect().await;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "13".parse().unwrap());
            let _ = tx.send(Ok(hyper::body::Frame::trailers(trailers))).await;
            return;
        }
        if path.ends_with("/Ticks") {
            let _ = body.collect().await;
            let send = |m: String| hyper::body::Frame::data(grpc_frame(m.as_bytes()));
            tx.send(Ok(send("tick 0".into()))).await.unwrap();
            gate.expect("an x-gate header").notified().await;
            tx.send(Ok(send("tick 1".into()))).await.unwrap();
            tx.send(Ok(send("tick 2".into()))).await.unwrap();
            let _ = tx.send(Ok(ok_trailers("ticked"))).await;
            return;
        }
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(m) = take_message(&mut buf) {
                if path.ends_with("/Echo") {
                    let reply = format!("echo {}", String::from_utf8_lossy(&m));
                    let _ = tx
                        .send(Ok(hyper::body::Frame::data(grpc_frame(reply.as_bytes()))))
                        .await;
                } else if seen.is_empty() {
                    SUM_FIRST_SEEN.notify_one();
                }
                seen.push(String::from_utf8_lossy(&m).into_owned());
            }
        }
        if path.ends_with("/Sum") {
            let reply = format!("{} messages: {}", seen.len(), seen.join(","));
            let _ = tx
                .send(Ok(hyper::body::Frame::data(grpc_frame(reply.as_bytes()))))
                .await;
        }
        let _ = tx.send(Ok(ok_trailers("streamed"))).await;
    });
    resp
}

/// A streaming call's response read frame by frame.
struct Replies {
    body: reqwest::Body,
    buf: Vec<u8>,
    trailers: Option<http::HeaderMap>,
}

impl Replies {
    fn new(resp: reqwest::Response) -> Replies {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let http: http::Response<reqwest::Body> = resp.into();
        Replies {
            body: http.into_body(),
            buf: Vec::new(),
            trailers: None,
        }
    }

    /// The next message (within 10 s), `None` at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(m) = take_message(&mut self.buf) {
                return Some(String::from_utf8(m).unwrap());
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("the next frame in time")?
                .unwrap();
            match frame.into_data() {
                Ok(data) => self.buf.extend_from_slice(&data),
                Err(frame) => self.trailers = frame.into_trailers().ok(),
            }
        }
    }

    /// The rest of the messages, then the trailers.
    async fn finish(self) -> (Vec<String>, http::HeaderMap) {
        let (rest, trailers) = self.finish_any().await;
        (rest, trailers.expect("trailers"))
    }

    /// The rest of the messages, then the trailers if any came.
    async fn finish_any(mut self) -> (Vec<String>, Option<http::HeaderMap>) {
        let mut rest = Vec::new();
        while let Some(m) = self.next().await {
            rest.push(m);
        }
        (rest, self.trailers)
    }
}

/// A request body fed message by message through the returned sender.
fn streamed_body() -> (tokio::sync::mpsc::Sender<&'static str>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|m| (Ok::<_, std::io::Error>(grpc_frame(m.as_bytes())), rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

fn grpc_call(http: &reqwest::Client, url: String, body: reqwest::Body) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
}

/// A server-streaming call to `url` held back by the gate `gate`.
fn ticks_call(http: &reqwest::Client, url: String, gate: &str) -> reqwest::RequestBuilder {
    grpc_call(http, url, grpc_frame(b"3").into()).header("x-gate", gate)
}

/// Runs the three streaming calls on `prefix` (`/demo.Free` or
/// `/demo.Paid`), sending each through `send`.
async fn streaming_calls<F, Fut>(proxy: &Proxy, http: &reqwest::Client, prefix: &str, send: F)
where
    F: Fn(reqwest::RequestBuilder) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    // Server-streaming: `tick 0` arrives while the upstream still holds
    // the rest back.
    let url = proxy.url(&format!("{prefix}/Ticks"));
    let gate = format!("calls{prefix}");
    let call = ticks_call(http, url, &gate);
    let mut replies = Replies::new(send(call).await);
    assert_eq!(replies.next().await.as_deref(), Some("tick 0"));
    ticks_gate(&gate).notify_one();
    let (rest, trailers) = replies.finish().await;
    assert_eq!(rest, ["tick 1", "tick 2"]);
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(trailers["grpc-message"], "ticked");

    // Client-streaming: the upstream sees the first message before the
    // client sends the second.
    let (tx, body) = streamed_body();
    let url = proxy.url(&format!("{prefix}/Sum"));
    let call = tokio::spawn(send(grpc_call(http, url, body)));
    tx.send("a").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), SUM_FIRST_SEEN.notified())
        .await
        .expect("the first request message reached the upstream before the rest was sent");
    tx.send("b").await.unwrap();
    tx.send("c").await.unwrap();
    drop(tx);
    let (replies, trailers) = Replies::new(call.await.unwrap()).finish().await;
    assert_eq!(replies, ["3 messages: a,b,c"]);
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");

    // Bidi: each message is answered before the next is sent.
    let (tx, body) = streamed_body();
    let url = proxy.url(&format!("{prefix}/Echo"));
    tx.send("one").await.unwrap();
    let mut replies = Replies::new(send(grpc_call(http, url, body)).await);
    assert_eq!(replies.next().await.as_deref(), Some("echo one"));
    tx.send("two").await.unwrap();
    assert_eq!(replies.next().await.as_deref(), Some("echo two"));
    drop(tx);
    let (rest, trailers) = replies.finish().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(trailers["grpc-message"], "streamed");
}

#[tokio::test]
async fn grpc_streaming_calls_stream_both_ways_free_and_l402_paid() {
    let upstream = start_streaming_upstream().await;
    let dir = temp_dir("grpc-streaming");
    let proxy = grpc_proxy("streams", upstream, &dir).await;
    let http = h2c_client();

    // Free: the three kinds of streams.
    streaming_calls(&proxy, &http, "/demo.Free", |b| async move {
        b.send().await.unwrap()
    })
    .await;

    // Paid: unpaid calls get the 402 and never reach the upstream (it
    // asserts no call carries a token, and an unpaid one has none to
    // carry; the 402 comes before any frame is relayed).
    let (tx, body) = streamed_body();
    tx.send("unpaid").await.unwrap();
    drop(tx);
    let unpaid = grpc_call(&http, proxy.url("/demo.Paid/Sum"), body)
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);

    // The token is bought once on the server-streaming call (its request
    // is one buffered message, so the client can retry it after paying);
    // the streaming calls then present it, paying nothing more.
    let client = std::sync::Arc::new(simnet_l402_client(&proxy, &http));
    let paid = client
        .send(ticks_call(
            &http,
            proxy.url("/demo.Paid/Ticks"),
            "l402-first",
        ))
        .await
        .unwrap();
    assert!(paid.receipt.is_some(), "paid once");
    let mut replies = Replies::new(paid.into_response());
    assert_eq!(replies.next().await.as_deref(), Some("tick 0"));
    ticks_gate("l402-first").notify_one();
    let (rest, trailers) = replies.finish().await;
    assert_eq!(rest, ["tick 1", "tick 2"]);
    assert_eq!(trailers["grpc-status"], "0");

    streaming_calls(&proxy, &http, "/demo.Paid", |b| {
        let client = client.clone();
        async move {
            let paid = client.send(b).await.unwrap();
            assert!(
                paid.receipt.is_none() && paid.reused_token,
                "the token reused, nothing paid"
            );
            paid.into_response()
        }
    })
    .await;
}

// ---------------------------------------------------------------------
// gRPC on an x402 settle-after service (anvil, Circle's USDC).
// ---------------------------------------------------------------------

const X402_PRICE: u64 = 10_000;

/// x402 settles after the upstream answered: the upstream's response is
/// held whole, trailers included (bounded by `server.max_settle_body`),
/// settled, then served. A gRPC stream therefore arrives at once after
/// settlement, with its `grpc-status`; a gRPC error (non-zero `grpc-status`
/// in the trailers, or in the headers of a trailers-only answer) is passed
/// on uncharged and the same payment stays usable; a stream larger than
/// the bound is neither served nor charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_x402_settle_after_keeps_trailers_spares_errors_and_is_bounded_settle_before_streams()
 {
    use alloy_primitives::U256;
    use pay402_client::x402::{LocalSigner, X402Client};
    use pay402_core::x402::TokenAmount;
    use pay402_core::x402::evm::EvmAddress;
    use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};

    let chain =
        Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"));
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let signer = std::sync::Arc::new(LocalSigner::random());
    let payer = signer.address().0;
    usdc.mint(payer, U256::from(1_000_000u64)).expect("mint");
    let payee = DEV_ACCOUNTS[3].address;
    let balances = || {
        (
            usdc.balance_of(payer).unwrap(),
            usdc.balance_of(payee).unwrap(),
        )
    };
    let before = balances();

    let upstream = start_streaming_upstream().await;
    let dir = temp_dir("grpc-x402");
    std::fs::write(dir.join("rpc_url"), chain.rpc_url()).unwrap();
    std::fs::write(
        dir.join("key"),
        format!("{}\n", DEV_ACCOUNTS[1].private_key),
    )
    .unwrap();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
log_format = "json"
max_settle_body = 65536

[store]
url = "sqlite::memory:"
{x402}
[[services]]
name = "streams"
upstream = "http://{upstream}"
upstream_http2 = true
rails = ["x402"]
price = {{ x402_units = "{X402_PRICE}" }}
"#,
        x402 = common::x402_anvil_sections(usdc.address, payee, &dir),
    );
    assert!(
        toml.contains("[x402]") && !toml.contains("settle ="),
        "settle-after is the default"
    );
    let proxy = Proxy::start(&dir, &toml).await;
    let http = h2c_client();
    let client = X402Client::builder(signer.clone())
        .allow_asset(
            "eip155:31337",
            EvmAddress(usdc.address),
            TokenAmount::from_u64(X402_PRICE),
        )
        .timeout(Duration::from_secs(60))
        .http(http.clone())
        .build();

    // A server stream within the bound: paid once, settled on chain, then
    // every message at once, and the trailers.
    let paid = client
        .send(grpc_call(
            &http,
            proxy.url("/demo.Paid/Spaced"),
            grpc_frame(b"3").into(),
        ))
        .await
        .expect("x402 payment through the proxy");
    let receipt = paid.receipt.clone().expect("receipt");
    assert!(receipt.settled(), "{:?}", receipt.settlement);
    let (messages, trailers) = Replies::new(paid.into_response()).finish_any().await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[2].starts_with("tick 2 "), "{messages:?}");
    // The held response keeps the upstream's trailers and sends them after
    // the messages once settled.
    let trailers = trailers.expect("the trailers follow the messages");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(trailers["grpc-message"], "spaced");
    let after_paid = balances();
    assert_eq!(after_paid.0, before.0 - U256::from(X402_PRICE));
    assert_eq!(after_paid.1, before.1 + U256::from(X402_PRICE));

    // A gRPC error is HTTP 200 with a non-zero grpc-status in the
    // trailers: passed on with its trailers, not settled, not charged.
    let failed = client
        .send(grpc_call(
            &http,
            proxy.url("/demo.Paid/Fail"),
            grpc_frame(b"x").into(),
        ))
        .await
        .expect("x402 payment through the proxy");
    assert_eq!(failed.status(), 200);
    // A call carrying a signed payment as it is (what a client resending it
    // sends).
    let pay_with = |payment: &pay402_client::x402::SignedPayment, path: &str| {
        grpc_call(&http, proxy.url(path), grpc_frame(b"again").into())
            .header(payment.header_name(), payment.header_value().clone())
            .send()
    };
    let signed = {
        let receipt = failed.receipt.as_ref().expect("the call carried a payment");
        assert!(receipt.settlement.is_none(), "{:?}", receipt.settlement);
        receipt.signed.clone()
    };
    let (messages, trailers) = Replies::new(failed.into_response()).finish_any().await;
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(trailers.expect("the error's trailers")["grpc-status"], "13");
    assert_eq!(balances(), after_paid, "the gRPC error was not charged");
    // A trailers-only gRPC error (grpc-status 14 in the headers) neither.
    let unavailable = pay_with(&signed, "/demo.Paid/Unavailable").await.unwrap();
    assert_eq!(unavailable.status(), 200);
    assert_eq!(unavailable.headers()["grpc-status"], "14");
    assert!(!unavailable.headers().contains_key("payment-response"));
    assert_eq!(
        balances(),
        after_paid,
        "the trailers-only error was not charged"
    );
    // The same signed payment stays usable: it pays for a call that
    // succeeds, once.
    let reused = pay_with(&signed, "/demo.Paid/Spaced").await.unwrap();
    assert_eq!(reused.status(), 200);
    assert!(reused.headers().contains_key("payment-response"));
    let (messages, trailers) = Replies::new(reused).finish_any().await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let after_reused = balances();
    assert_eq!(after_reused.0, after_paid.0 - U256::from(X402_PRICE));
    assert_eq!(after_reused.1, after_paid.1 + U256::from(X402_PRICE));
    let spent = pay_with(&signed, "/demo.Paid/Spaced").await.unwrap();
    assert_eq!(spent.status(), 402, "a settled payment is not taken twice");
    assert_eq!(balances(), after_reused);
    let after_paid = after_reused;

    // A stream over `max_settle_body` (400 KiB > 64 KiB): 500
    // response_too_large, nothing relayed, nothing settled; the payment is
    // released, not lost: the same signed payment still pays for a call
    // within the bound, once.
    let err = client
        .send(grpc_call(
            &http,
            proxy.url("/demo.Paid/Big"),
            grpc_frame(b"big").into(),
        ))
        .await
        .expect_err("a 500 after paying");
    let payment = match err {
        pay402_client::x402::X402Error::ServerErrorAfterPayment {
            status,
            settlement,
            payment,
            ..
        } => {
            assert_eq!(status, 500);
            assert!(settlement.is_none(), "{settlement:?}");
            payment
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        balances(),
        after_paid,
        "the oversize stream was not charged"
    );
    let resend = |path: &str| pay_with(&payment, path);
    let again = resend("/demo.Paid/Big").await.unwrap();
    assert_eq!(again.status(), 500);
    let problem: serde_json::Value = again.json().await.unwrap();
    assert_eq!(problem["reason"], "response_too_large", "{problem}");
    assert_eq!(balances(), after_paid, "still not charged");
    let within = resend("/demo.Paid/Spaced").await.unwrap();
    assert_eq!(within.status(), 200);
    let (messages, _) = Replies::new(within).finish_any().await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    let last = balances();
    assert_eq!(last.0, after_paid.0 - U256::from(X402_PRICE));
    assert_eq!(last.1, after_paid.1 + U256::from(X402_PRICE));

    // With `settle = "before"` (what docs/cli.md advises for gRPC), the
    // payment settles first and the stream is relayed as it comes, its
    // trailers included.
    let before_toml = toml.replacen(
        "\n[x402.facilitator]",
        "settle = \"before\"\n\n[x402.facilitator]",
        1,
    );
    assert!(before_toml.contains("settle = \"before\""));
    let before_dir = temp_dir("grpc-x402-before");
    let proxy = Proxy::start(&before_dir, &before_toml).await;
    let paid = client
        .send(ticks_call(
            &http,
            proxy.url("/demo.Paid/Ticks"),
            "x402-before",
        ))
        .await
        .expect("x402 payment through the proxy");
    assert!(paid.receipt.as_ref().is_some_and(|r| r.settled()));
    let mut replies = Replies::new(paid.into_response());
    assert_eq!(replies.next().await.as_deref(), Some("tick 0"));
    ticks_gate("x402-before").notify_one();
    let (rest, trailers) = replies.finish().await;
    assert_eq!(rest, ["tick 1", "tick 2"]);
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let settled_before = balances();
    assert_eq!(settled_before.1, last.1 + U256::from(X402_PRICE));
}
