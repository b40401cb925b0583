//! Payment channel protocol v2 (two1, CLTV): templates, token and close signature.
//!
//! Redeem script (§4.2):
//! `OP_IF <merchant> OP_CHECKSIGVERIFY OP_ELSE <expiry> OP_CHECKLOCKTIMEVERIFY
//! OP_DROP OP_ENDIF <customer> OP_CHECKSIG`, paid to by a P2SH deposit output.
//!
//! two1 pushed the expiry as raw little-endian bytes, which reads as a negative
//! script number once bit 31 is set (after January 2038); [`ExpiryEncoding`]
//! makes the choice explicit: [`ExpiryEncoding::Two1Raw`] reproduces two1 byte
//! for byte, [`ExpiryEncoding::ScriptNum`] is the fixed, minimal CScriptNum
//! encoding (identical bytes before 2038).
//!
//! Transactions (version 1, legacy sighash with the redeem script as scriptCode):
//! - refund: nSequence `0xfffffffe`, nLockTime = expiry, one P2PKH output to
//!   the customer worth `deposit − fee`; scriptSig `<sig> <false> <redeem>`;
//! - payment: nSequence `0xffffffff`, locktime 0, outputs
//!   `P2PKH(merchant) = amount`, `P2PKH(customer) = deposit − fee − amount`;
//!   half-signed scriptSig `<custsig> OP_1 <redeem>`, completed by the merchant
//!   as `<custsig> <merchsig> OP_1 <redeem>`.
//!
//! The channel token is the txid of the **half-signed** payment; the close
//! signature is DER ECDSA by the customer over SHA-256 of the ASCII deposit txid.
//!
//! ```
//! use pay402_core::bitreq::channel::{MIN_OUTPUT_AMOUNT, deposit_output_value};
//! use pay402_core::money::Sat;
//! let v = deposit_output_value(Sat(100_000), MIN_OUTPUT_AMOUNT, Sat(125_000)).unwrap();
//! assert_eq!(v, Sat(228_000));
//! ```

use bitcoin::absolute::LockTime;
use bitcoin::blockdata::opcodes::all as op;
use bitcoin::ecdsa;
use bitcoin::hashes::Hash as _;
use bitcoin::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::secp256k1::{Message, PublicKey, SecretKey, ecdsa::Signature};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use sha2::{Digest, Sha256};

use crate::money::Sat;

use super::error::BitreqError;
use super::secp;

/// two1's production minimum output of a payment transaction (`PAYMENT_TX_MIN_OUTPUT_AMOUNT`).
pub const MIN_OUTPUT_AMOUNT: Sat = Sat(3000);
/// two1's default channel fee (`TWO1_CHANNELS_FEE`).
pub const DEFAULT_CHANNEL_FEE: Sat = Sat(125_000);
/// Lock times at or above this are UNIX times (BIP 65 / nLockTime threshold).
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// How the expiry is pushed in the redeem script.
///
/// ```
/// use pay402_core::bitreq::ExpiryEncoding;
/// assert_eq!(ExpiryEncoding::Two1Raw.encode(1450223410), vec![0x32, 0xa7, 0x70, 0x56]);
/// assert_eq!(ExpiryEncoding::ScriptNum.encode(1450223410), vec![0x32, 0xa7, 0x70, 0x56]);
/// // After 2038 they differ: two1's bytes read as a negative number.
/// assert_eq!(ExpiryEncoding::Two1Raw.encode(0x8000_0000), vec![0, 0, 0, 0x80]);
/// assert_eq!(ExpiryEncoding::ScriptNum.encode(0x8000_0000), vec![0, 0, 0, 0x80, 0]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpiryEncoding {
    /// two1's encoding: raw little-endian in `ceil(bits/8)` bytes. Byte-exact with two1.
    #[default]
    Two1Raw,
    /// Minimal CScriptNum (adds a `0x00` byte when bit 31 is set). The refund
    /// built with this flavor also uses `OP_0` for the false branch (§8).
    ScriptNum,
}

