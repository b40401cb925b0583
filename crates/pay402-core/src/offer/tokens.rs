//! Tokens whose decimals are known without being told.

use crate::rates::TokenUnit;

/// USDC (6 decimals) on the chains the x402 reference clients know by
/// default: `(CAIP-2 network, token contract)`.
///
/// ```
/// assert!(pay402_core::offer::KNOWN_TOKENS.iter().any(|(n, _)| *n == "eip155:8453"));
/// ```
pub const KNOWN_TOKENS: &[(&str, &str)] = &[
    ("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
    ("eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
];

/// The unit of a [`KNOWN_TOKENS`] entry (asset compared case-insensitively).
///
/// ```
/// use pay402_core::offer::known_token;
/// let usdc = known_token("eip155:8453", "0x833589FCD6EDB6E08F4C7C32D4F71B54BDA02913").unwrap();
/// assert_eq!(usdc.decimals(), 6);
/// assert!(known_token("eip155:1", "0xab").is_none());
/// ```
pub fn known_token(network: &str, asset: &str) -> Option<TokenUnit> {
    KNOWN_TOKENS
        .iter()
        .find(|(n, a)| *n == network && a.eq_ignore_ascii_case(asset))
        .map(|(n, a)| TokenUnit::new(*n, a, 6))
}
