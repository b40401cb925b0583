//! `evm`/`charge` (draft-evm-charge-01) with the EIP-3009 `authorization`
//! credential: the payer signs a `TransferWithAuthorization` whose `nonce` is
//! the challenge hash, and the server submits it to the token contract.
//!
//! ```json
//! request: {"amount":"10000","currency":"0x<token>","recipient":"0x<payee>",
//!           "methodDetails":{"chainId":84532,"credentialTypes":["authorization"],"permit2Address":"0x…"}}
//! payload: {"type":"authorization","from","to","value","validAfter","validBefore","nonce","signature"}
//! nonce  = keccak256(abi.encodePacked(challenge.id, challenge.realm))
//! receipt: {"method":"evm","reference":"<tx hash>","status":"success","timestamp",…,"challengeId","chainId"}
//! ```
//!
//! Server: [`issue_charge`]; [`ChargeVerifier::verify`] checks, in order:
//! HMAC, route (realm, method, intent, `opaque`, digest, then `amount`,
//! `currency`, `recipient`, `chainId`, `authorization` offered, no splits),
//! `expires`, the payload schema (type `authorization`), the nonce binding,
//! then the EIP-3009 checks shared with x402 ([`crate::x402::exact::verify_authorization`]:
//! signature → `from`, `to` = recipient, `validBefore` ≥ now + 6 s,
//! `validAfter` ≤ now, `value` = amount), then `source` if given. The
//! on-chain steps (balance, `authorizationState`, simulation, submission) are
//! the settler's, as in x402. The replay key is `(from, nonce)`.
//!
//! Client: [`check_charge`] (chain, budget), [`authorization_for`] (the
//! message to sign), [`credential`].

use std::borrow::Cow;

use alloy_primitives::keccak256;
use serde::{Deserialize, Serialize};

use crate::mpp::binding::ChallengeKeys;
use crate::mpp::challenge::{Challenge, ChallengeError, MAX_REQUEST_LEN};
use crate::mpp::credential::Credential;
use crate::mpp::error::VerifyError;
use crate::mpp::jcs;
use crate::mpp::receipt::Receipt;
use crate::mpp::rfc3339;
use crate::mpp::verify::{self, Route};
use crate::problem::Reason;
use crate::time::UnixTime;
use crate::x402::evm::{Bytes32, Eip712Domain, EvmAddress, EvmSignature, TransferAuthorization};
use crate::x402::exact::{VerifiedExact, verify_authorization};
use crate::x402::{EvmTimestamp, TokenAmount};

/// The method id.
pub const METHOD: &str = "evm";
/// The intent id.
pub const INTENT: &str = "charge";
/// The credential type implemented here.
pub const AUTHORIZATION: &str = "authorization";
/// The canonical Permit2 deployment (the spec's default `permit2Address`).
pub const PERMIT2_ADDRESS: &str = "0x000000000022D473030F116dDEE9F6B43aC78BA3";

/// `methodDetails` of an EVM charge request.
///
/// ```
/// use pay402_core::mpp::methods::evm::MethodDetails;
/// let d: MethodDetails = serde_json::from_str(r#"{"chainId":84532,"credentialTypes":["authorization"]}"#).unwrap();
/// assert!(d.offers("authorization"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodDetails {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Accepted credential types, preferred first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_types: Option<Vec<String>>,
    /// Token decimals (display aid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// The Permit2 contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit2_address: Option<EvmAddress>,
    /// Permit2 spender (mppx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spender: Option<EvmAddress>,
    /// Payment splits (only `permit2` can pay them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<Vec<serde_json::Value>>,
}

impl MethodDetails {
    /// Whether `kind` is an accepted credential type (absent list:
    /// `transaction` and `hash` only, per the spec).
    ///
    /// See [`MethodDetails`].
    ///
    /// ```
    /// use pay402_core::mpp::methods::evm::MethodDetails;
    /// let d: MethodDetails = serde_json::from_str(r#"{"chainId":1}"#).unwrap();
    /// assert!(!d.offers("authorization") && d.offers("hash"));
    /// ```
    pub fn offers(&self, kind: &str) -> bool {
        match &self.credential_types {
            Some(t) => t.iter().any(|k| k == kind),
            None => matches!(kind, "transaction" | "hash"),
        }
    }

    fn has_splits(&self) -> bool {
        self.splits.as_ref().is_some_and(|s| !s.is_empty())
    }
}

