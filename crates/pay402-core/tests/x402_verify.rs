//! `exact` EVM verification: the reference order and error strings, bad
//! input of every kind, fresh signatures, EIP-2612 permits, and a no-panic
//! mutation loop.

use alloy_primitives::{Address, B256, U256, keccak256};
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{
    Bytes32, Eip712Domain, Eip2612Permit, EvmAddress, EvmSignature, SignatureError,
    TransferAuthorization, recover_signer,
};
use pay402_core::x402::*;
use secp256k1::{Message, SECP256K1, SecretKey};

const HEADER: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
const X_PAYMENT_V1: &str = "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZS1zZXBvbGlhIiwicGF5bG9hZCI6eyJzaWduYXR1cmUiOiIweDJkNmE3NTg4ZDZhY2NhNTA1Y2JmMGQ5YTRhMjI3ZTBjNTJjNmMzNDAwOGM4ZTg5ODZhMTI4MzI1OTc2NDE3MzYwOGEyY2U2NDk2NjQyZTM3N2Q2ZGE4ZGJiZjU4MzZlOWJkMTUwOTJmOWVjYWIwNWRlZDNkNjI5M2FmMTQ4YjU3MWMiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDg1N2IwNjUxOUU5MWUzQTU0NTM4NzkxYkRiYjBFMjIzNzNlMzZiNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc0MDY3MjA4OSIsInZhbGlkQmVmb3JlIjoiMTc0MDY3MjE1NCIsIm5vbmNlIjoiMHhmMzc0NjYxM2MyZDkyMGI1ZmRhYmMwODU2ZjJhZWIyZDRmODhlZTYwMzdiOGNjNWQwNGE3MWE0NDYyZjEzNDgwIn19fQ==";

const NOW_OK: UnixTime = UnixTime(1_740_672_100);
const VALID_AFTER: u64 = 1_740_672_089;
const VALID_BEFORE: u64 = 1_740_672_154;

fn payment() -> PaymentPayloadV2 {
    PaymentPayloadV2::decode_header(HEADER).unwrap()
}

fn requirements() -> PaymentRequirements {
    payment().accepted
}

fn requirements_v1() -> PaymentRequirementsV1 {
    PaymentRequirementsV1 {
        scheme: "exact".into(),
        network: "base-sepolia".into(),
        max_amount_required: TokenAmount::from_u64(10_000),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        resource: "https://api.example.com/premium-data".into(),
        description: "Access to premium market data".into(),
        mime_type: "application/json".into(),
        output_schema: None,
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USDC", "2")),
    }
}

