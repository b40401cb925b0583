//! `pay402 init`: a commented example configuration.

/// The example `pay402.toml` that `pay402 init` writes. It passes
/// `pay402 proxy --check` as written.
///
/// ```
/// assert!(pay402_cli::init::EXAMPLE.contains("[[services]]"));
/// ```
pub const EXAMPLE: &str = r#"# pay402.toml: a paying reverse proxy.
# Every key is described in docs/cli.md. Check a change with
#   pay402 proxy --config pay402.toml --check

[server]
# Where clients connect (HTTP/1.1 and HTTP/2 without TLS).
listen = "127.0.0.1:8402"
# HTTPS on `listen` (HTTP/2 by ALPN); without it, plain HTTP: put TLS in front.
# tls = { cert_file = "/etc/pay402/cert.pem", key_file = "/etc/pay402/key.pem" }
# /healthz, /readyz and /metrics; without ops_listen they are served on `listen`.
# ops_listen = "127.0.0.1:9402"
# "text" or "json" (one JSON object per line).
log_format = "text"
# After SIGTERM, in-flight requests get this long to finish.
shutdown_grace_secs = 30
# x402 settles after the upstream answered: its response is held, at most this many bytes.
max_settle_body = 4194304

# The operator API (list x402 payments, revoke L402 tokens, open and credit
# BitRequests ledger accounts) on a private address.
# [admin]
# listen = "127.0.0.1:9403"
# token = { env = "PAY402_ADMIN_TOKEN" }   # at least 32 characters

[store]
# Root keys, revocations and payment records. sqlite://PATH, sqlite::memory:,
# or postgres://USER@HOST/DB to share them between several instances.
url = "sqlite://pay402.sqlite"
# password = { env = "PAY402_PG_PASSWORD" }   # PostgreSQL only; never in the URL
# max_connections = 10
# statement_timeout_ms = 10000
# acquire_timeout_ms = 5000                    # then 503 store_unavailable

# [rates]
# Needed for prices in US cents on L402 and BitRequests: US cents per bitcoin.
# usd_cents_per_btc = 10000000

# The Lightning node issuing L402 invoices.
# simnet-rest: an embedded test network; its funded wallet speaks LND's REST
# API on `listen`, so clients can pay (for trying things out, not money).
[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:8403"
wallet_sats = 10000000
# A real node:
# kind = "lnd"
# url = "https://127.0.0.1:8080"
# network = "bitcoin"
# macaroon = { file = "/home/lnd/.lnd/data/chain/bitcoin/mainnet/invoice.macaroon" }
# tls_cert_file = "/home/lnd/.lnd/tls.cert"

# x402: the token offered and who settles it. Uncomment to turn it on.
# [x402]
# network = "eip155:8453"
# asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
# asset_name = "USD Coin"
# asset_version = "2"
# asset_decimals = 6
# pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
# settle = "after"
# [x402.facilitator]
# kind = "remote"
# url = "https://facilitator.example.com"
# Or settle yourself (only `asset` above is accepted):
# kind = "local"
# rpc_url = { env = "PAY402_X402_RPC_URL" }
# key = { file = "/etc/pay402/facilitator.key" }

# 21 BitRequests, offered when a service lists "bitreq" in its rails. Each
# method is on when its part is set; uncomment to turn them on.
# [bitrequests]
# network = "bitcoin"
# Bit-transfers: payers hold accounts on your ledger (opened and credited
# through the admin API).
# transfer_username = "shop"
# public_url = "https://api.example.com"   # announced for channels; default: the request's Host
# sync_secs = 60                           # how often the chain is followed
#
# The Bitcoin backend of on-chain payments and channels:
# [bitrequests.chain]
# kind = "bitcoind"                        # or "esplora" (url only)
# url = "http://127.0.0.1:8332"
# user = "pay402"
# password = { file = "/etc/pay402/bitcoind.password" }
# timeout_secs = 30
#
# On-chain payments, broadcast by the proxy; the txid replay record lives in [store]:
# [bitrequests.onchain]
# xpub = "xpub..."                         # a fresh address per 402 (or: address = "bc1q...")
# confirmations = 1                        # served once confirmed (202 until then)
# accept_unconfirmed_up_to_sats = 0        # serve cheaper requests unconfirmed (double-spendable)
# quote_ttl_secs = 3600
# max_open_quotes = 10000
#
# Payment channels (two1 protocol v2), endpoints at `path` on this listener:
# [bitrequests.channel]
# key = { file = "/etc/pay402/channel.key" }   # the merchant's channel key, 32 bytes in hex
# path = "/payment"
# zeroconf = false                         # accept payments before the deposit confirms
# fee_sats = 125000                        # each payment's miner fee; clients must agree
# min_duration_secs = 345600

# MPP, the `Payment` HTTP authentication scheme (WWW-Authenticate: Payment),
# offered beside L402 when a service lists "mpp" in its rails. Uncomment to
# turn it on.
# [mpp]
# realm = "api.example.com"                      # usually your public host name
# secret = { file = "/etc/pay402/mpp.secret" }   # at least 32 bytes: openssl rand -base64 32
# previous_secret = { env = "PAY402_MPP_OLD_SECRET" }   # while rotating
# methods = ["lightning"]   # and/or "evm" ([x402]'s asset, pay_to and facilitator)
# challenge_ttl_secs = 300

[[services]]
name = "api"
# Regexes, as Aperture's hostregexp and pathregexp: unanchored, anchor them yourself.
host = '.*'
path = '^/'
upstream = "http://127.0.0.1:8080"
timeout_secs = 30
# HTTP/2 to the upstream (h2c for http://), as gRPC services need:
# upstream_http2 = true
free_paths = ["/health", "/public/*"]
# Any of "l402", "x402", "bitreq", "mpp": one 402 offers them all.
rails = ["l402"]
price = { sats = 10 }
# Or a price per request from your own endpoint (503 when it cannot answer):
# pricer = { url = "http://127.0.0.1:8090/price", timeout_ms = 1000, cache_secs = 60 }
token_lifetime_secs = 86400
# Minted into every L402 token (Aperture's capabilities and constraints).
# l402_capabilities = ["read"]
# l402_caveats = ["tier=basic"]
# Unpaid requests per client address before the 402.
# freebies = { requests = 3, period_secs = 86400 }
# The upstream sees which payment paid (l402:<token id>, x402:<payer>:<nonce>,
# bitreq:<method>:<reference> or mpp:<method>:<reference>).
identity_header = "X-Pay402-Payment"
# Headers for the upstream: literal, or a secret from a file or the environment.
# add_headers = { "X-Api-Key" = { env = "UPSTREAM_API_KEY" } }
strip_headers = ["Cookie"]
"#;
