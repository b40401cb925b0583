//! `lightning`/`charge` (draft-lightning-charge-00): pay a BOLT11 invoice,
//! prove it with the preimage.
//!
//! ```json
//! request: {"amount":"100","currency":"sat","description":"…",
//!           "methodDetails":{"invoice":"lnbcrt1…","network":"regtest","paymentHash":"<hex>"}}
//! payload: {"preimage":"<64 hex>"}
//! receipt: {"method":"lightning","reference":"<payment hash>","status":"success","timestamp":…,"challengeId":…}
//! ```
//!
//! Server: [`issue_charge`] mints the challenge for a fresh invoice (`expires`
//! never later than the invoice's own expiry); [`ChargeVerifier::verify`]
//! checks, in order: HMAC, route (realm, method, intent, `opaque`, digest,
//! then `amount`, `currency`, `network`), `expires`, the payload schema, the
//! invoice against the request (payment hash, network, amount), the
//! effective expiry (the earlier of `expires` and the invoice's), and
//! `sha256(preimage) == paymentHash` in constant time. The invoice is read
//! by [`super::bolt11::read`], without checking its signature: it is
//! HMAC-protected and the server minted it. No node is contacted.
//!
//! Client: [`check_charge`] decodes the invoice itself (signature included,
//! with the L402 reader [`crate::l402::check_invoice`]), requires its hash,
//! network and amount to equal the declared ones, and budgets on the
//! invoice's own amount, not on the declared `amount`.

use std::borrow::Cow;
use std::str::FromStr;

use bitcoin::hashes::Hash as _;
use lightning_invoice::{Currency, SignedRawBolt11Invoice};
use serde::{Deserialize, Serialize};

use crate::l402::{InvoiceError, check_invoice, invoice::MAX_INVOICE_LEN};
use crate::lightning::{Network, PaymentHash, Preimage};
use crate::money::Msat;
use crate::mpp::binding::ChallengeKeys;
use crate::mpp::challenge::{Challenge, ChallengeError};
use crate::mpp::credential::Credential;
use crate::mpp::error::VerifyError;
use crate::mpp::jcs;
use crate::mpp::receipt::Receipt;
use crate::mpp::rfc3339;
use crate::mpp::verify::{self, Route};
use crate::problem::Reason;
use crate::time::UnixTime;

/// The method id.
pub const METHOD: &str = "lightning";
/// The intent id.
pub const INTENT: &str = "charge";
/// The only currency of the method.
pub const CURRENCY: &str = "sat";

/// `methodDetails` of a Lightning charge request.
///
/// ```
/// use pay402_core::mpp::methods::lightning::MethodDetails;
/// let d: MethodDetails = serde_json::from_str(r#"{"invoice":"lnbc1","network":"mainnet"}"#).unwrap();
/// assert_eq!(d.network.as_deref(), Some("mainnet"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodDetails<'a> {
    /// The BOLT11 invoice (authoritative).
    #[serde(borrow)]
    pub invoice: Cow<'a, str>,
    /// The invoice's payment hash, lowercase hex.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub payment_hash: Option<Cow<'a, str>>,
    /// `mainnet` (default), `regtest` or `signet`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Cow<'a, str>>,
}

/// The `request` of a Lightning charge.
///
/// ```
/// use pay402_core::mpp::methods::lightning::ChargeRequest;
/// let r: ChargeRequest = serde_json::from_str(r#"{"amount":"100","currency":"sat","methodDetails":{"invoice":"lnbc1"}}"#).unwrap();
/// assert_eq!(r.amount, "100");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest<'a> {
    /// Satoshis, a decimal string.
    #[serde(borrow)]
    pub amount: Cow<'a, str>,
    /// `sat`.
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    /// The invoice memo (distinct from the `description` auth-param).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    /// Usually absent (the payee is in the invoice).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Cow<'a, str>>,
    /// Merchant reference.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Cow<'a, str>>,
    /// Invoice, hash, network.
    #[serde(borrow)]
    pub method_details: MethodDetails<'a>,
}

