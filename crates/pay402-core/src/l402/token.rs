//! Verifying a presented L402 token, in Aperture's order.
//!
//! 1. parse the credential and decode the macaroon and its identifier;
//! 2. check `sha256(preimage) == payment_hash`;
//! 3. (caller) fetch the root key by token id;
//! 4. verify the signature chain (constant time);
//! 5. run the caveat satisfiers.
//!
//! Steps 1-2 are [`PresentedToken::decode`], 4-5 [`PresentedToken::verify`]
//! (or [`PresentedToken::verify_cached`], which skips the HMAC chain for a
//! macaroon its [`CachedKey`](super::CachedKey) verified before),
//! so the caller can do its (possibly async) key lookup in between.

use crate::b64;
use crate::lightning::PaymentHash;
use crate::problem::Reason;

use super::caveat::{CaveatError, Satisfier, VerifyContext, verify_caveats};
use super::challenge::Scheme;
use super::credential::{Credential, CredentialError};
use super::identifier::{Identifier, IdentifierError, TokenId};
use super::macaroon::{MAX_MACAROON_BYTES, MacaroonError, MacaroonKey, MacaroonRef};

/// Why a presented L402 token was rejected.
///
/// ```
/// use pay402_core::l402::L402Error;
/// use pay402_core::problem::Reason;
/// assert_eq!(L402Error::UnknownToken.reason(), "unknown_token");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L402Error {
    /// The `Authorization` header is malformed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The macaroon is not base64.
    #[error("macaroon is not valid base64")]
    Base64(#[from] b64::Base64Error),
    /// The macaroon bytes do not decode.
    #[error("macaroon: {0}")]
    Macaroon(#[from] MacaroonError),
    /// More than one macaroon (discharge macaroons are not supported).
    #[error("exactly one macaroon is expected")]
    MultipleMacaroons,
    /// The identifier does not decode.
    #[error("identifier: {0}")]
    Identifier(#[from] IdentifierError),
    /// `sha256(preimage)` differs from the identifier's payment hash.
    #[error("preimage does not match the payment hash")]
    PreimageMismatch,
    /// No root key for this token: never minted here, or revoked.
    #[error("unknown or revoked token")]
    UnknownToken,
    /// The identifier's payment hash differs from the one the server
    /// recorded for this token id.
    #[error("payment hash differs from the token's record")]
    PaymentHashMismatch,
    /// The signature chain does not verify.
    #[error("invalid macaroon signature")]
    InvalidSignature,
    /// A caveat rejected the request.
    #[error(transparent)]
    Caveat(#[from] CaveatError),
}

impl Reason for L402Error {
    fn reason(&self) -> &'static str {
        match self {
            L402Error::Credential(e) => e.reason(),
            L402Error::Base64(b64::Base64Error::TooLong) => "macaroon_too_large",
            L402Error::Base64(_) => "invalid_base64",
            L402Error::Macaroon(MacaroonError::ThirdPartyCaveat) => "unsupported_macaroon",
            L402Error::Macaroon(MacaroonError::UnsupportedVersion) => "unsupported_macaroon",
            L402Error::Macaroon(MacaroonError::TooLarge) => "macaroon_too_large",
            L402Error::Macaroon(_) => "malformed_macaroon",
            L402Error::MultipleMacaroons => "multiple_macaroons",
            L402Error::Identifier(IdentifierError::UnknownVersion(_)) => {
                "unknown_identifier_version"
            }
            L402Error::Identifier(_) => "malformed_identifier",
            L402Error::PreimageMismatch => "preimage_mismatch",
            L402Error::UnknownToken => "unknown_token",
            L402Error::PaymentHashMismatch => "payment_hash_mismatch",
            L402Error::InvalidSignature => "invalid_signature",
            L402Error::Caveat(e) => e.reason(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            L402Error::Credential(e) => e.status(),
            L402Error::Base64(_) | L402Error::Macaroon(_) | L402Error::Identifier(_) => 400,
            _ => 401,
        }
    }
}

/// A decoded token whose preimage matches its payment hash, not yet verified.
///
/// ```
/// use pay402_core::l402::{Credential, Identifier, Macaroon, PresentedToken, RootKey, TokenId, VerifyContext};
/// use pay402_core::lightning::Preimage;
/// use pay402_core::time::UnixTime;
///
/// let root = RootKey::from_bytes([1; 32]);
/// let preimage = Preimage::from_bytes([2; 32]);
/// let id = Identifier::new(preimage.payment_hash(), TokenId([3; 32]));
/// let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
/// mac.add_first_party_caveat("services=api:0");
/// let header = Credential::new(&mac.to_base64(), preimage).to_header_value();
///
/// let cred = Credential::parse(&header).unwrap();
/// let mut buf = Vec::new();
/// let token = PresentedToken::decode(&cred, &mut buf).unwrap();
/// assert_eq!(token.token_id(), TokenId([3; 32]));
/// let ok = token.verify(&root.derive(), &[], &VerifyContext::new("api", UnixTime(0)));
/// assert!(ok.is_ok());
/// ```
#[derive(Debug)]
pub struct PresentedToken<'b> {
    scheme: Scheme,
    macaroon: MacaroonRef<'b>,
    identifier: Identifier,
}

/// A token that passed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The token id (key of its root key).
    pub token_id: TokenId,
    /// The payment hash that was paid.
    pub payment_hash: PaymentHash,
    /// The scheme it arrived under.
    pub scheme: Scheme,
}

impl<'b> PresentedToken<'b> {
    /// Steps 1-2: decodes the credential's macaroon into `buf` and checks the preimage.
    pub fn decode(
        credential: &Credential<'_>,
        buf: &'b mut Vec<u8>,
    ) -> Result<PresentedToken<'b>, L402Error> {
        if credential.macaroon_count() != 1 {
            return Err(L402Error::MultipleMacaroons);
        }
        let text = credential.first_macaroon();
        if let Err(e) = b64::decode_any_into(text, MAX_MACAROON_BYTES, buf) {
            // Only on failure: tell a syntax error from bad base64.
            if !text.bytes().all(super::credential::is_b64_char) {
                return Err(CredentialError::BadMacaroonChars.into());
            }
            return Err(e.into());
        }
        let macaroon = MacaroonRef::decode(buf)?;
        let identifier = Identifier::decode(macaroon.identifier())?;
        if !credential.preimage().matches(&identifier.payment_hash) {
            return Err(L402Error::PreimageMismatch);
        }
        Ok(PresentedToken {
            scheme: credential.scheme(),
            macaroon,
            identifier,
        })
    }

    /// The token id, to look the root key up by.
    pub fn token_id(&self) -> TokenId {
        self.identifier.token_id
    }

    /// The decoded identifier.
    pub fn identifier(&self) -> &Identifier {
        &self.identifier
    }

    /// The decoded macaroon.
    pub fn macaroon(&self) -> &MacaroonRef<'b> {
        &self.macaroon
    }

    /// Steps 4-5: the signature chain from `key`, then the caveats.
    pub fn verify(
        &self,
        key: &MacaroonKey,
        extra: &[&dyn Satisfier],
        ctx: &VerifyContext<'_>,
    ) -> Result<VerifiedToken, L402Error> {
        if !self.macaroon.verify_signature(key) {
            return Err(L402Error::InvalidSignature);
        }
        verify_caveats(self.macaroon.caveats(), extra, ctx)?;
        Ok(self.verified())
    }

    /// What this token comes to once verified.
    pub(crate) fn verified(&self) -> VerifiedToken {
        VerifiedToken {
            token_id: self.identifier.token_id,
            payment_hash: self.identifier.payment_hash,
            scheme: self.scheme,
        }
    }
}
