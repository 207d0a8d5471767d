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

# libFuzzer: each target for a short bounded time (AMXDIAG_FUZZ_SECONDS, default 20) from
# its seed corpus, in a clang build with ASan+UBSan (tests/fuzz/run.sh, docs/reliability.md).
# The corpora and crash regressions were already replayed by both suites above (fuzz.*).
if command -v clang >/dev/null; then
    echo "== fuzz build-fuzz"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMXDIAG_SANITIZE=ON -DAMXDIAG_FUZZ=ON \
        -DAMXDIAG_CUDA=OFF
    cmake --build build-fuzz -j"$jobs" --target fuzz_all
    FUZZ_JOBS=$jobs tests/fuzz/run.sh build-fuzz "${AMXDIAG_FUZZ_SECONDS:-20}"
else
    echo "== fuzz: SKIP: clang is not installed (scripts/install-deps.sh installs it)"
fi
