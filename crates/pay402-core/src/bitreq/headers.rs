//! The 402 headers and the proof headers, read case-insensitively and written Title-Case.
//!
//! Parsing is bounded: every value has a maximum length, must be visible ASCII
//! (plus spaces inside), and headers that must be unique are rejected when repeated.
//!
//! ```
//! use pay402_core::bitreq::headers::{PRICE, parse_price};
//! assert_eq!(PRICE, "Price");
//! assert_eq!(parse_price("3000").unwrap().0, 3000);
//! ```

use bitcoin::Txid;

use crate::money::Sat;

use super::error::BitreqError;

/// `Price`: integer satoshis.
pub const PRICE: &str = "Price";
/// `Bitcoin-Address`: base58 payout address (on-chain and transfer).
pub const BITCOIN_ADDRESS: &str = "Bitcoin-Address";
/// `Username`: the seller's username on the transfer ledger.
pub const USERNAME: &str = "Username";
/// `Bitcoin-Payment-Channel-Server`: the channel REST endpoint URL.
pub const CHANNEL_SERVER: &str = "Bitcoin-Payment-Channel-Server";
/// `Bitcoin-Transaction`: hex of a signed transaction (on-chain proof).
pub const BITCOIN_TRANSACTION: &str = "Bitcoin-Transaction";
/// `Return-Wallet-Address`: the payer's refund address (two1 never read it).
pub const RETURN_WALLET_ADDRESS: &str = "Return-Wallet-Address";
/// `Bitcoin-Transfer`: the bit-transfer JSON.
pub const BITCOIN_TRANSFER: &str = "Bitcoin-Transfer";
/// `Authorization`: base64 r‖s signature of the bit-transfer.
pub const AUTHORIZATION: &str = "Authorization";
/// `Bitcoin-Payment-Channel-Token`: txid of the half-signed payment transaction.
pub const CHANNEL_TOKEN: &str = "Bitcoin-Payment-Channel-Token";

/// Maximum length of `Price` (`u64::MAX` has 20 digits).
pub const MAX_PRICE_LEN: usize = 20;
/// Maximum length of an address header.
pub const MAX_ADDRESS_LEN: usize = 128;
/// Maximum length of `Username`.
pub const MAX_USERNAME_LEN: usize = 128;
/// Maximum length of the channel server URL.
pub const MAX_URL_LEN: usize = 2048;
/// Maximum length of `Bitcoin-Transaction` (hex digits: 100 000 bytes of transaction).
pub const MAX_TX_HEX_LEN: usize = 200_000;
/// Maximum length of `Bitcoin-Transfer`.
pub const MAX_TRANSFER_LEN: usize = 8192;
/// Maximum length of `Authorization` (a 64-byte signature is 88 base64 characters).
pub const MAX_AUTHORIZATION_LEN: usize = 128;
/// Length of `Bitcoin-Payment-Channel-Token` (64 hex digits).
pub const CHANNEL_TOKEN_LEN: usize = 64;

/// Collects one known header from a stream of pairs.
struct Slot<'a> {
    name: &'static str,
    max: usize,
    value: Option<&'a [u8]>,
}

impl<'a> Slot<'a> {
    const fn new(name: &'static str, max: usize) -> Self {
        Slot {
            name,
            max,
            value: None,
        }
    }

    fn offer(&mut self, name: &[u8], value: &'a [u8]) -> Result<bool, BitreqError> {
        if !name.eq_ignore_ascii_case(self.name.as_bytes()) {
            return Ok(false);
        }
        if self.value.is_some() {
            return Err(BitreqError::DuplicateHeader(self.name));
        }
        if value.len() > self.max {
            return Err(BitreqError::HeaderTooLong(self.name));
        }
        self.value = Some(value);
        Ok(true)
    }

