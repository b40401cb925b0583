//! Malformed and hostile input through the whole of core.
//!
//! Every row names an input, the exact typed error it must produce and the
//! stable reason string (`Reason::reason()`) a peer would see. Nothing may
//! panic: every row, and the mutation loops at the end, run under
//! `catch_unwind`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use pay402_core::auth_header::HeaderSyntaxError;
use pay402_core::b64::Base64Error;
use pay402_core::l402::caveat::build;
use pay402_core::l402::identifier::IdentifierError;
use pay402_core::l402::macaroon::MacaroonError;
use pay402_core::l402::{
    CaveatError, Challenge, ChallengeError, ChallengeSet, Credential, CredentialError, Identifier,
    InvoiceError, L402Error, Macaroon, MacaroonKey, MacaroonRef, PresentedToken, RequestFacts,
    RootKey, TokenId, VerifiedToken, VerifyContext, check_challenge,
};
use pay402_core::lightning::{Network, Preimage};
use pay402_core::money::Msat;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;

// ---------------------------------------------------------------------------
// Fixture: one server with one minted token.

const ROOT: [u8; 32] = [0x42; 32];
const TOKEN: TokenId = TokenId([0x11; 32]);
const PREIMAGE: [u8; 32] = [0x5a; 32];
const NOW: u64 = 1_000;
const UNTIL: u64 = 2_000;

fn preimage() -> Preimage {
    Preimage::from_bytes(PREIMAGE)
}

fn identifier() -> [u8; 66] {
    Identifier::new(preimage().payment_hash(), TOKEN).encode()
}

fn mint_with(root: [u8; 32], id: &[u8], caveats: &[&str]) -> Macaroon {
    let mut m = Macaroon::new(&RootKey::from_bytes(root), Some("lsat"), id);
    for c in caveats {
        m.add_first_party_caveat(c);
    }
    m
}

fn mint(caveats: &[&str]) -> Macaroon {
    mint_with(ROOT, &identifier(), caveats)
}

/// The token every test starts from.
fn good() -> Macaroon {
    mint(&["services=api:0", "api_valid_until=2000"])
}

fn header_for(b64: &str) -> String {
    format!("L402 {b64}:{}", preimage().to_hex())
}

/// The key store: only the fixture token is known.
fn lookup(id: TokenId) -> Option<MacaroonKey> {
    (id == TOKEN).then(|| RootKey::from_bytes(ROOT).derive())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    put_varint(&mut out, data.len() as u64);
    out.extend_from_slice(data);
    out
}

/// Replaces the signature (the last 32 bytes) of V2 bytes.
fn with_sig(mut bytes: Vec<u8>, sig: &[u8; 32]) -> Vec<u8> {
    let n = bytes.len();
    bytes[n - 32..].copy_from_slice(sig);
    bytes
}

// ---------------------------------------------------------------------------
// The harness.

#[derive(Debug)]
enum Input {
    /// One `Authorization` value: `Credential::parse`, then the server pipeline.
    Auth(String),
    /// Several raw `Authorization` values: `Credential::from_headers`, then the pipeline.
    AuthValues(Vec<Vec<u8>>),
    /// V2 bytes, presented in standard base64 with the fixture preimage.
    Mac(Vec<u8>),
    /// V2 bytes given straight to `MacaroonRef::decode`.
    RawMac(Vec<u8>),
    /// `WWW-Authenticate` values: `ChallengeSet::parse` then `l402()`.
    Challenge(Vec<Vec<u8>>),
    /// A client's pre-payment check of a challenge (macaroon, invoice).
    Offer(String, String),
}

