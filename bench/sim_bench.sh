#!/usr/bin/env bash
# The simulator's long run: seeds of the EVM follower and the ledger under faults, in one
# process per core, each printing its seeds/min, blocks/s and steps/s; then the sums.
#   bench/sim_bench.sh [seeds per process, default 100] [steps per seed, default 300] [build dir]
set -euo pipefail
seeds=${1:-100}
steps=${2:-300}
build=${3:-build}
sim="$build/tests/sim/bitacora-sim"
[ -x "$sim" ] || { echo "sim_bench: $sim is not built (ninja -C $build tests/sim/bitacora-sim)" >&2; exit 2; }
cores=$(nproc)
started=$(date +%s.%N)
pids=()
for ((core = 0; core < cores; core++)); do
  "$sim" --seeds "$seeds" --first $((1000000 + core * seeds)) --steps "$steps" --no-shrink > "/tmp/sim_bench.$core.log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
ended=$(date +%s.%N)
/usr/bin/python3 - "$cores" "$started" "$ended" /tmp/sim_bench.*.log <<'PY'
import re, sys
cores, started, ended = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
seeds = blocks = steps = 0
for path in sys.argv[4:4 + cores]:
    text = open(path).read()
    print(text.strip().splitlines()[-1])
    m = re.search(r"(\d+) seeds, (\d+) steps, \d+ follower steps, (\d+) blocks", text)
    if m:
        seeds += int(m.group(1)); steps += int(m.group(2)); blocks += int(m.group(3))
wall = ended - started
print(f"all {cores} processes: {seeds} seeds, {blocks} blocks in {wall:.1f} s: {60 * seeds / wall:.0f} seeds/min, "
      f"{blocks / wall:.0f} simulated blocks/s, {steps / wall:.0f} steps/s ({blocks / max(seeds, 1):.0f} blocks per seed)")
PY
exit $status
