//! The 21 BitRequests client (two1's `two1.bitrequests`), with its wallet
//! and payment-channel client.
//!
//! - [`BitRequests`]: a reqwest client that pays HTTP 402 responses with
//!   one of the three methods, behind one API: [`BitRequests::on_chain`]
//!   (`OnChainRequests`), [`BitRequests::bit_transfer`]
//!   (`BitTransferRequests`), [`BitRequests::channel`] (`ChannelRequests`);
//!   a maximum price per request (0 = free only), typed errors with stable
//!   reasons, timeouts and bounded resends, and no unpaid probing of
//!   state-changing requests.
//! - [`Wallet`]: BIP32 keys from a seed (erased on drop), P2WPKH addresses,
//!   coins and broadcast through any
//!   [`BitcoinChain`](pay402_core::chain::BitcoinChain) backend, coin
//!   selection, change, and fee rates from the backend's estimate with a
//!   floor.
//! - [`ChannelClient`]: two1's payment channels (v2, CLTV): open with a
//!   deposit and a signed refund, pay through the five REST endpoints,
//!   close, and broadcast the refund after the expiry.
//!
//! The wire formats and checks come from [`pay402_core::bitreq`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
//! use pay402_client::bitreq::{BitRequests, Wallet, WalletConfig};
//! use pay402_core::money::Sat;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let chain = Arc::new(BitcoindRpc::new(BitcoindConfig::from_env()?)?);
//! let seed = std::env::var("PAY402_WALLET_SEED")?;
//! let wallet = Arc::new(Wallet::from_seed_hex(&seed, WalletConfig::new(bitcoin::Network::Regtest), chain)?);
//! wallet.sync().await?;
//!
//! let client = BitRequests::on_chain(Arc::clone(&wallet))
//!     .max_price(Sat(5_000))
//!     .timeout(Duration::from_secs(20))
//!     .build();
//! let paid = client.get("http://127.0.0.1:8402/weather").await?;
//! if let Some(r) = &paid.receipt {
//!     println!("paid {} + {} fee, tx {}", r.amount, r.fee, r.proof_id);
//! }
//! println!("{}", paid.response.text().await?);
//! # Ok(()) }
//! ```

mod channel;
pub(crate) mod client;
mod coins;
mod error;
mod http;
mod keys;
mod wallet;

pub use channel::{ChannelClient, ChannelConfig, ChannelPayment, ChannelSummary};
pub use client::{
    BitRequests, BitRequestsBuilder, ChannelSlot, DEFAULT_MAX_PRICE, DEFAULT_RETRIES,
    DEFAULT_TIMEOUT, Paid, PaymentMethod, Receipt, RequestOptions,
};
pub use error::{BitRequestsError, WalletError};
pub use keys::KeyChain;
pub use pay402_core::bitreq::state::ClientState;
pub use wallet::{Balance, Coin, PreparedTx, Wallet, WalletConfig};
