//! MPP as a `Paywall` rail: `lightning`/`charge` paid end to end on simnet
//! (real BOLT11 invoices and preimages), the failure policy (replay, cross
//! route, expiry, tampered HMAC, mixed proofs, two credentials, a store
//! that is down), secret rotation, the derived vector of mpp.md §12.5, and
//! the one 402 carrying every rail, read back by each rail's parser.
//! `evm`/`charge` settles on anvil with real USDC in `anvil_mpp.rs`; here
//! its facilitator is a double that nothing settles through.
#![cfg(all(feature = "x402", feature = "bitreq"))]

mod x402_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::secp256k1::Secp256k1;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_core::l402::{ChallengeSet, Scheme, check_challenge};
use pay402_core::lightning::{InvoiceIssuer, LightningPayer, Network, PayRequest};
use pay402_core::money::Msat;
use pay402_core::mpp::methods::lightning;
use pay402_core::mpp::{
    Challenge, ChallengeKey, ChallengeKeys, ChallengeList, Credential, Receipt, credential,
};
use pay402_core::offer::{Rail, ReadOptions, read_offers_with};
use pay402_core::rates::FixedRates;
use pay402_core::time::UnixTime;
use pay402_core::x402::{HeaderValue as _, PaymentRequired};
use pay402_server::bitreq::store::MemoryBitreqStore;
use pay402_server::bitreq::{BitreqConfig, BitreqServer, OnChainConfig, TransferConfig};
use pay402_server::mpp::store::{Consumption, MemoryMppStore, MppStore, StoreError};
use pay402_server::mpp::{CredentialHeader, MppConfig};
use pay402_server::paywall::{Paid, Paywall, PaywallPrice, X402Asset};
use pay402_server::store::MemoryStore;
use pay402_server::x402::X402Config;
use pay402_server::x402::X402Layer;
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::{L402Config, L402Layer};
use serde_json::{Value, json};
use tower::ServiceExt;
use x402_support::FaultInjectingFacilitator;

const REALM: &str = "shop.test";
const SECRET: [u8; 32] = [0x5e; 32];
const NETWORK: &str = "eip155:31337";
const USDC: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const PAY_TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

struct Env {
    merchant: SimNode,
    payer: SimNode,
    paywall: Paywall,
}

/// A paywall with MPP `lightning`/`charge` (and, with `all`, L402 with
/// LSAT, MPP `evm`/`charge`, x402 and BitRequests).
fn env_with(all: bool, config: impl FnOnce(MppConfig) -> MppConfig) -> Env {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let node: Arc<dyn InvoiceIssuer> = Arc::new(merchant.clone());
    let usdc = X402Asset::usdc(NETWORK, USDC.parse().unwrap());
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let mut mpp = MppConfig::new(REALM, &SECRET)
        .unwrap()
        .lightning(node.clone());
    if all {
        mpp = mpp.evm(facilitator.clone(), PAY_TO.parse().unwrap(), usdc.clone());
    }
    let mut b = Paywall::builder()
        .mpp(config(mpp))
        .rates(Arc::new(FixedRates::new().usd_cents_per_btc(10_000_000)));
    if all {
        b = b
            .l402_layer(L402Layer::new(
                L402Config::new("api").emit_lsat(true),
                node,
                Arc::new(MemoryStore::new()),
            ))
            .x402_layer(
                X402Layer::new(
                    X402Config::new(),
                    facilitator,
                    Arc::new(MemoryPaymentStore::new()),
                ),
                PAY_TO.parse().unwrap(),
                usdc,
            )
            .bitreq(bitreq_server());
    }
    Env {
        merchant,
        payer,
        paywall: b.build().unwrap(),
    }
}

fn env() -> Env {
    env_with(false, |c| c)
}

