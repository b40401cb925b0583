//! TLS pinning of the LND client against an HTTPS server using an
//! lnd-style self-signed certificate (`CA:TRUE`, SANs localhost/127.0.0.1),
//! the kind rustls' ordinary root-certificate check rejects.
#![cfg(all(feature = "lnd", feature = "simnet-rest"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pay402_backends::lnd::{LndConfig, LndRest};
use pay402_backends::simnet::{SimNet, SimNode, rest};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest,
};
use pay402_core::money::Msat;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const LND_CERT: &[u8] = include_bytes!("fixtures/lnd-tls.cert");
const LND_KEY: &[u8] = include_bytes!("fixtures/lnd-tls.key");
const OTHER_CERT: &[u8] = include_bytes!("fixtures/other-tls.cert");
/// A test CA and a `CA:FALSE` server certificate it issued (localhost, 127.0.0.1).
const CA_CERT: &[u8] = include_bytes!("fixtures/ca.cert");
const CA_ISSUED_CERT: &[u8] = include_bytes!("fixtures/ca-issued.cert");
const CA_ISSUED_KEY: &[u8] = include_bytes!("fixtures/ca-issued.key");

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
            // Clients that reject the certificate abort the handshake.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn tls_face(node: &SimNode) -> (u16, tokio::task::JoinHandle<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tls_face_on(node, tcp, LND_CERT, LND_KEY)
}

fn tls_face_on(
    node: &SimNode,
    tcp: TcpListener,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> (u16, tokio::task::JoinHandle<()>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let app = rest::router(node.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

fn client(url: &str, pem: Option<&[u8]>) -> LndRest {
    LndRest::new(LndConfig {
        url: url.parse().unwrap(),
        macaroon_hex: Some("0201036c6e64".into()),
        tls_cert_pem: pem.map(<[u8]>::to_vec),
        network: Network::Regtest,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn pinned_lnd_certificate_is_accepted() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000));
    let (merchant_port, t1) = tls_face(&merchant).await;
    let (payer_port, t2) = tls_face(&payer).await;

    let merchant_lnd = client(
        &format!("https://127.0.0.1:{merchant_port}"),
        Some(LND_CERT),
    );
    // The certificate's SANs include localhost too.
    let payer_lnd = client(&format!("https://localhost:{payer_port}"), Some(LND_CERT));

    let inv = merchant_lnd
        .create_invoice(&InvoiceRequest::new(Msat(12_000), "over tls"))
        .await
        .unwrap();
    let p = payer_lnd
        .pay_invoice(&PayRequest::new(&inv.bolt11, Msat(0)))
        .await
        .unwrap();
    assert!(p.preimage.matches(&inv.payment_hash));
    assert!(matches!(
        merchant_lnd
            .lookup_invoice(&inv.payment_hash)
            .await
            .unwrap(),
        InvoiceState::Settled { .. }
    ));
    assert_eq!(payer.balance(), Msat(1_000_000 - 12_000));
    t1.abort();
    t2.abort();
}

#[tokio::test]
async fn other_certificates_and_public_roots_are_refused() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let (port, task) = tls_face(&merchant).await;
    let url = format!("https://127.0.0.1:{port}");
    let req = InvoiceRequest::new(Msat(1_000), "x");

    for (name, lnd, why) in [
        (
            "a different pinned certificate",
            client(&url, Some(OTHER_CERT)),
            "not the pinned tls.cert",
        ),
        // rustls refuses lnd's CA:TRUE self-signed certificate under normal
        // chain validation; that is why the client pins it.
        (
            "public web PKI roots",
            client(&url, None),
            "CaUsedAsEndEntity",
        ),
    ] {
        let res = lnd.create_invoice(&req).await;
        assert!(
            matches!(res, Err(LightningError::Unreachable { call: "create_invoice", ref detail, .. }) if detail.contains(why)),
            "{name}: {res:?}"
        );
    }
    assert_eq!(merchant.invoices_created(), 0);
    task.abort();
}

#[tokio::test]
async fn pinned_certificate_must_match_the_host_name() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    // The whole 127/8 block is loopback on Linux; the certificate only names
    // 127.0.0.1, ::1 and localhost.
    let tcp = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("127.0.0.2 is a loopback address on Linux");
    let (port, task) = tls_face_on(&merchant, tcp, LND_CERT, LND_KEY);
    let wrong_name = client(&format!("https://127.0.0.2:{port}"), Some(LND_CERT));
    let res = wrong_name
        .create_invoice(&InvoiceRequest::new(Msat(1_000), "x"))
        .await;
    assert!(
        matches!(res, Err(LightningError::Unreachable { ref detail, .. }) if detail.contains("not valid for name")),
        "wrong host name: {res:?}"
    );
    assert_eq!(merchant.invoices_created(), 0);
    task.abort();
}

#[tokio::test]
async fn ca_issued_certificates_chain_to_a_pinned_ca() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, task) = tls_face_on(&merchant, tcp, CA_ISSUED_CERT, CA_ISSUED_KEY);
    let url = format!("https://localhost:{port}");
    let req = InvoiceRequest::new(Msat(1_000), "x");

    // Pinning the issuing CA: standard chain validation against that root only.
    let via_ca = client(&url, Some(CA_CERT));
    let inv = via_ca.create_invoice(&req).await.unwrap();
    assert!(inv.bolt11.starts_with("lnbcrt"));
    // Pinning the server certificate itself works too.
    let via_leaf = client(&url, Some(CA_ISSUED_CERT));
    assert_eq!(
        via_leaf.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    // A pin for an unrelated certificate does not.
    let res = client(&url, Some(LND_CERT)).create_invoice(&req).await;
    assert!(
        matches!(res, Err(LightningError::Unreachable { ref detail, .. }) if detail.contains("not the pinned tls.cert")),
        "{res:?}"
    );
    assert_eq!(merchant.invoices_created(), 1);
    task.abort();
}
