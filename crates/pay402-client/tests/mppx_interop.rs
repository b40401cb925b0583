//! MPP interop with mppx 0.11.0 (npm, the reference SDK), driven by the
//! project's own `peers/mppx/mppx.mjs` (see `pay402_testkit::mppx`):
//!
//! - pay402's `Payer` pays mppx's server (its built-in `evm`/`charge`, real
//!   USDC on anvil): the payee's balance rises by the price exactly once;
//! - mppx's core parses a pay402 402 carrying L402, MPP `Payment` and x402
//!   `PAYMENT-REQUIRED` at once, and pay402's receipts and credentials;
//! - pay402 parses what mppx's server emits (its challenge and receipt);
//! - Aperture's vector file (pay402-core's fixture) fed to mppx.

use std::sync::Arc;

use alloy::primitives::U256;
use pay402_client::journal::{EntryState, Journal, Query};
use pay402_client::mpp::{MppClient, MppToken};
use pay402_client::x402::LocalSigner;
use pay402_client::{Payer, RailReceipt};
use pay402_core::mpp::methods::lightning;
use pay402_core::mpp::{ChallengeKey, ChallengeKeys, ChallengeList, Receipt};
use pay402_core::offer::{Rail, read_offers};
use pay402_core::x402::HeaderValue as _;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_DECIMALS, USDC_NAME, USDC_VERSION};
use pay402_testkit::mppx::{self, MppxServer, MppxServerConfig, ParseInput};
use serde_json::Value;

const PRICE: u64 = 10_000;

/// The derived end-to-end Lightning vector of the protocol reference
/// (mpp.md §12.5): a real regtest invoice.
const VECTOR_INVOICE: &str = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("peer thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_pays_an_mppx_server_through_evm_charge_once() {
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer_key = DEV_ACCOUNTS[1];
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer_key.address, U256::from(1_000_000u64))
        .expect("mint");
    let config = MppxServerConfig::new(chain.rpc_url(), usdc.address, payee, u128::from(PRICE));
    let server = blocking(move || MppxServer::start(&config))
        .expect("mppx server must start (node + npm needed)");
    let before = usdc.balance_of(payee).unwrap();
    let payer_before = usdc.balance_of(payer_key.address).unwrap();

    let signer = LocalSigner::from_bytes(&payer_key.private_key.0).unwrap();
    let token = MppToken::new(
        pay402_testkit::anvil::CHAIN_ID,
        EvmAddress(usdc.address),
        USDC_DECIMALS,
        USDC_NAME,
        USDC_VERSION,
    )
    .max(TokenAmount::from_u64(50_000));
    let payer = Payer::builder()
        .mpp(MppClient::builder().evm(Arc::new(signer), token))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();

    let paid = payer
        .get(server.url())
        .await
        .unwrap_or_else(|e| panic!("paying mppx failed: {e}\nmppx log:\n{}", server.log()));
    assert_eq!(paid.status(), 200, "mppx log:\n{}", server.log());
    let receipt = paid.receipt.clone().expect("receipt");
    assert_eq!(receipt.rail, Rail::Mpp);
    let Some(RailReceipt::Mpp(mpp)) = &receipt.rail_receipt else {
        panic!("no MPP receipt");
    };
    assert_eq!(mpp.kind, "evm/charge");
    let server_receipt = mpp
        .receipt
        .as_ref()
        .expect("mppx's Payment-Receipt parsed by pay402");
    assert_eq!(server_receipt.method, "evm");
    assert_eq!(server_receipt.status, "success");
    assert!(server_receipt.reference.starts_with("0x"));
    assert_eq!(paid.text().await.unwrap(), "paid through mppx");

    // Exactly once, the exact price.
    let after = usdc.balance_of(payee).unwrap();
    assert_eq!(after - before, U256::from(PRICE));
    assert_eq!(
        payer_before - usdc.balance_of(payer_key.address).unwrap(),
        U256::from(PRICE)
    );
    assert_eq!(
        server.log().matches("PAY402_MPPX_SETTLED").count(),
        1,
        "{}",
        server.log()
    );
    let entries = payer.journal().payments(&Query::default()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, EntryState::Served);
    assert_eq!(entries[0].rail, Rail::Mpp);
}

