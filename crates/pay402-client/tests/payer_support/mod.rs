//! A test server offering several rails in one 402, built from the real
//! per-rail layers (`L402Layer` on a simnet merchant, `X402Layer` settling
//! on anvil with real USDC): an unpaid request is answered with every
//! rail's challenge merged into one 402; a paid one goes to the layer whose
//! proof it carries, which verifies (and settles) it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pay402_backends::simnet::SimNode;
use pay402_server::{L402Config, L402Layer, PaidToken, Price};
use tower::ServiceExt as _;

/// One request as the merged server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub paid: bool,
    pub body: Vec<u8>,
    pub status: StatusCode,
}

#[derive(Clone)]
struct Shared {
    l402: Option<Router>,
    x402: Option<Router>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The merged server.
pub struct Merged {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Merged {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `/paid` (GET), `/other` (GET) and `/echo` (POST, echoes the body),
/// each costing `sats` through L402. `/echo`'s tokens are bound to the
/// request (method, path, body hash), so only an identical replay is
/// served.
pub fn l402_app(merchant: &SimNode, sats: u64) -> Router {
    let store = Arc::new(pay402_server::store::MemoryStore::new());
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(merchant.clone()),
        store.clone(),
    );
    let bound = L402Layer::new(
        L402Config::new("api").bind_request(true),
        Arc::new(merchant.clone()),
        store,
    );
    let priced = || layer.with_price(Price::sats(sats));
    Router::new()
        .route(
            "/paid",
            get(|PaidToken(t): PaidToken| async move { format!("paid:{}", t.token_id) })
                .route_layer(priced()),
        )
        .route("/other", get(|| async { "other" }).route_layer(priced()))
        .route(
            "/echo",
            post(|b: Bytes| async move { b }).route_layer(bound.with_price(Price::sats(sats))),
        )
        .route("/free", get(|| async { "free" }))
}

pub async fn serve_merged(l402: Option<Router>, x402: Option<Router>) -> Merged {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        l402,
        x402,
        seen: Arc::clone(&seen),
    };
    let app = Router::new().fallback(handle).with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Merged {
        base: format!("http://{addr}"),
        seen,
    }
}

async fn forward(app: &Router, parts: &axum::http::request::Parts, body: &Bytes) -> Response {
    let req = Request::from_parts(parts.clone(), Body::from(body.clone()));
    app.clone().oneshot(req).await.into_response()
}

const OFFER_HEADERS: [&str; 6] = [
    "www-authenticate",
    "payment-required",
    "price",
    "bitcoin-address",
    "username",
    "bitcoin-payment-channel-server",
];

async fn handle(State(s): State<Shared>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_uppercase();
    let l402_proof = auth.starts_with("L402 ") || auth.starts_with("LSAT ");
    let x402_proof =
        parts.headers.contains_key("payment-signature") || parts.headers.contains_key("x-payment");
    let response = if l402_proof && let Some(app) = &s.l402 {
        forward(app, &parts, &body).await
    } else if x402_proof && let Some(app) = &s.x402 {
        forward(app, &parts, &body).await
    } else {
        merge(&s, &parts, &body).await
    };
    s.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        paid: l402_proof || x402_proof,
        body: body.to_vec(),
        status: response.status(),
    });
    response
}

/// Every rail's 402 in one: their offer headers, and the x402 body (its
/// problem+json doubles as the v1 offer) or else the L402 one.
async fn merge(s: &Shared, parts: &axum::http::request::Parts, body: &Bytes) -> Response {
    let mut answers = Vec::new();
    for app in [&s.x402, &s.l402].into_iter().flatten() {
        let r = forward(app, parts, body).await;
        if r.status() != StatusCode::PAYMENT_REQUIRED {
            return r;
        }
        answers.push(r);
    }
    let mut out = Response::builder().status(StatusCode::PAYMENT_REQUIRED);
    let mut chosen_body: Option<(Option<HeaderValue>, Bytes)> = None;
    for r in answers {
        let (p, b) = r.into_parts();
        for name in OFFER_HEADERS {
            for v in p.headers.get_all(name) {
                out = out.header(HeaderName::from_static(name), v.clone());
            }
        }
        if chosen_body.is_none() {
            let bytes = to_bytes(b, 1 << 20).await.unwrap_or_default();
            chosen_body = Some((p.headers.get(header::CONTENT_TYPE).cloned(), bytes));
        }
    }
    let (ct, bytes) = chosen_body.unwrap_or_default();
    if let Some(ct) = ct {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    out.body(Body::from(bytes)).unwrap()
}

/// The x402 chain used by the tests: anvil's.
pub const NETWORK: &str = "eip155:31337";

/// An `X402Layer` settling through pay402's local facilitator on `chain`
/// (dev account 1 pays the gas) for the USDC at `usdc`.
pub async fn x402_layer(
    chain: &pay402_testkit::anvil::Anvil,
    usdc: alloy::primitives::Address,
) -> pay402_server::x402::X402Layer {
    use pay402_testkit::anvil::{DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};
    let facilitator = pay402_backends::x402::LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("build the local facilitator");
    pay402_server::x402::X402Layer::new(
        pay402_server::x402::X402Config::new(),
        Arc::new(facilitator),
        Arc::new(pay402_server::x402::store::MemoryPaymentStore::new()),
    )
}

/// A route paid with `amount` base units of the USDC at `usdc` to `payee`.
pub fn usdc_route(
    usdc: alloy::primitives::Address,
    payee: alloy::primitives::Address,
    amount: u64,
) -> pay402_server::x402::X402Route {
    use pay402_testkit::anvil::{USDC_NAME, USDC_VERSION};
    let offer = pay402_server::x402::exact_offer(
        NETWORK,
        &usdc.to_string(),
        &payee.to_string(),
        pay402_core::x402::TokenAmount::from_u64(amount),
        USDC_NAME,
        USDC_VERSION,
    );
    pay402_server::x402::X402Route::new([offer]).expect("offer")
}

/// Polls `f` until it holds (bounded).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}