fn reason_v2(p: &PaymentPayloadV2, r: &PaymentRequirements, now: UnixTime) -> &'static str {
    match exact::verify_v2(p, r, now) {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

/// `n - s` with the recovery id flipped: the same signature, high-s form.
fn high_s(sig: &[u8]) -> Vec<u8> {
    let n = U256::from_be_bytes(
        alloy_primitives::b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .0,
    );
    let s = U256::from_be_slice(&sig[32..64]);
    let mut out = sig.to_vec();
    out[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    out[64] = if sig[64] == 27 { 28 } else { 27 };
    out
}

#[test]
fn the_vector_verifies_in_its_window() {
    let p = payment();
    let r = requirements();
    // [validAfter, validBefore - 6] is the window.
    for now in [VALID_AFTER, NOW_OK.0, VALID_BEFORE - 6] {
        let v = exact::verify_v2(&p, &r, UnixTime(now)).unwrap();
        assert_eq!(v.payer, p.payload.authorization.from);
        assert_eq!(v.chain_id, 84532);
        assert_eq!(
            v.asset.to_string(),
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        );
        assert_eq!(
            v.digest,
            alloy_primitives::b256!(
                "f256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6"
            )
        );
    }
    let p1: PaymentPayloadV1 = PaymentPayloadV1::decode_header(X_PAYMENT_V1).unwrap();
    assert!(exact::verify_v1(&p1, &requirements_v1(), NOW_OK).is_ok());
}

#[test]
fn bad_input_table_v2() {
    type Case = (
        &'static str,
        fn(&mut PaymentPayloadV2, &mut PaymentRequirements, &mut UnixTime),
        &'static str,
    );
    let cases: &[Case] = &[
        (
            "payment scheme",
            |p, _, _| p.accepted.scheme = "upto".into(),
            "invalid_exact_evm_scheme",
        ),
        (
            "requirement scheme",
            |_, r, _| r.scheme = "upto".into(),
            "invalid_exact_evm_scheme",
        ),
        (
            "no extra",
            |_, r, _| r.extra = None,
            "invalid_exact_evm_missing_eip712_domain",
        ),
        (
            "no version",
            |_, r, _| r.extra = Some(serde_json::from_str(r#"{"name":"USDC"}"#).unwrap()),
            "invalid_exact_evm_missing_eip712_domain",
        ),
        (
            "name not a string",
            |_, r, _| r.extra = Some(serde_json::from_str(r#"{"name":1,"version":"2"}"#).unwrap()),
            "invalid_exact_evm_missing_eip712_domain",
        ),
        (
            "wrong network",
            |p, _, _| p.accepted.network = "eip155:8453".into(),
            "invalid_exact_evm_network_mismatch",
        ),
        (
            "v1 slug in v2",
            |p, r, _| {
                p.accepted.network = "solana".into();
                r.network = "solana".into();
            },
            "invalid_network",
        ),
        (
            "bad asset",
            |_, r, _| r.asset = "USDC".into(),
            "invalid_payment_requirements",
        ),
        (
            "bad payTo",
            |_, r, _| r.pay_to = "0x12".into(),
            "invalid_payment_requirements",
        ),
        (
            "wrong domain name",
            |_, r, _| r.extra = Some(Extra::eip712("USD Coin", "2")),
            "invalid_exact_evm_signature",
        ),
        (
            "wrong domain version",
            |_, r, _| r.extra = Some(Extra::eip712("USDC", "1")),
            "invalid_exact_evm_signature",
        ),
        (
            "wrong chain id",
            |p, r, _| {
                p.accepted.network = "eip155:8453".into();
                r.network = "eip155:8453".into();
            },
            "invalid_exact_evm_signature",
        ),
        (
            "wrong verifying contract",
            |_, r, _| r.asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            "invalid_exact_evm_signature",
        ),
        (
            "bad signature byte",
            |p, _, _| {
                let mut s = p.payload.signature.as_bytes().to_vec();
                s[10] ^= 1;
                p.payload.signature = EvmSignature::from_bytes(s);
            },
            "invalid_exact_evm_signature",
        ),
        (
            "high s",
            |p, _, _| {
                p.payload.signature =
                    EvmSignature::from_bytes(high_s(p.payload.signature.as_bytes()))
            },
            "invalid_exact_evm_signature",
        ),
        (
            "bad v",
            |p, _, _| {
                let mut s = p.payload.signature.as_bytes().to_vec();
                s[64] = 29;
                p.payload.signature = EvmSignature::from_bytes(s);
            },
            "invalid_exact_evm_signature",
        ),
        (
            "64-byte signature",
            |p, _, _| {
                p.payload.signature =
                    EvmSignature::from_bytes(p.payload.signature.as_bytes()[..64].to_vec())
            },
            "invalid_exact_evm_signature",
        ),
        (
            "smart-wallet signature (fails closed)",
            |p, _, _| p.payload.signature = EvmSignature::from_bytes(vec![0xab; 200]),
            "invalid_exact_evm_signature",
        ),
        (
            "from is someone else",
            |p, _, _| p.payload.authorization.from = EvmAddress(Address::repeat_byte(7)),
            "invalid_exact_evm_signature",
        ),
        (
            "signed amount altered",
            |p, _, _| p.payload.authorization.value = TokenAmount::from_u64(10_001),
            "invalid_exact_evm_signature",
        ),
        (
            "wrong payTo",
            |p, r, _| {
                r.pay_to = "0x0000000000000000000000000000000000000001".into();
                p.accepted.pay_to = r.pay_to.clone();
            },
            "invalid_exact_evm_recipient_mismatch",
        ),
        (
            "expired",
            |_, _, t| *t = UnixTime(VALID_BEFORE + 100),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "6 s margin edge: now+6 > validBefore",
            |_, _, t| *t = UnixTime(VALID_BEFORE - 5),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "6 s margin edge: now+6 == validBefore",
            |_, _, t| *t = UnixTime(VALID_BEFORE - 6),
            "ok",
        ),
        (
            "future validAfter",
            |_, _, t| *t = UnixTime(VALID_AFTER - 1),
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
        (
            "validAfter == now",
            |_, _, t| *t = UnixTime(VALID_AFTER),
            "ok",
        ),
        (
            "amount mismatch (overpay) v2",
            |_, r, _| r.amount = TokenAmount::from_u64(9_999),
            "invalid_exact_evm_authorization_value",
        ),
        (
            "amount mismatch (underpay) v2",
            |_, r, _| r.amount = TokenAmount::from_u64(10_001),
            "invalid_exact_evm_authorization_value",
        ),
        (
            "version 1 in a v2 payload",
            |p, _, _| p.x402_version = 1,
            "invalid_x402_version",
        ),
        (
            "lowercase payTo is fine",
            |_, r, _| r.pay_to = r.pay_to.to_lowercase(),
            "ok",
        ),
    ];
    for (name, mutate, want) in cases {
        let mut p = payment();
        let mut r = requirements();
        let mut now = NOW_OK;
        mutate(&mut p, &mut r, &mut now);
        assert_eq!(reason_v2(&p, &r, now), *want, "case: {name}");
    }
}

#[test]
fn order_is_the_reference_order() {
    // Everything wrong at once: the first check in the §8 order wins.
    let mut p = payment();
    let mut r = requirements();
    r.amount = TokenAmount::from_u64(1);
    let late = UnixTime(VALID_BEFORE + 10);
    assert_eq!(
        reason_v2(&p, &r, late),
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    r.pay_to = "0x0000000000000000000000000000000000000001".into();
    assert_eq!(
        reason_v2(&p, &r, late),
        "invalid_exact_evm_recipient_mismatch"
    );
    r.extra = Some(Extra::eip712("USD Coin", "2"));
    assert_eq!(reason_v2(&p, &r, late), "invalid_exact_evm_signature");
    p.accepted.network = "eip155:1".into();
    assert_eq!(
        reason_v2(&p, &r, late),
        "invalid_exact_evm_network_mismatch"
    );
    r.extra = None;
    assert_eq!(
        reason_v2(&p, &r, late),
        "invalid_exact_evm_missing_eip712_domain"
    );
    r.scheme = "upto".into();
    assert_eq!(reason_v2(&p, &r, late), "invalid_exact_evm_scheme");
}

#[test]
fn v1_rules() {
    let p: PaymentPayloadV1 = PaymentPayloadV1::decode_header(X_PAYMENT_V1).unwrap();
    let check = |r: &PaymentRequirementsV1, now: UnixTime| match exact::verify_v1(&p, r, now) {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    };
    let mut r = requirements_v1();
    assert_eq!(check(&r, NOW_OK), "ok");
    r.max_amount_required = TokenAmount::from_u64(5_000); // overpay is fine in v1
    assert_eq!(check(&r, NOW_OK), "ok");
    r.max_amount_required = TokenAmount::from_u64(10_001); // underpay
    assert_eq!(check(&r, NOW_OK), "invalid_exact_evm_authorization_value");
    let mut r = requirements_v1();
    r.network = "base".into();
    assert_eq!(check(&r, NOW_OK), "invalid_exact_evm_network_mismatch");
    let r = requirements_v1();
    assert_eq!(
        check(&r, UnixTime(VALID_BEFORE)),
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    let offers = [requirements_v1()];
    assert!(select_requirement_v1(&offers, &p.scheme, &p.network).is_some());
    assert!(select_requirement_v1(&offers, "exact", "base").is_none());
}

#[test]
fn malformed_headers() {
    let cases: &[(&str, &str)] = &[
        ("", "invalid_payload"),
        ("not base64!", "invalid_payload"),
        ("e30", "invalid_payload"), // "{}" unpadded: decodes, but no fields
        ("bm90IGpzb24=", "invalid_payload"), // "not json"
        ("eyJ4NDAyVmVyc2lvbiI6Mn0=", "invalid_payload"), // {"x402Version":2}
    ];
    for (value, want) in cases {
        let e = PaymentPayloadV2::<ExactEvmPayload>::decode_header(value).unwrap_err();
        assert_eq!(e.reason(), *want, "{value:?}");
    }
    let huge = "A".repeat(header::MAX_HEADER_LEN + 4);
    let e = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&huge).unwrap_err();
    assert_eq!(e, HeaderError::TooLarge);
    assert_eq!(e.reason(), "payment_header_too_large");
    // Bad field values inside valid JSON.
    let json: serde_json::Value = serde_json::from_str(
        &String::from_utf8(pay402_core::b64::decode_any(HEADER, 4096).unwrap()).unwrap(),
    )
    .unwrap();
    for (ptr, bad) in [
        ("/payload/authorization/value", serde_json::json!("1.5")),
        ("/payload/authorization/value", serde_json::json!(10000)),
        ("/payload/authorization/value", serde_json::json!("-1")),
        (
            "/payload/authorization/value",
            serde_json::json!("1".repeat(79)),
        ),
        ("/payload/authorization/validBefore", serde_json::json!("")),
        ("/payload/authorization/nonce", serde_json::json!("0x1234")),
        (
            "/payload/authorization/from",
            serde_json::json!("857b06519E91e3A54538791bDbb0E22373e36b66"),
        ),
        ("/payload/signature", serde_json::json!("0xzz")),
        ("/payload/signature", serde_json::json!("0x123")),
        ("/accepted/amount", serde_json::json!("ten")),
    ] {
        let mut j = json.clone();
        *j.pointer_mut(ptr).unwrap() = bad.clone();
        let v = header::encode(&j);
        let e = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&v).unwrap_err();
        assert_eq!(e.reason(), "invalid_payload", "{ptr} = {bad}");
    }
    // The largest uint256 is fine.
    let mut j = json.clone();
    *j.pointer_mut("/payload/authorization/validBefore").unwrap() =
        serde_json::json!(U256::MAX.to_string());
    let p = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&header::encode(&j)).unwrap();
    assert_eq!(p.payload.authorization.valid_before.0, U256::MAX);
}

fn address_of(sk: &SecretKey) -> EvmAddress {
    let pk = sk.public_key(SECP256K1).serialize_uncompressed();
    EvmAddress(Address::from_slice(&keccak256(&pk[1..])[12..]))
}

fn sign(sk: &SecretKey, digest: B256) -> Vec<u8> {
    let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest.0), sk);
    let (id, rs) = sig.serialize_compact();
    let mut out = rs.to_vec();
    out.push(27 + id.to_i32() as u8);
    out
}

#[test]
fn fresh_signature_like_the_ts_client() {
    // The v2 TS client signs validAfter = 0, validBefore = now + maxTimeoutSeconds.
    let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let payer = address_of(&sk);
    let offer = PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:31337".into(),
        amount: TokenAmount::from_u64(10_000),
        asset: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".into(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USD Coin", "2")),
    };
    let now = UnixTime(1_800_000_000);
    let auth = TransferAuthorization {
        from: payer,
        to: offer.pay_to.parse().unwrap(),
        value: offer.amount,
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(now.0 + 60),
        nonce: Bytes32([9; 32]),
    };
    let domain = Eip712Domain::new("USD Coin", "2", 31337, offer.asset.parse().unwrap());
    let signature = EvmSignature::from_bytes(sign(&sk, auth.signing_hash(&domain)));
    let payment = PaymentPayloadV2 {
        x402_version: 2,
        resource: Some(ResourceInfo::new("http://127.0.0.1/paid")),
        accepted: offer.clone(),
        payload: ExactEvmPayload {
            signature,
            authorization: auth,
        },
        extensions: None,
    };
    let wire = payment.encode_header();
    let back = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&wire).unwrap();
    assert_eq!(back, payment);
    let v = exact::verify_v2(&back, &offer, now).unwrap();
    assert_eq!(v.payer, payer);
    assert_eq!(v.chain_id, 31337);
    // 54 s later it is inside the 6 s margin.
    assert_eq!(
        exact::verify_v2(&back, &offer, UnixTime(now.0 + 55)).unwrap_err(),
        ExactEvmError::ValidBefore
    );
}

