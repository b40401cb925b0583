//! `evm`/`charge` with the EIP-3009 `authorization` credential: issue, the
//! client's checks and signature (libsecp256k1 with a fixed key), the
//! server's verification order, and every refusal with its reason.

use alloy_primitives::{Address, keccak256};
use pay402_core::mpp::methods::evm::{
    self, AuthorizationPayload, EvmTerms, OfferError, authorization_for, challenge_hash,
    check_charge, issue_charge,
};
use pay402_core::mpp::{
    Challenge, ChallengeKey, ChallengeKeys, ChallengeList, Credential, ProblemType, Receipt,
    VerifyError, credential,
};
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{EvmAddress, EvmSignature, TransferAuthorization};
use pay402_core::x402::{ExactEvmError, TokenAmount};
use secp256k1::{Message, SECP256K1, SecretKey};

type AuthTweak = Box<dyn FnOnce(&mut TransferAuthorization)>;
type RequestTweak = Box<dyn FnOnce(&mut evm::ChargeRequest)>;

const NOW: UnixTime = UnixTime(1_767_225_600);
const REALM: &str = "api.example.com";
const PRICE: u64 = 10_000;

fn keys() -> ChallengeKeys {
    ChallengeKeys::new(ChallengeKey::new(&[0x5e; 32]).unwrap())
}

fn terms() -> EvmTerms {
    let mut t = EvmTerms::new(
        31337,
        "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
            .parse()
            .unwrap(),
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
            .parse()
            .unwrap(),
        "USD Coin",
        "2",
    );
    t.decimals = Some(6);
    t
}

fn payer_key() -> SecretKey {
    SecretKey::from_slice(&[0x42; 32]).unwrap()
}

fn address_of(sk: &SecretKey) -> EvmAddress {
    let pk = sk.public_key(SECP256K1).serialize_uncompressed();
    EvmAddress(Address::from_slice(&keccak256(&pk[1..])[12..]))
}

fn sign(sk: &SecretKey, auth: &TransferAuthorization, t: &EvmTerms) -> EvmSignature {
    let digest = auth.signing_hash(&t.domain());
    let sig = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest.0), sk);
    let (id, rs) = sig.serialize_compact();
    let mut out = rs.to_vec();
    out.push(27 + id.to_i32() as u8);
    EvmSignature::from_bytes(out)
}

fn challenge() -> Challenge<'static> {
    issue_charge(
        &keys(),
        REALM,
        &terms(),
        TokenAmount::from_u64(PRICE),
        NOW,
        300,
        Some(&[7; 16]),
    )
    .unwrap()
}

/// The client side, as a payer would do it: parse, check, sign, answer.
fn pay(c: &Challenge<'_>, tweak: impl FnOnce(&mut TransferAuthorization)) -> String {
    let header = c.to_header_value().unwrap();
    let offers = ChallengeList::parse([header.as_bytes()])
        .into_result()
        .unwrap();
    let t = terms();
    let payable = check_charge(
        &offers[0],
        t.chain_id,
        &t.currency,
        NOW,
        TokenAmount::from_u64(PRICE),
    )
    .unwrap();
    let sk = payer_key();
    let mut auth = authorization_for(&offers[0], &payable, address_of(&sk), NOW);
    tweak(&mut auth);
    let sig = sign(&sk, &auth, &t);
    evm::credential(&offers[0], &auth, sig, t.chain_id)
}

fn verify(header: &str, at: UnixTime) -> Result<evm::VerifiedCharge, VerifyError> {
    let t = terms();
    let k = keys();
    let v = evm::ChargeVerifier::new(&k, REALM, &t, TokenAmount::from_u64(PRICE));
    let token = credential::find_token([header.as_bytes()])?.expect("a Payment credential");
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf)?;
    v.verify(&cred, at)
}

