#!/usr/bin/env bash
# The int8 AMX block step taken apart (tests/fixtures/amx/amx_steps.c) on the AMX machine:
# one core, each variant the best of 3; about 5 s.
#   usage: OUT=DIR tests/device/amx_steps.sh BUILD_DIR   (output: $OUT/amx_steps.txt)
set -u
build=${1:?usage: amx_steps.sh BUILD_DIR}
out=${OUT:-./amx-steps-out}
mkdir -p "$out"
{
    grep -m1 'model name' /proc/cpuinfo
    timeout 60 taskset -c 2 "$build/tests/amx_steps" 2000000
    echo "exit $?"
} >"$out/amx_steps.txt" 2>&1
cat "$out/amx_steps.txt"
