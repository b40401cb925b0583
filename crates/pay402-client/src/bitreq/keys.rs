//! The wallet's BIP32 keys: `m/84'/coin'/account'/{0,1}/index`, erased on drop.
//!
//! Only the two chain-level extended keys (external `…/0` and internal
//! `…/1`) are kept; every address key is derived from them on demand and
//! erased when its [`PrivateKey`] is dropped. The seed itself is never kept.
//! Erasure is best effort: `bitcoin::bip32::Xpriv` is `Copy`, so the
//! temporaries of a derivation may stay on the stack.

use std::fmt;

use bitcoin::bip32::{ChainCode, ChildNumber, Fingerprint, Xpriv};
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Network, NetworkKind};

use super::error::WalletError;

/// The BIP43 purpose used for the account path (BIP84, native segwit).
pub const PURPOSE: u32 = 84;

/// Which BIP32 chain of the account a key is on.
///
/// ```
/// use pay402_client::bitreq::KeyChain;
/// assert_eq!(KeyChain::External.index(), 0);
/// assert_eq!(KeyChain::Internal.index(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyChain {
    /// `…/0/i`: receive addresses, the bit-transfer key (index 0) and the
    /// channel keys.
    External,
    /// `…/1/i`: change.
    Internal,
}

impl KeyChain {
    /// The BIP32 child number of the chain (0 or 1).
    ///
    /// ```
    /// assert_eq!(pay402_client::bitreq::KeyChain::Internal.index(), 1);
    /// ```
    pub const fn index(self) -> u32 {
        match self {
            KeyChain::External => 0,
            KeyChain::Internal => 1,
        }
    }
}

/// A derived private key; erased when dropped, redacted in `Debug`.
pub(crate) struct PrivateKey(SecretKey);

impl PrivateKey {
    pub(crate) fn secret(&self) -> &SecretKey {
        &self.0
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

fn erase(x: &mut Xpriv) {
    x.private_key.non_secure_erase();
    x.chain_code = ChainCode::from([0u8; 32]);
}

/// The account's two chain keys.
pub(crate) struct AccountKeys {
    secp: Secp256k1<All>,
    external: Xpriv,
    internal: Xpriv,
    fingerprint: Fingerprint,
}

impl Drop for AccountKeys {
    fn drop(&mut self) {
        erase(&mut self.external);
        erase(&mut self.internal);
    }
}

impl fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeys")
            .field("master_fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn hardened(i: u32) -> Result<ChildNumber, WalletError> {
    ChildNumber::from_hardened_idx(i).map_err(|e| WalletError::KeyDerivation(e.to_string()))
}

fn normal(i: u32) -> Result<ChildNumber, WalletError> {
    ChildNumber::from_normal_idx(i).map_err(|e| WalletError::KeyDerivation(e.to_string()))
}

impl AccountKeys {
    /// Derives `m/84'/coin'/account'/0` and `…/1` from a 16–64 byte seed
    /// (coin 0 on mainnet, 1 elsewhere).
    pub(crate) fn from_seed(
        seed: &[u8],
        network: Network,
        account: u32,
    ) -> Result<AccountKeys, WalletError> {
        if !(16..=64).contains(&seed.len()) {
            return Err(WalletError::InvalidSeed("a BIP32 seed has 16 to 64 bytes"));
        }
        let secp = Secp256k1::new();
        let kind = NetworkKind::from(network);
        let coin = if kind == NetworkKind::Main { 0 } else { 1 };
        let mut master =
            Xpriv::new_master(kind, seed).map_err(|e| WalletError::KeyDerivation(e.to_string()))?;
        let fingerprint = master.fingerprint(&secp);
        let path = [hardened(PURPOSE)?, hardened(coin)?, hardened(account)?];
        let derived = master.derive_priv(&secp, &path);
        erase(&mut master);
        let mut acct = derived.map_err(|e| WalletError::KeyDerivation(e.to_string()))?;
        let external = acct.derive_priv(&secp, &[normal(0)?]);
        let internal = acct.derive_priv(&secp, &[normal(1)?]);
        erase(&mut acct);
        let keys = AccountKeys {
            external: external.map_err(|e| WalletError::KeyDerivation(e.to_string()))?,
            internal: internal.map_err(|e| WalletError::KeyDerivation(e.to_string()))?,
            fingerprint,
            secp,
        };
        Ok(keys)
    }

    /// The private key at `chain/index`.
    pub(crate) fn private(&self, chain: KeyChain, index: u32) -> Result<PrivateKey, WalletError> {
        let parent = match chain {
            KeyChain::External => &self.external,
            KeyChain::Internal => &self.internal,
        };
        let mut child = parent
            .derive_priv(&self.secp, &[normal(index)?])
            .map_err(|e| WalletError::KeyDerivation(e.to_string()))?;
        let key = PrivateKey(child.private_key);
        erase(&mut child);
        Ok(key)
    }

    /// The public key at `chain/index`.
    pub(crate) fn public(&self, chain: KeyChain, index: u32) -> Result<PublicKey, WalletError> {
        let key = self.private(chain, index)?;
        Ok(key.secret().public_key(&self.secp))
    }

    /// The master key's fingerprint.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::bip32::DerivationPath;
    use std::str::FromStr;

    #[test]
    fn matches_plain_bip32_derivation() {
        let seed = [7u8; 32];
        let keys = AccountKeys::from_seed(&seed, Network::Regtest, 0).unwrap();
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(NetworkKind::Test, &seed).unwrap();
        let path = DerivationPath::from_str("m/84'/1'/0'/1/5").unwrap();
        let expected = master.derive_priv(&secp, &path).unwrap().private_key;
        assert_eq!(
            *keys.private(KeyChain::Internal, 5).unwrap().secret(),
            expected
        );
        assert_eq!(keys.fingerprint(), master.fingerprint(&secp));
        assert!(!format!("{keys:?}").contains(&expected.display_secret().to_string()));
        assert!(AccountKeys::from_seed(&[1; 8], Network::Regtest, 0).is_err());
        assert!(keys.private(KeyChain::External, 1 << 31).is_err());
    }
}
