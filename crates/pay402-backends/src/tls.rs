//! TLS for the LND and clnrest clients: the node's certificate pinned as the only trust root.
//!
//! lnd generates a self-signed certificate with `CA:TRUE`. webpki (rustls)
//! refuses to accept a CA certificate as the server's own certificate
//! (`CaUsedAsEndEntity`, lnd issue #5450), so plain "add it as a root"
//! verification cannot work with rustls. This verifier therefore accepts the
//! server certificate if either
//!
//! 1. it is byte for byte one of the pinned certificates (lnd's default
//!    setup) and is valid for the host name in the URL, or
//! 2. it chains to one of the pinned certificates under standard webpki
//!    validation (a CA-issued `tls.cert`).
//!
//! In both cases the TLS handshake signature is verified against the
//! certificate's key, so the server must hold the pinned key. No built-in
//! roots are trusted and verification is never disabled. Expiry is not
//! checked in case 1: the pin is exact, and when lnd renews its certificate
//! the pin stops matching and connections fail closed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

/// Parses every certificate in a PEM bundle.
pub(crate) fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid tls_cert_pem: {e}"))?;
    if certs.is_empty() {
        return Err("tls_cert_pem contains no certificate".into());
    }
    Ok(certs)
}

/// The server's certificate is neither pinned nor chained to a pin.
struct PinMismatch(String);

// rustls shows `Other` errors with `Debug`; make that the readable message.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server certificate is not the pinned tls.cert and does not chain to it ({})",
            self.0
        )
    }
}

impl std::error::Error for PinMismatch {}

#[derive(Debug)]
struct PinnedCertVerifier {
    pinned: Vec<CertificateDer<'static>>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        let chained = match &self.chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        chained.map_err(|e| {
            Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PinMismatch(
                e.to_string(),
            )))))
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration that trusts only the certificates in `pem`.
pub(crate) fn pinned_client_config(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let pinned = parse_pem(pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(pinned.iter().cloned());
    let chain = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .ok()
    };

    let verifier = Arc::new(PinnedCertVerifier {
        pinned,
        chain,
        provider: Arc::clone(&provider),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        // Not "dangerous" in effect: the custom verifier is stricter than the
        // default (an exact pin or a chain to the pin, never public roots).
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// The HTTP client of a node's REST API at `url`: checked by
/// [`api_https`](crate::util::http::api_https) (`use_instead` completes its
/// error), `headers` (the node's credential, marked sensitive) on every call,
/// the shared settings of [`client_builder`](crate::util::http::client_builder),
/// https only for an `https` URL, and trusting only `pem` when it is given.
pub(crate) fn node_client(
    url: &reqwest::Url,
    timeout: std::time::Duration,
    pem: Option<&[u8]>,
    use_instead: &str,
    headers: reqwest::header::HeaderMap,
) -> Result<reqwest::Client, String> {
    let https = crate::util::http::api_https(url, timeout, use_instead)?;
    let mut builder = crate::util::http::client_builder(timeout).default_headers(headers);
    match (pem, https) {
        (Some(pem), true) => {
            let tls = pinned_client_config(pem)?;
            builder = builder.use_preconfigured_tls(tls).https_only(true);
        }
        (Some(_), false) => {
            return Err("tls_cert_pem is set but the URL is http://; use https://".into());
        }
        (None, true) => builder = builder.https_only(true),
        (None, false) => {}
    }
    builder.build().map_err(|e| {
        format!(
            "cannot build HTTP client: {}",
            crate::util::http::error_chain(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_parsing() {
        let pem = include_bytes!("../tests/fixtures/lnd-tls.cert");
        assert_eq!(parse_pem(pem).unwrap().len(), 1);
        assert!(parse_pem(b"").is_err());
        assert!(
            parse_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(pinned_client_config(pem).is_ok());
    }
}