/// The payload: the preimage.
///
/// ```
/// use pay402_core::mpp::methods::lightning::ChargePayload;
/// let json = format!(r#"{{"preimage":"{}"}}"#, "11".repeat(32));
/// let p: ChargePayload = serde_json::from_str(&json).unwrap();
/// assert_eq!(p.preimage.len(), 64);
/// // The preimage is the payment's secret: `Debug` never prints it.
/// assert!(!format!("{p:?}").contains("1111"));
/// ```
#[derive(Clone, Deserialize)]
pub struct ChargePayload<'a> {
    /// 64 hex digits.
    #[serde(borrow)]
    pub preimage: Cow<'a, str>,
}

impl std::fmt::Debug for ChargePayload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargePayload")
            .field("preimage", &"..")
            .finish()
    }
}

/// The MPP name of a network (`None` for testnet, which the method lacks).
///
/// ```
/// use pay402_core::mpp::methods::lightning::network_name;
/// use pay402_core::lightning::Network;
/// assert_eq!(network_name(Network::Bitcoin), Some("mainnet"));
/// assert_eq!(network_name(Network::Testnet), None);
/// ```
pub fn network_name(network: Network) -> Option<&'static str> {
    match network {
        Network::Bitcoin => Some("mainnet"),
        Network::Regtest => Some("regtest"),
        Network::Signet => Some("signet"),
        _ => None,
    }
}

/// The network of an MPP network name.
///
/// ```
/// use pay402_core::mpp::methods::lightning::network_from_name;
/// assert_eq!(network_from_name("regtest"), Some(pay402_core::lightning::Network::Regtest));
/// assert_eq!(network_from_name("testnet"), None);
/// ```
pub fn network_from_name(name: &str) -> Option<Network> {
    match name {
        "mainnet" => Some(Network::Bitcoin),
        "regtest" => Some(Network::Regtest),
        "signet" => Some(Network::Signet),
        _ => None,
    }
}

fn currency_network(c: Currency) -> Option<Network> {
    match c {
        Currency::Bitcoin => Some(Network::Bitcoin),
        Currency::Regtest => Some(Network::Regtest),
        Currency::Signet => Some(Network::Signet),
        _ => None,
    }
}

/// What the invoice says, read without checking its signature.
///
/// ```
/// use pay402_core::mpp::methods::lightning::InvoiceFacts;
/// assert!(InvoiceFacts::read("lnbc1bogus").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceFacts {
    /// The amount, if the invoice has one.
    pub amount: Option<Msat>,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The network (`None` for one the method lacks, e.g. testnet).
    pub network: Option<Network>,
    /// When it stops being payable (timestamp + expiry, default one hour).
    pub expires_at: UnixTime,
}

impl InvoiceFacts {
    /// Reads a BOLT11 string (bounded), without the signature check: for
    /// invoices the reader's own node minted and HMAC protects.
    ///
    /// See the module docs.
    ///
    /// ```
    /// assert!(pay402_core::mpp::methods::lightning::InvoiceFacts::read("").is_none());
    /// ```
    pub fn read(bolt11: &str) -> Option<InvoiceFacts> {
        if bolt11.len() > MAX_INVOICE_LEN {
            return None;
        }
        let signed = SignedRawBolt11Invoice::from_str(bolt11).ok()?;
        let raw = signed.raw_invoice();
        let hash = raw.payment_hash()?;
        let created = raw.data.timestamp.as_unix_timestamp();
        let expiry = raw
            .expiry_time()
            .map_or(lightning_invoice::DEFAULT_EXPIRY_TIME, |e| e.as_seconds());
        Some(InvoiceFacts {
            amount: raw.amount_pico_btc().map(|p| Msat(p / 10)),
            payment_hash: PaymentHash(hash.0.to_byte_array()),
            network: currency_network(raw.currency()),
            expires_at: UnixTime(created.saturating_add(expiry)),
        })
    }
}

/// Why a server could not issue a Lightning charge for an invoice (a
/// configuration or node problem: 500).
///
/// ```
/// use pay402_core::mpp::methods::lightning::IssueError;
/// use pay402_core::problem::Reason;
/// assert_eq!(IssueError::InvalidInvoice.reason(), "invalid_invoice");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The invoice does not parse.
    #[error("invoice does not parse")]
    InvalidInvoice,
    /// The invoice has no amount, or one that is not whole satoshis.
    #[error("invoice amount is absent or not whole satoshis")]
    InvalidAmount,
    /// The invoice's network has no MPP name.
    #[error("invoice network is not mainnet, regtest or signet")]
    UnsupportedNetwork,
    /// The invoice expires before the challenge could be used.
    #[error("invoice already expired")]
    InvoiceExpired,
    /// The challenge cannot be emitted (realm, description).
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
}