    /// The value as trimmed visible ASCII (inner spaces allowed).
    fn text(&self) -> Result<Option<&'a str>, BitreqError> {
        let Some(v) = self.value else { return Ok(None) };
        let v = v.trim_ascii();
        if v.is_empty() || !v.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            return Err(BitreqError::InvalidHeaderValue(self.name));
        }
        // All bytes are ASCII, so this cannot fail; map defensively anyway.
        std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| BitreqError::InvalidHeaderValue(self.name))
    }

    /// Like [`Slot::text`] but without inner spaces.
    fn token(&self) -> Result<Option<&'a str>, BitreqError> {
        match self.text()? {
            Some(t) if t.contains(' ') => Err(BitreqError::InvalidHeaderValue(self.name)),
            other => Ok(other),
        }
    }
}

/// Parses a `Price` value: ASCII digits only, no sign, no decimal point, no overflow.
///
/// ```
/// use pay402_core::bitreq::headers::parse_price;
/// use pay402_core::money::Sat;
/// assert_eq!(parse_price("3500"), Ok(Sat(3500)));
/// assert!(parse_price("-1").is_err());
/// assert!(parse_price("1.5").is_err());
/// assert!(parse_price("18446744073709551616").is_err());
/// ```
pub fn parse_price(s: &str) -> Result<Sat, BitreqError> {
    let s = s.trim_ascii();
    if s.is_empty() || s.len() > MAX_PRICE_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BitreqError::InvalidPrice);
    }
    s.parse::<u64>()
        .map(Sat)
        .map_err(|_| BitreqError::InvalidPrice)
}

/// The payment information of a 402 response (two1's `get_402_info`, typed).
///
/// Unlike two1, the price is always an integer and is required.
///
/// ```
/// use pay402_core::bitreq::PaymentInfo;
/// use pay402_core::money::Sat;
/// let info = PaymentInfo::from_pairs([
///     ("PRICE", "1000"),
///     ("username", "HelloNakaMoto"),
/// ]).unwrap();
/// assert_eq!(info.price, Sat(1000));
/// assert_eq!(info.username.as_deref(), Some("HelloNakaMoto"));
/// assert!(info.supports_transfer() && !info.supports_onchain());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentInfo {
    /// `Price`, in satoshis.
    pub price: Sat,
    /// `Bitcoin-Address` (unparsed; see [`PaymentInfo::address`]).
    pub bitcoin_address: Option<String>,
    /// `Username`.
    pub username: Option<String>,
    /// `Bitcoin-Payment-Channel-Server`.
    pub channel_server: Option<String>,
}

