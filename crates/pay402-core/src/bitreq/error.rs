//! The one error type of the BitRequests rail.

use crate::problem::Reason;

/// Why a BitRequests header, proof or transaction was rejected or could not be built.
///
/// Every variant has a stable [`Reason`] string.
///
/// ```
/// use pay402_core::bitreq::BitreqError;
/// use pay402_core::problem::Reason;
/// assert_eq!(BitreqError::NotPaidToMerchant.reason(), "not_paid_to_merchant");
/// assert_eq!(BitreqError::InvalidPrice.status(), 400);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitreqError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    #[error("duplicate header {0}")]
    DuplicateHeader(&'static str),
    /// A header value exceeds its length bound.
    #[error("header {0} is too long")]
    HeaderTooLong(&'static str),
    /// A header value is empty or not visible ASCII.
    #[error("header {0} has an invalid value")]
    InvalidHeaderValue(&'static str),
    /// `Price` is not a non-negative integer number of satoshis that fits in 64 bits.
    #[error("price is not an integer number of satoshis")]
    InvalidPrice,
    /// A bitcoin address does not parse, or is for another network.
    #[error("invalid bitcoin address")]
    InvalidAddress,
    /// The channel token is not a 64-hex-digit txid.
    #[error("invalid payment channel token")]
    InvalidChannelToken,
    /// No proof header is present.
    #[error("no payment proof")]
    NoPaymentProof,
    /// The transaction is not hex.
    #[error("invalid transaction hex")]
    InvalidTransactionHex,
    /// The transaction bytes do not decode (or have trailing bytes).
    #[error("invalid transaction")]
    InvalidTransaction,
    /// No output pays the merchant.
    #[error("not paid to merchant")]
    NotPaidToMerchant,
    /// The amount paid differs from the price (or is below it).
    #[error("incorrect payment amount")]
    IncorrectAmount,
    /// An amount is below the dust floor.
    #[error("amount below the dust limit")]
    BelowDust,
    /// The given input amounts do not match the transaction's inputs.
    #[error("input amounts do not match the transaction inputs")]
    InputAmountsMismatch,
    /// The outputs are worth more than the inputs.
    #[error("outputs exceed inputs")]
    OutputsExceedInputs,
    /// The fee rate is below the minimum.
    #[error("fee rate too low")]
    FeeTooLow,
    /// An input signals replace-by-fee and the policy rejects it.
    #[error("transaction signals replace-by-fee")]
    RbfSignaled,
    /// The `Bitcoin-Transfer` JSON is malformed or lacks a field.
    #[error("malformed bit-transfer")]
    MalformedTransfer,
    /// The signature is not valid base64 / DER / 64-byte compact.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature is high-S (malleable); two1 always produced low-S.
    #[error("high-S signature")]
    HighSSignature,
    /// The public key does not parse.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The payee of a transfer is not this server.
    #[error("payee mismatch")]
    PayeeMismatch,
    /// The given UTXOs cannot cover the payment and fee.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// An amount sum overflows.
    #[error("amount overflow")]
    AmountOverflow,
    /// A redeem script is not the v2 channel template.
    #[error("invalid redeem script")]
    InvalidRedeemScript,
    /// A channel parameter is out of range (expiry, amounts, fee).
    #[error("invalid channel parameter")]
    InvalidChannelParameter,
    /// A signature hash could not be computed (input index out of range).
    #[error("cannot compute signature hash")]
    Sighash,
}

impl Reason for BitreqError {
    fn reason(&self) -> &'static str {
        match self {
            BitreqError::MissingHeader(_) => "missing_header",
            BitreqError::DuplicateHeader(_) => "duplicate_header",
            BitreqError::HeaderTooLong(_) => "header_too_long",
            BitreqError::InvalidHeaderValue(_) => "invalid_header_value",
            BitreqError::InvalidPrice => "invalid_price",
            BitreqError::InvalidAddress => "invalid_address",
            BitreqError::InvalidChannelToken => "invalid_channel_token",
            BitreqError::NoPaymentProof => "payment_required",
            BitreqError::InvalidTransactionHex => "invalid_transaction_hex",
            BitreqError::InvalidTransaction => "invalid_transaction",
            BitreqError::NotPaidToMerchant => "not_paid_to_merchant",
            BitreqError::IncorrectAmount => "incorrect_payment_amount",
            BitreqError::BelowDust => "below_dust_limit",
            BitreqError::InputAmountsMismatch => "input_amounts_mismatch",
            BitreqError::OutputsExceedInputs => "outputs_exceed_inputs",
            BitreqError::FeeTooLow => "fee_too_low",
            BitreqError::RbfSignaled => "rbf_signaled",
            BitreqError::MalformedTransfer => "malformed_transfer",
            BitreqError::MalformedSignature => "malformed_signature",
            BitreqError::HighSSignature => "high_s_signature",
            BitreqError::InvalidPublicKey => "invalid_public_key",
            BitreqError::InvalidSignature => "invalid_signature",
            BitreqError::PayeeMismatch => "payee_mismatch",
            BitreqError::InsufficientFunds => "insufficient_funds",
            BitreqError::AmountOverflow => "amount_overflow",
            BitreqError::InvalidRedeemScript => "invalid_redeem_script",
            BitreqError::InvalidChannelParameter => "invalid_channel_parameter",
            BitreqError::Sighash => "sighash_error",
        }
    }

    fn status(&self) -> u16 {
        match self {
            BitreqError::NoPaymentProof => 402,
            BitreqError::HeaderTooLong(_) => 431,
            BitreqError::InvalidSignature | BitreqError::HighSSignature => 401,
            _ => 400,
        }
    }
}
