//! Stable rejection reasons and RFC 9457 problem details.
//!
//! Every error type in pay402 that can reach an HTTP peer implements [`Reason`]:
//! a short, stable, machine-readable string (`snake_case`) that never changes
//! between releases, plus the HTTP status it maps to.

use serde::{Deserialize, Serialize};

/// A typed error with a stable machine-readable reason.
///
/// ```
/// use pay402_core::problem::Reason;
/// use pay402_core::l402::L402Error;
/// let e = L402Error::PreimageMismatch;
/// assert_eq!(e.reason(), "preimage_mismatch");
/// assert_eq!(e.status(), 401);
/// ```
pub trait Reason {
    /// The stable reason string, e.g. `invalid_signature`.
    fn reason(&self) -> &'static str;
    /// The HTTP status this rejection maps to when the server answers in spec mode.
    fn status(&self) -> u16 {
        400
    }
}

/// The media type of an RFC 9457 problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
///
/// `type` is a URI naming the reason (`https://pay402.dev/problems/<reason>`);
/// the extension member `reason` carries the same stable string for clients
/// that prefer not to parse URIs.
///
/// ```
/// use pay402_core::problem::Problem;
/// let p = Problem::new(402, "payment_required", "Payment required");
/// let json = serde_json::to_string(&p).unwrap();
/// assert!(json.contains("\"reason\":\"payment_required\""));
/// assert!(json.contains("\"status\":402"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// URI reference identifying the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human-readable summary.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Human-readable explanation specific to this occurrence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// The stable machine-readable reason.
    pub reason: String,
}

/// Base of the `type` URIs of pay402 problems.
pub const PROBLEM_TYPE_BASE: &str = "https://pay402.dev/problems/";

impl Problem {
    /// A problem with the given status, reason and title.
    ///
    /// ```
    /// let p = pay402_core::problem::Problem::new(400, "malformed_credential", "Bad credential");
    /// assert_eq!(p.type_uri, "https://pay402.dev/problems/malformed_credential");
    /// ```
    pub fn new(status: u16, reason: &str, title: &str) -> Problem {
        Problem {
            type_uri: format!("{PROBLEM_TYPE_BASE}{reason}"),
            title: title.to_owned(),
            status,
            detail: None,
            reason: reason.to_owned(),
        }
    }

    /// Builds a problem from any [`Reason`], with its `Display` text as detail.
    ///
    /// ```
    /// use pay402_core::problem::Problem;
    /// use pay402_core::l402::L402Error;
    /// let p = Problem::from_reason(&L402Error::InvalidSignature, 401);
    /// assert_eq!(p.reason, "invalid_signature");
    /// ```
    pub fn from_reason<E: Reason + std::fmt::Display + ?Sized>(err: &E, status: u16) -> Problem {
        let mut p = Problem::new(status, err.reason(), title_for_status(status));
        p.detail = Some(err.to_string());
        p
    }

    /// Sets the detail text.
    ///
    /// ```
    /// let p = pay402_core::problem::Problem::new(402, "payment_required", "Payment required")
    ///     .with_detail("pay the invoice");
    /// assert_eq!(p.detail.as_deref(), Some("pay the invoice"));
    /// ```
    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    /// Serializes to compact JSON.
    ///
    /// ```
    /// let p = pay402_core::problem::Problem::new(402, "payment_required", "Payment required");
    /// assert!(p.to_json().starts_with('{'));
    /// ```
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

fn title_for_status(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        402 => "Payment required",
        403 => "Forbidden",
        409 => "Conflict",
        413 => "Payload too large",
        429 => "Too many requests",
        503 => "Service unavailable",
        _ => "Request rejected",
    }
}