/// The `request` of an EVM charge.
///
/// ```
/// use pay402_core::mpp::methods::evm::ChargeRequest;
/// let r: ChargeRequest = serde_json::from_str(r#"{"amount":"10000","currency":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","recipient":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","methodDetails":{"chainId":84532}}"#).unwrap();
/// assert_eq!(r.method_details.chain_id, 84532);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    /// Base units, a decimal string.
    pub amount: TokenAmount,
    /// The ERC-20 token contract.
    pub currency: EvmAddress,
    /// The payee.
    pub recipient: EvmAddress,
    /// Display text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Merchant reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Chain, credential types, …
    pub method_details: MethodDetails,
}

/// The `authorization` payload.
///
/// ```
/// use pay402_core::mpp::methods::evm::AuthorizationPayload;
/// let j = r#"{"type":"authorization","from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"0","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480","signature":"0x00"}"#;
/// let p: AuthorizationPayload = serde_json::from_str(j).unwrap();
/// assert_eq!(p.authorization().value.to_string(), "10000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPayload {
    /// `authorization`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payer.
    pub from: EvmAddress,
    /// The payee.
    pub to: EvmAddress,
    /// Base units.
    pub value: TokenAmount,
    /// Valid after (seconds).
    pub valid_after: EvmTimestamp,
    /// Valid before (seconds).
    pub valid_before: EvmTimestamp,
    /// The challenge hash.
    pub nonce: Bytes32,
    /// The EIP-712 signature.
    pub signature: EvmSignature,
}

impl AuthorizationPayload {
    /// The payload for a signed authorization.
    ///
    /// ```
    /// # use pay402_core::mpp::methods::evm::AuthorizationPayload;
    /// # use pay402_core::x402::evm::*;
    /// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
    /// let a = TransferAuthorization { from: EvmAddress::default(), to: EvmAddress::default(), value: TokenAmount::from_u64(1),
    ///     valid_after: EvmTimestamp::from_u64(0), valid_before: EvmTimestamp::from_u64(9), nonce: Bytes32::default() };
    /// let p = AuthorizationPayload::new(&a, EvmSignature::from_bytes(vec![0; 65]));
    /// assert_eq!(p.kind, "authorization");
    /// ```
    pub fn new(auth: &TransferAuthorization, signature: EvmSignature) -> AuthorizationPayload {
        AuthorizationPayload {
            kind: AUTHORIZATION.to_owned(),
            from: auth.from,
            to: auth.to,
            value: auth.value,
            valid_after: auth.valid_after,
            valid_before: auth.valid_before,
            nonce: auth.nonce,
            signature,
        }
    }

    /// The signed EIP-3009 message.
    ///
    /// See [`AuthorizationPayload`].
    ///
    /// ```
    /// # use pay402_core::mpp::methods::evm::AuthorizationPayload;
    /// # let j = r#"{"type":"authorization","from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"1","validAfter":"0","validBefore":"9","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480","signature":"0x00"}"#;
    /// # let p: AuthorizationPayload = serde_json::from_str(j).unwrap();
    /// assert_eq!(p.authorization().from, p.from);
    /// ```
    pub fn authorization(&self) -> TransferAuthorization {
        TransferAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            valid_after: self.valid_after,
            valid_before: self.valid_before,
            nonce: self.nonce,
        }
    }
}

/// `keccak256(abi.encodePacked(id, realm))`: the EIP-3009 nonce (and the
/// Permit2 witness) that binds a signature to one challenge.
///
/// ```
/// use pay402_core::mpp::methods::evm::challenge_hash;
/// let h = challenge_hash("id", "realm");
/// assert_eq!(h.0, alloy_primitives::keccak256(b"idrealm").0);
/// ```
pub fn challenge_hash(id: &str, realm: &str) -> Bytes32 {
    let mut buf = Vec::with_capacity(id.len() + realm.len());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(realm.as_bytes());
    Bytes32(keccak256(&buf).0)
}

/// The payer DID the spec recommends as `source`: `did:pkh:eip155:<chain>:<address>`.
///
/// ```
/// use pay402_core::mpp::methods::evm::source_did;
/// assert_eq!(source_did(1, &Default::default()), "did:pkh:eip155:1:0x0000000000000000000000000000000000000000");
/// ```
pub fn source_did(chain_id: u64, from: &EvmAddress) -> String {
    format!("did:pkh:eip155:{chain_id}:{from}")
}