impl ExpiryEncoding {
    /// The pushed bytes for `expiry`.
    ///
    /// ```
    /// assert_eq!(pay402_core::bitreq::ExpiryEncoding::Two1Raw.encode(0x01_0000).len(), 3);
    /// ```
    pub fn encode(self, expiry: u32) -> Vec<u8> {
        let bytes = expiry.to_le_bytes();
        let len = (32 - expiry.leading_zeros()).div_ceil(8) as usize;
        let mut v = bytes.get(..len).unwrap_or(&bytes).to_vec();
        if self == ExpiryEncoding::ScriptNum && v.last().is_some_and(|b| b & 0x80 != 0) {
            v.push(0);
        }
        v
    }
}

/// The v2 channel redeem script.
///
/// ```
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
/// let s = Secp256k1::new();
/// let m = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
/// let c = SecretKey::from_slice(&[2; 32]).unwrap().public_key(&s);
/// let r = RedeemScript::new(m, c, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// let script = r.to_script();
/// assert_eq!(script.len(), 80);
/// assert_eq!(RedeemScript::parse(&script).unwrap(), r);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedeemScript {
    /// The merchant's key (payment branch).
    pub merchant: PublicKey,
    /// The customer's key (both branches).
    pub customer: PublicKey,
    /// The CLTV expiry, a UNIX time.
    pub expiry: u32,
    /// How the expiry is encoded.
    pub encoding: ExpiryEncoding,
}

impl RedeemScript {
    /// A redeem script; the expiry must be a UNIX time (≥ 500 000 000).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
    /// # let s = Secp256k1::new();
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
    /// assert!(RedeemScript::new(k, k, 100, ExpiryEncoding::ScriptNum).is_err());
    /// ```
    pub fn new(
        merchant: PublicKey,
        customer: PublicKey,
        expiry: u32,
        encoding: ExpiryEncoding,
    ) -> Result<RedeemScript, BitreqError> {
        if expiry < LOCKTIME_THRESHOLD {
            return Err(BitreqError::InvalidChannelParameter);
        }
        Ok(RedeemScript {
            merchant,
            customer,
            expiry,
            encoding,
        })
    }

    /// The script bytes.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
    /// # let s = Secp256k1::new();
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
    /// let r = RedeemScript::new(k, k, 0x8000_0000, ExpiryEncoding::ScriptNum).unwrap();
    /// assert_eq!(r.to_script().len(), 81);
    /// ```
    pub fn to_script(&self) -> ScriptBuf {
        let mut t = PushBytesBuf::new();
        // At most 5 bytes: always fits a push.
        let _ = t.extend_from_slice(&self.encoding.encode(self.expiry));
        Builder::new()
            .push_opcode(op::OP_IF)
            .push_slice(self.merchant.serialize())
            .push_opcode(op::OP_CHECKSIGVERIFY)
            .push_opcode(op::OP_ELSE)
            .push_slice(t)
            .push_opcode(op::OP_CLTV)
            .push_opcode(op::OP_DROP)
            .push_opcode(op::OP_ENDIF)
            .push_slice(self.customer.serialize())
            .push_opcode(op::OP_CHECKSIG)
            .into_script()
    }

