//! Shared helpers for the server tests: a simnet merchant behind the layer and
//! a funded simnet payer.

#![allow(dead_code, missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_core::l402::{ChallengeSet, Credential};
use pay402_core::lightning::{
    CreatedInvoice, InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer,
    Network, PayRequest, PaymentHash,
};
use pay402_core::money::Msat;
use pay402_server::store::{MemoryStore, RootKeyStore};
use pay402_server::{L402Config, L402Layer, PaidToken, Price};
use tower::ServiceExt;

pub const PRICE_SAT: u64 = 100;

pub struct Env {
    pub net: SimNet,
    pub merchant: SimNode,
    pub payer: SimNode,
    pub layer: L402Layer,
    pub app: Router,
}

pub fn app_for(layer: &L402Layer) -> Router {
    Router::new()
        .route(
            "/paid",
            get(|PaidToken(t): PaidToken| async move { format!("paid:{}", t.token_id) })
                .route_layer(layer.with_price(Price::sats(PRICE_SAT))),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { body })
                .route_layer(layer.with_price(Price::sats(PRICE_SAT))),
        )
        .route("/free", get(|| async { "free" }))
}

pub fn env_with(cfg: L402Config, store: Arc<dyn RootKeyStore>) -> Env {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let layer = L402Layer::new(cfg, Arc::new(merchant.clone()), store);
    let app = app_for(&layer);
    Env {
        net,
        merchant,
        payer,
        layer,
        app,
    }
}

pub fn env(cfg: L402Config) -> Env {
    env_with(cfg, Arc::new(MemoryStore::new()))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_owned()
    }
    pub fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get_req(path: &str, auth: &[&str]) -> Request<Body> {
    let mut b = Request::get(path);
    for a in auth {
        b = b.header(header::AUTHORIZATION, *a);
    }
    b.body(Body::empty()).unwrap()
}

/// Pays the L402 challenge in `reply` with `payer`; returns the Authorization value.
pub async fn pay(payer: &SimNode, reply: &Reply) -> String {
    let values: Vec<&[u8]> = reply
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let set = ChallengeSet::parse(values).unwrap();
    let ch = set.l402().unwrap();
    let payment = payer
        .pay_invoice(&PayRequest::new(ch.invoice(), Msat(10_000)))
        .await
        .unwrap();
    Credential::new(ch.macaroon(), payment.preimage).to_header_value()
}

/// Unpaid request, pay, and return the Authorization value that now works.
pub async fn buy(env: &Env, path: &str) -> String {
    let r = send(&env.app, get_req(path, &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    pay(&env.payer, &r).await
}

/// A Lightning node that cannot be reached: every invoice fails.
pub struct DownNode;

#[async_trait::async_trait]
impl InvoiceIssuer for DownNode {
    async fn create_invoice(&self, _: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        Err(LightningError::Unreachable {
            backend: "test",
            call: "create_invoice",
            detail: "connection refused".into(),
        })
    }
    async fn lookup_invoice(&self, _: &PaymentHash) -> Result<InvoiceState, LightningError> {
        Err(LightningError::NotFound)
    }
    fn network(&self) -> Network {
        Network::Regtest
    }
}
