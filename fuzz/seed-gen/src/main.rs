//! Writes the seed inputs of each fuzz target into `<dir>/<target>/seed-*`:
//! the protocol reference vectors (`/work/shared/protocols`, copied into the
//! tests of pay402-core) and valid values minted here with fixed keys, so the
//! fuzzers start from inputs that pass every check.
//!
//! `cargo run --manifest-path fuzz/seed-gen/Cargo.toml -- fuzz/corpus`
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{CompressedPublicKey, OutPoint, ScriptBuf};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use pay402_core::bitreq::channel::{
    ChannelParams, ExpiryEncoding, RedeemScript, build_deposit, close_signature,
};
use pay402_core::bitreq::onchain::{SpendKind, SpendableUtxo, build_payment};
use pay402_core::bitreq::rest::{ChannelInfo, OpenRequest, PaymentRequest, encode_form};
use pay402_core::bitreq::{BitTransfer, PaymentInfo, Proof};
use pay402_core::l402::{
    Challenge, Credential, Identifier, Macaroon, RequestFacts, RootKey, Scheme, TokenId, caveat,
};
use pay402_core::lightning::Preimage;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use pay402_core::x402::mock::{AccessTokenClaims, issue_access_token};
use pay402_core::x402::{
    ExactEvmPayload, HeaderValue, PaymentPayloadV1, PaymentPayloadV2, PaymentRequired,
    SettleResponse,
};

// x402 protocol reference §5.2 (also in crates/pay402-core/tests/x402_vectors.rs).
const PAYMENT_REQUIRED_V2_JSON: &str = r#"{"x402Version":2,"error":"PAYMENT-SIGNATURE header is required","resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;
const PAYMENT_SIGNATURE_V2_JSON: &str = r#"{"x402Version":2,"resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}},"payload":{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}"#;
const X_PAYMENT_V1_JSON: &str = r#"{"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}"#;
const REQUIREMENTS_V1_JSON: &str = r#"{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}"#;
const SETTLE_OK_JSON: &str = r#"{"success":true,"transaction":"0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef","network":"eip155:84532","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#;
const SETTLE_FAIL_JSON: &str =
    r#"{"success":false,"errorReason":"insufficient_funds","network":"eip155:84532"}"#;