impl PaymentInfo {
    /// Payment info with only a price.
    ///
    /// ```
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5));
    /// assert_eq!(info.header_pairs().len(), 1);
    /// ```
    pub fn new(price: Sat) -> PaymentInfo {
        PaymentInfo {
            price,
            bitcoin_address: None,
            username: None,
            channel_server: None,
        }
    }

    /// Sets `Bitcoin-Address`.
    ///
    /// ```
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5))
    ///     .with_bitcoin_address("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM");
    /// assert!(info.supports_onchain());
    /// ```
    pub fn with_bitcoin_address(mut self, address: impl Into<String>) -> PaymentInfo {
        self.bitcoin_address = Some(address.into());
        self
    }

    /// Sets `Username`.
    ///
    /// ```
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5)).with_username("me");
    /// assert_eq!(info.username.as_deref(), Some("me"));
    /// ```
    pub fn with_username(mut self, username: impl Into<String>) -> PaymentInfo {
        self.username = Some(username.into());
        self
    }

    /// Sets `Bitcoin-Payment-Channel-Server`.
    ///
    /// ```
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5))
    ///     .with_channel_server("https://h/payment");
    /// assert!(info.supports_channel());
    /// ```
    pub fn with_channel_server(mut self, url: impl Into<String>) -> PaymentInfo {
        self.channel_server = Some(url.into());
        self
    }

    /// Whether the on-chain method is offered (`Bitcoin-Address` present).
    ///
    /// ```
    /// assert!(!pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5)).supports_onchain());
    /// ```
    pub fn supports_onchain(&self) -> bool {
        self.bitcoin_address.is_some()
    }

    /// Whether the bit-transfer method is offered (`Username` present).
    ///
    /// ```
    /// assert!(!pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5)).supports_transfer());
    /// ```
    pub fn supports_transfer(&self) -> bool {
        self.username.is_some()
    }

    /// Whether the channel method is offered (`Bitcoin-Payment-Channel-Server` present).
    ///
    /// ```
    /// assert!(!pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5)).supports_channel());
    /// ```
    pub fn supports_channel(&self) -> bool {
        self.channel_server.is_some()
    }

    /// The `Bitcoin-Address` parsed and checked against `network`.
    ///
    /// ```
    /// use bitcoin::Network;
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5))
    ///     .with_bitcoin_address("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM");
    /// assert!(info.address(Network::Bitcoin).unwrap().is_some());
    /// assert!(info.address(Network::Testnet).is_err());
    /// ```
    pub fn address(
        &self,
        network: bitcoin::Network,
    ) -> Result<Option<bitcoin::Address>, BitreqError> {
        match &self.bitcoin_address {
            None => Ok(None),
            Some(a) => parse_address(a, network).map(Some),
        }
    }

    /// Parses the 402 headers from `(name, value)` pairs; names match case-insensitively.
    ///
    /// Unknown headers are ignored; `Price` is required.
    ///
    /// ```
    /// use pay402_core::bitreq::{BitreqError, PaymentInfo};
    /// assert_eq!(PaymentInfo::from_pairs([("Price", "1.5")]), Err(BitreqError::InvalidPrice));
    /// assert_eq!(PaymentInfo::from_pairs([("Server", "x")]), Err(BitreqError::MissingHeader("Price")));
    /// ```
    pub fn from_pairs<I, N, V>(pairs: I) -> Result<PaymentInfo, BitreqError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let pairs: Vec<(N, V)> = pairs.into_iter().collect();
        let mut price = Slot::new(PRICE, MAX_PRICE_LEN);
        let mut addr = Slot::new(BITCOIN_ADDRESS, MAX_ADDRESS_LEN);
        let mut user = Slot::new(USERNAME, MAX_USERNAME_LEN);
        let mut server = Slot::new(CHANNEL_SERVER, MAX_URL_LEN);
        for (n, v) in &pairs {
            let (n, v) = (n.as_ref(), v.as_ref());
            let _ = price.offer(n, v)?
                || addr.offer(n, v)?
                || user.offer(n, v)?
                || server.offer(n, v)?;
        }
        let price = match price.value {
            None => return Err(BitreqError::MissingHeader(PRICE)),
            Some(v) => std::str::from_utf8(v)
                .map_err(|_| BitreqError::InvalidPrice)
                .and_then(parse_price)?,
        };
        Ok(PaymentInfo {
            price,
            bitcoin_address: addr.token()?.map(str::to_owned),
            username: user.text()?.map(str::to_owned),
            channel_server: server.token()?.map(str::to_owned),
        })
    }

    /// Parses the 402 headers from an [`http::HeaderMap`].
    ///
    /// ```
    /// let mut map = http::HeaderMap::new();
    /// map.insert("price", http::HeaderValue::from_static("42"));
    /// let info = pay402_core::bitreq::PaymentInfo::from_header_map(&map).unwrap();
    /// assert_eq!(info.price.0, 42);
    /// ```
    pub fn from_header_map(map: &http::HeaderMap) -> Result<PaymentInfo, BitreqError> {
        PaymentInfo::from_pairs(
            map.iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        )
    }

    /// The headers to send with the 402, Title-Case, `Price` first.
    ///
    /// ```
    /// let info = pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(5)).with_username("u");
    /// assert_eq!(info.header_pairs(), vec![("Price", "5".to_owned()), ("Username", "u".to_owned())]);
    /// ```
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(PRICE, self.price.0.to_string())];
        if let Some(a) = &self.bitcoin_address {
            out.push((BITCOIN_ADDRESS, a.clone()));
        }
        if let Some(u) = &self.username {
            out.push((USERNAME, u.clone()));
        }
        if let Some(s) = &self.channel_server {
            out.push((CHANNEL_SERVER, s.clone()));
        }
        out
    }

    /// Inserts the headers into an [`http::HeaderMap`] (which stores names lowercase).
    ///
    /// Fails with `invalid_header_value` if a value is not a valid header value.
    ///
    /// ```
    /// let mut map = http::HeaderMap::new();
    /// pay402_core::bitreq::PaymentInfo::new(pay402_core::money::Sat(7)).insert_into(&mut map).unwrap();
    /// assert_eq!(map["price"], "7");
    /// ```
    pub fn insert_into(&self, map: &mut http::HeaderMap) -> Result<(), BitreqError> {
        for (name, value) in self.header_pairs() {
            let v = http::HeaderValue::try_from(value)
                .map_err(|_| BitreqError::InvalidHeaderValue(name))?;
            map.insert(http::HeaderName::from_static(lower(name)), v);
        }
        Ok(())
    }
}

