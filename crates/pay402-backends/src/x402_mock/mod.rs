//! The x402_mock dialect on an EVM chain, with alloy: the implementations
//! of the chain port [`pay402_core::x402::mock_chain`].
//!
//! - [`AlloyPermitReader`] ([`PermitReader`]): `nonces`, `balanceOf`,
//!   `allowance` through a JSON-RPC node; no key. A paying client uses it to
//!   read the nonce it signs.
//! - [`AlloyPermitSettler`] ([`PermitSettler`]): the same reads plus the
//!   spender key ([`SpenderKey`], zeroized); it signs `permit()` and
//!   `transferFrom()` locally — with a nonce the caller allocated
//!   (`sign_at`, what the settlement worker does through its shared store)
//!   or its own in-process count — simulates before signing and waits for
//!   receipts with a bound.
//! - Both talk to the node through [`RpcTransport`](crate::evm_rpc::RpcTransport),
//!   the workspace's alloy transport on reqwest 0.12 (https only except for
//!   loopback, no redirects, bounded bodies, URLs kept out of errors).
//!
//! The settlement queue that journals each signed transaction and retries
//! is in `pay402-server` (`x402_mock::queue`); this module does one step at
//! a time.
//!
//! [`PermitReader`]: pay402_core::x402::mock_chain::PermitReader
//! [`PermitSettler`]: pay402_core::x402::mock_chain::PermitSettler
//!
//! ```no_run
//! use pay402_backends::x402_mock::{AlloyPermitSettler, SpenderKey};
//! use pay402_core::x402::mock_chain::{PermitReader, PermitSettler};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SpenderKey::from_hex(&std::env::var("EVM_PRIVATE_KEY")?)?;
//! let settler = AlloyPermitSettler::connect("http://127.0.0.1:8545", key).await?;
//! println!("spender {} on chain {}", settler.spender(), settler.chain_id());
//! # Ok(()) }
//! ```

mod error;
mod reader;
mod settler;

pub use reader::{AlloyPermitReader, DEFAULT_RPC_TIMEOUT};
pub use settler::{AlloyPermitSettler, DEFAULT_POLL_INTERVAL, InvalidKey, SpenderKey};
