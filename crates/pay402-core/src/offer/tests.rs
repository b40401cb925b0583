use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use http::{HeaderMap, HeaderValue};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

use super::*;
use crate::l402::{Challenge, Identifier, Macaroon, RootKey, Scheme, TokenId};
use crate::lightning::Preimage;
use crate::money::{Msat, Sat};
use crate::x402::{Extra, HeaderValue as _, PaymentRequired, PaymentRequirements, ResourceInfo};

const USDC_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

fn invoice(hash: [u8; 32], msat: Option<u64>) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x11; 32]).unwrap();
    let b = InvoiceBuilder::new(Currency::Regtest)
        .description("a weather report".into())
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret([2; 32]))
        .duration_since_epoch(Duration::from_secs(1_700_000_000))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(3600));
    match msat {
        Some(m) => b
            .amount_milli_satoshis(m)
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
        None => b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
    }
    .unwrap()
    .to_string()
}

fn l402_challenge(msat: Option<u64>) -> Challenge<'static> {
    let preimage = Preimage::from_bytes([7; 32]);
    let id = Identifier::new(preimage.payment_hash(), TokenId([1; 32]));
    let mac = Macaroon::new(&RootKey::from_bytes([9; 32]), Some("lsat"), &id.encode());
    Challenge::new(mac.to_base64(), invoice(preimage.payment_hash().0, msat))
}

fn v2_required(n: usize) -> PaymentRequired {
    let offer = PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        amount: crate::x402::TokenAmount::from_u64(10_000),
        asset: USDC_SEPOLIA.into(),
        pay_to: PAY_TO.into(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USDC", "2")),
    };
    let mut r = PaymentRequired::new(ResourceInfo::new("https://a/b"), vec![offer; n]);
    r.resource.description = Some("premium data".into());
    r
}

const V1_BODY: &str = r#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://a/b","description":"","mimeType":"","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}]}"#;

const MOCK_BODY: &str = r#"{"reason":"payment required","access_token_endpoint":"/token","payment_scheme":{"payment_components":[{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}],"protocol_version":"Version 0.1"}}"#;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn a_paywall_402_yields_every_rail() {
    let ch = l402_challenge(Some(21_000));
    let h = headers(&[
        ("www-authenticate", &ch.to_header_value(Scheme::L402)),
        ("www-authenticate", &ch.to_header_value(Scheme::Lsat)),
        ("payment-required", &v2_required(1).encode_header()),
        ("price", "21"),
        (
            "bitcoin-address",
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        ),
        ("username", "merchant"),
    ]);
    let set = read_offers(&h, V1_BODY.as_bytes());
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let labels: Vec<String> = set.offers.iter().map(Offer::label).collect();
    assert_eq!(
        labels,
        [
            "l402",
            "lsat",
            "x402 v2 #0",
            "bitreq onchain",
            "bitreq transfer",
            "x402 v1 #0"
        ]
    );
    let l402 = &set.offers[0];
    assert_eq!(l402.amount, Amount::Msat(Msat(21_000)));
    assert_eq!(l402.network.as_deref(), Some("regtest"));
    assert_eq!(l402.expires_at, Some(UnixTime(1_700_003_600)));
    assert_eq!(l402.description.as_deref(), Some("a weather report"));
    match &l402.challenge {
        RailChallenge::L402(c) => {
            assert_eq!(c.payment_hash, Preimage::from_bytes([7; 32]).payment_hash());
            assert_eq!(c.to_challenge(), ch);
        }
        other => panic!("{other:?}"),
    }
    let x402 = &set.offers[2];
    assert_eq!(
        x402.amount,
        Amount::Token(
            crate::x402::TokenAmount::from_u64(10_000),
            TokenUnit::new("eip155:84532", USDC_SEPOLIA, 6)
        )
    );
    assert_eq!(x402.description.as_deref(), Some("premium data"));
    assert_eq!(x402.pay_to.as_deref(), Some(PAY_TO));
    assert_eq!(set.offers[3].amount, Amount::Sat(Sat(21)));
    assert_eq!(set.of_rail(Rail::X402).count(), 2);
}

