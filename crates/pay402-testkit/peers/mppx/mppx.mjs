// pay402's driver for mppx 0.11.0, the reference MPP (Payment HTTP auth)
// SDK. One script, three modes:
//
//   node mppx.mjs server --rpc URL --currency 0x.. --recipient 0x.. --amount ATOMIC
//        [--decimals 6] [--chain-id 31337] [--name "USD Coin"] [--version 2]
//        [--realm 127.0.0.1] [--path /paid] [--port 0]
//     env PAY402_MPPX_SECRET (>= 32 bytes), PAY402_MPPX_SETTLER_KEY (gas payer)
//     An HTTP server selling `GET <path>` through mppx's built-in `evm`/`charge`
//     method (EIP-3009 `authorization` credentials). mppx leaves settlement to
//     the application: the `settle` hook here submits `transferWithAuthorization`
//     to the token with viem and waits for the receipt. Prints
//     `PAY402_MPPX_READY {"port","pid","realm"}`, one `PAY402_MPPX_SETTLED {...}`
//     line per settlement; exits when stdin closes. `GET /health` answers 200.
//
//   node mppx.mjs client --url URL [--name "USD Coin"] [--version 2]
//        [--chain-id 31337] [--currency 0x..] [--max-atomic N] [--timeout-ms 60000]
//     env PAY402_MPPX_CLIENT_KEY (the payer's private key)
//     mppx's fetch wrapper with its `evm` charge client method pays URL once.
//     Prints `PAY402_MPPX_RESULT {"status","body","headers","receipt"}`.
//
//   node mppx.mjs parse   < {"wwwAuthenticate": [..] | "..", "paymentRequired": "..",
//                            "receipts": [..], "credentials": [..], "secret": ".."}
//     What mppx's core reads: `Challenge.fromHeadersList` on the joined
//     `WWW-Authenticate` value (and, given `secret`, `Challenge.verify`), the x402
//     `PAYMENT-REQUIRED` header through mppx's own decoder, `Receipt.deserialize`
//     and `Credential.deserialize` of each value. Prints
//     `PAY402_MPPX_RESULT {...}`; a part mppx refuses is `{"error": "..."}`.
//
// Any failure prints `PAY402_MPPX_FAILED <reason>` and exits 1.

import * as http from 'node:http';
import { Challenge, Credential, Receipt } from 'mppx';
import * as x402 from 'mppx/x402';
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  formatUnits,
  getAddress,
  http as viemHttp,
  parseSignature,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

const READY = 'PAY402_MPPX_READY ';
const RESULT = 'PAY402_MPPX_RESULT ';
const FAILED = 'PAY402_MPPX_FAILED ';
const SETTLED = 'PAY402_MPPX_SETTLED ';

function fail(reason) {
  process.stdout.write(`${FAILED}${String(reason).replace(/\s+/g, ' ')}\n`);
  process.exit(1);
}

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const k = argv[i];
    if (!k.startsWith('--')) fail(`unexpected argument ${k}`);
    const v = argv[i + 1];
    if (v === undefined) fail(`missing value for ${k}`);
    out[k.slice(2)] = v;
    i += 1;
  }
  return out;
}

function need(a, k) {
  if (a[k] === undefined) fail(`--${k} is required`);
  return a[k];
}

