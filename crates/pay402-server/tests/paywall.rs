//! `Paywall`: one 402 with every enabled rail's challenge, each parsed by
//! that rail's own parser in core; dispatch by proof; mixed proofs refused;
//! exact price conversion; a one-rail paywall answering as that rail's
//! layer does.
//!
//! L402 pays over simnet (real BOLT11 invoices and preimages), BitRequests
//! by bit-transfer on the merchant's ledger (no chain needed; the chain
//! backend is a real RPC client pointed at a closed port). x402 payments
//! that settle run on anvil with real USDC in `anvil_paywall.rs`; here the
//! x402 rail's facilitator is a fault-injecting double that the tests check
//! is never reached (nothing in this file settles).
#![cfg(all(feature = "x402", feature = "bitreq"))]

mod common;
mod x402_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_core::bitreq::{BitTransfer, PaymentInfo};
use pay402_core::l402::{ChallengeSet, Credential, Scheme, check_challenge};
use pay402_core::lightning::{InvoiceIssuer, LightningPayer, Network, PayRequest};
use pay402_core::money::{Msat, Sat};
use pay402_core::rates::{Amount, FixedRates, TokenUnit};
use pay402_core::time::UnixTime;
use pay402_core::x402::{HeaderValue as _, PaymentRequired, PaymentRequiredV1, TokenAmount};
use pay402_server::bitreq::store::MemoryBitreqStore;
use pay402_server::bitreq::{
    BitreqConfig, BitreqPayment, BitreqServer, ChannelConfig, MerchantKey, OnChainConfig,
    TransferConfig,
};
use pay402_server::limit::RateLimit;
use pay402_server::paywall::{Charge, Paid, Paywall, PaywallPrice, RailPrices, Receipt, X402Asset};
use pay402_server::store::MemoryStore;
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Route, exact_offer};
use pay402_server::{L402Config, L402Layer, PaidToken, Price};
use serde_json::{Value, json};
use tower::ServiceExt;
use x402_support::{FaultInjectingFacilitator, Payer, pay_v2};

const NETWORK: &str = "eip155:31337";
const USDC: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const PAY_TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// 1 BTC = 100 000 USD: 1 sat = 0.1 US cent = 1 000 USDC base units.
const CENTS_PER_BTC: u64 = 10_000_000;
const ADMIN_SEED: [u8; 32] = [7; 32];
const CHANNEL_KEY: [u8; 32] = [9; 32];

fn usdc() -> X402Asset {
    X402Asset::usdc(NETWORK, USDC.parse().unwrap())
}

fn usdc_unit() -> TokenUnit {
    usdc().unit()
}

fn rates() -> Arc<FixedRates> {
    Arc::new(
        FixedRates::new()
            .usd_cents_per_btc(CENTS_PER_BTC)
            .usd_stablecoin(usdc_unit()),
    )
}

fn xpub() -> Xpub {
    let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &ADMIN_SEED).unwrap();
    Xpub::from_priv(&Secp256k1::new(), &xprv)
}