#[test]
fn mock_body_and_v2_body() {
    let set = read_offers(&HeaderMap::new(), MOCK_BODY.as_bytes());
    assert_eq!(set.offers.len(), 1);
    let o = &set.offers[0];
    assert_eq!(o.rail, Rail::X402Mock);
    assert_eq!(o.amount.value(), alloy_primitives::U256::from(10_000u64));
    assert_eq!(o.network.as_deref(), Some("eip155:84532"));
    // A v2 offer repeated in the body is read once, from the header.
    let v2 = v2_required(2);
    let body = serde_json::to_vec(&v2).unwrap();
    let h = headers(&[("payment-required", &v2.encode_header())]);
    assert_eq!(read_offers(&h, &body).offers.len(), 2);
    assert_eq!(read_offers(&HeaderMap::new(), &body).offers.len(), 2);
}

#[test]
fn tokens_from_extra_and_options() {
    let mut v2 = v2_required(1);
    v2.accepts[0].network = "eip155:31337".into();
    let h = headers(&[("payment-required", &v2.encode_header())]);
    let set = read_offers(&h, b"");
    assert_eq!(set.skipped[0].error.reason(), "unknown_token");
    assert!(set.skipped[0].error.is_unknown());
    let opts = ReadOptions::default().token(TokenUnit::new("eip155:31337", USDC_SEPOLIA, 6));
    assert_eq!(read_offers_with(&h, b"", &opts).offers.len(), 1);
    v2.accepts[0]
        .extra
        .as_mut()
        .unwrap()
        .other
        .insert("decimals".into(), 18.into());
    let h = headers(&[("payment-required", &v2.encode_header())]);
    let set = read_offers(&h, b"");
    match &set.offers[0].amount {
        Amount::Token(_, unit) => assert_eq!(unit.decimals(), 18),
        other => panic!("{other:?}"),
    }
}

