#!/usr/bin/env node
/*
 * launch.js - start one in-memory bcoin regtest node for pay402's tests.
 *
 * Used by the Rust harness `pay402_testkit::bcoin::Bcoin`, which installs the
 * pinned package.json beside this file into its own cache directory and runs
 *
 *   node launch.js --modules <cache>/node_modules --rpc-port 0 --wallet-port 0 \
 *                  --api-key <key>
 *
 * Options (each also readable from the environment variable in brackets):
 *   --modules DIR      node_modules holding bcoin 1.0.2 [PAY402_BCOIN_MODULES]
 *                      (default: ./node_modules beside this file)
 *   --rpc-port N       node HTTP/JSON-RPC port, 0 = any free port
 *                      [PAY402_BCOIN_RPC_PORT] (default 0)
 *   --wallet-port N    wallet HTTP port, 0 = any free port
 *                      [PAY402_BCOIN_WALLET_PORT] (default 0)
 *   --api-key KEY      password for HTTP basic auth (any user name)
 *                      [PAY402_BCOIN_API_KEY] (required)
 *   --log-level LEVEL  bcoin log level written to stderr, e.g. "debug"
 *                      [PAY402_BCOIN_LOG_LEVEL] (default: no logging)
 *
 * When both HTTP servers listen, it prints exactly one line on stdout:
 *
 *   PAY402_BCOIN_READY {"pid":1234,"rpcPort":40001,"walletPort":40002,...}
 *
 * It exits when its stdin reaches EOF (the parent died or dropped the pipe),
 * on SIGTERM/SIGINT/SIGHUP, or on a fatal error (exit code 1, message on
 * stderr, and a `PAY402_BCOIN_FAILED <message>` line on stdout).
 *
 * Adjustments to bcoin 1.0.2 so Rust clients (rust-bitcoin, ldk-node's
 * bitcoind chain source) accept it as a Bitcoin Core regtest node:
 *   1. regtest address/key prefixes are Bitcoin Core's (bcrt1..., m/n/2..., tprv/tpub);
 *      BIP34/65/66 heights are 1; segwit and csv are ACTIVE from genesis.
 *   2. the miner includes transactions paying only the minimum relay fee
 *      (miner.options.minWeight = 4000000).
 *   3. RPC shapes: getblockheader/getblock have 8-hex-digit `bits`, `nonce`,
 *      and omit null previousblockhash/nextblockhash; estimatesmartfee takes
 *      (nblocks, mode) and answers {feerate, blocks} or {errors, blocks};
 *      getblock accepts Core's integer verbosity 0/1/2.
 *   4. generatetoaddress/generate return only after the wallet has processed
 *      the mined blocks, so a wallet send right after mining sees the coins.
 */

'use strict';

const path = require('path');
const {createRequire} = require('module');

const READY = 'PAY402_BCOIN_READY';
const FAILED = 'PAY402_BCOIN_FAILED';

function fail(err) {
  const msg = err && err.stack ? err.stack : String(err);
  try {
    process.stderr.write(`bcoin launcher: ${msg}\n`);
    process.stdout.write(`${FAILED} ${String(err && err.message ? err.message : err).replace(/\n/g, ' ')}\n`);
  } catch (e) {
    // Nothing left to report to.
  }
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--'))
      throw new Error(`unexpected argument: ${arg}`);
    let key = arg.slice(2);
    let value;
    const eq = key.indexOf('=');
    if (eq !== -1) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      if (i + 1 >= argv.length)
        throw new Error(`missing value for --${key}`);
      value = argv[++i];
    }
    out[key] = value;
  }
  return out;
}

function parsePort(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new Error(`invalid ${name}: ${value}`);
  return n;
}

const args = parseArgs(process.argv.slice(2));
const env = process.env;

const modulesDir = path.resolve(
  args.modules || env.PAY402_BCOIN_MODULES || path.join(__dirname, 'node_modules'));
const rpcPort = parsePort('rpc port', args['rpc-port'] || env.PAY402_BCOIN_RPC_PORT || '0');
const walletPort = parsePort('wallet port',
  args['wallet-port'] || env.PAY402_BCOIN_WALLET_PORT || '0');