impl Reason for IssueError {
    fn reason(&self) -> &'static str {
        match self {
            IssueError::InvalidInvoice => "invalid_invoice",
            IssueError::InvalidAmount => "invoice_invalid_amount",
            IssueError::UnsupportedNetwork => "invoice_unsupported_network",
            IssueError::InvoiceExpired => "invoice_expired",
            IssueError::Challenge(e) => e.reason(),
        }
    }
    fn status(&self) -> u16 {
        500
    }
}

/// What a server needs to issue one Lightning charge challenge.
///
/// ```
/// use pay402_core::mpp::methods::lightning::ChargeOffer;
/// let o = ChargeOffer::new("api.example.com", "lnbcrt1...");
/// assert_eq!(o.ttl_secs, 300);
/// ```
#[derive(Clone, Debug)]
pub struct ChargeOffer<'a> {
    /// The realm.
    pub realm: &'a str,
    /// A fresh invoice from the node (one per challenge).
    pub invoice: &'a str,
    /// How long the challenge is valid (capped by the invoice's expiry).
    pub ttl_secs: u64,
    /// The invoice memo to repeat in the request.
    pub memo: Option<&'a str>,
    /// The display `description` auth-param.
    pub description: Option<&'a str>,
    /// `opaque`, already encoded ([`verify::encode_opaque`]).
    pub opaque: Option<&'a str>,
    /// `digest` of the request body ([`crate::mpp::digest::compute`]).
    pub digest: Option<&'a str>,
    /// `header`: the field the credential must come in, when not
    /// `Authorization` (opt-in `Payment-Authorization`; bound by the HMAC).
    pub header: Option<&'a str>,
}

impl<'a> ChargeOffer<'a> {
    /// An offer valid for 5 minutes, with no optional parameters.
    ///
    /// See [`ChargeOffer`].
    ///
    /// ```
    /// let o = pay402_core::mpp::methods::lightning::ChargeOffer::new("r", "lnbc1");
    /// assert!(o.description.is_none());
    /// ```
    pub fn new(realm: &'a str, invoice: &'a str) -> ChargeOffer<'a> {
        ChargeOffer {
            realm,
            invoice,
            ttl_secs: 300,
            memo: None,
            description: None,
            opaque: None,
            digest: None,
            header: None,
        }
    }
}

/// Issues the challenge for `offer` at `now`: request from the invoice
/// (amount, hash, network), `expires` = min(now + ttl, invoice expiry), id
/// bound with the current secret.
///
/// ```no_run
/// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::lightning::{issue_charge, ChargeOffer}};
/// # let bolt11 = "lnbcrt1...";
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
/// let challenge = issue_charge(&keys, &ChargeOffer::new("api.example.com", bolt11), pay402_core::time::UnixTime(1_767_225_600)).unwrap();
/// let header = challenge.to_header_value().unwrap();
/// # let _ = header;
/// ```
pub fn issue_charge(
    keys: &ChallengeKeys,
    offer: &ChargeOffer<'_>,
    now: UnixTime,
) -> Result<Challenge<'static>, IssueError> {
    issue_with_facts(keys, offer, now).map(|(c, _)| c)
}

/// What the issuer pinned in a challenge it issued: the facts a verifier
/// would decode back from its `request` and `expires`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IssuedFacts {
    pub(crate) payment_hash: PaymentHash,
    pub(crate) amount_sat: u64,
    pub(crate) network: Network,
    pub(crate) expires: UnixTime,
}

