//! The error type of every peer harness in this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why a test peer could not be installed, started or used.
///
/// Every message says what failed and, where it applies, what to install or
/// look at. Tests that need a peer are expected to fail with this error
/// (`.expect(...)` / `?`), never to skip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A program the harness needs (for example `node` or `npm`) is not on `PATH`
    /// or cannot be run.
    #[error(
        "`{program}` is required to run the {peer} test peer but could not be run ({source}); \
         {hint}"
    )]
    MissingProgram {
        /// The program that was looked up, e.g. `node`.
        program: &'static str,
        /// The peer that needs it, e.g. `bcoin`.
        peer: &'static str,
        /// What to install.
        hint: &'static str,
        /// The error from trying to run it.
        source: std::io::Error,
    },

    /// A program was found but is unusable (for example too old a Node.js).
    #[error("`{program}` is unusable for the {peer} test peer: {reason}")]
    UnusableProgram {
        /// The program, e.g. `node`.
        program: &'static str,
        /// The peer that needs it.
        peer: &'static str,
        /// What is wrong with it, including what to install instead.
        reason: String,
    },

    /// Installing the peer's package (e.g. `npm ci` of bcoin) failed.
    #[error(
        "installing the {peer} test peer into {} failed: {reason}\n\
         --- installer output (tail) ---\n{output}",
        dir.display()
    )]
    InstallFailed {
        /// The peer being installed.
        peer: &'static str,
        /// The cache directory it was being installed into.
        dir: PathBuf,
        /// What failed.
        reason: String,
        /// The tail of the installer's stdout and stderr.
        output: String,
    },

    /// A filesystem or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The peer process exited or reported a failure before it was ready.
    #[error("the {peer} test peer failed to start: {reason}\n--- peer stderr (tail) ---\n{stderr}")]
    StartFailed {
        /// The peer.
        peer: &'static str,
        /// What happened (exit status, reported error, ...).
        reason: String,
        /// The tail of the peer's stderr (and non-protocol stdout).
        stderr: String,
    },

    /// Something did not happen before its deadline.
    #[error("timed out after {waited:?} waiting for {what}{}", detail_suffix(.detail))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// Extra context (last error seen, peer stderr tail), possibly empty.
        detail: String,
    },

    /// An HTTP request to the peer failed at the transport level or returned a
    /// response that is not what the protocol specifies.
    #[error("HTTP request to {url} failed: {message}")]
    Http {
        /// The URL that was requested.
        url: String,
        /// What went wrong (transport error, status code and body, ...).
        message: String,
    },

    /// A JSON-RPC call returned an error object.
    #[error("JSON-RPC `{method}` failed with code {code}: {message}")]
    Rpc {
        /// The RPC method.
        method: String,
        /// The JSON-RPC error code (0 when the peer gave none).
        code: i64,
        /// The JSON-RPC error message.
        message: String,
    },

    /// A response was well-formed JSON but not of the expected shape.
    #[error("unexpected response from {context}: {message}")]
    Protocol {
        /// Which call produced it.
        context: String,
        /// What was expected and what arrived.
        message: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl PeerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        PeerError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn protocol(context: impl Into<String>, message: impl Into<String>) -> Self {
        PeerError::Protocol {
            context: context.into(),
            message: message.into(),
        }
    }
}