#[test]
fn eip2612_permit_recovers_its_owner() {
    let sk = SecretKey::from_slice(&[0x17; 32]).unwrap();
    let owner = address_of(&sk);
    let permit = Eip2612Permit {
        owner,
        spender: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
            .parse()
            .unwrap(),
        value: TokenAmount::from_u64(1_000_000),
        nonce: U256::from(3u8),
        deadline: EvmTimestamp::from_u64(1_800_000_600),
    };
    let domain = Eip712Domain::new(
        "USDC",
        "2",
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .unwrap(),
    );
    // hashStruct by hand: keccak(typehash ‖ owner ‖ spender ‖ value ‖ nonce ‖ deadline).
    let mut enc = Vec::new();
    enc.extend_from_slice(evm::PERMIT_TYPEHASH.as_slice());
    for a in [permit.owner, permit.spender] {
        enc.extend_from_slice(&[0u8; 12]);
        enc.extend_from_slice(a.0.as_slice());
    }
    for v in [permit.value.0, permit.nonce, permit.deadline.0] {
        enc.extend_from_slice(&v.to_be_bytes::<32>());
    }
    assert_eq!(permit.struct_hash(), keccak256(&enc));
    assert_eq!(
        evm::PERMIT_TYPEHASH,
        keccak256(
            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
        )
    );
    let sig = sign(&sk, permit.signing_hash(&domain));
    assert_eq!(permit.recover_signer(&domain, &sig).unwrap(), owner);
    // Another domain recovers someone else.
    let other = Eip712Domain::new("USDC", "2", 8453, domain.verifying_contract);
    assert_ne!(permit.recover_signer(&other, &sig).unwrap(), owner);
    assert_eq!(
        permit.recover_signer(&domain, &high_s(&sig)),
        Err(SignatureError::HighS)
    );
}