#[test]
fn issue_pay_verify_receipt() {
    let c = challenge();
    assert_eq!(c.method, "evm");
    let mut buf = Vec::new();
    let req: evm::ChargeRequest = pay402_core::mpp::verify::decode_request(&c, &mut buf).unwrap();
    assert_eq!(req.amount, TokenAmount::from_u64(PRICE));
    assert_eq!(
        req.method_details.credential_types.as_deref(),
        Some(&["authorization".to_owned()][..])
    );
    assert_eq!(req.method_details.decimals, Some(6));
    // The request is JCS: keys sorted, amounts as strings.
    let json = std::str::from_utf8(&buf).unwrap();
    assert!(json.starts_with(r#"{"amount":"10000","currency":"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512","methodDetails":{"chainId":31337,"credentialTypes":["authorization"],"decimals":6,"permit2Address":"#), "{json}");

    let header = pay(&c, |_| {});
    let v = verify(&header, NOW.saturating_add_secs(10)).unwrap();
    assert_eq!(v.verified.payer, address_of(&payer_key()));
    assert_eq!(v.verified.authorization.nonce, challenge_hash(&c.id, REALM));
    assert_eq!(
        v.verified.authorization.valid_before.to_string(),
        (NOW.0 + 300).to_string()
    );
    assert_eq!(v.challenge_id, c.id);
    let mut key = [0u8; 52];
    key[..20].copy_from_slice(address_of(&payer_key()).0.as_slice());
    key[20..].copy_from_slice(&challenge_hash(&c.id, REALM).0);
    assert_eq!(v.replay_key(), key);
    let receipt = Receipt::decode(&v.receipt("0xfeed", NOW).encode()).unwrap();
    assert_eq!(
        (receipt.method.as_str(), receipt.reference.as_str()),
        ("evm", "0xfeed")
    );
    assert_eq!(receipt.extra["chainId"], 31337);
    assert_eq!(receipt.challenge_id.as_deref(), Some(c.id.as_ref()));
    // The source is the payer's did:pkh.
    let token = credential::find_token([header.as_bytes()])
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf).unwrap();
    assert_eq!(
        cred.source.as_deref(),
        Some(evm::source_did(31337, &address_of(&payer_key())).as_str())
    );
}

#[test]
fn distinct_nonces_give_distinct_challenges() {
    let k = keys();
    let a = issue_charge(
        &k,
        REALM,
        &terms(),
        TokenAmount::from_u64(PRICE),
        NOW,
        300,
        Some(&[1; 16]),
    )
    .unwrap();
    let b = issue_charge(
        &k,
        REALM,
        &terms(),
        TokenAmount::from_u64(PRICE),
        NOW,
        300,
        Some(&[2; 16]),
    )
    .unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(challenge_hash(&a.id, REALM), challenge_hash(&b.id, REALM));
}

#[test]
fn authorization_failures_in_order() {
    let c = challenge();
    let at = NOW.saturating_add_secs(10);
    let cases: Vec<(&str, AuthTweak, VerifyError)> = vec![
        (
            "nonce not bound",
            Box::new(|a| a.nonce.0[0] ^= 1),
            VerifyError::NonceNotBound,
        ),
        (
            "to another payee",
            Box::new(|a| a.to = EvmAddress::default()),
            VerifyError::Authorization(ExactEvmError::RecipientMismatch),
        ),
        (
            "one unit short",
            Box::new(|a| a.value = TokenAmount::from_u64(PRICE - 1)),
            VerifyError::Authorization(ExactEvmError::Value),
        ),
        (
            "one unit over",
            Box::new(|a| a.value = TokenAmount::from_u64(PRICE + 1)),
            VerifyError::Authorization(ExactEvmError::Value),
        ),
        (
            "not yet valid",
            Box::new(move |a| a.valid_after = pay402_core::x402::EvmTimestamp::from_u64(at.0 + 60)),
            VerifyError::Authorization(ExactEvmError::ValidAfter),
        ),
        (
            "expires too soon",
            Box::new(move |a| a.valid_before = pay402_core::x402::EvmTimestamp::from_u64(at.0 + 3)),
            VerifyError::Authorization(ExactEvmError::ValidBefore),
        ),
    ];
    for (name, tweak, want) in cases {
        let got = verify(&pay(&c, tweak), at).unwrap_err();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            got.problem_type(),
            ProblemType::VerificationFailed,
            "{name}"
        );
        assert_eq!(got.status(), 402, "{name}");
    }
    // A signature by someone else than `from`.
    let header = {
        let line = c.to_header_value().unwrap();
        let offers = ChallengeList::parse([line.as_bytes()])
            .into_result()
            .unwrap();
        let t = terms();
        let payable = check_charge(
            &offers[0],
            t.chain_id,
            &t.currency,
            NOW,
            TokenAmount::from_u64(PRICE),
        )
        .unwrap();
        let auth = authorization_for(&offers[0], &payable, address_of(&payer_key()), NOW);
        let other = SecretKey::from_slice(&[0x43; 32]).unwrap();
        evm::credential(&offers[0], &auth, sign(&other, &auth, &t), t.chain_id)
    };
    let e = verify(&header, at).unwrap_err();
    assert_eq!(e, VerifyError::Authorization(ExactEvmError::Signature));
    assert_eq!(e.reason(), "invalid_exact_evm_signature");
    // After the challenge expires.
    assert_eq!(
        verify(&pay(&c, |_| {}), NOW.saturating_add_secs(300)).unwrap_err(),
        VerifyError::Expired
    );
}