/// A real RPC client whose node is down (nothing listens on port 9).
fn dead_chain() -> Arc<BitcoindRpc> {
    Arc::new(
        BitcoindRpc::new(BitcoindConfig {
            url: "http://127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            password: "p".into(),
            timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

fn bitreq_server() -> BitreqServer {
    let config = BitreqConfig::new(bitcoin::Network::Regtest)
        .public_url("http://shop.test")
        .onchain(OnChainConfig::derived(xpub()))
        .transfer(TransferConfig::new("shop"))
        .channel(ChannelConfig::new(
            MerchantKey::from_slice(&CHANNEL_KEY).unwrap(),
        ));
    BitreqServer::new(config, dead_chain(), Arc::new(MemoryBitreqStore::new())).unwrap()
}

fn x402_layer(facilitator: &Arc<FaultInjectingFacilitator>) -> X402Layer {
    X402Layer::new(
        X402Config::new(),
        facilitator.clone(),
        Arc::new(MemoryPaymentStore::new()),
    )
}

/// Which rails a test paywall has.
#[derive(Clone, Copy)]
struct Rails {
    l402: bool,
    x402: bool,
    bitreq: bool,
}

const ALL: Rails = Rails {
    l402: true,
    x402: true,
    bitreq: true,
};

struct Env {
    merchant: SimNode,
    payer: SimNode,
    facilitator: Arc<FaultInjectingFacilitator>,
    bitreq: BitreqServer,
    paywall: Paywall,
}

fn env_with(rails: Rails, l402: L402Config, node: Option<Arc<dyn InvoiceIssuer>>) -> Env {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let bitreq = bitreq_server();
    let mut b = Paywall::builder().rates(rates());
    if rails.l402 {
        let node = node.unwrap_or_else(|| Arc::new(merchant.clone()));
        b = b.l402_layer(L402Layer::new(l402, node, Arc::new(MemoryStore::new())));
    }
    if rails.x402 {
        b = b.x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), usdc());
    }
    if rails.bitreq {
        b = b.bitreq(bitreq.clone());
    }
    Env {
        merchant,
        payer,
        facilitator,
        bitreq,
        paywall: b.build().unwrap(),
    }
}

fn env(rails: Rails) -> Env {
    env_with(rails, L402Config::new("api"), None)
}

/// The handler's view of what paid, as JSON.
async fn show(paid: Paid) -> axum::Json<Value> {
    axum::Json(json!({
        "rail": paid.rail.as_str(),
        "amount": paid.amount.to_string(),
        "payer": paid.payer,
        "receipt": paid.receipt.to_string(),
        "kind": paid.receipt.kind(),
    }))
}

fn app(paywall: &Paywall, price: PaywallPrice) -> Router {
    Router::new().route("/paid", get(show).route_layer(paywall.price(price)))
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
    fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn challenges(&self) -> Vec<&[u8]> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    }
    /// The L402 challenge's invoice amount (checked by core).
    fn l402_amount(&self) -> Msat {
        let set = ChallengeSet::parse(self.challenges()).unwrap();
        let now = UnixTime::from_system(SystemTime::now());
        check_challenge(set.l402().unwrap(), Network::Regtest, now, Msat(u64::MAX))
            .unwrap()
            .invoice
            .amount
    }
    fn payment_required(&self) -> PaymentRequired {
        PaymentRequired::decode_header(&self.header("payment-required")).unwrap()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, "shop.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

/// Pays the L402 challenge of `reply` from `payer`: the Authorization value.
async fn pay_l402(payer: &SimNode, reply: &Reply) -> String {
    let set = ChallengeSet::parse(reply.challenges()).unwrap();
    let ch = set.l402().unwrap();
    let paid = payer
        .pay_invoice(&PayRequest::new(ch.invoice(), Msat(10_000)))
        .await
        .unwrap();
    Credential::new(ch.macaroon(), paid.preimage).to_header_value()
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key(&Secp256k1::new())
}

/// A signed bit-transfer of `amount` from `payer` to the shop: the
/// `Bitcoin-Transfer` and `Authorization` values.
fn transfer(payer: &str, k: &SecretKey, amount: u64) -> (String, String) {
    let t = BitTransfer {
        payer: payer.into(),
        payer_pubkey: pk(k),
        payee_address: String::new(),
        payee_username: "shop".into(),
        amount: Sat(amount),
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64(),
        description: "http://shop.test/paid".into(),
    };
    let s = t.sign(k).unwrap();
    (s.transfer, s.authorization)
}

async fn funded_account(server: &BitreqServer, user: &str, k: &SecretKey, amount: u64) {
    assert!(server.open_account(user, &pk(k)).await.unwrap());
    server.credit(user, Sat(amount), "deposit").await.unwrap();
}

// ---------------------------------------------------------------------------
// The one 402
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_402_carries_every_rails_challenge_each_parsed_by_its_rail() {
    let e = env_with(ALL, L402Config::new("api").emit_lsat(true), None);
    let app = app(&e.paywall, PaywallPrice::sats(5_000));
    let r = send(&app, req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);

    // L402 (and LSAT first, as Aperture sends them), for 5 000 sat (on-chain
    // BitRequests needs a price above the dust floor).
    let set = ChallengeSet::parse(r.challenges()).unwrap();
    let schemes: Vec<Scheme> = set.all().iter().map(|c| c.scheme()).collect();
    assert_eq!(schemes, [Scheme::Lsat, Scheme::L402]);
    assert_eq!(r.l402_amount(), Msat(5_000_000));

    // x402 v2: PAYMENT-REQUIRED, 5 000 sat = 5 USD = 5 000 000 USDC base units.
    let required = r.payment_required();
    assert_eq!(required.x402_version, 2);
    assert_eq!(required.accepts.len(), 1);
    let offer = &required.accepts[0];
    assert_eq!(
        (offer.network.as_str(), offer.amount),
        (NETWORK, TokenAmount::from_u64(5_000_000))
    );
    assert_eq!(offer.pay_to, PAY_TO);
    assert_eq!(required.resource.url, "http://shop.test/paid");

    // x402 v1: the body is the v1 offer, and a problem+json.
    let v1: PaymentRequiredV1 = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v1.x402_version, 1);
    assert_eq!(
        v1.accepts[0].max_amount_required,
        TokenAmount::from_u64(5_000_000)
    );
    let body = r.json();
    assert_eq!(
        (body["status"].as_u64(), r.reason().as_str()),
        (Some(402), "payment_required")
    );
    let detail = body["detail"].as_str().unwrap();
    for rail in ["l402:", "x402:", "bitreq:"] {
        assert!(detail.contains(rail), "{detail}");
    }
    assert_eq!(r.header("content-type"), "application/problem+json");

    // BitRequests: the two1 headers, every method.
    let info = PaymentInfo::from_header_map(&r.headers).unwrap();
    assert_eq!(info.price, Sat(5_000));
    assert_eq!(info.username.as_deref(), Some("shop"));
    assert_eq!(
        info.channel_server.as_deref(),
        Some("http://shop.test/payment")
    );
    assert!(info.address(bitcoin::Network::Regtest).unwrap().is_some());

    // Never cached; varies on every rail's credentials; every challenge
    // header readable by browsers.
    assert_eq!(r.header("cache-control"), "no-store");
    let vary = r.header("vary");
    for h in [
        "Authorization",
        "PAYMENT-SIGNATURE",
        "X-PAYMENT",
        "Bitcoin-Transaction",
        "Bitcoin-Transfer",
        "Bitcoin-Payment-Channel-Token",
    ] {
        assert_eq!(vary.matches(h).count(), 1, "{h} once in Vary: {vary}");
    }
    let expose = r.header("access-control-expose-headers");
    for h in [
        "WWW-Authenticate",
        "PAYMENT-REQUIRED",
        "Price",
        "Bitcoin-Address",
        "Username",
        "Bitcoin-Payment-Channel-Server",
    ] {
        assert!(expose.contains(h), "{h} in {expose}");
    }
    assert_eq!(
        e.facilitator.settle_count() + e.facilitator.verify_count(),
        0
    );
}

#[tokio::test]
async fn a_rail_that_cannot_challenge_is_left_out_and_the_others_still_offered() {
    let e = env_with(
        ALL,
        L402Config::new("api"),
        Some(Arc::new(common::DownNode)),
    );
    let r = send(&app(&e.paywall, PaywallPrice::sats(100)), req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert!(
        r.challenges().is_empty(),
        "no L402 challenge without a node"
    );
    assert_eq!(
        r.payment_required().accepts[0].amount,
        TokenAmount::from_u64(100_000)
    );
    assert_eq!(
        PaymentInfo::from_header_map(&r.headers).unwrap().price,
        Sat(100)
    );
    // With L402 alone, its own answer: 503 with the node's reason.
    let only = env_with(
        Rails {
            l402: true,
            x402: false,
            bitreq: false,
        },
        L402Config::new("api"),
        Some(Arc::new(common::DownNode)),
    );
    let r = send(
        &app(&only.paywall, PaywallPrice::sats(100)),
        req("/paid", &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.reason(), "node_unreachable");
}

#[tokio::test]
async fn a_rails_challenge_rate_limit_leaves_only_that_rail_out() {
    let cfg = L402Config::new("api").challenge_rate_limit(RateLimit::per_minute(1));
    let e = env_with(ALL, cfg.clone(), None);
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let from = |addr: &str| {
        let mut r = req("/paid", &[]);
        let addr: SocketAddr = addr.parse().unwrap();
        r.extensions_mut().insert(ConnectInfo(addr));
        r
    };
    let first = send(&app, from("192.0.2.1:1000")).await;
    assert_eq!(first.challenges().len(), 1);
    let second = send(&app, from("192.0.2.1:1001")).await;
    assert_eq!(second.status, StatusCode::PAYMENT_REQUIRED);
    assert!(second.challenges().is_empty(), "no invoice over the limit");
    assert!(!second.header("payment-required").is_empty());
    assert!(!second.header("price").is_empty());
    // Another client has its own allowance.
    assert_eq!(
        send(&app, from("192.0.2.2:1000")).await.challenges().len(),
        1
    );
    // With L402 alone, the limit's own answer.
    let only = env_with(
        Rails {
            l402: true,
            x402: false,
            bitreq: false,
        },
        cfg,
        None,
    );
    let app = self::app(&only.paywall, PaywallPrice::sats(100));
    send(&app, from("192.0.2.1:1000")).await;
    let r = send(&app, from("192.0.2.1:1001")).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
}

// ---------------------------------------------------------------------------
// Paying
// ---------------------------------------------------------------------------

#[tokio::test]
async fn l402_pays_once_and_the_token_keeps_serving() {
    let e = env(ALL);
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let r = send(&app, req("/paid", &[])).await;
    let auth = pay_l402(&e.payer, &r).await;
    assert_eq!(
        e.merchant.balance(),
        Msat(100_000),
        "paid exactly the price"
    );
    for use_ in ["first use (full path)", "cached key (fast path)"] {
        let ok = send(&app, req("/paid", &[("authorization", &auth)])).await;
        assert_eq!(ok.status, StatusCode::OK, "{use_}");
        let paid = ok.json();
        assert_eq!(paid["rail"], "l402", "{use_}");
        assert_eq!(paid["amount"], "100000 msat", "{use_}");
        assert_eq!(paid["kind"], "l402_token", "{use_}");
        assert_eq!(paid["payer"], Value::Null);
        assert_eq!(ok.header("cache-control"), "private, no-store");
        assert_eq!(
            ok.header("vary"),
            "Authorization, PAYMENT-SIGNATURE, X-PAYMENT, Bitcoin-Transaction, Bitcoin-Transfer, Bitcoin-Payment-Channel-Token",
            "{use_}"
        );
    }
    assert_eq!(e.merchant.payments_received(), 1, "paid once in all");
    // The rail's own extractor works behind the paywall too.
    let token_app = Router::new().route(
        "/paid",
        get(|PaidToken(t): PaidToken| async move { t.token_id.to_string() })
            .route_layer(e.paywall.price(PaywallPrice::sats(100))),
    );
    let r = send(&token_app, req("/paid", &[("authorization", &auth)])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 64);
}

#[tokio::test]
async fn bitreq_transfer_pays_once() {
    let e = env(ALL);
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let alice = key(21);
    funded_account(&e.bitreq, "alice", &alice, 1_000).await;
    let (t, a) = transfer("alice", &alice, 100);
    let proof = [
        ("bitcoin-transfer", t.as_str()),
        ("authorization", a.as_str()),
    ];
    let ok = send(&app, req("/paid", &proof)).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    let paid = ok.json();
    assert_eq!(
        (paid["rail"].as_str(), paid["amount"].as_str()),
        (Some("bitreq"), Some("100 sat"))
    );
    assert_eq!(paid["kind"], "bitreq_transfer");
    assert_eq!(paid["receipt"].as_str().unwrap().len(), 64);
    let balance = |user: &'static str| {
        let s = e.bitreq.clone();
        async move { s.account(user).await.unwrap().unwrap().balance }
    };
    assert_eq!(balance("alice").await, Sat(900));
    assert_eq!(balance("shop").await, Sat(100));
    // The same transfer again: refused by BitRequests, nothing moves.
    let again = send(&app, req("/paid", &proof)).await;
    assert_eq!(
        (again.status, again.reason().as_str()),
        (StatusCode::CONFLICT, "payment_already_used")
    );
    assert_eq!(balance("alice").await, Sat(900));
    // Underpaying gets BitRequests' own refusal, with a fresh BitRequests offer.
    let (t, a) = transfer("alice", &alice, 99);
    let r = send(
        &app,
        req("/paid", &[("bitcoin-transfer", &t), ("authorization", &a)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        PaymentInfo::from_header_map(&r.headers).unwrap().price,
        Sat(100)
    );
    assert_eq!(balance("alice").await, Sat(900));
    // BitRequests' own extractor works behind the paywall.
    let (t, a) = transfer("alice", &alice, 100);
    let own = Router::new().route(
        "/paid",
        get(|p: BitreqPayment| async move { p.amount.0.to_string() })
            .route_layer(e.paywall.price(PaywallPrice::sats(100))),
    );
    let r = send(
        &own,
        req("/paid", &[("bitcoin-transfer", &t), ("authorization", &a)]),
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"100"[..]));
}

#[tokio::test]
async fn x402_payments_are_checked_by_the_x402_rail_before_anything_settles() {
    let e = env(ALL);
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let r = send(&app, req("/paid", &[])).await;
    let offer = r.payment_required().accepts[0].clone();
    // Paying less than the offer: x402's own refusal, with its offer again.
    let mut cheap = offer.clone();
    cheap.amount = TokenAmount::from_u64(99_999);
    let underpaid = pay_v2(&Payer::dev(1), &cheap, None);
    let r = send(&app, req("/paid", &[("payment-signature", &underpaid)])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "invalid_exact_evm_authorization_value");
    assert!(
        r.challenges().is_empty(),
        "x402's own answer, not every rail's"
    );
    assert_eq!(r.payment_required().accepts[0], offer);
    // Malformed: 400 from x402, never a 5xx.
    let r = send(&app, req("/paid", &[("payment-signature", "!!")])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.facilitator.settle_count() + e.facilitator.verify_count(),
        0
    );
}

// ---------------------------------------------------------------------------
// Mixed proofs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn proofs_of_two_rails_are_refused_and_nothing_is_spent() {
    let e = env(ALL);
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let r = send(&app, req("/paid", &[])).await;
    let auth = pay_l402(&e.payer, &r).await;
    let x402 = pay_v2(&Payer::dev(1), &r.payment_required().accepts[0], None);
    let alice = key(21);
    funded_account(&e.bitreq, "alice", &alice, 1_000).await;
    let (t, a) = transfer("alice", &alice, 100);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 4] = [
        (
            "L402 + x402",
            vec![("authorization", &auth), ("payment-signature", &x402)],
            "l402, x402",
        ),
        (
            "L402 + BitRequests",
            vec![("authorization", &auth), ("bitcoin-transfer", &t)],
            "l402, bitreq",
        ),
        (
            "x402 v1 + BitRequests",
            vec![
                ("x-payment", &x402),
                ("bitcoin-transfer", &t),
                ("authorization", &a),
            ],
            "x402, bitreq",
        ),
        (
            "all three",
            vec![
                ("authorization", &auth),
                ("payment-signature", &x402),
                ("bitcoin-transaction", "00"),
            ],
            "l402, x402, bitreq",
        ),
    ];
    for (what, headers, rails) in &cases {
        let r = send(&app, req("/paid", headers)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(r.reason(), "multiple_payment_proofs", "{what}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(rails),
            "{what}"
        );
        assert_eq!(r.header("cache-control"), "no-store", "{what}");
        assert!(r.header("vary").contains("Bitcoin-Transfer"), "{what}");
    }
    // Nothing was spent: the facilitator never heard of the payment, the
    // ledger did not move, and each proof alone still pays.
    assert_eq!(
        e.facilitator.settle_count() + e.facilitator.verify_count(),
        0
    );
    assert_eq!(
        e.bitreq.account("alice").await.unwrap().unwrap().balance,
        Sat(1_000)
    );
    let ok = send(&app, req("/paid", &[("authorization", &auth)])).await;
    assert_eq!(ok.json()["rail"], "l402");
    let ok = send(
        &app,
        req("/paid", &[("bitcoin-transfer", &t), ("authorization", &a)]),
    )
    .await;
    assert_eq!(ok.json()["rail"], "bitreq");
    // Another Authorization scheme beside an x402 payment is not a second
    // proof (it reaches x402, whose double then settles it).
    let fresh = pay_v2(&Payer::dev(2), &r.payment_required().accepts[0], None);
    let r = send(
        &app,
        req(
            "/paid",
            &[
                ("authorization", "Bearer abc"),
                ("payment-signature", &fresh),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["rail"], "x402");
}

#[tokio::test]
async fn a_proof_for_a_rail_that_is_not_enabled_is_ignored() {
    let e = env(Rails {
        l402: true,
        x402: false,
        bitreq: false,
    });
    let app = app(&e.paywall, PaywallPrice::sats(100));
    let r = send(&app, req("/paid", &[])).await;
    let auth = pay_l402(&e.payer, &r).await;
    let r = send(
        &app,
        req(
            "/paid",
            &[("authorization", &auth), ("payment-signature", "anything")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["rail"], "l402");
}

// ---------------------------------------------------------------------------
// Prices
// ---------------------------------------------------------------------------

/// The 402's amount on each rail for `price` (under [`rates`]).
async fn quoted(price: PaywallPrice) -> (Option<Msat>, Option<TokenAmount>, Option<Sat>) {
    let e = env(ALL);
    let r = send(&app(&e.paywall, price), req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.json());
    let l402 = (!r.challenges().is_empty()).then(|| r.l402_amount());
    let x402 = r
        .headers
        .contains_key("payment-required")
        .then(|| r.payment_required().accepts[0].amount);
    let bitreq = r
        .headers
        .contains_key("price")
        .then(|| PaymentInfo::from_header_map(&r.headers).unwrap().price);
    (l402, x402, bitreq)
}

#[tokio::test]
async fn prices_convert_exactly_and_round_up() {
    let t = TokenAmount::from_u64;
    let cases = [
        // One amount, in each unit the operator may pick.
        (
            PaywallPrice::sats(100),
            (Some(Msat(100_000)), Some(t(100_000)), Some(Sat(100))),
        ),
        (
            PaywallPrice::usd_cents(5),
            (Some(Msat(50_000)), Some(t(50_000)), Some(Sat(50))),
        ),
        (
            PaywallPrice::amount(Amount::Token(t(123_456), usdc_unit())),
            // 12.3456 cents = 123.456 sat: up to 123 456 msat, 124 sat.
            (Some(Msat(123_456)), Some(t(123_456)), Some(Sat(124))),
        ),
        (
            PaywallPrice::amount(Amount::Msat(Msat(1_500))),
            // 1.5 sat: 2 sat on BitRequests; 0.15 cents = 1 500 base units.
            (Some(Msat(1_500)), Some(t(1_500)), Some(Sat(2))),
        ),
        (
            PaywallPrice::amount(Amount::Token(t(1), usdc_unit())),
            // One millionth of a dollar: 1 msat, 1 sat, never zero.
            (Some(Msat(1)), Some(t(1)), Some(Sat(1))),
        ),
        // Per rail, given directly; a rail without a price is not offered.
        (
            PaywallPrice::per_rail(RailPrices::new().l402(Msat(21_000)).bitreq(Sat(7))),
            (Some(Msat(21_000)), None, Some(Sat(7))),
        ),
        (
            PaywallPrice::per_rail(RailPrices::new().x402(t(42))),
            (None, Some(t(42)), None),
        ),
    ];
    for (price, want) in cases {
        let what = format!("{price:?}");
        assert_eq!(quoted(price).await, want, "{what}");
    }
}

#[tokio::test]
async fn rounding_up_with_an_uneven_rate() {
    // 1 BTC = 333 333.33 USD: 1 sat = 0.33333333 cents = 3 333.3333 base units.
    let unit = usdc_unit();
    let rates = Arc::new(
        FixedRates::new()
            .usd_cents_per_btc(33_333_333)
            .usd_stablecoin(unit.clone()),
    );
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let node = SimNet::new(Network::Regtest).add_node("m", Msat(0));
    let paywall = Paywall::builder()
        .l402(Arc::new(node), Arc::new(MemoryStore::new()))
        .x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), usdc())
        .bitreq(bitreq_server())
        .rates(rates)
        .build()
        .unwrap();
    let r = send(&app(&paywall, PaywallPrice::sats(1)), req("/paid", &[])).await;
    assert_eq!(
        r.payment_required().accepts[0].amount,
        TokenAmount::from_u64(3_334)
    );
    let r = send(
        &app(&paywall, PaywallPrice::usd_cents(1)),
        req("/paid", &[]),
    )
    .await;
    // 1 cent = 3.00000003 sat: 4 sat, 3 000.00003 msat: 3 001 msat.
    assert_eq!(r.l402_amount(), Msat(3_001));
    assert_eq!(
        PaymentInfo::from_header_map(&r.headers).unwrap().price,
        Sat(4)
    );
}

#[tokio::test]
async fn a_usd_stablecoin_is_worth_a_dollar_whatever_rates_are_given() {
    // Rates knowing only the bitcoin price: USDC's value comes from the asset.
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let node = SimNet::new(Network::Regtest).add_node("m", Msat(0));
    let paywall = Paywall::builder()
        .l402(Arc::new(node), Arc::new(MemoryStore::new()))
        .x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), usdc())
        .rates(Arc::new(FixedRates::new().usd_cents_per_btc(CENTS_PER_BTC)))
        .build()
        .unwrap();
    for (price, msat, usdc_units) in [
        (PaywallPrice::usd_cents(5), 50_000, 50_000),
        (PaywallPrice::sats(100), 100_000, 100_000),
        (
            PaywallPrice::amount(Amount::Token(TokenAmount::from_u64(2_500), usdc_unit())),
            2_500,
            2_500,
        ),
    ] {
        let what = format!("{price:?}");
        let r = send(&app(&paywall, price), req("/paid", &[])).await;
        assert_eq!(r.l402_amount(), Msat(msat), "{what}");
        assert_eq!(
            r.payment_required().accepts[0].amount,
            TokenAmount::from_u64(usdc_units),
            "{what}"
        );
    }
    // Another token is not a stablecoin unless declared one.
    let other = X402Asset::new(NETWORK, USDC.parse().unwrap(), 6, "USD Coin", "2");
    let paywall = Paywall::builder()
        .x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), other)
        .build()
        .unwrap();
    let r = send(
        &app(&paywall, PaywallPrice::usd_cents(5)),
        req("/paid", &[]),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "no_rate")
    );
}

