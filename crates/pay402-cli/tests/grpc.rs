//! gRPC through the real `pay402 proxy`: HTTP/2 both ways, length-prefixed
//! messages, and the `grpc-status` trailers passed through, on a free path
//! and on an L402-paid path (the token bought once through simnet, then
//! presented on each call).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

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

#[tokio::test]
async fn grpc_unary_calls_pass_with_their_trailers_free_and_l402_paid() {
    let upstream = start_grpc_upstream().await;
    let dir = temp_dir("grpc");
    let toml = simnet_config(&format!(
        r#"
[[services]]
name = "greeter"
upstream = "http://{upstream}"
upstream_http2 = true
free_paths = ["/demo.Free/*"]
rails = ["l402"]
price = {{ sats = 5 }}
"#
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    // An HTTP/2 client with prior knowledge, as gRPC clients speak to h2c.
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();

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
    let wallet = proxy.simnet.expect("simnet wallet address");
    let lnd = pay402_backends::lnd::LndRest::new(pay402_backends::lnd::LndConfig::new(
        format!("http://{wallet}").parse().unwrap(),
        pay402_core::lightning::Network::Regtest,
    ))
    .unwrap();
    let client = pay402_client::L402Client::builder(std::sync::Arc::new(lnd))
        .network(pay402_core::lightning::Network::Regtest)
        .http(http.clone())
        .build();
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