    /// The deposit output script: P2SH of the redeem script.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ExpiryEncoding, RedeemScript};
    /// # let s = Secp256k1::new();
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
    /// let r = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// assert!(r.p2sh_script_pubkey().is_p2sh());
    /// ```
    pub fn p2sh_script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2sh(&self.to_script().script_hash())
    }

    /// Parses a v2 redeem script (either expiry encoding).
    ///
    /// ```
    /// use pay402_core::bitreq::{BitreqError, RedeemScript};
    /// assert_eq!(RedeemScript::parse(bitcoin::Script::new()), Err(BitreqError::InvalidRedeemScript));
    /// ```
    pub fn parse(script: &Script) -> Result<RedeemScript, BitreqError> {
        let b = script.as_bytes();
        let bad = BitreqError::InvalidRedeemScript;
        let n = *b.get(37).ok_or(bad.clone())? as usize;
        if !(n == 4 || n == 5) || b.len() != 76 + n {
            return Err(bad);
        }
        let head_ok = b.first() == Some(&0x63)
            && b.get(1) == Some(&0x21)
            && b.get(35) == Some(&0xad)
            && b.get(36) == Some(&0x67);
        let tail = b.get(38 + n..).ok_or(bad.clone())?;
        let tail_ok =
            tail.get(..4) == Some(&[0xb1, 0x75, 0x68, 0x21][..]) && tail.last() == Some(&0xac);
        if !head_ok || !tail_ok {
            return Err(bad);
        }
        let t = b.get(38..38 + n).ok_or(bad.clone())?;
        let mut le = [0u8; 4];
        le.copy_from_slice(t.get(..4).ok_or(bad.clone())?);
        let expiry = u32::from_le_bytes(le);
        let encoding = if n == 5 {
            ExpiryEncoding::ScriptNum
        } else {
            ExpiryEncoding::Two1Raw
        };
        if encoding.encode(expiry) != t {
            return Err(bad);
        }
        let merchant = PublicKey::from_slice(b.get(2..35).ok_or(bad.clone())?)
            .map_err(|_| BitreqError::InvalidPublicKey)?;
        let customer = PublicKey::from_slice(tail.get(4..37).ok_or(bad.clone())?)
            .map_err(|_| BitreqError::InvalidPublicKey)?;
        RedeemScript::new(merchant, customer, expiry, encoding)
    }
}

/// The value of the deposit output: `deposit + min_output + fee` (two1's walletwrapper).
///
/// ```
/// use pay402_core::{bitreq::channel::deposit_output_value, money::Sat};
/// assert_eq!(deposit_output_value(Sat(100_000), Sat(1_000), Sat(10_000)), Some(Sat(111_000)));
/// ```
pub fn deposit_output_value(deposit: Sat, min_output: Sat, fee: Sat) -> Option<Sat> {
    deposit
        .0
        .checked_add(min_output.0)?
        .checked_add(fee.0)
        .map(Sat)
}

/// two1's minimum channel duration at `open` (`TWO1_CHANNELS_MIN_DURATION`, 4 days).
pub const MIN_CHANNEL_DURATION_SECS: u64 = 4 * 24 * 3600;

