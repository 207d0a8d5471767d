#!/usr/bin/env bash
# The engine's GPU layers with the int8 tensor-core prompt GEMM (AMXDIAG_GPU_GEMM=mma) and
# the f32 MoE router, on a machine with a GPU, in one go (about 15 s, at most 30 s):
#   1. unit-gemm: test_kern_cuda_gemm: the int8 GEMM and grouped experts bit for bit
#      against the CPU formula, and the f32 router GEMM (kern_gemm_f32) against a double
#      reference, with its time next to the f16 WMMA GEMM it replaced;
#   2. engine-mma / engine-wmma: test_kern_engine (test_gpu_layers: --ngl 2, 4, 99
#      teacher-forced against the CPU reference, tolerance 0.25) with each prompt GEMM;
#   3. compare-mma / compare-wmma: `amxdiag run --ngl 99 --greedy -p 64 -n 16 --compare ref`
#      on the default model with each prompt GEMM (exit 0: every decisive step picks the
#      reference's token).
# Usage: tests/device/cuda_engine_mma.sh BUILD_DIR [OUT_DIR]
# Needs under BUILD_DIR: amxdiag, tests/test_kern_cuda_gemm, tests/test_kern_engine,
# devlibs/ (tests/device/bundle-libs.sh).  Outputs in OUT_DIR (default $OUT, else
# ./cuda-engine-mma-out): summary.txt (every step's exit status and the figures) and one
# .log per step.
set -u
build=${1:?usage: tests/device/cuda_engine_mma.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./cuda-engine-mma-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
amx="$build/amxdiag"
summary="$out/summary.txt"
: >"$summary"
t_start=$(date +%s)

. "$(dirname "$0")/lib.sh"

timeout 3 nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader >"$out/machine.txt" 2>&1
cat "$out/machine.txt" >>"$summary"

# 1. the kernels on their own
step_want unit-gemm 0 10 "$build/tests/test_kern_cuda_gemm"
grep -h -E "f32 router|gpu moe q4_0 8 |SKIP|FAILED|ERROR|element|token .* row" "$out/unit-gemm.log" | head -20 |
    sed 's/^/  /' >>"$summary"
grep -h -c "bit-exact" "$out/unit-gemm.log" | sed 's/^/  int8 cases bit-exact: /' >>"$summary"

# 2. the engine's GPU layers against the CPU reference, int8 GEMM then the default
step_want engine-mma 0 6 env AMXDIAG_GPU_GEMM=mma "$build/tests/test_kern_engine"
grep -h -E "teacher-forced|SKIP|FAILED|ERROR|LINE" "$out/engine-mma.log" | head -12 | sed 's/^/  /' >>"$summary"
step_want engine-wmma 0 6 env AMXDIAG_GPU_GEMM=wmma "$build/tests/test_kern_engine"
grep -h -E "^--ngl|SKIP|FAILED|ERROR|LINE" "$out/engine-wmma.log" | head -8 | sed 's/^/  /' >>"$summary"

# 3. run --compare on the default model (created in a private cache, about 25 ms)
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-mma-cache-XXXXXX)
for k in mma wmma; do
    left=$(( 30 - ($(date +%s) - t_start) ))
    if [ "$left" -lt 3 ]; then
        echo "compare-$k       skipped: the 30 s budget is spent" | tee -a "$summary"
        continue
    fi
    [ "$left" -gt 6 ] && left=6
    step_want "compare-$k" 0 "$left" env AMXDIAG_GPU_GEMM=$k "$amx" run --ngl 99 --greedy -p 64 -n 16 --compare ref
    grep -h -E "max \|logit|same arg-max|agrees|differs|decisive|error" "$out/compare-$k.log" | head -6 |
        sed 's/^/  /' >>"$summary"
done
rm -rf "$XDG_CACHE_HOME"

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
exit 0
