//! 21 BitRequests (two1): Bitcoin HTTP 402 with three payment methods.
//!
//! - [`headers`]: the 402 headers (`Price`, `Bitcoin-Address`, `Username`,
//!   `Bitcoin-Payment-Channel-Server`), the proof headers, and method selection;
//! - [`transfer`]: the off-chain `Bitcoin-Transfer` JSON and its `Authorization`
//!   signature (ECDSA r‖s over SHA-256 of the header bytes);
//! - [`onchain`]: verifying a presented raw transaction, and building one;
//! - [`channel`]: payment channel protocol v2 (CLTV) templates: the redeem
//!   script, deposit / refund / payment transactions, the token and the close
//!   signature;
//! - [`rest`]: the five REST bodies of the channel server, and pay402's JSON
//!   error body;
//! - [`state`]: the server and client channel state machines (pure).
//!
//! Everything is sans-IO: keys, time and prevout amounts are parameters.
//!
//! ```
//! use pay402_core::bitreq::{PaymentInfo, Proof};
//! use pay402_core::money::Sat;
//!
//! // Server: advertise.
//! let info = PaymentInfo::new(Sat(3500)).with_bitcoin_address("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM");
//! let pairs = info.header_pairs();
//! assert_eq!(pairs[0], ("Price", "3500".to_owned()));
//!
//! // Client: read (case-insensitively).
//! let got = PaymentInfo::from_pairs(pairs.iter().map(|(n, v)| (n.to_lowercase(), v.clone()))).unwrap();
//! assert_eq!(got.price, Sat(3500));
//!
//! // Server: which proof came back?
//! let proof = Proof::from_pairs([("bitcoin-payment-channel-token", "ebe4d541199430f0ae07f5250455e0fe612051848ec70f21ca81bb9ca5e9e096")]).unwrap();
//! assert!(matches!(proof, Proof::Channel { .. }));
//! ```

pub mod channel;
mod error;
pub mod headers;
pub mod onchain;
pub mod rest;
pub mod state;
pub mod transfer;

pub use channel::{
    ChannelParams, ExpiryEncoding, RedeemScript, close_signature, verify_close_signature,
};
pub use error::BitreqError;
pub use headers::{PaymentInfo, Proof};
pub use onchain::{AmountRule, OnChainPolicy, SpendKind, SpendableUtxo, VerifiedOnChain};
pub use state::{ChannelError, ClientChannel, ClientState, ServerChannel, ServerState};
pub use transfer::{BitTransfer, SignedTransfer};

use bitcoin::secp256k1::{All, Secp256k1};
use std::sync::OnceLock;

/// The process-wide secp256k1 context (signing + verification).
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}
