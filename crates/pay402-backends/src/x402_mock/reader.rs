//! [`AlloyPermitReader`]: the token views over JSON-RPC.

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_core::x402::mock_chain::{MockChainError, PermitReader};

use super::error::call_error;
use crate::evm_rpc::RpcTransport;

alloy::sol! {
    /// The EIP-2612 / ERC-20 calls the x402_mock flow makes.
    #[allow(missing_docs)]
    interface IPermitToken {
        function nonces(address owner) external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
        function transferFrom(address from, address to, uint256 value) external returns (bool);
    }
}

/// Per-request timeout of the default HTTP client.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads `nonces`, `balanceOf` and `allowance` of EIP-2612 tokens through a
/// JSON-RPC node (alloy provider over reqwest 0.12). Holds no key; a paying
/// client uses it to read the nonce it signs.
///
/// ```no_run
/// use pay402_backends::x402_mock::AlloyPermitReader;
/// use pay402_core::x402::mock_chain::PermitReader;
/// # async fn f() -> Result<(), pay402_core::x402::mock_chain::MockChainError> {
/// let reader = AlloyPermitReader::connect("http://127.0.0.1:8545").await?;
/// let token = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".parse().unwrap();
/// let owner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap();
/// let nonce = reader.nonces(token, owner).await?;
/// # let _ = nonce; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AlloyPermitReader {
    provider: RootProvider,
    chain_id: u64,
}

impl AlloyPermitReader {
    /// Connects to `rpc_url` through [`RpcTransport`] ([`DEFAULT_RPC_TIMEOUT`]
    /// per request; `https://`, or plain `http://` to a loopback host only:
    /// see [`AlloyPermitReader::with_transport`] for a private-network node)
    /// and reads the chain id.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let reader = pay402_backends::x402_mock::AlloyPermitReader::connect("http://127.0.0.1:8545").await.unwrap();
    /// # }
    /// ```
    ///
    /// A plain `http://` URL to another host is refused before any request:
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use pay402_backends::x402_mock::AlloyPermitReader;
    /// let err = AlloyPermitReader::connect("http://rpc.example.com").await.unwrap_err();
    /// assert!(err.to_string().contains("loopback"), "{err}");
    /// # });
    /// ```
    pub async fn connect(rpc_url: &str) -> Result<AlloyPermitReader, MockChainError> {
        let transport = RpcTransport::new(rpc_url, DEFAULT_RPC_TIMEOUT)
            .map_err(|e| MockChainError::Config(e.to_string()))?;
        AlloyPermitReader::with_transport(transport).await
    }

    /// Connects through a configured transport (another timeout, plain
    /// `http://` to a private-network node) and reads the chain id.
    ///
    /// ```no_run
    /// # async fn f() {
    /// use std::time::Duration;
    /// use pay402_backends::evm_rpc::RpcTransport;
    /// let transport = RpcTransport::with_options("http://10.0.0.5:8545", Duration::from_secs(5), true).unwrap();
    /// let reader = pay402_backends::x402_mock::AlloyPermitReader::with_transport(transport).await.unwrap();
    /// # }
    /// ```
    pub async fn with_transport(
        transport: RpcTransport,
    ) -> Result<AlloyPermitReader, MockChainError> {
        let is_local = transport.is_local();
        let rpc = RpcClient::new(transport, is_local);
        let provider = RootProvider::new(rpc);
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| call_error("eth_chainId", e))?;
        Ok(AlloyPermitReader { provider, chain_id })
    }

    /// The alloy provider (for calls this type does not wrap).
    ///
    /// ```no_run
    /// # async fn f(reader: pay402_backends::x402_mock::AlloyPermitReader) {
    /// use alloy::providers::Provider;
    /// let block = reader.provider().get_block_number().await.unwrap();
    /// # }
    /// ```
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    async fn view<C: SolCall>(
        &self,
        token: EvmAddress,
        call: C,
        name: &'static str,
    ) -> Result<C::Return, MockChainError> {
        let tx = TransactionRequest::default()
            .with_to(token.0)
            .with_input(call.abi_encode());
        let out = self
            .provider
            .call(tx)
            .await
            .map_err(|e| call_error(name, e))?;
        C::abi_decode_returns(&out).map_err(|e| MockChainError::InvalidResponse {
            call: name,
            detail: format!("cannot decode the return data ({} bytes): {e}", out.len()),
        })
    }
}

fn addr(a: EvmAddress) -> Address {
    a.0
}

#[async_trait]
impl PermitReader for AlloyPermitReader {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    async fn nonces(&self, token: EvmAddress, owner: EvmAddress) -> Result<U256, MockChainError> {
        self.view(
            token,
            IPermitToken::noncesCall { owner: addr(owner) },
            "nonces",
        )
        .await
    }

    async fn balance_of(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.view(
            token,
            IPermitToken::balanceOfCall {
                account: addr(owner),
            },
            "balanceOf",
        )
        .await
        .map(TokenAmount)
    }

    async fn allowance(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.view(
            token,
            IPermitToken::allowanceCall {
                owner: addr(owner),
                spender: addr(spender),
            },
            "allowance",
        )
        .await
        .map(TokenAmount)
    }
}
