//! The x402_mock dialect: wire types round-trip, permits are checked in
//! order with fresh signatures, and the access token is bound and rejects
//! every kind of bad input with a stable reason.

use alloy_primitives::{Address, U256, keccak256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::{Bytes32, EvmAddress};
use pay402_core::x402::mock::*;
use pay402_core::x402::permit::PermitError;
use secp256k1::{Message, SECP256K1, SecretKey};

const BODY_402: &str = r#"{"reason":"payment required","access_token_endpoint":"/token","payment_scheme":{"payment_components":[{"payment_type":"evm","amount":0.01,"currency":"USDC","token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","chain_id":84532,"metadata":{"symbol":"USDC","name":"USDC","decimals":6,"network":"base-sepolia","version":"2","wallet_address":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"},"created_at":"2026-01-01T00:00:00Z"}],"protocol_version":"Version 0.1"},"payment_instruction":{"note":"sign an EIP-2612 permit"}}"#;

fn component() -> EvmPaymentComponent {
    let body: MockPaymentRequired = serde_json::from_str(BODY_402).unwrap();
    body.payment_scheme.payment_components[0].clone()
}

fn address_of(sk: &SecretKey) -> EvmAddress {
    let pk = sk.public_key(SECP256K1).serialize_uncompressed();
    EvmAddress(Address::from_slice(&keccak256(&pk[1..])[12..]))
}

/// A permit for `component()` signed by `sk`.
fn signed_permit(sk: &SecretKey, value: u64, deadline: u64) -> MockPermit {
    let c = component();
    let mut p = MockPermit {
        permit_type: "EIP2612".into(),
        owner: address_of(sk),
        spender: c.metadata.wallet_address,
        token: c.token,
        value: U256::from(value),
        nonce: U256::from(3u8),
        deadline: U256::from(deadline),
        chain_id: c.chain_id,
        signature: MockPermitSignature {
            signature_type: "EIP2612".into(),
            v: 27,
            r: Bytes32::default(),
            s: Bytes32::default(),
        },
        created_at: None,
    };
    let digest = p.to_eip2612().signing_hash(&c.domain());
    let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest.0), sk);
    let (id, rs) = sig.serialize_compact();
    p.signature.r = Bytes32(rs[..32].try_into().unwrap());
    p.signature.s = Bytes32(rs[32..].try_into().unwrap());
    p.signature.v = 27 + id.to_i32() as u8;
    p
}

