//! Hostile and malformed credentials through the whole server: every one gets
//! a 4xx problem+json with a stable reason, nothing panics or answers 5xx, and
//! the server keeps serving paid requests afterwards.

mod common;

use axum::body::Body;
use common::*;
use http::{HeaderValue, Request, StatusCode, header};
use pay402_core::b64;
use pay402_core::l402::{Identifier, Macaroon, RootKey, TokenId};
use pay402_core::lightning::Preimage;
use pay402_server::{L402Config, RejectMode};

fn split(auth: &str) -> (String, String) {
    let (m, p) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    (m.to_owned(), p.to_owned())
}

/// Re-encodes the macaroon after `f` edits its V2 bytes.
fn with_bytes(mac: &str, f: impl Fn(&mut Vec<u8>)) -> String {
    let mut bytes = b64::decode_any(mac, 1 << 20).unwrap();
    f(&mut bytes);
    b64::encode_std(&bytes)
}

fn rows(auth: &str) -> Vec<(String, Vec<u8>, &'static str)> {
    let (mac, pre) = split(auth);
    let good = Macaroon::from_base64(&mac).unwrap();
    let bytes = good.encode_v2();
    let mut rows: Vec<(String, Vec<u8>, &'static str)> = Vec::new();
    let mut add = |name: &str, value: Vec<u8>, reason: &'static str| {
        rows.push((name.to_owned(), value, reason));
    };
    let s = |v: String| v.into_bytes();
    add("scheme only", s("L402".into()), "malformed_credential");
    add(
        "scheme and space",
        s("L402 ".into()),
        "malformed_credential",
    );
    add("no colon", s(format!("L402 {mac}")), "malformed_credential");
    add(
        "empty macaroon",
        s(format!("L402 :{pre}")),
        "malformed_credential",
    );
    add(
        "empty preimage",
        s(format!("L402 {mac}:")),
        "invalid_preimage",
    );
    add(
        "short preimage",
        s(format!("L402 {mac}:{}", &pre[..62])),
        "invalid_preimage",
    );
    add(
        "long preimage",
        s(format!("L402 {mac}:{pre}00")),
        "invalid_preimage",
    );
    add(
        "odd preimage",
        s(format!("L402 {mac}:{}0", &pre[..62])),
        "invalid_preimage",
    );
    add(
        "non-hex preimage",
        s(format!("L402 {mac}:{}", "zz".repeat(32))),
        "invalid_preimage",
    );
    add(
        "preimage with space",
        s(format!("L402 {mac}: {}", &pre[..63])),
        "invalid_preimage",
    );
    add(
        "bad base64 chars",
        s(format!("L402 {}!:{pre}", &mac[..10])),
        "malformed_credential",
    );
    add(
        "base64 with space",
        s(format!("L402 {} {}:{pre}", &mac[..8], &mac[8..])),
        "malformed_credential",
    );
    add(
        "bad base64 length",
        s(format!("L402 A:{pre}")),
        "invalid_base64",
    );
    add(
        "mixed alphabets",
        s(format!("L402 {}-+:{pre}", &mac[..8])),
        "invalid_base64",
    );
    add(
        "trailing comma",
        s(format!("L402 {mac},:{pre}")),
        "malformed_credential",
    );
    add(
        "two macaroons",
        s(format!("L402 {mac},{mac}:{pre}")),
        "multiple_macaroons",
    );
    add(
        "nine macaroons",
        s(format!("L402 {}:{pre}", [mac.as_str(); 9].join(","))),
        "malformed_credential",
    );
    add(
        "oversized header",
        s(format!("L402 {}:{pre}", "A".repeat(20_000))),
        "credential_too_large",
    );
    add(
        "oversized macaroon",
        s(format!("L402 {}:{pre}", "A".repeat(12_000))),
        "macaroon_too_large",
    );
    add(
        "non-utf8 bytes",
        [b"L402 ".as_slice(), &[0xff, 0xfe], b":00"].concat(),
        "malformed_credential",
    );
    add(
        "latin-1 in macaroon",
        [b"L402 Ag".as_slice(), &[0xe9], format!(":{pre}").as_bytes()].concat(),
        "malformed_credential",
    );
    add(
        "not a macaroon",
        s(format!("L402 {}:{pre}", b64::encode_std(b"hello world"))),
        "unsupported_macaroon",
    );
    add(
        "v1 macaroon",
        s(format!(
            "L402 {}:{pre}",
            b64::encode_std(b"0012location x\n")
        )),
        "unsupported_macaroon",
    );
    for cut in [
        1usize,
        2,
        5,
        20,
        68,
        69,
        70,
        bytes.len() - 33,
        bytes.len() - 1,
    ] {
        let t = b64::encode_std(&bytes[..cut]);
        add(
            &format!("truncated at {cut}"),
            s(format!("L402 {t}:{pre}")),
            "malformed_macaroon",
        );
    }
    add(
        "trailing bytes",
        s(format!("L402 {}:{pre}", with_bytes(&mac, |b| b.push(0)))),
        "malformed_macaroon",
    );
    add(
        "varint overflow",
        s(format!(
            "L402 {}:{pre}",
            b64::encode_std(&[
                2, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
        )),
        "malformed_macaroon",
    );
    add(
        "huge field length",
        s(format!(
            "L402 {}:{pre}",
            b64::encode_std(&[2, 2, 0xff, 0xff, 0x03, 0])
        )),
        "malformed_macaroon",
    );
    add(
        "flipped signature byte",
        s(format!(
            "L402 {}:{pre}",
            with_bytes(&mac, |b| {
                let n = b.len() - 1;
                b[n] ^= 0x80;
            })
        )),
        "invalid_signature",
    );
    add(
        "zeroed signature",
        s(format!(
            "L402 {}:{pre}",
            with_bytes(&mac, |b| {
                let n = b.len();
                b[n - 32..].fill(0);
            })
        )),
        "invalid_signature",
    );
    // Tamper with the caveat text: "services=api:0" -> "services=apj:0"
    add(
        "tampered caveat",
        s(format!(
            "L402 {}:{pre}",
            with_bytes(&mac, |b| {
                let pos = b.windows(12).position(|w| w == b"services=api").unwrap();
                b[pos + 11] = b'j';
            })
        )),
        "invalid_signature",
    );
    let mut appended = good.clone();
    appended.add_first_party_caveat("api_valid_until=99999999999");
    let mut raw = appended.encode_v2();
    let n = raw.len();
    raw[n - 32..].copy_from_slice(good.signature());
    add(
        "appended caveat, old signature",
        s(format!("L402 {}:{pre}", b64::encode_std(&raw))),
        "invalid_signature",
    );
    // A properly attenuated token that widens nothing still works, one that
    // widens the expiry is refused.
    let mut narrowed = good.clone();
    narrowed.add_first_party_caveat("api_valid_until=1");
    add(
        "attenuated to the past",
        s(format!("L402 {}:{pre}", narrowed.to_base64())),
        "token_expired",
    );
    let mut other_service = good.clone();
    other_service.add_first_party_caveat("services=other:0");
    add(
        "attenuated to other service",
        s(format!("L402 {}:{pre}", other_service.to_base64())),
        "caveat_escalation",
    );
    let mut bad_services = good.clone();
    bad_services.add_first_party_caveat("services=api");
    add(
        "malformed services caveat",
        s(format!("L402 {}:{pre}", bad_services.to_base64())),
        "malformed_caveat",
    );
    let mut bad_time = good.clone();
    bad_time.add_first_party_caveat("api_valid_until=soon");
    add(
        "malformed valid_until",
        s(format!("L402 {}:{pre}", bad_time.to_base64())),
        "malformed_caveat",
    );
    let mut bound = good.clone();
    bound.add_first_party_caveat(
        "request=POST /elsewhere e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    add(
        "bound to another request",
        s(format!("L402 {}:{pre}", bound.to_base64())),
        "request_mismatch",
    );
    add(
        "wrong preimage",
        s(format!("L402 {mac}:{}", "11".repeat(32))),
        "preimage_mismatch",
    );
    add(
        "all-zero preimage",
        s(format!("L402 {mac}:{}", "00".repeat(32))),
        "preimage_mismatch",
    );
    // Forged tokens: valid structure, never minted here.
    let forged_pre = Preimage::from_bytes([5; 32]);
    let forged_id = Identifier::new(forged_pre.payment_hash(), TokenId([6; 32]));
    let mut forged = Macaroon::new(
        &RootKey::from_bytes([7; 32]),
        Some("lsat"),
        &forged_id.encode(),
    );
    forged.add_first_party_caveat("services=api:0");
    // Root keys are derived from the server secret, so a token never minted
    // here fails its signature without any store lookup.
    add(
        "forged token, unknown id",
        s(format!(
            "L402 {}:{}",
            forged.to_base64(),
            forged_pre.to_hex()
        )),
        "invalid_signature",
    );
    let real_id = Identifier::decode(good.identifier()).unwrap();
    let wrong_key = Macaroon::new(
        &RootKey::from_bytes([8; 32]),
        Some("lsat"),
        &real_id.encode(),
    );
    add(
        "right id, wrong root key",
        s(format!("L402 {}:{pre}", wrong_key.to_base64())),
        "invalid_signature",
    );
    let mut v1 = real_id.encode().to_vec();
    v1[1] = 1;
    let v1mac = Macaroon::new(&RootKey::from_bytes([8; 32]), None, &v1);
    add(
        "identifier version 1",
        s(format!("L402 {}:{pre}", v1mac.to_base64())),
        "unknown_identifier_version",
    );
    let short = Macaroon::new(&RootKey::from_bytes([8; 32]), None, b"short-id");
    add(
        "identifier too short",
        s(format!("L402 {}:{pre}", short.to_base64())),
        "malformed_identifier",
    );
    let hexish = Macaroon::new(&RootKey::from_bytes([8; 32]), None, &[b'z'; 132]);
    add(
        "132-byte non-hex identifier",
        s(format!("L402 {}:{pre}", hexish.to_base64())),
        "malformed_identifier",
    );
    // Third-party caveat: id, vid, EOS.
    let mut tp = Macaroon::new(&RootKey::from_bytes([8; 32]), None, &real_id.encode()).encode_v2();
    let sig_at = tp.len() - 35; // before the list-ending EOS and the signature field
    tp.splice(sig_at..sig_at, [2u8, 1, b'x', 4, 1, b'v', 0]);
    add(
        "third-party caveat",
        s(format!("L402 {}:{pre}", b64::encode_std(&tp))),
        "unsupported_macaroon",
    );
    let mut many = Macaroon::new(&RootKey::from_bytes([8; 32]), None, &real_id.encode());
    for i in 0..65 {
        many.add_first_party_caveat(format!("c{i}=x"));
    }
    add(
        "65 caveats",
        s(format!("L402 {}:{pre}", many.to_base64())),
        "malformed_macaroon",
    );
    rows
}

#[tokio::test]
async fn malformed_credentials_get_4xx_with_reason_and_server_keeps_serving() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    let rows = rows(&auth);
    assert!(rows.len() >= 50, "only {} rows", rows.len());
    for (name, value, reason) in &rows {
        let header =
            HeaderValue::from_bytes(value).unwrap_or_else(|_| HeaderValue::from_static("L402 x"));
        let req = Request::get("/paid")
            .header(header::AUTHORIZATION, header)
            .body(Body::empty())
            .unwrap();
        let r = send(&env.app, req).await;
        assert!(r.status.is_client_error(), "{name}: status {}", r.status);
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{name}");
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{name}"
        );
        assert_eq!(
            r.reason(),
            *reason,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        // The server still serves the paid token after every hostile input.
        assert_eq!(
            send(&env.app, get_req("/paid", &[&auth])).await.status,
            StatusCode::OK,
            "after {name}"
        );
    }
}

#[tokio::test]
async fn malformed_credentials_in_spec_mode_are_400_or_401() {
    let env = env(L402Config::new("api").reject_mode(RejectMode::Spec));
    let auth = buy(&env, "/paid").await;
    for (name, value, reason) in rows(&auth) {
        let Ok(header) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        let req = Request::get("/paid")
            .header(header::AUTHORIZATION, header)
            .body(Body::empty())
            .unwrap();
        let r = send(&env.app, req).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::UNAUTHORIZED,
            "{name}: {}",
            r.status
        );
        assert_eq!(r.reason(), reason, "{name}");
        assert_eq!(
            r.status == StatusCode::UNAUTHORIZED,
            !r.challenges().is_empty(),
            "{name}: 401 carries a challenge, 400 none"
        );
    }
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
}
