#!/usr/bin/env bash
# Benchmark: the EVM follower's catch-up and live latency on a local anvil.
#   bench/evm_catchup.sh [ORDERS] [VAULT_OPS] [WAVE] [MODES]
#                        (defaults: 26000 orders, 6000 vault operations, 500 orders a wave:
#                        about 100,000 events in about 265 blocks; MODES: the -evmverify
#                        modes to measure, comma-separated, default "bloom"; "all" is
#                        none,bloom,receipts,quorum — quorum asks anvil under two URLs)
# 1. Makes the workload (this takes a minute or two: anvil's pace, not ours), mines 64
#    blocks so that all of it is final, and measures catch-up from the deployment block
#    to fully synced: events/s, RPC requests, peak RSS, and where the time went.
# 2. Follows live while a second, smaller workload runs, and prints the latency from a
#    block returned by the node to its events being visible in the pending overlay.
# Needs scripts/setup.sh to have run (anvil, forge artifacts, build/).
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-26000}
vault_ops=${2:-6000}
wave=${3:-500}
modes=${4:-bloom}
[ "$modes" = all ] && modes=none,bloom,receipts,quorum
source scripts/anvil.sh
work=$(mktemp -d /tmp/bitacora-bench.XXXXXX)
trap 'kill $anvil_pid 2>/dev/null || true; rm -rf "$work"' EXIT
start_anvil "$work"
rpc="http://127.0.0.1:$anvil_port"

/usr/bin/python3 contracts/tools/deploy.py --rpc "$rpc" --out "$work/deployment.json" >/dev/null
/usr/bin/python3 contracts/tools/workload.py --rpc "$rpc" --deployment "$work/deployment.json" --seed 1 \
  --orders "$orders" --vault-ops "$vault_ops" --actors 200 --wave "$wave" --finalize 64 --report "$work/report.json" >/dev/null
/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"workload: {r['events']} events in {r['lastWorkloadBlock'] - r['firstBlock'] + 1} blocks ({r['seconds']} s to make)\")" "$work/report.json"

summary=""
for mode in ${modes//,/ }; do
  echo "== catch-up, -evmverify=$mode"
  extra=()
  [ "$mode" = quorum ] && extra=(--rpc "http://localhost:$anvil_port")
  build/bench/evm_catchup_bench --rpc "$rpc" "${extra[@]}" --deployment "$work/deployment.json" --verify "$mode" \
    | tee "$work/catchup-$mode.txt"
  summary+=$(sed -n "s/^catch-up: \([0-9]*\) events .* in \([0-9.]*\) s = \([0-9]*\) events\/s.*/$mode: \1 events in \2 s = \3 events\/s/p" \
    "$work/catchup-$mode.txt")$'\n'
done
echo "== catch-up rate per -evmverify mode"
printf "%s" "$summary"

echo "== live (a second workload of 2,000 orders runs meanwhile, 150 a wave)"
build/bench/evm_catchup_bench --rpc "$rpc" --deployment "$work/deployment.json" --live-seconds 25 &
bench=$!
sleep 3
/usr/bin/python3 contracts/tools/workload.py --rpc "$rpc" --deployment "$work/deployment.json" --seed 2 \
  --orders 2000 --vault-ops 400 --actors 50 >/dev/null
wait "$bench"
