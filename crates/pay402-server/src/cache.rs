//! The HTTP caching policy shared by every rail (L402, x402, x402_mock,
//! BitRequests).
//!
//! A paid response is the content somebody paid for: a shared cache (a CDN,
//! a corporate proxy) that stored it would hand it to the next client,
//! paid or not. So, by default, every paid response answers
//! `Cache-Control: private, no-store` (whatever the handler set), and every
//! `402` answers `Cache-Control: no-store` and `Vary` naming the rail's
//! credential headers, so no cache reuses a challenge for a request that
//! carries a credential (or the other way round).
//!
//! An operator whose paid content may be cached (it is public anyway, or the
//! cache in front keys on the credential) opts in with
//! [`PaidCaching::HandlerDecides`]: the handler's own `Cache-Control` is kept
//! (none is added). The `Vary` on the credential headers is added to paid
//! responses in both modes.
//!
//! ```
//! use http::HeaderMap;
//! use pay402_server::cache::{PaidCaching, X402_CREDENTIALS};
//! let mut h = HeaderMap::new();
//! h.insert("cache-control", "public, max-age=600".parse().unwrap());
//! PaidCaching::default().apply_paid(&mut h, X402_CREDENTIALS);
//! assert_eq!(h["cache-control"], "private, no-store");
//! assert_eq!(h["vary"], "PAYMENT-SIGNATURE, X-PAYMENT");
//! ```

use std::convert::Infallible;

use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};

/// The credential headers of L402 (`Authorization: L402 ...`).
///
/// ```
/// assert_eq!(pay402_server::cache::L402_CREDENTIALS, &["Authorization"]);
/// ```
pub const L402_CREDENTIALS: &[&str] = &["Authorization"];

/// The credential headers of x402: `PAYMENT-SIGNATURE` (v2) and
/// `X-PAYMENT` (v1).
///
/// ```
/// assert!(pay402_server::cache::X402_CREDENTIALS.contains(&"X-PAYMENT"));
/// ```
pub const X402_CREDENTIALS: &[&str] = &["PAYMENT-SIGNATURE", "X-PAYMENT"];

/// The credential header of the x402_mock dialect (a bearer access token).
///
/// ```
/// assert_eq!(pay402_server::cache::X402_MOCK_CREDENTIALS, &["Authorization"]);
/// ```
pub const X402_MOCK_CREDENTIALS: &[&str] = &["Authorization"];

/// The proof headers of 21 BitRequests (on-chain transaction, bit-transfer,
/// payment channel) and the `Authorization` of a ledger account.
///
/// ```
/// assert!(pay402_server::cache::BITREQ_CREDENTIALS.contains(&"Bitcoin-Transfer"));
/// ```
pub const BITREQ_CREDENTIALS: &[&str] = &[
    "Bitcoin-Transaction",
    "Bitcoin-Transfer",
    "Bitcoin-Payment-Channel-Token",
    "Authorization",
];

/// Whether a paid response may be stored by caches. One policy type,
/// settable on each rail's configuration.
///
/// ```
/// use pay402_server::cache::PaidCaching;
/// assert_eq!(PaidCaching::default(), PaidCaching::PrivateNoStore);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaidCaching {
    /// `Cache-Control: private, no-store` on every paid response, replacing
    /// whatever the handler set (the default).
    #[default]
    PrivateNoStore,
    /// The operator's opt-in: the handler's `Cache-Control` (if any) is
    /// kept and none is added.
    HandlerDecides,
}

impl PaidCaching {
    /// Sets the caching headers of a paid response: `Cache-Control` per the
    /// policy and `Vary` on `credentials`.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use pay402_server::cache::{PaidCaching, L402_CREDENTIALS};
    /// let mut h = HeaderMap::new();
    /// h.insert("cache-control", "max-age=60".parse().unwrap());
    /// PaidCaching::HandlerDecides.apply_paid(&mut h, L402_CREDENTIALS);
    /// assert_eq!(h["cache-control"], "max-age=60");
    /// assert_eq!(h["vary"], "Authorization");
    /// ```
    pub fn apply_paid(self, headers: &mut HeaderMap, credentials: &[&str]) {
        if self == PaidCaching::PrivateNoStore {
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
        }
        vary(headers, credentials);
    }
}

