//! The L402 rail on the server: [`L402Layer`], its
//! configuration, the cache of derived macaroon keys and the root-key store.
//!
//! Everything here is also re-exported at the crate root
//! (`pay402_server::L402Layer`, `pay402_server::store`).
//!
//! ```
//! use pay402_server::l402::L402Config;
//! assert_eq!(L402Config::new("api").service, "api");
//! ```

mod config;
mod keycache;
mod layer;
pub(crate) mod paywall_rail;
pub mod store;

pub use config::{
    DEFAULT_TOKEN_LIFETIME, L402Config, Price, PriceFuture, PriceRequest, RejectMode,
    normalize_path,
};
pub use keycache::KeyCache;
pub(crate) use layer::Verdict;
pub use layer::{BoxedResponse, L402Future, L402Layer, L402Service, PaidToken};
