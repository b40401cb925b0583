//! The x402 protocol reference vectors: §5.1 (EIP-3009 signature) and §5.2
//! (header round-trips, byte for byte).

use alloy_primitives::b256;
use pay402_core::x402::evm::{
    Eip712Domain, TRANSFER_WITH_AUTHORIZATION_TYPEHASH, TransferAuthorization, eip712_digest,
    recover_signer,
};
use pay402_core::x402::network::{V1_NETWORKS, caip2_to_slug, evm_chain_id, slug_to_caip2};
use pay402_core::x402::*;

const PAYMENT_REQUIRED_V2: &str = "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQQVlNRU5ULVNJR05BVFVSRSBoZWFkZXIgaXMgcmVxdWlyZWQiLCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwczovL2FwaS5leGFtcGxlLmNvbS9wcmVtaXVtLWRhdGEiLCJkZXNjcmlwdGlvbiI6IkFjY2VzcyB0byBwcmVtaXVtIG1hcmtldCBkYXRhIiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4NDUzMiIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjo2MCwiZXh0cmEiOnsibmFtZSI6IlVTREMiLCJ2ZXJzaW9uIjoiMiJ9fV19";
const PAYMENT_REQUIRED_V2_JSON: &str = r#"{"x402Version":2,"error":"PAYMENT-SIGNATURE header is required","resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;

const PAYMENT_SIGNATURE_V2: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
const PAYMENT_SIGNATURE_V2_JSON: &str = r#"{"x402Version":2,"resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}},"payload":{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}"#;

const PAYMENT_RESPONSE_V2_OK: &str = "eyJzdWNjZXNzIjp0cnVlLCJ0cmFuc2FjdGlvbiI6IjB4MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWYxMjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2RlZiIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
const PAYMENT_RESPONSE_V2_OK_JSON: &str = r#"{"success":true,"transaction":"0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef","network":"eip155:84532","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#;

const PAYMENT_RESPONSE_V2_FAIL: &str = "eyJzdWNjZXNzIjpmYWxzZSwiZXJyb3JSZWFzb24iOiJpbnN1ZmZpY2llbnRfZnVuZHMiLCJuZXR3b3JrIjoiZWlwMTU1Ojg0NTMyIn0=";
const PAYMENT_RESPONSE_V2_FAIL_JSON: &str =
    r#"{"success":false,"errorReason":"insufficient_funds","network":"eip155:84532"}"#;

const X_PAYMENT_V1: &str = "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZS1zZXBvbGlhIiwicGF5bG9hZCI6eyJzaWduYXR1cmUiOiIweDJkNmE3NTg4ZDZhY2NhNTA1Y2JmMGQ5YTRhMjI3ZTBjNTJjNmMzNDAwOGM4ZTg5ODZhMTI4MzI1OTc2NDE3MzYwOGEyY2U2NDk2NjQyZTM3N2Q2ZGE4ZGJiZjU4MzZlOWJkMTUwOTJmOWVjYWIwNWRlZDNkNjI5M2FmMTQ4YjU3MWMiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDg1N2IwNjUxOUU5MWUzQTU0NTM4NzkxYkRiYjBFMjIzNzNlMzZiNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc0MDY3MjA4OSIsInZhbGlkQmVmb3JlIjoiMTc0MDY3MjE1NCIsIm5vbmNlIjoiMHhmMzc0NjYxM2MyZDkyMGI1ZmRhYmMwODU2ZjJhZWIyZDRmODhlZTYwMzdiOGNjNWQwNGE3MWE0NDYyZjEzNDgwIn19fQ==";
const X_PAYMENT_V1_JSON: &str = r#"{"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}"#;

const X_PAYMENT_RESPONSE_V1_OK: &str = "eyJzdWNjZXNzIjp0cnVlLCJ0cmFuc2FjdGlvbiI6IjB4MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWYxMjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2RlZiIsIm5ldHdvcmsiOiJiYXNlLXNlcG9saWEiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
const X_PAYMENT_RESPONSE_V1_OK_JSON: &str = r#"{"success":true,"transaction":"0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef","network":"base-sepolia","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#;

const X_PAYMENT_RESPONSE_V1_FAIL: &str = "eyJzdWNjZXNzIjpmYWxzZSwiZXJyb3JSZWFzb24iOiJpbnN1ZmZpY2llbnRfZnVuZHMiLCJ0cmFuc2FjdGlvbiI6IiIsIm5ldHdvcmsiOiJiYXNlLXNlcG9saWEiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
const X_PAYMENT_RESPONSE_V1_FAIL_JSON: &str = r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"base-sepolia","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#;

/// Decodes `b64` into `T`, checks that its compact JSON is `json` and that
/// re-encoding gives back exactly `b64`.
fn round_trip<T: HeaderValue + PartialEq + std::fmt::Debug>(b64: &str, json: &str) -> T {
    let value = T::decode_header(b64).unwrap();
    assert_eq!(serde_json::to_string(&value).unwrap(), json);
    assert_eq!(value.encode_header(), b64);
    // And from the JSON side.
    let from_json: T = serde_json::from_str(json).unwrap();
    assert_eq!(from_json, value);
    value
}

