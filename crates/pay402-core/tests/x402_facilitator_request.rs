//! `PaymentRequest::from_json_slice` (the facilitator router's parser)
//! agrees with the format-agnostic `Deserialize` impl on v1 and v2 bodies,
//! on mutations of them, and refuses what it must.

use pay402_core::x402::facilitator::PaymentRequest;
use serde_json::{Value, json};

const AUTH: &str = r#"{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}"#;
const SIG: &str = "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c";

fn v2_body() -> String {
    let requirement = json!({"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}});
    let auth: Value = serde_json::from_str(AUTH).unwrap();
    json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "accepted": requirement, "payload": {"signature": SIG, "authorization": auth}},
        "paymentRequirements": requirement,
    })
    .to_string()
}

fn v1_body() -> String {
    let auth: Value = serde_json::from_str(AUTH).unwrap();
    json!({
        "x402Version": 1,
        "paymentPayload": {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": {"signature": SIG, "authorization": auth}},
        "paymentRequirements": {"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","resource":"https://api.example.com/premium-data","description":"","mimeType":"","maxTimeoutSeconds":60},
    })
    .to_string()
}

fn via_value(body: &str) -> Option<PaymentRequest> {
    serde_json::from_str(body).ok()
}

#[test]
fn both_versions_parse_to_the_same_request() {
    for (body, version) in [(v2_body(), 2), (v1_body(), 1)] {
        let fast = PaymentRequest::from_json_slice(body.as_bytes()).unwrap();
        assert_eq!(fast.x402_version(), version);
        assert_eq!(Some(fast), via_value(&body));
    }
    // Members in another order, and unknown ones, are fine.
    let mut v: Value = serde_json::from_str(&v2_body()).unwrap();
    v["extensions"] = json!({"bazaar": {"x": [1, 2]}});
    let reordered = format!(
        r#"{{"paymentRequirements":{},"extensions":{},"paymentPayload":{},"x402Version":2}}"#,
        v["paymentRequirements"], v["extensions"], v["paymentPayload"]
    );
    assert_eq!(
        PaymentRequest::from_json_slice(reordered.as_bytes()).ok(),
        via_value(&reordered)
    );
}

/// `body` with its top-level `"x402Version":N` member replaced by `member`.
fn with_top(body: &str, member: &str) -> String {
    let (head, version) = body.rsplit_once(r#","x402Version":"#).unwrap();
    assert!(
        version.len() <= 3,
        "x402Version is the last member: {version}"
    );
    format!("{head},{member}}}")
}

#[test]
fn refusals() {
    let v2 = v2_body();
    for bad in [
        String::new(),
        "[]".into(),
        "{}".into(),
        r#"{"x402Version":null}"#.into(),
        r#"{"x402Version":"2"}"#.into(),
        r#"{"x402Version":3}"#.into(),
        with_top(&v2, r#""x402Version":1"#), // a v2 body as v1
        with_top(&v2, r#""x402Version":2,"x402Version":2"#),
        v2.replacen(r#""paymentRequirements""#, r#""requirements""#, 1),
        format!("{v2} trailing"),
    ] {
        assert!(
            PaymentRequest::from_json_slice(bad.as_bytes()).is_err(),
            "accepted: {bad}"
        );
    }
}

#[test]
fn the_body_must_be_utf8_even_in_ignored_members() {
    let body = v2_body().replacen('{', r#"{"note":"caf?","#, 1);
    let mut bytes = body.into_bytes();
    let at = bytes.iter().position(|&b| b == b'?').unwrap();
    bytes[at] = 0xe9; // Latin-1 'é': not UTF-8
    let err = PaymentRequest::from_json_slice(&bytes).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    bytes[at] = b'e';
    assert!(PaymentRequest::from_json_slice(&bytes).is_ok());
}

/// Byte mutations: whatever the fast path accepts here, the `Value` path
/// accepts with the same request (the fast path refuses duplicate fields,
/// which the `Value` path resolves last-wins; it is laxer only inside
/// ignored members, which these mutations do not reach).
#[test]
fn mutations_never_accept_more_than_the_value_path() {
    let bodies = [v2_body().into_bytes(), v1_body().into_bytes()];
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut accepted = 0;
    for i in 0..6_000 {
        let mut j = bodies[i % 2].clone();
        for _ in 0..=(next() % 2) {
            let at = (next() % j.len() as u64) as usize;
            j[at] = match next() % 3 {
                0 => b"0123456789abcdef"[(next() % 16) as usize],
                1 => b"\"{}[],:\\ "[(next() % 9) as usize],
                _ => next() as u8,
            };
        }
        if let Ok(fast) = PaymentRequest::from_json_slice(&j) {
            accepted += 1;
            let reference: PaymentRequest = serde_json::from_slice(&j)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&j)));
            assert_eq!(fast, reference);
        }
    }
    assert!(accepted > 500, "{accepted}");
}
