//! An `https://` upstream with its own CA that requires a client
//! certificate, through the real binary. Certificates: `tests/fixtures/`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::{Proxy, config, temp_dir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // Clients without a valid certificate fail the handshake.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS server that requires a client certificate issued by the test CA.
async fn start_mtls_upstream() -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{FIXTURES}/server.cert"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/server.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(format!("{FIXTURES}/ca.cert")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
    };
    let app = Router::new()
        .route("/mtls/hello", get(|| async { "hello over mTLS" }))
        .route("/nocert/hello", get(|| async { "hello over mTLS" }))
        .route("/untrusted/hello", get(|| async { "hello over mTLS" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn https_upstream_with_its_own_ca_and_a_client_certificate() {
    let upstream = start_mtls_upstream().await;
    let port = upstream.port();
    let dir = temp_dir("mtls");
    let toml = config(&format!(
        r#"
[[services]]
name = "mtls"
path = '^/mtls/'
upstream = "https://localhost:{port}/"
upstream_ca_file = "{FIXTURES}/ca.cert"
upstream_client_cert_file = "{FIXTURES}/client.cert"
upstream_client_key_file = "{FIXTURES}/client.key"

[[services]]
name = "no-client-cert"
path = '^/nocert/'
upstream = "https://localhost:{port}/"
upstream_ca_file = "{FIXTURES}/ca.cert"

[[services]]
name = "untrusted"
path = '^/untrusted/'
upstream = "https://localhost:{port}/"
"#
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let resp = reqwest::get(proxy.url("/mtls/hello")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello over mTLS");

    // Without the client certificate, or without trusting the CA: no handshake.
    for path in ["/nocert/hello", "/untrusted/hello"] {
        let resp = reqwest::get(proxy.url(path)).await.unwrap();
        assert_eq!(resp.status(), 502, "{path}");
        let p: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(p["reason"], "upstream_unreachable", "{path}");
    }
}

#[tokio::test]
async fn the_proxy_serves_https_with_http2_and_http1_by_alpn() {
    let upstream = common::start_upstream().await;
    let dir = temp_dir("listener-tls");
    let toml = config(&format!(
        "[server.tls]\ncert_file = \"{FIXTURES}/server.cert\"\nkey_file = \"{FIXTURES}/server.key\"\n\n[[services]]\nname = \"plain\"\nupstream = \"http://{upstream}\"\n"
    ));
    let proxy = Proxy::start(&dir, &toml).await;
    let url = format!("https://localhost:{}/echo", proxy.addr.port());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(format!("{FIXTURES}/ca.cert")).unwrap())
        .unwrap();

    let h2 = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .build()
        .unwrap();
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");

    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // Plain HTTP on the TLS port gets no answer, and a client that does not
    // trust the CA refuses the certificate.
    assert!(reqwest::get(proxy.url("/echo")).await.is_err());
    assert!(reqwest::get(&url).await.is_err());
}
