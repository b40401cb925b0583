//! Where a server example's Lightning invoices come from, chosen by
//! `PAY402_LIGHTNING`: `simnet` (the default) starts an in-process
//! Lightning network whose `merchant` node issues the invoices and whose
//! funded `wallet` node answers LND's REST API on `PAY402_SIMNET_LISTEN`
//! (default `127.0.0.1:8403`), so a client can pay with one HTTP call;
//! `lnd`, `cln`, `lnbits` or `ldk` connect to (or start) a real node through
//! [`lightning_from_env`](crate::lightning_from_env).

use std::sync::Arc;

use pay402_backends::ldk::LdkNode;
use pay402_backends::simnet::SimNet;
use pay402_core::lightning::{InvoiceIssuer, Network};
use pay402_core::money::{Msat, Sat};
use tokio::task::JoinHandle;

use crate::{env_or, sats};

/// A server example's invoice issuer, and what runs beside it until
/// [`stop`](Invoices::stop).
pub struct Invoices {
    /// Issues the server's invoices.
    pub issuer: Arc<dyn InvoiceIssuer>,
    /// The simnet wallet's REST face, when `PAY402_LIGHTNING=simnet`.
    wallet_face: Option<JoinHandle<std::io::Result<()>>>,
    /// The embedded node, when `PAY402_LIGHTNING=ldk` (stopped cleanly).
    ldk: Option<LdkNode>,
}

impl Invoices {
    /// Starts the backend `PAY402_LIGHTNING` names and prints one line
    /// saying where the invoices come from (`label` first, for servers
    /// offering several rails).
    ///
    /// # Errors
    ///
    /// When the simnet face cannot listen, or the named node cannot be
    /// reached or started.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let invoices = pay402_examples::Invoices::from_env("").await?;
    /// // … build a paywall with `invoices.issuer.clone()` and serve …
    /// invoices.stop()?;
    /// # Ok(()) }
    /// ```
    pub async fn from_env(label: &str) -> Result<Invoices, Box<dyn std::error::Error>> {
        match env_or("PAY402_LIGHTNING", "simnet").as_str() {
            "simnet" => {
                let net = SimNet::new(Network::Regtest);
                let merchant = net.add_node("merchant", Msat(0));
                let wallet = net.add_node("wallet", Sat(10_000_000).to_msat().ok_or("overflow")?);
                let face = env_or("PAY402_SIMNET_LISTEN", "127.0.0.1:8403");
                let listener = tokio::net::TcpListener::bind(&face).await?;
                println!(
                    "{label}simnet wallet ({} funded) LND REST API: http://{}",
                    sats(wallet.balance()),
                    listener.local_addr()?
                );
                let face = tokio::spawn(pay402_backends::simnet::rest::serve(wallet, listener));
                Ok(Invoices {
                    issuer: Arc::new(merchant),
                    wallet_face: Some(face),
                    ldk: None,
                })
            }
            other => {
                let ln = crate::lightning_from_env(other)?;
                println!("{label}invoices from {}", ln.describe);
                Ok(Invoices {
                    issuer: ln.issuer,
                    wallet_face: None,
                    ldk: ln.ldk,
                })
            }
        }
    }

    /// Stops the simnet face or the embedded node.
    ///
    /// # Errors
    ///
    /// When the embedded node fails to stop.
    ///
    /// ```no_run
    /// # async fn f(invoices: pay402_examples::Invoices) -> Result<(), Box<dyn std::error::Error>> {
    /// invoices.stop()?;
    /// # Ok(()) }
    /// ```
    pub fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        if let Some(face) = self.wallet_face {
            face.abort();
        }
        if let Some(node) = self.ldk {
            node.stop()?;
        }
        Ok(())
    }
}
