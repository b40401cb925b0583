//! `Accept-Payment`: the client's payment preferences.
//!
//! ```text
//! Accept-Payment = #payment-range
//! payment-range  = ( method / "*" ) "/" ( intent / "*" ) [ OWS ";" OWS "q=" qvalue ]
//! ```
//!
//! A server orders its offers by the client's q (descending), drops those
//! with q = 0 and keeps its own order on ties; the most specific matching
//! range decides an offer's q. A malformed header may be ignored (the caller
//! decides); an absent header accepts everything.

use crate::problem::Reason;

/// Longest header accepted.
pub const MAX_ACCEPT_PAYMENT_LEN: usize = 1024;
/// Most ranges accepted.
pub const MAX_RANGES: usize = 32;

/// Why an `Accept-Payment` value was refused.
///
/// ```
/// use pay402_core::mpp::{AcceptPayment, AcceptPaymentError};
/// assert_eq!(AcceptPayment::parse("lightning").unwrap_err(), AcceptPaymentError::Syntax);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcceptPaymentError {
    /// Longer than [`MAX_ACCEPT_PAYMENT_LEN`] or more than [`MAX_RANGES`] ranges.
    #[error("Accept-Payment too long")]
    TooLong,
    /// Not the grammar.
    #[error("malformed Accept-Payment")]
    Syntax,
}

impl Reason for AcceptPaymentError {
    fn reason(&self) -> &'static str {
        "malformed_accept_payment"
    }
}

/// One `method/intent;q=` range. `None` is the wildcard `*`.
///
/// ```
/// use pay402_core::mpp::AcceptPayment;
/// let a = AcceptPayment::parse("lightning/*;q=0.5").unwrap();
/// assert_eq!(a.ranges()[0].method.as_deref(), Some("lightning"));
/// assert_eq!(a.ranges()[0].intent, None);
/// assert_eq!(a.ranges()[0].q, 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRange {
    /// The method, or `None` for `*`.
    pub method: Option<String>,
    /// The intent, or `None` for `*`.
    pub intent: Option<String>,
    /// The weight in thousandths (0..=1000).
    pub q: u16,
}

impl PaymentRange {
    fn matches(&self, method: &str, intent: &str) -> Option<u8> {
        let m = match &self.method {
            Some(x) if x == method => 2,
            Some(_) => return None,
            None => 0,
        };
        let i = match &self.intent {
            Some(x) if x == intent => 1,
            Some(_) => return None,
            None => 0,
        };
        Some(m + i)
    }
}

/// A parsed `Accept-Payment` header.
///
/// ```
/// use pay402_core::mpp::AcceptPayment;
/// let a = AcceptPayment::parse("tempo/charge, lightning/charge;q=0.9, evm/*;q=0").unwrap();
/// let offers = [("evm", "charge"), ("lightning", "charge"), ("tempo", "charge"), ("stripe", "charge")];
/// assert_eq!(a.order(offers), vec![2, 1]);
/// assert_eq!(a.to_header_value(), "tempo/charge, lightning/charge;q=0.9, evm/*;q=0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AcceptPayment {
    ranges: Vec<PaymentRange>,
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b':' | b'_')
}

fn parse_part(s: &str) -> Result<Option<String>, AcceptPaymentError> {
    if s == "*" {
        Ok(None)
    } else if !s.is_empty() && s.bytes().all(is_token_char) {
        Ok(Some(s.to_owned()))
    } else {
        Err(AcceptPaymentError::Syntax)
    }
}

fn parse_q(s: &str) -> Result<u16, AcceptPaymentError> {
    let b = s.as_bytes();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if b.is_empty() || !matches!(int, "0" | "1") {
        return Err(AcceptPaymentError::Syntax);
    }
    let mut q: u16 = if int == "1" { 1000 } else { 0 };
    if let Some(f) = frac {
        if f.len() > 3 || !f.bytes().all(|d| d.is_ascii_digit()) {
            return Err(AcceptPaymentError::Syntax);
        }
        let mut v: u16 = 0;
        for (i, d) in f.bytes().enumerate() {
            v += u16::from(d - b'0') * [100, 10, 1][i];
        }
        if int == "1" && v != 0 {
            return Err(AcceptPaymentError::Syntax);
        }
        q += v;
    }
    Ok(q)
}

