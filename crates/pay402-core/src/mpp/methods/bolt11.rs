//! A fast, partial BOLT11 reader for the server's verify path.
//!
//! A paid MPP Lightning request echoes the invoice the server minted, under
//! the server's HMAC. Verification needs only four facts from it: the
//! payment hash, the network, the amount and the expiry. `lightning-invoice`
//! reads everything (every tagged field, routes, features, the signature
//! hash) and costs about 10 µs; this reader decodes the bech32 once,
//! verifies the checksum, and picks out the four facts without allocating.
//! It checks no signature: it is only for invoices the reader's own node
//! minted. Clients use the full reader ([`crate::l402::check_invoice`]).
//! `tests/mpp_bolt11.rs` checks it against `lightning-invoice`.

use crate::lightning::{Network, PaymentHash};
use crate::money::Msat;
use crate::time::UnixTime;

use super::lightning::InvoiceFacts;

/// Longest invoice read (the L402 reader's bound).
const MAX_LEN: usize = crate::l402::invoice::MAX_INVOICE_LEN;
/// The signature and recovery id: 520 bits = 104 groups of 5.
const SIG_GROUPS: usize = 104;
/// The bech32 checksum: 6 groups.
const CHECKSUM_GROUPS: usize = 6;
/// BOLT11's default expiry.
const DEFAULT_EXPIRY: u64 = 3600;

/// bech32 character → 5-bit value (either case); 0xff for anything else.
const GROUPS: [u8; 128] = {
    const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let mut t = [0xffu8; 128];
    let mut i = 0;
    while i < 32 {
        t[CHARSET[i] as usize] = i as u8;
        t[CHARSET[i].to_ascii_uppercase() as usize] = i as u8;
        i += 1;
    }
    t
};

fn group(c: u8) -> Option<u8> {
    match GROUPS.get(usize::from(c)) {
        Some(&g) if g != 0xff => Some(g),
        _ => None,
    }
}

fn polymod_step(chk: u32, v: u8) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let top = chk >> 25;
    let mut chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
    for (i, g) in GEN.iter().enumerate() {
        if (top >> i) & 1 == 1 {
            chk ^= g;
        }
    }
    chk
}

fn network_of(prefix: &str) -> Option<Option<Network>> {
    // BOLT11 currency prefixes, longest first. `Some(None)`: a currency the
    // MPP method has no name for (testnet, simnet).
    match prefix {
        "bcrt" => Some(Some(Network::Regtest)),
        "bc" => Some(Some(Network::Bitcoin)),
        "tbs" => Some(Some(Network::Signet)),
        "tb" | "sb" => Some(None),
        _ => None,
    }
}

/// Splits `ln<currency><amount>` into the network and the amount in msat.
fn read_hrp(hrp: &str) -> Option<(Option<Network>, Option<Msat>)> {
    let rest = hrp.strip_prefix("ln")?;
    let split = rest
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (cur, amount) = rest.split_at(split);
    let network = network_of(cur)?;
    if amount.is_empty() {
        return Some((network, None));
    }
    let (digits, mult) = match amount.as_bytes().last() {
        Some(b'm' | b'u' | b'n' | b'p') => amount.split_at(amount.len() - 1),
        _ => (amount, ""),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    // Pico-bitcoin per unit, then msat = pico / 10 (a pico amount must be whole msat).
    let pico_per: u64 = match mult {
        "m" => 1_000_000_000,
        "u" => 1_000_000,
        "n" => 1_000,
        "p" => 1,
        _ => 1_000_000_000_000,
    };
    let pico = n.checked_mul(pico_per)?;
    if pico % 10 != 0 {
        return None;
    }
    Some((network, Some(Msat(pico / 10))))
}

fn read_int(groups: &[u8]) -> Option<u64> {
    if groups.len() > 12 {
        return None;
    }
    Some(
        groups
            .iter()
            .fold(0u64, |acc, &g| (acc << 5) | u64::from(g)),
    )
}

/// Reads the four facts of a BOLT11 invoice (see the module docs).
///
/// ```
/// use pay402_core::mpp::methods::bolt11::read;
/// assert!(read("lnbc1nope").is_none());
/// ```
pub fn read(bolt11: &str) -> Option<InvoiceFacts> {
    let b = bolt11.as_bytes();
    if b.len() > MAX_LEN || b.len() < 8 {
        return None;
    }
    // bech32 is all lower or all upper case.
    let lower = b.iter().any(u8::is_ascii_lowercase);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    if lower && upper {
        return None;
    }
    let sep = b.iter().rposition(|&c| c == b'1')?;
    let hrp = bolt11.get(..sep)?.to_ascii_lowercase();
    let data = &b[sep + 1..];
    if hrp.is_empty() || data.len() < 7 + SIG_GROUPS + CHECKSUM_GROUPS {
        return None;
    }
    let (network, amount) = read_hrp(&hrp)?;
    // Checksum over the expanded hrp and the data.
    let mut chk = 1u32;
    for &c in hrp.as_bytes() {
        chk = polymod_step(chk, c >> 5);
    }
    chk = polymod_step(chk, 0);
    for &c in hrp.as_bytes() {
        chk = polymod_step(chk, c & 31);
    }
    let mut groups = [0u8; MAX_LEN];
    for (i, &c) in data.iter().enumerate() {
        let g = group(c)?;
        groups[i] = g;
        chk = polymod_step(chk, g);
    }
    if chk != 1 {
        return None;
    }
    let body = &groups[..data.len() - CHECKSUM_GROUPS - SIG_GROUPS];
    let timestamp = read_int(&body[..7])?;
    let mut fields = &body[7..];
    let mut hash = None;
    let mut expiry = None;
    while !fields.is_empty() {
        if fields.len() < 3 {
            return None;
        }
        let tag = fields[0];
        let len = usize::from(fields[1]) << 5 | usize::from(fields[2]);
        let value = fields.get(3..3 + len)?;
        match tag {
            // 'p': exactly 52 groups hold the 256-bit hash (others are skipped, per BOLT11).
            1 if len == 52 && hash.is_none() => {
                let mut out = [0u8; 32];
                let mut acc = 0u32;
                let mut bits = 0;
                let mut n = 0;
                for &g in value {
                    acc = (acc << 5) | u32::from(g);
                    bits += 5;
                    if bits >= 8 && n < 32 {
                        bits -= 8;
                        out[n] = (acc >> bits) as u8;
                        n += 1;
                    }
                }
                hash = Some(PaymentHash(out));
            }
            // 'x': expiry in seconds.
            6 if expiry.is_none() => expiry = Some(read_int(value)?),
            _ => {}
        }
        fields = &fields[3 + len..];
    }
    let expires_at = timestamp.saturating_add(expiry.unwrap_or(DEFAULT_EXPIRY));
    Some(InvoiceFacts {
        amount,
        payment_hash: hash?,
        network,
        expires_at: UnixTime(expires_at),
    })
}