/// The EVM terms of a route: token, payee, chain and the token's EIP-712 domain.
///
/// ```
/// use pay402_core::mpp::methods::evm::EvmTerms;
/// let t = EvmTerms::new(84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(),
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), "USDC", "2");
/// assert_eq!(t.domain().chain_id, 84532);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmTerms {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The token contract (must implement EIP-3009).
    pub currency: EvmAddress,
    /// The payee.
    pub recipient: EvmAddress,
    /// The token's EIP-712 `name` (USDC: `USD Coin` on mainnets, `USDC` on Base Sepolia).
    pub token_name: String,
    /// The token's EIP-712 `version`.
    pub token_version: String,
    /// Token decimals, advertised for display.
    pub decimals: Option<u8>,
}

impl EvmTerms {
    /// Terms without `decimals`.
    ///
    /// See [`EvmTerms`].
    ///
    /// ```
    /// # use pay402_core::mpp::methods::evm::EvmTerms;
    /// let t = EvmTerms::new(1, Default::default(), Default::default(), "n", "1");
    /// assert!(t.decimals.is_none());
    /// ```
    pub fn new(
        chain_id: u64,
        currency: EvmAddress,
        recipient: EvmAddress,
        token_name: &str,
        token_version: &str,
    ) -> EvmTerms {
        EvmTerms {
            chain_id,
            currency,
            recipient,
            token_name: token_name.to_owned(),
            token_version: token_version.to_owned(),
            decimals: None,
        }
    }

    /// The EIP-712 domain the authorization is signed under.
    ///
    /// See [`EvmTerms`].
    ///
    /// ```
    /// # use pay402_core::mpp::methods::evm::EvmTerms;
    /// let t = EvmTerms::new(1, Default::default(), Default::default(), "n", "1");
    /// assert_eq!(t.domain().name, "n");
    /// ```
    pub fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            self.token_name.clone(),
            self.token_version.clone(),
            self.chain_id,
            self.currency,
        )
    }
}

/// Issues an `evm`/`charge` challenge offering the `authorization`
/// credential for `amount` base units, valid `ttl_secs`. `nonce` (random,
/// from the caller) goes into `opaque` so two identical offers get distinct
/// ids (and so distinct EIP-3009 nonces).
///
/// ```
/// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::evm::{issue_charge, EvmTerms}};
/// use pay402_core::x402::TokenAmount;
/// use pay402_core::time::UnixTime;
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
/// let terms = EvmTerms::new(84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e".parse().unwrap(),
///     "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".parse().unwrap(), "USDC", "2");
/// let c = issue_charge(&keys, "api.example.com", &terms, TokenAmount::from_u64(10_000), UnixTime(1_767_225_600), 300, Some(&[1; 16])).unwrap();
/// assert_eq!(c.expires.as_deref(), Some("2026-01-01T00:05:00Z"));
/// assert_eq!(keys.verify(&c), Some(0));
/// ```
pub fn issue_charge(
    keys: &ChallengeKeys,
    realm: &str,
    terms: &EvmTerms,
    amount: TokenAmount,
    now: UnixTime,
    ttl_secs: u64,
    nonce: Option<&[u8; 16]>,
) -> Result<Challenge<'static>, ChallengeError> {
    let request = ChargeRequest {
        amount,
        currency: terms.currency,
        recipient: terms.recipient,
        description: None,
        external_id: None,
        method_details: MethodDetails {
            chain_id: terms.chain_id,
            credential_types: Some(vec![AUTHORIZATION.to_owned()]),
            decimals: terms.decimals,
            permit2_address: PERMIT2_ADDRESS.parse().ok(),
            spender: None,
            splits: None,
        },
    };
    let request = jcs::encode_param(&request).map_err(|_| ChallengeError::InvalidRequest)?;
    let mut c = Challenge::new("", realm.to_owned(), METHOD, INTENT, request);
    c.expires = Some(Cow::Owned(rfc3339::format(
        now.saturating_add_secs(ttl_secs),
    )));
    if let Some(n) = nonce {
        c.opaque = Some(Cow::Owned(verify::encode_opaque(
            &Default::default(),
            Some(n),
        )));
    }
    keys.bind(&mut c);
    c.check_emit()?;
    Ok(c)
}

