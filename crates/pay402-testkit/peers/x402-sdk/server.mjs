#!/usr/bin/env node
/*
 * server.mjs - an official x402 resource server (@x402/express, v2, `exact`
 * on EVM) that sells one route, priced in a given token, and verifies and
 * settles through a facilitator reached over HTTP (HTTPFacilitatorClient).
 *
 * Used by the Rust harness `pay402_testkit::x402_sdk`, which installs the
 * pinned package.json beside this file into its own cache directory, copies
 * this script next to that node_modules and runs
 *
 *   node server.mjs --facilitator http://127.0.0.1:PORT --network eip155:31337 \
 *                   --asset 0x... --pay-to 0x... --amount 10000
 *
 * Options:
 *   --facilitator URL         facilitator base URL (required); the server
 *                             calls its /supported before listening and
 *                             /verify + /settle for each paid request
 *   --network ID              CAIP-2 network (required)
 *   --asset ADDR              token contract (required)
 *   --pay-to ADDR             payee (required)
 *   --amount N                price in atomic units (required)
 *   --name NAME               EIP-712 domain name of the token (default "USD Coin")
 *   --version V               EIP-712 domain version (default "2")
 *   --max-timeout-seconds N   maxTimeoutSeconds of the offer (default 60)
 *   --path P                  the paid route, GET (default /paid)
 *   --port N                  port on 127.0.0.1, 0 = any free one (default 0)
 *   --facilitator-timeout-ms N  per-call facilitator timeout (default 30000)
 *
 * The route answers 200 with {"paid":true,"path":P} once paid. GET /health
 * is free.
 *
 * Start-up: the facilitator's /supported must list the kind
 * {x402Version:2, scheme:"exact", network}; the server fetches it first (the
 * SDK's own start-up sync, done eagerly here so a mismatch is a start failure
 * and not a 500 later), then listens and prints exactly one line on stdout:
 *
 *   PAY402_X402_SDK_READY {"pid":1234,"port":40001}
 *
 * On a start-up failure it prints `PAY402_X402_SDK_FAILED <message>` and exits
 * 1. It exits when its stdin reaches EOF (the harness died or dropped the
 * pipe) and on SIGTERM/SIGINT. Each request is logged on stderr.
 */

import { parseArgs } from 'node:util';

const READY = 'PAY402_X402_SDK_READY';
const FAILED = 'PAY402_X402_SDK_FAILED';

function fail(err) {
  const msg = err && err.stack ? err.stack : String(err);
  process.stderr.write(`x402-sdk server: ${msg}\n`);
  if (err && err.cause) process.stderr.write(`cause: ${err.cause.stack || err.cause}\n`);
  const line = String(err && err.message ? err.message : err).replace(/\s*\n\s*/g, ' ');
  process.stdout.write(`${FAILED} ${line}\n`, () => process.exit(1));
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const { values: opts } = parseArgs({
  options: {
    facilitator: { type: 'string' },
    network: { type: 'string' },
    asset: { type: 'string' },
    'pay-to': { type: 'string' },
    amount: { type: 'string' },
    name: { type: 'string', default: 'USD Coin' },
    version: { type: 'string', default: '2' },
    'max-timeout-seconds': { type: 'string', default: '60' },
    path: { type: 'string', default: '/paid' },
    port: { type: 'string', default: '0' },
    'facilitator-timeout-ms': { type: 'string', default: '30000' },
  },
  strict: true,
});

for (const required of ['facilitator', 'network', 'asset', 'pay-to', 'amount']) {
  if (!opts[required]) throw new Error(`--${required} is required`);
}
if (!/^[0-9]+$/.test(opts.amount)) {
  throw new Error(`--amount must be an integer in atomic units, got ${opts.amount}`);
}

const { default: express } = await import('express');
const { paymentMiddlewareFromHTTPServer, x402ResourceServer, x402HTTPResourceServer } =
  await import('@x402/express');
const { HTTPFacilitatorClient } = await import('@x402/core/server');
const { ExactEvmScheme } = await import('@x402/evm/exact/server');

const facilitator = new HTTPFacilitatorClient({
  url: opts.facilitator,
  timeoutMs: Number.parseInt(opts['facilitator-timeout-ms'], 10),
});
const resourceServer = new x402ResourceServer(facilitator).register(
  opts.network,
  new ExactEvmScheme(),
);

const routes = {
  [`GET ${opts.path}`]: {
    accepts: {
      scheme: 'exact',
      payTo: opts['pay-to'],
      network: opts.network,
      maxTimeoutSeconds: Number.parseInt(opts['max-timeout-seconds'], 10),
      price: {
        amount: opts.amount,
        asset: opts.asset,
        extra: { name: opts.name, version: opts.version },
      },
    },
    description: 'pay402 interop test resource',
    mimeType: 'application/json',
  },
};

const httpServer = new x402HTTPResourceServer(resourceServer, routes);
// GET /supported and check every route's kind is listed; throws on a mismatch.
await httpServer.initialize();

const app = express();
app.use((req, res, next) => {
  const paid = req.get('payment-signature') ? ' (with PAYMENT-SIGNATURE)' : '';
  res.on('finish', () => {
    process.stderr.write(`x402-sdk server: ${req.method} ${req.originalUrl}${paid} -> ${res.statusCode}\n`);
  });
  next();
});
app.get('/health', (req, res) => res.json({ ok: true }));
// Already initialised above: no second, background start-up sync.
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
app.get(opts.path, (req, res) => res.json({ paid: true, path: opts.path }));

const listener = app.listen(Number.parseInt(opts.port, 10), '127.0.0.1', (err) => {
  if (err) return fail(err);
  const { port } = listener.address();
  process.stdout.write(`${READY} ${JSON.stringify({ pid: process.pid, port })}\n`);
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
