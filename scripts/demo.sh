#!/usr/bin/env bash
# The main job on an embedded default: set everything up, start a local anvil chain,
# deploy the platform's contracts and make them busy with the workload generator,
# then start bitacorad on a fresh data dir, show what it logged, and stop everything
# cleanly. (bitacorad follows the chain once the EVM follower lands; see README.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

demo=$(mktemp -d /tmp/bitacora-demo.XXXXXX)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

echo
echo "== Starting anvil on 127.0.0.1:$port"
contracts/node_modules/.bin/anvil --host 127.0.0.1 --port "$port" --gas-limit 10000000000 --prune-history 256 \
  >"$demo/anvil.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "== Deploying P2PEscrow, YieldVault, MockUSDC and MockAavePool"
/usr/bin/python3 contracts/tools/deploy.py --rpc "http://127.0.0.1:$port" --out "$demo/deployment.json"

echo
echo "== Running the workload generator: 3,000 orders through every path, 600 vault operations"
/usr/bin/python3 contracts/tools/workload.py --rpc "http://127.0.0.1:$port" --deployment "$demo/deployment.json" \
  --seed 1 --orders 3000 --vault-ops 600 --actors 50 --finalize 64 --report "$demo/workload.json"

datadir="$demo/bitacora"
mkdir -p "$datadir"
log="$datadir/regtest/debug.log"
echo
echo "== Starting bitacorad -chain=regtest -datadir=$datadir"
build/daemon/bitacorad -chain=regtest -datadir="$datadir" -debug=ledger -printtoconsole=0 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 300); do
  grep -q "Initialization done" "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "bitacorad exited during start-up"; exit 1; }
  sleep 0.1
done
grep -q "Initialization done" "$log" || { echo "bitacorad did not start within 30 s"; exit 1; }

echo "== bitacorad is running (pid $pid); its log so far:"
cat "$log"
echo
echo "== Sending SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
echo "== bitacorad exited with status $status; the last lines of its log:"
tail -n 4 "$log"
echo
echo "Kept for inspection: $demo (deployment.json, workload.json, anvil.log, bitacora/)"
exit "$status"
