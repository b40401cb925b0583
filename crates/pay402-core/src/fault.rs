//! Crash points for crash tests.
//!
//! The settlement paths call [`point`] at each step where a crash matters.
//! In a normal build (the default) it does nothing and compiles to nothing.
//! Built with the non-default cargo feature `fault-injection` (of
//! pay402-core, enabled through `pay402-cli/fault-injection` for the test
//! binary), a process started with `PAY402_CRASH_AT=<step>` kills itself
//! with `SIGKILL` when it reaches that step: no destructor runs, no buffer
//! is flushed, exactly like `kill -9`.
//!
//! | step | where |
//! |---|---|
//! | `after_verify` | the payment is verified, nothing sent |
//! | `after_send` | the settlement transaction was broadcast |
//! | `after_mined` | its receipt is in |
//! | `before_record` | before the outcome is written to the store |
//! | `before_response` | before the answer is sent |
//!
//! `PAY402_CRASH_AT=<step>:<n>` kills at the `n`-th time the step is
//! reached (a server with an in-process facilitator reaches
//! `before_record` twice per payment: the facilitator's settlement record,
//! then the server's payment record).
//!
//! ```
//! use pay402_core::fault::{Step, point};
//! point(Step::AfterVerify); // nothing happens without the feature and the variable
//! assert_eq!(Step::parse("after_send"), Some(Step::AfterSend));
//! ```

/// The environment variable naming the step to crash at.
///
/// ```
/// assert_eq!(pay402_core::fault::CRASH_AT_ENV, "PAY402_CRASH_AT");
/// ```
pub const CRASH_AT_ENV: &str = "PAY402_CRASH_AT";

/// A step of settlement where a crash test may kill the process.
///
/// ```
/// use pay402_core::fault::Step;
/// assert_eq!(Step::ALL.len(), 5);
/// assert_eq!(Step::BeforeRecord.as_str(), "before_record");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The payment is verified; nothing is sent yet.
    AfterVerify,
    /// The settlement transaction was broadcast.
    AfterSend,
    /// The settlement transaction is mined.
    AfterMined,
    /// The outcome is about to be written to the store.
    BeforeRecord,
    /// The answer is about to be sent.
    BeforeResponse,
}

impl Step {
    /// Every step, in settlement order.
    pub const ALL: [Step; 5] = [
        Step::AfterVerify,
        Step::AfterSend,
        Step::AfterMined,
        Step::BeforeRecord,
        Step::BeforeResponse,
    ];

    /// The name used in [`CRASH_AT_ENV`].
    ///
    /// ```
    /// assert_eq!(pay402_core::fault::Step::AfterMined.as_str(), "after_mined");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Step::AfterVerify => "after_verify",
            Step::AfterSend => "after_send",
            Step::AfterMined => "after_mined",
            Step::BeforeRecord => "before_record",
            Step::BeforeResponse => "before_response",
        }
    }

    /// Parses a step name.
    ///
    /// ```
    /// assert_eq!(pay402_core::fault::Step::parse("nope"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == s)
    }
}

/// Kills the process with `SIGKILL` when built with `fault-injection` and
/// [`CRASH_AT_ENV`] names `step`; otherwise does nothing.
///
/// ```
/// pay402_core::fault::point(pay402_core::fault::Step::BeforeResponse);
/// ```
#[inline(always)]
pub fn point(step: Step) {
    #[cfg(feature = "fault-injection")]
    armed::hit(step);
    #[cfg(not(feature = "fault-injection"))]
    let _ = step;
}

#[cfg(feature = "fault-injection")]
mod armed {
    use super::{CRASH_AT_ENV, Step};

    pub(super) fn hit(step: Step) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static ARMED: std::sync::OnceLock<Option<(Step, u64)>> = std::sync::OnceLock::new();
        static HITS: AtomicU64 = AtomicU64::new(0);
        let armed = ARMED.get_or_init(|| {
            let value = std::env::var(CRASH_AT_ENV).ok()?;
            let (name, nth) = match value.trim().split_once(':') {
                Some((name, n)) => (name, n.parse().ok()?),
                None => (value.trim(), 1),
            };
            Some((Step::parse(name)?, nth))
        });
        let Some((at, nth)) = *armed else { return };
        if at == step && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            eprintln!("pay402 fault injection: SIGKILL at {}", step.as_str());
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL cannot be caught: this is not reached.
            std::process::abort();
        }
    }
}