/// A verified `authorization` credential, ready for the settler.
///
/// ```
/// fn key(v: &pay402_core::mpp::methods::evm::VerifiedCharge) -> [u8; 52] { v.replay_key() }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCharge {
    /// The checked authorization, its signer, chain, token and digest.
    pub verified: VerifiedExact,
    /// The signature to submit with it.
    pub signature: EvmSignature,
    /// The challenge id.
    pub challenge_id: String,
    /// The challenge's expiry.
    pub expires_at: UnixTime,
}

impl VerifiedCharge {
    /// `from ‖ nonce`: what the store consumes atomically (the token contract
    /// enforces the same pair on chain).
    ///
    /// See [`VerifiedCharge`].
    ///
    /// ```
    /// # fn k(v: &pay402_core::mpp::methods::evm::VerifiedCharge) { assert_eq!(v.replay_key().len(), 52); }
    /// ```
    pub fn replay_key(&self) -> [u8; 52] {
        let mut k = [0u8; 52];
        k[..20].copy_from_slice(self.verified.authorization.from.0.as_slice());
        k[20..].copy_from_slice(&self.verified.authorization.nonce.0);
        k
    }

    /// The receipt once the settler has the transaction hash.
    ///
    /// ```
    /// # fn r(v: &pay402_core::mpp::methods::evm::VerifiedCharge) {
    /// let receipt = v.receipt("0xabc", pay402_core::time::UnixTime(0));
    /// assert_eq!(receipt.method, "evm");
    /// # }
    /// ```
    pub fn receipt(&self, tx_hash: &str, at: UnixTime) -> Receipt {
        Receipt::evm(tx_hash, self.verified.chain_id, &self.challenge_id, at)
    }
}

/// The server's verifier for one EVM charge route.
///
/// ```
/// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::evm::{ChargeVerifier, EvmTerms}};
/// use pay402_core::x402::TokenAmount;
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
/// let terms = EvmTerms::new(84532, Default::default(), Default::default(), "USDC", "2");
/// let v = ChargeVerifier::new(&keys, "api.example.com", &terms, TokenAmount::from_u64(1));
/// # let _ = v;
/// ```
#[derive(Clone, Debug)]
pub struct ChargeVerifier<'k> {
    /// The secrets.
    pub keys: &'k ChallengeKeys,
    /// The route's realm, `opaque` data and body.
    pub route: Route<'k>,
    /// Token, payee, chain, EIP-712 domain.
    pub terms: &'k EvmTerms,
    /// The route's price in base units (pinned).
    pub amount: TokenAmount,
}

impl<'k> ChargeVerifier<'k> {
    /// A verifier for `terms` and `amount`.
    ///
    /// See [`ChargeVerifier`].
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::evm::{ChargeVerifier, EvmTerms}};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// # let terms = EvmTerms::new(1, Default::default(), Default::default(), "n", "1");
    /// let v = ChargeVerifier::new(&keys, "r", &terms, pay402_core::x402::TokenAmount::from_u64(1));
    /// assert_eq!(v.route.method, "evm");
    /// ```
    pub fn new(
        keys: &'k ChallengeKeys,
        realm: &'k str,
        terms: &'k EvmTerms,
        amount: TokenAmount,
    ) -> ChargeVerifier<'k> {
        ChargeVerifier {
            keys,
            route: Route::new(realm, METHOD, INTENT),
            terms,
            amount,
        }
    }

    /// Verifies a decoded credential at `now` (order in the module docs).
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Credential, VerifyError, methods::evm::{ChargeVerifier, EvmTerms}};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// # let terms = EvmTerms::new(1, Default::default(), Default::default(), "n", "1");
    /// let v = ChargeVerifier::new(&keys, "r", &terms, pay402_core::x402::TokenAmount::from_u64(1));
    /// let cred = Credential::from_json(br#"{"challenge":{"id":"x","realm":"r","method":"evm","intent":"charge","request":"e30"},"payload":{}}"#).unwrap();
    /// assert_eq!(v.verify(&cred, pay402_core::time::UnixTime(0)).unwrap_err(), VerifyError::ChallengeNotIssued);
    /// ```
    pub fn verify(
        &self,
        cred: &Credential<'_>,
        now: UnixTime,
    ) -> Result<VerifiedCharge, VerifyError> {
        let ch = &cred.challenge;
        verify::check_binding(ch, self.keys)?;
        verify::check_route(ch, &self.route)?;
        let mut buf = Vec::new();
        let req: ChargeRequest = verify::decode_request(ch, &mut buf)?;
        let t = self.terms;
        if req.amount != self.amount {
            return Err(VerifyError::RouteMismatch("amount"));
        }
        if req.currency != t.currency {
            return Err(VerifyError::RouteMismatch("currency"));
        }
        if req.recipient != t.recipient {
            return Err(VerifyError::RouteMismatch("recipient"));
        }
        if req.method_details.chain_id != t.chain_id {
            return Err(VerifyError::RouteMismatch("chainId"));
        }
        if !req.method_details.offers(AUTHORIZATION) {
            return Err(VerifyError::CredentialTypeNotOffered);
        }
        if req.method_details.has_splits() {
            return Err(VerifyError::SplitsUnsupported);
        }
        let expires_at = verify::check_expires(ch, now)?;
        // 5. Payload schema: only the authorization type is implemented.
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
        }
        let kind: Kind<'_> = cred
            .payload_as()
            .map_err(|_| VerifyError::InvalidPayload("payload has no type"))?;
        if kind.kind != AUTHORIZATION {
            return Err(VerifyError::CredentialTypeNotOffered);
        }
        let p: AuthorizationPayload = cred
            .payload_as()
            .map_err(|_| VerifyError::InvalidPayload("not an EIP-3009 authorization"))?;
        // 6. The challenge binding, then x402's EIP-3009 checks.
        if p.nonce != challenge_hash(&ch.id, &ch.realm) {
            return Err(VerifyError::NonceNotBound);
        }
        let amount = self.amount;
        let verified = verify_authorization(
            &p.authorization(),
            p.signature.as_bytes(),
            &t.domain(),
            t.recipient,
            now,
            |v| *v == amount,
        )
        .map_err(VerifyError::Authorization)?;
        if let Some(src) = cred.source.as_deref()
            && !source_matches(src, t.chain_id, &verified.payer)
        {
            return Err(VerifyError::InvalidPayload(
                "source does not name the signer",
            ));
        }
        Ok(VerifiedCharge {
            verified,
            signature: p.signature,
            challenge_id: ch.id.to_string(),
            expires_at,
        })
    }
}