/// A 402 carrying L402, MPP `Payment` (Lightning, from the derived vector)
/// and x402 `PAYMENT-REQUIRED`, all built with pay402-core.
fn multi_rail_402() -> (Vec<String>, String, ChallengeKeys) {
    let keys =
        ChallengeKeys::new(ChallengeKey::new(b"pay402-mpp-derived-vector-secret-0001").unwrap());
    let now = pay402_core::time::UnixTime(1_767_225_600);
    let mut offer = lightning::ChargeOffer::new("api.example.com", VECTOR_INVOICE);
    offer.description = Some("a report, \"quoted\"");
    let mpp = lightning::issue_charge(&keys, &offer, now)
        .unwrap()
        .to_header_value()
        .unwrap();
    let l402 = pay402_core::l402::Challenge::new("AgEDbG5kAAAA", VECTOR_INVOICE)
        .to_header_value(pay402_core::l402::Scheme::L402);
    let accepts = pay402_core::x402::PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        amount: TokenAmount::from_u64(PRICE),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        max_timeout_seconds: 60,
        extra: Some(pay402_core::x402::Extra::eip712("USDC", "2")),
    };
    let required = pay402_core::x402::PaymentRequired::new(
        pay402_core::x402::ResourceInfo::new("https://api.example.com/report"),
        vec![accepts],
    );
    (vec![l402, mpp], required.encode_header(), keys)
}