#[tokio::test]
async fn an_unconvertible_price_leaves_its_rails_out_and_never_serves_free() {
    // The default rates know USDC's dollar value, not the bitcoin price.
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let node = SimNet::new(Network::Regtest).add_node("m", Msat(0));
    let paywall = Paywall::builder()
        .l402(Arc::new(node.clone()), Arc::new(MemoryStore::new()))
        .x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), usdc())
        .build()
        .unwrap();
    let r = send(
        &app(&paywall, PaywallPrice::usd_cents(5)),
        req("/paid", &[]),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert!(r.challenges().is_empty(), "no BTC price: no L402 offer");
    assert_eq!(
        r.payment_required().accepts[0].amount,
        TokenAmount::from_u64(50_000)
    );
    assert!(paywall.try_price(PaywallPrice::usd_cents(5)).is_err());
    // L402 alone: refused with the conversion's reason.
    let only = Paywall::builder()
        .l402(Arc::new(node), Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let r = send(&app(&only, PaywallPrice::usd_cents(5)), req("/paid", &[])).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "no_rate")
    );
    // A price naming only rails that are not enabled.
    let r = send(
        &app(
            &only,
            PaywallPrice::per_rail(RailPrices::new().bitreq(Sat(5))),
        ),
        req("/paid", &[]),
    )
    .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "no_rail_priced")
    );
    assert_eq!(
        only.try_price(PaywallPrice::per_rail(RailPrices::new().bitreq(Sat(5))))
            .unwrap_err()
            .to_string(),
        "the price names no enabled rail"
    );
}

