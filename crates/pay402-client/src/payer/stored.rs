//! What the journal keeps of an offer and of a proof, so that a purchase
//! can be resumed by another process.

use pay402_core::offer::{MAX_BODY_BYTES, Offer, ReadOptions, read_offers_with};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// The headers that carry offers (everything `read_offers` reads).
const OFFER_HEADERS: [&str; 6] = [
    "www-authenticate",
    "payment-required",
    "price",
    "bitcoin-address",
    "username",
    "bitcoin-payment-channel-server",
];

/// The 402's offer headers and body, and which offer was chosen: read
/// again with `read_offers`, they give the same offer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredOffer {
    /// The offer's index among those read.
    pub(crate) index: usize,
    /// Its label (checked on reading back).
    pub(crate) label: String,
    /// The URL of the 402 (token endpoints are relative to it).
    pub(crate) url: String,
    /// The offer headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (UTF-8; bounded like the reader's input).
    pub(crate) body: String,
}

impl StoredOffer {
    pub(crate) fn new(
        index: usize,
        offer: &Offer,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
    ) -> StoredOffer {
        let headers = OFFER_HEADERS
            .iter()
            .flat_map(|name| {
                headers.get_all(*name).iter().filter_map(move |v| {
                    v.to_str().ok().map(|v| ((*name).to_owned(), v.to_owned()))
                })
            })
            .collect();
        let body = if body.len() <= MAX_BODY_BYTES {
            std::str::from_utf8(body).unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        StoredOffer {
            index,
            label: offer.label(),
            url: url.to_string(),
            headers,
            body,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored offer back.
    pub(crate) fn read(json: &str, options: &ReadOptions) -> Result<(Offer, Url), String> {
        let stored: StoredOffer =
            serde_json::from_str(json).map_err(|e| format!("stored offer: {e}"))?;
        let url = Url::parse(&stored.url).map_err(|e| format!("stored offer URL: {e}"))?;
        let mut headers = HeaderMap::new();
        for (n, v) in &stored.headers {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(format!("stored offer header {n:?}"));
            };
            headers.append(n, v);
        }
        let mut set = read_offers_with(&headers, stored.body.as_bytes(), options);
        if stored.index >= set.offers.len() {
            return Err("stored offer no longer reads".into());
        }
        let offer = set.offers.swap_remove(stored.index);
        if offer.label() != stored.label {
            return Err(format!(
                "stored offer reads as {}, not {}",
                offer.label(),
                stored.label
            ));
        }
        Ok((offer, url))
    }
}

/// A proof as the journal keeps it (secret: the journal file is
/// owner-only).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "snake_case")]
pub(crate) enum StoredProof {
    /// The Lightning preimage, hex.
    L402 { preimage: String },
    /// The signed x402 payment, byte for byte.
    #[cfg(feature = "x402")]
    X402 {
        header: String,
        value: String,
        details: crate::x402::PaymentDetails,
    },
    /// The x402_mock access token, and what its permit said.
    #[cfg(feature = "x402-mock")]
    X402Mock {
        token: String,
        expires_at: Option<u64>,
        payer: pay402_core::x402::evm::EvmAddress,
        nonce: String,
        deadline: u64,
        digest: pay402_core::x402::evm::Bytes32,
        settlement_id: Option<i64>,
    },
    /// The BitRequests proof headers.
    #[cfg(feature = "bitreq")]
    BitRequests {
        method: String,
        headers: Vec<(String, String)>,
        price: u64,
        amount: u64,
        fee: u64,
        proof_id: String,
    },
    /// The MPP credential, byte for byte, and the field it goes in.
    Mpp {
        header: String,
        value: String,
        reference: String,
    },
}

impl StoredProof {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn read(json: &str) -> Result<StoredProof, String> {
        serde_json::from_str(json).map_err(|e| format!("stored proof: {e}"))
    }

    #[cfg(feature = "x402-mock")]
    pub(crate) fn mock(token: &str, r: &crate::x402_mock::MockReceipt) -> StoredProof {
        StoredProof::X402Mock {
            token: token.to_owned(),
            expires_at: r.token_expires_at,
            payer: r.payer,
            nonce: r.nonce.to_string(),
            deadline: r.deadline,
            digest: r.digest,
            settlement_id: r.settlement_id,
        }
    }

    /// The receipt of a kept x402_mock token for the offer `c`.
    #[cfg(feature = "x402-mock")]
    pub(crate) fn mock_receipt(
        &self,
        c: &pay402_core::offer::MockChallenge,
        url: &Url,
    ) -> Option<crate::x402_mock::MockReceipt> {
        let StoredProof::X402Mock {
            expires_at,
            payer,
            nonce,
            deadline,
            digest,
            settlement_id,
            ..
        } = self
        else {
            return None;
        };
        let comp = c.component()?;
        Some(crate::x402_mock::MockReceipt {
            url: url.to_string(),
            payer: *payer,
            spender: comp.metadata.wallet_address,
            token: comp.token,
            chain_id: comp.chain_id,
            amount: comp.required_base_units().ok()?,
            nonce: alloy_primitives::U256::from_str_radix(nonce, 10).ok()?,
            deadline: *deadline,
            digest: *digest,
            token_expires_at: *expires_at,
            settlement_id: *settlement_id,
        })
    }

    #[cfg(feature = "bitreq")]
    pub(crate) fn bitreq(made: &crate::bitreq::client::Made) -> StoredProof {
        StoredProof::BitRequests {
            method: made.receipt.method.as_str().to_owned(),
            headers: made
                .proof
                .header_pairs()
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
            price: made.receipt.price.0,
            amount: made.receipt.amount.0,
            fee: made.receipt.fee.0,
            proof_id: made.receipt.proof_id.clone(),
        }
    }
}

/// The receipt of a kept BitRequests proof presented again.
#[cfg(feature = "bitreq")]
pub(crate) fn bitreq_receipt(
    c: &pay402_core::offer::BitreqChallenge,
    p: &super::Purchase,
    proof_id: String,
) -> crate::bitreq::Receipt {
    crate::bitreq::Receipt {
        method: super::rails::bitreq_method(c.method),
        price: c.info.price,
        amount: c.info.price,
        fee: pay402_core::money::Sat(0),
        proof_id,
        url: p.url.clone(),
        paid_at: p.created,
    }
}