fn bitreq_server() -> BitreqServer {
    let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[7; 32]).unwrap();
    let config = BitreqConfig::new(bitcoin::Network::Regtest)
        .public_url("http://shop.test")
        .onchain(OnChainConfig::derived(Xpub::from_priv(
            &Secp256k1::new(),
            &xprv,
        )))
        .transfer(TransferConfig::new("shop"));
    let chain = BitcoindRpc::new(BitcoindConfig {
        url: "http://127.0.0.1:9".parse().unwrap(),
        user: "u".into(),
        password: "p".into(),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    BitreqServer::new(config, Arc::new(chain), Arc::new(MemoryBitreqStore::new())).unwrap()
}

async fn show(paid: Paid) -> axum::Json<Value> {
    axum::Json(json!({
        "rail": paid.rail.as_str(),
        "amount": paid.amount.to_string(),
        "receipt": paid.receipt.to_string(),
        "kind": paid.receipt.kind(),
    }))
}

fn app(paywall: &Paywall) -> Router {
    Router::new()
        .route(
            "/cheap",
            get(show).route_layer(paywall.price(PaywallPrice::sats(10))),
        )
        .route(
            "/dear",
            get(show).route_layer(paywall.price(PaywallPrice::sats(5_000))),
        )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn www(&self) -> Vec<&[u8]> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    }
    /// The `Payment` challenges, parsed by core.
    fn payment(&self) -> Vec<Challenge<'static>> {
        let list = ChallengeList::parse(self.www());
        list.challenges()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect()
    }
    fn lightning(&self) -> Challenge<'static> {
        self.payment()
            .into_iter()
            .find(|c| c.method == "lightning")
            .expect("a lightning/charge challenge")
    }
    /// The MPP problem type's last segment and pay402's reason.
    fn problem(&self) -> (String, String) {
        let j = self.json();
        let t = j["type"].as_str().unwrap_or_default();
        (
            t.rsplit('/').next().unwrap_or_default().to_owned(),
            j["reason"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

async fn send(app: &Router, path: &str, auth: &[&str]) -> Reply {
    let mut b = Request::get(path).header(header::HOST, REALM);
    for a in auth {
        b = b.header(header::AUTHORIZATION, *a);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Pays `challenge` from `payer` the way a careful client does (the
/// invoice decoded and budgeted on its own amount): the `Authorization`.
async fn pay(payer: &SimNode, challenge: &Challenge<'_>) -> String {
    let payable =
        lightning::check_charge(challenge, Network::Regtest, now(), Msat(10_000_000)).unwrap();
    let paid = payer
        .pay_invoice(&PayRequest::new(&payable.bolt11, Msat(10_000)))
        .await
        .unwrap();
    assert!(payable.accepts(&paid.preimage));
    lightning::credential(challenge, &paid.preimage, None)
}

#[tokio::test]
async fn mpp_lightning_charge_is_paid_end_to_end_and_served_once() {
    let e = env();
    let app = app(&e.paywall);
    let r = send(&app, "/cheap", &[]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(r.header("content-type"), "application/problem+json");
    let expose = r.header("access-control-expose-headers");
    assert!(expose.contains("WWW-Authenticate") && expose.contains("Payment-Receipt"));
    assert_eq!(
        r.problem(),
        ("payment-required".to_owned(), "payment_required".to_owned())
    );
    let ch = r.lightning();
    assert_eq!((&*ch.realm, &*ch.intent), (REALM, "charge"));
    // The id is this server's HMAC of the parameters.
    let keys = ChallengeKeys::new(ChallengeKey::new(&SECRET).unwrap());
    assert_eq!(keys.verify(&ch), Some(0));
    assert!(ch.expires_at().unwrap() > now());

    let auth = pay(&e.payer, &ch).await;
    let ok = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    assert_eq!(ok.json()["rail"], "mpp");
    assert_eq!(ok.json()["amount"], "10 sat");
    assert_eq!(ok.json()["kind"], "mpp_lightning");
    assert!(ok.header("cache-control").contains("private"));
    assert!(
        ok.header("access-control-expose-headers")
            .contains("Payment-Receipt")
    );
    let receipt = Receipt::decode(&ok.header("payment-receipt")).unwrap();
    assert_eq!(
        (receipt.method.as_str(), receipt.status.as_str()),
        ("lightning", "success")
    );
    assert_eq!(receipt.challenge_id.as_deref(), Some(&*ch.id));
    let hash = lightning::InvoiceFacts::read(
        &lightning::check_charge(&ch, Network::Regtest, now(), Msat(u64::MAX))
            .unwrap()
            .bolt11,
    )
    .unwrap()
    .payment_hash;
    assert_eq!(
        receipt.reference,
        hash.to_hex(),
        "the payment hash, never the preimage"
    );
    assert_eq!(ok.json()["receipt"], hash.to_hex());
    // The merchant's node was paid once, 10 sat.
    assert_eq!(e.merchant.balance(), Msat(10_000));

    // The same credential again: 403, and no challenge (a new one would
    // invite a second payment).
    let again = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.www().is_empty());
    assert!(again.header("payment-receipt").is_empty());
    assert_eq!(
        again.problem(),
        (
            "verification-failed".to_owned(),
            "credential_replayed".to_owned()
        )
    );
    assert_eq!(again.json()["challengeId"], &*ch.id);
}

#[tokio::test]
async fn a_credential_for_a_cheap_route_is_refused_on_a_dear_one() {
    let e = env();
    let app = app(&e.paywall);
    let ch = send(&app, "/cheap", &[]).await.lightning();
    let auth = pay(&e.payer, &ch).await;
    let r = send(&app, "/dear", &[&auth]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        r.problem(),
        (
            "invalid-challenge".to_owned(),
            "challenge_route_mismatch".to_owned()
        )
    );
    assert_eq!(r.json()["challengeId"], &*ch.id);
    // A fresh challenge for the dear route comes with the refusal.
    let fresh = r.lightning();
    assert_ne!(fresh.id, ch.id);
    // Nothing was consumed: the credential still pays for its own route.
    assert_eq!(send(&app, "/cheap", &[&auth]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_challenge_is_refused_with_a_fresh_one() {
    let e = env();
    let app = app(&e.paywall);
    // A challenge this server's secret did bind, issued 20 minutes ago
    // with a 5-minute lifetime, for a real invoice that is still payable.
    let invoice = e
        .merchant
        .create_invoice(&pay402_core::lightning::InvoiceRequest::new(
            Msat(10_000),
            "old",
        ))
        .await
        .unwrap();
    let keys = ChallengeKeys::new(ChallengeKey::new(&SECRET).unwrap());
    let old = lightning::issue_charge(
        &keys,
        &lightning::ChargeOffer::new(REALM, &invoice.bolt11),
        UnixTime(now().0 - 1_200),
    )
    .unwrap();
    let paid = e
        .payer
        .pay_invoice(&PayRequest::new(&invoice.bolt11, Msat(10_000)))
        .await
        .unwrap();
    let auth = lightning::credential(&old, &paid.preimage, None);
    let r = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        r.problem(),
        ("payment-expired".to_owned(), "challenge_expired".to_owned())
    );
    assert_eq!(r.payment().len(), 1, "a fresh challenge");
}

#[tokio::test]
async fn a_tampered_challenge_fails_the_hmac() {
    let e = env();
    let app = app(&e.paywall);
    let ch = send(&app, "/cheap", &[]).await.lightning();
    let auth = pay(&e.payer, &ch).await;
    // Change the echoed id, then the echoed expiry: the HMAC no longer
    // matches either way.
    let token = auth.strip_prefix("Payment ").unwrap();
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf).unwrap();
    let payload: Value = serde_json::from_str(cred.payload.get()).unwrap();
    let mut forged_id = cred.challenge.clone();
    // (Another first character than the real one: 1 id in 64 starts with A.)
    let first = if ch.id.starts_with('A') { 'B' } else { 'A' };
    forged_id.id = format!("{first}{}", &ch.id[1..]).into();
    let mut later = cred.challenge.clone();
    later.expires = Some("2099-01-01T00:00:00Z".into());
    for forged in [forged_id, later] {
        let bad = Credential::encode(&forged, &payload, None).unwrap();
        let r = send(&app, "/cheap", &[&bad]).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            r.problem(),
            (
                "invalid-challenge".to_owned(),
                "challenge_not_issued".to_owned()
            )
        );
    }
    // A wrong preimage under a good HMAC: verification-failed.
    let wrong = lightning::credential(
        &ch,
        &pay402_core::lightning::Preimage::from_bytes([9; 32]),
        None,
    );
    let r = send(&app, "/cheap", &[&wrong]).await;
    assert_eq!(
        r.problem(),
        (
            "verification-failed".to_owned(),
            "preimage_mismatch".to_owned()
        )
    );
    // A credential that is not base64url JSON.
    let r = send(&app, "/cheap", &["Payment !!!"]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.problem().0, "malformed-credential");
    // The genuine one still pays.
    assert_eq!(send(&app, "/cheap", &[&auth]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn proofs_of_two_rails_or_two_credentials_are_refused_before_anything_is_spent() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    let r = send(&app, "/cheap", &[]).await;
    let ch = r.lightning();
    let auth = pay(&e.payer, &ch).await;
    // An L402 token beside the Payment credential.
    let set = ChallengeSet::parse(r.www()).unwrap();
    let l402 = set.l402().unwrap();
    let paid = e
        .payer
        .pay_invoice(&PayRequest::new(l402.invoice(), Msat(10_000)))
        .await
        .unwrap();
    let token =
        pay402_core::l402::Credential::new(l402.macaroon(), paid.preimage).to_header_value();
    let both = send(&app, "/cheap", &[&token, &auth]).await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert_eq!(both.json()["reason"], "multiple_payment_proofs");
    assert!(
        both.json()["detail"]
            .as_str()
            .unwrap()
            .contains("l402, mpp")
    );
    // Two Payment credentials: 400 bad-request, no challenge.
    let two = send(&app, "/cheap", &[&auth, &auth]).await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    assert!(two.www().is_empty());
    assert_eq!(two.problem().0, "bad-request");
    // Neither was consumed: each still pays alone.
    assert_eq!(send(&app, "/cheap", &[&auth]).await.status, StatusCode::OK);
    assert_eq!(send(&app, "/cheap", &[&token]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn one_402_carries_every_rail_in_apertures_order_and_parses_back() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    let r = send(&app, "/dear", &[]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.header("cache-control"), "no-store");
    // WWW-Authenticate lines: LSAT, L402, then the Payment challenges.
    let lines: Vec<String> = r
        .www()
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(lines, ["LSAT", "L402", "Payment", "Payment"]);
    let methods: Vec<String> = r.payment().iter().map(|c| c.method.to_string()).collect();
    assert_eq!(methods, ["lightning", "evm"]);

    // The L402 parser and its checks see their challenges as before.
    let set = ChallengeSet::parse(r.www()).unwrap();
    let schemes: Vec<Scheme> = set.all().iter().map(|c| c.scheme()).collect();
    assert_eq!(schemes, [Scheme::Lsat, Scheme::L402]);
    let checked =
        check_challenge(set.l402().unwrap(), Network::Regtest, now(), Msat(u64::MAX)).unwrap();
    assert_eq!(checked.invoice.amount, Msat(5_000_000));
    // One invoice per scheme: L402's and MPP's are different payments.
    let mpp_invoice =
        lightning::check_charge(&r.lightning(), Network::Regtest, now(), Msat(u64::MAX)).unwrap();
    assert_eq!(mpp_invoice.amount, Msat(5_000_000));
    assert_ne!(mpp_invoice.payment_hash, checked.invoice.payment_hash);
    // The EVM charge: 5 000 sat = 5 USD = 5 000 000 USDC base units,
    // nonce-bound (an `opaque` nonce makes each id unique).
    let evm = r.payment().into_iter().find(|c| c.method == "evm").unwrap();
    let charge = pay402_core::mpp::methods::evm::check_charge(
        &evm,
        31_337,
        &USDC.parse().unwrap(),
        now(),
        pay402_core::x402::TokenAmount::from_u64(u64::MAX),
    )
    .unwrap();
    assert_eq!(charge.request.amount.to_string(), "5000000");
    assert!(evm.opaque.is_some());

    // x402: PAYMENT-REQUIRED and the v1 body members; BitRequests: two1.
    let required = PaymentRequired::decode_header(&r.header("payment-required")).unwrap();
    assert_eq!(required.accepts[0].amount.to_string(), "5000000");
    assert_eq!(r.json()["x402Version"], 1);
    assert_eq!(r.header("price"), "5000");
    // The body is the MPP payment-required problem.
    assert_eq!(r.problem().0, "payment-required");

    // Every offer reads back through core's one reader; the Payment
    // challenges are offers (or reported), never lost.
    let usdc = X402Asset::usdc(NETWORK, USDC.parse().unwrap()).unit();
    let offers = read_offers_with(&r.headers, &r.body, &ReadOptions::default().token(usdc));
    let rails: Vec<Rail> = offers.offers.iter().map(|o| o.rail).collect();
    for rail in [Rail::L402, Rail::X402, Rail::BitRequests] {
        assert!(rails.contains(&rail), "{rail} in {rails:?}");
    }
    let mpp_seen = rails.iter().filter(|r| **r == Rail::Mpp).count()
        + offers
            .skipped
            .iter()
            .filter(|s| s.rail == Some(Rail::Mpp) || s.name.eq_ignore_ascii_case("payment"))
            .count();
    assert_eq!(mpp_seen, 2, "{:?}", offers.skipped);
}

#[tokio::test]
async fn a_challenge_bound_under_the_previous_secret_still_pays() {
    let old = [0x01; 32];
    let e = env_with(false, |c| c.previous_secret(&old).unwrap());
    let app = app(&e.paywall);
    let invoice = e
        .merchant
        .create_invoice(&pay402_core::lightning::InvoiceRequest::new(
            Msat(10_000),
            "rotated",
        ))
        .await
        .unwrap();
    let old_keys = ChallengeKeys::new(ChallengeKey::new(&old).unwrap());
    let ch = lightning::issue_charge(
        &old_keys,
        &lightning::ChargeOffer::new(REALM, &invoice.bolt11),
        now(),
    )
    .unwrap();
    let auth = pay(&e.payer, &ch).await;
    // A paywall that no longer honours the old secret refuses it...
    let strict = env();
    let r = send(&app_of(&strict), "/cheap", &[&auth]).await;
    assert_eq!(r.problem().1, "challenge_not_issued");
    // ...the one in rotation serves it.
    assert_eq!(send(&app, "/cheap", &[&auth]).await.status, StatusCode::OK);
}

fn app_of(e: &Env) -> Router {
    app(&e.paywall)
}

/// A replay store whose database is down.
struct DownStore;

#[async_trait]
impl MppStore for DownStore {
    async fn consume(&self, _: &Consumption<'_>, _: UnixTime) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn consumed_by(&self, _: &str, _: &str) -> Result<Option<String>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn prune(&self, _: UnixTime) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_without_a_challenge_and_serves_nothing() {
    let e = env_with(false, |c| c.store(Arc::new(DownStore)));
    let app = app(&e.paywall);
    let ch = send(&app, "/cheap", &[]).await.lightning();
    let auth = pay(&e.payer, &ch).await;
    let r = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.www().is_empty());
    assert!(r.json()["rail"].is_null(), "the handler did not run");
    assert_eq!(r.json()["reason"], "store_unavailable");
}

#[tokio::test]
async fn a_clients_challenge_rate_limit_stops_its_invoices_and_leaves_l402_offered() {
    use pay402_server::limit::RateLimit;
    let e = env_with(true, |c| c.challenge_rate_limit(RateLimit::per_minute(1)));
    let app = app(&e.paywall);
    let from = |ip: [u8; 4]| {
        let mut r = Request::get("/cheap")
            .header(header::HOST, REALM)
            .body(Body::empty())
            .unwrap();
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40_000,
            ))));
        r
    };
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            resp.headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| v.to_str().unwrap().split(' ').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        call(from([10, 0, 0, 1])).await,
        ["LSAT", "L402", "Payment", "Payment"]
    );
    // Over its limit: no Payment challenge (no invoice minted for it), the
    // other rails still offered; another client is not affected.
    assert_eq!(call(from([10, 0, 0, 1])).await, ["LSAT", "L402"]);
    assert_eq!(
        call(from([10, 0, 0, 2])).await,
        ["LSAT", "L402", "Payment", "Payment"]
    );
}

#[tokio::test]
async fn the_derived_vector_verifies_once_on_the_issuing_servers_path() {
    // mpp.md §12.5, at the injected instant 2026-01-01T00:05:00Z.
    let authorization = "Payment eyJjaGFsbGVuZ2UiOnsiZXhwaXJlcyI6IjIwMjYtMDEtMDFUMDA6MTU6MDBaIiwiaWQiOiJjX2h3TFFmNGhFTTZySi15dzNXMXdqTDFpMmxRdUk5dDFVNzF2WmV2Sm1JIiwiaW50ZW50IjoiY2hhcmdlIiwibWV0aG9kIjoibGlnaHRuaW5nIiwicmVhbG0iOiJhcGkuZXhhbXBsZS5jb20iLCJyZXF1ZXN0IjoiZXlKaGJXOTFiblFpT2lJeE1EQWlMQ0pqZFhKeVpXNWplU0k2SW5OaGRDSXNJbVJsYzJOeWFYQjBhVzl1SWpvaWNHRjVOREF5SUcxd2NDQjBaWE4wSUhabFkzUnZjaUlzSW0xbGRHaHZaRVJsZEdGcGJITWlPbnNpYVc1MmIybGpaU0k2SW14dVltTnlkREYxTVhBMU5IUjNaM0ZrY0hsM2NITm9hbVJ3YzNobmMzZzJkWEp6ZVhBMmVESjFiVFY1Y0cxNE1tTnROV1JoWlhGd2NEVnhkREo1Ym1kamJHaDJiamhsY21VME9UWjJhek5tZFRjNFpUQjFhbWh4YldnMk5EbHhkRGRyWnpRNGRHMWxaSGxvYlhkeGMzQTFlV2N6ZW5sbk0zcDVaek42ZVdjemVubG5NM3A1WnpONmVXY3plbmxuTTNwNVp6TjZlV2N6ZW5sbk0zcDVaek42ZVdjemNUbHhjbk5uY1hoeGNuSnpjMk54ZW5sek4yUjZOWGsyZEd0ek9EUTViSEIwWnpock1tTTBlV0ZvZFdvMWEzSXpOMjEwYUdGck5HWnNjemMyYXpnM05EaG9OM1ZxY20xeGNuRmtOSHBvY21SbmVEWXpjV2g1YldwaGJuTjZOblo0Y1RScWRXaDJkSEJ5WVhCbGNuSndhbWcxWkRkemRUazVjM0ZuT0dVMmF6Y2lMQ0p1WlhSM2IzSnJJam9pY21WbmRHVnpkQ0lzSW5CaGVXMWxiblJJWVhOb0lqb2lNREprTkRRNVlUTXhabUppTWpZM1l6aG1NelV5WlRrNU5qaGhOemxsTTJVMVptTTVOV014WW1KbFlXRTFNREptWkRZME5UUmxZbVJsTldFMFltVmtZeUo5ZlEifSwicGF5bG9hZCI6eyJwcmVpbWFnZSI6IjExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTEifX0";
    let keys =
        ChallengeKeys::new(ChallengeKey::new(b"pay402-mpp-derived-vector-secret-0001").unwrap());
    let at = UnixTime(1_767_225_900);
    let token = credential::find_token([authorization.as_bytes()])
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf).unwrap();
    let v = lightning::ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest)
        .verify_issued(&cred, at)
        .unwrap();
    assert_eq!(
        v.payment_hash.to_hex(),
        "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"
    );
    assert_eq!(
        v.challenge_id,
        "c_hwLQf4hEM6rJ-yw3W1wjL1i2lQuI9t1U71vZevJmI"
    );
    // The slim path agrees with the full one (which decodes the invoice).
    let full = lightning::ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest)
        .verify(&cred, at)
        .unwrap();
    assert_eq!((full.payment_hash, full.amount), (v.payment_hash, v.amount));
    // Consumed once, then a replay.
    let store = MemoryMppStore::new();
    let hash = v.payment_hash.to_hex();
    let c = Consumption {
        method: "lightning",
        reference: &hash,
        challenge_id: &v.challenge_id,
        expires_at: v.expires_at,
    };
    assert!(store.consume(&c, at).await.unwrap());
    assert!(!store.consume(&c, at).await.unwrap());
    // The receipt at 00:01:00Z is the vector's, byte for byte.
    assert_eq!(
        v.receipt(UnixTime(1_767_225_660)).encode(),
        "eyJtZXRob2QiOiJsaWdodG5pbmciLCJyZWZlcmVuY2UiOiIwMmQ0NDlhMzFmYmIyNjdjOGYzNTJlOTk2OGE3OWUzZTVmYzk1YzFiYmVhYTUwMmZkNjQ1NGViZGU1YTRiZWRjIiwic3RhdHVzIjoic3VjY2VzcyIsInRpbWVzdGFtcCI6IjIwMjYtMDEtMDFUMDA6MDE6MDBaIiwiY2hhbGxlbmdlSWQiOiJjX2h3TFFmNGhFTTZySi15dzNXMXdqTDFpMmxRdUk5dDFVNzF2WmV2Sm1JIn0"
    );
    // Past the challenge's expiry (00:15:00Z) it is refused.
    let late = lightning::ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest)
        .verify_issued(&cred, UnixTime(1_767_226_500));
    assert_eq!(late.unwrap_err().to_string(), "challenge has expired");
}

/// An unpaid request with `Accept-Payment: accept` (each value one field
/// line).
async fn send_accepting(app: &Router, path: &str, accept: &[&str]) -> Reply {
    let fields: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-payment", *a)).collect();
    send_fields(app, path, &fields).await
}

impl Reply {
    fn methods(&self) -> Vec<String> {
        self.payment()
            .iter()
            .map(|c| c.method.to_string())
            .collect()
    }
    fn schemes(&self) -> Vec<String> {
        self.www()
            .iter()
            .map(|v| {
                let s = String::from_utf8_lossy(v);
                s.split(' ').next().unwrap_or_default().to_owned()
            })
            .collect()
    }
    /// Asserts the other rails' challenges are all there.
    fn has_other_rails(&self) {
        assert_eq!(self.status, StatusCode::PAYMENT_REQUIRED);
        let schemes = self.schemes();
        assert_eq!(&schemes[..2], ["LSAT", "L402"], "{schemes:?}");
        let required = PaymentRequired::decode_header(&self.header("payment-required")).unwrap();
        assert_eq!(required.accepts[0].amount.to_string(), "5000000");
        assert_eq!(self.header("price"), "5000");
    }
}

#[tokio::test]
async fn accept_payment_preferring_evm_puts_evm_first_and_leaves_other_rails_alone() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    let r = send_accepting(&app, "/dear", &["lightning/charge;q=0.5, evm/charge"]).await;
    r.has_other_rails();
    assert_eq!(r.methods(), ["evm", "lightning"]);
    // A wildcard and a more specific range: the specific one wins.
    let r = send_accepting(&app, "/dear", &["*/*;q=0.9", "evm/*;q=0.3"]).await;
    assert_eq!(r.methods(), ["lightning", "evm"]);
    // Ties keep the server's order.
    let r = send_accepting(&app, "/dear", &["evm/charge, lightning/charge"]).await;
    assert_eq!(r.methods(), ["lightning", "evm"]);
    // The reordered offers still pay: the lightning challenge is genuine.
    let r = send_accepting(&app, "/cheap", &["evm/charge, lightning/charge;q=0.1"]).await;
    assert_eq!(r.methods(), ["evm", "lightning"]);
    let auth = pay(&e.payer, &r.lightning()).await;
    let paid = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(paid.status, StatusCode::OK, "{:?}", paid.json());
    assert_eq!(paid.json()["rail"], "mpp");
}

