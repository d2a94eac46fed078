#!/usr/bin/env bash
# Benchmark: how fast the workload generator makes events on a local anvil.
#   bench/workload.sh [ORDERS] [VAULT_OPS]     (defaults: 26000 orders, 6000 vault ops,
#                                              which make about 100,000 events)
# Prints the generator's report (events, transactions, blocks, seconds, events per
# second) and anvil's resident memory at the end. Needs scripts/setup.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-26000}
vault_ops=${2:-6000}
work=$(mktemp -d /tmp/bitacora-bench.XXXXXX)
source scripts/anvil.sh
trap 'kill $anvil_pid 2>/dev/null || true; rm -rf "$work"' EXIT
start_anvil "$work"
port=$anvil_port
anvil=$anvil_pid

/usr/bin/python3 contracts/tools/deploy.py --rpc "http://127.0.0.1:$port" --out "$work/deployment.json" >/dev/null
/usr/bin/python3 contracts/tools/workload.py --rpc "http://127.0.0.1:$port" --deployment "$work/deployment.json" \
  --seed 1 --orders "$orders" --vault-ops "$vault_ops" --actors 200 --report "$work/report.json" >/dev/null
/usr/bin/python3 - "$work/report.json" "$anvil" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rss_kb = next(int(l.split()[1]) for l in open(f"/proc/{sys.argv[2]}/status") if l.startswith("VmRSS:"))
print(f"workload: {report['events']} events ({report['transactions']} transactions, {report['blocks']} blocks) "
      f"in {report['seconds']} s")
print(f"workload: {report['eventsPerSecond']} events/s, {report['transactionsPerSecond']} transactions/s")
print(f"workload: paths {report['paths']}")
print(f"anvil: resident memory {rss_kb // 1024} MiB at the end")
PY