const apiKey = args['api-key'] || env.PAY402_BCOIN_API_KEY;
const logLevel = args['log-level'] || env.PAY402_BCOIN_LOG_LEVEL || null;

if (!apiKey)
  throw new Error('an API key is required (--api-key or PAY402_BCOIN_API_KEY)');

// Resolve bcoin from the harness's cache directory, not from this file's.
const req = createRequire(path.join(modulesDir, 'pay402-launcher.js'));

let bcoinPkg;
try {
  bcoinPkg = req('bcoin/package.json');
} catch (e) {
  throw new Error(`bcoin is not installed under ${modulesDir}: ${e.message}`);
}
if (bcoinPkg.version !== '1.0.2')
  throw new Error(`expected bcoin 1.0.2 under ${modulesDir}, found ${bcoinPkg.version}`);

// ---------------------------------------------------------------------------
// 1. Network parameters: Bitcoin Core's regtest prefixes and soft-fork heights.
//    Must happen before any bcoin Network object is created.
// ---------------------------------------------------------------------------

const networks = req('bcoin/lib/protocol/networks');
const regtest = networks.regtest;

regtest.addressPrefix = {
  pubkeyhash: 0x6f,
  scripthash: 0xc4,
  witnesspubkeyhash: 0x03,
  witnessscripthash: 0x28,
  bech32: 'bcrt'
};

regtest.keyPrefix = {
  privkey: 0xef,
  xpubkey: 0x043587cf,
  xprivkey: 0x04358394,
  xpubkey58: 'tpub',
  xprivkey58: 'tprv',
  coinType: 1
};

regtest.block.bip34height = 1;
regtest.block.bip65height = 1;
regtest.block.bip66height = 1;

const Chain = req('bcoin/lib/blockchain/chain');
const {thresholdStates} = req('bcoin/lib/blockchain/common');

const getState = Chain.prototype.getState;
Chain.prototype.getState = async function (prev, deployment) {
  if (deployment && (deployment.name === 'segwit' || deployment.name === 'csv'))
    return thresholdStates.ACTIVE;
  return getState.call(this, prev, deployment);
};

// ---------------------------------------------------------------------------
// 3. RPC shapes (patched on the prototype before the node creates its RPC).
// ---------------------------------------------------------------------------

const RPC = req('bcoin/lib/node/rpc');
// bweb as bcoin itself resolves it (it may be nested under bcoin/node_modules).
const bweb = createRequire(req.resolve('bcoin/lib/node/rpc'))('bweb');
const {RPCError, errors: rpcErrs} = bweb;

function coreHeaderShape(json, entry) {
  json.bits = (entry.bits >>> 0).toString(16).padStart(8, '0');
  json.nonce = entry.nonce >>> 0;
  if (json.previousblockhash == null)
    delete json.previousblockhash;
  if (json.nextblockhash == null)
    delete json.nextblockhash;
  return json;
}

const headerToJSON = RPC.prototype.headerToJSON;
RPC.prototype.headerToJSON = async function (entry) {
  return coreHeaderShape(await headerToJSON.call(this, entry), entry);
};

const blockToJSON = RPC.prototype.blockToJSON;
RPC.prototype.blockToJSON = async function (entry, block, details) {
  const json = coreHeaderShape(await blockToJSON.call(this, entry, block, details), entry);
  json.nTx = block.txs.length;
  return json;
};

const getBlock = RPC.prototype.getBlock;
RPC.prototype.getBlock = async function (args, help) {
  // Bitcoin Core: verbosity 0 = hex, 1 = JSON, 2 = JSON with transactions.
  if (!help && Array.isArray(args) && args.length === 2 && args[1] === 2)
    args = [args[0], true, true];
  return getBlock.call(this, args, help);
};

