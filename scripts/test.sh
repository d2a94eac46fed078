#!/usr/bin/env bash
# Sets everything up and runs the whole test suite:
#   build/       (gcc, debugoptimized): unit, integration and simulator suites
#   build-asan/  (clang, ASan+UBSan, libFuzzer): unit suite, bounded fuzzing, a few simulator seeds
# Prints one closing line "tests: N passed, N failed" over both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

(
  flock 9  # as scripts/setup.sh does
  if [ ! -f build-asan/build.ninja ]; then
    CXX=clang++ meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
  fi
  ninja -C build-asan
) 9>>"${BITACORA_BUILD_LOCK:-/tmp/bitacora-build.lock}"

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

status=0
meson test -C build --no-rebuild --print-errorlogs --suite unit --suite integration --suite sim || status=1
# Sanitizer findings stop the process, so that a test sees them as failures. The
# Bitcoin suite also runs the clang build of bitacorad (a compiler difference once
# broke anchoring there only).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
meson test -C build-asan --no-rebuild --print-errorlogs --suite unit --suite fuzz --suite sim-short || status=1
meson test -C build-asan --no-rebuild --print-errorlogs --logbase btc-log btc_anchor btc_anchor_double || status=1

# One summary over both builds, from meson's machine-readable logs.
/usr/bin/python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
  build-asan/meson-logs/btc-log.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