/// [`issue_charge`], also returning the facts it pinned.
pub(crate) fn issue_with_facts(
    keys: &ChallengeKeys,
    offer: &ChargeOffer<'_>,
    now: UnixTime,
) -> Result<(Challenge<'static>, IssuedFacts), IssueError> {
    let facts = InvoiceFacts::read(offer.invoice).ok_or(IssueError::InvalidInvoice)?;
    let msat = facts.amount.ok_or(IssueError::InvalidAmount)?;
    if msat.0 == 0 || msat.0 % 1000 != 0 {
        return Err(IssueError::InvalidAmount);
    }
    let network = facts
        .network
        .and_then(network_name)
        .ok_or(IssueError::UnsupportedNetwork)?;
    let expires = now
        .saturating_add_secs(offer.ttl_secs)
        .min(facts.expires_at);
    if expires <= now {
        return Err(IssueError::InvoiceExpired);
    }
    let hash = facts.payment_hash.to_hex();
    let amount = (msat.0 / 1000).to_string();
    let request = ChargeRequest {
        amount: Cow::Borrowed(&amount),
        currency: Cow::Borrowed(CURRENCY),
        description: offer.memo.map(Cow::Borrowed),
        recipient: None,
        external_id: None,
        method_details: MethodDetails {
            invoice: Cow::Borrowed(offer.invoice),
            payment_hash: Some(Cow::Borrowed(&hash)),
            network: Some(Cow::Borrowed(network)),
        },
    };
    // A struct of strings always canonicalizes.
    let request = jcs::encode_param(&request).unwrap_or_default();
    let mut c = Challenge::new("", offer.realm, METHOD, INTENT, request);
    c.expires = Some(Cow::Owned(rfc3339::format(expires)));
    c.digest = offer.digest.map(|d| Cow::Owned(d.to_owned()));
    c.description = offer.description.map(|d| Cow::Owned(d.to_owned()));
    c.opaque = offer.opaque.map(|o| Cow::Owned(o.to_owned()));
    c.header = offer.header.map(|h| Cow::Owned(h.to_owned()));
    let mut c = c.into_owned();
    keys.bind(&mut c);
    c.check_emit()?;
    // `expires` as a verifier reads it back (whole seconds).
    let expires = c
        .expires
        .as_deref()
        .and_then(|e| rfc3339::parse(e).ok())
        .unwrap_or(expires);
    let pinned = IssuedFacts {
        payment_hash: facts.payment_hash,
        amount_sat: msat.0 / 1000,
        network: facts.network.ok_or(IssueError::UnsupportedNetwork)?,
        expires,
    };
    Ok((c, pinned))
}

/// A verified charge: what the server consumes, serves and receipts.
///
/// ```
/// fn consume_key(v: &pay402_core::mpp::methods::lightning::VerifiedCharge) -> (String, &str) {
///     (v.payment_hash.to_hex(), v.challenge_id.as_str())
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCharge {
    /// The paid invoice's hash: the replay key, with the challenge id.
    pub payment_hash: PaymentHash,
    /// The challenge id.
    pub challenge_id: String,
    /// The amount paid (the invoice amount).
    pub amount: Msat,
    /// The effective expiry: the earlier of `expires` and the invoice's.
    /// A consumption record may be pruned after it.
    pub expires_at: UnixTime,
}

impl VerifiedCharge {
    /// The receipt to send with the response.
    ///
    /// ```
    /// use pay402_core::mpp::methods::lightning::VerifiedCharge;
    /// use pay402_core::lightning::PaymentHash;
    /// use pay402_core::time::UnixTime;
    /// let v = VerifiedCharge { payment_hash: PaymentHash([1; 32]), challenge_id: "c".into(), amount: pay402_core::money::Msat(1000), expires_at: UnixTime(9) };
    /// assert_eq!(v.receipt(UnixTime(0)).challenge_id.as_deref(), Some("c"));
    /// ```
    pub fn receipt(&self, at: UnixTime) -> Receipt {
        Receipt::lightning(&self.payment_hash, &self.challenge_id, at)
    }
}

/// The server's verifier for one Lightning charge route.
///
/// ```
/// use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::lightning::ChargeVerifier};
/// use pay402_core::lightning::Network;
/// let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
/// let v = ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest);
/// # let _ = v;
/// ```
#[derive(Clone, Debug)]
pub struct ChargeVerifier<'k> {
    /// The secrets.
    pub keys: &'k ChallengeKeys,
    /// The route's realm, `opaque` data and body.
    pub route: Route<'k>,
    /// The route's price in satoshis (pinned).
    pub amount_sat: u64,
    /// The node's network (pinned).
    pub network: Network,
}

