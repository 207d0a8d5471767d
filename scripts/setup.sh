#!/usr/bin/env bash
# Set-up on a fresh Debian 12 machine: install the packages, build amxdiag, run the probe.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
echo
echo "== build/amxdiag probe"
set +e
build/amxdiag probe
rc=$?
echo "(exit code $rc: 0 all checks passed or warned, 1 a check failed — see the fix: lines)"
exit 0
