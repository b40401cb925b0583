//! The log writer of the long-running commands: log lines are appended to
//! a shared buffer and written to stderr by one background thread, so a
//! request's task never blocks in a `write` system call, and lines logged
//! while the thread writes go out together in one call.
//!
//! Nothing is dropped: when the buffer holds [`LIMIT`] bytes the logging
//! thread waits for the writer. [`Flush`], held by `main`, writes what is
//! left when the process ends normally.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Bytes the buffer holds before a logging thread waits for the writer.
pub const LIMIT: usize = 1 << 20;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer thread waits for lines.
    parked: bool,
    /// [`Flush`] was dropped: write what is left and end.
    closing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Lines arrived (the writer waits on it).
    lines: Condvar,
    /// The buffer was taken (full loggers wait on it).
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`tracing_subscriber::fmt::MakeWriter`] that appends to the shared
/// buffer.
///
/// ```
/// let (writer, flush) = pay402_cli::logwriter::stderr();
/// let subscriber = tracing_subscriber::fmt().with_writer(writer).finish();
/// tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
/// drop(flush); // the line is on stderr
/// ```
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Writes what is buffered and stops the writer thread when dropped.
///
/// See [`LogWriter`].
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer to stderr through a background thread, and the guard that
/// flushes it.
///
/// See [`LogWriter`].
pub fn stderr() -> (LogWriter, Flush) {
    let shared = Arc::new(Shared::default());
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("pay402-log".into())
        .spawn(move || write_loop(&theirs))
        .ok();
    if thread.is_none() {
        // No thread: lines go out from the logging thread itself.
        shared.lock().closing = true;
    }
    (
        LogWriter {
            shared: shared.clone(),
        },
        Flush { shared, thread },
    )
}

fn write_loop(shared: &Shared) {
    let mut out = Vec::new();
    let stderr = std::io::stderr();
    loop {
        {
            let mut state = shared.lock();
            while state.buf.is_empty() && !state.closing {
                state.parked = true;
                state = shared
                    .lines
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.parked = false;
            if state.buf.is_empty() {
                return;
            }
            std::mem::swap(&mut out, &mut state.buf);
        }
        shared.room.notify_all();
        let _ = stderr.lock().write_all(&out);
        out.clear();
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_all(line)?;
        Ok(line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        let mut state = self.shared.lock();
        if state.closing {
            // The writer is gone (or never started): write directly.
            drop(state);
            return std::io::stderr().write_all(line);
        }
        while state.buf.len() >= LIMIT && !state.closing {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.buf.extend_from_slice(line);
        let wake = state.parked;
        drop(state);
        if wake {
            self.shared.lines.notify_one();
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> &'a LogWriter {
        self
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.lines.notify_one();
        self.shared.room.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