#[test]
fn body_402_round_trips() {
    let body: MockPaymentRequired = serde_json::from_str(BODY_402).unwrap();
    assert_eq!(serde_json::to_string(&body).unwrap(), BODY_402);
    assert_eq!(body.payment_scheme.protocol_version, MOCK_PROTOCOL_VERSION);
    let c = &body.payment_scheme.payment_components[0];
    assert_eq!(
        c.required_base_units().unwrap(),
        TokenAmount::from_u64(10_000)
    );
    assert_eq!(c.domain().name, "USDC");
    // Unknown fields are tolerated.
    let more = BODY_402.replacen(r#"{"reason""#, r#"{"future":1,"reason""#, 1);
    assert_eq!(
        serde_json::from_str::<MockPaymentRequired>(&more).unwrap(),
        body
    );
    // `payment_methods` is not the field name.
    let wrong = BODY_402.replace("payment_components", "payment_methods");
    assert!(serde_json::from_str::<MockPaymentRequired>(&wrong).is_err());
}

#[test]
fn float_amounts_convert_exactly_or_not_at_all() {
    let mut c = component();
    for (amount, decimals, want) in [
        (0.01, 6, Some(10_000u64)),
        (1.0, 6, Some(1_000_000)),
        (12.5, 6, Some(12_500_000)),
        (0.000001, 6, Some(1)),
        (0.0, 6, Some(0)),
        (1.0, 18, Some(1_000_000_000_000_000_000)),
        (0.0000001, 6, None),
        (0.1 + 0.2, 6, None),
        (-1.0, 6, None),
        (f64::INFINITY, 6, None),
        (f64::NAN, 6, None),
    ] {
        c.amount = amount;
        c.metadata.decimals = decimals;
        match want {
            Some(w) => assert_eq!(
                c.required_base_units(),
                Ok(TokenAmount::from_u64(w)),
                "{amount}"
            ),
            None => assert_eq!(
                c.required_base_units(),
                Err(MockError::InvalidAmount),
                "{amount}"
            ),
        }
    }
}

#[test]
fn component_selection_requires_the_chain() {
    let c = component();
    let mut mainnet = c.clone();
    mainnet.chain_id = 8453;
    mainnet.amount = 0.001;
    let comps = [mainnet.clone(), c.clone()];
    // The seed would pick the first (same token address); chain decides here.
    let got = select_component(&comps, 84532, &c.token, TokenAmount::from_u64(10_000)).unwrap();
    assert_eq!(got.chain_id, 84532);
    let got = select_component(&comps, 8453, &c.token, TokenAmount::from_u64(10_000)).unwrap();
    assert_eq!(got.chain_id, 8453);
    assert!(select_component(&comps, 1, &c.token, TokenAmount::from_u64(u64::MAX)).is_none());
    let mut other_type = c.clone();
    other_type.payment_type = "svm".into();
    assert!(
        select_component(
            &[other_type],
            84532,
            &c.token,
            TokenAmount::from_u64(10_000)
        )
        .is_none()
    );
}

#[test]
fn permit_body_round_trips_and_accepts_string_numbers() {
    let sk = SecretKey::from_slice(&[0x31; 32]).unwrap();
    let req = MockPermitRequest {
        version: MOCK_PROTOCOL_VERSION.into(),
        permit: signed_permit(&sk, 10_000, 1_800_000_600),
    };
    let json = serde_json::to_string(&req).unwrap();
    assert!(json.contains(r#""value":10000,"nonce":3,"deadline":1800000600"#));
    assert_eq!(
        serde_json::from_str::<MockPermitRequest>(&json).unwrap(),
        req
    );
    let strings = json
        .replace(r#""value":10000"#, r#""value":"10000""#)
        .replace(r#""deadline":1800000600"#, r#""deadline":"1800000600""#);
    assert_eq!(
        serde_json::from_str::<MockPermitRequest>(&strings).unwrap(),
        req
    );
    // Beyond u64: written as a decimal string, read back.
    let mut big = req.clone();
    big.permit.value = U256::MAX;
    let json = serde_json::to_string(&big).unwrap();
    assert_eq!(
        serde_json::from_str::<MockPermitRequest>(&json).unwrap(),
        big
    );
    for bad in [
        r#""value":-1"#,
        r#""value":1.5"#,
        r#""value":"0x10""#,
        r#""value":null"#,
    ] {
        let j = strings.replace(r#""value":"10000""#, bad);
        assert!(
            serde_json::from_str::<MockPermitRequest>(&j).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn permit_checks_in_order_with_reasons() {
    let sk = SecretKey::from_slice(&[0x31; 32]).unwrap();
    let c = component();
    let now = UnixTime(1_800_000_000);
    let good = signed_permit(&sk, 10_000, 1_800_000_600);
    assert_eq!(good.check(&c, now), Ok(()));
    // Paying more than the price is fine (the seed's rule: value >= price).
    assert_eq!(
        signed_permit(&sk, 20_000, 1_800_000_600).check(&c, now),
        Ok(())
    );

    type Case = (
        &'static str,
        fn(&mut MockPermit, &mut EvmPaymentComponent),
        &'static str,
    );
    let cases: &[Case] = &[
        (
            "permit type",
            |p, _| p.permit_type = "Permit2".into(),
            "mock_unsupported_permit_type",
        ),
        (
            "signature type",
            |p, _| p.signature.signature_type = "EIP3009".into(),
            "mock_unsupported_permit_type",
        ),
        (
            "token",
            |p, _| p.token = EvmAddress::default(),
            "mock_component_mismatch",
        ),
        ("chain", |p, _| p.chain_id = 8453, "mock_component_mismatch"),
        (
            "bad component amount",
            |_, c| c.amount = 0.0000001,
            "mock_invalid_amount",
        ),
        (
            "spender",
            |p, _| p.spender = EvmAddress::default(),
            "permit_spender_mismatch",
        ),
        (
            "deadline",
            |p, _| p.deadline = U256::from(1_799_999_999u64),
            "permit_expired",
        ),
        (
            "value changed after signing",
            |p, _| p.value = U256::from(10_001u64),
            "invalid_permit_signature",
        ),
        ("v", |p, _| p.signature.v = 29, "invalid_permit_signature"),
        (
            "domain version",
            |_, c| c.metadata.version = "1".into(),
            "invalid_permit_signature",
        ),
        (
            "price above value",
            |_, c| c.amount = 0.02,
            "permit_insufficient_value",
        ),
        // Spender is checked before the deadline, the deadline before the signature.
        (
            "spender and deadline",
            |p, _| {
                p.spender = EvmAddress::default();
                p.deadline = U256::ZERO;
            },
            "permit_spender_mismatch",
        ),
        (
            "deadline and signature",
            |p, _| {
                p.deadline = U256::ZERO;
                p.signature.v = 29;
            },
            "permit_expired",
        ),
    ];
    for (name, mutate, want) in cases {
        let mut p = good.clone();
        let mut comp = c.clone();
        mutate(&mut p, &mut comp);
        let err = p.check(&comp, now).unwrap_err();
        assert_eq!(err.reason(), *want, "{name}");
    }
    assert_eq!(
        signed_permit(&sk, 9_999, 1_800_000_600).check(&c, now),
        Err(MockError::Permit(PermitError::InsufficientValue))
    );
}

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66"
            .parse()
            .unwrap(),
        resource: "GET /premium".into(),
        amount: TokenAmount::from_u64(10_000),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
            .parse()
            .unwrap(),
        chain_id: 84532,
        iat: 1_800_000_000,
        exp: 1_800_003_600,
        jti: Bytes32([0xab; 32]),
    }
}

const KEY: [u8; 32] = [0x5a; 32];

#[test]
fn access_token_vector_and_round_trip() {
    let token = issue_access_token(&claims(), &KEY).unwrap();
    // A fixed vector: the format must not drift silently.
    let payload = r#"{"sub":"0x857b06519E91e3A54538791bDbb0E22373e36b66","res":"GET /premium","amt":"10000","ast":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","cid":84532,"iat":1800000000,"exp":1800003600,"jti":"0xabababababababababababababababababababababababababababababababab"}"#;
    let (head, tag) = token.rsplit_once('.').unwrap();
    assert_eq!(head, format!("x4m1.{}", URL_SAFE_NO_PAD.encode(payload)));
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&KEY).unwrap();
    m.update(head.as_bytes());
    assert_eq!(tag, URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
    // Valid over [iat, exp).
    for now in [1_800_000_000, 1_800_003_599] {
        assert_eq!(
            verify_access_token(&token, &KEY, "GET /premium", UnixTime(now)).unwrap(),
            claims()
        );
    }
}

#[test]
fn access_token_rejections_have_stable_reasons() {
    let now = UnixTime(1_800_000_100);
    let token = issue_access_token(&claims(), &KEY).unwrap();
    let reason =
        |t: &str, key: &[u8], res: &str, now: UnixTime| match verify_access_token(t, key, res, now)
        {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
    assert_eq!(reason(&token, &KEY, "GET /premium", now), "ok");
    // Expiry, no leeway.
    assert_eq!(
        reason(&token, &KEY, "GET /premium", UnixTime(1_800_003_600)),
        "access_token_expired"
    );
    assert_eq!(
        reason(&token, &KEY, "GET /premium", UnixTime(u64::MAX)),
        "access_token_expired"
    );
    // Bound to the resource, exactly.
    for other in ["GET /premium/", "GET /other", "get /premium", ""] {
        assert_eq!(
            reason(&token, &KEY, other, now),
            "access_token_wrong_resource",
            "{other}"
        );
    }
    // Wrong key.
    assert_eq!(
        reason(&token, &[0x5b; 32], "GET /premium", now),
        "access_token_bad_signature"
    );
    // Tampered payload, correctly encoded: a different resource, payer or amount.
    let (head, tag) = token.rsplit_once('.').unwrap();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&head[5..]).unwrap()).unwrap();
    for (from, to) in [
        ("GET /premium", "GET /other"),
        (r#""amt":"10000""#, r#""amt":"1""#),
        ("0x857b", "0x957b"),
        (r#""exp":1800003600"#, r#""exp":1900003600"#),
    ] {
        let forged = format!(
            "x4m1.{}.{tag}",
            URL_SAFE_NO_PAD.encode(payload.replace(from, to))
        );
        assert_eq!(
            reason(&forged, &KEY, "GET /premium", now),
            "access_token_bad_signature",
            "{to}"
        );
    }
    // A flipped tag bit.
    let mut t = URL_SAFE_NO_PAD.decode(tag).unwrap();
    t[31] ^= 1;
    let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&t));
    assert_eq!(
        reason(&flipped, &KEY, "GET /premium", now),
        "access_token_bad_signature"
    );
    // The seed's unbound format (no prefix) is refused.
    let seed_style = format!("{}.{tag}", &head[5..]);
    assert_eq!(
        reason(&seed_style, &KEY, "GET /premium", now),
        "access_token_malformed"
    );
    // Malformed shapes.
    let long = "x".repeat(MAX_TOKEN_LEN + 1);
    for bad in [
        "",
        "x4m1.",
        "x4m1..",
        "x4m1.abc",
        head,
        &format!("{head}.{tag}.x"),
        &format!("{head}.{}", &tag[..tag.len() - 1]),
        &format!("{head}.{tag}A"),
        &format!("{head}.!!!"),
        &format!("{head}.{tag}="),
        &format!("Bearer {token}"),
        long.as_str(),
    ] {
        assert_eq!(
            reason(bad, &KEY, "GET /premium", now),
            "access_token_malformed",
            "{bad}"
        );
    }
    // Correctly signed but not claims: still malformed (parsed after the MAC).
    let sign = |payload: &[u8]| {
        let head = format!("x4m1.{}", URL_SAFE_NO_PAD.encode(payload));
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&KEY).unwrap();
        m.update(head.as_bytes());
        format!(
            "{head}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    };
    let extra_field = payload.replacen('{', r#"{"admin":true,"#, 1);
    for p in [&b"not json"[..], b"{}", b"\xff\xfe", extra_field.as_bytes()] {
        assert_eq!(
            reason(&sign(p), &KEY, "GET /premium", now),
            "access_token_malformed"
        );
    }
    assert_eq!(
        reason(&sign(payload.as_bytes()), &KEY, "GET /premium", now),
        "ok"
    );
    // Short keys are a configuration error on both sides.
    assert_eq!(
        issue_access_token(&claims(), &[1; 31]),
        Err(AccessTokenError::KeyTooShort)
    );
    assert_eq!(
        reason(&token, &KEY[..31], "GET /premium", now),
        "access_token_key_too_short"
    );
    assert_eq!(AccessTokenError::KeyTooShort.status(), 500);
    assert_eq!(AccessTokenError::BadSignature.status(), 401);
}

#[test]
fn token_response_shape() {
    let r = AccessTokenResponse::bearer("x4m1.a.b".into(), 3600);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        r#"{"access_token":"x4m1.a.b","token_type":"Bearer","expires_in":3600}"#
    );
    let with_meta: AccessTokenResponse = serde_json::from_str(
        r#"{"access_token":"t","token_type":"Bearer","expires_in":1,"metadata":{"payer":"0x1"}}"#,
    )
    .unwrap();
    assert!(with_meta.metadata.is_some());
}

#[test]
fn token_response_debug_hides_the_bearer_token() {
    let r = AccessTokenResponse::bearer("x4m1.secret-payload.tag".into(), 3600);
    let shown = format!("{r:?}");
    assert!(!shown.contains("secret-payload"), "{shown}");
    assert!(shown.contains("expires_in: 3600"), "{shown}");
}
