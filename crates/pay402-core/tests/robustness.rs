//! Robustness rules found by review: one bad header line must not hide a good
//! challenge, other schemes' oversized values are ignored, and a few lenient
//! spots in value grammars are closed.

use pay402_core::auth_header::{HeaderSyntaxError, parse_challenges};
use pay402_core::l402::caveat::verify_caveats;
use pay402_core::l402::{
    CaveatError, ChallengeError, ChallengeSet, Credential, CredentialError, VerifyContext,
};
use pay402_core::time::UnixTime;

const GOOD: &str = "L402 macaroon=\"AgEB\", invoice=\"lnbcrt1\"";

#[test]
fn a_broken_line_of_another_scheme_does_not_hide_l402() {
    for bad in ["Digest realm=\"x", "Foo a b c", "Basic realm=\"\u{1}\""] {
        let set = ChallengeSet::parse([bad.as_bytes(), GOOD.as_bytes()]).unwrap();
        assert_eq!(set.l402().unwrap().invoice(), "lnbcrt1", "{bad}");
        let set = ChallengeSet::parse([GOOD.as_bytes(), bad.as_bytes()]).unwrap();
        assert_eq!(set.l402().unwrap().macaroon(), "AgEB", "{bad}");
    }
    // Non-UTF-8 next to a good line is skipped too.
    let set = ChallengeSet::parse([b"X \xff".as_slice(), GOOD.as_bytes()]).unwrap();
    assert_eq!(set.all().len(), 1);
}

#[test]
fn a_broken_l402_challenge_beside_a_good_one_is_skipped() {
    let set = ChallengeSet::parse([b"LSAT invoice=\"x\"".as_slice(), GOOD.as_bytes()]).unwrap();
    assert_eq!(set.all().len(), 1);
}

#[test]
fn errors_are_reported_when_nothing_usable_is_found() {
    assert_eq!(
        ChallengeSet::parse([b"Digest realm=\"x".as_slice()]).unwrap_err(),
        ChallengeError::Syntax(HeaderSyntaxError::Unterminated)
    );
    assert_eq!(
        ChallengeSet::parse([b"L402 invoice=\"x\"".as_slice(), b"Basic realm=\"r\""]).unwrap_err(),
        ChallengeError::MissingToken
    );
}

#[test]
fn oversized_or_binary_values_of_other_schemes_are_ignored() {
    let huge = format!("Bearer {}", "a".repeat(40_000));
    let cred = format!("L402 AgEB:{}", "00".repeat(32));
    let found =
        Credential::from_headers([huge.as_bytes(), b"Other \xff\xfe", cred.as_bytes()]).unwrap();
    assert!(found.is_some());
    let huge_l402 = format!("L402 {}:{}", "A".repeat(20_000), "00".repeat(32));
    assert_eq!(
        Credential::from_headers([huge_l402.as_bytes()]).unwrap_err(),
        CredentialError::TooLong
    );
    assert_eq!(
        Credential::from_headers([b"lsat \xff:00".as_slice()]).unwrap_err(),
        CredentialError::NotUtf8
    );
}

#[test]
fn escaped_control_characters_are_rejected() {
    assert!(matches!(
        parse_challenges("Basic realm=\"a\\\u{1}b\""),
        Err(HeaderSyntaxError::Syntax(_))
    ));
    assert_eq!(
        parse_challenges("Basic realm=\"a\\\tb\"").unwrap()[0].params[0].value,
        "a\tb"
    );
}

#[test]
fn service_tiers_are_plain_digits() {
    let ctx = VerifyContext::new("api", UnixTime(0));
    for bad in [
        "services=api:+1",
        "services=api:",
        "services=api: 1",
        "services=api:256",
    ] {
        assert_eq!(
            verify_caveats([bad.as_bytes()], &[], &ctx),
            Err(CaveatError::Malformed("services".into())),
            "{bad}"
        );
    }
    assert!(verify_caveats([b"services=api:255".as_slice()], &[], &ctx).is_ok());
}
