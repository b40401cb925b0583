//! Captured logs for tests that check what pay402 traces (spans present,
//! secrets absent).
//!
//! [`capture_global`] installs a global `tracing` subscriber writing into
//! memory. Global, not thread-scoped: `tracing` caches whether a callsite is
//! enabled per process, and while only one subscriber exists it asks the
//! current thread's default. With a scoped subscriber, another test reaching
//! a callsite first from a thread without one would switch that callsite off
//! for good. So a log-capturing test lives in its own test binary and calls
//! this once.
//!
//! ```
//! let logs = pay402_testkit::logs::capture_global(tracing::Level::DEBUG);
//! tracing::info!(outcome = "paid", "x402.request");
//! assert!(logs.text().contains("outcome=\"paid\""));
//! ```

use std::sync::{Arc, Mutex, PoisonError};

/// The text written by the subscriber [`capture_global`] installed (it is an
/// [`std::io::Write`] sink).
///
/// ```
/// use std::io::Write;
/// let logs = pay402_testkit::logs::CapturedLogs::default();
/// logs.clone().write_all(b"x402.request outcome=\"paid\"").unwrap();
/// assert!(logs.text().contains("paid"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything captured so far, as text.
    ///
    /// ```
    /// let logs = pay402_testkit::logs::CapturedLogs::default();
    /// assert_eq!(logs.text(), "");
    /// ```
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global fmt subscriber (no colours, span close events, up to
/// `level`) writing into the returned [`CapturedLogs`].
///
/// # Panics
///
/// When a global subscriber is already installed in this process: call it
/// once, from the only log-capturing test of its binary.
///
/// (Runs in the module example; one global subscriber per process.)
///
/// ```no_run
/// let logs = pay402_testkit::logs::capture_global(tracing::Level::TRACE);
/// tracing::trace_span!("l402.pay").in_scope(|| {});
/// assert!(logs.text().contains("l402.pay"));
/// ```
pub fn capture_global(level: tracing::Level) -> CapturedLogs {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(level)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("capture_global: a global subscriber is already installed in this test binary");
    logs
}
