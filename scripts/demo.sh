#!/usr/bin/env bash
# The main job on an embedded default: set everything up, start a local anvil chain,
# deploy the platform's contracts and make them busy with the workload generator,
# and a regtest bitcoind (the repository's double, or a real one when BITCOIND names it)
# with a funded wallet, then start bitacorad on a fresh data dir following both: it
# catches up, follows a second workload live, reconciles its projections with the
# contracts, anchors its root into Bitcoin until final, answers bitacora-cli, proves an
# event against Bitcoin three ways, and stops cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo

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

echo
btcdir="$demo/bitcoind"
mkdir -p "$btcdir"
btc_port=$(free_port)
btc_zmq=$(free_port)
if [ -n "${BITCOIND:-}" ]; then
  bitcoind_cmd=("$BITCOIND"); echo "== Starting bitcoind ($BITCOIND) on regtest, pruned, ZMQ on"
else
  bitcoind_cmd=(/usr/bin/python3 tests/integration/btc_double.py)
  echo "== Starting the regtest bitcoind double (tests/integration/btc_double.py; BITCOIND=/path/to/bitcoind runs a real one)"
fi
"${bitcoind_cmd[@]}" -regtest -datadir="$btcdir" -rpcport="$btc_port" -port="$(free_port)" -listen=0 \
  -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 -fallbackfee=0.0002 -prune=1 -fastprune -printtoconsole=0 \
  -zmqpubsequence="tcp://127.0.0.1:$btc_zmq" -zmqpubhashblock="tcp://127.0.0.1:$btc_zmq" >"$demo/bitcoind.log" 2>&1 &
btc_pid=$!
pids+=("$btc_pid")
btc() { scripts/btcrpc.py "$btcdir/regtest/.cookie" "$btc_port" "$@"; }
# Bounds are generous (they cost nothing when things go well): on a loaded machine the
# bitcoind double once took over 10 s to write its cookie.
for _ in $(seq 1 600); do
  [ -f "$btcdir/regtest/.cookie" ] && btc getblockcount >/dev/null 2>&1 && break
  kill -0 "$btc_pid" 2>/dev/null || { echo "demo: bitcoind exited at start:" >&2; tail -20 "$demo/bitcoind.log" >&2; exit 1; }
  sleep 0.2
done
btc getblockcount >/dev/null || { echo "demo: bitcoind did not answer within 120 s" >&2; tail -20 "$demo/bitcoind.log" >&2; exit 1; }
btc createwallet anchor >/dev/null
miner=$(btc -wallet=anchor getnewaddress)
btc generatetoaddress 101 "$miner" >/dev/null
echo "   wallet 'anchor' funded: $(btc -wallet=anchor getbalance) BTC spendable, best height $(btc getblockcount)"

datadir="$demo/bitacora"
mkdir -p "$datadir"
log="$datadir/regtest/debug.log"
read -r escrow vault start_block < <(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["contracts"]["P2PEscrow"], d["contracts"]["YieldVault"], d["deploymentBlock"])' "$demo/deployment.json")
# The settings a deployment would put in bitacora.conf, as flags.
follow=(-chain=regtest -datadir="$datadir" -printtoconsole=0 -rpcport=0 -evmrpc="http://127.0.0.1:$port"
        -escrow="$escrow" -vault="$vault" -evmstartblock="$start_block" -evmpollinterval=250
        -evmreconcileinterval=5 -btcrpcconnect="127.0.0.1:$btc_port" -btcrpccookiefile="$btcdir/regtest/.cookie"
        -btcwallet=anchor -anchorconfirmations=6)
echo
echo "== Starting bitacorad ${follow[*]}"
build/daemon/bitacorad "${follow[@]}" &
pid=$!
pids+=("$pid")
for _ in $(seq 1 1800); do
  grep -q "EVM synced" "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "bitacorad exited during start-up"; cat "$log"; exit 1; }
  sleep 0.1
done
grep -q "EVM synced" "$log" || { echo "bitacorad did not catch up within 180 s"; cat "$log"; exit 1; }
echo "== Caught up (final blocks in the log, the last 64 blocks pending, as anvil's finalized tag says):"
grep -E "EVM (follower|chain|catch-up|synced)" "$log" | cut -c1-250