/// Each row: headers, body, the reasons of what is skipped (in order), and
/// how many offers are still read.
#[test]
fn bad_input_table() {
    let good = l402_challenge(Some(1_000)).to_header_value(Scheme::L402);
    let no_amount = l402_challenge(None).to_header_value(Scheme::L402);
    let mut upto = v2_required(2);
    upto.accepts[0].scheme = "upto".into();
    upto.accepts[1].network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into();
    let upto = upto.encode_header();
    let many = v2_required(MAX_OFFERS + 1);
    let many_raw = crate::b64::encode_std(&serde_json::to_vec(&many).unwrap());
    let big_body = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_BODY_BYTES));
    let tiny = MOCK_BODY.replace("0.01", "0.0000001");
    let sol = MOCK_BODY.replace("\"evm\"", "\"sol\"");
    let www = |v: &str| ("www-authenticate", v.to_owned());
    #[allow(clippy::type_complexity)]
    let rows: Vec<(Vec<(&str, String)>, &str, Vec<&str>, usize)> = vec![
        // Unknown schemes are reported, not errors.
        (
            vec![www("Bearer realm=\"x\", Payment id=\"1\"")],
            "",
            vec!["unknown_scheme", "challenge_missing_parameter"],
            0,
        ),
        // A broken L402 challenge does not hide a good one, nor other rails.
        (
            vec![
                www("L402 invoice=\"lnbc1\""),
                www(&good),
                ("price", "5".into()),
                ("username", "m".into()),
            ],
            "",
            vec!["challenge_missing_macaroon"],
            2,
        ),
        (
            vec![www("L402 macaroon=\"AgE=\", invoice=\"lnbc1bogus\"")],
            "",
            vec!["invalid_invoice"],
            0,
        ),
        (vec![www(&no_amount)], "", vec!["invoice_no_amount"], 0),
        (
            vec![www("L402 macaroon=\"a\", macaroon=\"b\", invoice=\"i\"")],
            "",
            vec!["challenge_duplicate_parameter"],
            0,
        ),
        (
            vec![www("L402 version=\"1\", token=\"a\", invoice=\"i\"")],
            "",
            vec!["challenge_unsupported_version"],
            0,
        ),
        (
            vec![www("L402 =broken"), www(&good)],
            "",
            vec!["malformed_challenge"],
            1,
        ),
        (
            vec![("www-authenticate", "a".repeat(20_000))],
            "",
            vec!["malformed_challenge"],
            0,
        ),
        (
            (0..20).map(|_| www(&good)).collect(),
            "",
            vec!["too_many_headers"],
            16,
        ),
        // x402: malformed, several headers, unsupported, too many.
        (
            vec![("payment-required", "!!!".into())],
            "",
            vec!["invalid_payment_required"],
            0,
        ),
        (
            vec![("payment-required", "eyJ4NDAyVmVyc2lvbiI6MX0=".into())],
            "",
            vec!["invalid_payment_required"],
            0,
        ),
        (
            vec![
                ("payment-required", "e30=".into()),
                ("payment-required", "e30=".into()),
            ],
            "",
            vec!["invalid_payment_required"],
            0,
        ),
        (
            vec![("payment-required", upto)],
            "",
            vec!["unsupported_scheme", "unsupported_scheme"],
            0,
        ),
        (
            vec![("payment-required", many_raw)],
            "",
            vec!["invalid_payment_required"],
            0,
        ),
        (
            vec![],
            r#"{"x402Version":1,"accepts":[{"scheme":1}]}"#,
            vec!["invalid_payment_required"],
            0,
        ),
        (
            vec![],
            r#"{"x402Version":7,"accepts":[]}"#,
            vec!["invalid_payment_required"],
            0,
        ),
        // A malformed body does not hide the header offers.
        (
            vec![("price", "9".into()), ("username", "m".into())],
            r#"{"x402Version":1,"accepts":"no"}"#,
            vec!["invalid_payment_required"],
            1,
        ),
        (vec![], &big_body, vec!["offer_body_too_large"], 0),
        // BitRequests.
        (vec![("price", "1.5".into())], "", vec!["invalid_price"], 0),
        (
            vec![("price", "0".into()), ("username", "m".into())],
            "",
            vec!["invalid_price"],
            0,
        ),
        (
            vec![("price", "5".into()), ("price", "6".into())],
            "",
            vec!["duplicate_header"],
            0,
        ),
        // x402_mock.
        (
            vec![],
            r#"{"access_token_endpoint":"/t","payment_scheme":{"payment_components":[{"payment_type":"evm"}]}}"#,
            vec!["invalid_mock_offer"],
            0,
        ),
        (vec![], &tiny, vec!["invalid_mock_offer"], 0),
        (vec![], &sol, vec!["unsupported_scheme"], 0),
        // Not JSON, not an offer: nothing at all.
        (vec![], "<html>402</html>", vec![], 0),
        (vec![], "{\"title\":\"Payment required\"}", vec![], 0),
    ];
    for (i, (pairs, body, reasons, offers)) in rows.into_iter().enumerate() {
        let mut h = HeaderMap::new();
        for (n, v) in &pairs {
            h.append(
                http::HeaderName::from_static(n),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let set = read_offers(&h, body.as_bytes());
        let got: Vec<&str> = set.skipped.iter().map(|s| s.error.reason()).collect();
        assert_eq!(got, reasons, "row {i}: {:?}", set.skipped);
        assert_eq!(set.offers.len(), offers, "row {i}: {:?}", set.offers);
    }
}

#[test]
fn not_utf8_and_binary_values_are_skipped() {
    let mut h = HeaderMap::new();
    h.append(
        "www-authenticate",
        HeaderValue::from_bytes(&[0x4c, 0xff, 0xfe]).unwrap(),
    );
    h.append(
        "payment-required",
        HeaderValue::from_bytes(&[0xff, 0x41]).unwrap(),
    );
    let set = read_offers(&h, &[0xff, 0xfe, b'{']);
    assert_eq!(set.offers.len(), 0);
    assert_eq!(set.skipped.len(), 2);
}

#[test]
fn offers_are_capped() {
    let good = l402_challenge(Some(1_000)).to_header_value(Scheme::L402);
    // 16 lines x 5 challenges = 80 good offers: 64 kept, the rest skipped.
    let line = [good.as_str(); 5].join(", ");
    let mut h = HeaderMap::new();
    for _ in 0..MAX_HEADER_LINES {
        h.append("www-authenticate", HeaderValue::from_str(&line).unwrap());
    }
    let set = read_offers(&h, b"");
    assert_eq!(set.offers.len(), MAX_OFFERS);
    assert_eq!(set.skipped.len(), 80 - MAX_OFFERS);
    assert!(
        set.skipped
            .iter()
            .all(|s| s.error.reason() == "too_many_offers")
    );
}

fn payment(method: &str, intent: &str, request: &serde_json::Value) -> String {
    let request = crate::mpp::jcs::encode_param(request).unwrap();
    let mut c = crate::mpp::Challenge::new("cid", "api.example.com", method, intent, request);
    c.expires = Some("2030-01-01T00:00:00Z".into());
    c.to_header_value().unwrap()
}

#[test]
fn mpp_payment_offers_are_priced_on_the_invoice() {
    let preimage = Preimage::from_bytes([7; 32]);
    let bolt11 = invoice(preimage.payment_hash().0, Some(100_000));
    // Declares 1 sat for a 100-sat invoice: the offer is the invoice's price.
    let ln = payment(
        "lightning",
        "charge",
        &serde_json::json!({"amount": "1", "currency": "sat",
            "methodDetails": {"invoice": bolt11, "network": "regtest"}}),
    );
    let ev = payment(
        "evm",
        "charge",
        &serde_json::json!({"amount": "10000", "currency": USDC_SEPOLIA, "recipient": PAY_TO,
            "methodDetails": {"chainId": 84532, "credentialTypes": ["authorization"]}}),
    );
    let unknown_token = payment(
        "evm",
        "charge",
        &serde_json::json!({"amount": "1", "currency": PAY_TO, "recipient": PAY_TO,
            "methodDetails": {"chainId": 1}}),
    );
    let tempo = payment("tempo", "charge", &serde_json::json!({"amount": "1"}));
    let mut h = HeaderMap::new();
    for v in [
        l402_challenge(Some(1_000)).to_header_value(Scheme::L402),
        format!("{ln}, {ev}"),
        unknown_token,
        tempo,
        "Payment id=\"x\", id=\"y\", realm=\"r\", method=\"lightning\", intent=\"charge\", request=\"e30\"".into(),
    ] {
        h.append("www-authenticate", HeaderValue::from_str(&v).unwrap());
    }
    let set = read_offers(&h, b"");
    let rails: Vec<Rail> = set.offers.iter().map(|o| o.rail).collect();
    assert_eq!(rails, vec![Rail::L402, Rail::Mpp, Rail::Mpp]);
    let ln = &set.offers[1];
    assert_eq!(ln.amount, Amount::Msat(Msat(100_000)));
    assert_eq!(ln.network.as_deref(), Some("regtest"));
    assert_eq!(ln.label(), "mpp lightning/charge #0");
    assert_eq!(ln.expires_at, Some(UnixTime(1_700_003_600)));
    let RailChallenge::Mpp(c) = &ln.challenge else {
        panic!("not an MPP challenge");
    };
    assert_eq!(c.challenge.id, "cid");
    let ev = &set.offers[2];
    assert_eq!(
        ev.amount.to_string(),
        Amount::Token(
            crate::x402::TokenAmount::from_u64(10_000),
            known_token("eip155:84532", USDC_SEPOLIA).unwrap()
        )
        .to_string()
    );
    assert_eq!(ev.network.as_deref(), Some("eip155:84532"));
    let reasons: Vec<&str> = set.skipped.iter().map(|s| s.error.reason()).collect();
    assert_eq!(
        reasons,
        vec![
            "challenge_duplicate_parameter",
            "unknown_token",
            "unsupported_scheme"
        ],
        "{:?}",
        set.skipped
    );
    assert!(set.skipped.iter().all(|s| s.rail == Some(Rail::Mpp)));
}