/// Builds and signs a deposit (client side) as two1 did: version 1,
/// nSequence `0xffffffff`, paying `value` (see [`deposit_output_value`]) to
/// P2SH(redeem) as output 0, change (if not dust) to `change_to`, `tx_fee` to miners.
///
/// ```
/// use pay402_core::bitreq::{ExpiryEncoding, RedeemScript, SpendKind, SpendableUtxo, channel::build_deposit};
/// use pay402_core::money::Sat;
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// let key = SecretKey::from_slice(&[1; 32]).unwrap();
/// let k = key.public_key(&Secp256k1::new());
/// let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: Sat(200_000), kind: SpendKind::P2pkh, key: &key };
/// let tx = build_deposit(&[u], &redeem, Sat(111_000), &u.script_pubkey(), Sat(2_000)).unwrap();
/// assert!(tx.output[0].script_pubkey.is_p2sh());
/// assert_eq!(tx.output[1].value.to_sat(), 87_000);
/// ```
pub fn build_deposit(
    utxos: &[super::SpendableUtxo<'_>],
    redeem: &RedeemScript,
    value: Sat,
    change_to: &Script,
    tx_fee: Sat,
) -> Result<Transaction, BitreqError> {
    let opts = super::onchain::BuildOptions {
        version: Version::ONE,
        sequence: Sequence::MAX,
        ..Default::default()
    };
    super::onchain::build_payment_with(
        utxos,
        &redeem.p2sh_script_pubkey(),
        value,
        change_to,
        tx_fee,
        &opts,
    )
}

/// The server's `open` checks (§4.4) on a presented deposit and redeem script:
/// the script is a v2 redeem script for `merchant`, the deposit has an output
/// paying P2SH of it, and the expiry is at least `now + min_duration − 1`.
/// Returns the deposit outpoint and value (two1 stores the value as `amount`).
/// Replay of the deposit txid and confirmation are the server's business.
///
/// ```
/// use pay402_core::bitreq::{BitreqError, ExpiryEncoding, RedeemScript, SpendKind, SpendableUtxo};
/// use pay402_core::bitreq::channel::{build_deposit, verify_deposit, MIN_CHANNEL_DURATION_SECS};
/// use pay402_core::money::Sat;
/// use pay402_core::time::UnixTime;
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// let key = SecretKey::from_slice(&[1; 32]).unwrap();
/// let k = key.public_key(&Secp256k1::new());
/// let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// let u = SpendableUtxo { outpoint: bitcoin::OutPoint::null(), amount: Sat(111_000), kind: SpendKind::P2pkh, key: &key };
/// let tx = build_deposit(&[u], &redeem, Sat(111_000), &u.script_pubkey(), Sat(0)).unwrap();
/// let now = UnixTime(1_450_223_410 - MIN_CHANNEL_DURATION_SECS);
/// let (outpoint, value) = verify_deposit(&tx, &redeem.to_script(), &k, now, MIN_CHANNEL_DURATION_SECS).unwrap();
/// assert_eq!((outpoint.vout, value), (0, Sat(111_000)));
/// let late = UnixTime(now.0 + 2);
/// assert_eq!(verify_deposit(&tx, &redeem.to_script(), &k, late, MIN_CHANNEL_DURATION_SECS).unwrap_err(),
///     BitreqError::InvalidChannelParameter);
/// ```
pub fn verify_deposit(
    deposit: &Transaction,
    redeem_script: &Script,
    merchant: &PublicKey,
    now: crate::time::UnixTime,
    min_duration_secs: u64,
) -> Result<(OutPoint, Sat), BitreqError> {
    let redeem = RedeemScript::parse(redeem_script)?;
    if redeem.merchant != *merchant {
        return Err(BitreqError::InvalidRedeemScript);
    }
    let earliest = now.0.saturating_add(min_duration_secs).saturating_sub(1);
    if u64::from(redeem.expiry) < earliest {
        return Err(BitreqError::InvalidChannelParameter);
    }
    let p2sh = ScriptBuf::new_p2sh(&redeem_script.script_hash());
    let (vout, out) = deposit
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == p2sh)
        .ok_or(BitreqError::NotPaidToMerchant)?;
    let vout = u32::try_from(vout).map_err(|_| BitreqError::InvalidTransaction)?;
    Ok((
        OutPoint::new(deposit.compute_txid(), vout),
        Sat(out.value.to_sat()),
    ))
}

/// An open channel as both sides see it: the script, the deposit output and the fee.
///
/// ```
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
/// use pay402_core::money::Sat;
/// # let s = Secp256k1::new();
/// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
/// let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
///     fee: Sat(10_000), min_output: Sat(1_000) };
/// assert_eq!(p.payment_template(Sat(1_000)).unwrap().output[1].value.to_sat(), 100_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelParams {
    /// The redeem script.
    pub redeem: RedeemScript,
    /// The deposit's P2SH output.
    pub deposit: OutPoint,
    /// Its value.
    pub deposit_value: Sat,
    /// The fee left to miners by refund and payment transactions.
    pub fee: Sat,
    /// The minimum value of every payment output (3000 in production).
    pub min_output: Sat,
}

impl ChannelParams {
    fn input(&self, sequence: Sequence) -> TxIn {
        TxIn {
            previous_output: self.deposit,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        }
    }

    fn sighash(&self, tx: &Transaction) -> Result<Message, BitreqError> {
        let h = SighashCache::new(tx)
            .legacy_signature_hash(0, &self.redeem.to_script(), EcdsaSighashType::All.to_u32())
            .map_err(|_| BitreqError::Sighash)?;
        Ok(Message::from_digest(h.to_byte_array()))
    }