#[derive(Clone, Copy, Debug)]
enum Ctx {
    Default,
    Strict,
    At(u64),
    Service(&'static str),
    Capability(&'static str),
    Request(&'static str, &'static str, &'static [u8]),
}

#[derive(Debug, PartialEq)]
enum Got {
    Ok,
    NoCredential,
    L402(L402Error),
    Challenge(ChallengeError),
    Invoice(InvoiceError),
}

impl Got {
    fn reason(&self) -> &'static str {
        match self {
            Got::Ok => "ok",
            Got::NoCredential => "no_credential",
            Got::L402(e) => e.reason(),
            Got::Challenge(e) => e.reason(),
            Got::Invoice(e) => e.reason(),
        }
    }
}

fn server(cred: &Credential<'_>, ctx: &VerifyContext<'_>) -> Result<VerifiedToken, L402Error> {
    let mut buf = Vec::new();
    let token = PresentedToken::decode(cred, &mut buf)?;
    let key = lookup(token.token_id()).ok_or(L402Error::UnknownToken)?;
    token.verify(&key, &[], ctx)
}

fn run(input: &Input, ctx: Ctx) -> Got {
    let headers = http::HeaderMap::new();
    let method;
    let facts;
    let mut vc = VerifyContext::new("api", UnixTime(NOW));
    match ctx {
        Ctx::Default => {}
        Ctx::Strict => vc = vc.strict(true),
        Ctx::At(t) => vc.now = UnixTime(t),
        Ctx::Service(s) => vc.service = s,
        Ctx::Capability(c) => vc = vc.with_capability(c),
        Ctx::Request(m, p, body) => {
            method = http::Method::from_bytes(m.as_bytes()).unwrap();
            facts = RequestFacts::new(&method, p, &headers).with_body(body);
            vc = vc.with_request(&facts);
        }
    }
    let outcome = |r: Result<VerifiedToken, L402Error>| match r {
        Ok(v) => {
            assert_eq!(v.token_id, TOKEN);
            Got::Ok
        }
        Err(e) => Got::L402(e),
    };
    match input {
        Input::Auth(v) => match Credential::parse(v) {
            Ok(c) => outcome(server(&c, &vc)),
            Err(e) => Got::L402(e.into()),
        },
        Input::AuthValues(vs) => match Credential::from_headers(vs.iter().map(Vec::as_slice)) {
            Ok(Some(c)) => outcome(server(&c, &vc)),
            Ok(None) => Got::NoCredential,
            Err(e) => Got::L402(e.into()),
        },
        Input::Mac(bytes) => {
            let h = header_for(&STANDARD.encode(bytes));
            match Credential::parse(&h) {
                Ok(c) => outcome(server(&c, &vc)),
                Err(e) => Got::L402(e.into()),
            }
        }
        Input::RawMac(bytes) => match MacaroonRef::decode(bytes) {
            Ok(_) => Got::Ok,
            Err(e) => Got::L402(e.into()),
        },
        Input::Challenge(vs) => {
            match ChallengeSet::parse(vs.iter().map(Vec::as_slice))
                .and_then(|s| s.l402().map(|_| ()))
            {
                Ok(()) => Got::Ok,
                Err(e) => Got::Challenge(e),
            }
        }
        Input::Offer(mac, inv) => {
            let c = Challenge::new(mac.as_str(), inv.as_str());
            match check_challenge(&c, Network::Bitcoin, UnixTime(NOW), Msat(1_000_000)) {
                Ok(_) => Got::Ok,
                Err(e) => Got::Invoice(e),
            }
        }
    }
}

fn run_no_panic(input: &Input, ctx: Ctx) -> Got {
    catch_unwind(AssertUnwindSafe(|| run(input, ctx)))
        .unwrap_or_else(|_| panic!("core panicked on {input:?}"))
}

struct Row {
    name: &'static str,
    input: Input,
    ctx: Ctx,
    want: Got,
    reason: &'static str,
}

fn row(name: &'static str, input: Input, ctx: Ctx, want: Got, reason: &'static str) -> Row {
    Row {
        name,
        input,
        ctx,
        want,
        reason,
    }
}

fn cred(e: CredentialError) -> Got {
    Got::L402(L402Error::Credential(e))
}
fn mac(e: MacaroonError) -> Got {
    Got::L402(L402Error::Macaroon(e))
}
fn cav(e: CaveatError) -> Got {
    Got::L402(L402Error::Caveat(e))
}
fn chal(e: ChallengeError) -> Got {
    Got::Challenge(e)
}
fn syntax(e: HeaderSyntaxError) -> Got {
    Got::Challenge(ChallengeError::Syntax(e))
}

fn auth(s: impl Into<String>) -> Input {
    Input::Auth(s.into())
}

fn www(values: &[&str]) -> Input {
    Input::Challenge(values.iter().map(|v| v.as_bytes().to_vec()).collect())
}

fn rows() -> Vec<Row> {
    use Ctx::Default as D;
    let good = good();
    let good_b64 = good.to_base64();
    let good_bytes = good.encode_v2();
    let p = preimage().to_hex();
    let id = identifier();
    let ok_challenge = format!(r#"L402 macaroon="{good_b64}", invoice="lnbc1""#);

    let mut rows = vec![
        // --- Authorization header shape ---------------------------------
        row(
            "empty authorization",
            auth(""),
            D,
            cred(CredentialError::NotL402),
            "malformed_credential",
        ),
        row(
            "scheme only",
            auth("L402"),
            D,
            cred(CredentialError::MissingPreimage),
            "malformed_credential",
        ),
        row(
            "scheme and space",
            auth("L402 "),
            D,
            cred(CredentialError::MissingPreimage),
            "malformed_credential",
        ),
        row(
            "legacy scheme only",
            auth("LSAT"),
            D,
            cred(CredentialError::MissingPreimage),
            "malformed_credential",
        ),
        row(
            "other scheme",
            auth(format!("Bearer {good_b64}:{p}")),
            D,
            cred(CredentialError::NotL402),
            "malformed_credential",
        ),
        row(
            "no space after scheme",
            auth(format!("L402:{good_b64}:{p}")),
            D,
            cred(CredentialError::NotL402),
            "malformed_credential",
        ),
        row(
            "no preimage",
            auth(format!("L402 {good_b64}")),
            D,
            cred(CredentialError::MissingPreimage),
            "malformed_credential",
        ),
        row(
            "empty preimage",
            auth(format!("L402 {good_b64}:")),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "preimage 63 hex digits",
            auth(format!("L402 {good_b64}:{}", &p[1..])),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "preimage 65 hex digits",
            auth(format!("L402 {good_b64}:{p}a")),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "preimage 32 hex digits",
            auth(format!("L402 {good_b64}:{}", &p[..32])),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "non-hex preimage",
            auth(format!("L402 {good_b64}:{}g", &p[1..])),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "0x-prefixed preimage",
            auth(format!("L402 {good_b64}:0x{}", &p[2..])),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "preimage in base64",
            auth(format!("L402 {good_b64}:{}", STANDARD.encode(PREIMAGE))),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "non-ASCII preimage",
            auth(format!("L402 {good_b64}:{}\u{e9}", &p[2..])),
            D,
            cred(CredentialError::BadPreimage),
            "invalid_preimage",
        ),
        row(
            "two macaroons in credential",
            auth(format!("L402 {good_b64},{good_b64}:{p}")),
            D,
            Got::L402(L402Error::MultipleMacaroons),
            "multiple_macaroons",
        ),
        row(
            "empty macaroon in list",
            auth(format!("L402 {good_b64},:{p}")),
            D,
            cred(CredentialError::EmptyMacaroon),
            "malformed_credential",
        ),
        row(
            "nine macaroons",
            auth(format!("L402 {}:{p}", [good_b64.as_str(); 9].join(","))),
            D,
            cred(CredentialError::TooManyMacaroons),
            "malformed_credential",
        ),
        row(
            "quoted macaroon",
            auth(format!("L402 \"{good_b64}\":{p}")),
            D,
            cred(CredentialError::BadMacaroonChars),
            "malformed_credential",
        ),
        row(
            "space inside macaroon",
            auth(format!("L402 {} {}:{p}", &good_b64[..10], &good_b64[10..])),
            D,
            cred(CredentialError::BadMacaroonChars),
            "malformed_credential",
        ),
        row(
            "oversized authorization",
            auth(format!("L402 {}:{p}", "A".repeat(16 * 1024))),
            D,
            cred(CredentialError::TooLong),
            "credential_too_large",
        ),
        row(
            "non-UTF-8 authorization",
            Input::AuthValues(vec![b"L402 Ag\xc3\x28E:00".to_vec()]),
            D,
            cred(CredentialError::NotUtf8),
            "malformed_credential",
        ),
        row(
            "two L402 authorization headers",
            Input::AuthValues(vec![
                header_for(&good_b64).into_bytes(),
                header_for(&good_b64).into_bytes(),
            ]),
            D,
            cred(CredentialError::Multiple),
            "multiple_credentials",
        ),
        row(
            "LSAT and L402 authorization headers",
            Input::AuthValues(vec![
                format!("LSAT {good_b64}:{p}").into_bytes(),
                header_for(&good_b64).into_bytes(),
            ]),
            D,
            cred(CredentialError::Multiple),
            "multiple_credentials",
        ),
        row(
            "no L402 authorization header",
            Input::AuthValues(vec![b"Basic dXNlcjpwYXNz".to_vec(), b"".to_vec()]),
            D,
            Got::NoCredential,
            "no_credential",
        ),
        // --- Base64 --------------------------------------------------------
        row(
            "base64 of one char",
            auth(format!("L402 A:{p}")),
            D,
            Got::L402(L402Error::Base64(Base64Error::Invalid)),
            "invalid_base64",
        ),
        row(
            "base64 padding in the middle",
            auth(format!("L402 Ag==AgAg:{p}")),
            D,
            Got::L402(L402Error::Base64(Base64Error::Invalid)),
            "invalid_base64",
        ),
        row(
            "base64 only padding",
            auth(format!("L402 ====:{p}")),
            D,
            Got::L402(L402Error::Base64(Base64Error::Invalid)),
            "invalid_base64",
        ),
        row(
            "base64 non-canonical trailing bits",
            auth(format!("L402 AgF:{p}")),
            D,
            Got::L402(L402Error::Base64(Base64Error::Invalid)),
            "invalid_base64",
        ),
        row(
            "base64 mixed alphabets",
            auth(format!("L402 Ag+_:{p}")),
            D,
            Got::L402(L402Error::Base64(Base64Error::MixedAlphabet)),
            "invalid_base64",
        ),
        row(
            "oversized macaroon in header",
            Input::Mac(vec![2; 9000]),
            D,
            Got::L402(L402Error::Base64(Base64Error::TooLong)),
            "macaroon_too_large",
        ),
        row(
            "oversized raw macaroon",
            Input::RawMac(vec![2; 8 * 1024 + 1]),
            D,
            mac(MacaroonError::TooLarge),
            "macaroon_too_large",
        ),
        // --- V2 binary structure ------------------------------------------
        row(
            "empty raw macaroon",
            Input::RawMac(vec![]),
            D,
            mac(MacaroonError::Truncated),
            "malformed_macaroon",
        ),
        row(
            "version byte 1",
            Input::Mac([&[1u8][..], &good_bytes[1..]].concat()),
            D,
            mac(MacaroonError::UnsupportedVersion),
            "unsupported_macaroon",
        ),
        row(
            "version byte 3",
            Input::Mac([&[3u8][..], &good_bytes[1..]].concat()),
            D,
            mac(MacaroonError::UnsupportedVersion),
            "unsupported_macaroon",
        ),
        row(
            "V1 text macaroon",
            Input::Mac(b"0024location http://example.org/\n".to_vec()),
            D,
            mac(MacaroonError::UnsupportedVersion),
            "unsupported_macaroon",
        ),
        row(
            "V2 JSON macaroon",
            Input::Mac(br#"{"v":2,"i":"id","s64":"AA"}"#.to_vec()),
            D,
            mac(MacaroonError::UnsupportedVersion),
            "unsupported_macaroon",
        ),
        row(
            "field longer than remaining input",
            Input::Mac(vec![2, 2, 0x42, 0, 0]),
            D,
            mac(MacaroonError::Truncated),
            "malformed_macaroon",
        ),
        row(
            "field length over the field limit",
            Input::Mac([&[2u8, 2, 0x81, 0x40][..], &[0; 64]].concat()),
            D,
            mac(MacaroonError::FieldTooLarge),
            "malformed_macaroon",
        ),
        row(
            "varint overflow: 11 bytes of 0xff",
            Input::Mac([&[2u8, 2][..], &[0xff; 11]].concat()),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "varint overflow: 10-byte length with high bits",
            Input::Mac([&[2u8, 2][..], &[0xff; 9], &[0x7f], &[0; 8]].concat()),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "varint overflow: 10-byte tag that wraps to 2",
            Input::Mac({
                let mut b = vec![2u8, 0x82];
                b.extend_from_slice(&[0x80; 8]);
                b.push(0x02); // bit 64 and up: must not silently wrap
                b.extend_from_slice(
                    &good_bytes[good_bytes.iter().position(|&x| x == 0x42).unwrap()..],
                );
                b
            }),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "unknown field tag instead of identifier",
            Input::Mac([&[2u8][..], &field(3, &id), &[0, 0], &field(6, &[0; 32])].concat()),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "location without identifier",
            Input::Mac([&[2u8][..], &field(1, b"lsat"), &[0, 0], &field(6, &[0; 32])].concat()),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "two locations",
            Input::Mac(
                [
                    &[2u8][..],
                    &field(1, b"a"),
                    &field(1, b"b"),
                    &field(2, &id),
                    &[0, 0],
                    &field(6, &[0; 32]),
                ]
                .concat(),
            ),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "no EOS after identifier",
            Input::Mac(
                [
                    &[2u8][..],
                    &field(2, &id),
                    &field(2, b"a=b"),
                    &[0, 0],
                    &field(6, &[0; 32]),
                ]
                .concat(),
            ),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "caveat section with a signature field",
            Input::Mac(
                [
                    &[2u8][..],
                    &field(2, &id),
                    &[0],
                    &field(6, &[0; 32]),
                    &[0, 0],
                    &field(6, &[0; 32]),
                ]
                .concat(),
            ),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "caveat location without caveat id",
            Input::Mac(
                [
                    &[2u8][..],
                    &field(2, &id),
                    &[0],
                    &field(1, b"x"),
                    &[0, 0],
                    &field(6, &[0; 32]),
                ]
                .concat(),
            ),
            D,
            mac(MacaroonError::Malformed),
            "malformed_macaroon",
        ),
        row(
            "third-party caveat (vid field 04)",
            Input::Mac(
                [
                    &[2u8][..],
                    &field(1, b"lsat"),
                    &field(2, &id),
                    &[0],
                    &field(1, b"https://tp"),
                    &field(2, b"cid"),
                    &field(4, &[7; 72]),
                    &[0, 0],
                    &field(6, &[0; 32]),
                ]
                .concat(),
            ),
            D,
            mac(MacaroonError::ThirdPartyCaveat),
            "unsupported_macaroon",
        ),
        row(
            "too many caveats (65)",
            Input::Mac({
                let cs: Vec<String> = (0..65).map(|i| format!("c{i}=v")).collect();
                let cs: Vec<&str> = cs.iter().map(String::as_str).collect();
                mint(&cs).encode_v2()
            }),
            D,
            mac(MacaroonError::TooManyCaveats),
            "malformed_macaroon",
        ),
        row(
            "missing signature",
            Input::Mac(good_bytes[..good_bytes.len() - 34].to_vec()),
            D,
            mac(MacaroonError::BadSignature),
            "malformed_macaroon",
        ),
        row(
            "signature of 31 bytes",
            Input::Mac([&good_bytes[..good_bytes.len() - 34], &field(6, &[0; 31])].concat()),
            D,
            mac(MacaroonError::BadSignature),
            "malformed_macaroon",
        ),
        row(
            "signature of 33 bytes",
            Input::Mac([&good_bytes[..good_bytes.len() - 34], &field(6, &[0; 33])].concat()),
            D,
            mac(MacaroonError::BadSignature),
            "malformed_macaroon",
        ),
        row(
            "signature under the wrong tag",
            Input::Mac([&good_bytes[..good_bytes.len() - 34], &field(2, &[0; 32])].concat()),
            D,
            mac(MacaroonError::BadSignature),
            "malformed_macaroon",
        ),
        row(
            "trailing bytes",
            Input::Mac([&good_bytes[..], &[0]].concat()),
            D,
            mac(MacaroonError::TrailingBytes),
            "malformed_macaroon",
        ),
        row(
            "two macaroons concatenated",
            Input::Mac([&good_bytes[..], &good_bytes[..]].concat()),
            D,
            mac(MacaroonError::TrailingBytes),
            "malformed_macaroon",
        ),
        // --- Identifier ----------------------------------------------------
        row(
            "identifier of 65 bytes",
            Input::Mac(mint_with(ROOT, &id[..65], &[]).encode_v2()),
            D,
            Got::L402(L402Error::Identifier(IdentifierError::BadLength(65))),
            "malformed_identifier",
        ),
        row(
            "empty identifier",
            Input::Mac(mint_with(ROOT, b"", &[]).encode_v2()),
            D,
            Got::L402(L402Error::Identifier(IdentifierError::BadLength(0))),
            "malformed_identifier",
        ),
        row(
            "identifier of 132 non-hex bytes",
            Input::Mac(mint_with(ROOT, &[b'z'; 132], &[]).encode_v2()),
            D,
            Got::L402(L402Error::Identifier(IdentifierError::BadHex)),
            "malformed_identifier",
        ),
        row(
            "identifier version 1",
            Input::Mac({
                let mut i = id;
                i[1] = 1;
                mint_with(ROOT, &i, &[]).encode_v2()
            }),
            D,
            Got::L402(L402Error::Identifier(IdentifierError::UnknownVersion(1))),
            "unknown_identifier_version",
        ),
        row(
            "identifier version 0xffff (hex form)",
            Input::Mac({
                let mut i = id;
                i[0] = 0xff;
                i[1] = 0xff;
                mint_with(ROOT, hex::encode(i).as_bytes(), &[]).encode_v2()
            }),
            D,
            Got::L402(L402Error::Identifier(IdentifierError::UnknownVersion(
                0xffff,
            ))),
            "unknown_identifier_version",
        ),
        // --- Preimage, keys, signature ------------------------------------
        row(
            "preimage mismatch",
            auth(format!("L402 {good_b64}:{}", "ab".repeat(32))),
            D,
            Got::L402(L402Error::PreimageMismatch),
            "preimage_mismatch",
        ),
        row(
            "all-zero preimage",
            auth(format!("L402 {good_b64}:{}", "0".repeat(64))),
            D,
            Got::L402(L402Error::PreimageMismatch),
            "preimage_mismatch",
        ),
        row(
            "payment hash instead of preimage",
            auth(format!("L402 {good_b64}:{}", preimage().payment_hash())),
            D,
            Got::L402(L402Error::PreimageMismatch),
            "preimage_mismatch",
        ),
        row(
            "unknown token id",
            Input::Mac({
                let i = Identifier::new(preimage().payment_hash(), TokenId([0x22; 32])).encode();
                mint_with(ROOT, &i, &[]).encode_v2()
            }),
            D,
            Got::L402(L402Error::UnknownToken),
            "unknown_token",
        ),
        row(
            "wrong root key",
            Input::Mac(mint_with([0x43; 32], &id, &["services=api:0"]).encode_v2()),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "flipped signature byte",
            Input::Mac({
                let mut b = good_bytes.clone();
                let n = b.len();
                b[n - 1] ^= 0x01;
                b
            }),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "tampered caveat byte",
            Input::Mac({
                let mut b = good_bytes.clone();
                let at = b.windows(5).position(|w| w == b"=2000").unwrap();
                b[at + 1] = b'9'; // api_valid_until=9000
                b
            }),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "tampered identifier byte (token id)",
            Input::Mac({
                let mut b = good_bytes.clone();
                let at = b.windows(4).position(|w| w == [0x11; 4]).unwrap();
                b[at] = 0x12;
                b
            }),
            D,
            Got::L402(L402Error::UnknownToken),
            "unknown_token",
        ),
        row(
            "appended caveat without re-signing",
            Input::Mac({
                let mut b = good_bytes.clone();
                let eos = b.len() - 35;
                let mut extra = field(2, b"api_valid_until=99999");
                extra.push(0);
                b.splice(eos..eos, extra);
                b
            }),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "removed caveat",
            Input::Mac(with_sig(
                mint(&["services=api:0"]).encode_v2(),
                good.signature(),
            )),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "reordered caveats",
            Input::Mac(with_sig(
                mint(&["api_valid_until=2000", "services=api:0"]).encode_v2(),
                good.signature(),
            )),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        row(
            "signature of another token",
            Input::Mac(with_sig(
                good_bytes.clone(),
                mint(&["services=api:0"]).signature(),
            )),
            D,
            Got::L402(L402Error::InvalidSignature),
            "invalid_signature",
        ),
        // --- Caveats ------------------------------------------------------
        row(
            "expired token",
            Input::Mac(good_bytes.clone()),
            Ctx::At(UNTIL),
            cav(CaveatError::Expired),
            "token_expired",
        ),
        row(
            "long expired token",
            Input::Mac(good_bytes.clone()),
            Ctx::At(u64::MAX),
            cav(CaveatError::Expired),
            "token_expired",
        ),
        row(
            "other service",
            Input::Mac(good_bytes.clone()),
            Ctx::Service("other"),
            cav(CaveatError::WrongService),
            "wrong_service",
        ),
        row(
            "service prefix is not the service",
            Input::Mac(good_bytes.clone()),
            Ctx::Service("ap"),
            cav(CaveatError::WrongService),
            "wrong_service",
        ),
        row(
            "widening valid_until",
            Input::Mac(mint(&["api_valid_until=2000", "api_valid_until=3000"]).encode_v2()),
            D,
            cav(CaveatError::Escalation("valid_until".into())),
            "caveat_escalation",
        ),
        row(
            "widening services: adds a service",
            Input::Mac(mint(&["services=api:0", "services=api:0,other:0"]).encode_v2()),
            D,
            cav(CaveatError::Escalation("services".into())),
            "caveat_escalation",
        ),
        row(
            "widening services: raises a tier",
            Input::Mac(mint(&["services=api:0", "services=api:1"]).encode_v2()),
            D,
            cav(CaveatError::Escalation("services".into())),
            "caveat_escalation",
        ),
        row(
            "widening capabilities: adds one",
            Input::Mac(mint(&["api_capabilities=read", "api_capabilities=read,write"]).encode_v2()),
            Ctx::Capability("read"),
            cav(CaveatError::Escalation("capabilities".into())),
            "caveat_escalation",
        ),
        row(
            "widening capabilities: empties the list",
            Input::Mac(mint(&["api_capabilities=read", "api_capabilities="]).encode_v2()),
            Ctx::Capability("write"),
            cav(CaveatError::Escalation("capabilities".into())),
            "caveat_escalation",
        ),
        row(
            "capability not granted",
            Input::Mac(mint(&["api_capabilities=read"]).encode_v2()),
            Ctx::Capability("write"),
            cav(CaveatError::CapabilityDenied),
            "capability_denied",
        ),
        row(
            "malformed services: no tier",
            Input::Mac(mint(&["services=api"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("services".into())),
            "malformed_caveat",
        ),
        row(
            "malformed services: tier 256",
            Input::Mac(mint(&["services=api:256"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("services".into())),
            "malformed_caveat",
        ),
        row(
            "malformed services: empty",
            Input::Mac(mint(&["services="]).encode_v2()),
            D,
            cav(CaveatError::Malformed("services".into())),
            "malformed_caveat",
        ),
        row(
            "malformed services: trailing comma",
            Input::Mac(mint(&["services=api:0,"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("services".into())),
            "malformed_caveat",
        ),
        row(
            "malformed services: empty name",
            Input::Mac(mint(&["services=:0"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("services".into())),
            "malformed_caveat",
        ),
        row(
            "malformed valid_until: words",
            Input::Mac(mint(&["api_valid_until=soon"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("valid_until".into())),
            "malformed_caveat",
        ),
        row(
            "malformed valid_until: negative",
            Input::Mac(mint(&["api_valid_until=-1"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("valid_until".into())),
            "malformed_caveat",
        ),
        row(
            "malformed valid_until: overflows u64",
            Input::Mac(mint(&["api_valid_until=99999999999999999999"]).encode_v2()),
            D,
            cav(CaveatError::Malformed("valid_until".into())),
            "malformed_caveat",
        ),
        row(
            "request binding: other method",
            Input::Mac(mint(&[&bound("POST", "/sms", b"hi")]).encode_v2()),
            Ctx::Request("PUT", "/sms", b"hi"),
            cav(CaveatError::RequestMismatch),
            "request_mismatch",
        ),
        row(
            "request binding: other path",
            Input::Mac(mint(&[&bound("POST", "/sms", b"hi")]).encode_v2()),
            Ctx::Request("POST", "/sms?to=1", b"hi"),
            cav(CaveatError::RequestMismatch),
            "request_mismatch",
        ),
        row(
            "request binding: other body",
            Input::Mac(mint(&[&bound("POST", "/sms", b"hi")]).encode_v2()),
            Ctx::Request("POST", "/sms", b"hi!"),
            cav(CaveatError::RequestMismatch),
            "request_mismatch",
        ),
        row(
            "request binding: no request facts",
            Input::Mac(mint(&[&bound("POST", "/sms", b"hi")]).encode_v2()),
            D,
            cav(CaveatError::RequestMismatch),
            "request_mismatch",
        ),
        row(
            "request binding: malformed",
            Input::Mac(mint(&["request=POST /sms"]).encode_v2()),
            Ctx::Request("POST", "/sms", b""),
            cav(CaveatError::Malformed("request".into())),
            "malformed_caveat",
        ),
        row(
            "request binding: two different",
            Input::Mac(
                mint(&[&bound("POST", "/sms", b"hi"), &bound("POST", "/sms", b"ho")]).encode_v2(),
            ),
            Ctx::Request("POST", "/sms", b"ho"),
            cav(CaveatError::Escalation("request".into())),
            "caveat_escalation",
        ),
        row(
            "strict: unknown condition",
            Input::Mac(mint(&["services=api:0", "ip=10.0.0.1"]).encode_v2()),
            Ctx::Strict,
            cav(CaveatError::Unknown("ip".into())),
            "unknown_caveat",
        ),
        row(
            "strict: caveat without =",
            Input::Mac(mint(&["services=api:0", "garbage"]).encode_v2()),
            Ctx::Strict,
            cav(CaveatError::Unknown("garbage".into())),
            "unknown_caveat",
        ),
        // --- WWW-Authenticate ---------------------------------------------
        row(
            "duplicated challenge parameter",
            www(&[r#"L402 macaroon="a", invoice="b", macaroon="a""#]),
            D,
            chal(ChallengeError::DuplicateParameter),
            "challenge_duplicate_parameter",
        ),
        row(
            "duplicated invoice, other case",
            www(&[r#"L402 macaroon="a", invoice="b", Invoice="c""#]),
            D,
            chal(ChallengeError::DuplicateParameter),
            "challenge_duplicate_parameter",
        ),
        row(
            "challenge without invoice",
            www(&[r#"L402 macaroon="a""#]),
            D,
            chal(ChallengeError::MissingInvoice),
            "challenge_missing_invoice",
        ),
        row(
            "challenge without macaroon",
            www(&[r#"L402 invoice="b""#]),
            D,
            chal(ChallengeError::MissingToken),
            "challenge_missing_macaroon",
        ),
        row(
            "challenge scheme only",
            www(&["LSAT"]),
            D,
            chal(ChallengeError::MissingToken),
            "challenge_missing_macaroon",
        ),
        row(
            "challenge bad version",
            www(&[r#"L402 version="2", token="a", invoice="b""#]),
            D,
            chal(ChallengeError::UnsupportedVersion),
            "challenge_unsupported_version",
        ),
        row(
            "challenge conflicting token",
            www(&[r#"L402 macaroon="a", token="b", invoice="c""#]),
            D,
            chal(ChallengeError::ConflictingToken),
            "challenge_conflicting_token",
        ),
        row(
            "no L402 challenge",
            www(&[r#"Basic realm="x""#, "Bearer"]),
            D,
            chal(ChallengeError::NoL402Challenge),
            "no_l402_challenge",
        ),
        row(
            "non-UTF-8 challenge",
            Input::Challenge(vec![b"L402 macaroon=\"\xff\", invoice=\"b\"".to_vec()]),
            D,
            syntax(HeaderSyntaxError::NotUtf8),
            "malformed_challenge",
        ),
        row(
            "oversized challenge",
            www(&[&format!(
                r#"L402 macaroon="{}", invoice="b""#,
                "A".repeat(16 * 1024)
            )]),
            D,
            syntax(HeaderSyntaxError::TooLong),
            "malformed_challenge",
        ),
        row(
            "33 challenges",
            www(&[&vec!["Basic"; 33].join(", ")]),
            D,
            syntax(HeaderSyntaxError::TooMany),
            "malformed_challenge",
        ),
        row(
            "33 parameters",
            www(&[&format!(
                "L402 {}",
                (0..33)
                    .map(|i| format!("p{i}=1"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )]),
            D,
            syntax(HeaderSyntaxError::TooMany),
            "malformed_challenge",
        ),
        row(
            "unterminated quoted string",
            www(&[r#"L402 macaroon="a, invoice=b"#]),
            D,
            syntax(HeaderSyntaxError::Unterminated),
            "malformed_challenge",
        ),
        row(
            "dangling escape",
            www(&["L402 macaroon=\"a\\"]),
            D,
            syntax(HeaderSyntaxError::Unterminated),
            "malformed_challenge",
        ),
        row(
            "control byte in quoted string",
            www(&["L402 macaroon=\"a\u{1}\", invoice=\"b\""]),
            D,
            syntax(HeaderSyntaxError::Syntax(16)),
            "malformed_challenge",
        ),
        row(
            "parameter without value",
            www(&["L402 macaroon=, invoice=\"b\""]),
            D,
            syntax(HeaderSyntaxError::Syntax(23)),
            "malformed_challenge",
        ),
        row(
            "parameters without comma",
            www(&[r#"L402 macaroon="a" invoice="b""#]),
            D,
            syntax(HeaderSyntaxError::Syntax(18)),
            "malformed_challenge",
        ),
        row(
            "scheme glued to a quote",
            www(&[r#"L402"a""#]),
            D,
            syntax(HeaderSyntaxError::Syntax(4)),
            "malformed_challenge",
        ),
        // --- Client-side offer checks ------------------------------------
        row(
            "offer: macaroon not base64",
            Input::Offer("!!".into(), "lnbc1".into()),
            D,
            Got::Invoice(InvoiceError::Macaroon("invalid base64".into())),
            "malformed_macaroon",
        ),
        row(
            "offer: truncated macaroon",
            Input::Offer(STANDARD.encode(&good_bytes[..40]), "lnbc1".into()),
            D,
            Got::Invoice(InvoiceError::Macaroon("macaroon truncated".into())),
            "malformed_macaroon",
        ),
        row(
            "offer: bad identifier",
            Input::Offer(mint_with(ROOT, b"x", &[]).to_base64(), "lnbc1".into()),
            D,
            Got::Invoice(InvoiceError::Identifier(IdentifierError::BadLength(1))),
            "malformed_identifier",
        ),
        row(
            "offer: invoice too long",
            Input::Offer(good_b64.clone(), format!("lnbc1{}", "q".repeat(8000))),
            D,
            Got::Invoice(InvoiceError::TooLong),
            "invalid_invoice",
        ),
    ];
    // Positive controls: the same harness accepts what it should.
    rows.extend([
        row(
            "control: good token",
            Input::Mac(good_bytes.clone()),
            D,
            Got::Ok,
            "ok",
        ),
        row(
            "control: good token via header",
            auth(header_for(&good_b64)),
            D,
            Got::Ok,
            "ok",
        ),
        row(
            "control: location is not signed",
            Input::Mac({
                let mut b = good_bytes.clone();
                b[3] = b'L'; // "lsat" -> "Lsat"
                b
            }),
            D,
            Got::Ok,
            "ok",
        ),
        row(
            "control: unknown caveat skipped",
            Input::Mac(mint(&["services=api:0", "ip=10.0.0.1"]).encode_v2()),
            D,
            Got::Ok,
            "ok",
        ),
        row(
            "control: 64 caveats",
            Input::Mac({
                let cs: Vec<String> = (0..64).map(|i| format!("c{i}=v")).collect();
                let cs: Vec<&str> = cs.iter().map(String::as_str).collect();
                mint(&cs).encode_v2()
            }),
            D,
            Got::Ok,
            "ok",
        ),
        row(
            "control: narrowing caveats",
            Input::Mac(
                mint(&[
                    "services=api:1,other:0",
                    "services=api:0",
                    "api_valid_until=3000",
                    "api_valid_until=2000",
                    "api_capabilities=read,write",
                    "api_capabilities=read",
                ])
                .encode_v2(),
            ),
            Ctx::Capability("read"),
            Got::Ok,
            "ok",
        ),
        row(
            "control: empty capabilities grant all",
            Input::Mac(mint(&["api_capabilities="]).encode_v2()),
            Ctx::Capability("write"),
            Got::Ok,
            "ok",
        ),
        row(
            "control: request binding matches",
            Input::Mac(mint(&[&bound("POST", "/sms", b"hi")]).encode_v2()),
            Ctx::Request("POST", "/sms", b"hi"),
            Got::Ok,
            "ok",
        ),
        row(
            "control: just before expiry",
            Input::Mac(good_bytes.clone()),
            Ctx::At(UNTIL - 1),
            Got::Ok,
            "ok",
        ),
        row(
            "control: challenge",
            www(&[&ok_challenge]),
            D,
            Got::Ok,
            "ok",
        ),
    ]);
    rows
}

fn bound(method: &str, path: &str, body: &[u8]) -> String {
    let h = http::HeaderMap::new();
    let m = http::Method::from_bytes(method.as_bytes()).unwrap();
    build::request_binding(&RequestFacts::new(&m, path, &h).with_body(body))
}

#[test]
fn hostile_input_table() {
    let rows = rows();
    let bad = rows.iter().filter(|r| r.want != Got::Ok).count();
    assert!(bad >= 50, "only {bad} hostile rows");
    let mut failures = Vec::new();
    for r in &rows {
        let got = run_no_panic(&r.input, r.ctx);
        if got != r.want || got.reason() != r.reason {
            failures.push(format!(
                "{}: got {got:?} ({}), want {:?} ({})",
                r.name,
                got.reason(),
                r.want,
                r.reason
            ));
        }
        // The stable reason of the expected error is the one the row names.
        if r.want.reason() != r.reason {
            failures.push(format!(
                "{}: {:?} has reason {}, row says {}",
                r.name,
                r.want,
                r.want.reason(),
                r.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Names are unique, so a failure points at one row.
    let mut names: Vec<_> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), rows.len());
}

#[test]
fn every_prefix_of_a_valid_macaroon_is_rejected() {
    let bytes = good().encode_v2();
    let final_eos = bytes.len() - 35;
    assert_eq!(bytes[final_eos], 0);
    for n in 0..bytes.len() {
        let prefix = &bytes[..n];
        let want = if n == 0 || n <= final_eos {
            MacaroonError::Truncated
        } else {
            MacaroonError::BadSignature
        };
        let raw = catch_unwind(|| MacaroonRef::decode(prefix)).expect("no panic");
        assert_eq!(raw, Err(want), "prefix {n}");
        // Through the whole pipeline, as a credential.
        let got = run_no_panic(&Input::Mac(prefix.to_vec()), Ctx::Default);
        let want = if n == 0 {
            cred(CredentialError::EmptyMacaroon)
        } else {
            mac(want)
        };
        assert_eq!(got, want, "prefix {n}");
        assert_eq!(
            got.reason(),
            if n == 0 {
                "malformed_credential"
            } else {
                "malformed_macaroon"
            }
        );
    }
    // And the full length is fine.
    assert_eq!(run(&Input::Mac(bytes), Ctx::Default), Got::Ok);
}

#[test]
fn every_prefix_of_a_credential_header_is_rejected() {
    let h = header_for(&good().to_base64());
    for n in 0..h.len() {
        let got = run_no_panic(&auth(&h[..n]), Ctx::Default);
        assert_ne!(got, Got::Ok, "prefix {n} accepted");
    }
    assert_eq!(run(&auth(h), Ctx::Default), Got::Ok);
}

/// Mutates every byte of a valid credential header in several ways and runs
/// the whole pipeline: it must never panic, and whatever it accepts must be
/// the one genuine token (a mutation can only be accepted if it changed
/// nothing that is signed, e.g. the scheme's case or the preimage's case).
#[test]
fn mutating_every_byte_of_a_credential_never_panics() {
    let good = good();
    let header = header_for(&good.to_base64());
    let bytes = header.as_bytes();
    let mut accepted = 0;
    let mut rejected = 0;
    for i in 0..bytes.len() {
        let mutations: [fn(u8) -> u8; 10] = [
            |b| b ^ 0x01,
            |b| b ^ 0x20,
            |b| b ^ 0x80,
            |_| 0xff,
            |_| b'=',
            |_| b':',
            |_| b',',
            |_| b' ',
            |_| b'-',
            |_| b'/',
        ];
        for m in mutations {
            let mut v = bytes.to_vec();
            v[i] = m(v[i]);
            let input = Input::AuthValues(vec![v.clone()]);
            match run_no_panic(&input, Ctx::Default) {
                Got::Ok => {
                    accepted += 1;
                    // Only harmless positions: the scheme's case, hex case,
                    // or the unsigned location inside the macaroon.
                    let s = std::str::from_utf8(&v).unwrap();
                    let c = Credential::parse(s).unwrap();
                    let mut buf = Vec::new();
                    let t = PresentedToken::decode(&c, &mut buf).unwrap();
                    assert_eq!(t.macaroon().identifier(), good.identifier());
                    assert_eq!(t.macaroon().signature(), good.signature());
                    assert_eq!(t.macaroon().caveats().collect::<Vec<_>>(), good.caveats());
                }
                Got::NoCredential => rejected += 1,
                Got::L402(e) => {
                    rejected += 1;
                    // Every rejection carries a stable, non-empty reason.
                    assert!(!e.reason().is_empty());
                    assert!(matches!(e.status(), 400 | 401));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(
        rejected > accepted * 10,
        "accepted {accepted}, rejected {rejected}"
    );
}

/// The same over the binary macaroon: every byte, every bit.
#[test]
fn flipping_every_bit_of_a_macaroon_never_panics() {
    let good = good();
    let bytes = good.encode_v2();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut v = bytes.clone();
            v[i] ^= 1 << bit;
            let got = run_no_panic(&Input::Mac(v.clone()), Ctx::Default);
            if got == Got::Ok {
                // Only the unsigned location may change.
                let m = MacaroonRef::decode(&v).unwrap();
                assert_ne!(m.location(), good.location());
                assert_eq!(m.identifier(), good.identifier());
                assert_eq!(m.signature(), good.signature());
            }
            // Also the challenge path and the client's offer check.
            let b64 = STANDARD.encode(&v);
            let _ = run_no_panic(&Input::Offer(b64.clone(), "lnbc1".into()), Ctx::Default);
            let _ = run_no_panic(
                &Input::Challenge(vec![
                    format!(r#"L402 macaroon="{b64}", invoice="lnbc1""#).into_bytes(),
                ]),
                Ctx::Default,
            );
        }
    }
}

/// Random garbage, including URL-safe base64 of random bytes that start with
/// the V2 version byte, through every entry point.
#[test]
fn random_garbage_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(402);
    let alphabet = b"L402LSATlsat :,=\"\\\t+/-_AgEBCDabcdef0123456789xyz\x00\xff";
    for _ in 0..3_000 {
        let len = rng.gen_range(0..120);
        let v: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let _ = run_no_panic(&Input::AuthValues(vec![v.clone()]), Ctx::Strict);
        let _ = run_no_panic(&Input::Challenge(vec![v]), Ctx::Default);
        let mut raw: Vec<u8> = (0..rng.gen_range(1..200)).map(|_| rng.r#gen()).collect();
        raw[0] = 2;
        let _ = run_no_panic(&Input::RawMac(raw.clone()), Ctx::Default);
        let got = run_no_panic(&Input::Mac(raw.clone()), Ctx::Default);
        assert_ne!(got, Got::Ok);
        let _ = run_no_panic(
            &Input::Auth(format!(
                "L402 {}:{}",
                URL_SAFE.encode(&raw),
                preimage().to_hex()
            )),
            Ctx::Default,
        );
    }
}
