//! A hand-written, bounded scanner for the one JSON document on the hot path:
//! the decoded `PAYMENT-SIGNATURE` of a v2 `exact` EVM payment.
//!
//! It is the fast path of [`PaymentPayloadV2Ref::decode_header`]; the serde
//! deserializer in the parent module stays the reference. The scanner is
//! never more lenient than that deserializer: whenever it meets something
//! it does not accept (any JSON error, any field error, the array form of an
//! object, a lone surrogate, nesting deeper than [`MAX_DEPTH`]) it gives up
//! with [`Reject`], and the caller runs the serde path on the same input,
//! which then decides (and words the error). So both paths accept exactly
//! the same documents and produce equal values; the scanner only decides
//! faster on the documents honest clients send.
//!
//! Rules kept from the reference deserializer: required fields, duplicate
//! fields rejected, unknown fields skipped (and still validated as JSON),
//! `null` for the optional fields, escapes decoded (strings stay borrowed
//! when they have none), integers without sign, fraction or exponent.
//!
//! [`PaymentPayloadV2Ref::decode_header`]: super::PaymentPayloadV2Ref::decode_header

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    ExactEvmPayloadRef, ExtraRef, InlineSignature, PaymentPayloadV2Ref, PaymentRequirementsRef,
    ResourceInfoRef,
};
use crate::x402::amount::{EvmTimestamp, TokenAmount};
use crate::x402::evm::{Bytes32, EvmAddress, TransferAuthorization};

/// The scanner gives up; the serde path decides.
#[derive(Debug)]
pub(super) struct Reject;

type Scan<T> = Result<T, Reject>;

/// Deeper nesting (only possible inside unknown or `extensions` values) is
/// left to the serde path.
const MAX_DEPTH: u32 = 64;

/// Bytes that end the plain run of a JSON string: `"`, `\` and the control
/// characters, which JSON forbids unescaped.
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Scans `json` (already checked to be UTF-8) into `out`, which must be
/// [`PaymentPayloadV2Ref::empty`] (filled in place: the value is large, and
/// moving it costs as much as scanning a field).
pub(super) fn payment_payload<'a>(json: &'a str, out: &mut PaymentPayloadV2Ref<'a>) -> Scan<()> {
    let mut s = Scanner {
        src: json,
        b: json.as_bytes(),
        i: 0,
    };
    let mut seen = Seen(0);
    s.object(|s, key| match key.as_ref() {
        "x402Version" => {
            seen.once(1)?;
            out.x402_version = u32::try_from(s.unsigned()?).map_err(|_| Reject)?;
            Ok(())
        }
        "resource" => {
            seen.once(2)?;
            out.resource = if s.null()? { None } else { Some(s.resource()?) };
            Ok(())
        }
        "accepted" => {
            seen.once(4)?;
            s.requirements(&mut out.accepted)
        }
        "payload" => {
            seen.once(8)?;
            s.exact(&mut out.payload)
        }
        "extensions" => {
            seen.once(16)?;
            out.extensions = if s.null()? {
                None
            } else {
                Some(s.parsed::<Map<String, Value>>()?)
            };
            Ok(())
        }
        _ => s.skip(0),
    })?;
    seen.all(1 | 4 | 8)?;
    s.ws();
    if s.i == s.b.len() {
        Ok(())
    } else {
        Err(Reject)
    }
}

/// Which fields of one object were seen, one bit each.
struct Seen(u8);

impl Seen {
    fn once(&mut self, bit: u8) -> Scan<()> {
        if self.0 & bit != 0 {
            return Err(Reject);
        }
        self.0 |= bit;
        Ok(())
    }

    fn all(&self, required: u8) -> Scan<()> {
        if self.0 & required == required {
            Ok(())
        } else {
            Err(Reject)
        }
    }
}

