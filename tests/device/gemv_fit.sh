#!/usr/bin/env bash
# The super-block GEMV on a GPU whose blocks hold less shared memory than the configuration
# asks for: AMXDIAG_GPU_GEMV_SMEM lowers the limit the plan reads (attribute 97) to a T4's
# 65,536 and an L40S's 101,376 bytes, so an H100/H200 plans and runs the GEMV as those
# would (stepped down: 3 -> 2 stages, 8 -> 4 warps, the register path, the row kernels)
# instead of every GEMV failing in cuFuncSetAttribute.  Bounded by 100 s (about 30 s).
#  - test_cuda_kernels' test_gemv_sb at both limits (every sweep configuration and the
#    validation fault against the CPU reference; the lines "GEMV <spec>: q4_0 ... [steps]"
#    show what ran);
#  - amxdiag-gpu-bench --only gemv --gemv sweep --quick at 65,536 (exit 0 = no GEMV failed;
#    the "stepped down" notes in its GEMV lines) and with AMXDIAG_GPU_GEMV set and no
#    --gemv (its label is the env's spec, and the env gets one warning);
#  - CHECK lines in $OUT/summary.txt, logs in $OUT/gemv_fit.tgz.
#   usage: OUT=DIR tests/device/gemv_fit.sh BUILD_DIR
#   build: -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMXDIAG_CUDA_ARCHS=90, targets
#   amxdiag-gpu-bench test_cuda_kernels
set -u
build=${1:?usage: gemv_fit.sh BUILD_DIR}
final=${OUT:-./gemv-fit-out}
mkdir -p "$final"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bench="$PWD/$build/amxdiag-gpu-bench"
work=$(mktemp -d /tmp/amxdiag-gemvfit-XXXX)
out="$work/keep"
mkdir -p "$out"
summary="$final/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-95}
split=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: >"$summary"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>"$summary" 2>&1

for lim in 65536 101376; do
    step "unit-sb-$lim" 40 env AMXDIAG_GPU_GEMV_SMEM=$lim AMXDIAG_TEST_FILTER='*gemv_sb*' \
        "$build/tests/test_cuda_kernels"
    cp "$work/unit-sb-$lim.out" "$work/unit-sb-$lim.log" "$out/" 2>/dev/null
    grep -hE "^GEMV |PASSED|FAILED|SKIP" "$work/unit-sb-$lim.out" "$work/unit-sb-$lim.log" 2>/dev/null |
        sed "s/^/  /" >>"$summary"
    if cat "$work/unit-sb-$lim.out" "$work/unit-sb-$lim.log" 2>/dev/null | grep -q "PASSED  \] 1 test"; then
        echo "CHECK test_gemv_sb at $lim bytes a block            PASS" >>"$summary"
    else
        echo "CHECK test_gemv_sb at $lim bytes a block            FAIL" >>"$summary"
    fi
done

step bench-sweep-64k 30 env AMXDIAG_GPU_GEMV_SMEM=65536 "$bench" --only gemv --gemv sweep --quick --no-cublas \
    --iters 3 -o "$out/sweep-64k.json"
cp "$work/bench-sweep-64k.out" "$out/sweep-64k.txt" 2>/dev/null
cp "$work/bench-sweep-64k.log" "$out/sweep-64k.log" 2>/dev/null
grep -E "^GEMV |^decode GEMV" "$work/bench-sweep-64k.out" 2>/dev/null | sed "s/^/  /" >>"$summary"
check "sweep at 64 KiB: every spec timed, q8_0 ring stepped down" "$out/sweep-64k.json" \
    "len({x['gemv_index'] for x in r['rows'] if x['group'] in ('gemv','moe_gemv')}) == 12 and \
any(x.get('gemv_fit') for x in r['rows']) and r['gemv']['smem_optin'] == 65536"

step bench-env 30 env AMXDIAG_GPU_GEMV_SMEM=65536 AMXDIAG_GPU_GEMV=sb,load=async,stages=3,warps=8 "$bench" \
    --only gemv --quick --no-cublas --iters 3 -o "$out/env.json"
cp "$work/bench-env.out" "$out/env.txt" 2>/dev/null
cp "$work/bench-env.log" "$out/env.log" 2>/dev/null
grep -E "^GEMV |^decode GEMV" "$work/bench-env.out" 2>/dev/null | sed "s/^/  /" >>"$summary"
grep -E "AMXDIAG_GPU_GEMV" "$work/bench-env.log" 2>/dev/null | sed "s/^/  stderr: /" >>"$summary"
check "env spec labelled as asked, stepped down" "$out/env.json" \
    "all(x.get('gemv_spec','').startswith('sb,load=async') for x in r['rows'] if x['group'] == 'gemv') and \
r['gemv']['fit']['q8_0'] != ''"

tar -czf "$final/gemv_fit.tgz" -C "$work" . 2>/dev/null
rm -rf "$work"
