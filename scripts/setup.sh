#!/usr/bin/env bash
# Installs everything Bitácora needs on a Debian 12 machine (idempotent), then
# configures build/ and builds it:
#   scripts/setup.sh demo   what the demo runs: the daemon and its two tools only
#   scripts/setup.sh        everything: also the tests, the fuzz targets and the benchmarks
# Used by scripts/demo.sh and scripts/test.sh; safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case "$mode" in demo|all) ;; *) echo "usage: scripts/setup.sh [demo]" >&2; exit 2 ;; esac
# One setup at a time: the demo run beside the test suite must not race it on apt,
# npm or ninja in the same build/.
exec 9>>"${BITACORA_BUILD_LOCK:-/tmp/bitacora-build.lock}"
flock 9

# Debian packages: toolchains, libraries, and what the demo drives.
packages=(
  g++ meson ninja-build pkg-config cmake git help2man
  libfmt-dev libssl-dev nlohmann-json3-dev librocksdb-dev libsecp256k1-dev
  libevent-dev libcurl4-openssl-dev libsimdjson-dev libzmq3-dev cppzmq-dev libsystemd-dev doctest-dev
  python3 python3-zmq python3-pycryptodome python3-opentimestamps python3-bitcoinlib nodejs
)
# ... and what only the tests need (the clang ASan+UBSan build, load generators, promtool,
# systemd-analyze and logrotate for the unit and the snippet in conf/, python3-jsonschema
# for the answers against rpc_discover's schemas, jemalloc for the simulator's speed).
test_packages=(
  clang libclang-rt-14-dev wrk prometheus systemd logrotate python3-jsonschema libjemalloc-dev
)
[ "$mode" = demo ] || packages+=("${test_packages[@]}")

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

# npm packages: Foundry's anvil/forge/cast binaries, solc-js, OpenZeppelin, and viem for the
# test of the API through a real client (tests/integration/test_viem.py) (contracts/package-lock.json).
command -v npm >/dev/null || {
  echo "setup: npm is missing; installing Debian's npm"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm >/dev/null
}
if [ ! -f contracts/node_modules/.package-lock.json ] ||
   [ contracts/package-lock.json -nt contracts/node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages in contracts/"
  (cd contracts && npm ci --no-audit --no-fund)
else
  echo "setup: npm packages present"
fi
# Compile the contracts (offline, through contracts/tools/solc); the indexer's ABI
# test and the integration suites read the artifacts in contracts/out.
(cd contracts && node_modules/.bin/forge build --quiet)

if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=debugoptimized
fi
if [ "$mode" = demo ]; then
  ninja -C build daemon/bitacorad daemon/bitacora-cli daemon/bitacora-inspect
else
  ninja -C build
fi
