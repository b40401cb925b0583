//! Malformed and hostile input through the MPP core.
//!
//! Every row names an input, the exact typed error it must produce and the
//! stable reason (and, for server errors, the HTTP status and MPP problem
//! type) a peer would see. Nothing may panic: the rows and the mutation loops
//! at the end run under `catch_unwind`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pay402_core::auth_header::HeaderSyntaxError;
use pay402_core::lightning::{Network, Preimage};
use pay402_core::money::Msat;
use pay402_core::mpp::methods::lightning::{self, ChargeVerifier, OfferError};
use pay402_core::mpp::{
    AcceptPayment, AcceptPaymentError, Challenge, ChallengeError, ChallengeKey, ChallengeKeys,
    ChallengeList, Credential, CredentialError, ProblemType, Receipt, ReceiptError, VerifyError,
    b64url, credential, digest, jcs, rfc3339,
};
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;

const INVOICE: &str = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
const HASH: &str = "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc";
const T0: u64 = 1_767_225_600;
const NOW: UnixTime = UnixTime(T0 + 300);
const REALM: &str = "api.example.com";

fn keys() -> ChallengeKeys {
    ChallengeKeys::new(ChallengeKey::new(&[0x33; 32]).unwrap())
}

fn preimage() -> Preimage {
    Preimage::from_bytes([0x11; 32])
}

/// A bound challenge for an arbitrary request object.
fn bound(request: serde_json::Value, expires: Option<&str>) -> Challenge<'static> {
    let mut c = Challenge::new(
        "",
        REALM,
        "lightning",
        "charge",
        jcs::encode_param(&request).unwrap(),
    );
    c.expires = expires.map(|e| e.to_owned().into());
    keys().bind(&mut c);
    c
}

fn request(amount: &str, network: &str, hash: &str) -> serde_json::Value {
    serde_json::json!({"amount": amount, "currency": "sat",
        "methodDetails": {"invoice": INVOICE, "network": network, "paymentHash": hash}})
}

fn good() -> Challenge<'static> {
    bound(
        request("100", "regtest", HASH),
        Some("2026-01-01T00:15:00Z"),
    )
}

fn verify_header(header: &str, now: UnixTime) -> Result<lightning::VerifiedCharge, VerifyError> {
    let k = keys();
    let v = ChargeVerifier::new(&k, REALM, 100, Network::Regtest);
    let token =
        credential::find_token([header.as_bytes()])?.ok_or(VerifyError::MethodUnsupported)?;
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf)?;
    v.verify(&cred, now)
}

fn check(
    name: &str,
    got: Result<lightning::VerifiedCharge, VerifyError>,
    want: &VerifyError,
    reason: &str,
    status: u16,
    ty: ProblemType,
) {
    let e = got.expect_err(name);
    assert_eq!(&e, want, "{name}");
    assert_eq!(e.reason(), reason, "{name}");
    assert_eq!(e.status(), status, "{name}");
    assert_eq!(e.problem_type(), ty, "{name}");
    // The problem body never carries the preimage.
    let body = pay402_core::mpp::MppProblem::from_error(&e, None).to_json();
    assert!(!body.contains(&"11".repeat(32)), "{name}");
}

#[test]
fn the_good_credential_passes() {
    let h = lightning::credential(&good(), &preimage(), None);
    assert!(verify_header(&h, NOW).is_ok());
}

