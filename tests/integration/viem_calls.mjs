// Calls bitacorad through viem's own http transport, as a TypeScript backend would, and
// prints what reached the caller: for each call its result, or the error viem threw
// (class name, code, details, the HTTP status it saw). Used by test_viem.py.
//
// node viem_calls.mjs SPEC.json, where SPEC is
//   {contracts, url, authorization (or null), batch: {batchSize} or null,
//    calls: [{method, params}, ...]}
// viem comes from contracts/node_modules (contracts/package.json, npm ci in scripts/setup.sh).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const require = createRequire(join(spec.contracts, 'package.json'));
const { createPublicClient, http } = require('viem');

let fetches = 0;
const transport = http(spec.url, {
  batch: spec.batch ?? false,
  fetchOptions: spec.authorization ? { headers: { Authorization: spec.authorization } } : {},
  // viem's defaults (retryCount 3, retryDelay 150 ms) stay: the test checks what it retries.
  onFetchRequest: () => { fetches += 1; },
});
const client = createPublicClient({ transport });

function describe(error) {
  const request = typeof error.walk === 'function' ? error.walk((e) => e?.name === 'RpcRequestError') : null;
  return {
    name: error.name,
    code: error.code ?? null,
    details: error.details ?? null,
    status: request?.status ?? null,
    message: String(error.message).slice(0, 400),
  };
}

const settled = await Promise.allSettled(
  spec.calls.map(({ method, params }) => client.request({ method, params })));
const outcomes = settled.map((s) => (s.status === 'fulfilled' ? { ok: true, result: s.value }
                                                               : { ok: false, error: describe(s.reason) }));
process.stdout.write(JSON.stringify({ fetches, outcomes }));