/// Sets the caching headers of a `402` (or any other unpaid answer):
/// `Cache-Control: no-store` and `Vary` on `credentials`.
///
/// ```
/// use http::HeaderMap;
/// use pay402_server::cache::{challenge, BITREQ_CREDENTIALS};
/// let mut h = HeaderMap::new();
/// challenge(&mut h, BITREQ_CREDENTIALS);
/// assert_eq!(h["cache-control"], "no-store");
/// assert!(h["vary"].to_str().unwrap().contains("Bitcoin-Transaction"));
/// ```
pub fn challenge(headers: &mut HeaderMap, credentials: &[&str]) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    vary(headers, credentials);
}

/// Appends `credentials` to `Vary` (once: a header already named is not
/// repeated; `Vary: *` is left alone).
pub(crate) fn vary(headers: &mut HeaderMap, credentials: &[&str]) {
    let present: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if present.iter().any(|p| p == "*") {
        return;
    }
    let missing: Vec<&str> = credentials
        .iter()
        .copied()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::try_from(missing.join(", ")) {
        headers.append(header::VARY, v);
    }
}

/// A function that finishes a layer's response on a fast path that returns
/// the inner service's own future (mapped, not boxed), such as the L402
/// layer's cached-key path.
///
/// ```
/// use pay402_server::cache::{FinishResponse, l402_paid, PaidCaching};
/// let f: FinishResponse = l402_paid(PaidCaching::PrivateNoStore);
/// let resp = f(Ok(axum::response::Response::new(axum::body::Body::empty()))).unwrap();
/// assert_eq!(resp.headers()["cache-control"], "private, no-store");
/// ```
pub type FinishResponse = fn(Result<Response, Infallible>) -> Result<Response, Infallible>;

/// The response as it is (a free path).
///
/// ```
/// let resp = pay402_server::cache::unchanged(Ok(axum::response::Response::new(axum::body::Body::empty()))).unwrap();
/// assert!(resp.headers().is_empty());
/// ```
pub fn unchanged(r: Result<Response, Infallible>) -> Result<Response, Infallible> {
    r
}

fn l402_private(r: Result<Response, Infallible>) -> Result<Response, Infallible> {
    r.map(|mut resp| {
        PaidCaching::PrivateNoStore.apply_paid(resp.headers_mut(), L402_CREDENTIALS);
        resp
    })
}

fn l402_handler_decides(r: Result<Response, Infallible>) -> Result<Response, Infallible> {
    r.map(|mut resp| {
        PaidCaching::HandlerDecides.apply_paid(resp.headers_mut(), L402_CREDENTIALS);
        resp
    })
}

/// The finisher of a paid L402 response under `policy`.
///
/// ```
/// use pay402_server::cache::{l402_paid, PaidCaching};
/// let resp = l402_paid(PaidCaching::HandlerDecides)(Ok(axum::response::Response::new(axum::body::Body::empty()))).unwrap();
/// assert!(resp.headers().get("cache-control").is_none());
/// assert_eq!(resp.headers()["vary"], "Authorization");
/// ```
pub fn l402_paid(policy: PaidCaching) -> FinishResponse {
    match policy {
        PaidCaching::PrivateNoStore => l402_private,
        PaidCaching::HandlerDecides => l402_handler_decides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_not_repeated_and_star_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::VARY,
            HeaderValue::from_static("accept, authorization"),
        );
        challenge(&mut h, L402_CREDENTIALS);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("*"));
        challenge(&mut h, X402_CREDENTIALS);
        assert_eq!(h[header::VARY], "*");
    }
}
