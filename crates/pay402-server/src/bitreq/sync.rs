//! The periodic sync: expired quotes, deposits becoming ready, channels
//! closed before their expiry, and closes followed until confirmed.

use std::time::Duration;

use bitcoin::Txid;
use pay402_core::bitreq::state::must_close;
use pay402_core::chain::ChainError;
use pay402_core::time::UnixTime;
use tracing::Instrument;

use super::error::BitreqServerError;
use super::server::{BitreqServer, now};
use super::store::{ChannelRecord, ChannelState};

/// What one [`BitreqServer::sync_once`] pass did.
///
/// ```
/// let r = pay402_server::bitreq::SyncReport::default();
/// assert!(r.closed_by_server.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Expired quotes deleted.
    pub quotes_purged: u64,
    /// Channels whose deposit became ready.
    pub ready: usize,
    /// Channels the server closed (deposit txid, close txid) because their
    /// expiry was near.
    pub closed_by_server: Vec<(Txid, Txid)>,
    /// Channels marked closed (their deposit is spent).
    pub closed: usize,
    /// Steps that failed (logged; retried next pass).
    pub errors: usize,
}

impl BitreqServer {
    /// One sync pass at `now`:
    ///
    /// - deletes expired quotes;
    /// - `confirming` channels whose deposit is confirmed become `ready`;
    /// - `ready` channels with a payment whose close deadline
    ///   (`now + close_margin > expiry`) is reached are closed: the latest
    ///   payment is signed and broadcast;
    /// - `ready` channels whose deposit output was spent (the customer's
    ///   refund) and `closing` channels whose close transaction confirmed
    ///   become `closed`; a close transaction the node lost is re-broadcast.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let report = server.sync_once(pay402_core::time::UnixTime::from_system(std::time::SystemTime::now())).await;
    /// println!("closed {} channels", report.closed_by_server.len());
    /// # }
    /// ```
    pub async fn sync_once(&self, now: UnixTime) -> SyncReport {
        let mut report = SyncReport::default();
        let store = &self.inner.store;
        match store.purge_quotes(now).await {
            Ok(n) => report.quotes_purged = n,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "bitreq.sync.purge_failed");
            }
        }
        let Some(cc) = self.inner.config.channel.as_ref() else {
            return report;
        };
        let states = [
            ChannelState::Confirming,
            ChannelState::Ready,
            ChannelState::Closing,
        ];
        let channels = match store.channels_in(&states).await {
            Ok(c) => c,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "bitreq.sync.list_failed");
                return report;
            }
        };
        let margin = cc.close_margin.as_secs();
        for rec in channels {
            let id = rec.deposit.txid;
            let step = match rec.state {
                ChannelState::Confirming => self.sync_confirming(rec, now, &mut report).await,
                ChannelState::Ready => {
                    if rec.latest_payment.is_some() && must_close(now, rec.expiry, margin) {
                        match self.close_channel(&rec).await {
                            Ok(close) => {
                                report.closed_by_server.push((id, close));
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        self.sync_ready(&rec, &mut report).await
                    }
                }
                ChannelState::Closing => self.sync_closing(&rec, &mut report).await,
                ChannelState::Closed => Ok(()),
            };
            if let Err(e) = step {
                report.errors += 1;
                tracing::warn!(deposit_txid = %id, error = %e, "bitreq.sync.channel_failed");
            }
        }
        report
    }

    async fn sync_confirming(
        &self,
        rec: ChannelRecord,
        now: UnixTime,
        report: &mut SyncReport,
    ) -> Result<(), BitreqServerError> {
        let id = rec.deposit.txid;
        let expiry = rec.expiry;
        let rec = self.ensure_ready(rec).await?;
        if rec.state == ChannelState::Ready {
            report.ready += 1;
        } else if now.0 > u64::from(expiry)
            && self
                .inner
                .store
                .set_channel_state(&id, ChannelState::Confirming, ChannelState::Closed)
                .await?
        {
            // Never confirmed before its expiry: nothing to collect.
            report.closed += 1;
        }
        Ok(())
    }

    async fn sync_ready(
        &self,
        rec: &ChannelRecord,
        report: &mut SyncReport,
    ) -> Result<(), BitreqServerError> {
        if self.inner.chain.get_tx_out(&rec.deposit).await?.is_none()
            && self
                .inner
                .store
                .set_channel_state(&rec.deposit.txid, ChannelState::Ready, ChannelState::Closed)
                .await?
        {
            tracing::warn!(deposit_txid = %rec.deposit.txid, "bitreq.sync.deposit_spent_elsewhere");
            report.closed += 1;
        }
        Ok(())
    }

    async fn sync_closing(
        &self,
        rec: &ChannelRecord,
        report: &mut SyncReport,
    ) -> Result<(), BitreqServerError> {
        let chain = &self.inner.chain;
        let id = rec.deposit.txid;
        let close = match rec.close_txid {
            Some(c) => chain.get_transaction(&c).await?,
            None => None,
        };
        let confirmed = close.as_ref().is_some_and(|c| c.confirmations > 0);
        let deposit_unspent = chain.get_tx_out(&rec.deposit).await?.is_some();
        if confirmed || (close.is_none() && !deposit_unspent) {
            // Our close confirmed, or something else spent the deposit.
            if self
                .inner
                .store
                .set_channel_state(&id, ChannelState::Closing, ChannelState::Closed)
                .await?
            {
                report.closed += 1;
            }
            return Ok(());
        }
        if close.is_none() && deposit_unspent {
            // The node lost our close: sign and send it again (same txid).
            let cc = self
                .inner
                .config
                .channel
                .as_ref()
                .ok_or(BitreqServerError::MethodNotOffered("channel"))?;
            let params = rec
                .params()
                .map_err(pay402_core::bitreq::state::ChannelError::Invalid)?;
            if let Some(latest) = &rec.latest_payment
                && let Some(Ok(full)) = cc.key.with_secret(|k| params.complete_payment(latest, k))
            {
                match chain.broadcast(&full).await {
                    Ok(_) | Err(ChainError::AlreadyKnown { .. }) => {
                        tracing::info!(deposit_txid = %id, "bitreq.sync.close_rebroadcast");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Runs [`BitreqServer::sync_once`] every `period` on the tokio runtime
    /// until the returned handle is aborted.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let task = server.spawn_sync(std::time::Duration::from_secs(60));
    /// // ... on shutdown:
    /// task.abort();
    /// # }
    /// ```
    pub fn spawn_sync(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let server = self.clone();
        let period = period.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let report = server
                    .sync_once(now())
                    .instrument(tracing::info_span!("bitreq.sync"))
                    .await;
                if report != SyncReport::default() {
                    tracing::info!(?report, "bitreq.sync");
                }
            }
        })
    }
}
