//! Bit-transfer: byte-exact JSON (checked against CPython's json.dumps), signing, verification.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use pay402_core::bitreq::transfer::{parse_compact, sign_header, verify};
use pay402_core::bitreq::*;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use sha2::{Digest, Sha256};

const CUSTOMER: &str = "83407377a24a5cef75dedb0445d2da3a5389ed34c0f0c57266b1ed0a5ebb30c1";

fn key() -> SecretKey {
    SecretKey::from_slice(&hex::decode(CUSTOMER).unwrap()).unwrap()
}

fn transfer(description: &str, timestamp: f64) -> BitTransfer {
    BitTransfer {
        payer: "Bitcoiner11".into(),
        payer_pubkey: key().public_key(&Secp256k1::new()),
        payee_address: "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".into(),
        payee_username: "HelloNakaMoto".into(),
        amount: Sat(1000),
        timestamp,
        description: description.into(),
    }
}

/// Produced by CPython 3 `json.dumps` of the same dict (insertion order), with
/// `payer_pubkey = codecs.encode(pk33, 'base64').decode()`.
const PY_JSON: &str = r#"{"payer": "Bitcoiner11", "payer_pubkey": "A+4HHJXLdy5Xptj0+YfpxhuFfmPZ87W+eoS9ugtYRwmd\n", "payee_address": "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM", "payee_username": "HelloNakaMoto", "amount": 1000, "timestamp": 1453338704.678601, "description": "https://h/x?q=\"\u00e9\\\t\u00f1\ud83d\ude00\u007f"}"#;

#[test]
fn json_matches_python_byte_for_byte() {
    let t = transfer("https://h/x?q=\"é\\\tñ😀\u{7f}", 1453338704.678601);
    assert_eq!(t.to_header().unwrap(), PY_JSON);
    let whole = transfer("u", 1700000000.0).to_header().unwrap();
    assert!(whole.contains("\"timestamp\": 1700000000.0, "));
}

#[test]
fn signature_is_rfc6979_low_s_over_sha256_of_header() {
    let header = transfer("https://example.com/r", 1453338704.678601)
        .to_header()
        .unwrap();
    let auth = sign_header(&header, &key());
    assert_eq!(auth.len(), 88);
    let raw = STANDARD.decode(&auth).unwrap();
    assert_eq!(raw.len(), 64);
    // Same as a bare libsecp256k1 signature of the digest.
    let digest: [u8; 32] = Sha256::digest(header.as_bytes()).into();
    let bare = Secp256k1::new().sign_ecdsa(&Message::from_digest(digest), &key());
    assert_eq!(raw, bare.serialize_compact());
    let v = verify(&header, &auth).unwrap();
    assert_eq!(v.id, digest);
    assert_eq!(v.amount, Sat(1000));
    assert_eq!(v.payer, "Bitcoiner11");
    assert_eq!(v.payee_username.as_deref(), Some("HelloNakaMoto"));
    assert_eq!(
        v.payee_address.as_deref(),
        Some("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM")
    );
    assert_eq!(v.description, "https://example.com/r");
    assert_eq!(v.timestamp_secs().0, 1453338704);
    v.check_payment(
        Sat(1000),
        AmountRule::Exact,
        Some("HelloNakaMoto"),
        Some("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM"),
    )
    .unwrap();
}

#[test]
fn proof_headers_roundtrip_through_header_map() {
    let signed = transfer("u", 1.5).sign(&key()).unwrap();
    let mut map = http::HeaderMap::new();
    signed.clone().into_proof().insert_into(&mut map).unwrap();
    let Proof::Transfer {
        transfer,
        authorization,
    } = Proof::from_header_map(&map).unwrap()
    else {
        panic!("not a transfer")
    };
    assert_eq!(transfer, signed.transfer);
    verify(&transfer, &authorization).unwrap();
}

/// `n - s` for a 32-byte big-endian s.
fn negate_s(s: &[u8]) -> Vec<u8> {
    let n =
        hex::decode("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141").unwrap();
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = n[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    out
}

#[test]
fn transfer_rejections_have_stable_reasons() {
    let header = transfer("u", 5.0).to_header().unwrap();
    let auth = sign_header(&header, &key());
    let raw = STANDARD.decode(&auth).unwrap();
    let mut high = raw[..32].to_vec();
    high.extend(negate_s(&raw[32..]));
    let high = STANDARD.encode(high);
    let other = sign_header(&header, &SecretKey::from_slice(&[9; 32]).unwrap());
    let no_pk = r#"{"payer": "a", "payee_username": "b", "amount": 1, "timestamp": 1.0, "description": ""}"#;
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "bad signature (other key)",
            header.clone(),
            other,
            "invalid_signature",
        ),
        (
            "tampered header",
            header.replace("1000", "1001"),
            auth.clone(),
            "invalid_signature",
        ),
        ("high-S", header.clone(), high, "high_s_signature"),
        (
            "malformed base64",
            header.clone(),
            "!".repeat(88),
            "malformed_signature",
        ),
        (
            "short signature",
            header.clone(),
            STANDARD.encode([1u8; 63]),
            "malformed_signature",
        ),
        (
            "malformed JSON",
            "{\"payer\": ".into(),
            auth.clone(),
            "malformed_transfer",
        ),
        (
            "decimal amount",
            header.replace("1000", "1000.5"),
            auth.clone(),
            "malformed_transfer",
        ),
        (
            "negative amount",
            header.replace("1000", "-1000"),
            auth.clone(),
            "malformed_transfer",
        ),
        (
            "no payer_pubkey",
            no_pk.into(),
            auth.clone(),
            "malformed_transfer",
        ),
        (
            "bad pubkey",
            header.replace("A+4H", "B+4H"),
            auth.clone(),
            "invalid_public_key",
        ),
        (
            "oversized transfer",
            "x".repeat(9000),
            auth.clone(),
            "header_too_long",
        ),
        (
            "oversized authorization",
            header.clone(),
            "A".repeat(200),
            "header_too_long",
        ),
    ];
    for (name, t, a, reason) in cases {
        let e = verify(&t, &a).expect_err(name);
        assert_eq!(e.reason(), reason, "{name}: {e:?}");
    }
    assert_eq!(
        parse_compact(&auth).unwrap().serialize_compact().to_vec(),
        raw
    );
}

#[test]
fn timestamp_range() {
    for bad in [f64::NAN, f64::INFINITY, -1.0, 1e16, 1e-5] {
        assert_eq!(
            transfer("u", bad).to_header(),
            Err(BitreqError::MalformedTransfer)
        );
    }
    assert!(
        transfer("u", 0.0)
            .to_header()
            .unwrap()
            .contains("\"timestamp\": 0.0,")
    );
}
