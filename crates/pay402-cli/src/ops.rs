//! The operations endpoints: `/healthz`, `/readyz` (upstreams, the
//! Lightning node, the x402 facilitator and the BitRequests chain
//! reachable) and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use pay402_core::lightning::InvoiceIssuer;
use pay402_core::x402::facilitator::Facilitator;

use crate::run::Running;

#[derive(Clone)]
struct Ops {
    metrics: PrometheusHandle,
    upstreams: Arc<Vec<(String, reqwest::Url)>>,
    issuer: Option<Arc<dyn InvoiceIssuer>>,
    facilitator: Option<Arc<dyn Facilitator>>,
    /// The BitRequests chain, when on-chain payments or channels use it.
    bitcoin: Option<Arc<dyn pay402_core::chain::BitcoinChain>>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn router(metrics: PrometheusHandle, running: &Running) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(ops): State<Ops>| async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    ops.metrics.render(),
                )
            }),
        )
        .with_state(Ops {
            metrics,
            upstreams: Arc::new(running.upstreams.clone()),
            issuer: running.issuer.clone(),
            facilitator: running.facilitator.clone(),
            bitcoin: running
                .bitreq
                .as_ref()
                .filter(|b| b.config().onchain.is_some() || b.config().channel.is_some())
                .map(|b| b.chain().clone()),
        })
}

/// Ready when every upstream accepts a TCP connection within 2 s, the
/// Lightning node answers (any answer but "unreachable") and the x402
/// facilitator lists what it supports, and the BitRequests chain tells its
/// height.
async fn readyz(State(ops): State<Ops>) -> axum::response::Response {
    const PROBE: Duration = Duration::from_secs(2);
    let checks = ops.upstreams.iter().map(|(name, url)| async move {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let ok = matches!(
            tokio::time::timeout(PROBE, tokio::net::TcpStream::connect((host.as_str(), port)))
                .await,
            Ok(Ok(_))
        );
        (name.clone(), ok)
    });
    let lightning = async {
        let node = ops.issuer.as_ref()?;
        let probe = node.lookup_invoice(&pay402_core::lightning::PaymentHash([0; 32]));
        Some(!matches!(
            tokio::time::timeout(PROBE, probe).await,
            Err(_)
                | Ok(Err(
                    pay402_core::lightning::LightningError::Unreachable { .. }
                ))
        ))
    };
    let facilitator = async {
        let f = ops.facilitator.as_ref()?;
        Some(matches!(
            tokio::time::timeout(PROBE, f.supported()).await,
            Ok(Ok(_))
        ))
    };
    let bitcoin = async {
        let chain = ops.bitcoin.as_ref()?;
        Some(matches!(
            tokio::time::timeout(PROBE, chain.block_height()).await,
            Ok(Ok(_))
        ))
    };
    let (results, lightning, facilitator, bitcoin) = tokio::join!(
        futures_util::future::join_all(checks),
        lightning,
        facilitator,
        bitcoin
    );
    let ready = results.iter().all(|(_, ok)| *ok)
        && lightning.unwrap_or(true)
        && facilitator.unwrap_or(true)
        && bitcoin.unwrap_or(true);
    let body = serde_json::json!({
        "ready": ready,
        "upstreams": results.iter().map(|(n, ok)| serde_json::json!({"service": n, "reachable": ok})).collect::<Vec<_>>(),
        "lightning": lightning,
        "facilitator": facilitator,
        "bitcoin": bitcoin,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