    fn p2pkh(pk: &PublicKey) -> ScriptBuf {
        ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(*pk).pubkey_hash())
    }

    /// The customer's refund, signed (kept by the customer; valid after the expiry).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let s = Secp256k1::new();
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&s);
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let refund = p.refund(&key).unwrap();
    /// assert_eq!(refund.lock_time.to_consensus_u32(), 1_450_223_410);
    /// assert_eq!(refund.output[0].value.to_sat(), 101_000);
    /// ```
    pub fn refund(&self, customer_key: &SecretKey) -> Result<Transaction, BitreqError> {
        let value = self
            .deposit_value
            .0
            .checked_sub(self.fee.0)
            .ok_or(BitreqError::InsufficientFunds)?;
        let mut tx = Transaction {
            version: Version::ONE,
            lock_time: LockTime::from_consensus(self.redeem.expiry),
            input: vec![self.input(Sequence::ENABLE_LOCKTIME_NO_RBF)],
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: Self::p2pkh(&self.redeem.customer),
            }],
        };
        let sig =
            ecdsa::Signature::sighash_all(secp().sign_ecdsa(&self.sighash(&tx)?, customer_key));
        let b = Builder::new().push_slice(sig.serialize());
        let b = match self.redeem.encoding {
            ExpiryEncoding::Two1Raw => b.push_slice([0u8]),
            ExpiryEncoding::ScriptNum => b.push_opcode(op::OP_PUSHBYTES_0),
        };
        let redeem = push_bytes(self.redeem.to_script().into_bytes())?;
        if let Some(input) = tx.input.first_mut() {
            input.script_sig = b.push_slice(redeem).into_script();
        }
        Ok(tx)
    }

    /// The unsigned payment transaction for a cumulative `amount` to the merchant.
    ///
    /// Fails with `below_dust_limit` if either output is below `min_output`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{BitreqError, ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let s = Secp256k1::new();
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&s);
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// assert_eq!(p.payment_template(Sat(999)).unwrap_err(), BitreqError::BelowDust);
    /// assert_eq!(p.payment_template(Sat(100_001)).unwrap_err(), BitreqError::BelowDust);
    /// assert_eq!(p.payment_template(Sat(101_001)).unwrap_err(), BitreqError::InsufficientFunds);
    /// ```
    pub fn payment_template(&self, amount: Sat) -> Result<Transaction, BitreqError> {
        let change = self
            .deposit_value
            .0
            .checked_sub(self.fee.0)
            .and_then(|v| v.checked_sub(amount.0))
            .ok_or(BitreqError::InsufficientFunds)?;
        if amount < self.min_output || change < self.min_output.0 {
            return Err(BitreqError::BelowDust);
        }
        Ok(Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![self.input(Sequence::MAX)],
            output: vec![
                TxOut {
                    value: Amount::from_sat(amount.0),
                    script_pubkey: Self::p2pkh(&self.redeem.merchant),
                },
                TxOut {
                    value: Amount::from_sat(change),
                    script_pubkey: Self::p2pkh(&self.redeem.customer),
                },
            ],
        })
    }

    /// The customer's half-signed payment (`<custsig> OP_1 <redeem>`); its txid is the token.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let s = Secp256k1::new();
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&s);
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let half = p.half_signed_payment(Sat(1_000), &key).unwrap();
    /// let checked = p.verify_half_signed(&half, Sat(0)).unwrap();
    /// assert_eq!(checked.token, half.compute_txid());
    /// assert_eq!(checked.increment, Sat(1_000));
    /// ```
    pub fn half_signed_payment(
        &self,
        amount: Sat,
        customer_key: &SecretKey,
    ) -> Result<Transaction, BitreqError> {
        let mut tx = self.payment_template(amount)?;
        let sig =
            ecdsa::Signature::sighash_all(secp().sign_ecdsa(&self.sighash(&tx)?, customer_key));
        let redeem = push_bytes(self.redeem.to_script().into_bytes())?;
        if let Some(input) = tx.input.first_mut() {
            input.script_sig = Builder::new()
                .push_slice(sig.serialize())
                .push_opcode(op::OP_PUSHNUM_1)
                .push_slice(redeem)
                .into_script();
        }
        Ok(tx)
    }

    /// The server's `receive_payment` checks (§4.5, all but channel state and
    /// storage): exactly `[custsig, OP_1, redeem]` with our redeem script, the
    /// customer signature valid (low-S), the transaction byte-equal to the
    /// template for its merchant amount (so outputs, order, fee and minimum
    /// outputs are right), and the amount above `last_amount`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{BitreqError, ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let s = Secp256k1::new();
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&s);
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let half = p.half_signed_payment(Sat(1_000), &key).unwrap();
    /// assert_eq!(p.verify_half_signed(&half, Sat(1_000)).unwrap_err(), BitreqError::IncorrectAmount);
    /// ```
    pub fn verify_half_signed(
        &self,
        tx: &Transaction,
        last_amount: Sat,
    ) -> Result<ChannelPayment, BitreqError> {
        let bad = BitreqError::InvalidTransaction;
        let [input] = tx.input.as_slice() else {
            return Err(bad);
        };
        let pushes = script_pushes(&input.script_sig).ok_or(bad.clone())?;
        let [Push::Data(custsig), Push::True, Push::Data(redeem)] = pushes.as_slice() else {
            return Err(bad);
        };
        if *redeem != self.redeem.to_script().as_bytes() {
            return Err(BitreqError::InvalidRedeemScript);
        }
        let amount = Sat(tx
            .output
            .first()
            .ok_or(BitreqError::NotPaidToMerchant)?
            .value
            .to_sat());
        let mut template = self.payment_template(amount)?;
        if let Some(i) = template.input.first_mut() {
            i.script_sig = input.script_sig.clone();
        }
        if template != *tx {
            return Err(bad);
        }
        let sig = parse_sighash_all(custsig)?;
        secp()
            .verify_ecdsa(&self.sighash(tx)?, &sig, &self.redeem.customer)
            .map_err(|_| BitreqError::InvalidSignature)?;
        if amount <= last_amount {
            return Err(BitreqError::IncorrectAmount);
        }
        Ok(ChannelPayment {
            token: tx.compute_txid(),
            amount,
            increment: Sat(amount.0 - last_amount.0),
        })
    }

    /// The merchant completes a half-signed payment: `<custsig> <merchsig> OP_1 <redeem>`.
    ///
    /// Verifies it first ([`ChannelParams::verify_half_signed`] with `last_amount` 0).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let s = Secp256k1::new();
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&s);
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let p = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let half = p.half_signed_payment(Sat(1_000), &key).unwrap();
    /// let full = p.complete_payment(&half, &key).unwrap();
    /// assert_ne!(full.compute_txid(), half.compute_txid());
    /// ```
    pub fn complete_payment(
        &self,
        half: &Transaction,
        merchant_key: &SecretKey,
    ) -> Result<Transaction, BitreqError> {
        self.verify_half_signed(half, Sat(0))?;
        let mut tx = half.clone();
        let msig =
            ecdsa::Signature::sighash_all(secp().sign_ecdsa(&self.sighash(&tx)?, merchant_key));
        let pushes = half
            .input
            .first()
            .and_then(|i| script_pushes(&i.script_sig))
            .ok_or(BitreqError::InvalidTransaction)?;
        let [Push::Data(custsig), Push::True, Push::Data(redeem)] = pushes.as_slice() else {
            return Err(BitreqError::InvalidTransaction);
        };
        let script_sig = Builder::new()
            .push_slice(push_bytes(custsig.to_vec())?)
            .push_slice(msig.serialize())
            .push_opcode(op::OP_PUSHNUM_1)
            .push_slice(push_bytes(redeem.to_vec())?)
            .into_script();
        if let Some(i) = tx.input.first_mut() {
            i.script_sig = script_sig;
        }
        Ok(tx)
    }
}

