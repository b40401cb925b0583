//! A peer child process: output capture, protocol lines, and stop-by-PID.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of the peer's output is kept for error messages.
const TAIL_BYTES: usize = 32 * 1024;

/// How long a peer gets to exit after SIGTERM before it is SIGKILLed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The last [`TAIL_BYTES`] of a peer's stderr (and its non-protocol stdout).
#[derive(Clone, Default)]
pub(crate) struct OutputTail(Arc<Mutex<VecDeque<u8>>>);

impl OutputTail {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend(bytes);
        let excess = buf.len().saturating_sub(TAIL_BYTES);
        buf.drain(..excess);
    }

    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = buf.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        let text = String::from_utf8_lossy(&all).into_owned();
        if text.trim().is_empty() {
            "(empty)".to_owned()
        } else {
            text
        }
    }
}

/// What the stdout reader reports while the harness waits for readiness.
pub(crate) enum StdoutEvent {
    /// A line that starts with one of the protocol prefixes.
    Line(String),
    /// stdout closed (the process exited or closed it).
    Eof,
}

/// A running peer process, stopped by its own PID on drop.
pub(crate) struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    output: OutputTail,
}

impl PeerProcess {
    /// Spawns `command` with piped stdio. Lines on stdout starting with one of
    /// `prefixes` are sent to the returned receiver; everything else is kept in
    /// the output tail. stdin stays open until the process is stopped, so a
    /// launcher that exits on stdin EOF dies with the test process.
    pub(crate) fn spawn(
        peer: &'static str,
        mut command: Command,
        prefixes: &'static [&'static str],
    ) -> Result<(Self, Receiver<StdoutEvent>), std::io::Error> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let output = OutputTail::default();
        let (tx, rx) = mpsc::channel();

        if let Some(stdout) = stdout {
            let output = output.clone();
            std::thread::Builder::new()
                .name(format!("{peer}-stdout"))
                .spawn(move || read_stdout(stdout, prefixes, &tx, &output))?;
        }
        if let Some(mut stderr) = stderr {
            let output = output.clone();
            std::thread::Builder::new()
                .name(format!("{peer}-stderr"))
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        output.push(&buf[..n]);
                    }
                })?;
        }

        Ok((
            PeerProcess {
                child,
                stdin,
                output,
            },
            rx,
        ))
    }

    /// The peer's OS process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The captured output tail.
    pub(crate) fn output(&self) -> String {
        self.output.text()
    }

    /// The exit status, if the process has exited (reaps it).
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the next protocol line until `deadline`.
    ///
    /// Returns `Ok(None)` on timeout, `Err(reason)` when stdout closed.
    pub(crate) fn next_line(
        &mut self,
        rx: &Receiver<StdoutEvent>,
        deadline: Instant,
    ) -> Result<Option<String>, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(StdoutEvent::Line(line)) => Ok(Some(line)),
            Ok(StdoutEvent::Eof) | Err(RecvTimeoutError::Disconnected) => {
                // Give the process a moment to be reapable for a useful status.
                let until = Instant::now() + Duration::from_millis(500);
                let status = loop {
                    if let Some(status) = self.try_status() {
                        break Some(status);
                    }
                    if Instant::now() > until {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                Err(match status {
                    Some(status) => format!("the process exited with {status}"),
                    None => "the process closed its stdout".to_owned(),
                })
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
        }
    }

    /// Writes `line` and a newline to the process's stdin (for launchers
    /// that take commands there).
    pub(crate) fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin already closed"))?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()
    }

    /// Closes stdin and waits up to `grace` for the process to exit by
    /// itself (a launcher that stops its peer on stdin EOF); `true` once it
    /// has exited and been reaped.
    pub(crate) fn finish(&mut self, grace: Duration) -> bool {
        drop(self.stdin.take());
        let until = Instant::now() + grace;
        loop {
            if self.try_status().is_some() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the process: closes its stdin, sends SIGTERM to its PID, waits up
    /// to a short grace period, then SIGKILLs it; always reaps it.
    pub(crate) fn stop(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        drop(self.stdin.take());
        // The child is not reaped yet (try_wait said so), so its PID cannot
        // have been reused: signalling it is safe.
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + TERM_GRACE;
        while Instant::now() < until {
            if self.try_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_stdout(
    stdout: impl Read,
    prefixes: &[&str],
    tx: &Sender<StdoutEvent>,
    output: &OutputTail,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let trimmed = text.trim_end();
                if prefixes.iter().any(|p| trimmed.starts_with(p)) {
                    // The receiver is gone once the peer is ready: ignore.
                    let _ = tx.send(StdoutEvent::Line(trimmed.to_owned()));
                }
                output.push(&line);
            }
        }
    }
    let _ = tx.send(StdoutEvent::Eof);
}