#[tokio::test]
async fn dynamic_prices_see_the_request_and_none_is_free() {
    let e = env(ALL);
    let price = PaywallPrice::dynamic(|req| async move {
        let n: u64 = req.uri.query()?.strip_prefix("sats=")?.parse().ok()?;
        Some(Charge::Amount(Amount::Sat(Sat(n))))
    });
    let app = Router::new().route(
        "/q",
        get(|| async { "content" }).route_layer(e.paywall.price(price)),
    );
    let r = send(&app, req("/q?sats=7", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.l402_amount(), Msat(7_000));
    assert_eq!(
        r.payment_required().accepts[0].amount,
        TokenAmount::from_u64(7_000)
    );
    // The paid retry is priced the same way and served.
    let auth = pay_l402(&e.payer, &r).await;
    let ok = send(&app, req("/q?sats=7", &[("authorization", &auth)])).await;
    assert_eq!(ok.status, StatusCode::OK);
    // A token paid for 7 sat does not pay for 8.
    let dear = send(&app, req("/q?sats=8", &[("authorization", &auth)])).await;
    assert_eq!(dear.status, StatusCode::PAYMENT_REQUIRED);
    // No price, or zero: free on every rail.
    for q in ["/q", "/q?sats=0"] {
        let r = send(&app, req(q, &[])).await;
        assert_eq!(
            (r.status, &r.body[..]),
            (StatusCode::OK, &b"content"[..]),
            "{q}"
        );
    }
}

#[tokio::test]
async fn free_paths_of_the_l402_configuration_are_free() {
    let e = env_with(ALL, L402Config::new("api").free_path("/open"), None);
    let price = || e.paywall.price(PaywallPrice::sats(1));
    let app = Router::new()
        .route("/open", get(|| async { "open" }).route_layer(price()))
        .route("/paid", get(|| async { "paid" }).route_layer(price()));
    let r = send(&app, req("/open", &[])).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"open"[..]));
    assert_eq!(
        send(&app, req("/paid", &[])).await.status,
        StatusCode::PAYMENT_REQUIRED
    );
}