/// A half-signed payment that passed [`ChannelParams::verify_half_signed`].
///
/// ```
/// let p = pay402_core::bitreq::channel::ChannelPayment {
///     token: bitcoin::Txid::from_byte_array([0; 32]) , amount: pay402_core::money::Sat(5), increment: pay402_core::money::Sat(5) };
/// # use bitcoin::hashes::Hash;
/// assert_eq!(p.increment.0, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelPayment {
    /// The token: txid of the half-signed transaction.
    pub token: Txid,
    /// The new cumulative amount.
    pub amount: Sat,
    /// `amount − last_amount`: what this payment credits.
    pub increment: Sat,
}

enum Push<'a> {
    Data(&'a [u8]),
    True,
}

/// The pushes of a push-only script (`OP_1` as [`Push::True`]); `None` otherwise.
fn script_pushes(script: &Script) -> Option<Vec<Push<'_>>> {
    let mut out = Vec::new();
    for ins in script.instructions() {
        match ins.ok()? {
            Instruction::PushBytes(b) => out.push(Push::Data(b.as_bytes())),
            Instruction::Op(o) if o == op::OP_PUSHNUM_1 => out.push(Push::True),
            Instruction::Op(_) => return None,
        }
        if out.len() > 4 {
            return None;
        }
    }
    Some(out)
}

