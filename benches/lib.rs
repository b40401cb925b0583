//! Fixtures shared by the pay402 benchmarks.
//!
//! The token is shaped like one Aperture mints: a 66-byte identifier, location
//! `lsat`, and three caveats (services, capabilities, valid_until).

use pay402_core::l402::{
    Challenge, Credential, Identifier, Macaroon, RootKey, Scheme, TokenId, caveat,
};
use pay402_core::lightning::Preimage;
use pay402_core::time::UnixTime;

/// The service name used by every fixture.
pub const SERVICE: &str = "bench";

/// A BOLT11-shaped string of realistic length (header benchmarks never
/// decode the invoice, so only its size and characters matter).
pub const INVOICE: &str = "lnbcrt1u1pnxyz4hpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdqjdpjkcmr0yptk7unvvscqzzsxqyz5vqsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qyyssqy4lgd8tj637qcjp05rdpxxykjenthxftej7a2zzmwrmrl70fyj9hvj0rewhzj7jfyuwkwcg9g2jpwtk8wr2tqs29rxdalqxzmp6g5hqpkvt4sq";

/// Everything a benchmark needs about one valid token.
#[derive(Debug)]
pub struct Fixture {
    /// The token's root key.
    pub root: RootKey,
    /// The minted macaroon.
    pub macaroon: Macaroon,
    /// The macaroon in standard base64.
    pub macaroon_b64: String,
    /// `Authorization` value: `L402 <mac>:<preimage>`.
    pub authorization: String,
    /// `WWW-Authenticate` values as Aperture sends them (LSAT, then L402).
    pub challenges: [String; 2],
    /// The token id.
    pub token_id: TokenId,
    /// A time at which the token is valid.
    pub now: UnixTime,
}

/// Builds the fixture.
pub fn fixture() -> Fixture {
    let root = RootKey::from_bytes([0x42; 32]);
    let preimage = Preimage::from_bytes([0x17; 32]);
    let token_id = TokenId([0x99; 32]);
    let id = Identifier::new(preimage.payment_hash(), token_id);
    let mut macaroon = Macaroon::new(&root, Some("lsat"), &id.encode());
    macaroon.add_first_party_caveat(caveat::build::services(SERVICE, 0));
    macaroon.add_first_party_caveat(caveat::build::capabilities(SERVICE, &["read", "write"]));
    macaroon.add_first_party_caveat(caveat::build::valid_until(SERVICE, UnixTime(4_000_000_000)));
    let macaroon_b64 = macaroon.to_base64();
    let authorization = Credential::new(&macaroon_b64, preimage).to_header_value();
    let ch = Challenge::new(macaroon_b64.as_str(), INVOICE);
    let challenges = [
        ch.to_header_value(Scheme::Lsat),
        ch.to_header_value(Scheme::L402),
    ];
    Fixture {
        root,
        macaroon,
        macaroon_b64,
        authorization,
        challenges,
        token_id,
        now: UnixTime(1_800_000_000),
    }
}
