//! Building and signing one `exact` EVM payment (EIP-3009
//! `TransferWithAuthorization`) for a chosen offer.

use std::fmt;

use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::evm::{Bytes32, Eip712Domain, EvmAddress, TransferAuthorization};
use pay402_core::x402::header::{self as x402_header, PAYMENT_SIGNATURE, X_PAYMENT};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmError, ExactEvmPayload, HeaderValue as _, PaymentPayloadV1,
    PaymentPayloadV2, TokenAmount, X402_V1, X402_V2, exact,
};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;

use super::error::X402Error;
use super::offer::Challenge;
use super::signer::{PaymentSigner, SignerError};

/// How far back v1 payments date `validAfter` (the v1 reference clients'
/// `now - 600`); v2 payments use `validAfter = 0` like the v2 reference
/// clients.
///
/// ```
/// assert_eq!(pay402_client::x402::V1_VALID_AFTER_SKEW_SECS, 600);
/// ```
pub const V1_VALID_AFTER_SKEW_SECS: u64 = 600;

/// What a signed payment commits to: enough to find it on chain
/// (`authorizationState(payer, nonce)`) and to account for it.
///
/// ```
/// use pay402_client::x402::PaymentDetails;
/// fn track(p: &PaymentDetails) -> String {
///     format!("{} paid {} of {} to {} (nonce {})", p.payer, p.amount, p.asset, p.pay_to, p.nonce)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PaymentDetails {
    /// 1 (`X-PAYMENT`) or 2 (`PAYMENT-SIGNATURE`).
    pub x402_version: u32,
    /// The network as offered (a v1 slug or a CAIP-2 id).
    pub network: String,
    /// The EVM chain id.
    pub chain_id: u64,
    /// The token contract.
    pub asset: EvmAddress,
    /// The amount authorized, in base units.
    pub amount: TokenAmount,
    /// The recipient.
    pub pay_to: EvmAddress,
    /// The payer (the signer's address).
    pub payer: EvmAddress,
    /// The EIP-3009 nonce (random, single use).
    pub nonce: Bytes32,
    /// `validAfter` (unix seconds).
    pub valid_after: u64,
    /// `validBefore` (unix seconds): the authorization cannot be settled
    /// from then on.
    pub valid_before: u64,
}

/// A signed payment ready to be sent, and sent again unchanged for the same
/// request (never re-signed: a fresh nonce would be a second, separately
/// settleable payment).
///
/// `Debug` leaves out the header value (the signed authorization).
///
/// ```no_run
/// use pay402_client::x402::{X402Client, X402Error};
/// # async fn demo(client: X402Client) -> Result<(), X402Error> {
/// match client.get("http://127.0.0.1:8402/paid").await {
///     Ok(paid) => println!("{}", paid.status()),
///     // No answer, or settlement still pending: send the very same payment again.
///     Err(e) if e.may_have_paid() => {
///         if let Some(signed) = e.signed_payment() {
///             let request = client.http().get("http://127.0.0.1:8402/paid").build().map_err(X402Error::Http)?;
///             let paid = client.resend(request, signed).await?;
///             println!("{}", paid.status());
///         }
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SignedPayment {
    details: PaymentDetails,
    header_name: HeaderName,
    header_value: HeaderValue,
}

impl fmt::Debug for SignedPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPayment")
            .field("details", &self.details)
            .field("header", &self.header_name)
            .finish_non_exhaustive()
    }
}

impl SignedPayment {
    /// What the payment commits to.
    ///
    /// ```
    /// # fn f(s: &pay402_client::x402::SignedPayment) {
    /// println!("nonce {}", s.details().nonce);
    /// # }
    /// ```
    pub fn details(&self) -> &PaymentDetails {
        &self.details
    }

    /// The header carrying it: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
    ///
    /// ```
    /// # fn f(s: &pay402_client::x402::SignedPayment) {
    /// assert!(matches!(s.header_name().as_str(), "payment-signature" | "x-payment"));
    /// # }
    /// ```
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// A signed payment as it was kept (by the payer's journal): the
    /// header name and value exactly as first sent. `None` for a header
    /// name other than `PAYMENT-SIGNATURE` / `X-PAYMENT` or a value that
    /// is no header value.
    pub(crate) fn from_parts(
        details: PaymentDetails,
        header_name: &str,
        header_value: &str,
    ) -> Option<SignedPayment> {
        let header_name = match header_name.to_ascii_lowercase().as_str() {
            "payment-signature" => HeaderName::from_static("payment-signature"),
            "x-payment" => HeaderName::from_static("x-payment"),
            _ => return None,
        };
        let mut header_value = HeaderValue::from_str(header_value).ok()?;
        header_value.set_sensitive(true);
        Some(SignedPayment {
            details,
            header_name,
            header_value,
        })
    }

    /// The header value (base64 of the payment JSON), marked sensitive.
    ///
    /// ```
    /// # fn f(s: &pay402_client::x402::SignedPayment) {
    /// assert!(s.header_value().is_sensitive());
    /// # }
    /// ```
    pub fn header_value(&self) -> &HeaderValue {
        &self.header_value
    }
}

/// The v2 payment as sent: `resource`, `accepted` and `extensions` are the
/// server's JSON, echoed unchanged (unknown members included).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentPayloadV2Out<'a> {
    x402_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a Value>,
    accepted: &'a Value,
    payload: &'a ExactEvmPayload,
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a Value>,
}