function env(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

function chainOf(id, rpc) {
  return defineChain({
    id,
    name: `chain-${id}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpc] } },
  });
}

const transferWithAuthorizationAbi = [
  {
    type: 'function',
    name: 'transferWithAuthorization',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'from', type: 'address' },
      { name: 'to', type: 'address' },
      { name: 'value', type: 'uint256' },
      { name: 'validAfter', type: 'uint256' },
      { name: 'validBefore', type: 'uint256' },
      { name: 'nonce', type: 'bytes32' },
      { name: 'v', type: 'uint8' },
      { name: 'r', type: 'bytes32' },
      { name: 's', type: 'bytes32' },
    ],
    outputs: [],
  },
];

async function server(a) {
  const { Mppx, evm } = await import('mppx/server');
  const rpc = need(a, 'rpc');
  const chainId = Number(a['chain-id'] ?? '31337');
  const decimals = Number(a.decimals ?? '6');
  const currency = getAddress(need(a, 'currency'));
  const recipient = getAddress(need(a, 'recipient'));
  const amount = BigInt(need(a, 'amount'));
  const realm = a.realm ?? '127.0.0.1';
  const path = a.path ?? '/paid';
  const secretKey = env('PAY402_MPPX_SECRET');
  const settler = privateKeyToAccount(env('PAY402_MPPX_SETTLER_KEY'));
  const chain = chainOf(chainId, rpc);
  const wallet = createWalletClient({ account: settler, chain, transport: viemHttp(rpc) });
  const reader = createPublicClient({ chain, transport: viemHttp(rpc) });
  if ((await reader.getChainId()) !== chainId) fail(`the RPC is not chain ${chainId}`);

  const settle = async ({ payload }) => {
    const sig = parseSignature(payload.signature);
    const v = sig.v !== undefined ? Number(sig.v) : 27 + sig.yParity;
    const hash = await wallet.writeContract({
      address: currency,
      abi: transferWithAuthorizationAbi,
      functionName: 'transferWithAuthorization',
      args: [
        getAddress(payload.from),
        getAddress(payload.to),
        BigInt(payload.value),
        BigInt(payload.validAfter),
        BigInt(payload.validBefore),
        payload.nonce,
        v,
        sig.r,
        sig.s,
      ],
    });
    const receipt = await reader.waitForTransactionReceipt({ hash, timeout: 30_000 });
    if (receipt.status !== 'success') throw new Error(`settlement ${hash} reverted`);
    process.stdout.write(
      `${SETTLED}${JSON.stringify({ tx: hash, from: payload.from, value: payload.value, nonce: payload.nonce })}\n`,
    );
    return { reference: hash };
  };

  const mppx = Mppx.create({
    methods: [
      evm.charge({
        currency,
        recipient,
        chainId,
        decimals,
        authorization: { name: a.name ?? 'USD Coin', version: a.version ?? '2' },
        settle,
      }),
    ],
    secretKey,
    realm,
  });
  const handler = mppx.charge({
    amount: formatUnits(amount, decimals),
    description: 'pay402 interop',
  });

  const srv = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      process.stderr.write(`${req.method} ${url.pathname} auth=${req.headers.authorization ? 'yes' : 'no'}\n`);
      if (url.pathname === '/health') {
        res.end('ok');
        return;
      }
      if (url.pathname !== path) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      const result = await Mppx.toNodeListener(handler)(req, res);
      if (result.status === 402) return;
      res.setHeader('content-type', 'text/plain');
      res.end('paid through mppx');
    } catch (e) {
      process.stderr.write(`handler error: ${e?.stack ?? e}\n`);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    }
  });
  srv.listen(Number(a.port ?? '0'), '127.0.0.1', () => {
    const { port } = srv.address();
    process.stdout.write(`${READY}${JSON.stringify({ port, pid: process.pid, realm })}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

async function client(a) {
  const { Mppx, evm } = await import('mppx/client');
  const url = need(a, 'url');
  const account = privateKeyToAccount(env('PAY402_MPPX_CLIENT_KEY'));
  const chainId = Number(a['chain-id'] ?? '31337');
  const method = evm.charge({
    account,
    authorization: { name: a.name ?? 'USD Coin', version: a.version ?? '2' },
    networks: [chainId],
    ...(a.currency ? { currencies: [getAddress(a.currency)] } : {}),
    ...(a['max-atomic'] ? { maxAtomicAmount: a['max-atomic'] } : {}),
  });
  const mppx = Mppx.create({ methods: [method], polyfill: false });
  const timeout = Number(a['timeout-ms'] ?? '60000');
  const res = await mppx.fetch(url, { signal: AbortSignal.timeout(timeout) });
  const body = await res.text();
  const headers = {};
  res.headers.forEach((v, k) => {
    headers[k] = v;
  });
  let receipt = null;
  try {
    if (res.headers.get('payment-receipt')) receipt = Receipt.fromResponse(res);
  } catch (e) {
    receipt = { error: String(e?.message ?? e) };
  }
  process.stdout.write(
    `${RESULT}${JSON.stringify({ status: res.status, body, headers, receipt, payer: account.address })}\n`,
  );
}

function attempt(f) {
  try {
    return { value: f() };
  } catch (e) {
    return { error: String(e?.message ?? e) };
  }
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

async function parse() {
  const input = JSON.parse(await readStdin());
  const out = {};
  if (input.wwwAuthenticate !== undefined) {
    const lines = Array.isArray(input.wwwAuthenticate) ? input.wwwAuthenticate : [input.wwwAuthenticate];
    // Fetch joins repeated header lines with ", ", as mppx's client sees them.
    const headers = new Headers();
    for (const l of lines) headers.append('WWW-Authenticate', l);
    out.challenges = attempt(() => {
      const list = Challenge.fromHeadersList(headers);
      return list.map((c) => ({
        challenge: c,
        serialized: Challenge.serialize(c),
        ...(input.secret ? { verified: Challenge.verify(c, { secretKey: input.secret }) } : {}),
      }));
    });
    out.perLine = lines.map((l) => attempt(() => Challenge.deserializeList(l)));
  }
  if (input.paymentRequired !== undefined) {
    out.paymentRequired = attempt(() => x402.Header.decodePaymentRequired(input.paymentRequired));
  }
  if (input.receipts) {
    out.receipts = input.receipts.map((r) => attempt(() => Receipt.deserialize(r)));
  }
  if (input.credentials) {
    out.credentials = input.credentials.map((c) => attempt(() => Credential.deserialize(c)));
  }
  process.stdout.write(`${RESULT}${JSON.stringify(out, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

const [mode, ...rest] = process.argv.slice(2);
const run = { server, client, parse: () => parse() }[mode];
if (!run) fail(`usage: node mppx.mjs server|client|parse [options] (got ${mode})`);
run(args(rest)).catch((e) => fail(e?.stack ?? e));
