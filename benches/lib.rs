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

/// An error of the load benchmark's binaries (`benches/load/`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Pays the L402 challenge among the `WWW-Authenticate` headers of a 402
/// with `wallet` and returns the paid token's `Authorization` value (the
/// load benchmark's binaries buy their tokens this way).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use pay402_backends::simnet::SimNet;
/// use pay402_core::l402::{Challenge, Scheme};
/// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, Network};
/// use pay402_core::money::Msat;
/// let net = SimNet::new(Network::Regtest);
/// let merchant = net.add_node("merchant", Msat(0));
/// let wallet = net.add_node("payer", Msat(1_000_000));
/// let invoice = merchant.create_invoice(&InvoiceRequest::new(Msat(1_000), "bench")).await.unwrap();
/// let f = pay402_benches::fixture();
/// let header = Challenge::new(f.macaroon_b64.as_str(), invoice.bolt11.as_str()).to_header_value(Scheme::L402);
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::WWW_AUTHENTICATE, header.parse().unwrap());
/// let auth = pay402_benches::pay_l402_challenge(&headers, &wallet).await.unwrap();
/// assert!(auth.starts_with("L402 "));
/// # }
/// ```
pub async fn pay_l402_challenge(
    headers: &http::HeaderMap,
    wallet: &impl pay402_core::lightning::LightningPayer,
) -> Result<String, BoxError> {
    let values: Vec<&[u8]> = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let set = pay402_core::l402::ChallengeSet::parse(values)?;
    let ch = set.l402()?;
    let paid = wallet
        .pay_invoice(&pay402_core::lightning::PayRequest::new(
            ch.invoice(),
            pay402_core::money::Msat(0),
        ))
        .await?;
    Ok(Credential::new(ch.macaroon(), paid.preimage).to_header_value())
}

/// Runs a load-benchmark binary's `main` future on a multi-threaded tokio
/// runtime (`TOKIO_WORKER_THREADS` threads, else one per core); an error is
/// printed and exits with status 1.
///
/// ```
/// let code = pay402_benches::run_main(async { Ok(()) });
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// ```
pub fn run_main(
    fut: impl std::future::Future<Output = Result<(), BoxError>>,
) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
