//! The EIP-3009 token ABI the facilitator speaks (USDC's FiatTokenV2_2
//! subset), and how a 65-byte signature becomes `(v, r, s)`.

use alloy::primitives::{Address, B256, U256};
use alloy::sol;

use pay402_core::x402::exact::VerifiedExact;

sol! {
    /// The EIP-3009 / ERC-20 calls and events the facilitator uses.
    #[allow(missing_docs)]
    interface IEip3009 {
        function balanceOf(address account) external view returns (uint256);
        function name() external view returns (string);
        function version() external view returns (string);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;

        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    }
}

/// The `transferWithAuthorization(..., v, r, s)` call for a verified payment,
/// or `None` when the signature is not 65 bytes (smart-wallet signatures
/// are refused earlier by core's verification).
pub(crate) fn transfer_call(
    verified: &VerifiedExact,
    signature: &[u8],
) -> Option<IEip3009::transferWithAuthorizationCall> {
    let sig: &[u8; 65] = signature.try_into().ok()?;
    // FiatToken's ecrecover wants v in {27, 28}; core accepts {0, 1} too.
    let v = match sig[64] {
        0 | 1 => sig[64] + 27,
        27 | 28 => sig[64],
        _ => return None,
    };
    let a = &verified.authorization;
    Some(IEip3009::transferWithAuthorizationCall {
        from: a.from.0,
        to: a.to.0,
        value: a.value.0,
        validAfter: a.valid_after.0,
        validBefore: a.valid_before.0,
        nonce: B256::from(a.nonce.0),
        v,
        r: B256::from_slice(&sig[..32]),
        s: B256::from_slice(&sig[32..64]),
    })
}

/// What a payment moves: used to recognise its settlement on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Movement {
    pub asset: Address,
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub nonce: B256,
}

impl Movement {
    pub(crate) fn of(verified: &VerifiedExact) -> Movement {
        let a = &verified.authorization;
        Movement {
            asset: verified.asset.0,
            from: a.from.0,
            to: a.to.0,
            value: a.value.0,
            nonce: B256::from(a.nonce.0),
        }
    }
}
