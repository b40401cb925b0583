//! x402_mock settlement jobs for store tests (shared by the conformance
//! suite and the multi-process test).
#![allow(dead_code)]

use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::Bytes32;
use pay402_core::x402::mock::{MockPermit, MockPermitSignature};
use pay402_server::x402_mock::NewSettlement;

/// A fixed "now" far from the real clock.
pub const T: u64 = 1_000_000_000;

pub fn permit(nonce: u64, owner: &str) -> MockPermit {
    MockPermit {
        permit_type: "EIP2612".into(),
        owner: owner.parse().unwrap(),
        spender: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap(),
        token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
            .parse()
            .unwrap(),
        value: 10_000u64.try_into().unwrap(),
        nonce: nonce.try_into().unwrap(),
        deadline: 2_000_000_000u64.try_into().unwrap(),
        chain_id: 31337,
        signature: MockPermitSignature {
            signature_type: "EIP2612".into(),
            v: 27,
            r: Bytes32([1; 32]),
            s: Bytes32([2; 32]),
        },
        created_at: None,
    }
}

pub const ALICE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
pub const BOB: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

pub fn job(nonce: u64, digest: u8) -> NewSettlement {
    job_of(nonce, digest, ALICE)
}

pub fn job_of(nonce: u64, digest: u8, owner: &str) -> NewSettlement {
    NewSettlement {
        permit: permit(nonce, owner),
        digest: Bytes32([digest; 32]),
        resource: "/premium".into(),
        pay_to: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap(),
        amount: TokenAmount::from_u64(10_000),
        token_exp: T + 3_600,
        created_at: T,
    }
}