impl AcceptPayment {
    /// Parses a header value.
    ///
    /// ```
    /// let a = pay402_core::mpp::AcceptPayment::parse(" lightning/charge ; q=1.000 ,, */*;q=0.1").unwrap();
    /// assert_eq!(a.ranges().len(), 2);
    /// ```
    pub fn parse(value: &str) -> Result<AcceptPayment, AcceptPaymentError> {
        if value.len() > MAX_ACCEPT_PAYMENT_LEN {
            return Err(AcceptPaymentError::TooLong);
        }
        let mut ranges = Vec::new();
        for el in value.split(',') {
            let el = el.trim_matches([' ', '\t']);
            if el.is_empty() {
                continue;
            }
            if ranges.len() >= MAX_RANGES {
                return Err(AcceptPaymentError::TooLong);
            }
            let mut parts = el.split(';');
            let token = parts.next().unwrap_or("").trim_matches([' ', '\t']);
            let (m, i) = token.split_once('/').ok_or(AcceptPaymentError::Syntax)?;
            let mut q = 1000;
            let mut seen_q = false;
            for p in parts {
                let p = p.trim_matches([' ', '\t']);
                let v = p
                    .strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .ok_or(AcceptPaymentError::Syntax)?;
                if seen_q {
                    return Err(AcceptPaymentError::Syntax);
                }
                seen_q = true;
                q = parse_q(v)?;
            }
            ranges.push(PaymentRange {
                method: parse_part(m)?,
                intent: parse_part(i)?,
                q,
            });
        }
        Ok(AcceptPayment { ranges })
    }

    /// A header from `(method, intent, q in thousandths)` preferences.
    ///
    /// ```
    /// let a = pay402_core::mpp::AcceptPayment::from_prefs([("lightning", "charge", 1000), ("evm", "charge", 500)]);
    /// assert_eq!(a.to_header_value(), "lightning/charge, evm/charge;q=0.5");
    /// ```
    pub fn from_prefs<'s>(
        prefs: impl IntoIterator<Item = (&'s str, &'s str, u16)>,
    ) -> AcceptPayment {
        AcceptPayment {
            ranges: prefs
                .into_iter()
                .map(|(m, i, q)| PaymentRange {
                    method: (m != "*").then(|| m.to_owned()),
                    intent: (i != "*").then(|| i.to_owned()),
                    q: q.min(1000),
                })
                .collect(),
        }
    }

    /// The ranges in header order.
    ///
    /// ```
    /// assert!(pay402_core::mpp::AcceptPayment::parse("").unwrap().ranges().is_empty());
    /// ```
    pub fn ranges(&self) -> &[PaymentRange] {
        &self.ranges
    }

    /// The weight of an offer: the q of the most specific matching range
    /// (the first of equally specific ones), 0 if none matches.
    ///
    /// ```
    /// let a = pay402_core::mpp::AcceptPayment::parse("*/*;q=0.2, lightning/*;q=0.7").unwrap();
    /// assert_eq!(a.weight("lightning", "charge"), 700);
    /// assert_eq!(a.weight("evm", "charge"), 200);
    /// ```
    pub fn weight(&self, method: &str, intent: &str) -> u16 {
        let mut best: Option<(u8, u16)> = None;
        for r in &self.ranges {
            if let Some(spec) = r.matches(method, intent)
                && best.is_none_or(|(s, _)| spec > s)
            {
                best = Some((spec, r.q));
            }
        }
        best.map_or(0, |(_, q)| q)
    }

    /// The indices of `offers` (`(method, intent)` in server order) to offer:
    /// q > 0, by q descending, server order on ties.
    ///
    /// See [`AcceptPayment`].
    ///
    /// ```
    /// let a = pay402_core::mpp::AcceptPayment::parse("evm/charge;q=0.5, lightning/charge").unwrap();
    /// assert_eq!(a.order([("evm", "charge"), ("lightning", "charge")]), vec![1, 0]);
    /// ```
    pub fn order<'s>(&self, offers: impl IntoIterator<Item = (&'s str, &'s str)>) -> Vec<usize> {
        let mut w: Vec<(usize, u16)> = offers
            .into_iter()
            .enumerate()
            .map(|(i, (m, n))| (i, self.weight(m, n)))
            .filter(|&(_, q)| q > 0)
            .collect();
        w.sort_by_key(|&(_, q)| std::cmp::Reverse(q));
        w.into_iter().map(|(i, _)| i).collect()
    }

    /// The header value (q omitted when 1, trailing zeros trimmed).
    ///
    /// See [`AcceptPayment`].
    ///
    /// ```
    /// let a = pay402_core::mpp::AcceptPayment::parse("a/b;q=0.250").unwrap();
    /// assert_eq!(a.to_header_value(), "a/b;q=0.25");
    /// ```
    pub fn to_header_value(&self) -> String {
        let mut out = String::new();
        for (n, r) in self.ranges.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(r.method.as_deref().unwrap_or("*"));
            out.push('/');
            out.push_str(r.intent.as_deref().unwrap_or("*"));
            if r.q < 1000 {
                let frac = format!("{:03}", r.q);
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    out.push_str(";q=0");
                } else {
                    out.push_str(";q=0.");
                    out.push_str(frac);
                }
            }
        }
        out
    }
}
