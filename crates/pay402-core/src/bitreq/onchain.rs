//! The on-chain method: verifying a presented `Bitcoin-Transaction`, and building one.
//!
//! Verification follows two1's `OnChain.redeem_payment` (first output to the
//! merchant, exact amount, dust floor) and adds what two1 lacked: segwit
//! parsing (txid without witness), an RBF policy, and a minimum fee rate
//! computed from prevout amounts the caller supplies (core cannot look them up).
//! Replay (the txid already seen) and broadcast are the server's business.
//!
//! ```
//! use pay402_core::bitreq::onchain::DUST_LIMIT;
//! assert_eq!(DUST_LIMIT.0, 3000);
//! ```

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode;
use bitcoin::ecdsa;
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Txid, Witness,
};

use crate::money::Sat;

use super::error::BitreqError;
use super::headers::MAX_TX_HEX_LEN;
use super::secp;

/// two1's dust limit and minimum channel output, in satoshis.
pub const DUST_LIMIT: Sat = Sat(3000);

/// How a paid amount is compared with the price.
///
/// ```
/// use pay402_core::bitreq::AmountRule;
/// use pay402_core::money::Sat;
/// assert!(AmountRule::Exact.accepts(Sat(5), Sat(5)));
/// assert!(!AmountRule::Exact.accepts(Sat(6), Sat(5)));
/// assert!(AmountRule::AtLeast.accepts(Sat(6), Sat(5)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AmountRule {
    /// `paid == price` (two1's on-chain rule).
    #[default]
    Exact,
    /// `paid >= price` (two1's channel rule).
    AtLeast,
}

impl AmountRule {
    /// Whether `paid` satisfies `price` under this rule.
    ///
    /// ```
    /// use pay402_core::{bitreq::AmountRule, money::Sat};
    /// assert!(!AmountRule::AtLeast.accepts(Sat(4), Sat(5)));
    /// ```
    pub fn accepts(self, paid: Sat, price: Sat) -> bool {
        match self {
            AmountRule::Exact => paid == price,
            AmountRule::AtLeast => paid >= price,
        }
    }
}

/// The verification policy for on-chain payments.
///
/// ```
/// use pay402_core::bitreq::{AmountRule, OnChainPolicy};
/// let p = OnChainPolicy::default();
/// assert_eq!(p.amount, AmountRule::Exact);
/// assert_eq!(p.dust_limit.0, 3000);
/// assert!(p.reject_rbf);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnChainPolicy {
    /// Exact (default) or at-least.
    pub amount: AmountRule,
    /// The price and the paid output must be at least this (default 3000).
    pub dust_limit: Sat,
    /// Minimum fee rate in sat/vB; 0 disables the check (and the need for input amounts).
    pub min_fee_rate_sat_vb: u64,
    /// Reject transactions signalling BIP125 replace-by-fee (default true).
    pub reject_rbf: bool,
}

impl Default for OnChainPolicy {
    fn default() -> Self {
        OnChainPolicy {
            amount: AmountRule::Exact,
            dust_limit: DUST_LIMIT,
            min_fee_rate_sat_vb: 1,
            reject_rbf: true,
        }
    }
}

/// A verified on-chain payment (not yet checked for replay or broadcast).
///
/// ```
/// # use pay402_core::bitreq::onchain::*;
/// # use pay402_core::bitreq::*;
/// # use pay402_core::money::Sat;
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// # use bitcoin::{CompressedPublicKey, OutPoint, ScriptBuf};
/// # let key = SecretKey::from_slice(&[3; 32]).unwrap();
/// # let pk = CompressedPublicKey(key.public_key(&Secp256k1::new()));
/// # let merchant = ScriptBuf::new_p2wpkh(&CompressedPublicKey(SecretKey::from_slice(&[4; 32]).unwrap().public_key(&Secp256k1::new())).wpubkey_hash());
/// # let utxo = SpendableUtxo { outpoint: OutPoint::null(), amount: Sat(50_000), kind: SpendKind::P2wpkh, key: &key };
/// # let tx = build_payment(&[utxo], &merchant, Sat(5_000), &ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()), Sat(1_000)).unwrap();
/// let v = verify_payment(&bitcoin::consensus::encode::serialize_hex(&tx), &merchant, Sat(5_000),
///     Some(&[Sat(50_000)]), &OnChainPolicy::default()).unwrap();
/// assert_eq!(v.vout, 0);
/// assert_eq!(v.fee, Some(Sat(1_000)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOnChain {
    /// The txid (without witness): the replay key.
    pub txid: Txid,
    /// Index of the output paying the merchant.
    pub vout: u32,
    /// Its value.
    pub amount: Sat,
    /// The fee, if input amounts were given.
    pub fee: Option<Sat>,
    /// The virtual size in vbytes.
    pub vsize: u64,
    /// Whether any input signals BIP125 RBF.
    pub signals_rbf: bool,
    /// The decoded transaction.
    pub tx: Transaction,
}

