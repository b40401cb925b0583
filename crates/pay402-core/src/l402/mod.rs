//! L402 (formerly LSAT): macaroons + Lightning invoices.
//!
//! - [`challenge`]: the `WWW-Authenticate` offer, parsed and emitted;
//! - [`credential`]: the `Authorization` proof;
//! - [`macaroon`]: the V2 codec and HMAC chain;
//! - [`identifier`]: Aperture's 66-byte identifier;
//! - [`caveat`]: caveats and their satisfiers;
//! - [`invoice`]: the BOLT11 checks a payer makes;
//! - [`token`]: verification of a presented token;
//! - [`cached`]: a derived key that remembers the macaroon it verified.
//!
//! ```
//! use pay402_core::l402::*;
//! use pay402_core::lightning::Preimage;
//! use pay402_core::time::UnixTime;
//!
//! // Server: mint.
//! let root = RootKey::from_bytes([9; 32]);
//! let preimage = Preimage::from_bytes([4; 32]); // known to the node until paid
//! let id = Identifier::new(preimage.payment_hash(), TokenId([1; 32]));
//! let mut mac = Macaroon::new(&root, Some("lsat"), &id.encode());
//! mac.add_first_party_caveat(caveat::build::services("api", 0));
//! mac.add_first_party_caveat(caveat::build::valid_until("api", UnixTime(2_000)));
//! let challenge = Challenge::new(mac.to_base64(), "lnbcrt...").to_header_value(Scheme::L402);
//! assert!(challenge.starts_with("L402 macaroon=\""));
//!
//! // Client: pay, then present.
//! let header = Credential::new(&mac.to_base64(), preimage).to_header_value();
//!
//! // Server: verify.
//! let cred = Credential::parse(&header).unwrap();
//! let mut buf = Vec::new();
//! let token = PresentedToken::decode(&cred, &mut buf).unwrap();
//! let ok = token.verify(&root.derive(), &[], &VerifyContext::new("api", UnixTime(1_000)));
//! assert!(ok.is_ok());
//! let late = token.verify(&root.derive(), &[], &VerifyContext::new("api", UnixTime(2_000)));
//! assert_eq!(late.unwrap_err(), L402Error::Caveat(CaveatError::Expired));
//! ```

pub mod cached;
pub mod caveat;
pub mod challenge;
pub mod credential;
pub mod identifier;
pub mod invoice;
pub mod macaroon;
pub mod token;

pub use cached::CachedKey;
pub use caveat::{Caveat, CaveatError, Grant, RequestFacts, Satisfier, VerifyContext};
pub use challenge::{Challenge, ChallengeError, ChallengeSet, Scheme};
pub use credential::{Credential, CredentialError};
pub use identifier::{Identifier, TokenId};
pub use invoice::{CheckedInvoice, InvoiceError, Offer, check_challenge, check_invoice};
pub use macaroon::{Macaroon, MacaroonKey, MacaroonRef, RootKey};
pub use token::{L402Error, PresentedToken, VerifiedToken};