impl<'k> ChargeVerifier<'k> {
    /// A verifier for a route priced `amount_sat` on `network`.
    ///
    /// See [`ChargeVerifier`].
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, methods::lightning::ChargeVerifier};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// let v = ChargeVerifier::new(&keys, "r", 1, pay402_core::lightning::Network::Bitcoin);
    /// assert_eq!(v.route.method, "lightning");
    /// ```
    pub fn new(
        keys: &'k ChallengeKeys,
        realm: &'k str,
        amount_sat: u64,
        network: Network,
    ) -> ChargeVerifier<'k> {
        ChargeVerifier {
            keys,
            route: Route::new(realm, METHOD, INTENT),
            amount_sat,
            network,
        }
    }

    /// Verifies a decoded credential at `now` (see the module docs for the
    /// order). The caller then consumes `(payment_hash, challenge_id)`
    /// atomically before serving.
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Challenge, Credential, VerifyError, methods::lightning::ChargeVerifier};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// let v = ChargeVerifier::new(&keys, "r", 1, pay402_core::lightning::Network::Bitcoin);
    /// let j = br#"{"challenge":{"id":"forged","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":{}}"#;
    /// let cred = Credential::from_json(j).unwrap();
    /// assert_eq!(v.verify(&cred, pay402_core::time::UnixTime(0)), Err(VerifyError::ChallengeNotIssued));
    /// ```
    pub fn verify(
        &self,
        cred: &Credential<'_>,
        now: UnixTime,
    ) -> Result<VerifiedCharge, VerifyError> {
        let mut buf = Vec::new();
        let p = self.pinned(cred, now, &mut buf)?;
        // 6. The invoice against the request, the effective expiry, the preimage.
        let facts = super::bolt11::read(&p.request.method_details.invoice)
            .ok_or(VerifyError::InvoiceMismatch("invoice does not parse"))?;
        if let Some(h) = p.request.method_details.payment_hash.as_deref() {
            let declared: PaymentHash = h
                .parse()
                .map_err(|_| VerifyError::InvoiceMismatch("paymentHash is not 64 hex digits"))?;
            if declared != facts.payment_hash {
                return Err(VerifyError::InvoiceMismatch("paymentHash"));
            }
        }
        if facts.network != Some(p.network) {
            return Err(VerifyError::InvoiceMismatch("network"));
        }
        if facts.amount != Some(p.amount) {
            return Err(VerifyError::InvoiceMismatch("amount"));
        }
        if now >= facts.expires_at {
            return Err(VerifyError::InvoiceExpired);
        }
        if !p.preimage.matches(&facts.payment_hash) {
            return Err(VerifyError::PreimageMismatch);
        }
        Ok(VerifiedCharge {
            payment_hash: facts.payment_hash,
            challenge_id: cred.challenge.id.to_string(),
            amount: p.amount,
            expires_at: p.expires.min(facts.expires_at),
        })
    }

    /// The issuing server's verification: the steps of
    /// [`ChargeVerifier::verify`] up to the payload, then
    /// `sha256(preimage) == methodDetails.paymentHash`, **without decoding
    /// the BOLT11 invoice**. Sound only for challenges minted by
    /// [`issue_charge`] under these keys: the HMAC then proves that this
    /// server read the invoice when it issued the challenge (hash, network
    /// and amount equal to the request's, `expires` no later than the
    /// invoice's expiry), so decoding it again proves nothing new. Aperture
    /// verifies the same way. A request without `paymentHash` is refused
    /// (`issue_charge` always writes it).
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Credential, VerifyError, methods::lightning::ChargeVerifier};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// let v = ChargeVerifier::new(&keys, "r", 1, pay402_core::lightning::Network::Bitcoin);
    /// let j = br#"{"challenge":{"id":"forged","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":{}}"#;
    /// let cred = Credential::from_json(j).unwrap();
    /// assert_eq!(v.verify_issued(&cred, pay402_core::time::UnixTime(0)), Err(VerifyError::ChallengeNotIssued));
    /// ```
    pub fn verify_issued(
        &self,
        cred: &Credential<'_>,
        now: UnixTime,
    ) -> Result<VerifiedCharge, VerifyError> {
        let mut buf = Vec::new();
        let p = self.pinned(cred, now, &mut buf)?;
        let hash: PaymentHash = p
            .request
            .method_details
            .payment_hash
            .as_deref()
            .ok_or(VerifyError::InvoiceMismatch("paymentHash is absent"))?
            .parse()
            .map_err(|_| VerifyError::InvoiceMismatch("paymentHash is not 64 hex digits"))?;
        if !p.preimage.matches(&hash) {
            return Err(VerifyError::PreimageMismatch);
        }
        Ok(VerifiedCharge {
            payment_hash: hash,
            challenge_id: cred.challenge.id.to_string(),
            amount: p.amount,
            expires_at: p.expires,
        })
    }

    /// [`ChargeVerifier::verify_issued`], taking the issuing instance's
    /// shortcut when `issued` holds the echoed challenge byte for byte:
    /// the HMAC and the decode of `request` are skipped (the bytes are the
    /// ones this instance bound and the pinned facts are remembered), every
    /// other step runs in the same order with the same errors. Without an
    /// entry, exactly [`ChargeVerifier::verify_issued`]. See
    /// [`IssuedCharges`](super::issued::IssuedCharges) for an example.
    ///
    /// ```
    /// # use pay402_core::mpp::{ChallengeKey, ChallengeKeys, Credential, VerifyError, methods::{issued::IssuedCharges, lightning::ChargeVerifier}};
    /// # let keys = ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap());
    /// let v = ChargeVerifier::new(&keys, "r", 1, pay402_core::lightning::Network::Bitcoin);
    /// let j = br#"{"challenge":{"id":"forged","realm":"r","method":"lightning","intent":"charge","request":"e30"},"payload":{}}"#;
    /// let cred = Credential::from_json(j).unwrap();
    /// let issued = IssuedCharges::new(8);
    /// assert_eq!(v.verify_issued_cached(&cred, pay402_core::time::UnixTime(0), &issued), Err(VerifyError::ChallengeNotIssued));
    /// ```
    pub fn verify_issued_cached(
        &self,
        cred: &Credential<'_>,
        now: UnixTime,
        issued: &super::issued::IssuedCharges,
    ) -> Result<VerifiedCharge, VerifyError> {
        let ch = &cred.challenge;
        let Some(facts) = issued.take(ch) else {
            return self.verify_issued(cred, now);
        };
        // 2. HMAC: these are the bytes this instance bound (matched above).
        // 3. Route, then the request's pinned fields as issued (`currency`
        //    is always `sat` in what `issue_charge` writes).
        verify::check_route(ch, &self.route)?;
        if facts.amount_sat != self.amount_sat {
            return Err(VerifyError::RouteMismatch("amount"));
        }
        if facts.network != self.network {
            return Err(VerifyError::RouteMismatch("network"));
        }
        // 4. expires (the remembered value is the echoed string, parsed).
        if now >= facts.expires {
            return Err(VerifyError::Expired);
        }
        // 5. Payload schema, 6. the preimage.
        let preimage = self.preimage(cred)?;
        if !preimage.matches(&facts.payment_hash) {
            return Err(VerifyError::PreimageMismatch);
        }
        Ok(VerifiedCharge {
            payment_hash: facts.payment_hash,
            challenge_id: ch.id.to_string(),
            amount: Msat(self.amount_sat.saturating_mul(1000)),
            expires_at: facts.expires,
        })
    }

    /// Step 5: the payload's preimage.
    fn preimage(&self, cred: &Credential<'_>) -> Result<Preimage, VerifyError> {
        let payload: ChargePayload<'_> = cred
            .payload_as()
            .map_err(|_| VerifyError::InvalidPayload("expected {\"preimage\": <64 hex>}"))?;
        Preimage::from_hex(&payload.preimage)
            .map_err(|_| VerifyError::InvalidPayload("preimage is not 64 hex digits"))
    }

    /// Steps 2 to 5: HMAC, route and pinned request fields, `expires`, the
    /// payload.
    fn pinned<'b>(
        &self,
        cred: &Credential<'_>,
        now: UnixTime,
        buf: &'b mut Vec<u8>,
    ) -> Result<Pinned<'b>, VerifyError> {
        let ch = &cred.challenge;
        // 2. HMAC.
        verify::check_binding(ch, self.keys)?;
        // 3. Route: realm, method, intent, opaque, digest, then the request's pinned fields.
        verify::check_route(ch, &self.route)?;
        let request: ChargeRequest<'b> = verify::decode_request(ch, buf)?;
        if request.currency != CURRENCY {
            return Err(VerifyError::RouteMismatch("currency"));
        }
        if parse_sats(&request.amount) != Some(self.amount_sat) {
            return Err(VerifyError::RouteMismatch("amount"));
        }
        let network = match request.method_details.network.as_deref() {
            None => Network::Bitcoin,
            Some(n) => network_from_name(n).ok_or(VerifyError::RouteMismatch("network"))?,
        };
        if network != self.network {
            return Err(VerifyError::RouteMismatch("network"));
        }
        // 4. expires.
        let expires = verify::check_expires(ch, now)?;
        // 5. Payload schema.
        let preimage = self.preimage(cred)?;
        Ok(Pinned {
            request,
            network,
            expires,
            preimage,
            amount: Msat(self.amount_sat.saturating_mul(1000)),
        })
    }
}

