//! A small L402 test server (axum 0.8) minting challenges with pay402-core
//! from invoices of a simnet merchant node, and verifying credentials the
//! way Aperture does. Configurable misbehaviour for the client tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pay402_core::l402::{
    Challenge, Credential, Identifier, Macaroon, PresentedToken, RootKey, Scheme, TokenId,
    VerifyContext, caveat,
};
use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, PaymentHash};
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;

pub const SERVICE: &str = "api";

/// Knobs for misbehaviour.
#[derive(Clone, Debug)]
pub struct Mode {
    /// The macaroon commits to a different payment hash than the invoice's.
    pub mismatched_hash: bool,
    /// Every credential is refused (fresh 402), even valid ones.
    pub reject_all: bool,
    /// Only an `LSAT` challenge is offered (legacy server).
    pub lsat_only: bool,
    /// A refused credential gets 401 + challenge (spec mode) instead of 402.
    pub spec_401: bool,
    /// Invoice expiry.
    pub expiry: Duration,
    /// Answer 402 without any L402 challenge.
    pub no_challenge: bool,
    /// Wait this long after minting before answering (to let invoices expire).
    pub hold: Duration,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            mismatched_hash: false,
            reject_all: false,
            lsat_only: false,
            spec_401: false,
            expiry: Duration::from_secs(3600),
            no_challenge: false,
            hold: Duration::ZERO,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub authorization: Vec<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub status: StatusCode,
}

pub struct Shared {
    merchant: Arc<dyn InvoiceIssuer>,
    root: RootKey,
    price: Mutex<Msat>,
    pub mode: Mutex<Mode>,
    revoked: Mutex<HashSet<TokenId>>,
    issued: Mutex<Vec<TokenId>>,
    next_id: AtomicU64,
    pub challenges: AtomicUsize,
    pub accepted: AtomicUsize,
    pub seen: Mutex<Vec<Seen>>,
    pub last_hash: Mutex<Option<PaymentHash>>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
}

impl TestServer {
    pub async fn start(merchant: Arc<dyn InvoiceIssuer>, price: Msat) -> TestServer {
        Self::start_with(merchant, price, Mode::default()).await
    }

    pub async fn start_with(
        merchant: Arc<dyn InvoiceIssuer>,
        price: Msat,
        mode: Mode,
    ) -> TestServer {
        let shared = Arc::new(Shared {
            merchant,
            root: RootKey::from_bytes([0x42; 32]),
            price: Mutex::new(price),
            mode: Mutex::new(mode),
            revoked: Mutex::new(HashSet::new()),
            issued: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            challenges: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            last_hash: Mutex::new(None),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Revokes every token minted so far (like Aperture's admin revocation).
    pub fn revoke_all(&self) {
        let issued = self.shared.issued.lock().unwrap().clone();
        self.shared.revoked.lock().unwrap().extend(issued);
    }

    pub fn set_mode(&self, f: impl FnOnce(&mut Mode)) {
        f(&mut self.shared.mode.lock().unwrap());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn challenges(&self) -> usize {
        self.shared.challenges.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    pub fn last_hash(&self) -> Option<PaymentHash> {
        *self.shared.last_hash.lock().unwrap()
    }
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// `Ok(true)`: valid token; `Ok(false)`: no credential; `Err(())`: refused.
fn check_credential(s: &Shared, headers: &HeaderMap) -> Result<bool, ()> {
    let values = headers.get_all(header::AUTHORIZATION);
    let cred = match Credential::from_headers(values.iter().map(HeaderValue::as_bytes)) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(false),
        Err(_) => return Err(()),
    };
    let mut buf = Vec::new();
    let token = PresentedToken::decode(&cred, &mut buf).map_err(|_| ())?;
    let verified = token
        .verify(&s.root.derive(), &[], &VerifyContext::new(SERVICE, now()))
        .map_err(|_| ())?;
    if s.revoked.lock().unwrap().contains(&verified.token_id) {
        return Err(());
    }
    if s.mode.lock().unwrap().reject_all {
        return Err(());
    }
    Ok(true)
}

async fn challenge(s: &Shared, status: StatusCode) -> Response {
    s.challenges.fetch_add(1, Ordering::SeqCst);
    let mode = s.mode.lock().unwrap().clone();
    if mode.no_challenge {
        let mut resp = status.into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Payment realm=\"x\""),
        );
        return resp;
    }
    let price = *s.price.lock().unwrap();
    let mut req = InvoiceRequest::new(price, "pay402-client test");
    req.expiry = mode.expiry;
    let Ok(invoice) = s.merchant.create_invoice(&req).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut committed = invoice.payment_hash;
    if mode.mismatched_hash {
        let Ok(other) = s.merchant.create_invoice(&req).await else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        committed = other.payment_hash;
    }
    *s.last_hash.lock().unwrap() = Some(invoice.payment_hash);
    let n = s.next_id.fetch_add(1, Ordering::SeqCst);
    let mut id_bytes = [0u8; 32];
    id_bytes[..8].copy_from_slice(&n.to_be_bytes());
    let token_id = TokenId(id_bytes);
    s.issued.lock().unwrap().push(token_id);
    let id = Identifier::new(committed, token_id);
    let mut mac = Macaroon::new(&s.root, Some("lsat"), &id.encode());
    mac.add_first_party_caveat(caveat::build::services(SERVICE, 0));
    let ch = Challenge::new(mac.to_base64(), invoice.bolt11);
    if !mode.hold.is_zero() {
        tokio::time::sleep(mode.hold).await;
    }
    let mut resp = status.into_response();
    let h = resp.headers_mut();
    // Aperture order: LSAT first, then L402.
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&ch.to_header_value(Scheme::Lsat)).unwrap(),
    );
    if !mode.lsat_only {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&ch.to_header_value(Scheme::L402)).unwrap(),
        );
    }
    resp
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let resp = if path == "/redirect" {
        // `/redirect?<absolute url>`: 307 there, no payment asked.
        let to = uri.query().unwrap_or_default().to_owned();
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_str(&to).unwrap());
        r
    } else if path == "/free" {
        (StatusCode::OK, "free").into_response()
    } else {
        match check_credential(&s, &headers) {
            Ok(true) => {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let text = format!("paid {} {}", path, String::from_utf8_lossy(&body));
                (StatusCode::OK, text).into_response()
            }
            Ok(false) => challenge(&s, StatusCode::PAYMENT_REQUIRED).await,
            Err(()) => {
                let spec = s.mode.lock().unwrap().spec_401;
                let status = if spec {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::PAYMENT_REQUIRED
                };
                challenge(&s, status).await
            }
        }
    };
    s.seen.lock().unwrap().push(Seen {
        method,
        path,
        authorization: headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
            .collect(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
        body: body.to_vec(),
        status: resp.status(),
    });
    resp
}
