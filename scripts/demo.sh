#!/usr/bin/env bash
# The main job on an embedded default: set everything up, start bitacorad on a fresh
# data dir (regtest chain), show what it logged, and stop it cleanly with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

datadir=$(mktemp -d /tmp/bitacora-demo.XXXXXX)
log="$datadir/regtest/debug.log"
echo
echo "== Starting bitacorad -chain=regtest -datadir=$datadir"
build/daemon/bitacorad -chain=regtest -datadir="$datadir" -debug=db -printtoconsole=0 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

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
trap - EXIT
echo "== bitacorad exited with status $status; the last lines of its log:"
tail -n 4 "$log"
echo
echo "Data dir kept for inspection: $datadir"
