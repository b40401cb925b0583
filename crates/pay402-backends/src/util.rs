//! Small helpers shared by the backends.

use lightning_invoice::Currency;
use pay402_core::lightning::Network;

/// The BOLT11 currency for a bitcoin network.
///
/// Unlike `Currency::from(Network)`, this never hits a debug assertion for
/// networks newer than `lightning-invoice` (testnet4 uses the testnet prefix).
#[allow(dead_code)] // not every feature combination uses every helper
pub(crate) fn currency_for(network: Network) -> Currency {
    match network {
        Network::Bitcoin => Currency::Bitcoin,
        Network::Signet => Currency::Signet,
        Network::Regtest => Currency::Regtest,
        // Both testnets share the `tb` prefix.
        Network::Testnet | Network::Testnet4 => Currency::BitcoinTestnet,
    }
}

/// A short human name for a currency, for error messages.
#[allow(dead_code)]
pub(crate) fn currency_name(currency: Currency) -> &'static str {
    match currency {
        Currency::Bitcoin => "bitcoin",
        Currency::BitcoinTestnet => "testnet",
        Currency::Regtest => "regtest",
        Currency::Simnet => "simnet",
        Currency::Signet => "signet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_mapping_covers_testnet4() {
        assert_eq!(currency_for(Network::Testnet4), Currency::BitcoinTestnet);
        assert_eq!(currency_for(Network::Regtest), Currency::Regtest);
        assert_eq!(currency_name(currency_for(Network::Bitcoin)), "bitcoin");
    }
}