fn reissue(mutate: impl FnOnce(&mut evm::ChargeRequest)) -> Challenge<'static> {
    let mut c = challenge();
    let mut buf = Vec::new();
    let mut req: evm::ChargeRequest =
        pay402_core::mpp::verify::decode_request(&c, &mut buf).unwrap();
    mutate(&mut req);
    c.request = pay402_core::mpp::jcs::encode_param(&req).unwrap().into();
    keys().bind(&mut c);
    c
}

fn sign_any(c: &Challenge<'_>) -> String {
    let t = terms();
    let sk = payer_key();
    let mut buf = Vec::new();
    let req: evm::ChargeRequest = pay402_core::mpp::verify::decode_request(c, &mut buf).unwrap();
    let payable = evm::PayableCharge {
        request: req,
        expires_at: c.expires_at(),
    };
    let auth = authorization_for(c, &payable, address_of(&sk), NOW);
    evm::credential(c, &auth, sign(&sk, &auth, &t), t.chain_id)
}

#[test]
fn route_pinning() {
    let at = NOW.saturating_add_secs(10);
    let table: Vec<(RequestTweak, VerifyError)> = vec![
        (
            Box::new(|r| r.amount = TokenAmount::from_u64(1)),
            VerifyError::RouteMismatch("amount"),
        ),
        (
            Box::new(|r| r.currency = EvmAddress::default()),
            VerifyError::RouteMismatch("currency"),
        ),
        (
            Box::new(|r| r.recipient = EvmAddress::default()),
            VerifyError::RouteMismatch("recipient"),
        ),
        (
            Box::new(|r| r.method_details.chain_id = 1),
            VerifyError::RouteMismatch("chainId"),
        ),
        (
            Box::new(|r| r.method_details.credential_types = None),
            VerifyError::CredentialTypeNotOffered,
        ),
        (
            Box::new(|r| {
                r.method_details.splits = Some(vec![
                    serde_json::json!({"recipient": "0x8Ba1f109551bD432803012645Ac136ddd64DBA72", "amount": "1"}),
                ])
            }),
            VerifyError::SplitsUnsupported,
        ),
    ];
    for (mutate, want) in table {
        let c = reissue(mutate);
        assert_eq!(verify(&sign_any(&c), at).unwrap_err(), want);
    }
    // A challenge for another realm, or altered after issue.
    let mut c = challenge();
    c.realm = "other.example.com".into();
    keys().bind(&mut c);
    assert_eq!(
        verify(&sign_any(&c), at).unwrap_err(),
        VerifyError::RouteMismatch("realm")
    );
    let mut c = challenge();
    c.expires = Some("2030-01-01T00:00:00Z".into());
    assert_eq!(
        verify(&sign_any(&c), at).unwrap_err(),
        VerifyError::ChallengeNotIssued
    );
}