const VERIFY_JSON: &str = r#"{"isValid":false,"invalidReason":"invalid_exact_evm_payload_signature","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#;
const SUPPORTED_JSON: &str = r#"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"},{"x402Version":1,"scheme":"exact","network":"base-sepolia"}],"extensions":[],"signers":{"eip155:*":["0x209693Bc6afc0C5328bA36FaF03C514EF312287C"]}}"#;
const MOCK_402_JSON: &str = r#"{"reason":"payment required","access_token_endpoint":"/token","payment_scheme":{"payment_components":[{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}}],"protocol_version":"Version 0.1"}}"#;
const MOCK_PERMIT_JSON: &str = r#"{"version":"Version 0.1","permit":{"permit_type":"EIP2612","owner":"0x857b06519E91e3A54538791bDbb0E22373e36b66","spender":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","value":"10000","nonce":"0","deadline":"1700000600","chain_id":84532,"signature":{"signature_type":"EIP2612","v":27,"r":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173","s":"0x608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b5"}}}"#;
const MOCK_CLAIMS_JSON: &str = r#"{"sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","res":"GET /premium","amt":"10000","ast":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","cid":84532,"iat":1700000000,"exp":1700003600,"jti":"0x0101010101010101010101010101010101010101010101010101010101010101"}"#;
// L402 protocol reference (lsat-js vector and the spec's header example).
const LSAT_JS_MACAROON: &str = "AgEIbG9jYXRpb24ChAEwMDAwN2NlZjkzZjJjNTFhYTY1MjA4YmVjMTQ0N2ZjMzhmYzU4ZDliY2UxMzc1YTUzMmVkYjBkY2QyOTBhMmMzMzBhZTljNTMyNjZiMWJlMzE1MGI2NjZiM2Y2ZWM3MGYyOGJkNDNhOWQ0ZmQxOTQ2MWE2MjBmYmFjYzMzNzY4YTk5OTQAAhhleHBpcmF0aW9uPTE2NDQxOTQyNjM2OTMAAAYg_1CMq8TuMXv-ERHDWQCtlIhsQwwKiUDmnnh1maDFpkQ";
const LSAT_JS_PREIMAGE: &str = "2ca931a1c36b48f54948b898a271a53ed91ff7d0081939a5fa511249e81cba5c";
const LSAT_JS_INVOICE: &str = "lntb10u1pw7kfm8pp50nhe8uk9r2n9yz97c9z8lsu0ckxehnsnwkjn9mdsmnffpgkrxzhqdq5w3jhxapqd9h8vmmfvdjscqzpgllq2qvdlgkllc27kpd87lz8pdfsfmtteyc3kwq734jpwnvqt96e4nuy0yauzdrtkumxsvawgda8dlljxu3nnjlhs6w75390wy7ukj6cpfmygah";
const SPEC_MAC: &str = "AGIAJEemVQUTEyNCR0exk7ek90Cg==";
const SPEC_INV: &str = "lnbc1500n1pw5kjhmpp5fu6xhthlt2vucmzkx6c7wtlh2r625r30cyjsfqhu8rsx4xpz5lwqdpa2fjkzep6yptksct5yp5hxgrrv96hx6twvusycn3qv9jx7ur5d9hkugr5dusx6cqzpgxqr23s79ruapxc4j5uskt4htly2salw4drq979d7rcela9wz02elhypmdzmzlnxuknpgfyfm86pntt8vvkvffma5qc9n50h4mvqhngadqy3ngqjcym5a";
// BitRequests (two1 README transaction's merchant address).
const TWO1_ADDRESS: &str = "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM";

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).expect("valid key")
}

