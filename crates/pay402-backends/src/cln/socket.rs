//! JSON-RPC 2.0 over CLN's `lightning-rpc` unix socket.
//!
//! The protocol has no length prefix or line framing: the client writes a
//! JSON object, and `lightningd` answers with JSON objects (followed by
//! `"\n\n"`, which is not relied upon). Responses are cut out of the byte
//! stream by [`Framer`], an incremental scanner that tracks string and
//! nesting state, so each byte is scanned once, objects may arrive split
//! across reads or back to back, and the size of one object is bounded. Each
//! framed object is then parsed with `serde_json`.
//!
//! One connection per call (what `lightning-cli` and pyln-client do), so a
//! late answer to an abandoned call can never be mistaken for another call's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{Instant, timeout_at};

use super::CallError;
use super::model::RpcError;

/// The largest single response accepted (8 MiB).
pub(crate) const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Cuts complete top-level JSON objects out of a byte stream.
#[derive(Debug)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    pos: usize,
    /// Nesting depth inside the current object (0: between objects).
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Where the current object starts in `buf`.
    start: usize,
    limit: usize,
}

impl Framer {
    pub(crate) fn new(limit: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            start: 0,
            limit,
        }
    }

    /// Appends received bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.buf.len().saturating_add(bytes.len()) > self.limit {
            return Err(format!("response larger than {} bytes", self.limit));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete object, `Ok(None)` if more bytes are needed, or an
    /// error if the stream is not a sequence of JSON objects.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        while self.pos < self.buf.len() {
            let i = self.pos;
            let b = self.buf[i];
            self.pos += 1;
            if self.depth == 0 {
                match b {
                    b' ' | b'\n' | b'\r' | b'\t' => continue,
                    b'{' => {
                        self.depth = 1;
                        self.start = i;
                    }
                    other => {
                        return Err(format!(
                            "expected a JSON object, found {:?}",
                            char::from(other)
                        ));
                    }
                }
            } else if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let frame = self.buf[self.start..=i].to_vec();
                            self.buf.drain(..=i);
                            self.pos = 0;
                            self.start = 0;
                            return Ok(Some(frame));
                        }
                    }
                    _ => {}
                }
            }
        }
        if self.depth == 0 {
            // Only whitespace is pending.
            self.buf.clear();
            self.pos = 0;
        }
        Ok(None)
    }
}

/// Matches one received object against the request id: `Ok(Some(result))`,
/// `Err(Rpc)` for an error answer, `Ok(None)` for a notification to skip.
fn match_response(v: Value, id: &str) -> Result<Option<Value>, CallError> {
    let Value::Object(mut obj) = v else {
        return Err(CallError::Invalid("response is not a JSON object".into()));
    };
    match obj.get("id") {
        None | Some(Value::Null) if obj.contains_key("method") => return Ok(None),
        Some(Value::String(s)) if s == id => {}
        other => {
            return Err(CallError::Invalid(format!(
                "response id {} does not match the request id {id:?}",
                other.map_or_else(|| "(none)".to_owned(), Value::to_string)
            )));
        }
    }
    if let Some(err) = obj.remove("error").filter(|e| !e.is_null()) {
        let err: RpcError = serde_json::from_value(err)
            .map_err(|e| CallError::Invalid(format!("malformed error object: {e}")))?;
        return Err(CallError::Rpc(err));
    }
    match obj.remove("result") {
        Some(result) => Ok(Some(result)),
        None => Err(CallError::Invalid(
            "response has neither result nor error".into(),
        )),
    }
}

/// A connection factory for one `lightning-rpc` socket.
#[derive(Debug)]
pub(crate) struct SocketTransport {
    path: PathBuf,
    next_id: AtomicU64,
}

impl SocketTransport {
    pub(crate) fn new(path: PathBuf) -> SocketTransport {
        SocketTransport {
            path,
            next_id: AtomicU64::new(1),
        }
    }

