#!/usr/bin/env node
/*
 * client.mjs - pay one x402 URL with the official TypeScript SDK
 * (@x402/fetch + @x402/evm `exact`, v2) and report what happened.
 *
 * Used by the Rust harness `pay402_testkit::x402_sdk`, which installs the
 * pinned package.json beside this file into its own cache directory, copies
 * this script next to that node_modules (so the bare imports below resolve
 * there) and runs
 *
 *   node client.mjs --url URL --network eip155:31337 --asset 0x... \
 *                   --max-amount 10000
 *
 * with the payer's key in the environment variable PAY402_X402_SDK_PRIVATE_KEY
 * (0x-prefixed hex; kept out of argv so it never shows in `ps`).
 *
 * Options:
 *   --url URL          the paid resource (required)
 *   --method M         HTTP method (default GET)
 *   --network ID       CAIP-2 network the exact EVM scheme is registered for
 *                      (required; e.g. eip155:31337)
 *   --asset ADDR       token the SDK's spend controls must allow (required:
 *                      by default they refuse every asset they do not know,
 *                      and a locally deployed USDC is unknown to them)
 *   --max-amount N     per-payment cap for that asset, atomic units (required)
 *   --timeout-ms N     overall deadline (default 60000)
 *
 * Output: exactly one line on stdout, then exit 0:
 *
 *   PAY402_X402_SDK_RESULT {"status":200,"body":"...","headers":{...},
 *       "paymentResponse":{...}|null,"paymentRequired":{...}|null,
 *       "paymentPayload":{...}|null}
 *
 * `paymentResponse` is the decoded PAYMENT-RESPONSE header of the final
 * response, `paymentRequired` the decoded PAYMENT-REQUIRED header of the first
 * 402 (or of the final response when it is a 402), `paymentPayload` what the
 * SDK signed and sent in PAYMENT-SIGNATURE. When the SDK throws (for example
 * spend controls refusing the offer, or a second 402), it prints
 *
 *   PAY402_X402_SDK_FAILED <message>
 *
 * with the stack on stderr, and exits 1.
 */

import { parseArgs } from 'node:util';

const RESULT = 'PAY402_X402_SDK_RESULT';
const FAILED = 'PAY402_X402_SDK_FAILED';

function fail(err) {
  const msg = err && err.stack ? err.stack : String(err);
  process.stderr.write(`x402-sdk client: ${msg}\n`);
  if (err && err.cause) process.stderr.write(`cause: ${err.cause.stack || err.cause}\n`);
  const line = String(err && err.message ? err.message : err).replace(/\s*\n\s*/g, ' ');
  process.stdout.write(`${FAILED} ${line}\n`, () => process.exit(1));
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    method: { type: 'string', default: 'GET' },
    network: { type: 'string' },
    asset: { type: 'string' },
    'max-amount': { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
  strict: true,
});

for (const required of ['url', 'network', 'asset', 'max-amount']) {
  if (!opts[required]) throw new Error(`--${required} is required`);
}
if (!/^[0-9]+$/.test(opts['max-amount'])) {
  throw new Error(`--max-amount must be an integer in atomic units, got ${opts['max-amount']}`);
}
const key = process.env.PAY402_X402_SDK_PRIVATE_KEY;
if (!key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
  throw new Error('PAY402_X402_SDK_PRIVATE_KEY must hold a 0x-prefixed 32-byte hex key');
}
const timeoutMs = Number.parseInt(opts['timeout-ms'], 10);
const deadline = setTimeout(() => fail(new Error(`no result within ${timeoutMs} ms`)), timeoutMs);

// Loaded after the argument checks so a usage error is reported as such.
const { x402Client, wrapFetchWithPayment, decodePaymentResponseHeader } = await import('@x402/fetch');
const { registerExactEvmScheme } = await import('@x402/evm/exact/client');
const { decodePaymentRequiredHeader } = await import('@x402/core/http');
const { privateKeyToAccount } = await import('viem/accounts');

const account = privateKeyToAccount(key);
const client = new x402Client();
registerExactEvmScheme(client, { signer: account, networks: [opts.network] });
// The SDK's spend controls only allow assets it knows (mainnet/testnet USDC
// and a few others): allow the test's token explicitly, capped.
client.setSpendControls({
  allowedAssets: [
    { network: opts.network, asset: opts.asset, maxAmountPerPayment: opts['max-amount'] },
  ],
});

let paymentPayload = null;
let firstPaymentRequired = null;
client.onAfterPaymentCreation(async (ctx) => {
  paymentPayload = ctx.paymentPayload;
  firstPaymentRequired = ctx.paymentRequired ?? null;
});

const decodeOrNull = (decode, value) => {
  if (!value) return null;
  try {
    return decode(value);
  } catch (e) {
    return { undecodable: value, error: String(e && e.message ? e.message : e) };
  }
};

const fetchWithPayment = wrapFetchWithPayment(fetch, client);
const response = await fetchWithPayment(opts.url, { method: opts.method });
const body = await response.text();
const headers = {};
response.headers.forEach((value, name) => {
  headers[name] = value;
});
const finalRequired = decodeOrNull(decodePaymentRequiredHeader, response.headers.get('payment-required'));
const result = {
  status: response.status,
  body,
  headers,
  paymentResponse: decodeOrNull(decodePaymentResponseHeader, response.headers.get('payment-response')),
  paymentRequired: finalRequired ?? firstPaymentRequired,
  paymentPayload,
  payer: account.address,
};
clearTimeout(deadline);
process.stdout.write(`${RESULT} ${JSON.stringify(result)}\n`, () => process.exit(0));