#[test]
fn v2_payment_required_round_trips() {
    let p: PaymentRequired = round_trip(PAYMENT_REQUIRED_V2, PAYMENT_REQUIRED_V2_JSON);
    assert_eq!(p.x402_version, 2);
    assert_eq!(p.accepts.len(), 1);
    assert_eq!(p.accepts[0].amount, TokenAmount::from_u64(10_000));
    assert_eq!(
        p.accepts[0].extra.as_ref().and_then(Extra::name),
        Some("USDC")
    );
}

#[test]
fn v2_payment_signature_round_trips() {
    let p: PaymentPayloadV2 = round_trip(PAYMENT_SIGNATURE_V2, PAYMENT_SIGNATURE_V2_JSON);
    assert_eq!(
        p.payload.authorization.from.to_string(),
        "0x857b06519E91e3A54538791bDbb0E22373e36b66"
    );
    // The same header, decoded scheme-agnostically, also round-trips.
    let _: PaymentPayloadV2<serde_json::Value> =
        PaymentPayloadV2::decode_header(PAYMENT_SIGNATURE_V2).unwrap();
}

#[test]
fn v2_payment_response_round_trips() {
    let ok: SettleResponse = round_trip(PAYMENT_RESPONSE_V2_OK, PAYMENT_RESPONSE_V2_OK_JSON);
    assert!(ok.success);
    let fail: SettleResponse = round_trip(PAYMENT_RESPONSE_V2_FAIL, PAYMENT_RESPONSE_V2_FAIL_JSON);
    assert!(!fail.success);
    assert_eq!(
        fail,
        SettleResponse::failure("insufficient_funds", "eip155:84532")
    );
}

#[test]
fn v1_headers_round_trip() {
    let p: PaymentPayloadV1 = round_trip(X_PAYMENT_V1, X_PAYMENT_V1_JSON);
    assert_eq!(p.network, "base-sepolia");
    let ok: SettleResponse = round_trip(X_PAYMENT_RESPONSE_V1_OK, X_PAYMENT_RESPONSE_V1_OK_JSON);
    assert!(ok.success);
    let fail: SettleResponse =
        round_trip(X_PAYMENT_RESPONSE_V1_FAIL, X_PAYMENT_RESPONSE_V1_FAIL_JSON);
    assert_eq!(fail.transaction.as_deref(), Some(""));
}

#[test]
fn unknown_fields_are_tolerated() {
    let json = PAYMENT_SIGNATURE_V2_JSON.replacen(
        r#"{"x402Version":2,"#,
        r#"{"x402Version":2,"future":{"a":[1,2]},"#,
        1,
    );
    let json = json.replacen(r#""nonce":"#, r#""note":"hi","nonce":"#, 1);
    let p: PaymentPayloadV2 = serde_json::from_str(&json).unwrap();
    assert_eq!(p.payload.authorization.value, TokenAmount::from_u64(10_000));
}

#[test]
fn signature_vector_5_1() {
    let domain = Eip712Domain::new(
        "USDC",
        "2",
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .unwrap(),
    );
    let p: PaymentPayloadV2 = PaymentPayloadV2::decode_header(PAYMENT_SIGNATURE_V2).unwrap();
    let auth: &TransferAuthorization = &p.payload.authorization;
    assert_eq!(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
        alloy_primitives::keccak256(
            "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
        )
    );
    assert_eq!(
        domain.separator(),
        b256!("71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818")
    );
    assert_eq!(
        auth.struct_hash(),
        b256!("49ad644555c7bdf3ea4fc022a4940ae5589b230b1dde0065c5504fa19bbe39a4")
    );
    let digest = auth.signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("f256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6")
    );
    assert_eq!(
        eip712_digest(domain.separator(), auth.struct_hash()),
        digest
    );
    let sig = p.payload.signature.as_bytes();
    assert_eq!(sig.len(), 65);
    assert_eq!(sig[64], 0x1c);
    let payer = recover_signer(&digest, sig).unwrap();
    assert_eq!(payer, auth.from);
    assert_eq!(
        payer.to_string(),
        "0x857b06519E91e3A54538791bDbb0E22373e36b66"
    );
    // v as 0/1 works too.
    let mut sig01 = sig.to_vec();
    sig01[64] = 1;
    assert_eq!(recover_signer(&digest, &sig01).unwrap(), payer);
}

#[test]
fn networks_map_both_ways() {
    for (slug, caip) in V1_NETWORKS {
        assert_eq!(slug_to_caip2(slug), Some(*caip));
        assert_eq!(caip2_to_slug(caip), Some(*slug));
        network::Caip2::parse(caip).unwrap();
    }
    assert_eq!(slug_to_caip2("base"), Some("eip155:8453"));
    assert_eq!(slug_to_caip2("base-sepolia"), Some("eip155:84532"));
    assert_eq!(slug_to_caip2("avalanche"), Some("eip155:43114"));
    assert_eq!(slug_to_caip2("polygon"), Some("eip155:137"));
    assert_eq!(
        slug_to_caip2("solana"),
        Some("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp")
    );
    assert_eq!(evm_chain_id("eip155:31337"), Some(31337));
    assert_eq!(evm_chain_id("solana-devnet"), None);
    for bad in [
        "",
        ":",
        "eip155:",
        "e:1",
        "eip155:1:2",
        "eip155:01x!",
        "toolongnamespace:1",
    ] {
        assert!(network::Caip2::parse(bad).is_err(), "{bad}");
    }
}