fn source_matches(source: &str, chain_id: u64, payer: &EvmAddress) -> bool {
    let Some(rest) = source.strip_prefix("did:pkh:eip155:") else {
        // Another DID method names the payer some other way: not checked.
        return !source.starts_with("did:pkh:");
    };
    let Some((chain, addr)) = rest.split_once(':') else {
        return false;
    };
    chain.parse::<u64>().ok() == Some(chain_id) && addr.parse::<EvmAddress>().ok() == Some(*payer)
}

/// Why a client refuses an EVM charge challenge.
///
/// ```
/// use pay402_core::mpp::methods::evm::OfferError;
/// use pay402_core::problem::Reason;
/// assert_eq!(OfferError::OverBudget.reason(), "price_exceeds_maximum");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not an `evm`/`charge` challenge.
    #[error("not an evm charge challenge")]
    NotEvmCharge,
    /// The challenge's `expires` is past or invalid.
    #[error("challenge expired")]
    Expired,
    /// The request does not decode.
    #[error("invalid request")]
    InvalidRequest,
    /// Another chain or token than the payer's.
    #[error("challenge is for another chain or token")]
    WrongChainOrToken,
    /// `authorization` is not offered, or splits are asked for.
    #[error("the authorization credential is not offered")]
    AuthorizationNotOffered,
    /// The amount exceeds the payer's maximum.
    #[error("price exceeds the maximum")]
    OverBudget,
}

impl Reason for OfferError {
    fn reason(&self) -> &'static str {
        match self {
            OfferError::NotEvmCharge => "not_evm_charge",
            OfferError::Expired => "challenge_expired",
            OfferError::InvalidRequest => "challenge_invalid_request",
            OfferError::WrongChainOrToken => "wrong_chain_or_token",
            OfferError::AuthorizationNotOffered => "credential_type_not_offered",
            OfferError::OverBudget => "price_exceeds_maximum",
        }
    }
}

/// An EVM charge the client may pay.
///
/// ```
/// fn price(p: &pay402_core::mpp::methods::evm::PayableCharge) -> pay402_core::x402::TokenAmount { p.request.amount }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayableCharge {
    /// The decoded request.
    pub request: ChargeRequest,
    /// The challenge's expiry (the authorization's `validBefore`).
    pub expires_at: Option<UnixTime>,
}

