//! Signed x402_mock permits on the wire, for tests that sign their own.
#![allow(dead_code)]

use pay402_core::x402::evm::{Bytes32, Eip2612Permit, EvmAddress};
use pay402_core::x402::mock::{MockPermit, MockPermitSignature};

/// The wire permit for `message` on `token` and `chain_id`, with the
/// 65-byte signature `sig` (`r ‖ s ‖ v`, `v` as 0/1 or 27/28).
pub fn wire(message: &Eip2612Permit, token: EvmAddress, chain_id: u64, sig: &[u8]) -> MockPermit {
    MockPermit {
        permit_type: "EIP2612".into(),
        owner: message.owner,
        spender: message.spender,
        token,
        value: message.value.0,
        nonce: message.nonce,
        deadline: message.deadline.0,
        chain_id,
        signature: MockPermitSignature {
            signature_type: "EIP2612".into(),
            v: if sig[64] < 27 { sig[64] + 27 } else { sig[64] },
            r: Bytes32(sig[..32].try_into().unwrap()),
            s: Bytes32(sig[32..64].try_into().unwrap()),
        },
        created_at: None,
    }
}