    /// Calls `method` with `params`; the whole call (connect, write, read)
    /// is bounded by `timeout`.
    pub(crate) async fn call(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let id = format!(
            "pay402:{method}#{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let request = serde_json::to_vec(&json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": method,
            "params": params,
        }))
        .map_err(|e| CallError::NotSent(format!("cannot encode the request: {e}")))?;
        let deadline = Instant::now() + timeout;
        let path = self.path.display();

        let mut stream = match timeout_at(deadline, UnixStream::connect(&self.path)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(CallError::NotSent(format!("cannot connect to {path}: {e}")));
            }
            Err(_) => {
                return Err(CallError::NotSent(format!(
                    "connecting to {path} timed out"
                )));
            }
        };
        match timeout_at(deadline, stream.write_all(&request)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CallError::NoAnswer(format!("sending the request: {e}"))),
            Err(_) => return Err(CallError::NoAnswer("timed out sending the request".into())),
        }

        let mut framer = Framer::new(MAX_RESPONSE_BYTES);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some(frame) = framer.next_frame().map_err(CallError::Invalid)? {
                let value: Value = serde_json::from_slice(&frame)
                    .map_err(|e| CallError::Invalid(format!("malformed JSON: {e}")))?;
                if let Some(result) = match_response(value, &id)? {
                    return Ok(result);
                }
            }
            let n = match timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    return Err(CallError::NoAnswer(
                        "connection closed before a complete response".into(),
                    ));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(CallError::NoAnswer(format!("reading the response: {e}")));
                }
                Err(_) => {
                    return Err(CallError::NoAnswer(format!(
                        "timed out after {timeout:?} waiting for the response"
                    )));
                }
            };
            framer.push(&chunk[..n]).map_err(CallError::Invalid)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Result<Vec<String>, String> {
        let mut f = Framer::new(1024);
        let mut out = Vec::new();
        for part in input {
            f.push(part)?;
            while let Some(frame) = f.next_frame()? {
                out.push(String::from_utf8(frame).unwrap());
            }
        }
        Ok(out)
    }

    #[test]
    fn objects_split_at_every_byte() {
        let text = br#"{"jsonrpc":"2.0","id":"a","result":{"s":"} { \" \\","n":[1,{"x":[]}]}}"#;
        let mut whole = text.to_vec();
        whole.extend_from_slice(b"\n\n");
        let parts: Vec<&[u8]> = whole.chunks(1).collect();
        let got = frames(&parts).unwrap();
        assert_eq!(got, vec![String::from_utf8(text.to_vec()).unwrap()]);
        let v: Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(v["result"]["s"], "} { \" \\");
    }

    #[test]
    fn back_to_back_and_separated_objects() {
        let got = frames(&[b"  {\"a\":1}{\"b\":2}\n\n{\"c\"", b":3}\n\n"]).unwrap();
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        assert!(frames(&[b"not json"]).is_err());
        assert!(frames(&[b"[1,2]"]).is_err());
        assert!(frames(&[b"{}", b"\n\n42"]).is_err());
        let big = vec![b' '; 1025];
        assert!(frames(&[&big]).is_err());
        // The limit is per pending object: consumed objects free space.
        let mut f = Framer::new(16);
        for _ in 0..10 {
            f.push(br#"{"k":"0123456"}"#).unwrap();
            assert!(f.next_frame().unwrap().is_some());
        }
    }

    #[test]
    fn responses_are_matched_by_id() {
        let ok = json!({"jsonrpc":"2.0","id":"x","result":{"k":1}});
        assert_eq!(match_response(ok, "x").unwrap(), Some(json!({"k":1})));
        let err = json!({"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"bad"}});
        assert!(matches!(match_response(err, "x"), Err(CallError::Rpc(ref e)) if e.code == -32602));
        let note = json!({"jsonrpc":"2.0","method":"log","params":{}});
        assert_eq!(match_response(note, "x").unwrap(), None);
        let other = json!({"jsonrpc":"2.0","id":"y","result":{}});
        assert!(matches!(
            match_response(other, "x"),
            Err(CallError::Invalid(_))
        ));
        let neither = json!({"jsonrpc":"2.0","id":"x"});
        assert!(matches!(
            match_response(neither, "x"),
            Err(CallError::Invalid(_))
        ));
        let bad_err = json!({"jsonrpc":"2.0","id":"x","error":"oops"});
        assert!(matches!(
            match_response(bad_err, "x"),
            Err(CallError::Invalid(_))
        ));
    }
}