/// What steps 2 to 5 of a Lightning charge verification establish.
struct Pinned<'b> {
    request: ChargeRequest<'b>,
    network: Network,
    expires: UnixTime,
    preimage: Preimage,
    amount: Msat,
}

fn parse_sats(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Why a client refuses to pay a Lightning charge challenge.
///
/// ```
/// use pay402_core::mpp::methods::lightning::OfferError;
/// use pay402_core::problem::Reason;
/// assert_eq!(OfferError::AmountMismatch.reason(), "invoice_amount_mismatch");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not a `lightning`/`charge` challenge.
    #[error("not a lightning charge challenge")]
    NotLightningCharge,
    /// The challenge's `expires` is past (or invalid).
    #[error("challenge expired")]
    Expired,
    /// The request does not decode.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// `currency` is not `sat`.
    #[error("currency is not sat")]
    UnsupportedCurrency,
    /// The declared network differs from the payer's.
    #[error("challenge is for another network")]
    NetworkMismatch,
    /// The invoice's amount differs from the declared `amount`.
    #[error("invoice amount differs from the declared amount")]
    AmountMismatch,
    /// The invoice check failed (signature, hash, network, expiry, budget).
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
}

impl Reason for OfferError {
    fn reason(&self) -> &'static str {
        match self {
            OfferError::NotLightningCharge => "not_lightning_charge",
            OfferError::Expired => "challenge_expired",
            OfferError::InvalidRequest(_) => "challenge_invalid_request",
            OfferError::UnsupportedCurrency => "unsupported_currency",
            OfferError::NetworkMismatch => "invoice_wrong_network",
            OfferError::AmountMismatch => "invoice_amount_mismatch",
            OfferError::Invoice(e) => e.reason(),
        }
    }
}

