#!/usr/bin/env bash
# The main job on an embedded default: set everything up, start a local anvil chain,
# deploy the platform's contracts and make them busy with the workload generator,
# then start bitacorad on a fresh data dir following the chain: it catches up, follows a
# second workload live, reconciles its projections with the contracts, and stops cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

demo=$(mktemp -d /tmp/bitacora-demo.XXXXXX)
source scripts/anvil.sh
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

echo
echo "== Starting anvil on 127.0.0.1"
start_anvil "$demo"
pids+=("$anvil_pid")
port=$anvil_port

echo "== Deploying P2PEscrow, YieldVault, MockUSDC and MockAavePool"
/usr/bin/python3 contracts/tools/deploy.py --rpc "http://127.0.0.1:$port" --out "$demo/deployment.json"

echo
echo "== Running the workload generator: 3,000 orders through every path, 600 vault operations"
/usr/bin/python3 contracts/tools/workload.py --rpc "http://127.0.0.1:$port" --deployment "$demo/deployment.json" \
  --seed 1 --orders 3000 --vault-ops 600 --actors 50 --finalize 64 --report "$demo/workload.json"

datadir="$demo/bitacora"
mkdir -p "$datadir"
log="$datadir/regtest/debug.log"
read -r escrow vault start_block < <(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["contracts"]["P2PEscrow"], d["contracts"]["YieldVault"], d["deploymentBlock"])' "$demo/deployment.json")
# The settings a deployment would put in bitacora.conf, as flags.
follow=(-chain=regtest -datadir="$datadir" -printtoconsole=0 -rpcport=0 -evmrpc="http://127.0.0.1:$port"
        -escrow="$escrow" -vault="$vault" -evmstartblock="$start_block" -evmpollinterval=250
        -evmreconcileinterval=5)
echo
echo "== Starting bitacorad ${follow[*]}"
build/daemon/bitacorad "${follow[@]}" &
pid=$!
pids+=("$pid")
for _ in $(seq 1 600); do
  grep -q "EVM synced" "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "bitacorad exited during start-up"; cat "$log"; exit 1; }
  sleep 0.1
done
grep -q "EVM synced" "$log" || { echo "bitacorad did not catch up within 60 s"; cat "$log"; exit 1; }
echo "== Caught up (final blocks in the log, the last 64 blocks pending, as anvil's finalized tag says):"
grep -E "EVM (follower|chain|catch-up|synced)" "$log" | cut -c1-250

echo
echo "== Following live: a second workload (500 orders), then 64 blocks so that all of it is final"
/usr/bin/python3 contracts/tools/workload.py --rpc "http://127.0.0.1:$port" --deployment "$demo/deployment.json" \
  --seed 2 --orders 500 --vault-ops 100 --actors 20 --finalize 64 >/dev/null
head=$(/usr/bin/python3 -c 'import json,sys,urllib.request
r=urllib.request.urlopen(urllib.request.Request(sys.argv[1], json.dumps({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}).encode(), {"Content-Type":"application/json"}))
print(int(json.load(r)["result"], 16))' "http://127.0.0.1:$port")
for _ in $(seq 1 300); do
  grep -q "EVM synced: final block $((head - 64)) .*pending tip $head " "$log" && break
  sleep 0.1
done
grep -q "EVM synced: final block $((head - 64)) .*pending tip $head " "$log" \
  || { echo "bitacorad did not follow to block $head"; tail -n 20 "$log"; exit 1; }
echo "== The last lines of the follower (head $head):"
grep -E "EVM synced" "$log" | tail -n 2 | cut -c1-250
echo "== Reconciliation with the contracts (eth_call at the final block):"
grep -E "EVM reconcil|DRIFT" "$log" | tail -n 3 | cut -c1-250

echo
echo "== Querying the running daemon with bitacora-cli (cookie auth from the data dir)"
rpcport=$(grep -o "RPC server on port [0-9]*" "$log" | grep -o "[0-9]*$")
cli=(build/daemon/bitacora-cli -chain=regtest -datadir="$datadir" -rpcport="$rpcport")
echo "\$ bitacora-cli escrow_getOrder 7"
"${cli[@]}" escrow_getOrder 7
seller=$("${cli[@]}" escrow_getOrder 7 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["seller"])')
echo "\$ bitacora-cli -named escrow_getOrders filter='{\"seller\":\"$seller\"}' limit=3   (first page)"
"${cli[@]}" -named escrow_getOrders filter="{\"seller\":\"$seller\"}" limit=3 \
  | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"orders": [{k: o[k] for k in ("orderId", "state", "amount")} for o in r["orders"]], "nextCursor": r["nextCursor"]}, indent=2))'
echo "\$ bitacora-cli vault_getPosition $seller"
"${cli[@]}" vault_getPosition "$seller" || true
echo "\$ bitacora-cli ledger_getCheckpoint"
"${cli[@]}" ledger_getCheckpoint
key=$("${cli[@]}" bitacora_status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ledger"]["checkpointKey"])')
echo "\$ bitacora-cli ledger_getProofBundle 1234 > proof.json; bitacora-cli verifyproof proof.json -checkpointkey=$key"
"${cli[@]}" ledger_getProofBundle 1234 > "$demo/proof.json"

echo
echo "== Sending SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
echo "== bitacorad exited with status $status; the last lines of its log:"
tail -n 5 "$log"
echo
echo "== The proof, verified offline (the daemon is stopped):"
build/daemon/bitacora-cli verifyproof "$demo/proof.json" -checkpointkey="$key"
echo
echo "== What the ledger holds (bitacora-inspect on the stopped daemon's data dir):"
printf 'summary\ntotals\n' | build/daemon/bitacora-inspect "$datadir/regtest/ledger"
echo
echo "Kept for inspection: $demo (deployment.json, workload.json, anvil.log, proof.json, bitacora/)"
exit "$status"