/// Decodes transaction hex, bounded ([`MAX_TX_HEX_LEN`]), legacy or segwit, no trailing bytes.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, onchain::decode_tx_hex};
/// assert_eq!(decode_tx_hex("zz"), Err(BitreqError::InvalidTransactionHex));
/// assert_eq!(decode_tx_hex("00"), Err(BitreqError::InvalidTransaction));
/// ```
pub fn decode_tx_hex(tx_hex: &str) -> Result<Transaction, BitreqError> {
    let tx_hex = tx_hex.trim_ascii();
    if tx_hex.len() > MAX_TX_HEX_LEN {
        return Err(BitreqError::HeaderTooLong(
            super::headers::BITCOIN_TRANSACTION,
        ));
    }
    let bytes = hex::decode(tx_hex).map_err(|_| BitreqError::InvalidTransactionHex)?;
    encode::deserialize::<Transaction>(&bytes).map_err(|_| BitreqError::InvalidTransaction)
}

/// Verifies a presented transaction pays `merchant` the `price` under `policy`.
///
/// `input_amounts` are the prevout values in input order; they are required
/// when `policy.min_fee_rate_sat_vb > 0` (the fee is `Σin − Σout`).
///
/// ```
/// use pay402_core::bitreq::{BitreqError, OnChainPolicy, onchain::verify_payment};
/// use pay402_core::money::Sat;
/// let merchant = bitcoin::ScriptBuf::new();
/// let e = verify_payment("zz", &merchant, Sat(5000), None, &OnChainPolicy::default());
/// assert_eq!(e.unwrap_err(), BitreqError::InvalidTransactionHex);
/// ```
pub fn verify_payment(
    tx_hex: &str,
    merchant: &bitcoin::Script,
    price: Sat,
    input_amounts: Option<&[Sat]>,
    policy: &OnChainPolicy,
) -> Result<VerifiedOnChain, BitreqError> {
    if price < policy.dust_limit {
        return Err(BitreqError::BelowDust);
    }
    let tx = decode_tx_hex(tx_hex)?;
    verify_payment_tx(tx, merchant, price, input_amounts, policy)
}

/// [`verify_payment`] on an already decoded transaction.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, OnChainPolicy, onchain::verify_payment_tx};
/// use pay402_core::money::Sat;
/// use bitcoin::{Transaction, transaction::Version, absolute::LockTime};
/// let tx = Transaction { version: Version::TWO, lock_time: LockTime::ZERO, input: vec![], output: vec![] };
/// let e = verify_payment_tx(tx, &bitcoin::ScriptBuf::new(), Sat(5000), None, &OnChainPolicy::default());
/// assert_eq!(e.unwrap_err(), BitreqError::NotPaidToMerchant);
/// ```
pub fn verify_payment_tx(
    tx: Transaction,
    merchant: &bitcoin::Script,
    price: Sat,
    input_amounts: Option<&[Sat]>,
    policy: &OnChainPolicy,
) -> Result<VerifiedOnChain, BitreqError> {
    if price < policy.dust_limit {
        return Err(BitreqError::BelowDust);
    }
    let (vout, out) = tx
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey.as_script() == merchant)
        .ok_or(BitreqError::NotPaidToMerchant)?;
    let amount = Sat(out.value.to_sat());
    if amount < policy.dust_limit {
        return Err(BitreqError::BelowDust);
    }
    if !policy.amount.accepts(amount, price) {
        return Err(BitreqError::IncorrectAmount);
    }
    let signals_rbf = tx.is_explicitly_rbf();
    if signals_rbf && policy.reject_rbf {
        return Err(BitreqError::RbfSignaled);
    }
    let vsize = tx.vsize() as u64;
    let fee = match input_amounts {
        Some(ins) => Some(fee_of(&tx, ins)?),
        None => None,
    };
    if policy.min_fee_rate_sat_vb > 0 {
        let fee = fee.ok_or(BitreqError::InputAmountsMismatch)?;
        let need = policy
            .min_fee_rate_sat_vb
            .checked_mul(vsize)
            .ok_or(BitreqError::AmountOverflow)?;
        if fee.0 < need {
            return Err(BitreqError::FeeTooLow);
        }
    }
    Ok(VerifiedOnChain {
        txid: tx.compute_txid(),
        vout: u32::try_from(vout).map_err(|_| BitreqError::InvalidTransaction)?,
        amount,
        fee,
        vsize,
        signals_rbf,
        tx,
    })
}

