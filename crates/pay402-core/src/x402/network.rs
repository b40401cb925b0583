//! Network identifiers: CAIP-2 ids (v2) and the fixed v1 slugs, both ways.
//!
//! ```
//! use pay402_core::x402::network::{Caip2, slug_to_caip2, caip2_to_slug};
//! assert_eq!(slug_to_caip2("base-sepolia"), Some("eip155:84532"));
//! assert_eq!(caip2_to_slug("eip155:8453"), Some("base"));
//! assert_eq!(Caip2::parse("eip155:84532").unwrap().evm_chain_id(), Some(84532));
//! ```

use std::fmt;

/// Why a CAIP-2 id was rejected.
///
/// ```
/// use pay402_core::x402::network::{Caip2, Caip2Error};
/// assert_eq!(Caip2::parse("eip155"), Err(Caip2Error::MissingColon));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Caip2Error {
    /// No `:` between namespace and reference.
    #[error("CAIP-2 id has no ':'")]
    MissingColon,
    /// The namespace is not `[-a-z0-9]{3,8}`.
    #[error("invalid CAIP-2 namespace")]
    Namespace,
    /// The reference is not `[-_a-zA-Z0-9]{1,32}` (or `*`).
    #[error("invalid CAIP-2 reference")]
    Reference,
}

/// A borrowed CAIP-2 chain id, `namespace:reference` (e.g. `eip155:8453`).
/// The wildcard reference `*` (as in `/supported`'s `eip155:*`) is accepted.
///
/// ```
/// use pay402_core::x402::network::Caip2;
/// let n = Caip2::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
/// assert_eq!(n.namespace(), "solana");
/// assert_eq!(n.evm_chain_id(), None);
/// assert!(Caip2::parse("eip155:*").unwrap().is_wildcard());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caip2<'a> {
    namespace: &'a str,
    reference: &'a str,
}

impl<'a> Caip2<'a> {
    /// Parses `namespace:reference` per CAIP-2.
    ///
    /// ```
    /// use pay402_core::x402::network::Caip2;
    /// assert!(Caip2::parse("eip155:84532").is_ok());
    /// assert!(Caip2::parse("EIP155:1").is_err());
    /// assert!(Caip2::parse("eip155:").is_err());
    /// ```
    pub fn parse(s: &'a str) -> Result<Caip2<'a>, Caip2Error> {
        let (namespace, reference) = s.split_once(':').ok_or(Caip2Error::MissingColon)?;
        if !(3..=8).contains(&namespace.len())
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Caip2Error::Namespace);
        }
        let ok_ref = reference == "*"
            || ((1..=32).contains(&reference.len())
                && reference
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !ok_ref {
            return Err(Caip2Error::Reference);
        }
        Ok(Caip2 {
            namespace,
            reference,
        })
    }

    /// The namespace (`eip155`, `solana`, ...).
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::network::Caip2::parse("eip155:1").unwrap().namespace(), "eip155");
    /// ```
    pub fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The reference (a chain id for `eip155`).
    ///
    /// ```
    /// assert_eq!(pay402_core::x402::network::Caip2::parse("eip155:1").unwrap().reference(), "1");
    /// ```
    pub fn reference(&self) -> &'a str {
        self.reference
    }

    /// True for the `*` reference.
    ///
    /// ```
    /// assert!(!pay402_core::x402::network::Caip2::parse("eip155:1").unwrap().is_wildcard());
    /// ```
    pub fn is_wildcard(&self) -> bool {
        self.reference == "*"
    }

    /// The EVM chain id of an `eip155:<decimal>` id (no leading zeros), else `None`.
    ///
    /// ```
    /// use pay402_core::x402::network::Caip2;
    /// assert_eq!(Caip2::parse("eip155:31337").unwrap().evm_chain_id(), Some(31337));
    /// assert_eq!(Caip2::parse("eip155:0x1").unwrap().evm_chain_id(), None);
    /// ```
    pub fn evm_chain_id(&self) -> Option<u64> {
        if self.namespace != "eip155" {
            return None;
        }
        let r = self.reference;
        if r.is_empty()
            || !r.bytes().all(|b| b.is_ascii_digit())
            || (r.len() > 1 && r.starts_with('0'))
        {
            return None;
        }
        r.parse().ok()
    }
}

impl fmt::Display for Caip2<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.reference)
    }
}

/// The v1 network slugs and their CAIP-2 ids (`network.ts` of the legacy SDK).
///
/// ```
/// use pay402_core::x402::network::V1_NETWORKS;
/// assert!(V1_NETWORKS.contains(&("polygon", "eip155:137")));
/// ```
pub const V1_NETWORKS: &[(&str, &str)] = &[
    ("abstract", "eip155:2741"),
    ("abstract-testnet", "eip155:11124"),
    ("base-sepolia", "eip155:84532"),
    ("base", "eip155:8453"),
    ("avalanche-fuji", "eip155:43113"),
    ("avalanche", "eip155:43114"),
    ("iotex", "eip155:4689"),
    ("sei", "eip155:1329"),
    ("sei-testnet", "eip155:1328"),
    ("polygon", "eip155:137"),
    ("polygon-amoy", "eip155:80002"),
    ("peaq", "eip155:3338"),
    ("story", "eip155:1514"),
    ("educhain", "eip155:41923"),
    ("skale-base-sepolia", "eip155:324705682"),
    ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
    ("solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
];

/// The CAIP-2 id of a v1 slug.
///
/// ```
/// use pay402_core::x402::network::slug_to_caip2;
/// assert_eq!(slug_to_caip2("solana-devnet"), Some("solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"));
/// assert_eq!(slug_to_caip2("mars"), None);
/// ```
pub fn slug_to_caip2(slug: &str) -> Option<&'static str> {
    V1_NETWORKS
        .iter()
        .find(|(s, _)| *s == slug)
        .map(|(_, c)| *c)
}

/// The v1 slug of a CAIP-2 id.
///
/// ```
/// use pay402_core::x402::network::caip2_to_slug;
/// assert_eq!(caip2_to_slug("eip155:84532"), Some("base-sepolia"));
/// assert_eq!(caip2_to_slug("eip155:31337"), None);
/// ```
pub fn caip2_to_slug(caip2: &str) -> Option<&'static str> {
    V1_NETWORKS
        .iter()
        .find(|(_, c)| *c == caip2)
        .map(|(s, _)| *s)
}

/// The EVM chain id of a network given either as a v1 slug or as an
/// `eip155:` CAIP-2 id.
///
/// ```
/// use pay402_core::x402::network::evm_chain_id;
/// assert_eq!(evm_chain_id("base-sepolia"), Some(84532));
/// assert_eq!(evm_chain_id("eip155:84532"), Some(84532));
/// assert_eq!(evm_chain_id("solana"), None);
/// ```
pub fn evm_chain_id(network: &str) -> Option<u64> {
    let caip = slug_to_caip2(network).unwrap_or(network);
    Caip2::parse(caip).ok()?.evm_chain_id()
}
