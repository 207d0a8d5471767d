#!/usr/bin/env bash
# The int8 tensor-core prompt GEMM on a machine with a GPU, in one go (about 2 minutes on
# an H100): the GEMM and grouped expert matmul bit for bit against the CPU reference
# formula (test_kern_cuda_gemm), every kernel check with the int8 kernels selected, the
# engine's teacher-forced GPU-vs-CPU logits check with them, then the GEMM benchmark
# (cuBLAS f16 and int8, the f16 WMMA and the int8 kernels, same run) at the default and
# at every tile / pipeline depth, and pp512 with each kernel; compute-sanitizer last.
# Usage: tests/device/cuda_gemm.sh BUILD_DIR [OUT_DIR]
# QUICK=1 (for a batched call, about 45 s): correctness, the default GEMM bench and pp512
# with each kernel only; no tile/stage sweep, no compute-sanitizer.
# Outputs in OUT_DIR (default $OUT, else ./cuda-gemm-out): summary.txt, bench-gemm.json,
# bench-gemm-t64.json, bench-gemm-t128.json, gemm-table.txt, and everything else packed in
# all-logs.tgz (the runner returns at most 8 files).
set -u
build=${1:?usage: tests/device/cuda_gemm.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./cuda-gemm-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
bench="$build/amxdiag-gpu-bench"
amx="$build/amxdiag"
summary="$out/summary.txt"
: >"$summary"
t_start=$(date +%s)

. "$(dirname "$0")/lib.sh"

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,clocks.max.mem --format=csv; } \
    >"$out/machine.txt" 2>&1
cat "$out/machine.txt" >>"$summary"

# 1. correctness first: bit-exact against the CPU formula (GEMM and grouped experts)
step_want unit-gemm 0 150 "$build/tests/test_kern_cuda_gemm"
expect unit-gemm 'PASSED'
grep -h "bit-exact\|SKIP\|FAILED\|element" "$out/unit-gemm.log" | head -40 >>"$summary"
# every kernel check (tolerances of docs/cuda-kernels.md) with the int8 kernels selected
step_want check-mma 0 120 "$bench" --check-only --gemm-kernel mma
grep -h "FAIL" "$out/check-mma.log" | head -10 >>"$summary"
# the engine's GPU layers (prompt GEMMs and grouped experts through the int8 kernels)
# against the CPU, teacher-forced, and the host stand-in
step_want engine-mma 0 180 env AMXDIAG_GPU_GEMM=mma "$build/tests/test_kern_engine"
grep -h "teacher-forced\|SKIP\|FAILED" "$out/engine-mma.log" | head -10 >>"$summary"

# 2. speed: the GEMM shapes (cuBLAS f16 + int8, WMMA, int8 mma) in one run per setting
step_want bench-gemm 0 120 "$bench" --only gemm --gemm-kernel mma -o "$out/bench-gemm.json"
if [ -z "${QUICK:-}" ]; then
step_want bench-gemm-t64 0 90 "$bench" --only gemm --gemm-kernel mma --gemm-tile 64 -o "$out/bench-gemm-t64.json"
step_want bench-gemm-t128 0 90 "$bench" --only gemm --gemm-kernel mma --gemm-tile 128 -o "$out/bench-gemm-t128.json"
step_want bench-gemm-s2 0 90 "$bench" --only gemm --gemm-kernel mma --gemm-stages 2 -o "$out/bench-gemm-s2.json"
step_want bench-gemm-s4 0 90 "$bench" --only gemm --gemm-kernel mma --gemm-stages 4 -o "$out/bench-gemm-s4.json"
fi
{
    for f in bench-gemm bench-gemm-t64 bench-gemm-t128 bench-gemm-s2 bench-gemm-s4; do
        [ -f "$out/$f.log" ] || continue
        echo "== $f"
        sed -n '/^op /,/^goals/p' "$out/$f.log" | grep -E '^gemm|\^|^op' || true
        sed -n '/^goals/,$p' "$out/$f.log" | grep -E 'gemm' || true
    done
} >"$out/gemm-table.txt"
cat "$out/gemm-table.txt" >>"$summary"

# 3. the prompt end to end: pp512 at --ngl 99 on the tiny default model, each kernel
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-gemm-cache-XXXXXX)
step_want run-create-model 0 120 "$amx" run -p 8 -n 2 -r 1 -t 8
for k in wmma mma; do
    step_want "run-pp512-$k" 0 90 env AMXDIAG_GPU_GEMM=$k "$amx" run --ngl 99 -p 512 -n 16 -r 5 -t 8
    grep -h -E '^\| qwen3moe' "$out/run-pp512-$k.log" | sed "s/^/  $k: /" | tee -a "$summary"
done
rm -rf "$XDG_CACHE_HOME"

# 4. memcheck on the int8 kernels, if time is left (the tests above are what matter)
if [ -z "${QUICK:-}" ] && command -v compute-sanitizer >/dev/null && [ $(( $(date +%s) - t_start )) -lt 300 ]; then
    step_want sanitizer-gemm 0 150 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$build/tests/test_kern_cuda_gemm"
    expect sanitizer-gemm 'ERROR SUMMARY: 0 errors'
fi

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
tmp=$(mktemp /tmp/cuda-gemm-XXXXXX.tgz)
tar czf "$tmp" -C "$out" . &&
    find "$out" -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name bench-gemm.json ! -name bench-gemm-t64.json \
        ! -name bench-gemm-t128.json ! -name gemm-table.txt -exec rm -rf {} + &&
    mv "$tmp" "$out/all-logs.tgz"
exit 0