/// A Lightning charge the client may pay.
///
/// ```
/// fn pay_this(p: &pay402_core::mpp::methods::lightning::PayableCharge) -> &str { &p.bolt11 }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayableCharge {
    /// The invoice to pay.
    pub bolt11: String,
    /// Its amount (what the budget was checked against).
    pub amount: Msat,
    /// Its payment hash: the preimage must hash to it.
    pub payment_hash: PaymentHash,
    /// The earlier of the challenge's and the invoice's expiry.
    pub expires_at: UnixTime,
}

impl PayableCharge {
    /// Whether `preimage` is the one this charge needs (check before sending).
    ///
    /// ```
    /// use pay402_core::mpp::methods::lightning::PayableCharge;
    /// use pay402_core::lightning::Preimage;
    /// let p = Preimage::from_bytes([1; 32]);
    /// let c = PayableCharge { bolt11: String::new(), amount: pay402_core::money::Msat(0), payment_hash: p.payment_hash(), expires_at: pay402_core::time::UnixTime(0) };
    /// assert!(c.accepts(&p));
    /// ```
    pub fn accepts(&self, preimage: &Preimage) -> bool {
        preimage.matches(&self.payment_hash)
    }
}

/// The client's checks before paying a Lightning charge challenge: method
/// and intent, `expires`, `currency`, the declared network against the
/// payer's, then the invoice itself (signature, network, hash equal to the
/// declared `paymentHash`, not expired, **its own amount within `max`**), and
/// the invoice amount equal to the declared `amount`.
///
/// ```
/// use pay402_core::mpp::{Challenge, methods::lightning::{check_charge, OfferError}};
/// let c = Challenge::new("i", "r", "evm", "charge", "e30");
/// let e = check_charge(&c, pay402_core::lightning::Network::Regtest, pay402_core::time::UnixTime(0), pay402_core::money::Msat(1));
/// assert_eq!(e, Err(OfferError::NotLightningCharge));
/// ```
pub fn check_charge(
    challenge: &Challenge<'_>,
    network: Network,
    now: UnixTime,
    max: Msat,
) -> Result<PayableCharge, OfferError> {
    if challenge.method != METHOD || challenge.intent != INTENT {
        return Err(OfferError::NotLightningCharge);
    }
    let expires = match challenge.expires.as_deref() {
        Some(e) => {
            let at = rfc3339::parse(e).map_err(|_| OfferError::Expired)?;
            if now >= at {
                return Err(OfferError::Expired);
            }
            Some(at)
        }
        None => None,
    };
    let json = crate::mpp::b64url::decode_tolerant(
        &challenge.request,
        crate::mpp::challenge::MAX_REQUEST_LEN,
    )
    .map_err(|_| OfferError::InvalidRequest("not base64url"))?;
    let req: ChargeRequest<'_> = serde_json::from_slice(&json)
        .map_err(|_| OfferError::InvalidRequest("not a lightning charge request"))?;
    if req.currency != CURRENCY {
        return Err(OfferError::UnsupportedCurrency);
    }
    let declared = parse_sats(&req.amount).ok_or(OfferError::InvalidRequest("amount"))?;
    let declared_network = match req.method_details.network.as_deref() {
        None => Network::Bitcoin,
        Some(n) => network_from_name(n).ok_or(OfferError::NetworkMismatch)?,
    };
    if declared_network != network {
        return Err(OfferError::NetworkMismatch);
    }
    let bolt11 = &req.method_details.invoice;
    let expected_hash = match req.method_details.payment_hash.as_deref() {
        Some(h) => h
            .parse()
            .map_err(|_| OfferError::InvalidRequest("paymentHash"))?,
        None => {
            InvoiceFacts::read(bolt11)
                .ok_or(OfferError::Invoice(InvoiceError::Parse(
                    "invoice does not parse".into(),
                )))?
                .payment_hash
        }
    };
    let checked = check_invoice(bolt11, &expected_hash, network, now, max)?;
    if Some(checked.amount) != declared.checked_mul(1000).map(Msat) {
        return Err(OfferError::AmountMismatch);
    }
    Ok(PayableCharge {
        bolt11: bolt11.to_string(),
        amount: checked.amount,
        payment_hash: checked.payment_hash,
        expires_at: expires.map_or(checked.expires_at, |e| e.min(checked.expires_at)),
    })
}

/// The `Authorization` value paying `challenge` with `preimage`: the whole
/// challenge echoed unchanged, payload `{"preimage": <lowercase hex>}`.
///
/// ```
/// use pay402_core::mpp::{Challenge, methods::lightning::credential};
/// use pay402_core::lightning::Preimage;
/// let c = Challenge::new("i", "r", "lightning", "charge", "e30");
/// assert!(credential(&c, &Preimage::from_bytes([1; 32]), None).starts_with("Payment "));
/// ```
pub fn credential(challenge: &Challenge<'_>, preimage: &Preimage, source: Option<&str>) -> String {
    #[derive(Serialize)]
    struct P<'a> {
        preimage: &'a str,
    }
    let hex = zeroize::Zeroizing::new(preimage.to_hex());
    // A challenge of strings and a payload of one string always serialize.
    Credential::encode(challenge, &P { preimage: &hex }, source).unwrap_or_default()
}