#[tokio::test]
async fn accept_payment_with_q_zero_drops_the_method_and_mints_no_invoice() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    let before = e.merchant.invoices_created();
    let r = send_accepting(&app, "/dear", &["lightning/charge;q=0, evm/charge"]).await;
    r.has_other_rails();
    assert_eq!(r.methods(), ["evm"]);
    // Only L402's invoice was minted: none for the dropped MPP lightning.
    assert_eq!(e.merchant.invoices_created(), before + 1);
}

#[tokio::test]
async fn a_malformed_accept_payment_is_ignored_never_an_error() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    let long = format!("evm/charge;q=1, {}", "x/y;q=0.5, ".repeat(200));
    for bad in [
        "lightning",
        "evm/charge;q=2",
        "evm/charge;q=0.1234",
        "Evm/Charge",
        long.as_str(),
    ] {
        let r = send_accepting(&app, "/dear", &[bad]).await;
        r.has_other_rails();
        assert_eq!(r.methods(), ["lightning", "evm"], "{bad}");
    }
    // A non-UTF-8 value is malformed too.
    let req = Request::get("/dear")
        .header(header::HOST, REALM)
        .header(
            "accept-payment",
            http::HeaderValue::from_bytes(b"evm/charge\xff").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    let methods: Vec<String> = ChallengeList::parse(
        resp.headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes()),
    )
    .challenges()
    .iter()
    .map(|c| c.method.to_string())
    .collect();
    assert_eq!(methods, ["lightning", "evm"]);
}

