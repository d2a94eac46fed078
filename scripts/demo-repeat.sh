#!/usr/bin/env bash
# Runs the demo N times with the bitcoind double and, when a bitcoind binary is given,
# N more times against it; one line per run, then "demo: P of T passed". Issue 13 asks
# for it beside a running test suite: `scripts/test.sh & scripts/demo-repeat.sh 5 $BITCOIND`.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
real=${2:-}
logs=$(mktemp -d /tmp/bitacora-demo-repeat.XXXXXX)
pass=0 total=0
for mode in double ${real:+real}; do
  for i in $(seq 1 "$n"); do
    total=$((total + 1))
    start=$(date +%s)
    if [ "$mode" = real ]; then env=(BITCOIND="$real"); else env=(); fi
    if env "${env[@]}" bash scripts/demo.sh >"$logs/$mode-$i.log" 2>&1; then pass=$((pass + 1)); r=PASS; else r=FAIL; fi
    echo "$mode run $i: $r in $(($(date +%s) - start)) s (load $(cut -d' ' -f1 /proc/loadavg)), log $logs/$mode-$i.log"
  done
done
echo "demo: $pass of $total passed"
[ "$pass" -eq "$total" ]
