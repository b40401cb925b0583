//! A hostile L402 server: it mints challenges from invoices of a simnet
//! merchant node, accepts a credential only when its preimage proves the
//! invoice was paid (the payment is "settled"), and then misbehaves as its
//! [`Misbehaviour`] says. [`Misbehaviour::Honest`] serves normally, so a
//! test can check that a later call reuses the token it paid for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pay402_core::l402::{
    Challenge, Credential, Identifier, Macaroon, PresentedToken, RootKey, Scheme, TokenId,
    VerifyContext, caveat,
};
use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest};
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;

use super::truncated_body;

const SERVICE: &str = "api";

/// How the server misbehaves once a paid credential arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Serves the paid resource.
    Honest,
    /// Answers 500 to a paid credential.
    ServerErrorAfterSettling,
    /// Never answers a paid credential.
    HangAfterSettling,
    /// Answers a paid credential with a fresh challenge at the same price.
    AskAgainAfterSettling,
    /// Answers a paid credential with a fresh challenge at twice the price.
    RaisePriceOnRetry,
    /// Drops the connection without answering a paid credential.
    DropBeforeAnswering,
    /// Sends 200 and part of the body, then drops the connection.
    DropMidResponse,
}

struct Shared {
    merchant: Arc<dyn InvoiceIssuer>,
    root: RootKey,
    price: Msat,
    mode: Mutex<Misbehaviour>,
    next_id: AtomicU64,
    /// Every `Authorization` value that carried a valid, paid credential.
    paid_credentials: Mutex<Vec<String>>,
}

/// A running hostile L402 server.
pub struct HostileL402 {
    /// The paid resource's URL.
    pub url: String,
    shared: Arc<Shared>,
}

impl HostileL402 {
    /// Starts the server on a free loopback port.
    pub async fn start(
        merchant: Arc<dyn InvoiceIssuer>,
        price: Msat,
        mode: Misbehaviour,
    ) -> HostileL402 {
        let shared = Arc::new(Shared {
            merchant,
            root: RootKey::from_bytes([0x24; 32]),
            price,
            mode: Mutex::new(mode),
            next_id: AtomicU64::new(1),
            paid_credentials: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/paid", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HostileL402 { url, shared }
    }

    /// Changes the behaviour for the requests that follow.
    pub fn set_mode(&self, mode: Misbehaviour) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Every `Authorization` value that carried a paid credential, in order.
    pub fn paid_credentials(&self) -> Vec<String> {
        self.shared.paid_credentials.lock().unwrap().clone()
    }
}

/// Whether `headers` carry a credential this server minted whose preimage
/// matches the payment hash its macaroon commits to.
fn paid_credential(s: &Shared, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let credential = Credential::from_headers([value.as_bytes()]).ok()??;
    let mut buf = Vec::new();
    let token = PresentedToken::decode(&credential, &mut buf).ok()?;
    let now = UnixTime::from_system(SystemTime::now());
    token
        .verify(&s.root.derive(), &[], &VerifyContext::new(SERVICE, now))
        .ok()?;
    Some(value.to_str().ok()?.to_owned())
}

async fn challenge(s: &Shared, price: Msat) -> Response {
    let request = InvoiceRequest::new(price, "hostile server");
    let invoice = s
        .merchant
        .create_invoice(&request)
        .await
        .expect("the merchant node issues an invoice");
    let n = s.next_id.fetch_add(1, Ordering::SeqCst);
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    let identifier = Identifier::new(invoice.payment_hash, TokenId(id));
    let mut macaroon = Macaroon::new(&s.root, Some("lsat"), &identifier.encode());
    macaroon.add_first_party_caveat(caveat::build::services(SERVICE, 0));
    let challenge = Challenge::new(macaroon.to_base64(), invoice.bolt11);
    let mut response = StatusCode::PAYMENT_REQUIRED.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge.to_header_value(Scheme::L402)).unwrap(),
    );
    response
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(credential) = paid_credential(&s, &headers) else {
        return challenge(&s, s.price).await;
    };
    s.paid_credentials.lock().unwrap().push(credential);
    let mode = *s.mode.lock().unwrap();
    match mode {
        Misbehaviour::Honest => (StatusCode::OK, "paid content").into_response(),
        Misbehaviour::ServerErrorAfterSettling => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Misbehaviour::HangAfterSettling => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Misbehaviour::AskAgainAfterSettling => challenge(&s, s.price).await,
        Misbehaviour::RaisePriceOnRetry => challenge(&s, Msat(s.price.0 * 2)).await,
        Misbehaviour::DropBeforeAnswering => Response::new(truncated_body(None)),
        Misbehaviour::DropMidResponse => Response::new(truncated_body(Some("paid cont"))),
    }
}