#[tokio::test]
async fn accept_payment_matching_no_method_keeps_every_rails_challenges() {
    let e = env_with(true, |c| c);
    let app = app(&e.paywall);
    // No MPP method is acceptable: the header is ignored (mpp.md §4.3,
    // MAY), the 402 still carries L402, x402 and BitRequests, and MPP in
    // server order (WWW-Authenticate stays authoritative).
    for accept in ["tempo/charge", "lightning/*;q=0, evm/*;q=0", "*/session"] {
        let r = send_accepting(&app, "/dear", &[accept]).await;
        r.has_other_rails();
        assert_eq!(
            r.schemes(),
            ["LSAT", "L402", "Payment", "Payment"],
            "{accept}"
        );
        assert_eq!(r.methods(), ["lightning", "evm"], "{accept}");
    }
}

/// Sends `headers` (name, value) to `path`.
async fn send_fields(app: &Router, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(path).header(header::HOST, REALM);
    for (name, value) in fields {
        b = b.header(*name, *value);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test]
async fn payment_authorization_opt_in_binds_header_and_reads_only_that_field() {
    let e = env_with(true, |c| {
        c.credential_header(CredentialHeader::PaymentAuthorization)
    });
    let app = app(&e.paywall);
    let r = send(&app, "/cheap", &[]).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.methods(), ["lightning", "evm"]);
    let keys = ChallengeKeys::new(ChallengeKey::new(&SECRET).unwrap());
    for c in r.payment() {
        assert_eq!(c.header.as_deref(), Some("Payment-Authorization"));
        assert_eq!(c.credential_header(), "Payment-Authorization");
        // Bound as the eighth slot: the id verifies with it, not without.
        assert_eq!(keys.verify(&c), Some(0));
        let mut stripped = c.clone();
        stripped.header = None;
        assert_eq!(keys.verify(&stripped), None, "{}", c.method);
    }
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("Payment-Authorization: Payment")
    );
    let ch = r.lightning();
    let auth = pay(&e.payer, &ch).await;

    // In `Authorization` it is refused, with fresh challenges, and nothing
    // is consumed: the same credential then pays in the right field.
    let wrong = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(wrong.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(wrong.problem().0, "invalid-challenge", "{:?}", wrong.json());
    assert_eq!(wrong.json()["challengeId"], &*ch.id);
    assert_eq!(wrong.methods(), ["lightning", "evm"]);

    // `Authorization` stays free for the application (a Bearer token).
    let ok = send_fields(
        &app,
        "/cheap",
        &[
            ("authorization", "Bearer app-token"),
            ("payment-authorization", &auth),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    assert_eq!(ok.json()["rail"], "mpp");
    let receipt = Receipt::decode(&ok.header("payment-receipt")).unwrap();
    assert_eq!(receipt.challenge_id.as_deref(), Some(&*ch.id));
    let vary = ok.header("vary");
    assert!(vary.contains("Payment-Authorization"), "{vary}");
    assert_eq!(e.merchant.balance(), Msat(10_000));

    // Replayed in the right field: 403 and no challenge.
    let again = send_fields(&app, "/cheap", &[("payment-authorization", &auth)]).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.www().is_empty());
    // In both fields at once: 400, nothing spent.
    let both = send_fields(
        &app,
        "/cheap",
        &[("authorization", &auth), ("payment-authorization", &auth)],
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert_eq!(e.merchant.balance(), Msat(10_000));
}

#[tokio::test]
async fn without_the_opt_in_a_credential_in_payment_authorization_is_refused() {
    let e = env();
    let app = app(&e.paywall);
    let r = send(&app, "/cheap", &[]).await;
    let ch = r.lightning();
    assert!(ch.header.is_none());
    let auth = pay(&e.payer, &ch).await;
    let wrong = send_fields(&app, "/cheap", &[("payment-authorization", &auth)]).await;
    assert_eq!(wrong.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(wrong.problem().0, "invalid-challenge", "{:?}", wrong.json());
    let ok = send(&app, "/cheap", &[&auth]).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    assert_eq!(e.merchant.balance(), Msat(10_000));
}
