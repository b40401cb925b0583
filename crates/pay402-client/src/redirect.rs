//! A redirect policy that keeps credentials inside their origin.

use std::time::Duration;

use reqwest::redirect::Policy;

/// Most redirects followed by [`same_origin_redirects`] (reqwest's default).
pub const MAX_REDIRECTS: usize = 10;

/// A reqwest redirect policy that follows at most [`MAX_REDIRECTS`]
/// redirects, and only while they stay on the origin (scheme, host and port)
/// of the original request. A redirect to any other origin, including an
/// `https` → `http` downgrade on the same host, is not followed: the 3xx
/// response is returned to the caller, so an `Authorization: L402 …` header
/// never reaches another origin.
///
/// [`L402Client`](crate::L402Client) uses it unless given its own reqwest
/// client; apply it to your own client with `.redirect(...)`.
///
/// ```
/// let http = reqwest::Client::builder()
///     .redirect(pay402_client::same_origin_redirects())
///     .build()
///     .unwrap();
/// # let _ = http;
/// ```
pub fn same_origin_redirects() -> Policy {
    Policy::custom(|attempt| {
        // `previous()` starts with the original URL.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The HTTP client the paying clients build when given none: reqwest with
/// [`same_origin_redirects`], the `connect` timeout and, if any, the `total`
/// one. Should that fail (the TLS backend cannot initialise), a client that
/// follows no redirects, never one that leaks.
pub(crate) fn default_http(connect: Duration, total: Option<Duration>) -> reqwest::Client {
    let builder = |policy: Policy| {
        let b = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(connect);
        match total {
            Some(t) => b.timeout(t),
            None => b,
        }
    };
    builder(same_origin_redirects()).build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot build the default HTTP client; following no redirects");
        builder(Policy::none()).build().unwrap_or_default()
    })
}