// ---------------------------------------------------------------------------
// One rail: as its own layer
// ---------------------------------------------------------------------------

/// The headers every 402 of a rail must have, and their values.
fn fixed_headers(r: &Reply) -> Vec<(String, String)> {
    [
        "content-type",
        "cache-control",
        "vary",
        "access-control-expose-headers",
    ]
    .iter()
    .map(|h| (h.to_string(), r.header(h)))
    .collect()
}

/// The same request to a rail's own layer and to the paywall.
async fn both(own: &Router, via: &Router, headers: &[(&str, &str)]) -> (Reply, Reply) {
    (
        send(own, req("/paid", headers)).await,
        send(via, req("/paid", headers)).await,
    )
}

fn header_names(r: &Reply) -> Vec<String> {
    let mut n: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
    n.sort();
    n.dedup();
    n
}

#[tokio::test]
async fn l402_alone_answers_as_l402_layer() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api").emit_lsat(true),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    );
    let own = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(layer.with_price(Price::sats(100))),
    );
    let paywall = Paywall::builder().l402_layer(layer).build().unwrap();
    let via = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(paywall.price(PaywallPrice::sats(100))),
    );
    let (a, b) = both(&own, &via, &[]).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::PAYMENT_REQUIRED, StatusCode::PAYMENT_REQUIRED)
    );
    assert_eq!(header_names(&a), header_names(&b));
    assert_eq!(fixed_headers(&a), fixed_headers(&b));
    assert_eq!(a.json(), b.json());
    assert_eq!(a.l402_amount(), b.l402_amount());
    assert_eq!(a.challenges().len(), b.challenges().len());
    // A token bought through one is good for the other (same layer, same
    // route and price), and a paid answer looks the same.
    let auth = pay_l402(&payer, &b).await;
    let (a, b) = both(&own, &via, &[("authorization", &auth)]).await;
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(fixed_headers(&a), fixed_headers(&b));
    assert_eq!(a.body, b.body);
    // A malformed credential: the same refusal.
    let bad = [("authorization", "L402 !!!:00")];
    let (a, b) = both(&own, &via, &bad).await;
    assert_eq!((a.status, a.reason()), (b.status, b.reason()));
    assert_eq!(header_names(&a), header_names(&b));
}