#[test]
fn lightning_verification_table() {
    use ProblemType::*;
    let pay = |c: &Challenge<'_>| lightning::credential(c, &preimage(), None);
    let with_payload =
        |c: &Challenge<'_>, p: serde_json::Value| Credential::encode(c, &p, None).unwrap();
    let mut altered = good();
    altered.request = bound(request("1", "regtest", HASH), None).request;
    let mut wrong_realm = good();
    wrong_realm.realm = "evil.example.com".into();
    keys().bind(&mut wrong_realm);
    let mut session = good();
    session.intent = "session".into();
    keys().bind(&mut session);
    let mut with_opaque = good();
    with_opaque.opaque = Some("eyJhIjoiYiJ9".into()); // {"a":"b"}
    keys().bind(&mut with_opaque);
    let mut bad_opaque = good();
    bad_opaque.opaque = Some("e30x".into());
    keys().bind(&mut bad_opaque);
    let other_hash = "ff".repeat(32);
    let rows: Vec<(&str, String, UnixTime, VerifyError, &str, u16, ProblemType)> = vec![
        (
            "id forged",
            pay(&Challenge {
                id: "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4".into(),
                ..good()
            }),
            NOW,
            VerifyError::ChallengeNotIssued,
            "challenge_not_issued",
            402,
            InvalidChallenge,
        ),
        (
            "id not base64url",
            pay(&Challenge {
                id: "not an id!".into(),
                ..good()
            }),
            NOW,
            VerifyError::ChallengeNotIssued,
            "challenge_not_issued",
            402,
            InvalidChallenge,
        ),
        (
            "request altered after issue",
            pay(&altered),
            NOW,
            VerifyError::ChallengeNotIssued,
            "challenge_not_issued",
            402,
            InvalidChallenge,
        ),
        (
            "expires stripped",
            pay(&Challenge {
                expires: None,
                ..good()
            }),
            NOW,
            VerifyError::ChallengeNotIssued,
            "challenge_not_issued",
            402,
            InvalidChallenge,
        ),
        (
            "description is not bound",
            pay(&Challenge {
                description: Some("free!".into()),
                ..good()
            }),
            NOW,
            VerifyError::PreimageMismatch,
            "",
            0,
            VerificationFailed,
        ),
        (
            "another realm",
            pay(&wrong_realm),
            NOW,
            VerifyError::RouteMismatch("realm"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "another intent",
            pay(&session),
            NOW,
            VerifyError::RouteMismatch("intent"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "unexpected opaque",
            pay(&with_opaque),
            NOW,
            VerifyError::RouteMismatch("opaque"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "opaque not JSON",
            pay(&bad_opaque),
            NOW,
            VerifyError::RouteMismatch("opaque"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "cheaper route",
            pay(&bound(
                request("1", "regtest", HASH),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::RouteMismatch("amount"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "amount with a leading zero",
            pay(&bound(
                request("0100", "regtest", HASH),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::RouteMismatch("amount"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "other currency",
            pay(&bound(
                serde_json::json!({"amount":"100","currency":"BTC","methodDetails":{"invoice":INVOICE,"network":"regtest"}}),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::RouteMismatch("currency"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "unknown network",
            pay(&bound(
                request("100", "testnet", HASH),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::RouteMismatch("network"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "mainnet by default",
            pay(&bound(
                serde_json::json!({"amount":"100","currency":"sat","methodDetails":{"invoice":INVOICE}}),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::RouteMismatch("network"),
            "challenge_route_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "not a charge request",
            pay(&bound(
                serde_json::json!({"amount":100}),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::InvalidRequest("not this method's request"),
            "challenge_invalid_request",
            402,
            InvalidChallenge,
        ),
        (
            "no expires",
            pay(&bound(request("100", "regtest", HASH), None)),
            NOW,
            VerifyError::MissingExpires,
            "challenge_missing_expires",
            402,
            InvalidChallenge,
        ),
        (
            "expires not RFC 3339",
            pay(&bound(request("100", "regtest", HASH), Some("tomorrow"))),
            NOW,
            VerifyError::InvalidExpires,
            "challenge_invalid_expires",
            402,
            InvalidChallenge,
        ),
        (
            "expired",
            pay(&good()),
            UnixTime(T0 + 900),
            VerifyError::Expired,
            "challenge_expired",
            402,
            PaymentExpired,
        ),
        (
            "payload without preimage",
            with_payload(&good(), serde_json::json!({"pre": "x"})),
            NOW,
            VerifyError::InvalidPayload("expected {\"preimage\": <64 hex>}"),
            "invalid_payload",
            402,
            InvalidPayload,
        ),
        (
            "preimage a number",
            with_payload(&good(), serde_json::json!({"preimage": 7})),
            NOW,
            VerifyError::InvalidPayload("expected {\"preimage\": <64 hex>}"),
            "invalid_payload",
            402,
            InvalidPayload,
        ),
        (
            "preimage short",
            with_payload(&good(), serde_json::json!({"preimage": "a3f1e2d4b5c6a7e8"})),
            NOW,
            VerifyError::InvalidPayload("preimage is not 64 hex digits"),
            "invalid_payload",
            402,
            InvalidPayload,
        ),
        (
            "preimage not hex",
            with_payload(&good(), serde_json::json!({"preimage": "zz".repeat(32)})),
            NOW,
            VerifyError::InvalidPayload("preimage is not 64 hex digits"),
            "invalid_payload",
            402,
            InvalidPayload,
        ),
        (
            "hash is not the invoice's",
            pay(&bound(
                request("100", "regtest", &other_hash),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::InvoiceMismatch("paymentHash"),
            "invoice_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "hash not hex",
            pay(&bound(
                request("100", "regtest", "xyz"),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::InvoiceMismatch("paymentHash is not 64 hex digits"),
            "invoice_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "invoice garbage",
            pay(&bound(
                serde_json::json!({"amount":"100","currency":"sat","methodDetails":{"invoice":"lnbcrt1garbage","network":"regtest"}}),
                Some("2026-01-01T00:15:00Z"),
            )),
            NOW,
            VerifyError::InvoiceMismatch("invoice does not parse"),
            "invoice_mismatch",
            402,
            InvalidChallenge,
        ),
        (
            "invoice expired before expires",
            pay(&bound(
                request("100", "regtest", HASH),
                Some("2026-01-01T02:00:00Z"),
            )),
            UnixTime(T0 + 5400),
            VerifyError::InvoiceExpired,
            "invoice_expired",
            402,
            PaymentExpired,
        ),
        (
            "wrong preimage",
            lightning::credential(&good(), &Preimage::from_bytes([0x12; 32]), None),
            NOW,
            VerifyError::PreimageMismatch,
            "preimage_mismatch",
            402,
            VerificationFailed,
        ),
    ];
    for (name, header, at, want, reason, status, ty) in rows {
        let got = catch_unwind(AssertUnwindSafe(|| verify_header(&header, at)))
            .unwrap_or_else(|_| panic!("{name} panicked"));
        if reason.is_empty() {
            // Not a refusal row: the binding holds (description is free text).
            assert!(got.is_ok(), "{name}: {got:?}");
            continue;
        }
        check(name, got, &want, reason, status, ty);
    }
    // Several Payment credentials: 400 bad-request, never "first wins".
    let h = pay(&good());
    let both = format!("{h}, {h}");
    check(
        "two credentials in one value",
        verify_header(&both, NOW),
        &VerifyError::Credential(CredentialError::Multiple),
        "multiple_credentials",
        400,
        ProblemType::BadRequest,
    );
    assert_eq!(
        credential::find_token([h.as_bytes(), h.as_bytes()]),
        Err(CredentialError::Multiple)
    );
    // Other schemes beside it are fine.
    assert!(verify_header(&format!("Bearer abc, {h}"), NOW).is_ok());
    assert!(verify_header(&format!(r#"Digest username="a, Payment x", {h}"#), NOW).is_ok());
    // The replay/outcome errors the server raises keep their policy.
    assert!(
        !VerifyError::Replayed.fresh_challenge() && !VerifyError::OutcomeUnknown.fresh_challenge()
    );
    assert_eq!(
        (
            VerifyError::OutcomeUnknown.status(),
            VerifyError::OutcomeUnknown.problem_type()
        ),
        (500, ProblemType::InternalPaymentError)
    );
}

#[test]
fn credential_table() {
    let rows: Vec<(&str, String, CredentialError, &str, u16)> = vec![
        ("empty", String::new(), CredentialError::EmptyToken, "malformed_credential", 402),
        ("standard alphabet", "e30+".into(), CredentialError::NotBase64url, "malformed_credential", 402),
        ("trailing bits", "AB".into(), CredentialError::NotBase64url, "malformed_credential", 402),
        ("whitespace inside", "e3 0".into(), CredentialError::NotBase64url, "malformed_credential", 402),
        ("too long", "A".repeat(credential::MAX_AUTHORIZATION_LEN + 1), CredentialError::TooLong, "credential_too_large", 402),
        ("decodes too long", "QUFB".repeat(credential::MAX_CREDENTIAL_LEN / 3 + 4), CredentialError::TooLong, "credential_too_large", 402),
        ("payload a string", b64url::encode(br#"{"challenge":{"id":"i","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":"x"}"#), CredentialError::PayloadNotObject, "malformed_credential", 402),
        ("payload an array", b64url::encode(br#"{"challenge":{"id":"i","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":[]}"#), CredentialError::PayloadNotObject, "malformed_credential", 402),
        ("empty id", b64url::encode(br#"{"challenge":{"id":"","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":{}}"#), CredentialError::InvalidChallenge(ChallengeError::EmptyId), "malformed_credential", 402),
        ("upper-case method", b64url::encode(br#"{"challenge":{"id":"i","realm":"r","method":"Lightning","intent":"charge","request":"e30"},"payload":{}}"#), CredentialError::InvalidChallenge(ChallengeError::InvalidMethod), "malformed_credential", 402),
        ("request padded", b64url::encode(br#"{"challenge":{"id":"i","realm":"r","method":"lightning","intent":"charge","request":"e30="},"payload":{}}"#), CredentialError::InvalidChallenge(ChallengeError::InvalidRequest), "malformed_credential", 402),
    ];
    for (name, token, want, reason, status) in rows {
        let mut buf = Vec::new();
        let got = catch_unwind(AssertUnwindSafe(|| {
            Credential::decode(&token, &mut buf).map(|_| ())
        }))
        .unwrap_or_else(|_| panic!("{name} panicked"));
        let e = got.expect_err(name);
        assert_eq!(e, want, "{name}");
        assert_eq!((e.reason(), e.status()), (reason, status), "{name}");
    }
    // JSON errors: named rows whose exact serde text does not matter.
    for (name, json) in [
        ("not JSON", "{oops}"),
        (
            "legacy object opaque",
            r#"{"challenge":{"id":"i","realm":"r","method":"m","intent":"c","request":"e30","opaque":{"a":"b"}},"payload":{}}"#,
        ),
        (
            "number id",
            r#"{"challenge":{"id":1,"realm":"r","method":"m","intent":"c","request":"e30"},"payload":{}}"#,
        ),
        (
            "duplicate member",
            r#"{"challenge":{"id":"a","id":"b","realm":"r","method":"m","intent":"c","request":"e30"},"payload":{}}"#,
        ),
        (
            "missing payload",
            r#"{"challenge":{"id":"i","realm":"r","method":"m","intent":"c","request":"e30"}}"#,
        ),
        ("array", "[]"),
    ] {
        let token = b64url::encode(json.as_bytes());
        let mut buf = Vec::new();
        let e = Credential::decode(&token, &mut buf).expect_err(name);
        assert!(
            matches!(e, CredentialError::InvalidJson(_)),
            "{name}: {e:?}"
        );
        assert_eq!(e.reason(), "malformed_credential");
    }
    assert_eq!(
        credential::find_token([&[0xff, 0xfe][..]]),
        Err(CredentialError::NotUtf8)
    );
    assert_eq!(
        credential::find_token([b"Payment".as_slice()]).unwrap(),
        Some("")
    );
}

#[test]
fn challenge_table() {
    let base = r#"id="i", realm="r", method="lightning", intent="charge", request="e30""#;
    let rows: Vec<(&str, String, ChallengeError, &str)> = vec![
        (
            "no method",
            r#"Payment id="i", realm="r", intent="c", request="e30""#.into(),
            ChallengeError::MissingParameter("method"),
            "challenge_missing_parameter",
        ),
        (
            "no request",
            r#"Payment id="i", realm="r", method="m", intent="c""#.into(),
            ChallengeError::MissingParameter("request"),
            "challenge_missing_parameter",
        ),
        (
            "empty id",
            r#"Payment id="", realm="r", method="m", intent="c", request="e30""#.into(),
            ChallengeError::EmptyId,
            "challenge_empty_id",
        ),
        (
            "duplicate, other case",
            format!(r#"Payment {base}, REALM="s""#),
            ChallengeError::DuplicateParameter,
            "challenge_duplicate_parameter",
        ),
        (
            "method upper case",
            r#"Payment id="i", realm="r", method="Tempo", intent="c", request="e30""#.into(),
            ChallengeError::InvalidMethod,
            "challenge_invalid_method",
        ),
        (
            "method digit first",
            r#"Payment id="i", realm="r", method="1x", intent="c", request="e30""#.into(),
            ChallengeError::InvalidMethod,
            "challenge_invalid_method",
        ),
        (
            "intent with space",
            r#"Payment id="i", realm="r", method="m", intent="a b", request="e30""#.into(),
            ChallengeError::InvalidIntent,
            "challenge_invalid_intent",
        ),
        (
            "request padded",
            r#"Payment id="i", realm="r", method="m", intent="c", request="e30=""#.into(),
            ChallengeError::InvalidRequest,
            "challenge_invalid_request",
        ),
        (
            "request standard alphabet",
            r#"Payment id="i", realm="r", method="m", intent="c", request="e3+/""#.into(),
            ChallengeError::InvalidRequest,
            "challenge_invalid_request",
        ),
        (
            "opaque not base64url",
            format!(r#"Payment {base}, opaque="{{}}""#),
            ChallengeError::InvalidOpaque,
            "challenge_invalid_opaque",
        ),
        (
            "request too long",
            format!(
                r#"Payment id="i", realm="r", method="m", intent="c", request="{}""#,
                "A".repeat(16 * 1024 + 1)
            ),
            ChallengeError::TooLong("request"),
            "challenge_parameter_too_long",
        ),
        (
            "realm too long",
            format!(
                r#"Payment id="i", realm="{}", method="m", intent="c", request="e30""#,
                "r".repeat(513)
            ),
            ChallengeError::TooLong("realm"),
            "challenge_parameter_too_long",
        ),
        (
            "unterminated",
            r#"Payment id="i, realm=r"#.into(),
            ChallengeError::Syntax(HeaderSyntaxError::Unterminated),
            "malformed_challenge",
        ),
        (
            "CR in a value",
            "Payment id=\"i\r\", realm=\"r\"".into(),
            ChallengeError::Syntax(HeaderSyntaxError::Syntax(13)),
            "malformed_challenge",
        ),
        (
            "line too long",
            format!("Payment {}", " ".repeat(64 * 1024)),
            ChallengeError::Syntax(HeaderSyntaxError::TooLong),
            "malformed_challenge",
        ),
        (
            "nothing",
            "Basic realm=\"x\"".into(),
            ChallengeError::NoPaymentChallenge,
            "no_payment_challenge",
        ),
    ];
    for (name, line, want, reason) in rows {
        let got = catch_unwind(AssertUnwindSafe(|| {
            ChallengeList::parse([line.as_bytes()])
                .into_result()
                .map(|v| v.len())
        }))
        .unwrap_or_else(|_| panic!("{name} panicked"));
        let e = got.expect_err(name);
        assert_eq!(e, want, "{name}");
        assert_eq!(e.reason(), reason, "{name}");
    }
    // Latin-1 bytes (what fetch sends for é) are read, not refused.
    let mut latin1 = format!(r#"Payment {base}, description="caf"#).into_bytes();
    latin1.extend_from_slice(&[0xe9, b'"']);
    let list = ChallengeList::parse([latin1.as_slice()]);
    assert_eq!(list.challenges()[0].description.as_deref(), Some("café"));
    // Emitting refuses what could not be sent or would be ambiguous.
    let emit = |c: Challenge<'_>| c.to_header_value().unwrap_err();
    let c = || Challenge::new("i", "r", "lightning", "charge", "e30");
    assert_eq!(
        emit(Challenge {
            realm: "a|b".into(),
            ..c()
        }),
        ChallengeError::PipeInRealm
    );
    assert_eq!(
        emit(Challenge {
            realm: "caf\u{e9}".into(),
            ..c()
        }),
        ChallengeError::ForbiddenCharacter("realm")
    );
    assert_eq!(
        emit(Challenge {
            id: "a\r\nSet-Cookie: x".into(),
            ..c()
        }),
        ChallengeError::ForbiddenCharacter("id")
    );
    assert_eq!(
        emit(Challenge {
            description: Some("a\nb".into()),
            ..c()
        }),
        ChallengeError::ForbiddenCharacter("description")
    );
    assert_eq!(
        emit(Challenge {
            expires: Some("\u{7f}".into()),
            ..c()
        }),
        ChallengeError::ForbiddenCharacter("expires")
    );
}

#[test]
fn client_offer_table() {
    let now = NOW;
    let max = Msat(100_000);
    let check = |c: &Challenge<'_>| lightning::check_charge(c, Network::Regtest, now, max);
    let with = |req: serde_json::Value| bound(req, Some("2026-01-01T00:15:00Z"));
    let rows: Vec<(&str, Challenge<'static>, OfferError, &str)> = vec![
        (
            "understated amount (lnget's bug)",
            with(request("1", "regtest", HASH)),
            OfferError::AmountMismatch,
            "invoice_amount_mismatch",
        ),
        (
            "overstated amount",
            with(request("1000", "regtest", HASH)),
            OfferError::AmountMismatch,
            "invoice_amount_mismatch",
        ),
        (
            "declared mainnet",
            with(request("100", "mainnet", HASH)),
            OfferError::NetworkMismatch,
            "invoice_wrong_network",
        ),
        (
            "hash not the invoice's",
            with(request("100", "regtest", &"ff".repeat(32))),
            OfferError::Invoice(pay402_core::l402::InvoiceError::HashMismatch),
            "invoice_hash_mismatch",
        ),
        (
            "currency",
            with(
                serde_json::json!({"amount":"100","currency":"usd","methodDetails":{"invoice":INVOICE,"network":"regtest"}}),
            ),
            OfferError::UnsupportedCurrency,
            "unsupported_currency",
        ),
        (
            "expired challenge",
            bound(
                request("100", "regtest", HASH),
                Some("2026-01-01T00:01:00Z"),
            ),
            OfferError::Expired,
            "challenge_expired",
        ),
        (
            "not a request",
            with(serde_json::json!([1, 2])),
            OfferError::InvalidRequest("not a lightning charge request"),
            "challenge_invalid_request",
        ),
    ];
    for (name, c, want, reason) in rows {
        let e = check(&c).expect_err(name);
        assert_eq!(e, want, "{name}");
        assert_eq!(e.reason(), reason, "{name}");
    }
    // Without paymentHash the invoice's own hash is used, and checked.
    let c = with(
        serde_json::json!({"amount":"100","currency":"sat","methodDetails":{"invoice":INVOICE,"network":"regtest"}}),
    );
    assert_eq!(check(&c).unwrap().payment_hash.to_hex(), HASH);
    // Over budget: the invoice's own amount is what is checked.
    let e = lightning::check_charge(&good(), Network::Regtest, now, Msat(99_999)).unwrap_err();
    assert_eq!(e.reason(), "price_exceeds_maximum");
    // An invoice past its expiry, even with a later challenge expires.
    let late = bound(
        request("100", "regtest", HASH),
        Some("2026-01-01T05:00:00Z"),
    );
    let e = lightning::check_charge(&late, Network::Regtest, UnixTime(T0 + 3700), max).unwrap_err();
    assert_eq!(e.reason(), "invoice_expired");
}

#[test]
fn issue_refusals() {
    use lightning::{ChargeOffer, IssueError, issue_charge};
    let k = keys();
    let at = UnixTime(T0);
    assert_eq!(
        issue_charge(&k, &ChargeOffer::new(REALM, "lnbc1nope"), at).unwrap_err(),
        IssueError::InvalidInvoice
    );
    assert_eq!(
        issue_charge(&k, &ChargeOffer::new(REALM, INVOICE), UnixTime(T0 + 3600)).unwrap_err(),
        IssueError::InvoiceExpired
    );
    assert_eq!(
        issue_charge(&k, &ChargeOffer::new("a|b", INVOICE), at).unwrap_err(),
        IssueError::Challenge(ChallengeError::PipeInRealm)
    );
    assert_eq!(IssueError::InvoiceExpired.status(), 500);
    assert!(ChallengeKey::new(&[0; 31]).is_err());
}

#[test]
fn small_codecs_table() {
    // Receipts.
    let enc = |j: &str| b64url::encode(j.as_bytes());
    let rows: Vec<(&str, String, ReceiptError, &str)> = vec![
        (
            "not base64",
            "!!".into(),
            ReceiptError::NotBase64,
            "malformed_receipt",
        ),
        (
            "failure status",
            enc(
                r#"{"method":"m","reference":"r","status":"failed","timestamp":"2026-01-01T00:00:00Z"}"#,
            ),
            ReceiptError::NotSuccess,
            "receipt_not_success",
        ),
        (
            "empty reference",
            enc(
                r#"{"method":"m","reference":"","status":"success","timestamp":"2026-01-01T00:00:00Z"}"#,
            ),
            ReceiptError::Empty("reference"),
            "receipt_missing_field",
        ),
        (
            "bad timestamp",
            enc(r#"{"method":"m","reference":"r","status":"success","timestamp":"yesterday"}"#),
            ReceiptError::BadTimestamp,
            "receipt_bad_timestamp",
        ),
        (
            "too long",
            "A".repeat(40_000),
            ReceiptError::TooLong,
            "malformed_receipt",
        ),
    ];
    for (name, v, want, reason) in rows {
        let e = Receipt::decode(&v).expect_err(name);
        assert_eq!(e, want, "{name}");
        assert_eq!(e.reason(), reason, "{name}");
    }
    // Accept-Payment.
    for (v, want) in [
        ("lightning", AcceptPaymentError::Syntax),
        ("lightning/charge;q=2", AcceptPaymentError::Syntax),
        ("lightning/charge;q=0.1234", AcceptPaymentError::Syntax),
        ("lightning/charge;q=1.5", AcceptPaymentError::Syntax),
        ("Lightning/charge", AcceptPaymentError::Syntax),
        ("a/b;q=0.5;q=0.6", AcceptPaymentError::Syntax),
        ("a/b;foo=1", AcceptPaymentError::Syntax),
    ] {
        assert_eq!(AcceptPayment::parse(v), Err(want), "{v}");
    }
    assert_eq!(
        AcceptPayment::parse(&"a/b,".repeat(33)),
        Err(AcceptPaymentError::TooLong)
    );
    assert_eq!(
        AcceptPayment::parse(&"x".repeat(1025)),
        Err(AcceptPaymentError::TooLong)
    );
    // RFC 3339.
    for v in [
        "2026-02-29T00:00:00Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00.Z",
        "1969-12-31T23:59:59Z",
        "2026-01-01T00:00:00+2400",
        "",
    ] {
        assert!(rfc3339::parse(v).is_err(), "{v}");
    }
    assert_eq!(
        rfc3339::parse("2028-02-29T23:59:60z"),
        Ok(UnixTime(1_835_481_600))
    );
    // Digest.
    for v in [
        "sha-256=",
        "sha-256=:abc",
        "sha-512=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "sha-256=AAAA",
        "nonsense",
    ] {
        assert!(!digest::verify(v, b""), "{v}");
    }
}

#[test]
fn mutations_never_panic() {
    let good_header = lightning::credential(&good(), &preimage(), None);
    let token = good_header.strip_prefix("Payment ").unwrap().to_owned();
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let json = b64url::decode_strict(&token, 1 << 16).unwrap();
    let challenge_line = good().to_header_value().unwrap();
    for _ in 0..3000 {
        // Flip, drop or insert a byte in the credential JSON, the token, and the challenge line.
        let mut j = json.clone();
        let mut t = token.clone().into_bytes();
        let mut l = challenge_line.clone().into_bytes();
        for buf in [&mut j, &mut t, &mut l] {
            let i = (next() as usize) % buf.len();
            match next() % 3 {
                0 => buf[i] ^= 1 << (next() % 8),
                1 => {
                    buf.remove(i);
                }
                _ => buf.insert(i, (next() % 256) as u8),
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let header = format!("Payment {}", b64url::encode(&j));
            let _ = verify_header(&header, NOW);
            if let Ok(s) = std::str::from_utf8(&t) {
                let _ = verify_header(&format!("Payment {s}"), NOW);
            }
            let list = ChallengeList::parse([l.as_slice()]);
            for c in list.challenges() {
                let _ = lightning::check_charge(c, Network::Regtest, NOW, Msat(u64::MAX));
                let _ = c.to_header_value();
            }
        }));
        assert!(r.is_ok(), "panic on mutated input");
    }
}

#[test]
fn strict_base64url_matches_the_scalar_rules() {
    // The strict decoder tries SIMD first; it must accept exactly what the
    // scalar engine with Aperture's rules accepts, with the same bytes.
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let scalar = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(false),
    );
    let alphabet = b"AB_-az09+/=\n";
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 12) as usize;
        let s: String = (0..len)
            .map(|i| alphabet[((rng >> (i * 5)) % alphabet.len() as u64) as usize] as char)
            .collect();
        let want = scalar.decode(s.as_bytes()).ok();
        let got = b64url::decode_strict(&s, 64).ok();
        assert_eq!(got, want, "{s:?}");
    }
}
