//! Transaction size estimates and coin selection (pure).
//!
//! Sizes are counted in weight units with the largest possible signature
//! (72-byte DER + sighash byte), so the fee computed from them never falls
//! below the rate asked for.

use pay402_core::bitreq::SpendKind;
use pay402_core::chain::FeeRate;
use pay402_core::money::Sat;

use super::error::WalletError;

fn varint_len(n: u64) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The weight of one input of `kind` (in a segwit transaction when `segwit`).
fn input_weight(kind: SpendKind, segwit: bool) -> u64 {
    // outpoint 36 + sequence 4 + script length.
    match kind {
        // empty scriptSig; witness: count 1, sig 1+73, key 1+33.
        SpendKind::P2wpkh => (36 + 4 + 1) * 4 + (1 + 1 + 73 + 1 + 33),
        // scriptSig: push 1+73, push 1+33 (108 bytes, length 1); empty witness count.
        SpendKind::P2pkh => (36 + 4 + 1 + 108) * 4 + u64::from(segwit),
    }
}

/// The weight of one output with a script of `script_len` bytes.
pub(crate) fn output_weight(script_len: usize) -> u64 {
    let len = script_len as u64;
    (8 + varint_len(len) + len) * 4
}

/// The virtual size of a transaction spending `inputs` to outputs with
/// scripts of the given lengths, rounded up (one P2WPKH input paying two
/// P2WPKH outputs: 141 vB).
pub(crate) fn vsize(inputs: &[SpendKind], output_script_lens: &[usize]) -> u64 {
    let segwit = inputs.contains(&SpendKind::P2wpkh);
    let mut w =
        (4 + 4 + varint_len(inputs.len() as u64) + varint_len(output_script_lens.len() as u64)) * 4;
    if segwit {
        w += 2;
    }
    w += inputs.iter().map(|k| input_weight(*k, segwit)).sum::<u64>();
    w += output_script_lens
        .iter()
        .map(|l| output_weight(*l))
        .sum::<u64>();
    w.div_ceil(4)
}

/// A coin the selection may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub value: Sat,
    pub kind: SpendKind,
    pub confirmations: u64,
}

/// The outcome of [`select`]: which candidates (indices) and the fee to pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    pub chosen: Vec<usize>,
    pub fee: Sat,
    /// Whether a change output is expected (change at or above `dust`).
    pub change: bool,
}

/// Largest-first selection (confirmed coins before unconfirmed ones at equal
/// value) paying `amount` to outputs `outputs` plus, when worth it, a change
/// output of `change_len` bytes. Change below `dust` goes to the fee.
pub(crate) fn select(
    candidates: &[Candidate],
    amount: Sat,
    outputs: &[usize],
    change_len: usize,
    rate: FeeRate,
    dust: Sat,
) -> Result<Selection, WalletError> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (ca, cb) = (candidates[a], candidates[b]);
        cb.value
            .cmp(&ca.value)
            .then((cb.confirmations > 0).cmp(&(ca.confirmations > 0)))
    });
    let mut with_change: Vec<usize> = outputs.to_vec();
    with_change.push(change_len);
    let mut chosen = Vec::new();
    let mut kinds = Vec::new();
    let mut total: u64 = 0;
    let mut last_needed = amount.0;
    for i in order {
        let c = candidates[i];
        chosen.push(i);
        kinds.push(c.kind);
        total = total.saturating_add(c.value.0);
        let fee_no_change = rate.fee_for_vsize(vsize(&kinds, outputs)).0;
        let fee_change = rate.fee_for_vsize(vsize(&kinds, &with_change)).0;
        let need_no_change = amount.0.saturating_add(fee_no_change);
        let need_change = amount.0.saturating_add(fee_change);
        last_needed = need_no_change;
        if total >= need_change && total - need_change >= dust.0 {
            return Ok(Selection {
                chosen,
                fee: Sat(fee_change),
                change: true,
            });
        }
        if total >= need_no_change {
            // Whatever is left is below the dust limit: it goes to the fee.
            return Ok(Selection {
                chosen,
                fee: Sat(total - amount.0),
                change: false,
            });
        }
    }
    if candidates.is_empty() {
        last_needed = amount
            .0
            .saturating_add(rate.fee_for_vsize(vsize(&[SpendKind::P2wpkh], outputs)).0);
    }
    Err(WalletError::InsufficientFunds {
        needed: Sat(last_needed),
        available: Sat(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(value: u64) -> Candidate {
        Candidate {
            value: Sat(value),
            kind: SpendKind::P2wpkh,
            confirmations: 1,
        }
    }

    #[test]
    fn sizes_match_known_transactions() {
        // 1-in 2-out P2WPKH: 140.5 vB with a 72-byte signature; we assume 73.
        assert_eq!(vsize(&[SpendKind::P2wpkh], &[22, 22]), 141);
        // 1-in 2-out P2PKH legacy: 226 bytes with 72-byte signatures (+1 with 73).
        assert_eq!(vsize(&[SpendKind::P2pkh], &[25, 25]), 227);
        assert!(vsize(&[SpendKind::P2pkh, SpendKind::P2wpkh], &[22]) > 148 + 68);
    }

    #[test]
    fn selection_largest_first_with_change_and_dust() {
        let coins = [c(10_000), c(50_000), c(20_000)];
        let s = select(&coins, Sat(30_000), &[22], 22, FeeRate(2), Sat(546)).unwrap();
        assert_eq!(s.chosen, vec![1]);
        assert!(s.change);
        assert_eq!(s.fee, Sat(2 * 141));
        // Leaves 400 sat: below dust, so no change and a bigger fee.
        let s = select(
            &coins,
            Sat(49_600 - 2 * 110),
            &[22],
            22,
            FeeRate(2),
            Sat(546),
        )
        .unwrap();
        assert!(!s.change);
        assert_eq!(s.fee.0 + 49_600 - 2 * 110, 50_000);
        // Needs two coins.
        let s = select(&coins, Sat(60_000), &[22], 22, FeeRate(1), Sat(546)).unwrap();
        assert_eq!(s.chosen, vec![1, 2]);
        let e = select(&coins, Sat(80_000), &[22], 22, FeeRate(1), Sat(546)).unwrap_err();
        assert!(
            matches!(e, WalletError::InsufficientFunds { available, .. } if available == Sat(80_000))
        );
        let e = select(&[], Sat(1), &[22], 22, FeeRate(1), Sat(546)).unwrap_err();
        assert!(matches!(e, WalletError::InsufficientFunds { .. }));
    }
}