#[tokio::test]
async fn x402_alone_answers_as_x402_layer() {
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let layer = x402_layer(&facilitator);
    let offer = exact_offer(
        NETWORK,
        USDC,
        PAY_TO,
        TokenAmount::from_u64(50_000),
        "USD Coin",
        "2",
    );
    let own = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(
            layer.with_route(X402Route::new([offer]).unwrap().mime_type("text/plain")),
        ),
    );
    let paywall = Paywall::builder()
        .x402_layer(layer, PAY_TO.parse().unwrap(), usdc())
        .build()
        .unwrap();
    let via = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(
            paywall
                .price(PaywallPrice::usd_cents(5))
                .mime_type("text/plain"),
        ),
    );
    let (a, b) = both(&own, &via, &[]).await;
    assert_eq!(a.status, b.status);
    assert_eq!(header_names(&a), header_names(&b));
    assert_eq!(fixed_headers(&a), fixed_headers(&b));
    assert_eq!(a.header("payment-required"), b.header("payment-required"));
    assert_eq!(a.json(), b.json());
    // Refusals: a malformed header, a payment of another offer.
    let mut other = a.payment_required().accepts[0].clone();
    other.amount = TokenAmount::from_u64(1);
    let wrong = pay_v2(&Payer::dev(1), &other, None);
    for bad in ["!!", wrong.as_str()] {
        let h = [("payment-signature", bad)];
        let (a, b) = both(&own, &via, &h).await;
        assert_eq!((a.status, a.reason()), (b.status, b.reason()), "{bad}");
        assert_eq!(fixed_headers(&a), fixed_headers(&b), "{bad}");
        assert_eq!(
            a.header("payment-required"),
            b.header("payment-required"),
            "{bad}"
        );
    }
    // A good payment is served by both the same way (the double settles).
    let offer = a.payment_required().accepts[0].clone();
    let (pa, pb) = (
        pay_v2(&Payer::dev(1), &offer, None),
        pay_v2(&Payer::dev(2), &offer, None),
    );
    let (a, b) = (
        send(&own, req("/paid", &[("payment-signature", &pa)])).await,
        send(&via, req("/paid", &[("payment-signature", &pb)])).await,
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(header_names(&a), header_names(&b));
    assert_eq!(a.header("cache-control"), b.header("cache-control"));
    assert_eq!(a.header("vary"), b.header("vary"));
    assert_eq!(facilitator.settle_count(), 2);
}