#[test]
fn other_credential_types_and_bad_payloads() {
    let c = challenge();
    let at = NOW.saturating_add_secs(10);
    let send = |payload: serde_json::Value| {
        let h = Credential::encode(&c, &payload, None).unwrap();
        verify(&h, at).unwrap_err()
    };
    assert_eq!(
        send(serde_json::json!({"type": "hash", "hash": format!("0x{}", "11".repeat(32))})),
        VerifyError::CredentialTypeNotOffered
    );
    assert_eq!(
        send(serde_json::json!({"type": "permit2"})),
        VerifyError::CredentialTypeNotOffered
    );
    assert!(matches!(
        send(serde_json::json!({})),
        VerifyError::InvalidPayload(_)
    ));
    assert!(matches!(
        send(serde_json::json!({"type": "authorization", "from": "0x12"})),
        VerifyError::InvalidPayload(_)
    ));
    // A source naming someone else than the signer.
    let good = pay(&c, |_| {});
    let token = credential::find_token([good.as_bytes()]).unwrap().unwrap();
    let mut buf = Vec::new();
    let cred = Credential::decode(token, &mut buf).unwrap();
    let payload: AuthorizationPayload = cred.payload_as().unwrap();
    let h = Credential::encode(
        &c,
        &payload,
        Some("did:pkh:eip155:31337:0x0000000000000000000000000000000000000001"),
    )
    .unwrap();
    assert!(matches!(
        verify(&h, at).unwrap_err(),
        VerifyError::InvalidPayload(_)
    ));
    let h = Credential::encode(
        &c,
        &payload,
        Some("did:pkh:eip155:1:0x0000000000000000000000000000000000000001"),
    )
    .unwrap();
    assert!(matches!(
        verify(&h, at).unwrap_err(),
        VerifyError::InvalidPayload(_)
    ));
}

#[test]
fn client_checks() {
    let c = challenge();
    let t = terms();
    let max = TokenAmount::from_u64(PRICE);
    assert!(check_charge(&c, t.chain_id, &t.currency, NOW, max).is_ok());
    assert_eq!(
        check_charge(&c, 1, &t.currency, NOW, max).unwrap_err(),
        OfferError::WrongChainOrToken
    );
    assert_eq!(
        check_charge(&c, t.chain_id, &EvmAddress::default(), NOW, max).unwrap_err(),
        OfferError::WrongChainOrToken
    );
    assert_eq!(
        check_charge(
            &c,
            t.chain_id,
            &t.currency,
            NOW,
            TokenAmount::from_u64(PRICE - 1)
        )
        .unwrap_err(),
        OfferError::OverBudget
    );
    assert_eq!(
        check_charge(
            &c,
            t.chain_id,
            &t.currency,
            NOW.saturating_add_secs(300),
            max
        )
        .unwrap_err(),
        OfferError::Expired
    );
    let no_auth = reissue(|r| r.method_details.credential_types = Some(vec!["permit2".into()]));
    assert_eq!(
        check_charge(&no_auth, t.chain_id, &t.currency, NOW, max).unwrap_err(),
        OfferError::AuthorizationNotOffered
    );
    let ln = Challenge::new("i", REALM, "lightning", "charge", "e30");
    assert_eq!(
        check_charge(&ln, t.chain_id, &t.currency, NOW, max).unwrap_err(),
        OfferError::NotEvmCharge
    );
}
