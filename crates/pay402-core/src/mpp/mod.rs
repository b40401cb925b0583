//! MPP: the `Payment` HTTP authentication scheme (draft-httpauth-payment),
//! with the `lightning`/`charge` and `evm`/`charge` methods.
//!
//! - [`challenge`]: `WWW-Authenticate: Payment …` lists, parsed and emitted;
//! - [`binding`]: the HMAC-SHA256 challenge id and secret rotation;
//! - [`credential`]: `Authorization: Payment <base64url(JSON)>`;
//! - [`receipt`]: the `Payment-Receipt` header;
//! - [`verify`]: the method-independent server checks, in order;
//! - [`methods`]: `lightning`/`charge`, `evm`/`charge` (EIP-3009);
//! - [`error`]: verification errors and the MPP problem types;
//! - [`accept`]: `Accept-Payment`; [`digest`]: the body digest;
//! - [`jcs`] (RFC 8785), [`b64url`], [`rfc3339`]: the encodings.
//!
//! A server issues, then verifies (HMAC → route pinning → expiry → payload →
//! method verify), then consumes the replay key atomically in its store:
//!
//! ```
//! use pay402_core::mpp::*;
//! use pay402_core::mpp::methods::lightning;
//! use pay402_core::lightning::{Network, Preimage};
//! use pay402_core::time::UnixTime;
//!
//! // The derived vector of the protocol reference (§12.5): a real regtest invoice.
//! let invoice = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
//! let keys = ChallengeKeys::new(ChallengeKey::new(&[42; 32]).unwrap());
//! let now = UnixTime(1_767_225_600); // 2026-01-01T00:00:00Z
//!
//! // Server: a fresh invoice per challenge.
//! let challenge = lightning::issue_charge(&keys, &lightning::ChargeOffer::new("api.example.com", invoice), now).unwrap();
//! let www_authenticate = challenge.to_header_value().unwrap();
//!
//! // Client: parse, check (budget on the invoice's own amount), pay, answer.
//! let offers = ChallengeList::parse([www_authenticate.as_bytes()]).into_result().unwrap();
//! let payable = lightning::check_charge(&offers[0], Network::Regtest, now, pay402_core::money::Msat(100_000)).unwrap();
//! let preimage = Preimage::from_bytes([0x11; 32]); // what the node returns once paid
//! assert!(payable.accepts(&preimage));
//! let authorization = lightning::credential(&offers[0], &preimage, None);
//!
//! // Server: verify, then consume (payment hash, challenge id) atomically, serve, receipt.
//! let token = credential::find_token([authorization.as_bytes()]).unwrap().unwrap();
//! let mut buf = Vec::new();
//! let cred = Credential::decode(token, &mut buf).unwrap();
//! let verifier = lightning::ChargeVerifier::new(&keys, "api.example.com", 100, Network::Regtest);
//! let paid = verifier.verify(&cred, now.saturating_add_secs(60)).unwrap();
//! assert_eq!(paid.payment_hash, preimage.payment_hash());
//! let receipt = paid.receipt(now.saturating_add_secs(60)).encode();
//! assert_eq!(Receipt::decode(&receipt).unwrap().reference, paid.payment_hash.to_hex());
//! ```

pub mod accept;
pub mod b64url;
pub mod binding;
pub mod challenge;
pub mod credential;
pub mod digest;
pub mod error;
pub mod jcs;
pub mod methods;
pub mod receipt;
pub mod rfc3339;
pub mod verify;

pub use accept::{AcceptPayment, AcceptPaymentError, PaymentRange};
pub use binding::{ChallengeKey, ChallengeKeys, KeyTooShort};
pub use challenge::{Challenge, ChallengeError, ChallengeList, SkippedOffer};
pub use credential::{Credential, CredentialError};
pub use error::{MppProblem, ProblemType, VerifyError};
pub use receipt::{Receipt, ReceiptError};

/// The `WWW-Authenticate` scheme and `Authorization` scheme name.
///
/// ```
/// assert_eq!(pay402_core::mpp::SCHEME, "Payment");
/// ```
pub const SCHEME: &str = challenge::SCHEME;

/// The receipt header.
///
/// ```
/// assert_eq!(pay402_core::mpp::RECEIPT_HEADER, "Payment-Receipt");
/// ```
pub const RECEIPT_HEADER: &str = "Payment-Receipt";

/// The preferences header a client may send.
///
/// ```
/// assert_eq!(pay402_core::mpp::ACCEPT_PAYMENT_HEADER, "Accept-Payment");
/// ```
pub const ACCEPT_PAYMENT_HEADER: &str = "Accept-Payment";

/// The alternative credential header a challenge may name with `header=`.
///
/// ```
/// assert_eq!(pay402_core::mpp::PAYMENT_AUTHORIZATION_HEADER, "Payment-Authorization");
/// ```
pub const PAYMENT_AUTHORIZATION_HEADER: &str = "Payment-Authorization";
