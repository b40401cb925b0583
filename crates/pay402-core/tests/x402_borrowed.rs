//! The borrowed `PAYMENT-SIGNATURE` decode path: it agrees with the owned
//! path on the vector, on every mutation, and on every verification reason.

use std::borrow::Cow;

use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::borrowed::{InlineSignature, PaymentPayloadV2Ref};
use pay402_core::x402::evm::EvmSignature;
use pay402_core::x402::*;

const HEADER: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
const NOW_OK: UnixTime = UnixTime(1_740_672_100);

fn owned() -> PaymentPayloadV2 {
    PaymentPayloadV2::decode_header(HEADER).unwrap()
}

fn reason<T>(r: Result<T, exact::ExactEvmError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

#[test]
fn vector_decodes_borrowed_and_equals_owned() {
    let mut buf = Vec::new();
    let p = PaymentPayloadV2Ref::decode_header(HEADER, &mut buf).unwrap();
    assert!(matches!(p.accepted.network, Cow::Borrowed("eip155:84532")));
    assert!(matches!(p.payload.signature, InlineSignature::Eoa(_)));
    assert_eq!(
        p.resource.as_ref().map(|r| r.url.as_ref()),
        Some("https://api.example.com/premium-data")
    );
    assert_eq!(p.to_owned_payload(), owned());
    let offers = [owned().accepted];
    assert_eq!(p.select_requirement(&offers), Some(&offers[0]));
    let by_ref = exact::verify_v2_ref(&p, &offers[0], NOW_OK).unwrap();
    let by_owned = exact::verify_v2(&owned(), &offers[0], NOW_OK).unwrap();
    assert_eq!(by_ref, by_owned);
}

#[test]
fn escaped_strings_are_owned_and_still_verify() {
    let json = String::from_utf8(pay402_core::b64::decode_any(HEADER, 4096).unwrap()).unwrap();
    // "eip155:84532" with an escaped 'e'; "USDC" with an escaped 'U'.
    let json = json
        .replace(
            r#""network":"eip155:84532""#,
            r#""network":"\u0065ip155:84532""#,
        )
        .replace(r#""name":"USDC""#, r#""name":"\u0055SDC""#);
    let header = pay402_core::b64::encode_std(json.as_bytes());
    let mut buf = Vec::new();
    let p = PaymentPayloadV2Ref::decode_header(&header, &mut buf).unwrap();
    assert!(matches!(p.accepted.network, Cow::Owned(_)));
    assert_eq!(
        p.accepted.extra.as_ref().unwrap().name.as_deref(),
        Some("USDC")
    );
    let offers = [owned().accepted];
    let chosen = p.select_requirement(&offers).unwrap();
    assert!(exact::verify_v2_ref(&p, chosen, NOW_OK).is_ok());
}

#[test]
fn unknown_fields_and_extra_members_are_tolerated() {
    let json = String::from_utf8(pay402_core::b64::decode_any(HEADER, 4096).unwrap()).unwrap();
    let json = json
        .replacen(
            r#"{"x402Version":2,"#,
            r#"{"x402Version":2,"future":{"a":[1,{"b":null}]},"#,
            1,
        )
        .replace(
            r#""version":"2"}"#,
            r#""version":"2","assetTransferMethod":"eip3009","n":[1.5,true]}"#,
        )
        .replacen(r#""nonce":"#, r#""note":"hi","nonce":"#, 1);
    let header = pay402_core::b64::encode_std(json.as_bytes());
    let mut buf = Vec::new();
    let p = PaymentPayloadV2Ref::decode_header(&header, &mut buf).unwrap();
    let extra = p.accepted.extra.as_ref().unwrap();
    assert_eq!(extra.other.len(), 2);
    let owned_p: PaymentPayloadV2 = PaymentPayloadV2::decode_header(&header).unwrap();
    assert_eq!(p.to_owned_payload(), owned_p);
    // An offer with an extra member matches only when it is echoed.
    let mut offer = owned_p.accepted.clone();
    assert!(p.select_requirement(std::slice::from_ref(&offer)).is_some());
    offer
        .extra
        .as_mut()
        .unwrap()
        .other
        .insert("assetTransferMethod".into(), "permit2".into());
    assert!(p.select_requirement(std::slice::from_ref(&offer)).is_none());
    assert_eq!(
        select_requirement_v2(std::slice::from_ref(&offer), &owned_p.accepted).is_some(),
        p.select_requirement(std::slice::from_ref(&offer)).is_some()
    );
}

/// Every mutation gives the same reason on both paths.
#[test]
fn borrowed_and_owned_verify_agree() {
    type Mutation = fn(&mut PaymentPayloadV2, &mut PaymentRequirements);
    let cases: &[(&str, Mutation)] = &[
        ("none", |_, _| {}),
        ("version", |p, _| p.x402_version = 3),
        ("payment scheme", |p, _| p.accepted.scheme = "upto".into()),
        ("requirement scheme", |_, r| r.scheme = "upto".into()),
        ("no extra", |_, r| r.extra = None),
        ("network", |p, _| p.accepted.network = "eip155:8453".into()),
        ("amount", |_, r| r.amount = TokenAmount::from_u64(9_999)),
        ("pay_to", |_, r| {
            r.pay_to = "0x0000000000000000000000000000000000000001".into()
        }),
        ("value", |p, _| {
            p.payload.authorization.value = TokenAmount::from_u64(1)
        }),
        ("short signature", |p, _| {
            p.payload.signature = EvmSignature::from_bytes(vec![1; 64])
        }),
        ("smart-wallet signature", |p, _| {
            p.payload.signature = EvmSignature::from_bytes(vec![1; 200])
        }),
        ("bad v", |p, _| {
            let mut s = p.payload.signature.as_bytes().to_vec();
            s[64] = 29;
            p.payload.signature = EvmSignature::from_bytes(s);
        }),
        ("bad asset", |_, r| r.asset = "USDC".into()),
        ("unknown network", |_, r| r.network = "solana:x".into()),
    ];
    let mut buf = Vec::new();
    for (name, mutate) in cases {
        let mut p = owned();
        let mut r = p.accepted.clone();
        mutate(&mut p, &mut r);
        let header = p.encode_header();
        let pr = PaymentPayloadV2Ref::decode_header(&header, &mut buf).unwrap();
        for now in [1_740_672_000, NOW_OK.0, 1_740_672_149] {
            let now = UnixTime(now);
            assert_eq!(
                reason(exact::verify_v2_ref(&pr, &r, now)),
                reason(exact::verify_v2(&p, &r, now)),
                "{name} at {now:?}"
            );
        }
    }
}

#[test]
fn bad_headers_are_rejected_with_reasons() {
    let mut buf = Vec::new();
    assert_eq!(
        PaymentPayloadV2Ref::decode_header("", &mut buf),
        Err(HeaderError::Empty)
    );
    let big = "A".repeat(header::MAX_HEADER_LEN + 1);
    assert_eq!(
        PaymentPayloadV2Ref::decode_header(&big, &mut buf),
        Err(HeaderError::TooLarge)
    );
    assert_eq!(
        PaymentPayloadV2Ref::decode_header("!!!!", &mut buf),
        Err(HeaderError::Base64)
    );
    let json = String::from_utf8(pay402_core::b64::decode_any(HEADER, 4096).unwrap()).unwrap();
    for (from, to) in [
        (r#""signature":"0x"#, r#""signature":""#), // no prefix
        (r#""signature":"0x2d"#, r#""signature":"0xzz"#), // not hex (EOA length)
        (r#""signature":"0x2d"#, r#""signature":"0x2"#), // odd length
        (r#""amount":"10000""#, r#""amount":10000"#), // number, not string
        (r#""value":"10000""#, r#""value":"-1""#),
        (r#""from":"0x857b"#, r#""from":"0x857"#),
        (r#""x402Version":2"#, r#""x402Version":"2""#),
    ] {
        assert!(json.contains(from), "{from}");
        let bad = pay402_core::b64::encode_std(json.replacen(from, to, 1).as_bytes());
        let err = PaymentPayloadV2Ref::decode_header(&bad, &mut buf).unwrap_err();
        assert!(matches!(err, HeaderError::Json(_)), "{to}: {err:?}");
        assert_eq!(err.reason(), "invalid_payload");
        // The owned path rejects the same inputs.
        assert!(
            PaymentPayloadV2::<ExactEvmPayload>::decode_header(&bad).is_err(),
            "{to}"
        );
    }
    // Invalid UTF-8 inside the JSON.
    let mut bytes = json.into_bytes();
    let at = bytes.iter().position(|&b| b == b'U').unwrap();
    bytes[at] = 0xff;
    let bad = pay402_core::b64::encode_std(&bytes);
    assert!(matches!(
        PaymentPayloadV2Ref::decode_header(&bad, &mut buf),
        Err(HeaderError::Json(_))
    ));
}

/// The owned and borrowed decoders accept exactly the same mutated inputs,
/// and agree on the result.
#[test]
fn mutations_agree_with_the_owned_decoder() {
    let json = pay402_core::b64::decode_any(HEADER, 4096).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut buf = Vec::new();
    let mut both_ok = 0;
    for _ in 0..10_000 {
        let mut j = json.clone();
        for _ in 0..=(next() % 3) {
            let at = (next() % j.len() as u64) as usize;
            j[at] = match next() % 4 {
                0 => b'0' + (next() % 10) as u8,
                1 => b"0123456789abcdefABCDEF"[(next() % 22) as usize],
                2 => b"\"{}[],:\\"[(next() % 8) as usize],
                _ => next() as u8,
            };
        }
        let value = pay402_core::b64::encode_std(&j);
        let o = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&value);
        let b = PaymentPayloadV2Ref::decode_header(&value, &mut buf);
        match (o, b) {
            (Ok(o), Ok(b)) => {
                both_ok += 1;
                assert_eq!(b.to_owned_payload(), o);
            }
            (Err(_), Err(_)) => {}
            (o, b) => panic!("disagree on {value}: {o:?} vs {b:?}"),
        }
    }
    assert!(both_ok > 100, "{both_ok}");
}

/// The in-place deserializer keeps a derive's rules: required fields,
/// duplicates rejected, nulls for optional fields, unknown fields ignored.
#[test]
fn field_rules_match_the_owned_decoder() {
    let json = String::from_utf8(pay402_core::b64::decode_any(HEADER, 4096).unwrap()).unwrap();
    let cases: Vec<(String, bool)> = vec![
        (json.replacen(r#""x402Version":2,"#, "", 1), false),
        (json.replacen(r#""scheme":"exact","#, "", 1), false),
        (json.replacen(r#""nonce":"#, r#""nonce2":"#, 1), false),
        (
            json.replacen(
                r#"{"x402Version":2,"#,
                r#"{"x402Version":2,"x402Version":2,"#,
                1,
            ),
            false,
        ),
        (json.replacen(r#""to":"#, r#""value":"1","to":"#, 1), false),
        (
            json.replacen(
                r#""scheme":"exact","#,
                r#""scheme":"exact","payTo":"x","#,
                1,
            ),
            false,
        ),
        (
            json.replacen(
                r#"{"x402Version":2,"#,
                r#"{"x402Version":2,"extensions":null,"#,
                1,
            ),
            true,
        ),
        (
            json.replacen(
                r#""maxTimeoutSeconds":60,"#,
                r#""maxTimeoutSeconds":60,"z":{},"#,
                1,
            ),
            true,
        ),
        (
            json.replacen(r#""maxTimeoutSeconds":60"#, r#""maxTimeoutSeconds":-1"#, 1),
            false,
        ),
        (
            json.replacen(r#""network":"eip155:84532""#, r#""network":1"#, 1),
            false,
        ),
        // A repeated EIP-712 domain `name` or `version` is refused (no
        // first-wins / last-wins ambiguity between parsers).
        (
            json.replacen(
                r#""version":"2"}"#,
                r#""version":"2","name":"USD Coin"}"#,
                1,
            ),
            false,
        ),
        (
            json.replacen(r#""name":"USDC""#, r#""version":1,"name":"USDC""#, 1),
            false,
        ),
        ("[]".into(), false),
        ("null".into(), false),
        (format!("{json} x"), false),
    ];
    let mut with_null_resource = json.clone();
    let start = with_null_resource.find(r#""resource":"#).unwrap() + r#""resource":"#.len();
    let end = with_null_resource.find(r#","accepted""#).unwrap();
    with_null_resource.replace_range(start..end, "null");
    let cases = cases.into_iter().chain([(with_null_resource, true)]);
    let mut buf = Vec::new();
    for (case, ok) in cases {
        let header = pay402_core::b64::encode_std(case.as_bytes());
        let owned = PaymentPayloadV2::<ExactEvmPayload>::decode_header(&header);
        let borrowed = PaymentPayloadV2Ref::decode_header(&header, &mut buf);
        assert_eq!(owned.is_ok(), ok, "owned: {case}");
        assert_eq!(borrowed.is_ok(), ok, "borrowed: {case}");
        if let (Ok(o), Ok(b)) = (owned, borrowed) {
            assert_eq!(b.to_owned_payload(), o);
        }
    }
}
