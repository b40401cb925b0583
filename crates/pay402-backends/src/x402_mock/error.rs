//! Mapping alloy transport errors onto the port's [`MockChainError`].

use alloy::transports::{RpcError, TransportError};
use pay402_core::x402::mock_chain::MockChainError;

/// Longest node message kept in an error, in characters.
const MAX_DETAIL: usize = 300;

fn clip(s: &str) -> String {
    s.chars().take(MAX_DETAIL).collect()
}

/// The node's error message and data, if it answered with a JSON-RPC error.
pub(crate) fn error_message(e: &TransportError) -> Option<String> {
    match e {
        RpcError::ErrorResp(p) => {
            let mut m = p.message.to_string();
            if let Some(data) = &p.data {
                m.push_str(" (data: ");
                m.push_str(data.get());
                m.push(')');
            }
            Some(m)
        }
        _ => None,
    }
}

/// Whether a node message says the call reverts.
fn is_revert(lower: &str) -> bool {
    lower.contains("revert")
}

/// Classifies an error of a read or a simulation (`eth_call`, `eth_estimateGas`).
pub(crate) fn call_error(call: &'static str, e: TransportError) -> MockChainError {
    match &e {
        RpcError::ErrorResp(_) => {
            let msg = error_message(&e).unwrap_or_default();
            if is_revert(&msg.to_ascii_lowercase()) {
                MockChainError::Reverted {
                    call,
                    detail: clip(&msg),
                }
            } else {
                MockChainError::TxRefused {
                    call,
                    detail: clip(&msg),
                }
            }
        }
        RpcError::Transport(kind) => MockChainError::Unreachable {
            call,
            detail: clip(&kind.to_string()),
        },
        _ => MockChainError::InvalidResponse {
            call,
            detail: clip(&e.to_string()),
        },
    }
}

/// What a refused `eth_sendRawTransaction` means.
pub(crate) enum BroadcastRefusal {
    /// The node already has it, or the sender nonce is already used (by
    /// this transaction once mined, or by another one): nothing to resend;
    /// the receipt and the mined nonce tell which.
    AlreadyDone,
    /// Anything else.
    Failed(MockChainError),
}

/// Classifies an error of `eth_sendRawTransaction`.
pub(crate) fn broadcast_error(e: TransportError) -> BroadcastRefusal {
    match &e {
        RpcError::ErrorResp(_) => {
            let msg = error_message(&e).unwrap_or_default();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("already known")
                || lower.contains("known transaction")
                || lower.contains("already imported")
                || lower.contains("nonce too low")
            {
                BroadcastRefusal::AlreadyDone
            } else if is_revert(&lower) {
                BroadcastRefusal::Failed(MockChainError::Reverted {
                    call: "eth_sendRawTransaction",
                    detail: clip(&msg),
                })
            } else {
                BroadcastRefusal::Failed(MockChainError::TxRefused {
                    call: "eth_sendRawTransaction",
                    detail: clip(&msg),
                })
            }
        }
        _ => BroadcastRefusal::Failed(call_error("eth_sendRawTransaction", e)),
    }
}