/// `Σ input_amounts − Σ outputs`.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, onchain::fee_of};
/// use pay402_core::money::Sat;
/// use bitcoin::{Transaction, transaction::Version, absolute::LockTime};
/// let tx = Transaction { version: Version::TWO, lock_time: LockTime::ZERO, input: vec![], output: vec![] };
/// assert_eq!(fee_of(&tx, &[]), Ok(Sat(0)));
/// assert_eq!(fee_of(&tx, &[Sat(1)]), Err(BitreqError::InputAmountsMismatch));
/// ```
pub fn fee_of(tx: &Transaction, input_amounts: &[Sat]) -> Result<Sat, BitreqError> {
    if input_amounts.len() != tx.input.len() {
        return Err(BitreqError::InputAmountsMismatch);
    }
    let ins = input_amounts
        .iter()
        .try_fold(0u64, |a, s| a.checked_add(s.0))
        .ok_or(BitreqError::AmountOverflow)?;
    let outs = tx
        .output
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
        .ok_or(BitreqError::AmountOverflow)?;
    ins.checked_sub(outs)
        .map(Sat)
        .ok_or(BitreqError::OutputsExceedInputs)
}

/// The output type of a UTXO being spent.
///
/// ```
/// assert_ne!(pay402_core::bitreq::SpendKind::P2wpkh, pay402_core::bitreq::SpendKind::P2pkh);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendKind {
    /// Native segwit v0 pay-to-witness-pubkey-hash (compressed key).
    P2wpkh,
    /// Legacy pay-to-pubkey-hash (compressed key), as two1 used.
    P2pkh,
}

/// A UTXO and the key that spends it.
///
/// ```
/// use pay402_core::bitreq::{SpendKind, SpendableUtxo};
/// let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
/// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: pay402_core::money::Sat(1), kind: SpendKind::P2pkh, key: &key };
/// assert_eq!(u.script_pubkey().len(), 25);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SpendableUtxo<'k> {
    /// The output spent.
    pub outpoint: OutPoint,
    /// Its value.
    pub amount: Sat,
    /// Its type.
    pub kind: SpendKind,
    /// The key it pays to.
    pub key: &'k SecretKey,
}

impl SpendableUtxo<'_> {
    /// The compressed public key of [`SpendableUtxo::key`].
    ///
    /// ```
    /// # use pay402_core::bitreq::{SpendKind, SpendableUtxo};
    /// # let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
    /// # let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: pay402_core::money::Sat(1), kind: SpendKind::P2pkh, key: &key };
    /// assert_eq!(u.public_key().to_bytes().len(), 33);
    /// ```
    pub fn public_key(&self) -> CompressedPublicKey {
        CompressedPublicKey(self.key.public_key(secp()))
    }

    /// The script this UTXO is locked with.
    ///
    /// ```
    /// # use pay402_core::bitreq::{SpendKind, SpendableUtxo};
    /// # let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
    /// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: pay402_core::money::Sat(1), kind: SpendKind::P2wpkh, key: &key };
    /// assert!(u.script_pubkey().is_p2wpkh());
    /// ```
    pub fn script_pubkey(&self) -> ScriptBuf {
        let pk = self.public_key();
        match self.kind {
            SpendKind::P2wpkh => ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
            SpendKind::P2pkh => ScriptBuf::new_p2pkh(&PublicKey::from(pk).pubkey_hash()),
        }
    }
}

/// Transaction shape options for [`build_payment_with`].
///
/// ```
/// let o = pay402_core::bitreq::onchain::BuildOptions::default();
/// assert_eq!(o.version, bitcoin::transaction::Version::TWO);
/// assert_eq!(o.sequence, bitcoin::Sequence::ENABLE_LOCKTIME_NO_RBF);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Transaction version (default 2; two1 used 1).
    pub version: Version,
    /// nLockTime (default 0).
    pub lock_time: LockTime,
    /// nSequence of every input (default `0xfffffffe`: no RBF; two1 used `0xffffffff`).
    pub sequence: Sequence,
    /// Change below this is added to the fee instead (default 3000).
    pub dust_limit: Sat,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
            dust_limit: DUST_LIMIT,
        }
    }
}