fn unpayable(e: ExactEvmError) -> X402Error {
    match e {
        ExactEvmError::Signature => X402Error::Signer(SignerError::Signing(
            "the signature does not verify for the signer's address".into(),
        )),
        other => X402Error::InvalidRequirement {
            reason: other.reason(),
        },
    }
}

/// Signs offer `index` of `challenge` at time `now` with `nonce`, then
/// checks the result with the reference verification (core's
/// `exact::verify_v2` / `verify_v1`) before returning it.
pub(crate) async fn sign(
    signer: &dyn PaymentSigner,
    challenge: &Challenge,
    index: usize,
    now: UnixTime,
    nonce: Bytes32,
) -> Result<SignedPayment, X402Error> {
    let payer = signer.address();
    let (version, network, asset, pay_to, amount, max_timeout, extra) = match challenge {
        Challenge::V2 { required, .. } => {
            let r = required
                .accepts
                .get(index)
                .ok_or(X402Error::InvalidRequirement {
                    reason: "invalid_payment_requirements",
                })?;
            (
                X402_V2,
                &r.network,
                &r.asset,
                &r.pay_to,
                r.amount,
                r.max_timeout_seconds,
                r.extra.as_ref(),
            )
        }
        Challenge::V1 { required } => {
            let r = required
                .accepts
                .get(index)
                .ok_or(X402Error::InvalidRequirement {
                    reason: "invalid_payment_requirements",
                })?;
            (
                X402_V1,
                &r.network,
                &r.asset,
                &r.pay_to,
                r.max_amount_required,
                r.max_timeout_seconds,
                r.extra.as_ref(),
            )
        }
    };
    let bad = |reason| X402Error::InvalidRequirement { reason };
    let chain_id =
        pay402_core::x402::network::evm_chain_id(network).ok_or(bad("invalid_network"))?;
    let asset: EvmAddress = asset
        .parse()
        .map_err(|_| bad("invalid_payment_requirements"))?;
    let pay_to: EvmAddress = pay_to
        .parse()
        .map_err(|_| bad("invalid_payment_requirements"))?;
    let (name, eip712_version) = extra
        .and_then(|e| Some((e.name()?, e.version()?)))
        .ok_or(bad("invalid_exact_evm_missing_eip712_domain"))?;
    let valid_after = if version == X402_V1 {
        now.0.saturating_sub(V1_VALID_AFTER_SKEW_SECS)
    } else {
        0
    };
    let valid_before = now.0.saturating_add(max_timeout);
    let authorization = TransferAuthorization {
        from: payer,
        to: pay_to,
        value: amount,
        valid_after: EvmTimestamp::from_u64(valid_after),
        valid_before: EvmTimestamp::from_u64(valid_before),
        nonce,
    };
    let domain = Eip712Domain::new(name, eip712_version, chain_id, asset);
    let digest = authorization.signing_hash(&domain);
    let signature = signer.sign_digest(&digest).await?;
    let payload = ExactEvmPayload {
        signature,
        authorization,
    };
    let details = PaymentDetails {
        x402_version: version,
        network: network.clone(),
        chain_id,
        asset,
        amount,
        pay_to,
        payer,
        nonce,
        valid_after,
        valid_before,
    };
    let (header_name, encoded) = match challenge {
        Challenge::V2 {
            required,
            raw_resource,
            raw_accepts,
            raw_extensions,
        } => {
            let chosen = required
                .accepts
                .get(index)
                .ok_or(bad("invalid_payment_requirements"))?;
            let raw_accepted = raw_accepts
                .get(index)
                .ok_or(bad("invalid_payment_requirements"))?;
            // The echo must decode to the very requirement we signed for.
            let echoed: pay402_core::x402::PaymentRequirements =
                serde_json::from_value(raw_accepted.clone())
                    .map_err(|_| bad("invalid_payment_requirements"))?;
            if &echoed != chosen {
                return Err(bad("invalid_payment_requirements"));
            }
            let typed = PaymentPayloadV2 {
                x402_version: X402_V2,
                resource: None,
                accepted: chosen.clone(),
                payload: payload.clone(),
                extensions: None,
            };
            exact::verify_v2(&typed, chosen, now).map_err(unpayable)?;
            let out = PaymentPayloadV2Out {
                x402_version: X402_V2,
                resource: raw_resource.as_ref(),
                accepted: raw_accepted,
                payload: &payload,
                extensions: raw_extensions.as_ref(),
            };
            (PAYMENT_SIGNATURE, x402_header::encode(&out))
        }
        Challenge::V1 { required } => {
            let chosen = required
                .accepts
                .get(index)
                .ok_or(bad("invalid_payment_requirements"))?;
            let typed = PaymentPayloadV1 {
                x402_version: X402_V1,
                scheme: chosen.scheme.clone(),
                network: chosen.network.clone(),
                payload,
            };
            exact::verify_v1(&typed, chosen, now).map_err(unpayable)?;
            (X_PAYMENT, typed.encode_header())
        }
    };
    let mut header_value =
        HeaderValue::try_from(encoded).map_err(|_| bad("invalid_payment_requirements"))?;
    header_value.set_sensitive(true);
    Ok(SignedPayment {
        details,
        header_name: HeaderName::from_static(if header_name == PAYMENT_SIGNATURE {
            "payment-signature"
        } else {
            "x-payment"
        }),
        header_value,
    })
}

/// A fresh random EIP-3009 nonce (32 bytes from the OS CSPRNG).
pub(crate) fn random_nonce() -> Bytes32 {
    use rand::RngCore as _;
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    Bytes32(nonce)
}
