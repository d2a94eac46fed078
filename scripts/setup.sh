#!/usr/bin/env bash
# Installs everything Bitácora needs on a Debian 12 machine (idempotent), then
# configures and builds the release build in build/.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: toolchains, libraries, and what the tests drive.
packages=(
  g++ clang libclang-rt-14-dev meson ninja-build pkg-config cmake git
  libfmt-dev libssl-dev nlohmann-json3-dev librocksdb-dev libsecp256k1-dev
  libevent-dev libcurl4-openssl-dev libzmq3-dev cppzmq-dev libsystemd-dev doctest-dev
  python3 python3-zmq
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=debugoptimized
fi
ninja -C build