fn lower(name: &'static str) -> &'static str {
    match name {
        PRICE => "price",
        BITCOIN_ADDRESS => "bitcoin-address",
        USERNAME => "username",
        CHANNEL_SERVER => "bitcoin-payment-channel-server",
        BITCOIN_TRANSACTION => "bitcoin-transaction",
        RETURN_WALLET_ADDRESS => "return-wallet-address",
        BITCOIN_TRANSFER => "bitcoin-transfer",
        AUTHORIZATION => "authorization",
        _ => "bitcoin-payment-channel-token",
    }
}

/// Parses a bitcoin address and checks its network.
///
/// ```
/// use bitcoin::Network;
/// use pay402_core::bitreq::headers::parse_address;
/// assert!(parse_address("19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM", Network::Bitcoin).is_ok());
/// assert!(parse_address("not-an-address", Network::Bitcoin).is_err());
/// ```
pub fn parse_address(s: &str, network: bitcoin::Network) -> Result<bitcoin::Address, BitreqError> {
    if s.len() > MAX_ADDRESS_LEN {
        return Err(BitreqError::InvalidAddress);
    }
    s.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|_| BitreqError::InvalidAddress)?
        .require_network(network)
        .map_err(|_| BitreqError::InvalidAddress)
}

/// A payment proof on a retried request, chosen in two1's order:
/// channel, then on-chain, then bit-transfer.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, Proof};
/// let p = Proof::from_pairs([("Bitcoin-Transfer", "{}"), ("Authorization", "c2ln")]).unwrap();
/// assert!(matches!(p, Proof::Transfer { .. }));
/// assert_eq!(Proof::from_pairs([("Bitcoin-Transfer", "{}")]), Err(BitreqError::NoPaymentProof));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof {
    /// `Bitcoin-Payment-Channel-Token`.
    Channel {
        /// The half-signed payment txid.
        token: Txid,
    },
    /// `Bitcoin-Transaction` (+ optional `Return-Wallet-Address`).
    OnChain {
        /// The transaction hex (bounded, unparsed; see [`super::onchain::verify_payment`]).
        tx_hex: String,
        /// The payer's return address, if sent.
        return_address: Option<String>,
    },
    /// `Bitcoin-Transfer` + `Authorization`.
    Transfer {
        /// The exact header text (the signature covers these bytes).
        transfer: String,
        /// The base64 signature.
        authorization: String,
    },
}

