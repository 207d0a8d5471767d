#!/usr/bin/env bash
# Builds and runs every test twice: a -Werror build, then an ASan+UBSan build.
# This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

run_suite() {
    local dir=$1; shift
    echo "== configure $dir ($*)"
    cmake -S . -B "$dir" -DAMXDIAG_WERROR=ON "$@"
    cmake --build "$dir" -j"$jobs"
    echo "== test $dir"
    ctest --test-dir "$dir" --output-on-failure -j"$jobs"
}

run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DAMXDIAG_SANITIZE=ON