/// A BOLT11 invoice for `hash`, signed by node key 3.
fn invoice(currency: Currency, hash: [u8; 32], msat: u64) -> String {
    let secp = Secp256k1::new();
    InvoiceBuilder::new(currency)
        .description("fuzz seed".into())
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret([5; 32]))
        .duration_since_epoch(Duration::from_secs(1_700_000_000))
        .min_final_cltv_expiry_delta(18)
        .amount_milli_satoshis(msat)
        .expiry_time(Duration::from_secs(3600))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key(3)))
        .expect("build invoice")
        .to_string()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let out = Out(Path::new(&dir).to_path_buf());

    // ---- L402 ----
    let preimage = Preimage::from_bytes([4; 32]);
    let id = Identifier::new(preimage.payment_hash(), TokenId([1; 32]));
    let root = RootKey::from_bytes([7; 32]);
    let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
    mac.add_first_party_caveat(caveat::build::services("api", 0));
    mac.add_first_party_caveat(caveat::build::capabilities("api", &["read", "write"]));
    mac.add_first_party_caveat(caveat::build::valid_until("api", UnixTime(2_000_000_000)));
    let hmap = http::HeaderMap::new();
    let facts = RequestFacts::new(&http::Method::GET, "/paid?x=1", &hmap).with_body(b"");
    mac.add_first_party_caveat(caveat::build::request_binding(&facts));
    let bare = Macaroon::new(&root, None, &id.encode());
    for (name, m) in [("full", &mac), ("bare", &bare)] {
        out.put("l402_macaroon", name, m.encode_v2());
        out.put("l402_macaroon", &format!("{name}-b64"), m.to_base64());
    }
    out.put("l402_macaroon", "identifier", id.encode());
    out.put("l402_macaroon", "lsat-js", LSAT_JS_MACAROON);

    let inv = invoice(Currency::Regtest, preimage.payment_hash().0, 10_000);
    let inv_main = invoice(Currency::Bitcoin, preimage.payment_hash().0, 1_000);
    for (i, s) in [
        &inv,
        &inv_main,
        &LSAT_JS_INVOICE.to_owned(),
        &SPEC_INV.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        out.put("bolt11", &i.to_string(), s.as_bytes());
    }
    let challenge = Challenge::new(mac.to_base64(), inv.clone());
    let l402 = challenge.to_header_value(Scheme::L402);
    let lsat = challenge.to_header_value(Scheme::Lsat);
    out.put("l402_challenge", "l402", &l402);
    out.put("l402_challenge", "lsat-and-l402", format!("{lsat}, {l402}"));
    out.put(
        "l402_challenge",
        "two-lines",
        format!("Basic realm=\"x\"\n{l402}"),
    );
    out.put(
        "l402_challenge",
        "spec",
        format!("L402 macaroon=\"{SPEC_MAC}\", invoice=\"{SPEC_INV}\""),
    );
    out.put(
        "l402_challenge",
        "lsat-js",
        format!("LSAT macaroon=\"{LSAT_JS_MACAROON}\", invoice=\"{LSAT_JS_INVOICE}\""),
    );

    let b64 = mac.to_base64();
    let cred = Credential::new(&b64, preimage.clone());
    out.put("l402_credential", "l402", cred.to_header_value());
    out.put("l402_credential", "lsat", cred.to_lsat_header_value());
    out.put(
        "l402_credential",
        "with-bearer",
        format!("Bearer abc\n{}", cred.to_header_value()),
    );
    out.put(
        "l402_credential",
        "two-macaroons",
        format!("L402 {b64},{}:{}", bare.to_base64(), preimage.to_hex()),
    );
    out.put(
        "l402_credential",
        "lsat-js",
        format!("LSAT {LSAT_JS_MACAROON}:{LSAT_JS_PREIMAGE}"),
    );

    out.put("auth_header", "l402", &l402);
    out.put(
        "auth_header",
        "mixed",
        format!("Negotiate abc==, {lsat}, Basic realm=\"a\\\"b\", charset=UTF-8"),
    );
    out.put("auth_header", "credentials", cred.to_header_value());
    out.put("auth_header", "token68", "Bearer dGVzdA==");

    // ---- x402 ----
    let v2: PaymentPayloadV2<ExactEvmPayload> =
        serde_json::from_str(PAYMENT_SIGNATURE_V2_JSON).expect("v2 vector");
    let v1: PaymentPayloadV1<ExactEvmPayload> =
        serde_json::from_str(X_PAYMENT_V1_JSON).expect("v1 vector");
    let required: PaymentRequired =
        serde_json::from_str(PAYMENT_REQUIRED_V2_JSON).expect("402 vector");
    let ok: SettleResponse = serde_json::from_str(SETTLE_OK_JSON).expect("settle vector");
    let fail: SettleResponse = serde_json::from_str(SETTLE_FAIL_JSON).expect("settle vector");
    out.put("x402_headers", "payment-required", required.encode_header());
    out.put("x402_headers", "payment-signature", v2.encode_header());
    out.put("x402_headers", "x-payment", v1.encode_header());
    out.put("x402_headers", "settle-ok", ok.encode_header());
    out.put("x402_headers", "settle-fail", fail.encode_header());

    out.put("x402_payment_signature", "spec", PAYMENT_SIGNATURE_V2_JSON);
    let mut ext = v2.clone();
    ext.resource = None;
    ext.extensions = serde_json::from_str(r#"{"bazaar":{"info":[1,2.5,"\u00e9"]}}"#).ok();
    out.put(
        "x402_payment_signature",
        "extensions",
        serde_json::to_vec(&ext).expect("json"),
    );
    out.put(
        "x402_payment_signature",
        "escapes",
        PAYMENT_SIGNATURE_V2_JSON
            .replace("premium-data", "premium\\u002ddata")
            .replace("\"exact\"", "\"ex\\u0061ct\""),
    );
    out.put(
        "x402_payment_signature",
        "spaced",
        serde_json::to_vec_pretty(&v2).expect("json"),
    );

    let v1_body = format!(
        r#"{{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{REQUIREMENTS_V1_JSON}]}}"#
    );
    for (name, s) in [
        ("402-v2", PAYMENT_REQUIRED_V2_JSON),
        ("402-v1", v1_body.as_str()),
        ("settle-ok", SETTLE_OK_JSON),
        ("settle-fail", SETTLE_FAIL_JSON),
        ("verify", VERIFY_JSON),
        ("supported", SUPPORTED_JSON),
        (
            "amount",
            "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        ),
        ("human", "0.01"),
        ("caip2", "eip155:84532"),
        ("address", "0x857b06519E91e3A54538791bDbb0E22373e36b66"),
        (
            "bytes32",
            "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480",
        ),
    ] {
        out.put("x402_json", name, s);
    }
    let req_v2 = format!(
        r#"{{"x402Version":2,"paymentPayload":{PAYMENT_SIGNATURE_V2_JSON},"paymentRequirements":{}}}"#,
        serde_json::to_string(&required.accepts[0]).expect("json")
    );
    let req_v1 = format!(
        r#"{{"x402Version":1,"paymentPayload":{X_PAYMENT_V1_JSON},"paymentRequirements":{REQUIREMENTS_V1_JSON}}}"#
    );
    out.put("x402_facilitator_request", "v2", req_v2);
    out.put("x402_facilitator_request", "v1", req_v1);

    // ---- x402_mock ----
    let claims: AccessTokenClaims = serde_json::from_str(MOCK_CLAIMS_JSON).expect("claims");
    out.put("x402_mock", "402", MOCK_402_JSON);
    out.put("x402_mock", "permit", MOCK_PERMIT_JSON);
    out.put("x402_mock", "claims", MOCK_CLAIMS_JSON);
    out.put(
        "x402_mock",
        "token",
        issue_access_token(&claims, &[7; 32]).expect("token"),
    );
    out.put("x402_mock", "token-response", r#"{"access_token":"x4m1.e30.AAAA","token_type":"Bearer","expires_in":3600,"metadata":{"payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}}"#);

    // ---- BitRequests ----
    let secp = Secp256k1::new();
    let payer = key(7);
    let merchant = key(4);
    let transfer = BitTransfer {
        payer: "alice".into(),
        payer_pubkey: payer.public_key(&secp),
        payee_address: TWO1_ADDRESS.into(),
        payee_username: "merchant".into(),
        amount: Sat(1000),
        timestamp: 1_453_338_704.678_601,
        description: "https://example.com/r".into(),
    };
    let signed = transfer.sign(&payer).expect("sign transfer");
    out.put("bitreq_transfer", "unsigned", &signed.transfer);
    out.put(
        "bitreq_transfer",
        "signed",
        format!("{}\n{}", signed.transfer, signed.authorization),
    );

    let info = PaymentInfo::new(Sat(3500))
        .with_bitcoin_address(TWO1_ADDRESS)
        .with_username("merchant")
        .with_channel_server("https://example.com/payment");
    let lines = |pairs: Vec<(&str, String)>| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.put("bitreq_headers", "offer", lines(info.header_pairs()));
    out.put(
        "bitreq_headers",
        "transfer",
        lines(signed.clone().into_proof().header_pairs()),
    );

    let merchant_spk =
        ScriptBuf::new_p2wpkh(&CompressedPublicKey(merchant.public_key(&secp)).wpubkey_hash());
    let utxo = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(50_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let change =
        ScriptBuf::new_p2wpkh(&CompressedPublicKey(payer.public_key(&secp)).wpubkey_hash());
    let tx =
        build_payment(&[utxo], &merchant_spk, Sat(5_000), &change, Sat(1_000)).expect("build tx");
    let tx_hex = bitcoin::consensus::encode::serialize_hex(&tx);
    out.put("bitreq_onchain", "p2wpkh", &tx_hex);
    let utxo = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(50_000),
        kind: SpendKind::P2pkh,
        key: &payer,
    };
    let tx2 =
        build_payment(&[utxo], &merchant_spk, Sat(5_000), &change, Sat(1_000)).expect("build tx");
    out.put(
        "bitreq_onchain",
        "p2pkh",
        bitcoin::consensus::encode::serialize_hex(&tx2),
    );
    let onchain = Proof::OnChain {
        tx_hex: tx_hex.clone(),
        return_address: Some(TWO1_ADDRESS.into()),
    };
    out.put("bitreq_headers", "onchain", lines(onchain.header_pairs()));
    let channel = Proof::Channel {
        token: tx.compute_txid(),
    };
    out.put("bitreq_headers", "channel", lines(channel.header_pairs()));

    let redeem = RedeemScript::new(
        merchant.public_key(&secp),
        payer.public_key(&secp),
        1_800_000_000,
        ExpiryEncoding::ScriptNum,
    )
    .expect("redeem script");
    let open = OpenRequest {
        deposit_tx: tx_hex.clone(),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    out.put(
        "bitreq_rest",
        "open-json",
        serde_json::to_vec(&open).expect("json"),
    );
    out.put("bitreq_rest", "open-form", encode_form(&open));
    out.put(
        "bitreq_rest",
        "payment",
        serde_json::to_vec(&PaymentRequest { payment_tx: tx_hex }).expect("json"),
    );
    let sig = close_signature(&tx.compute_txid(), &payer);
    out.put(
        "bitreq_rest",
        "close",
        format!("signature={}", hex::encode(sig)),
    );
    out.put(
        "bitreq_rest",
        "info",
        serde_json::to_vec(&ChannelInfo::new(&merchant.public_key(&secp), false)).expect("json"),
    );
    out.put(
        "bitreq_rest",
        "status",
        r#"{"status":"ready","balance":1000,"time_left":1450223410}"#,
    );
    out.put(
        "bitreq_rest",
        "path",
        format!("/payment/{}/", tx.compute_txid()),
    );
    out.put(
        "bitreq_rest",
        "redeem-script",
        redeem.to_script().as_bytes(),
    );
    for enc in [ExpiryEncoding::ScriptNum, ExpiryEncoding::Two1Raw] {
        if let Ok(r) = RedeemScript::new(
            merchant.public_key(&secp),
            payer.public_key(&secp),
            2_000_000_000,
            enc,
        ) {
            out.put(
                "bitreq_rest",
                &format!("redeem-{enc:?}"),
                r.to_script().as_bytes(),
            );
        }
    }
    // The fixed open channel of the bitreq_channel target.
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::null(),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(1_000),
    };
    let half = params
        .half_signed_payment(Sat(1_000), &payer)
        .expect("half-signed payment");
    let half_hex = bitcoin::consensus::encode::serialize_hex(&half);
    out.put(
        "bitreq_channel",
        "payment-json",
        serde_json::to_vec(&PaymentRequest {
            payment_tx: half_hex.clone(),
        })
        .expect("json"),
    );
    out.put(
        "bitreq_channel",
        "payment-form",
        encode_form(&PaymentRequest {
            payment_tx: half_hex,
        }),
    );
    let utxo = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(200_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let deposit =
        build_deposit(&[utxo], &redeem, Sat(111_000), &change, Sat(1_000)).expect("deposit");
    let open = OpenRequest {
        deposit_tx: bitcoin::consensus::encode::serialize_hex(&deposit),
        redeem_script: hex::encode(redeem.to_script().as_bytes()),
    };
    out.put(
        "bitreq_channel",
        "open",
        serde_json::to_vec(&open).expect("json"),
    );
    let null_txid = OutPoint::null().txid;
    let close = close_signature(&null_txid, &payer);
    out.put(
        "bitreq_channel",
        "close",
        format!(r#"{{"signature":"{}"}}"#, hex::encode(close)),
    );
    mpp_seeds(&out);
    println!("seeds written under {dir}");
}

/// MPP: the derived vector of the protocol reference (§12.5), Aperture's
/// list and header vectors, an EVM charge minted with the fuzz target's
/// secret, receipts and `Accept-Payment` values.
fn mpp_seeds(out: &Out) {
    use pay402_core::mpp::methods::{evm, lightning as ln};
    use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Receipt};
    const SECRET: &[u8] = b"pay402-mpp-derived-vector-secret-0001";
    const INVOICE: &str = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
    let keys = ChallengeKeys::new(ChallengeKey::new(SECRET).expect("32+ bytes"));
    let t0 = UnixTime(1_767_225_600);
    let mut offer = ln::ChargeOffer::new("api.example.com", INVOICE);
    offer.memo = Some("pay402 mpp test vector");
    offer.ttl_secs = 900;
    let c = ln::issue_charge(&keys, &offer, t0).expect("issue");
    let line = c.to_header_value().expect("emit");
    out.put("mpp_challenge", "derived", &line);
    out.put(
        "mpp_challenge",
        "l402-then-payment",
        format!("L402 macaroon=\"AgEB\", invoice=\"{INVOICE}\"\n{line}"),
    );
    let mut full = c.clone();
    full.description = Some("1 \u{d7} ticket \u{2014} VIP".into());
    full.digest = Some(pay402_core::mpp::digest::compute(b"{}").into());
    full.opaque = Some("eyJwaSI6InBpXzNhYmMxMjNYWVoifQ".into());
    full.header = Some("Payment-Authorization".into());
    keys.bind(&mut full);
    out.put(
        "mpp_challenge",
        "every-param",
        full.to_header_value().expect("emit"),
    );
    out.put(
        "mpp_challenge",
        "joined-list",
        r#"Basic realm="other", Payment id="a", realm="r", method="lightning", intent="charge", request="cQ", Digest realm="other", intent="bogus", payment ID=b, Realm=r, METHOD=lightning, intent=session, ReQuEsT=cQ"#,
    );
    out.put(
        "mpp_challenge",
        "escapes",
        r#"Payment id="quote-id", realm="api \"quoted\" example", method="lightning", intent="charge", request="e30", description="Tickets \ud83c\udf9f\ufe0f \"VIP\"""#,
    );
    out.put(
        "mpp_challenge",
        "accept-payment",
        "lightning/charge, evm/*;q=0.5, */*;q=0",
    );
    out.put("mpp_challenge", "rfc3339", "2026-09-01T00:00:00.000+02:00");
    let pre = Preimage::from_bytes([0x11; 32]);
    let cred = ln::credential(&c, &pre, None);
    out.put("mpp_credential", "lightning", format!("Bearer x, {cred}"));
    let terms = evm::EvmTerms::new(
        31337,
        "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
            .parse()
            .expect("address"),
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
            .parse()
            .expect("address"),
        "USD Coin",
        "2",
    );
    let ec = evm::issue_charge(
        &keys,
        "api.example.com",
        &terms,
        pay402_core::x402::TokenAmount::from_u64(10_000),
        t0,
        900,
        Some(&[9; 16]),
    )
    .expect("issue evm");
    let req: evm::ChargeRequest = {
        let mut buf = Vec::new();
        pay402_core::mpp::verify::decode_request(&ec, &mut buf).expect("request")
    };
    let payable = evm::PayableCharge {
        request: req,
        expires_at: ec.expires_at(),
    };
    let auth = evm::authorization_for(&ec, &payable, Default::default(), t0);
    let sig = pay402_core::x402::evm::EvmSignature::from_bytes(vec![0x1b; 65]);
    out.put(
        "mpp_credential",
        "evm",
        evm::credential(&ec, &auth, sig, 31337),
    );
    let receipt = Receipt::lightning(&pre.payment_hash(), &c.id, t0).encode();
    out.put("mpp_credential", "receipt", format!("{receipt}\n{cred}"));
}