impl Proof {
    /// Finds the proof in `(name, value)` pairs (names case-insensitive).
    ///
    /// ```
    /// use pay402_core::bitreq::Proof;
    /// let p = Proof::from_pairs([("bitcoin-transaction", "00")]).unwrap();
    /// assert_eq!(p.method(), "onchain");
    /// ```
    pub fn from_pairs<I, N, V>(pairs: I) -> Result<Proof, BitreqError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let pairs: Vec<(N, V)> = pairs.into_iter().collect();
        let mut token = Slot::new(CHANNEL_TOKEN, CHANNEL_TOKEN_LEN + 8);
        let mut tx = Slot::new(BITCOIN_TRANSACTION, MAX_TX_HEX_LEN);
        let mut ret = Slot::new(RETURN_WALLET_ADDRESS, MAX_ADDRESS_LEN);
        let mut transfer = Slot::new(BITCOIN_TRANSFER, MAX_TRANSFER_LEN);
        let mut auth = Slot::new(AUTHORIZATION, MAX_AUTHORIZATION_LEN);
        for (n, v) in &pairs {
            let (n, v) = (n.as_ref(), v.as_ref());
            let _ = token.offer(n, v)?
                || tx.offer(n, v)?
                || ret.offer(n, v)?
                || transfer.offer(n, v)?
                || auth.offer(n, v)?;
        }
        if let Some(t) = token.token()? {
            if t.len() != CHANNEL_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BitreqError::InvalidChannelToken);
            }
            let token = t
                .parse::<Txid>()
                .map_err(|_| BitreqError::InvalidChannelToken)?;
            return Ok(Proof::Channel { token });
        }
        if let Some(t) = tx.token()? {
            return Ok(Proof::OnChain {
                tx_hex: t.to_owned(),
                return_address: ret.token()?.map(str::to_owned),
            });
        }
        if let (Some(_), Some(_)) = (transfer.value, auth.value) {
            // The transfer text is kept byte-exact: the signature covers it.
            let t = transfer.value.unwrap_or_default();
            if t.is_empty() || !t.iter().all(|&b| (0x20..0x7f).contains(&b)) {
                return Err(BitreqError::InvalidHeaderValue(BITCOIN_TRANSFER));
            }
            let transfer = String::from_utf8(t.to_vec())
                .map_err(|_| BitreqError::InvalidHeaderValue(BITCOIN_TRANSFER))?;
            let authorization = auth.token()?.unwrap_or_default().to_owned();
            return Ok(Proof::Transfer {
                transfer,
                authorization,
            });
        }
        Err(BitreqError::NoPaymentProof)
    }

    /// Finds the proof in an [`http::HeaderMap`].
    ///
    /// ```
    /// let mut map = http::HeaderMap::new();
    /// map.insert("bitcoin-transaction", http::HeaderValue::from_static("00"));
    /// assert!(pay402_core::bitreq::Proof::from_header_map(&map).is_ok());
    /// ```
    pub fn from_header_map(map: &http::HeaderMap) -> Result<Proof, BitreqError> {
        Proof::from_pairs(
            map.iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        )
    }

    /// The method name: `channel`, `onchain` or `transfer`.
    ///
    /// ```
    /// let p = pay402_core::bitreq::Proof::from_pairs([("Bitcoin-Transaction", "00")]).unwrap();
    /// assert_eq!(p.method(), "onchain");
    /// ```
    pub fn method(&self) -> &'static str {
        match self {
            Proof::Channel { .. } => "channel",
            Proof::OnChain { .. } => "onchain",
            Proof::Transfer { .. } => "transfer",
        }
    }

    /// The headers to send with the retried request, Title-Case.
    ///
    /// ```
    /// let p = pay402_core::bitreq::Proof::OnChain { tx_hex: "00".into(), return_address: None };
    /// assert_eq!(p.header_pairs(), vec![("Bitcoin-Transaction", "00".to_owned())]);
    /// ```
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        match self {
            Proof::Channel { token } => vec![(CHANNEL_TOKEN, token.to_string())],
            Proof::OnChain {
                tx_hex,
                return_address,
            } => {
                let mut v = vec![(BITCOIN_TRANSACTION, tx_hex.clone())];
                if let Some(r) = return_address {
                    v.push((RETURN_WALLET_ADDRESS, r.clone()));
                }
                v
            }
            Proof::Transfer {
                transfer,
                authorization,
            } => vec![
                (BITCOIN_TRANSFER, transfer.clone()),
                (AUTHORIZATION, authorization.clone()),
            ],
        }
    }

    /// Inserts the proof headers into an [`http::HeaderMap`].
    ///
    /// ```
    /// let mut map = http::HeaderMap::new();
    /// let p = pay402_core::bitreq::Proof::OnChain { tx_hex: "00".into(), return_address: None };
    /// p.insert_into(&mut map).unwrap();
    /// assert_eq!(map["bitcoin-transaction"], "00");
    /// ```
    pub fn insert_into(&self, map: &mut http::HeaderMap) -> Result<(), BitreqError> {
        for (name, value) in self.header_pairs() {
            let v = http::HeaderValue::try_from(value)
                .map_err(|_| BitreqError::InvalidHeaderValue(name))?;
            map.insert(http::HeaderName::from_static(lower(name)), v);
        }
        Ok(())
    }
}