#[test]
fn mppx_parses_a_pay402_multi_rail_402_and_pay402_receipts() {
    let (www, payment_required, _) = multi_rail_402();
    let receipt = Receipt::lightning(
        &pay402_core::lightning::PaymentHash([2; 32]),
        "cid",
        pay402_core::time::UnixTime(1_767_225_660),
    )
    .encode();
    let out = mppx::parse(&ParseInput {
        www_authenticate: www.clone(),
        payment_required: Some(payment_required.clone()),
        receipts: vec![receipt],
        secret: Some("pay402-mpp-derived-vector-secret-0001".into()),
        ..Default::default()
    })
    .expect("mppx must run (node + npm needed)");
    // mppx finds the one Payment challenge beside L402, verifies its HMAC,
    // and serializes it back with every parameter unchanged (mppx emits
    // `description` before `expires`; the order is free).
    let list = out["challenges"]["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["verified"], true);
    let theirs = list[0]["serialized"].as_str().unwrap();
    assert_eq!(
        ChallengeList::parse([theirs.as_bytes()]).challenges(),
        ChallengeList::parse([www[1].as_bytes()]).challenges()
    );
    assert_eq!(list[0]["challenge"]["method"], "lightning");
    assert_eq!(list[0]["challenge"]["description"], "a report, \"quoted\"");
    assert_eq!(list[0]["challenge"]["request"]["amount"], "100");
    // mppx's x402 decoder reads pay402's PAYMENT-REQUIRED.
    let pr = &out["paymentRequired"]["value"];
    assert_eq!(pr["x402Version"], 2, "{out}");
    assert_eq!(pr["accepts"][0]["amount"], PRICE.to_string());
    // And pay402's receipt.
    let r = &out["receipts"][0]["value"];
    assert_eq!(r["method"], "lightning", "{out}");
    assert_eq!(r["challengeId"], "cid");

    // pay402 itself reads all three rails from the same 402.
    let mut headers = http::HeaderMap::new();
    for v in &www {
        headers.append("www-authenticate", v.parse().unwrap());
    }
    headers.insert("payment-required", payment_required.parse().unwrap());
    let set = read_offers(&headers, b"");
    let rails: Vec<Rail> = set.offers.iter().map(|o| o.rail).collect();
    assert_eq!(rails, vec![Rail::L402, Rail::Mpp, Rail::X402], "{set:?}");
}

#[test]
fn pay402_parses_what_mppx_emits() {
    // mppx serializes a challenge it read, and pay402 parses the result to
    // the same parameters (the HMAC still verifies).
    let (www, _, keys) = multi_rail_402();
    let out = mppx::parse(&ParseInput {
        www_authenticate: vec![www[1].clone()],
        receipts: vec![
            // mppx's own serialization vectors (mpp.md §12.4, §12.5).
            "eyJtZXRob2QiOiJ0ZW1wbyIsInJlZmVyZW5jZSI6IjB4MTIzNCIsInN0YXR1cyI6InN1Y2Nlc3MiLCJ0aW1lc3RhbXAiOiIyMDI1LTAxLTIxVDEyOjAwOjAwLjAwMFoifQ".into(),
        ],
        ..Default::default()
    })
    .expect("mppx must run");
    let emitted = out["challenges"]["value"][0]["serialized"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let list = ChallengeList::parse([emitted.as_bytes()]);
    let c = &list.challenges()[0];
    assert_eq!(keys.verify(c), Some(0));
    assert_eq!(c.method, "lightning");
    let r = Receipt::decode(
        "eyJtZXRob2QiOiJ0ZW1wbyIsInJlZmVyZW5jZSI6IjB4MTIzNCIsInN0YXR1cyI6InN1Y2Nlc3MiLCJ0aW1lc3RhbXAiOiIyMDI1LTAxLTIxVDEyOjAwOjAwLjAwMFoifQ",
    )
    .unwrap();
    assert_eq!(
        out["receipts"][0]["value"]["reference"].as_str(),
        Some(r.reference.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay402_parses_a_live_mppx_challenge_and_receipt() {
    let chain = Anvil::start().expect("anvil must start");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payee = DEV_ACCOUNTS[3].address;
    let config = MppxServerConfig::new(chain.rpc_url(), usdc.address, payee, u128::from(PRICE));
    let server = blocking(move || MppxServer::start(&config)).expect("mppx server must start");
    let response = reqwest::get(server.url()).await.unwrap();
    assert_eq!(response.status(), 402);
    let set = read_offers(response.headers(), b"");
    assert_eq!(set.offers.len(), 1, "{set:?}");
    let offer = &set.offers[0];
    assert_eq!(offer.rail, Rail::Mpp);
    assert_eq!(offer.network.as_deref(), Some("eip155:31337"));
    assert_eq!(offer.amount.value(), U256::from(PRICE));
    assert_eq!(offer.pay_to.as_deref(), Some(payee.to_string().as_str()));
}

#[test]
fn aperture_vectors_fed_to_mppx() {
    let path = pay402_testkit::workspace_root()
        .join("crates/pay402-core/tests/fixtures/mpp_aperture_vectors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let headers: Vec<String> = v["challengeHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["header"].as_str().unwrap().to_owned())
        .collect();
    let receipts: Vec<String> = v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["header"].as_str().map(str::to_owned))
        .collect();
    let credentials: Vec<(String, bool)> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["header"].as_str().unwrap().to_owned(),
                !c["error"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert!(!headers.is_empty() && !receipts.is_empty() && !credentials.is_empty());
    for h in &headers {
        let out = mppx::parse(&ParseInput {
            www_authenticate: vec![h.clone()],
            ..Default::default()
        })
        .unwrap();
        let theirs = &out["challenges"]["value"][0]["challenge"];
        let ours = ChallengeList::parse([h.as_bytes()]);
        let ours = &ours.challenges()[0];
        assert_eq!(theirs["id"].as_str(), Some(ours.id.as_ref()), "{h}\n{out}");
        assert_eq!(theirs["realm"].as_str(), Some(ours.realm.as_ref()), "{h}");
        assert_eq!(theirs["method"].as_str(), Some(ours.method.as_ref()));
        assert_eq!(theirs["intent"].as_str(), Some(ours.intent.as_ref()));
        assert_eq!(
            theirs["description"].as_str(),
            ours.description.as_deref(),
            "{h}"
        );
    }
    let out = mppx::parse(&ParseInput {
        receipts: receipts.clone(),
        credentials: credentials.iter().map(|(c, _)| c.clone()).collect(),
        ..Default::default()
    })
    .unwrap();
    for (i, r) in receipts.iter().enumerate() {
        let theirs = out["receipts"][i].get("value").is_some();
        let ours = Receipt::decode(r).is_ok();
        assert_eq!(theirs, ours, "receipt {r}: {}", out["receipts"][i]);
    }
    for (i, (c, valid)) in credentials.iter().enumerate() {
        let theirs = out["credentials"][i].get("value").is_some();
        assert_eq!(
            theirs, *valid,
            "mppx on credential {c}: {}",
            out["credentials"][i]
        );
    }
}

/// Control: the script's client mode (`mppx::pay`, for "mppx's client pays
/// a pay402 server") pays mppx's own server, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_mppx_client_pays_the_mppx_server() {
    let chain = Anvil::start().expect("anvil must start");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let payer_key = DEV_ACCOUNTS[1];
    let payee = DEV_ACCOUNTS[2].address;
    usdc.mint(payer_key.address, U256::from(1_000_000u64))
        .expect("mint");
    let config = MppxServerConfig::new(chain.rpc_url(), usdc.address, payee, u128::from(PRICE));
    let server = blocking(move || MppxServer::start(&config)).expect("mppx server must start");
    let before = usdc.balance_of(payee).unwrap();
    let mut payment = mppx::MppxPayment::new(server.url(), payer_key.private_key);
    payment.currency = Some(usdc.address);
    payment.max_atomic = Some(u128::from(PRICE));
    let out = blocking(move || mppx::pay(&payment)).expect("mppx client must run");
    assert_eq!(out["status"], 200, "{out}\n{}", server.log());
    assert_eq!(out["receipt"]["method"], "evm", "{out}");
    assert_eq!(usdc.balance_of(payee).unwrap() - before, U256::from(PRICE));
}