struct Scanner<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    fn peek(&mut self) -> Scan<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Reject)
    }

    fn eat(&mut self, c: u8) -> Scan<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Reject)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Reject)
        }
    }

    /// Consumes `null` and answers true, or answers false at anything else.
    fn null(&mut self) -> Scan<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `{ "key": value, ... }`, calling `field` with the scanner positioned
    /// at each value (which `field` must consume).
    fn object(&mut self, mut field: impl FnMut(&mut Self, Cow<'a, str>) -> Scan<()>) -> Scan<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Reject),
            }
        }
    }

    /// A string, borrowed from the input unless it has escapes.
    fn string(&mut self) -> Scan<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        self.run();
        match self.b.get(self.i) {
            Some(b'"') => {
                self.i += 1;
                // `"` is ASCII, so both ends are on char boundaries.
                Ok(Cow::Borrowed(&self.src[start..self.i - 1]))
            }
            Some(b'\\') => {
                let mut owned = String::with_capacity(self.i - start + 8);
                owned.push_str(&self.src[start..self.i]);
                self.escaped_rest(&mut owned)?;
                Ok(Cow::Owned(owned))
            }
            _ => Err(Reject),
        }
    }

    /// Advances over bytes that need no attention inside a string: eight at
    /// a time (a bit trick finds the first `"`, `\` or control byte in a
    /// word), then one at a time.
    fn run(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        while let Some(word) = self.b.get(self.i..self.i + 8) {
            let Ok(word) = <[u8; 8]>::try_from(word) else {
                break;
            };
            let w = u64::from_le_bytes(word);
            let quote = w ^ (ONES * u64::from(b'"'));
            let backslash = w ^ (ONES * u64::from(b'\\'));
            // A byte's high bit is set where it is zero (or below 0x20 for
            // the last term); only the lowest flagged byte is exact, which
            // is the one wanted.
            let stops = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (w.wrapping_sub(ONES * 0x20) & !w);
            let stops = stops & HIGHS;
            if stops != 0 {
                self.i += (stops.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if STOPS[usize::from(c)] {
                return;
            }
            self.i += 1;
        }
    }

    /// The rest of a string from a `\`, decoded into `out`, through the
    /// closing quote.
    fn escaped_rest(&mut self, out: &mut String) -> Scan<()> {
        loop {
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let letter = *self.b.get(self.i + 1).ok_or(Reject)?;
                    self.i += 2;
                    out.push(match letter {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(Reject),
                    });
                }
                Some(_) => {
                    let start = self.i;
                    self.run();
                    if self.i == start {
                        return Err(Reject); // a control character
                    }
                    out.push_str(&self.src[start..self.i]);
                }
                None => return Err(Reject),
            }
        }
    }

    /// Four hex digits after `\u` (and a low surrogate escape after a high
    /// one); leaves `i` after the last digit.
    fn unicode_escape(&mut self) -> Scan<char> {
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return Err(Reject);
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(Reject);
                }
                0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Reject),
            c => u32::from(c),
        };
        char::from_u32(code).ok_or(Reject)
    }

    fn hex4(&mut self) -> Scan<u16> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Reject)?;
        let mut v = 0u16;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(Reject),
            };
            v = v << 4 | u16::from(n);
        }
        self.i += 4;
        Ok(v)
    }

    /// A non-negative JSON integer that fits a `u64`, with no fraction or
    /// exponent (what serde_json hands an unsigned field without a float).
    fn unsigned(&mut self) -> Scan<u64> {
        self.ws();
        let start = self.i;
        let mut v = 0u64;
        while let Some(&d @ b'0'..=b'9') = self.b.get(self.i) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(Reject)?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return Err(Reject);
        }
        Ok(v)
    }

    /// Skips any JSON value, validating it.
    fn skip(&mut self, depth: u32) -> Scan<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' if depth < MAX_DEPTH => self.object(|s, _| s.skip(depth + 1)),
            b'[' if depth < MAX_DEPTH => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Reject),
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => Err(Reject),
        }
    }

    /// A string whose value is not needed (escapes checked, not decoded).
    fn skip_string(&mut self) -> Scan<()> {
        self.eat(b'"')?;
        loop {
            self.run();
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.b.get(self.i).ok_or(Reject)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            self.i += 1;
                            self.hex4()?;
                        }
                        _ => return Err(Reject),
                    }
                }
                _ => return Err(Reject),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> Scan<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Reject),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Scan<()> {
        let start = self.i;
        self.digits();
        if self.i > start { Ok(()) } else { Err(Reject) }
    }

    /// Skips a value and parses its text with serde_json (for the rare,
    /// free-form parts: `extensions`, non-string `extra` members).
    fn parsed<T: serde::de::DeserializeOwned>(&mut self) -> Scan<T> {
        self.ws();
        let start = self.i;
        self.skip(0)?;
        serde_json::from_str(&self.src[start..self.i]).map_err(|_| Reject)
    }

    /// A string field parsed by `parse`, which accepts only hex or decimal
    /// digits (and `0x`): a raw slice to the next `"` that parses is exactly
    /// the string's value, as it can hold no escape or control byte. Any
    /// other content (an escaped digit included) is left to the reference.
    fn typed<T, E>(&mut self, parse: impl FnOnce(&str) -> Result<T, E>) -> Scan<T> {
        self.eat(b'"')?;
        let start = self.i;
        let len = memchr::memchr(b'"', &self.b[start..]).ok_or(Reject)?;
        self.i = start + len + 1;
        parse(&self.src[start..start + len]).map_err(|_| Reject)
    }

    /// `null` or a string.
    fn opt_string(&mut self) -> Scan<Option<Cow<'a, str>>> {
        if self.null()? {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn resource(&mut self) -> Scan<ResourceInfoRef<'a>> {
        let mut r = ResourceInfoRef::default();
        let mut seen = Seen(0);
        self.object(|s, key| {
            match key.as_ref() {
                "url" => {
                    seen.once(1)?;
                    r.url = s.string()?;
                }
                "description" => {
                    seen.once(2)?;
                    r.description = s.opt_string()?;
                }
                "mimeType" => {
                    seen.once(4)?;
                    r.mime_type = s.opt_string()?;
                }
                "serviceName" => {
                    seen.once(8)?;
                    r.service_name = s.opt_string()?;
                }
                "tags" => {
                    seen.once(16)?;
                    r.tags = if s.null()? { None } else { Some(s.strings()?) };
                }
                "iconUrl" => {
                    seen.once(32)?;
                    r.icon_url = s.opt_string()?;
                }
                _ => s.skip(0)?,
            }
            Ok(())
        })?;
        seen.all(1)?;
        Ok(r)
    }

    /// `[ "a", "b", ... ]`
    fn strings(&mut self) -> Scan<Vec<Cow<'a, str>>> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(Reject),
            }
        }
    }

    fn requirements(&mut self, out: &mut PaymentRequirementsRef<'a>) -> Scan<()> {
        let mut seen = Seen(0);
        self.object(|s, key| {
            match key.as_ref() {
                "scheme" => {
                    seen.once(1)?;
                    out.scheme = s.string()?;
                }
                "network" => {
                    seen.once(2)?;
                    out.network = s.string()?;
                }
                "amount" => {
                    seen.once(4)?;
                    out.amount = s.typed(TokenAmount::parse)?;
                }
                "asset" => {
                    seen.once(8)?;
                    out.asset = s.string()?;
                }
                "payTo" => {
                    seen.once(16)?;
                    out.pay_to = s.string()?;
                }
                "maxTimeoutSeconds" => {
                    seen.once(32)?;
                    out.max_timeout_seconds = s.unsigned()?;
                }
                "extra" => {
                    seen.once(64)?;
                    out.extra = if s.null()? { None } else { Some(s.extra()?) };
                }
                _ => s.skip(0)?,
            }
            Ok(())
        })?;
        seen.all(63)
    }

    fn extra(&mut self) -> Scan<ExtraRef<'a>> {
        let mut e = ExtraRef::default();
        let mut seen = Seen(0);
        self.object(|s, key| {
            match key.as_ref() {
                "name" => seen.once(1)?,
                "version" => seen.once(2)?,
                _ => {}
            }
            let value = if s.peek()? == b'"' {
                Ok(s.string()?)
            } else {
                Err(s.parsed::<Value>()?)
            };
            match (key.as_ref(), value) {
                ("name", Ok(v)) => e.name = Some(v),
                ("version", Ok(v)) => e.version = Some(v),
                (_, value) => {
                    let value = value.map_or_else(|v| v, |s| Value::String(s.into_owned()));
                    e.other.insert(key.into_owned(), value);
                }
            }
            Ok(())
        })?;
        Ok(e)
    }

    fn exact(&mut self, out: &mut ExactEvmPayloadRef) -> Scan<()> {
        let mut seen = Seen(0);
        self.object(|s, key| {
            match key.as_ref() {
                "signature" => {
                    seen.once(1)?;
                    out.signature = s.typed(InlineSignature::parse)?;
                }
                "authorization" => {
                    seen.once(2)?;
                    s.authorization(&mut out.authorization)?;
                }
                _ => s.skip(0)?,
            }
            Ok(())
        })?;
        seen.all(3)
    }

    fn authorization(&mut self, out: &mut TransferAuthorization) -> Scan<()> {
        let mut seen = Seen(0);
        self.object(|s, key| {
            match key.as_ref() {
                "from" => {
                    seen.once(1)?;
                    out.from = s.typed(str::parse::<EvmAddress>)?;
                }
                "to" => {
                    seen.once(2)?;
                    out.to = s.typed(str::parse::<EvmAddress>)?;
                }
                "value" => {
                    seen.once(4)?;
                    out.value = s.typed(TokenAmount::parse)?;
                }
                "validAfter" => {
                    seen.once(8)?;
                    out.valid_after = s.typed(EvmTimestamp::parse)?;
                }
                "validBefore" => {
                    seen.once(16)?;
                    out.valid_before = s.typed(EvmTimestamp::parse)?;
                }
                "nonce" => {
                    seen.once(32)?;
                    out.nonce = s.typed(str::parse::<Bytes32>)?;
                }
                _ => s.skip(0)?,
            }
            Ok(())
        })?;
        seen.all(63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = r#"{"x402Version":2,"resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepted":{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}},"payload":{"signature":"0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c","authorization":{"from":"0x857b06519E91e3A54538791bDbb0E22373e36b66","to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","value":"10000","validAfter":"1740672089","validBefore":"1740672154","nonce":"0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}}}"#;

    /// The reference: the serde deserializer of the same type.
    fn serde(json: &str) -> Option<PaymentPayloadV2Ref<'_>> {
        serde_json::from_str(json).ok()
    }

    /// The scanner never accepts what the reference refuses, and agrees on
    /// the value; answers whether the scanner decided on its own.
    fn check(json: &str) -> bool {
        let mut fast = PaymentPayloadV2Ref::empty();
        match (payment_payload(json, &mut fast).map(|()| fast), serde(json)) {
            (Ok(fast), Some(reference)) => {
                assert_eq!(fast, reference, "{json}");
                true
            }
            (Ok(fast), None) => panic!("scanner accepts what serde refuses: {json}\n{fast:?}"),
            (Err(Reject), _) => false,
        }
    }

    fn with(from: &str, to: &str) -> String {
        assert!(VECTOR.contains(from), "{from}");
        VECTOR.replacen(from, to, 1)
    }

    #[test]
    fn the_vector_is_decided_by_the_scanner_and_borrows() {
        let mut p = PaymentPayloadV2Ref::empty();
        payment_payload(VECTOR, &mut p).unwrap();
        assert!(matches!(p.accepted.network, Cow::Borrowed("eip155:84532")));
        assert!(matches!(p.payload.signature, InlineSignature::Eoa(_)));
        assert!(check(VECTOR));
    }

    #[test]
    fn escapes_whitespace_nulls_and_unknown_fields_are_decided_by_the_scanner() {
        let cases = [
            with(
                r#""network":"eip155:84532""#,
                r#""network":"\u0065ip155:84532""#,
            ),
            with(r#""name":"USDC""#, r#""name":"\u0055S\/D\"C\\ \b\f\n\r\t""#),
            with(
                r#""description":"Access"#,
                r#""description":"\ud83d\ude00 Access"#,
            ),
            with(r#""x402Version":2"#, r#""x\u0034\u00302Version":2"#),
            with(r#"{"x402Version":2,"#, " \r\n\t{ \"x402Version\" : 2 ,\n"),
            format!("{VECTOR} \n"),
            with(
                r#""mimeType":"application/json""#,
                r#""mimeType":null,"tags":["a","\u0062"],"serviceName":null,"iconUrl":"i""#,
            ),
            with(
                r#""mimeType":"application/json""#,
                r#""tags":null,"tags2":[]"#,
            ),
            with(
                r#""x402Version":2,"#,
                r#""x402Version":2,"extensions":null,"#,
            ),
            with(
                r#""x402Version":2,"#,
                r#""x402Version":2,"extensions":{"bazaar":{"info":[1,2.5e-3,-0,true,false,null,"\u00e9"]}},"#,
            ),
            with(
                r#""x402Version":2,"#,
                r#""future":{"a":[{},[],{"b":[[1e5]]}]},"x402Version":2,"#,
            ),
            with(
                r#""version":"2""#,
                r#""version":"2","n":1.5,"o":{"p":[null]},"nam\u0065x":1"#,
            ),
            with(
                r#""name":"USDC","version":"2""#,
                r#""name":7,"version":null"#,
            ),
            with(
                r#","extra":{"name":"USDC","version":"2"}"#,
                r#","extra":null"#,
            ),
            with(r#","extra":{"name":"USDC","version":"2"}"#, ""),
            with(r#""resource":{"#, r#""resource":null,"r":{"#),
            with(r#""nonce":"#, r#""note":"\uDEAD is ignored","nonce":"#),
            with(r#""signature":"0x2d"#, r#""signature":"0X2d"#),
            with(r#""signature":"0x2d6a"#, r#""signature":"0x"#),
            with(
                r#""maxTimeoutSeconds":60"#,
                r#""maxTimeoutSeconds":18446744073709551615"#,
            ),
        ];
        for json in &cases {
            assert!(check(json), "the scanner should decide: {json}");
        }
    }

    #[test]
    fn refusals_are_left_to_the_reference() {
        let cases = [
            with(r#""x402Version":2,"#, ""),
            with(r#""x402Version":2"#, r#""x402Version":2,"x402Version":2"#),
            with(r#""x402Version":2"#, r#""x402Version":2.0"#),
            with(r#""x402Version":2"#, r#""x402Version":-2"#),
            with(r#""x402Version":2"#, r#""x402Version":02"#),
            with(r#""x402Version":2"#, r#""x402Version":4294967296"#),
            with(r#""x402Version":2"#, r#""x402Version":2e0"#),
            with(
                r#""maxTimeoutSeconds":60"#,
                r#""maxTimeoutSeconds":18446744073709551616"#,
            ),
            with(r#""maxTimeoutSeconds":60"#, r#""maxTimeoutSeconds":-0"#),
            with(r#""network":"eip155:84532""#, r#""network":null"#),
            with(r#""network":"eip155:84532""#, r#""network":"eip155:\x""#),
            with(r#""network":"eip155:84532""#, r#""network":"\ud83d""#),
            with(r#""network":"eip155:84532""#, r#""network":"\ude00x""#),
            with(r#""network":"eip155:84532""#, "\"network\":\"eip155:\t\""),
            with(r#""amount":"10000""#, r#""amount":10000"#),
            with(r#""value":"10000""#, r#""value":"1e4""#),
            with(r#""from":"0x857b"#, r#""from":"857b"#),
            with(r#""nonce":"0xf3"#, r#""nonce":"0xg3"#),
            with(r#""signature":"0x2d"#, r#""signature":"0xzz"#),
            with(r#""url":"#, r#""uri":"#),
            with(
                r#""resource":{"url":"https://api.example.com/premium-data","#,
                r#""resource":["https://api.example.com/premium-data","#,
            ),
            with(r#"{"x402Version":2,"#, r#"{x402Version:2,"#),
            // A repeated domain `name`/`version` (any type) is refused.
            with(r#""version":"2""#, r#""version":"2","name":"again""#),
            with(r#""version":"2""#, r#""version":7,"version":"2""#),
            with(r#""name":"USDC""#, r#""n\u0061me":1,"name":"USDC""#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"extensions":[],"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":01,"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":1.,"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":tru,"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":[1,],"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":{"a":1,},"#),
            with(r#""x402Version":2,"#, r#""x402Version":2,"z":"\q","#),
            with(
                r#""x402Version":2,"#,
                &format!(
                    r#""x402Version":2,"z":{}1{},"#,
                    "[".repeat(70),
                    "]".repeat(70)
                ),
            ),
            format!("{VECTOR}x"),
            format!("{VECTOR}{{}}"),
            VECTOR[..VECTOR.len() - 1].to_owned(),
            "[]".into(),
            "null".into(),
            String::new(),
        ];
        for json in &cases {
            assert!(!check(json), "the scanner should give up: {json}");
        }
    }

    /// The word-at-a-time run stops at the first `"`, `\\` or control byte
    /// wherever it falls in a word, and passes multi-byte characters.
    #[test]
    fn strings_stop_at_every_offset() {
        for len in 0..24 {
            for stop in ["\"", "\\n\"", "\u{1}\"", "\u{1f}\""] {
                let body: String = "aé€😀".chars().cycle().take(len).collect();
                let json = format!("\"{body}{stop} ");
                let mut s = Scanner {
                    src: &json,
                    b: json.as_bytes(),
                    i: 0,
                };
                let got = s.string();
                match stop {
                    "\"" => {
                        assert!(matches!(&got, Ok(Cow::Borrowed(b)) if *b == body), "{json}");
                        assert_eq!(s.i, json.len() - 1);
                    }
                    "\\n\"" => {
                        assert_eq!(got.ok().as_deref(), Some(format!("{body}\n").as_str()));
                    }
                    _ => assert!(got.is_err(), "{json}"),
                }
            }
        }
    }

    /// `typed` cuts a string at the next `"` and parses the raw slice; that
    /// is exact only while every parser it uses refuses `\\`, `"` and control
    /// bytes (an escape would make the raw slice differ from the value).
    #[test]
    fn typed_parsers_refuse_escapes_and_control_bytes() {
        let good = [
            ("amount", "10000".to_owned()),
            ("address", format!("0x{}", "ab".repeat(20))),
            ("nonce", format!("0x{}", "cd".repeat(32))),
            ("signature", format!("0x{}", "ef".repeat(65))),
            ("short signature", "0x00ff".to_owned()),
        ];
        let parse = |what: &str, v: &str| match what {
            "amount" => TokenAmount::parse(v).is_ok() && EvmTimestamp::parse(v).is_ok(),
            "address" => v.parse::<EvmAddress>().is_ok(),
            "nonce" => v.parse::<Bytes32>().is_ok(),
            _ => InlineSignature::parse(v).is_ok(),
        };
        for (what, v) in &good {
            assert!(parse(what, v), "{what} {v}");
            for bad in ['\\', '"', '\u{0}', '\n', '\u{1f}', 'é'] {
                for at in [0, 1, v.len() / 2, v.len()] {
                    let mut b = v.clone();
                    b.insert(at, bad);
                    assert!(!parse(what, &b), "{what} accepted {b:?}");
                    let mut r = v.clone();
                    if at < r.len() {
                        r.replace_range(at..at + 1, &bad.to_string());
                        assert!(!parse(what, &r), "{what} accepted {r:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn deep_nesting_within_the_bound_is_decided_and_beyond_it_deferred() {
        let nest = |n: usize| {
            with(
                r#""x402Version":2,"#,
                &format!(
                    r#""x402Version":2,"z":{}0{},"#,
                    "[".repeat(n),
                    "]".repeat(n)
                ),
            )
        };
        assert!(check(&nest(MAX_DEPTH as usize)));
        assert!(!check(&nest(MAX_DEPTH as usize + 1)));
        // Beyond the bound the reference decides (it accepts this one).
        assert!(serde(&nest(MAX_DEPTH as usize + 1)).is_some());
    }

    /// Random byte mutations of the vector: the scanner never accepts what
    /// the reference refuses, agrees on every value, and decides most of
    /// what the reference accepts by itself.
    #[test]
    fn mutations_never_make_the_scanner_more_lenient() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        let (mut reference_ok, mut scanner_ok) = (0, 0);
        for _ in 0..20_000 {
            let mut j = VECTOR.as_bytes().to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() % j.len() as u64) as usize;
                if next() % 8 == 0 {
                    // A multi-byte character in place of a byte.
                    let ch = ["é", "€", "😀", "\u{7f}"][(next() % 4) as usize];
                    j.splice(at..=at, ch.bytes());
                    continue;
                }
                j[at] = match next() % 5 {
                    0 => b'0' + (next() % 10) as u8,
                    1 => b"0123456789abcdefABCDEF"[(next() % 22) as usize],
                    2 => b"\"{}[],:\\"[(next() % 8) as usize],
                    3 => b" \t\nnul-.eE+"[(next() % 11) as usize],
                    _ => (next() % 128) as u8,
                };
            }
            let Ok(json) = std::str::from_utf8(&j) else {
                continue;
            };
            reference_ok += usize::from(serde(json).is_some());
            scanner_ok += usize::from(check(json));
        }
        assert!(reference_ok > 1_000, "{reference_ok}");
        assert!(
            scanner_ok * 10 >= reference_ok * 9,
            "{scanner_ok} of {reference_ok}"
        );
    }
}
