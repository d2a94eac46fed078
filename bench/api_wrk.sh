#!/usr/bin/env bash
# Benchmark: the JSON-RPC API under wrk on loopback, against a ledger of 1 million
# events: order lookups (escrow_getOrder of random orders) and inclusion proofs
# (ledger_getInclusionProof of random events) at 1, 16 and 64 connections.
#   bench/api_wrk.sh [EVENTS] [SECONDS]     (defaults: 1000000 events, 10 s a run)
# Prints requests/s and latency percentiles per run. Needs scripts/setup.sh (wrk, build/).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
seconds=${2:-10}
work=$(mktemp -d /tmp/bitacora-wrk.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/regtest"
echo "== writing a ledger of $events events"
build/bench/make_ledger "$work/regtest/ledger" "$events"
source scripts/anvil.sh
port=$(free_port)
build/daemon/bitacorad -chain=regtest -datadir="$work" -printtoconsole=0 -rpcbind=127.0.0.1 -rpcport="$port" \
  -rpcopenreads=1 -rpcworkqueue=1024 -rpcthreads="${RPC_THREADS:-4}" &
pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
orders=$((events / 4))
cat > "$work/order.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local id = math.random(1, $orders)
  return wrk.format(nil, "/", nil, '{"jsonrpc":"2.0","id":1,"method":"escrow_getOrder","params":["' .. id .. '"]}')
end
LUA
cat > "$work/proof.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local index = math.random(0, $events - 1)
  return wrk.format(nil, "/", nil, '{"jsonrpc":"2.0","id":1,"method":"ledger_getInclusionProof","params":[' .. index .. ']}')
end
LUA
# A check that the answers are results, not errors.
curl -s -d '{"jsonrpc":"2.0","id":1,"method":"escrow_getOrder","params":["7"]}' "http://127.0.0.1:$port/" | grep -q '"result"'
curl -s -d '{"jsonrpc":"2.0","id":1,"method":"ledger_getInclusionProof","params":[5]}' "http://127.0.0.1:$port/" | grep -q '"path"'
for script in order proof; do
  for connections in 1 16 64; do
    threads=$(( connections < 2 ? 1 : 2 ))
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$work/$script.lua" "http://127.0.0.1:$port/")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    echo "api: $script, $connections connections: $rps requests/s, p50 $p50, p99 $p99${errors:+, non-2xx $errors}"
  done
done
