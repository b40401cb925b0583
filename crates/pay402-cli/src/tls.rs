//! TLS on the proxy's listener (rustls, ALPN `h2` and `http/1.1`): every
//! connection's handshake runs in its own task with a time limit, so a slow
//! client never holds up others; shutdown is graceful as without TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Marks a request that arrived over TLS (for `X-Forwarded-Proto`).
///
/// ```
/// let mut ext = http::Extensions::new();
/// ext.insert(pay402_cli::tls::Https);
/// assert!(ext.get::<pay402_cli::tls::Https>().is_some());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Https;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor for the certificate chain and key in these PEM files.
///
/// ```no_run
/// let acceptor = pay402_cli::tls::acceptor("cert.pem".as_ref(), "key.pem".as_ref()).unwrap();
/// # let _ = acceptor;
/// ```
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert_file {}: no certificate",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("server.tls.key_file {}: {e}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("server.tls: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS settings for an `https` upstream: the web PKI roots plus the
/// service's own CAs (`ca_file`, a PEM bundle), its client certificate and
/// key if any (`identity`, PEM files), and ALPN `h2` for an HTTP/2 upstream
/// or `http/1.1` otherwise.
///
/// ```
/// let c = pay402_cli::tls::client_config(None, None, false).unwrap();
/// assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
/// ```
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("upstream_ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("upstream_ca_file {}: no certificate", ca.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("upstream_ca_file {}: {e}", ca.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("upstream_client_cert_file {}: {e}", cert_file.display()))?;
            let pem =
                zeroize::Zeroizing::new(std::fs::read(key_file).map_err(|e| {
                    format!("upstream_client_key_file {}: {e}", key_file.display())
                })?);
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("upstream_client_key_file {}: {e}", key_file.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("upstream client certificate: {e}"))?
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until `stop` turns true, then lets
/// open connections finish their requests.
///
/// ```no_run
/// # async fn f(l: tokio::net::TcpListener, a: tokio_rustls::TlsAcceptor, app: axum::Router) {
/// let (_tx, rx) = tokio::sync::watch::channel(false);
/// pay402_cli::tls::serve(l, a, app, rx).await.unwrap();
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req.extensions_mut().insert(Https);
                app.clone().oneshot(req)
            });
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