/// Builds and signs a transaction paying `amount` to `pay_to`, change to
/// `change_to`, with exactly `fee` (plus any sub-dust change), default options.
///
/// Outputs: payment first, then change (if at least the dust limit).
///
/// ```
/// use pay402_core::bitreq::{BitreqError, SpendKind, SpendableUtxo, onchain::build_payment};
/// use pay402_core::money::Sat;
/// let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
/// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: Sat(10_000), kind: SpendKind::P2pkh, key: &key };
/// let to = u.script_pubkey();
/// let tx = build_payment(&[u], &to, Sat(5_000), &to, Sat(500)).unwrap();
/// assert_eq!(tx.output.len(), 2);
/// assert_eq!(build_payment(&[u], &to, Sat(9_999), &to, Sat(500)).unwrap_err(), BitreqError::InsufficientFunds);
/// ```
pub fn build_payment(
    utxos: &[SpendableUtxo<'_>],
    pay_to: &bitcoin::Script,
    amount: Sat,
    change_to: &bitcoin::Script,
    fee: Sat,
) -> Result<Transaction, BitreqError> {
    build_payment_with(
        utxos,
        pay_to,
        amount,
        change_to,
        fee,
        &BuildOptions::default(),
    )
}

/// [`build_payment`] with explicit [`BuildOptions`].
///
/// ```
/// use pay402_core::bitreq::{SpendKind, SpendableUtxo, onchain::{build_payment_with, BuildOptions}};
/// use pay402_core::money::Sat;
/// let key = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
/// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: Sat(10_000), kind: SpendKind::P2wpkh, key: &key };
/// let to = u.script_pubkey();
/// let opts = BuildOptions { version: bitcoin::transaction::Version::ONE, ..Default::default() };
/// let tx = build_payment_with(&[u], &to, Sat(9_000), &to, Sat(1_000), &opts).unwrap();
/// assert_eq!(tx.output.len(), 1);
/// assert_eq!(tx.input[0].witness.len(), 2);
/// ```
pub fn build_payment_with(
    utxos: &[SpendableUtxo<'_>],
    pay_to: &bitcoin::Script,
    amount: Sat,
    change_to: &bitcoin::Script,
    fee: Sat,
    opts: &BuildOptions,
) -> Result<Transaction, BitreqError> {
    let total = utxos
        .iter()
        .try_fold(0u64, |a, u| a.checked_add(u.amount.0))
        .ok_or(BitreqError::AmountOverflow)?;
    let need = amount
        .0
        .checked_add(fee.0)
        .ok_or(BitreqError::AmountOverflow)?;
    let change = total
        .checked_sub(need)
        .ok_or(BitreqError::InsufficientFunds)?;
    let mut output = vec![TxOut {
        value: Amount::from_sat(amount.0),
        script_pubkey: pay_to.to_owned(),
    }];
    if change >= opts.dust_limit.0 && change > 0 {
        output.push(TxOut {
            value: Amount::from_sat(change),
            script_pubkey: change_to.to_owned(),
        });
    }
    let mut tx = Transaction {
        version: opts.version,
        lock_time: opts.lock_time,
        input: utxos
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: opts.sequence,
                witness: Witness::new(),
            })
            .collect(),
        output,
    };
    sign_inputs(&mut tx, utxos)?;
    Ok(tx)
}

/// Signs input `i` of `tx` with `utxos[i]` (SIGHASH_ALL; RFC 6979, low-S).
fn sign_inputs(tx: &mut Transaction, utxos: &[SpendableUtxo<'_>]) -> Result<(), BitreqError> {
    let mut sigs = Vec::with_capacity(utxos.len());
    {
        let mut cache = SighashCache::new(&*tx);
        for (i, u) in utxos.iter().enumerate() {
            let spk = u.script_pubkey();
            let digest: [u8; 32] = match u.kind {
                SpendKind::P2wpkh => cache
                    .p2wpkh_signature_hash(
                        i,
                        &spk,
                        Amount::from_sat(u.amount.0),
                        EcdsaSighashType::All,
                    )
                    .map_err(|_| BitreqError::Sighash)?
                    .to_byte_array(),
                SpendKind::P2pkh => cache
                    .legacy_signature_hash(i, &spk, EcdsaSighashType::All.to_u32())
                    .map_err(|_| BitreqError::Sighash)?
                    .to_byte_array(),
            };
            let sig = secp().sign_ecdsa(&Message::from_digest(digest), u.key);
            sigs.push(ecdsa::Signature::sighash_all(sig));
        }
    }
    for ((input, u), sig) in tx.input.iter_mut().zip(utxos).zip(sigs) {
        let pk = u.public_key();
        match u.kind {
            SpendKind::P2wpkh => input.witness = Witness::p2wpkh(&sig, &pk.0),
            SpendKind::P2pkh => {
                input.script_sig = bitcoin::script::Builder::new()
                    .push_slice(sig.serialize())
                    .push_slice(pk.to_bytes())
                    .into_script();
            }
        }
    }
    Ok(())
}

use bitcoin::hashes::Hash as _;