#[test]
fn recover_rejects_garbage() {
    let d = B256::repeat_byte(1);
    assert_eq!(recover_signer(&d, &[]), Err(SignatureError::Length));
    assert_eq!(recover_signer(&d, &[0; 66]), Err(SignatureError::Length));
    let mut s = [0u8; 65];
    s[64] = 2;
    assert_eq!(recover_signer(&d, &s), Err(SignatureError::RecoveryId));
    s[64] = 27;
    assert_eq!(recover_signer(&d, &s), Err(SignatureError::Malformed));
    let mut s = [0xffu8; 65];
    s[32] = 0x10; // s low, r >= n
    s[64] = 27;
    assert!(recover_signer(&d, &s).is_err());
}

/// A small deterministic PRNG (xorshift64*), so the loop is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutation_loop_never_panics() {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ !\"{}:,";
    let r = requirements();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let json = pay402_core::b64::decode_any(HEADER, 4096).unwrap();
    let mut decoded_ok = 0;
    for i in 0..20_000 {
        // Alternate between mutating the base64 text and the JSON inside it.
        let value = if i % 2 == 0 {
            let mut b = HEADER.as_bytes().to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(3) {
                    0 => b[at] = ALPHABET[rng.below(ALPHABET.len())],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                }
            }
            String::from_utf8(b).unwrap()
        } else {
            let mut j = json.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(j.len());
                j[at] = match rng.below(4) {
                    0 => b'0' + rng.below(10) as u8,
                    1 => b"0123456789abcdefABCDEF"[rng.below(22)],
                    2 => b"\"{}[],:\\"[rng.below(8)],
                    _ => rng.next() as u8,
                };
            }
            pay402_core::b64::encode_std(&j)
        };
        if let Ok(p) = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&value) {
            decoded_ok += 1;
            let res = exact::verify_v2(&p, &r, NOW_OK);
            if let Ok(v) = res {
                // Anything that still verifies must be the genuine payment.
                assert_eq!(v.payer, payment().payload.authorization.from);
                assert_eq!(v.authorization, payment().payload.authorization);
            }
        }
        let _ = PaymentRequired::decode_header(&value);
        let _ = SettleResponse::decode_header(&value);
        let _ = PaymentPayloadV1::<ExactEvmPayload>::decode_header(&value);
    }
    assert!(
        decoded_ok > 100,
        "the loop should reach the verifier ({decoded_ok})"
    );
}

