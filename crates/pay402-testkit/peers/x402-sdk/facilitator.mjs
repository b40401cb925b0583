#!/usr/bin/env node
/*
 * facilitator.mjs - the official x402 TypeScript SDK's facilitator engine
 * (`x402Facilitator` from @x402/core/facilitator with the `exact` EVM scheme
 * from @x402/evm/exact/facilitator), served over HTTP with express:
 * GET /supported, POST /verify, POST /settle.
 *
 * The SDK ships the engine but no HTTP server for it; this is the thinnest
 * one: the request body {x402Version, paymentPayload, paymentRequirements}
 * goes to the engine unchanged and its answer is returned as JSON (200).
 *
 * Used by the Rust harness `pay402_testkit::x402_sdk::SdkFacilitator`, which
 * installs the pinned package.json beside this file into its own cache
 * directory, copies this script next to that node_modules and runs
 *
 *   node facilitator.mjs --rpc http://127.0.0.1:8545 --network eip155:31337
 *
 * with the facilitator's key (it pays the gas of transferWithAuthorization)
 * in the environment variable PAY402_X402_SDK_FACILITATOR_KEY.
 *
 * Options:
 *   --rpc URL        the chain's JSON-RPC endpoint (required)
 *   --network ID     CAIP-2 network to register (required; eip155:<chainId>)
 *   --port N         port on 127.0.0.1, 0 = any free one (default 0)
 *   --install-multicall3
 *                    put Multicall3 at its canonical address with
 *                    anvil_setCode when the chain has no code there (the
 *                    engine uses it to explain failed payments; anvil does
 *                    not have it deployed)
 *
 * When listening it prints exactly one line on stdout:
 *
 *   PAY402_X402_SDK_READY {"pid":1234,"port":40001,"address":"0x..."}
 *
 * On a start-up failure it prints `PAY402_X402_SDK_FAILED <message>` and exits
 * 1. It exits when its stdin reaches EOF and on SIGTERM/SIGINT. Every request
 * and answer is logged on stderr.
 */

import { parseArgs } from 'node:util';


const READY = 'PAY402_X402_SDK_READY';
const FAILED = 'PAY402_X402_SDK_FAILED';
const MULTICALL3 = '0xcA11bde05977b3631167028862bE2a173976CA11';

function fail(err) {
  const msg = err && err.stack ? err.stack : String(err);
  process.stderr.write(`x402-sdk facilitator: ${msg}\n`);
  if (err && err.cause) process.stderr.write(`cause: ${err.cause.stack || err.cause}\n`);
  const line = String(err && err.message ? err.message : err).replace(/\s*\n\s*/g, ' ');
  process.stdout.write(`${FAILED} ${line}\n`, () => process.exit(1));
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const { values: opts } = parseArgs({
  options: {
    rpc: { type: 'string' },
    network: { type: 'string' },
    port: { type: 'string', default: '0' },
    'install-multicall3': { type: 'boolean', default: false },
  },
  strict: true,
});

for (const required of ['rpc', 'network']) {
  if (!opts[required]) throw new Error(`--${required} is required`);
}
const chainMatch = /^eip155:([0-9]+)$/.exec(opts.network);
if (!chainMatch) throw new Error(`--network must be eip155:<chainId>, got ${opts.network}`);
const key = process.env.PAY402_X402_SDK_FACILITATOR_KEY;
if (!key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
  throw new Error('PAY402_X402_SDK_FACILITATOR_KEY must hold a 0x-prefixed 32-byte hex key');
}

const { default: express } = await import('express');
const { createWalletClient, http, publicActions, defineChain } = await import('viem');
const { privateKeyToAccount } = await import('viem/accounts');
// Not a public export of viem: load it from the pinned package's own file.
const { multicall3Bytecode } = await import(
  new URL('./_esm/constants/contracts.js', import.meta.resolve('viem/package.json')).href
);
const { x402Facilitator } = await import('@x402/core/facilitator');
const { registerExactEvmScheme } = await import('@x402/evm/exact/facilitator');
const { toFacilitatorEvmSigner } = await import('@x402/evm');

const chainId = Number.parseInt(chainMatch[1], 10);
const chain = defineChain({
  id: chainId,
  name: `chain ${chainId}`,
  nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
  rpcUrls: { default: { http: [opts.rpc] } },
});
const account = privateKeyToAccount(key);
const wallet = createWalletClient({ account, chain, transport: http(opts.rpc) }).extend(
  publicActions,
);
const actual = await wallet.getChainId();
if (actual !== chainId) throw new Error(`${opts.rpc} is chain ${actual}, not ${chainId}`);

if (opts['install-multicall3']) {
  const code = await wallet.getCode({ address: MULTICALL3 });
  if (!code || code === '0x') {
    // viem ships Multicall3's creation code: run it as a call to get the
    // runtime code, then place that at the canonical address.
    const { data: runtime } = await wallet.call({ data: multicall3Bytecode });
    await wallet.request({ method: 'anvil_setCode', params: [MULTICALL3, runtime] });
  }
}

const signer = toFacilitatorEvmSigner({
  address: account.address,
  readContract: (args) => wallet.readContract(args),
  verifyTypedData: (args) => wallet.verifyTypedData(args),
  writeContract: (args) => wallet.writeContract(args),
  sendTransaction: (args) => wallet.sendTransaction(args),
  waitForTransactionReceipt: (args) => wallet.waitForTransactionReceipt(args),
  getCode: (args) => wallet.getCode(args),
});
const facilitator = new x402Facilitator();
registerExactEvmScheme(facilitator, { signer, networks: opts.network });

const log = (what, body) => process.stderr.write(`x402-sdk facilitator: ${what} ${JSON.stringify(body)}\n`);

const app = express();
app.use(express.json({ limit: '1mb' }));
app.get('/supported', (req, res) => {
  const supported = facilitator.getSupported();
  log('GET /supported ->', supported);
  res.json(supported);
});
for (const op of ['verify', 'settle']) {
  app.post(`/${op}`, async (req, res) => {
    log(`POST /${op}`, req.body);
    const { paymentPayload, paymentRequirements } = req.body ?? {};
    if (!paymentPayload || !paymentRequirements) {
      const answer = { error: 'body must have paymentPayload and paymentRequirements' };
      log(`POST /${op} -> 400`, answer);
      return res.status(400).json(answer);
    }
    try {
      const answer = await facilitator[op](paymentPayload, paymentRequirements);
      log(`POST /${op} ->`, answer);
      res.json(answer);
    } catch (err) {
      process.stderr.write(`x402-sdk facilitator: POST /${op} threw: ${err && err.stack ? err.stack : err}\n`);
      res.status(500).json({ error: String(err && err.message ? err.message : err) });
    }
  });
}

const listener = app.listen(Number.parseInt(opts.port, 10), '127.0.0.1', (err) => {
  if (err) return fail(err);
  const { port } = listener.address();
  process.stdout.write(
    `${READY} ${JSON.stringify({ pid: process.pid, port, address: account.address })}\n`,
  );
});
listener.on('error', fail);

const stop = () => {
  listener.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