#[tokio::test]
async fn bitreq_alone_answers_as_bitreq_layer() {
    let (s1, s2) = (bitreq_server(), bitreq_server());
    let own = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(s1.layer(Price::sats(100))),
    );
    let paywall = Paywall::builder().bitreq(s2.clone()).build().unwrap();
    let via = Router::new().route(
        "/paid",
        get(|| async { "content" }).route_layer(paywall.price(PaywallPrice::sats(100))),
    );
    let (a, b) = both(&own, &via, &[]).await;
    assert_eq!(a.status, b.status);
    assert_eq!(header_names(&a), header_names(&b));
    assert_eq!(fixed_headers(&a), fixed_headers(&b));
    assert_eq!(a.json(), b.json());
    // Same key, same first quote index: the very same offer.
    assert_eq!(
        PaymentInfo::from_header_map(&a.headers).unwrap(),
        PaymentInfo::from_header_map(&b.headers).unwrap()
    );
    for bad in [
        vec![("bitcoin-transaction", "zz")],
        vec![("bitcoin-transfer", "{}")],
        vec![("bitcoin-payment-channel-token", "nope")],
    ] {
        let (a, b) = both(&own, &via, &bad).await;
        assert_eq!((a.status, a.reason()), (b.status, b.reason()), "{bad:?}");
        assert!(a.status.is_client_error(), "{bad:?}: {}", a.status);
    }
    // The same transfer pays on both (separate ledgers).
    let alice = key(21);
    funded_account(&s1, "alice", &alice, 1_000).await;
    funded_account(&s2, "alice", &alice, 1_000).await;
    let (t, a) = transfer("alice", &alice, 100);
    let proof = [
        ("bitcoin-transfer", t.as_str()),
        ("authorization", a.as_str()),
    ];
    let (a, b) = both(&own, &via, &proof).await;
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(fixed_headers(&a), fixed_headers(&b));
}

// ---------------------------------------------------------------------------
// Builder and extractor
// ---------------------------------------------------------------------------

