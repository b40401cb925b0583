//! Work in progress: the chain port of the x402_mock permit flow.
