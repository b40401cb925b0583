//! `WWW-Authenticate` and `Authorization` parsing tables.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use pay402_core::auth_header::{HeaderSyntaxError, parse_challenges, split_credentials};
use pay402_core::l402::{
    Challenge, ChallengeError, ChallengeSet, Credential, CredentialError, Identifier, Macaroon,
    PresentedToken, RootKey, Scheme, TokenId, VerifyContext,
};
use pay402_core::lightning::Preimage;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;

/// The §9.3 spec example (syntax only: not a valid macaroon or invoice).
const SPEC_MAC: &str = "AGIAJEemVQUTEyNCR0exk7ek90Cg==";
const SPEC_INV: &str = "lnbc1500n1pw5kjhmpp5fu6xhthlt2vucmzkx6c7wtlh2r625r30cyjsfqhu8rsx4xpz5lwqdpa2fjkzep6yptksct5yp5hxgrrv96hx6twvusycn3qv9jx7ur5d9hkugr5dusx6cqzpgxqr23s79ruapxc4j5uskt4htly2salw4drq979d7rcela9wz02elhypmdzmzlnxuknpgfyfm86pntt8vvkvffma5qc9n50h4mvqhngadqy3ngqjcym5a";

fn set<'a>(values: &[&'a str]) -> Result<ChallengeSet<'a>, ChallengeError> {
    ChallengeSet::parse(values.iter().map(|v| v.as_bytes()))
}

/// (scheme, macaroon, invoice) of one parsed challenge.
type Summary = (Scheme, String, String);

fn summary(set: &ChallengeSet<'_>) -> Vec<Summary> {
    set.all()
        .iter()
        .map(|c| (c.scheme(), c.macaroon().to_owned(), c.invoice().to_owned()))
        .collect()
}

fn l(m: &str, i: &str) -> Summary {
    (Scheme::L402, m.to_owned(), i.to_owned())
}
fn s(m: &str, i: &str) -> Summary {
    (Scheme::Lsat, m.to_owned(), i.to_owned())
}