# A field of one JSON answer, read from stdin: jfield KEY[.KEY...]
jfield() { /usr/bin/python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
rpcport=$(grep -o "RPC server on port [0-9]*" "$log" | grep -o "[0-9]*$")
cli=(build/daemon/bitacora-cli -chain=regtest -datadir="$datadir" -rpcport="$rpcport")
# Waits until anchor $1 is in state $2 (bitacora-cli exits non-zero while it does not exist).
wait_anchor() {
  for _ in $(seq 1 1200); do
    [ "$("${cli[@]}" ledger_getAnchor "$1" 2>/dev/null | jfield state 2>/dev/null)" = "$2" ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "bitacorad exited"; tail -n 20 "$log"; exit 1; }
    sleep 0.1
  done
  echo "anchor $1 did not become $2 within 120 s"; tail -n 20 "$log"; exit 1
}
show_anchor() {
  "${cli[@]}" ledger_getAnchor "$1" | /usr/bin/python3 -c 'import json,sys; a=json.load(sys.stdin)
print(json.dumps({k: a.get(k) for k in ("id", "state", "treeSize", "root", "txid", "blockHeight")}, indent=2))'
}

echo
echo "== The first automatic anchor: made once both followers caught up (then every -anchorinterval, 1 h)"
wait_anchor 1 broadcast
grep -E "first anchor waits|Anchor 1 (planned|broadcast)" "$log" | cut -c1-200
echo "   mining 6 blocks (final at 6 confirmations)"
btc generatetoaddress 6 "$miner" >/dev/null
wait_anchor 1 final
echo "\$ bitacora-cli ledger_getAnchor 1"
show_anchor 1

echo
echo "== Following live: a second workload (500 orders), then 64 blocks so that all of it is final"
/usr/bin/python3 contracts/tools/workload.py --rpc "http://127.0.0.1:$port" --deployment "$demo/deployment.json" \
  --seed 2 --orders 500 --vault-ops 100 --actors 20 --finalize 64 >/dev/null
head=$(/usr/bin/python3 -c 'import json,sys,urllib.request
r=urllib.request.urlopen(urllib.request.Request(sys.argv[1], json.dumps({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}).encode(), {"Content-Type":"application/json"}))
print(int(json.load(r)["result"], 16))' "http://127.0.0.1:$port")
for _ in $(seq 1 1200); do
  grep -q "EVM synced: final block $((head - 64)) .*pending tip $head " "$log" && break
  sleep 0.1
done
grep -q "EVM synced: final block $((head - 64)) .*pending tip $head " "$log" \
  || { echo "bitacorad did not follow to block $head"; tail -n 20 "$log"; exit 1; }
echo "== The last lines of the follower (head $head):"
grep -E "EVM synced" "$log" | tail -n 2 | cut -c1-250
echo "== Reconciliation with the contracts (eth_call at the final block $((head - 64)), every 5 s):"
for _ in $(seq 1 600); do
  grep -qE "EVM reconcil.* at block $((head - 64))[:,]" "$log" && break
  sleep 0.1
done
grep -E "EVM reconcil.* at block $((head - 64))[:,]" "$log" | tail -n 1 | cut -c1-250 | grep . \
  || { echo "no reconciliation at block $((head - 64)) within 60 s"; grep -E "EVM reconcil|DRIFT" "$log" | tail -n 3; exit 1; }

echo
echo "== Querying the running daemon with bitacora-cli (cookie auth from the data dir)"
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

echo
echo "== Anchoring what came since into Bitcoin, now, on request"
echo "\$ bitacora-cli admin_anchorNow"
"${cli[@]}" admin_anchorNow > "$demo/anchor-now.json"
/usr/bin/python3 - "$demo/anchor-now.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a = r.get("anchor") or {}
print(json.dumps({"anchored": r["anchored"], "anchor": {k: a.get(k) for k in ("id", "state", "treeSize", "root", "txid")}}, indent=2))
if not r["anchored"]:
    sys.exit(f"admin_anchorNow did not anchor: {r.get('message')}")
PY
anchor_id=$(jfield anchor.id < "$demo/anchor-now.json")
anchor_size=$(jfield anchor.treeSize < "$demo/anchor-now.json")
echo "   mining 1 block, then 5 more (final at 6 confirmations)"
btc generatetoaddress 1 "$miner" >/dev/null
wait_anchor "$anchor_id" confirmed
btc generatetoaddress 5 "$miner" >/dev/null
wait_anchor "$anchor_id" final
echo "\$ bitacora-cli ledger_getAnchor $anchor_id"
show_anchor "$anchor_id"
echo "== Anchor $anchor_id's lifecycle in the log (its anchor events, after tree size $anchor_size):"
"${cli[@]}" ledger_getEvents "$anchor_size" 100 | /usr/bin/python3 -c 'import json,sys
events = [e for e in json.load(sys.stdin)["events"] if e["event"]["kind"] == "anchor"]
for e in events: print("  ", e["index"], e["event"]["kind"], e["event"]["fields"]["stateName"], "of size", e["event"]["fields"]["anchoredSize"], "block", e["event"]["fields"].get("blockHeight"))
states = [e["event"]["fields"]["stateName"] for e in events]
sys.exit(0 if "final" in states else f"no final anchor event after tree size {sys.argv[1]}: {states}")' "$anchor_size"
echo "\$ bitacora-cli ledger_getProofBundle 1234 > proof.json"
"${cli[@]}" ledger_getProofBundle 1234 > "$demo/proof.json"
echo "== The proof checked against the node too (a pruned node is enough: only headers are asked for):"
build/daemon/bitacora-cli verifyproof "$demo/proof.json" -checkpointkey="$key" -btcrpcconnect="127.0.0.1:$btc_port" \
  -btcrpccookiefile="$btcdir/regtest/.cookie" -minconfirmations=6

echo
echo "== Sending SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
echo "== bitacorad exited with status $status; the last lines of its log:"
tail -n 5 "$log"
echo
echo "== The proof, verified offline (the daemon is stopped):"
build/daemon/bitacora-cli verifyproof "$demo/proof.json" -checkpointkey="$key" -requireanchor
echo "== ... by the auditor guide's standalone verifier (hashlib only, docs/auditor-guide.md):"
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); import auditor_guide
code, out = auditor_guide.run_verifier(".", sys.argv[1]); print(out); sys.exit(code)' "$demo/proof.json"
echo "== ... and as an OpenTimestamps proof, checked by the OpenTimestamps library against the block header:"
build/daemon/bitacora-cli exportots "$demo/proof.json" "$demo/proof.ots"
/usr/bin/python3 tests/integration/ots_check.py "$demo/proof.json" "$demo/proof.ots"
echo
echo "== What the ledger holds (bitacora-inspect on the stopped daemon's data dir):"
printf 'summary\ntotals\n' | build/daemon/bitacora-inspect "$datadir/regtest/ledger"
echo
echo "Kept for inspection: $demo (deployment.json, workload.json, anvil.log, bitcoind/, proof.json, proof.ots, bitacora/)"
exit "$status"