#[tokio::test]
async fn builder_refuses_no_rail_and_a_bad_asset() {
    use pay402_core::problem::Reason;
    assert_eq!(Paywall::builder().build().unwrap_err().reason(), "no_rail");
    let facilitator = Arc::new(FaultInjectingFacilitator::new(NETWORK));
    let bad = X402Asset::usdc("base", USDC.parse().unwrap());
    let e = Paywall::builder()
        .x402_layer(x402_layer(&facilitator), PAY_TO.parse().unwrap(), bad)
        .build()
        .unwrap_err();
    assert_eq!(e.reason(), "invalid_x402_asset");
}

#[tokio::test]
async fn paid_outside_a_paywall_is_402() {
    let app = Router::new().route("/x", get(show));
    let r = send(&app, req("/x", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "payment_required");
}

#[test]
fn receipts_name_their_kind() {
    let r = Receipt::X402Transaction("0xab".into());
    assert_eq!(
        (r.kind(), r.to_string().as_str()),
        ("x402_transaction", "0xab")
    );
}

/// A BitRequests price computed per request (as `pay402 proxy`'s pricer
/// gives it): each 402 offers this request's price, and each payment is
/// checked against what this request costs when it is presented. An
/// on-chain quote made before the price rose is refused before anything is
/// recorded or broadcast; one made before it fell still pays its own price.
#[tokio::test]
async fn a_dynamic_bitreq_price_binds_each_payment_to_the_requests_price() {
    use bitcoin::consensus::encode::serialize_hex;
    use bitcoin::hashes::Hash as _;
    use pay402_core::bitreq::onchain::build_payment;
    use pay402_core::bitreq::{SpendKind, SpendableUtxo};
    use std::sync::atomic::{AtomicU64, Ordering};

    let e = env(Rails {
        l402: false,
        x402: false,
        bitreq: true,
    });
    let sats = Arc::new(AtomicU64::new(5_000));
    let now = sats.clone();
    let price = PaywallPrice::dynamic(move |_req| {
        let sats = now.load(Ordering::SeqCst);
        async move { Some(Charge::PerRail(RailPrices::new().bitreq(Sat(sats)))) }
    });
    let app = app(&e.paywall, price);

    // The 402 offers this request's price, with a quote at that price.
    let offer = send(&app, req("/paid", &[])).await;
    assert_eq!(offer.status, StatusCode::PAYMENT_REQUIRED);
    let info = PaymentInfo::from_header_map(&offer.headers).unwrap();
    assert_eq!(info.price, Sat(5_000));
    let quoted = info
        .address(bitcoin::Network::Regtest)
        .unwrap()
        .unwrap()
        .script_pubkey();
    let payer = key(61);
    let utxo = SpendableUtxo {
        outpoint: bitcoin::OutPoint::new(bitcoin::Txid::from_byte_array([6; 32]), 0),
        amount: Sat(50_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let change = utxo.script_pubkey();
    let tx = build_payment(&[utxo], &quoted, Sat(5_000), &change, Sat(1_000)).unwrap();
    let tx_hex = serialize_hex(&tx);

    // The price rises before the payment: the quote no longer covers it.
    // Refused with a fresh offer at the new price; nothing recorded, so
    // nothing was taken (the transaction was not broadcast).
    sats.store(6_000, Ordering::SeqCst);
    let r = send(&app, req("/paid", &[("bitcoin-transaction", &tx_hex)])).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "quote_below_price"),
        "{:?}",
        r.json()
    );
    assert_eq!(
        PaymentInfo::from_header_map(&r.headers).unwrap().price,
        Sat(6_000)
    );
    let txid = tx.compute_txid();
    assert!(e.bitreq.store().onchain(&txid).await.unwrap().is_none());

    // The price falls instead: the quote (5 000) covers the request (4 000)
    // and the transaction pays the quote's price, so the proof passes the
    // quote checks and goes on to the chain (down here: 503, nothing
    // recorded; bcoin runs the rest in `bcoin_bitreq_server.rs`).
    sats.store(4_000, Ordering::SeqCst);
    let r = send(&app, req("/paid", &[("bitcoin-transaction", &tx_hex)])).await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "chain_unreachable")
    );
    assert!(e.bitreq.store().onchain(&txid).await.unwrap().is_none());

    // A bit-transfer carries its amount: it must be this request's price.
    sats.store(6_000, Ordering::SeqCst);
    let alice = key(62);
    funded_account(&e.bitreq, "alice", &alice, 20_000).await;
    let (t, a) = transfer("alice", &alice, 5_000);
    let stale = send(
        &app,
        req("/paid", &[("bitcoin-transfer", &t), ("authorization", &a)]),
    )
    .await;
    assert_eq!(
        (stale.status, stale.reason().as_str()),
        (StatusCode::PAYMENT_REQUIRED, "incorrect_payment_amount")
    );
    assert_eq!(
        PaymentInfo::from_header_map(&stale.headers).unwrap().price,
        Sat(6_000)
    );
    let (t, a) = transfer("alice", &alice, 6_000);
    let ok = send(
        &app,
        req("/paid", &[("bitcoin-transfer", &t), ("authorization", &a)]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json());
    assert_eq!(ok.json()["amount"], "6000 sat");
    assert_eq!(
        e.bitreq.account("alice").await.unwrap().unwrap().balance,
        Sat(14_000)
    );
}