/// The client's checks before signing: method/intent, `expires`, chain and
/// token, `authorization` offered and no splits, amount within `max`.
///
/// ```
/// use pay402_core::mpp::{Challenge, methods::evm::{check_charge, OfferError}};
/// let c = Challenge::new("i", "r", "lightning", "charge", "e30");
/// let e = check_charge(&c, 1, &Default::default(), pay402_core::time::UnixTime(0), Default::default());
/// assert_eq!(e, Err(OfferError::NotEvmCharge));
/// ```
pub fn check_charge(
    challenge: &Challenge<'_>,
    chain_id: u64,
    currency: &EvmAddress,
    now: UnixTime,
    max: TokenAmount,
) -> Result<PayableCharge, OfferError> {
    if challenge.method != METHOD || challenge.intent != INTENT {
        return Err(OfferError::NotEvmCharge);
    }
    let expires_at = match challenge.expires.as_deref() {
        Some(e) => {
            let at = rfc3339::parse(e).map_err(|_| OfferError::Expired)?;
            if now >= at {
                return Err(OfferError::Expired);
            }
            Some(at)
        }
        None => None,
    };
    let json = crate::mpp::b64url::decode_tolerant(&challenge.request, MAX_REQUEST_LEN)
        .map_err(|_| OfferError::InvalidRequest)?;
    let request: ChargeRequest =
        serde_json::from_slice(&json).map_err(|_| OfferError::InvalidRequest)?;
    if request.method_details.chain_id != chain_id || request.currency != *currency {
        return Err(OfferError::WrongChainOrToken);
    }
    if !request.method_details.offers(AUTHORIZATION) || request.method_details.has_splits() {
        return Err(OfferError::AuthorizationNotOffered);
    }
    if request.amount > max {
        return Err(OfferError::OverBudget);
    }
    Ok(PayableCharge {
        request,
        expires_at,
    })
}

/// The EIP-3009 message to sign for a checked charge: to the recipient, the
/// exact amount, valid from 0 until the challenge expires (or `now` + 1 hour
/// without `expires`), nonce = the challenge hash.
///
/// ```
/// use pay402_core::mpp::{Challenge, methods::evm::{authorization_for, challenge_hash, PayableCharge, ChargeRequest, MethodDetails}};
/// use pay402_core::time::UnixTime;
/// let c = Challenge::new("id", "realm", "evm", "charge", "e30");
/// let req: ChargeRequest = serde_json::from_str(r#"{"amount":"5","currency":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","recipient":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","methodDetails":{"chainId":1}}"#).unwrap();
/// let p = PayableCharge { request: req, expires_at: Some(UnixTime(100)) };
/// let a = authorization_for(&c, &p, Default::default(), UnixTime(0));
/// assert_eq!(a.nonce, challenge_hash("id", "realm"));
/// assert_eq!(a.valid_before.to_string(), "100");
/// ```
pub fn authorization_for(
    challenge: &Challenge<'_>,
    charge: &PayableCharge,
    from: EvmAddress,
    now: UnixTime,
) -> TransferAuthorization {
    let before = charge
        .expires_at
        .unwrap_or_else(|| now.saturating_add_secs(3600));
    TransferAuthorization {
        from,
        to: charge.request.recipient,
        value: charge.request.amount,
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(before.0),
        nonce: challenge_hash(&challenge.id, &challenge.realm),
    }
}

/// The `Authorization` value: the challenge echoed unchanged, the signed
/// authorization as payload, `source` = the payer's `did:pkh`.
///
/// ```
/// # use pay402_core::mpp::{Challenge, methods::evm::credential};
/// # use pay402_core::x402::evm::*;
/// # use pay402_core::x402::{TokenAmount, EvmTimestamp};
/// let a = TransferAuthorization { from: EvmAddress::default(), to: EvmAddress::default(), value: TokenAmount::from_u64(1),
///     valid_after: EvmTimestamp::from_u64(0), valid_before: EvmTimestamp::from_u64(9), nonce: Bytes32::default() };
/// let c = Challenge::new("i", "r", "evm", "charge", "e30");
/// assert!(credential(&c, &a, EvmSignature::from_bytes(vec![0; 65]), 1).starts_with("Payment "));
/// ```
pub fn credential(
    challenge: &Challenge<'_>,
    auth: &TransferAuthorization,
    signature: EvmSignature,
    chain_id: u64,
) -> String {
    let payload = AuthorizationPayload::new(auth, signature);
    let source = source_did(chain_id, &auth.from);
    // Strings and hex values always serialize.
    Credential::encode(challenge, &payload, Some(&source)).unwrap_or_default()
}
