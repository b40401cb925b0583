//! Real USDC (Circle's FiatTokenV2_2) on a real anvil chain: an EIP-3009
//! `transferWithAuthorization` signed with pay402-core's EIP-712 hashing
//! settles, marks its nonce used, and cannot be replayed.
//!
//! Needs anvil (installed from npm on first use); fails, never skips, when it
//! cannot start.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256, keccak256};
use pay402_core::x402::evm::{Bytes32, Eip712Domain, EvmAddress, TransferAuthorization};
use pay402_core::x402::{EvmTimestamp, TokenAmount};
use pay402_testkit::PeerError;
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, IFiatToken, USDC_NAME, USDC_VERSION};
use secp256k1::{Message, PublicKey, SECP256K1, SecretKey};
use serde_json::Value;

fn address_of(key: &SecretKey) -> Address {
    let public = PublicKey::from_secret_key(SECP256K1, key).serialize_uncompressed();
    Address::from_slice(&keccak256(&public[1..])[12..])
}

/// Signs an EIP-712 digest: returns (v in {27, 28}, r, s).
fn sign(key: &SecretKey, digest: B256) -> (u8, B256, B256) {
    let message = Message::from_digest(digest.0);
    let (recovery_id, compact) = SECP256K1
        .sign_ecdsa_recoverable(&message, key)
        .serialize_compact();
    let v = 27 + u8::try_from(recovery_id.to_i32()).expect("recovery id is 0..=3");
    (
        v,
        B256::from_slice(&compact[..32]),
        B256::from_slice(&compact[32..]),
    )
}

#[test]
fn anvil_usdc_transfer_with_authorization() {
    let started = Instant::now();
    let chain = Anvil::start().unwrap_or_else(|e| panic!("cannot start the anvil test peer: {e}"));
    let up = started.elapsed();
    assert_eq!(chain.chain_id().expect("eth_chainId"), CHAIN_ID);

    // The dev-account constants are anvil's own accounts, and the keys match.
    let accounts = chain
        .rpc("eth_accounts", Value::Null)
        .expect("eth_accounts");
    for (i, dev) in DEV_ACCOUNTS.iter().enumerate() {
        let listed: Address = accounts[i]
            .as_str()
            .expect("address string")
            .parse()
            .expect("address");
        assert_eq!(listed, dev.address, "dev account {i}");
        let key = SecretKey::from_slice(dev.private_key.as_slice()).expect("dev key");
        assert_eq!(address_of(&key), dev.address, "dev key {i}");
    }

    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let deployed = started.elapsed();
    assert_eq!(usdc.name().expect("name()"), "USD Coin");
    assert_eq!(usdc.name().unwrap(), USDC_NAME);
    assert_eq!(usdc.version().expect("version()"), "2");
    assert_eq!(usdc.version().unwrap(), USDC_VERSION);
    assert_eq!(usdc.decimals().expect("decimals()"), 6);
    assert_eq!(usdc.symbol().expect("symbol()"), "USDC");

    // A fresh payer key, funded with 10 USDC.
    let payer_key =
        SecretKey::from_slice(keccak256(b"pay402 anvil_usdc payer").as_slice()).expect("payer key");
    let payer = address_of(&payer_key);
    let recipient = DEV_ACCOUNTS[2].address;
    let relayer = DEV_ACCOUNTS[1].address;
    let ten_usdc = U256::from(10_000_000u64);
    usdc.mint(payer, ten_usdc).expect("mint 10 USDC");
    assert_eq!(usdc.balance_of(payer).unwrap(), ten_usdc);
    let recipient_before = usdc.balance_of(recipient).unwrap();

    let domain = Eip712Domain::new(USDC_NAME, USDC_VERSION, CHAIN_ID, EvmAddress(usdc.address));
    assert_eq!(
        usdc.domain_separator().expect("DOMAIN_SEPARATOR()"),
        domain.separator(),
        "pay402-core's EIP-712 domain separator matches the contract's"
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let nonce = keccak256(b"pay402 anvil_usdc nonce 1");
    let value = 1_250_000u64; // 1.25 USDC
    let authorization = TransferAuthorization {
        from: EvmAddress(payer),
        to: EvmAddress(recipient),
        value: TokenAmount::from_u64(value),
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(now + 3600),
        nonce: Bytes32(nonce.0),
    };
    let (v, r, s) = sign(&payer_key, authorization.signing_hash(&domain));
    assert!(v == 27 || v == 28);
    assert!(!usdc.authorization_state(payer, nonce).unwrap());

    let call = IFiatToken::transferWithAuthorizationCall {
        from: payer,
        to: recipient,
        value: U256::from(value),
        validAfter: U256::ZERO,
        validBefore: U256::from(now + 3600),
        nonce,
        v,
        r,
        s,
    };
    let receipt = usdc
        .send(relayer, &call)
        .expect("transferWithAuthorization settles");
    let settled = started.elapsed();
    assert_eq!(receipt.status, 1);

    assert_eq!(
        usdc.balance_of(recipient).unwrap(),
        recipient_before + U256::from(value),
        "recipient received exactly the authorised value"
    );
    assert_eq!(
        usdc.balance_of(payer).unwrap(),
        ten_usdc - U256::from(value)
    );
    assert!(
        usdc.authorization_state(payer, nonce).unwrap(),
        "the nonce is marked used"
    );

    // Replaying the same authorization reverts.
    match usdc.send(relayer, &call) {
        Err(PeerError::Rpc { message, .. } | PeerError::Protocol { message, .. }) => {
            eprintln!("replay rejected: {message}");
            assert!(
                message.contains("authorization is used or canceled"),
                "unexpected replay error: {message}"
            );
        }
        other => panic!("the replay must revert, got {other:?}"),
    }
    assert_eq!(
        usdc.balance_of(recipient).unwrap(),
        recipient_before + U256::from(value),
        "the replay moved no funds"
    );

    eprintln!(
        "anvil up in {up:?}, USDC deployed+initialised at {deployed:?}, EIP-3009 settled at \
         {settled:?}, total {:?}",
        started.elapsed()
    );
}