#[test]
fn x402_mock_permit_checks_in_order() {
    use pay402_core::x402::permit::{PermitError, check_permit};
    let sk = SecretKey::from_slice(&[0x23; 32]).unwrap();
    let wallet: EvmAddress = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
        .parse()
        .unwrap();
    let domain = Eip712Domain::new(
        "USDC",
        "2",
        84532,
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .unwrap(),
    );
    let now = UnixTime(1_800_000_000);
    let price = TokenAmount::from_human("0.01", 6).unwrap();
    let permit = Eip2612Permit {
        owner: address_of(&sk),
        spender: wallet,
        value: price,
        nonce: U256::ZERO,
        deadline: EvmTimestamp::from_u64(now.0 + 600),
    };
    let sig = sign(&sk, permit.signing_hash(&domain));
    let check = |p: &Eip2612Permit, sig: &[u8], now: UnixTime| {
        check_permit(p, sig, &domain, &wallet, price, now).map_err(|e| e.reason())
    };
    assert_eq!(check(&permit, &sig, now), Ok(()));
    assert_eq!(check(&permit, &sig, UnixTime(now.0 + 600)), Ok(()));
    assert_eq!(
        check(&permit, &sig, UnixTime(now.0 + 601)),
        Err("permit_expired")
    );
    let mut other = permit.clone();
    other.spender = EvmAddress(Address::repeat_byte(1));
    assert_eq!(check(&other, &sig, now), Err("permit_spender_mismatch"));
    assert_eq!(
        check(&permit, &high_s(&sig), now),
        Err("invalid_permit_signature")
    );
    // A permit for less than the price, properly signed.
    let mut cheap = permit.clone();
    cheap.value = TokenAmount::from_u64(9_999);
    let cheap_sig = sign(&sk, cheap.signing_hash(&domain));
    assert_eq!(
        check_permit(&cheap, &cheap_sig, &domain, &wallet, price, now),
        Err(PermitError::InsufficientValue)
    );
    // Tampering with the value after signing breaks the signature first.
    assert_eq!(check(&cheap, &sig, now), Err("invalid_permit_signature"));
}
