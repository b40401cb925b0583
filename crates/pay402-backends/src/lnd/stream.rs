//! Parsing of LND's `routerrpc` payment streams (`/v2/router/send`,
//! `/v2/router/track/...`): newline-delimited JSON objects
//! `{"result": Payment}` or `{"error": Status}`.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use pay402_core::lightning::{Payment, PaymentHash, Preimage};
use pay402_core::money::Msat;
use serde::Deserialize;

use crate::wire::{EnumField, GrpcStatus, de_u64};

/// The longest line accepted (LND payment objects with HTLC routes are a few KiB).
const MAX_LINE_BYTES: usize = 1024 * 1024;

const PAYMENT_STATUS: [&str; 5] = ["UNKNOWN", "IN_FLIGHT", "SUCCEEDED", "FAILED", "INITIATED"];
const FAILURE_REASON: [&str; 7] = [
    "FAILURE_REASON_NONE",
    "FAILURE_REASON_TIMEOUT",
    "FAILURE_REASON_NO_ROUTE",
    "FAILURE_REASON_ERROR",
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
    "FAILURE_REASON_INSUFFICIENT_BALANCE",
    "FAILURE_REASON_CANCELED",
];

/// What a payment stream said in the end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `SUCCEEDED`, with a preimage that hashes to the payment hash.
    Succeeded(Payment),
    /// `FAILED`, with a human reason derived from `failure_reason`.
    Failed(String),
    /// An error object before any payment update: LND refused the call.
    Refused(GrpcStatus),
    /// The stream ended (or errored) without a final status.
    Unknown(String),
    /// The stream said something malformed or inconsistent.
    Invalid(String),
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    result: Option<PaymentUpdate>,
    #[serde(default)]
    error: Option<GrpcStatus>,
}

#[derive(Deserialize)]
struct PaymentUpdate {
    #[serde(default)]
    payment_hash: String,
    #[serde(default)]
    payment_preimage: String,
    #[serde(default, deserialize_with = "de_u64")]
    value_msat: u64,
    #[serde(default, deserialize_with = "de_u64")]
    fee_msat: u64,
    #[serde(default)]
    status: Option<EnumField>,
    #[serde(default)]
    failure_reason: Option<EnumField>,
}

/// Incremental NDJSON parser for one payment stream.
pub(crate) struct PayStream {
    expected: PaymentHash,
    buf: Vec<u8>,
    saw_update: bool,
}

/// A human reason for LND's `FailureReason`.
pub(crate) fn failure_text(reason: &str) -> String {
    match reason {
        "FAILURE_REASON_TIMEOUT" => "timeout".into(),
        "FAILURE_REASON_NO_ROUTE" => "no route".into(),
        "FAILURE_REASON_ERROR" => "error".into(),
        "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS" => "incorrect payment details".into(),
        "FAILURE_REASON_INSUFFICIENT_BALANCE" => "insufficient balance".into(),
        "FAILURE_REASON_CANCELED" => "canceled".into(),
        "" | "FAILURE_REASON_NONE" => "failed without a reason".into(),
        other => other
            .strip_prefix("FAILURE_REASON_")
            .unwrap_or(other)
            .to_ascii_lowercase()
            .replace('_', " "),
    }
}

impl PayStream {
    pub(crate) fn new(expected: PaymentHash) -> PayStream {
        PayStream {
            expected,
            buf: Vec::new(),
            saw_update: false,
        }
    }