#[test]
fn challenge_table() {
    let digest = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    let cases: Vec<(Vec<String>, Vec<Summary>)> = vec![
        // Variant A, canonical.
        (
            vec![r#"L402 macaroon="AgE=", invoice="lnbc1""#.into()],
            vec![l("AgE=", "lnbc1")],
        ),
        // Scheme in any case.
        (
            vec![r#"l402 macaroon="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        (
            vec![r#"LSAT macaroon="a", invoice="b""#.into()],
            vec![s("a", "b")],
        ),
        (
            vec![r#"lSaT macaroon="a", invoice="b""#.into()],
            vec![s("a", "b")],
        ),
        // Parameters in any order, names in any case.
        (
            vec![r#"L402 invoice="b", macaroon="a""#.into()],
            vec![l("a", "b")],
        ),
        (
            vec![r#"L402 MACAROON="a", Invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        // Variant B: token= and version="0", in any order, version optional or bare.
        (
            vec![r#"L402 version="0", token="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        (
            vec![r#"L402 invoice="b", token="a", version=0"#.into()],
            vec![l("a", "b")],
        ),
        (
            vec![r#"L402 token="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        // macaroon and token both present and equal.
        (
            vec![r#"L402 macaroon="a", token="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        // Unknown parameters ignored.
        (
            vec![r#"L402 realm="x", macaroon="a", foo=bar, invoice="b", amount="10""#.into()],
            vec![l("a", "b")],
        ),
        // Bare (unquoted) values, including base64 with `/`, `+` and `=`.
        (
            vec!["L402 macaroon=Ag+/E==, invoice=lnbc1".into()],
            vec![l("Ag+/E==", "lnbc1")],
        ),
        // No space after the comma; BWS around `=`.
        (
            vec![r#"L402 macaroon="a",invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        (
            vec![r#"L402 macaroon = "a" , invoice = "b""#.into()],
            vec![l("a", "b")],
        ),
        // Tabs and several spaces after the scheme.
        (
            vec!["L402 \t  macaroon=\"a\",\tinvoice=\"b\"".into()],
            vec![l("a", "b")],
        ),
        // Quoted-string escapes.
        (
            vec![r#"L402 macaroon="a\"b", invoice="c\\d""#.into()],
            vec![l("a\"b", "c\\d")],
        ),
        (
            vec![r#"L402 macaroon="\a\b", invoice="x""#.into()],
            vec![l("ab", "x")],
        ),
        // Empty list elements anywhere.
        (
            vec![r#", ,L402 macaroon="a", , invoice="b",,"#.into()],
            vec![l("a", "b")],
        ),
        // Multiple challenges in one value (RFC 9110 list).
        (
            vec![r#"LSAT macaroon="a", invoice="b", L402 macaroon="c", invoice="d""#.into()],
            vec![s("a", "b"), l("c", "d")],
        ),
        // lsat-js style: challenges separated by whitespace only.
        (
            vec![r#"LSAT macaroon="a", invoice="b" L402 macaroon="c", invoice="d""#.into()],
            vec![s("a", "b"), l("c", "d")],
        ),
        // Aperture's two-header form.
        (
            vec![
                r#"LSAT macaroon="a", invoice="b""#.into(),
                r#"L402 macaroon="a", invoice="b""#.into(),
            ],
            vec![s("a", "b"), l("a", "b")],
        ),
        // Other schemes mixed in: Basic, Bearer, Negotiate token68, Digest.
        (
            vec![format!(
                r#"Basic realm="x", charset="UTF-8", Bearer, Negotiate YIIBzgYGKwYBBQUCoIIBwjCCAb6gMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCg==, L402 macaroon="a", invoice="b", {digest}"#
            )],
            vec![l("a", "b")],
        ),
        (
            vec![
                "Bearer realm=\"api\", error=\"invalid_token\"".into(),
                digest.into(),
                "Negotiate abc=".into(),
                "LSAT macaroon=\"m\", invoice=\"i\"".into(),
                "Basic".into(),
            ],
            vec![s("m", "i")],
        ),
        // Bearer scheme-only then L402 in the same value.
        (
            vec![r#"Bearer, L402 macaroon="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        // Negotiate token68 directly before L402.
        (
            vec![r#"Negotiate abc==, L402 macaroon="a", invoice="b""#.into()],
            vec![l("a", "b")],
        ),
        // §9.3 spec example header syntax.
        (
            vec![format!(
                r#"L402 macaroon="{SPEC_MAC}", invoice="{SPEC_INV}""#
            )],
            vec![l(SPEC_MAC, SPEC_INV)],
        ),
        (
            vec![format!(
                r#"LSAT macaroon="{SPEC_MAC}", invoice="{SPEC_INV}""#
            )],
            vec![s(SPEC_MAC, SPEC_INV)],
        ),
        // No L402 at all: an empty set, not an error.
        (
            vec!["Basic realm=\"x\"".into(), "".into(), "  ".into()],
            vec![],
        ),
        (vec![], vec![]),
    ];
    for (values, want) in cases {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let got = set(&refs).unwrap_or_else(|e| panic!("{values:?}: {e:?}"));
        assert_eq!(summary(&got), want, "{values:?}");
    }
}

#[test]
fn challenge_error_table() {
    let cases: &[(&str, ChallengeError, &str)] = &[
        (
            r#"L402 invoice="b""#,
            ChallengeError::MissingToken,
            "challenge_missing_macaroon",
        ),
        (
            r#"L402 macaroon="", invoice="b""#,
            ChallengeError::MissingToken,
            "challenge_missing_macaroon",
        ),
        (
            "L402",
            ChallengeError::MissingToken,
            "challenge_missing_macaroon",
        ),
        (
            "L402 abc==",
            ChallengeError::MissingToken,
            "challenge_missing_macaroon",
        ),
        (
            r#"L402 macaroon="a""#,
            ChallengeError::MissingInvoice,
            "challenge_missing_invoice",
        ),
        (
            r#"L402 macaroon="a", invoice="""#,
            ChallengeError::MissingInvoice,
            "challenge_missing_invoice",
        ),
        (
            r#"L402 macaroon="a", macaroon="a", invoice="b""#,
            ChallengeError::DuplicateParameter,
            "challenge_duplicate_parameter",
        ),
        (
            r#"L402 macaroon="a", invoice="b", INVOICE="c""#,
            ChallengeError::DuplicateParameter,
            "challenge_duplicate_parameter",
        ),
        (
            r#"L402 macaroon="a", token="c", invoice="b""#,
            ChallengeError::ConflictingToken,
            "challenge_conflicting_token",
        ),
        (
            r#"L402 version="1", token="a", invoice="b""#,
            ChallengeError::UnsupportedVersion,
            "challenge_unsupported_version",
        ),
        (
            r#"L402 version="", token="a", invoice="b""#,
            ChallengeError::UnsupportedVersion,
            "challenge_unsupported_version",
        ),
        (
            r#"L402 macaroon="a, invoice="b""#,
            ChallengeError::Syntax(HeaderSyntaxError::Syntax(27)),
            "malformed_challenge",
        ),
        (
            r#"L402 macaroon="a", invoice="b"#,
            ChallengeError::Syntax(HeaderSyntaxError::Unterminated),
            "malformed_challenge",
        ),
    ];
    for (v, want, reason) in cases {
        let err = ChallengeSet::parse([v.as_bytes()]).unwrap_err();
        assert_eq!(&err, want, "{v}");
        assert_eq!(err.reason(), *reason, "{v}");
    }
    // A set without any L402 challenge reports it only when asked.
    let none = ChallengeSet::parse([b"Basic realm=\"x\"".as_slice()]).unwrap();
    assert_eq!(none.l402().unwrap_err(), ChallengeError::NoL402Challenge);
    assert_eq!(
        ChallengeError::NoL402Challenge.reason(),
        "no_l402_challenge"
    );
}

#[test]
fn l402_is_preferred_over_lsat() {
    // Aperture sends LSAT first, then L402.
    let set = set(&[
        r#"LSAT macaroon="old", invoice="i""#,
        r#"L402 macaroon="new", invoice="i""#,
    ])
    .unwrap();
    assert_eq!(set.l402().unwrap().scheme(), Scheme::L402);
    assert_eq!(set.l402().unwrap().macaroon(), "new");
    // Folded into one value by a proxy: same preference.
    let set = self::set(&[r#"LSAT macaroon="old", invoice="i", L402 macaroon="new", invoice="i""#])
        .unwrap();
    assert_eq!(set.l402().unwrap().macaroon(), "new");
    // Only LSAT: falls back to it.
    let set = self::set(&[r#"Basic realm="r", LSAT macaroon="old", invoice="i""#]).unwrap();
    assert_eq!(set.l402().unwrap().scheme(), Scheme::Lsat);
    // Two L402: the first wins.
    let set = self::set(&[
        r#"L402 macaroon="1", invoice="i""#,
        r#"L402 macaroon="2", invoice="i""#,
    ])
    .unwrap();
    assert_eq!(set.l402().unwrap().macaroon(), "1");
}

#[test]
fn challenge_emit_and_round_trip() {
    let c = Challenge::new(SPEC_MAC, SPEC_INV);
    let v = c.to_header_value(Scheme::L402);
    assert_eq!(
        v,
        format!(r#"L402 macaroon="{SPEC_MAC}", invoice="{SPEC_INV}""#)
    );
    // The emitted form matches lnget's regex shape: macaroon first, `, ` then invoice.
    assert!(v.starts_with("L402 macaroon=\""));
    assert!(v.contains("\", invoice=\""));
    let set = ChallengeSet::parse([v.as_bytes()]).unwrap();
    assert_eq!(set.l402().unwrap(), &c);
    let lsat = c.to_header_value(Scheme::Lsat);
    assert!(lsat.starts_with("LSAT macaroon=\""));
    let set = ChallengeSet::parse([lsat.as_bytes()]).unwrap();
    assert_eq!(set.l402().unwrap().scheme(), Scheme::Lsat);
    assert_eq!(set.l402().unwrap().macaroon(), SPEC_MAC);
    // Parsed challenges emit canonically whatever their input shape was.
    let weird = r#"lsat  Invoice=lnbc1 , version="0",token="AgE=""#;
    let set = ChallengeSet::parse([weird.as_bytes()]).unwrap();
    assert_eq!(
        set.l402().unwrap().to_header_value(Scheme::L402),
        r#"L402 macaroon="AgE=", invoice="lnbc1""#
    );
    // into_owned outlives its input.
    let owned = {
        let tmp = String::from(r#"L402 macaroon="x", invoice="y""#);
        ChallengeSet::parse([tmp.as_bytes()])
            .unwrap()
            .l402()
            .unwrap()
            .clone()
            .into_owned()
    };
    assert_eq!(owned.macaroon(), "x");
}

#[test]
fn generic_challenge_syntax() {
    let c = parse_challenges(
        r#"Digest realm="a", qop="auth, auth-int", nc=00000001, Negotiate, Basic dXNlcjpwYXNz"#,
    )
    .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c[0].scheme, "Digest");
    assert_eq!(c[0].param("QOP"), Some("auth, auth-int"));
    assert_eq!(c[0].param("nc"), Some("00000001"));
    assert_eq!(c[1].scheme, "Negotiate");
    assert!(c[1].params.is_empty() && c[1].token68.is_none());
    assert_eq!(c[2].token68, Some("dXNlcjpwYXNz"));
    // Borrowed unless escapes were present.
    let c = parse_challenges(r#"X a="plain", b="esc\"aped""#).unwrap();
    assert!(matches!(
        c[0].params[0].value,
        std::borrow::Cow::Borrowed("plain")
    ));
    assert!(matches!(c[0].params[1].value, std::borrow::Cow::Owned(_)));
    assert_eq!(c[0].params[1].value, "esc\"aped");
    // UTF-8 (obs-text) inside a quoted string is kept.
    let c = parse_challenges("X a=\"caf\u{e9}\"").unwrap();
    assert_eq!(c[0].param("a"), Some("caf\u{e9}"));
    // Duplicates are kept for the caller.
    let c = parse_challenges("X a=1, a=2").unwrap();
    assert!(c[0].has_duplicate_params());
    assert_eq!(c[0].params.len(), 2);
}

// ---------------------------------------------------------------------------
// Credentials.

fn fixture() -> (Macaroon, Preimage, RootKey) {
    let root = RootKey::from_bytes([0x42; 32]);
    let preimage = Preimage::from_bytes([0x5a; 32]);
    let id = Identifier::new(preimage.payment_hash(), TokenId([0x11; 32]));
    // The `?`/`>` bytes make `+`, `/` and `-`, `_` appear in base64.
    let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
    mac.add_first_party_caveat("services=api:0");
    mac.add_first_party_caveat("api_valid_until=2000000000");
    mac.add_first_party_caveat("note=????>>>>~~~~\u{ff}");
    (mac, preimage, root)
}

#[test]
fn credential_table() {
    let (mac, preimage, _) = fixture();
    let b64 = mac.to_base64();
    let lower = preimage.to_hex();
    let upper = lower.to_uppercase();
    let mixed: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let cases: Vec<(String, Scheme, usize)> = vec![
        (format!("L402 {b64}:{lower}"), Scheme::L402, 1),
        (format!("l402 {b64}:{lower}"), Scheme::L402, 1),
        (format!("LSAT {b64}:{lower}"), Scheme::Lsat, 1),
        (format!("lSaT {b64}:{lower}"), Scheme::Lsat, 1),
        (format!("L402    {b64}:{lower}"), Scheme::L402, 1),
        (format!("L402\t{b64}:{lower}"), Scheme::L402, 1),
        (format!("L402 {b64}:{upper}"), Scheme::L402, 1),
        (format!("L402 {b64}:{mixed}"), Scheme::L402, 1),
        (format!("L402 {b64}:{lower}  "), Scheme::L402, 1),
        (format!("L402 {b64},{b64}:{lower}"), Scheme::L402, 2),
        (format!("L402 a,b,c:{lower}"), Scheme::L402, 3),
    ];
    for (v, scheme, count) in cases {
        let c = Credential::parse(&v).unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert_eq!(c.scheme(), scheme, "{v}");
        assert_eq!(c.macaroon_count(), count, "{v}");
        assert_eq!(c.macaroon_count(), c.macaroons().count());
        assert_eq!(c.preimage(), &preimage, "{v}");
        // Canonical form: `L402 `, macaroons as sent, lowercase hex.
        let canon = c.to_header_value();
        assert!(canon.starts_with("L402 "));
        assert!(canon.ends_with(&lower));
        let again = Credential::parse(&canon).unwrap();
        assert_eq!(again.to_header_value(), canon);
        assert_eq!(
            again.macaroons().collect::<Vec<_>>(),
            c.macaroons().collect::<Vec<_>>()
        );
        let lsat = c.to_lsat_header_value();
        assert_eq!(lsat[4..], canon[4..]);
        assert_eq!(Credential::parse(&lsat).unwrap().scheme(), Scheme::Lsat);
    }
}

#[test]
fn credential_error_table() {
    let p = "ab".repeat(32);
    let cases: Vec<(String, CredentialError, &str)> = vec![
        ("".into(), CredentialError::NotL402, "malformed_credential"),
        (
            "Bearer abc".into(),
            CredentialError::NotL402,
            "malformed_credential",
        ),
        (
            "L402x abc:00".into(),
            CredentialError::NotL402,
            "malformed_credential",
        ),
        (
            format!("L402:{p}"),
            CredentialError::NotL402,
            "malformed_credential",
        ),
        (
            "L402".into(),
            CredentialError::MissingPreimage,
            "malformed_credential",
        ),
        (
            "L402 ".into(),
            CredentialError::MissingPreimage,
            "malformed_credential",
        ),
        (
            "L402 AgE".into(),
            CredentialError::MissingPreimage,
            "malformed_credential",
        ),
        (
            "L402 AgE:".into(),
            CredentialError::BadPreimage,
            "invalid_preimage",
        ),
        (
            format!("L402 AgE:{}", &p[..63]),
            CredentialError::BadPreimage,
            "invalid_preimage",
        ),
        (
            format!("L402 AgE:{p}0"),
            CredentialError::BadPreimage,
            "invalid_preimage",
        ),
        (
            format!("L402 AgE:{}g", &p[..63]),
            CredentialError::BadPreimage,
            "invalid_preimage",
        ),
        (
            format!("L402 AgE:0x{}", &p[..62]),
            CredentialError::BadPreimage,
            "invalid_preimage",
        ),
        (
            format!("L402 :{p}"),
            CredentialError::EmptyMacaroon,
            "malformed_credential",
        ),
        (
            format!("L402 AgE,:{p}"),
            CredentialError::EmptyMacaroon,
            "malformed_credential",
        ),
        (
            format!("L402 ,AgE:{p}"),
            CredentialError::EmptyMacaroon,
            "malformed_credential",
        ),
        (
            format!("L402 {}:{p}", ["a"; 9].join(",")),
            CredentialError::TooManyMacaroons,
            "malformed_credential",
        ),
        (
            format!("L402 {}:{p}", "A".repeat(16 * 1024)),
            CredentialError::TooLong,
            "credential_too_large",
        ),
    ];
    for (v, want, reason) in cases {
        let err = Credential::parse(&v).unwrap_err();
        assert_eq!(err, want, "{v:.80}");
        assert_eq!(err.reason(), reason, "{v:.80}");
        assert_eq!(err.status(), 400);
    }
    // Characters outside base64 are found when the macaroon is decoded.
    for v in [
        format!("L402 Ag E:{p}"),
        format!("L402 AgE!:{p}"),
        format!("L402 \"AgE\":{p}"),
        format!("L402 a:b:{p}"),
    ] {
        let cred = Credential::parse(&v).unwrap();
        let mut buf = Vec::new();
        let err = pay402_core::l402::PresentedToken::decode(&cred, &mut buf).unwrap_err();
        assert_eq!(err, CredentialError::BadMacaroonChars.into(), "{v}");
        assert_eq!(err.reason(), "malformed_credential");
    }
    // Exactly 8 macaroons is the limit, not an error.
    let eight = format!("L402 {}:{p}", ["a"; 8].join(","));
    assert_eq!(Credential::parse(&eight).unwrap().macaroon_count(), 8);
}

#[test]
fn all_base64_flavours_decode_to_the_same_macaroon() {
    let (mac, preimage, root) = fixture();
    let bytes = mac.encode_v2();
    let flavours = [
        STANDARD.encode(&bytes),
        STANDARD_NO_PAD.encode(&bytes),
        URL_SAFE.encode(&bytes),
        URL_SAFE_NO_PAD.encode(&bytes),
    ];
    // The fixture exercises every alphabet-specific character and padding.
    assert!(flavours[0].contains('+') && flavours[0].contains('/') && flavours[0].ends_with('='));
    assert!(flavours[2].contains('-') && flavours[2].contains('_'));
    for f in &flavours {
        let header = Credential::new(f, preimage.clone()).to_header_value();
        let cred = Credential::parse(&header).unwrap();
        let mut buf = Vec::new();
        let token = PresentedToken::decode(&cred, &mut buf).unwrap();
        assert_eq!(token.macaroon().to_owned(), mac, "{f}");
        let ok = token
            .verify(&root.derive(), &[], &VerifyContext::new("api", UnixTime(1)))
            .unwrap();
        assert_eq!(ok.token_id, TokenId([0x11; 32]));
        assert_eq!(Macaroon::from_base64(f).unwrap(), mac);
    }
}

#[test]
fn from_headers_picks_the_one_l402_credential() {
    let (mac, preimage, _) = fixture();
    let b64 = mac.to_base64();
    let good = Credential::new(&b64, preimage.clone()).to_header_value();
    let lsat = format!("LSAT {b64}:{}", preimage.to_hex());
    // Other schemes ignored, wherever they are.
    let got = Credential::from_headers([
        b"Basic dXNlcjpwYXNz".as_slice(),
        good.as_bytes(),
        b"Bearer abc.def.ghi".as_slice(),
        b"".as_slice(),
        b"Negotiate YIIB==".as_slice(),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(got.first_macaroon(), b64);
    assert_eq!(got.scheme(), Scheme::L402);
    // None when absent.
    assert_eq!(
        Credential::from_headers([b"Basic x".as_slice()]).unwrap(),
        None
    );
    assert_eq!(Credential::from_headers(Vec::<&[u8]>::new()).unwrap(), None);
    // Two L402 credentials: an error, never "last one wins" (Aperture's bug).
    for pair in [
        [good.as_bytes(), good.as_bytes()],
        [lsat.as_bytes(), good.as_bytes()],
        [good.as_bytes(), lsat.as_bytes()],
    ] {
        let err = Credential::from_headers(pair).unwrap_err();
        assert_eq!(err, CredentialError::Multiple);
        assert_eq!(err.reason(), "multiple_credentials");
    }
    // Even when separated by other schemes.
    let err = Credential::from_headers([
        good.as_bytes(),
        b"Basic x".as_slice(),
        b"l402 garbage".as_slice(),
    ])
    .unwrap_err();
    assert_eq!(err, CredentialError::Multiple);
    // A malformed single L402 credential is reported as such.
    assert_eq!(
        Credential::from_headers([b"L402 AgE".as_slice()]).unwrap_err(),
        CredentialError::MissingPreimage
    );
    // Non-UTF-8 bytes.
    assert_eq!(
        Credential::from_headers([b"L402 \xff\xfe:00".as_slice()]).unwrap_err(),
        CredentialError::NotUtf8
    );
}

#[test]
fn split_credentials_table() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("L402 a:b", Some(("L402", "a:b"))),
        ("L402   a:b  ", Some(("L402", "a:b"))),
        ("L402\ta:b", Some(("L402", "a:b"))),
        ("L402", Some(("L402", ""))),
        ("", None),
        (" L402 a", None),
        ("L402:a", None),
        ("L402,a", None),
    ];
    for (v, want) in cases {
        assert_eq!(split_credentials(v), *want, "{v:?}");
    }
}