fn push_bytes(v: Vec<u8>) -> Result<PushBytesBuf, BitreqError> {
    PushBytesBuf::try_from(v).map_err(|_| BitreqError::InvalidTransaction)
}

/// A DER signature with a trailing SIGHASH_ALL byte, low-S.
fn parse_sighash_all(bytes: &[u8]) -> Result<Signature, BitreqError> {
    let (last, der) = bytes.split_last().ok_or(BitreqError::MalformedSignature)?;
    if *last != 0x01 {
        return Err(BitreqError::MalformedSignature);
    }
    parse_der_low_s(der)
}

fn parse_der_low_s(der: &[u8]) -> Result<Signature, BitreqError> {
    let sig = Signature::from_der(der).map_err(|_| BitreqError::MalformedSignature)?;
    let mut low = sig;
    low.normalize_s();
    if low != sig {
        return Err(BitreqError::HighSSignature);
    }
    Ok(sig)
}

fn close_digest(deposit_txid: &Txid) -> Message {
    let d: [u8; 32] = Sha256::digest(deposit_txid.to_string().as_bytes()).into();
    Message::from_digest(d)
}

/// The `DELETE` close signature: DER ECDSA (RFC 6979, low-S) by the customer
/// over SHA-256 of the ASCII hex deposit txid, no sighash byte. Send it hex-encoded.
///
/// ```
/// use pay402_core::bitreq::{close_signature, verify_close_signature};
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// let key = SecretKey::from_slice(&[5; 32]).unwrap();
/// let txid: bitcoin::Txid = "7e1a558c84abd5aaf57999557f4a7205d4b69241b7c9cab6c0795fdd663a51ef".parse().unwrap();
/// let sig = close_signature(&txid, &key);
/// assert!(verify_close_signature(&txid, &hex::encode(&sig), &key.public_key(&Secp256k1::new())).is_ok());
/// ```
pub fn close_signature(deposit_txid: &Txid, customer_key: &SecretKey) -> Vec<u8> {
    secp()
        .sign_ecdsa(&close_digest(deposit_txid), customer_key)
        .serialize_der()
        .to_vec()
}

/// Verifies a hex close signature (bounded; strict DER; low-S).
///
/// ```
/// use pay402_core::bitreq::{BitreqError, verify_close_signature};
/// use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// let pk = SecretKey::from_slice(&[5; 32]).unwrap().public_key(&Secp256k1::new());
/// let txid = bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros());
/// assert_eq!(verify_close_signature(&txid, "zz", &pk), Err(BitreqError::MalformedSignature));
/// ```
pub fn verify_close_signature(
    deposit_txid: &Txid,
    signature_hex: &str,
    customer: &PublicKey,
) -> Result<(), BitreqError> {
    if signature_hex.len() > 2 * 73 {
        return Err(BitreqError::MalformedSignature);
    }
    let der =
        hex::decode(signature_hex.trim_ascii()).map_err(|_| BitreqError::MalformedSignature)?;
    let sig = parse_der_low_s(&der)?;
    secp()
        .verify_ecdsa(&close_digest(deposit_txid), &sig, customer)
        .map_err(|_| BitreqError::InvalidSignature)
}