    /// Feeds a chunk; returns the outcome once a final line has been seen.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Option<Outcome> {
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            if let Some(outcome) = self.line(&line) {
                return Some(outcome);
            }
        }
        if self.buf.len() > MAX_LINE_BYTES {
            return Some(Outcome::Invalid(format!(
                "stream line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        None
    }

    /// The stream ended: parses a last unterminated line, else the outcome is unknown.
    pub(crate) fn finish(mut self) -> Outcome {
        let rest = std::mem::take(&mut self.buf);
        if let Some(outcome) = self.line(&rest) {
            return outcome;
        }
        if self.saw_update {
            Outcome::Unknown("stream ended while the payment was in flight".into())
        } else {
            Outcome::Unknown("stream ended without a payment status".into())
        }
    }

    fn line(&mut self, raw: &[u8]) -> Option<Outcome> {
        let text = raw.trim_ascii();
        if text.is_empty() {
            return None;
        }
        let line: Line = match serde_json::from_slice(text) {
            Ok(l) => l,
            Err(e) => return Some(Outcome::Invalid(format!("malformed stream line: {e}"))),
        };
        if let Some(err) = line.error {
            if self.saw_update {
                // LND started the payment and then the stream broke: we cannot
                // know whether it completed.
                return Some(Outcome::Unknown(format!(
                    "stream error after the payment started: {} (code {})",
                    err.message, err.code
                )));
            }
            return Some(Outcome::Refused(err));
        }
        let Some(update) = line.result else {
            return Some(Outcome::Invalid(
                "stream line has neither result nor error".into(),
            ));
        };
        if !update.payment_hash.is_empty() && update.payment_hash != self.expected.to_hex() {
            match update.payment_hash.parse::<PaymentHash>() {
                Ok(h) if h == self.expected => {}
                _ => {
                    return Some(Outcome::Invalid(format!(
                        "payment hash {} does not match the invoice's {}",
                        update.payment_hash, self.expected
                    )));
                }
            }
        }
        self.saw_update = true;
        let status = update
            .status
            .as_ref()
            .map_or("", |s| s.name(&PAYMENT_STATUS));
        match status {
            "SUCCEEDED" => Some(self.succeeded(&update)),
            "FAILED" => {
                let reason = update
                    .failure_reason
                    .as_ref()
                    .map_or("", |r| r.name(&FAILURE_REASON));
                Some(Outcome::Failed(failure_text(reason)))
            }
            // IN_FLIGHT, INITIATED, UNKNOWN: keep reading.
            _ => None,
        }
    }

    fn succeeded(&self, update: &PaymentUpdate) -> Outcome {
        let preimage = match Preimage::from_hex(&update.payment_preimage) {
            Ok(p) => p,
            Err(_) => {
                return Outcome::Invalid("SUCCEEDED without a valid 32-byte hex preimage".into());
            }
        };
        if preimage.is_all_zero() {
            return Outcome::Invalid("SUCCEEDED with an all-zero preimage".into());
        }
        if !preimage.matches(&self.expected) {
            return Outcome::Invalid("preimage does not hash to the payment hash".into());
        }
        Outcome::Succeeded(Payment {
            payment_hash: self.expected,
            preimage,
            amount: Msat(update.value_msat),
            fee: Msat(update.fee_msat),
        })
    }
}

/// Reads a payment stream to its outcome. Transport errors mid-stream
/// (including timeouts) make the outcome unknown.
pub(crate) async fn read_pay_stream<S, E>(mut stream: S, expected: PaymentHash) -> Outcome
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut parser = PayStream::new(expected);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if let Some(outcome) = parser.feed(&bytes) {
                    return outcome;
                }
            }
            Err(e) => return Outcome::Unknown(format!("stream broke: {e}")),
        }
    }
    parser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_and_preimage() -> (PaymentHash, Preimage) {
        let pre = Preimage::from_bytes([0x42; 32]);
        (pre.payment_hash(), pre)
    }

    fn chunks(parts: &[&str]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        let v: Vec<Result<Bytes, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::from(p.to_string())))
            .collect();
        futures_util::stream::iter(v)
    }

    fn succeeded_line(hash: &PaymentHash, pre_hex: &str, value: &str, fee: &str) -> String {
        format!(
            r#"{{"result":{{"payment_hash":"{hash}","value_msat":{value},"fee_msat":{fee},"payment_preimage":"{pre_hex}","status":"SUCCEEDED","failure_reason":"FAILURE_REASON_NONE"}}}}"#
        )
    }

    #[tokio::test]
    async fn in_flight_then_succeeded_split_across_chunks() {
        let (hash, pre) = hash_and_preimage();
        let in_flight = format!(
            r#"{{"result":{{"payment_hash":"{hash}","value_msat":"1000","payment_preimage":"{}","status":"IN_FLIGHT"}}}}"#,
            "0".repeat(64)
        );
        let done = succeeded_line(&hash, &pre.to_hex(), r#""100000""#, r#""15""#);
        let all = format!("{in_flight}\n{done}\n");
        let (a, b) = all.split_at(37);
        let (b, c) = b.split_at(b.len() - 20);
        let outcome = read_pay_stream(chunks(&[a, b, c]), hash).await;
        let Outcome::Succeeded(p) = outcome else {
            panic!("expected success, got {outcome:?}");
        };
        assert_eq!(p.amount, Msat(100_000));
        assert_eq!(p.fee, Msat(15));
        assert!(p.preimage.matches(&hash));
    }

    #[tokio::test]
    async fn int64_as_number_and_status_as_number() {
        let (hash, pre) = hash_and_preimage();
        let line = format!(
            r#"{{"result":{{"payment_hash":"{hash}","value_msat":2500,"fee_msat":0,"payment_preimage":"{}","status":2}}}}"#,
            pre.to_hex()
        );
        let outcome = read_pay_stream(chunks(&[&line]), hash).await;
        assert!(
            matches!(&outcome, Outcome::Succeeded(p) if p.amount == Msat(2_500) && p.fee == Msat(0)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn stream_ending_in_flight_is_unknown() {
        let (hash, _) = hash_and_preimage();
        let line = format!(r#"{{"result":{{"payment_hash":"{hash}","status":"IN_FLIGHT"}}}}"#);
        let outcome = read_pay_stream(chunks(&[&line, "\n"]), hash).await;
        assert!(
            matches!(outcome, Outcome::Unknown(ref m) if m.contains("in flight")),
            "{outcome:?}"
        );
        let empty = read_pay_stream(chunks(&[]), hash).await;
        assert!(matches!(empty, Outcome::Unknown(_)));
    }

    #[tokio::test]
    async fn transport_error_mid_stream_is_unknown() {
        let (hash, _) = hash_and_preimage();
        let line =
            format!("{{\"result\":{{\"payment_hash\":\"{hash}\",\"status\":\"IN_FLIGHT\"}}}}\n");
        let items: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(line)),
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            )),
        ];
        let outcome = read_pay_stream(futures_util::stream::iter(items), hash).await;
        assert!(matches!(outcome, Outcome::Unknown(ref m) if m.contains("timed out")));
    }

    #[tokio::test]
    async fn failed_maps_reason() {
        let (hash, _) = hash_and_preimage();
        let line = format!(
            r#"{{"result":{{"payment_hash":"{hash}","status":"FAILED","failure_reason":"FAILURE_REASON_NO_ROUTE"}}}}"#
        );
        assert_eq!(
            read_pay_stream(chunks(&[&line]), hash).await,
            Outcome::Failed("no route".into())
        );
        let line = format!(
            r#"{{"result":{{"payment_hash":"{hash}","status":"FAILED","failure_reason":5}}}}"#
        );
        assert_eq!(
            read_pay_stream(chunks(&[&line]), hash).await,
            Outcome::Failed("insufficient balance".into())
        );
    }

    #[tokio::test]
    async fn bad_preimages_are_invalid() {
        let (hash, _) = hash_and_preimage();
        let zero = succeeded_line(&hash, &"0".repeat(64), "1", "0");
        assert!(matches!(
            read_pay_stream(chunks(&[&zero]), hash).await,
            Outcome::Invalid(ref m) if m.contains("all-zero")
        ));
        let wrong = succeeded_line(&hash, &"11".repeat(32), "1", "0");
        assert!(matches!(
            read_pay_stream(chunks(&[&wrong]), hash).await,
            Outcome::Invalid(ref m) if m.contains("does not hash")
        ));
        let short = succeeded_line(&hash, "abcd", "1", "0");
        assert!(matches!(
            read_pay_stream(chunks(&[&short]), hash).await,
            Outcome::Invalid(_)
        ));
    }

    #[tokio::test]
    async fn errors_before_and_after_start() {
        let (hash, _) = hash_and_preimage();
        let err = r#"{"error":{"code":6,"message":"invoice is already paid","details":[]}}"#;
        assert!(matches!(
            read_pay_stream(chunks(&[err]), hash).await,
            Outcome::Refused(ref s) if s.code == 6
        ));
        let started =
            format!("{{\"result\":{{\"payment_hash\":\"{hash}\",\"status\":\"IN_FLIGHT\"}}}}\n");
        assert!(matches!(
            read_pay_stream(chunks(&[&started, err]), hash).await,
            Outcome::Unknown(_)
        ));
    }

    #[tokio::test]
    async fn malformed_and_mismatched_lines_are_invalid() {
        let (hash, pre) = hash_and_preimage();
        assert!(matches!(
            read_pay_stream(chunks(&["not json\n"]), hash).await,
            Outcome::Invalid(_)
        ));
        assert!(matches!(
            read_pay_stream(chunks(&["{}\n"]), hash).await,
            Outcome::Invalid(_)
        ));
        let other = PaymentHash([9; 32]);
        let line = succeeded_line(&other, &pre.to_hex(), "1", "0");
        assert!(matches!(
            read_pay_stream(chunks(&[&line]), hash).await,
            Outcome::Invalid(ref m) if m.contains("does not match")
        ));
        // A string int64 that is not a number is malformed.
        let bad = succeeded_line(&hash, &pre.to_hex(), r#""12a""#, "0");
        assert!(matches!(
            read_pay_stream(chunks(&[&bad]), hash).await,
            Outcome::Invalid(_)
        ));
    }

    #[test]
    fn overlong_line_is_invalid() {
        let (hash, _) = hash_and_preimage();
        let mut p = PayStream::new(hash);
        assert!(p.feed(&vec![b' '; MAX_LINE_BYTES]).is_none());
        assert!(matches!(p.feed(b"  "), Some(Outcome::Invalid(_))));
    }

    #[test]
    fn failure_texts() {
        assert_eq!(failure_text("FAILURE_REASON_TIMEOUT"), "timeout");
        assert_eq!(
            failure_text("FAILURE_REASON_SOMETHING_NEW"),
            "something new"
        );
        assert_eq!(failure_text(""), "failed without a reason");
    }
}