RPC.prototype.estimateSmartFee = async function (args, help) {
  if (help || args.length < 1 || args.length > 2)
    throw new RPCError(rpcErrs.MISC_ERROR, 'estimatesmartfee conf_target ( "estimate_mode" )');

  const target = args[0];
  if (!Number.isInteger(target) || target < 0)
    throw new RPCError(rpcErrs.TYPE_ERROR, 'conf_target must be a non-negative integer');

  if (args.length === 2 && args[1] != null) {
    const mode = String(args[1]).toUpperCase();
    if (mode !== 'UNSET' && mode !== 'ECONOMICAL' && mode !== 'CONSERVATIVE')
      throw new RPCError(rpcErrs.INVALID_PARAMETER, 'Invalid estimate_mode parameter');
  }

  const blocks = Math.min(Math.max(target, 1), 1008);

  if (!this.fees)
    return {errors: ['Fee estimation not available'], blocks};

  // Satoshis per kvB; 0 when the estimator has no data (always, at first, on regtest).
  const rate = this.fees.estimateFee(blocks, true);
  if (!rate)
    return {errors: ['Insufficient data or no feerate found'], blocks};

  return {feerate: rate / 1e8, blocks};
};

// ---------------------------------------------------------------------------
// Node.
// ---------------------------------------------------------------------------

const FullNode = req('bcoin/lib/node/fullnode');
const walletPlugin = req('bcoin/lib/wallet/plugin');

const node = new FullNode({
  network: 'regtest',
  memory: true,
  indexTX: true,
  indexAddress: true,
  workers: false,
  listen: false,
  // Nothing is read from ~/.bcoin: every option is given here.
  prefix: path.join(modulesDir, '..', 'bcoin-prefix-unused'),
  logFile: false,
  logConsole: logLevel != null,
  logLevel: logLevel || 'none',
  httpHost: '127.0.0.1',
  httpPort: rpcPort,
  apiKey: apiKey,
  walletHttpHost: '127.0.0.1',
  walletHttpPort: walletPort,
  walletApiKey: apiKey
});

node.use(walletPlugin);

node.pool.options.maxOutbound = 0;

// 2. Mine transactions that pay only the minimum relay fee.
node.miner.options.minWeight = 4000000;

// 4. Let generate/generatetoaddress return once the wallet has caught up.
const wdb = () => node.require('walletdb').wdb;

async function walletCaughtUp(rpc) {
  const deadline = Date.now() + 10000;
  while (wdb().state.height < rpc.chain.height) {
    if (Date.now() > deadline)
      throw new RPCError(rpcErrs.MISC_ERROR, 'wallet did not catch up with the chain in 10 s');
    await new Promise(resolve => setTimeout(resolve, 2));
  }
}

for (const name of ['generate', 'generateToAddress']) {
  const original = node.rpc[name];
  const wrapped = async function (args, help) {
    const result = await original.call(this, args, help);
    await walletCaughtUp(this);
    return result;
  };
  node.rpc[name] = wrapped;
  node.rpc.calls[name.toLowerCase()] = wrapped;
}

node.on('error', (err) => {
  if (logLevel != null)
    process.stderr.write(`bcoin node error: ${err && err.stack ? err.stack : err}\n`);
});

// ---------------------------------------------------------------------------
// Lifetime: stop on stdin EOF or on a signal.
// ---------------------------------------------------------------------------

let stopping = false;
function stop(why) {
  if (stopping)
    return;
  stopping = true;
  if (logLevel != null)
    process.stderr.write(`bcoin launcher: stopping (${why})\n`);
  // Memory-only node: nothing to flush. Try a clean close, but never linger.
  setTimeout(() => process.exit(0), 1000).unref();
  node.close().then(() => process.exit(0), () => process.exit(0));
}

process.stdin.on('end', () => stop('stdin closed'));
process.stdin.on('close', () => stop('stdin closed'));
process.stdin.on('error', () => stop('stdin error'));
process.stdin.resume();

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'])
  process.on(sig, () => stop(sig));

(async () => {
  await node.open();
  await node.connect();
  node.startSync();

  const walletHttp = node.require('walletdb').http;
  const info = {
    pid: process.pid,
    rpcHost: '127.0.0.1',
    rpcPort: node.http.address().port,
    walletPort: walletHttp.address().port,
    network: 'regtest',
    bcoin: bcoinPkg.version,
    height: node.chain.height
  };

  if (!stopping)
    process.stdout.write(`${READY} ${JSON.stringify(info)}\n`);
})().catch(fail);
