#!/usr/bin/env bash
# The built-in inference path on the AMX machine, in one go (a few minutes):
#  1. the engine/model/GGUF unit tests (the AMX path runs for real there),
#  2. greedy decoding of the tiny preset on ref / avx512 / amx / amx-emu (same tokens),
#  3. the sparse Qwen3-30B-A3B inspect numbers,
#  4. a ~1 GB synthetic qwen3moe (qwen3-moe-small, q4_0 and q8_0): pp512 / tg128 with
#     --cpu-kernels amx and avx512, with the op breakdown; the hybrid splits (q4_0:
#     --ngl 4/8/12/99, q8_0: --ngl 99) and their greedy tokens against the CPU's, also for
#     a 600-token prompt (two ubatches on the GPU); pp512 at --ngl 99 with the int8
#     tensor-core prompt GEMM (AMXDIAG_GPU_GEMM=mma) next to the default.
# Usage: tests/device/hybrid_bench.sh BUILD_DIR [OUT_DIR]   (BUILD_DIR relative to the
# repository root, built RelWithDebInfo, with tests/device/bundle-libs.sh run on it)
# Output in OUT_DIR (default $OUT, else ./hybrid-device-out), at most 8 files:
#   summary.txt   every step's status and the benchmark tables
#   hybrid.log    the full output of every step
#   run-<model>-<impl|nglN>.json   amxdiag run's JSON of each benchmark (<= 6 files)
set -u
build=${1:?usage: tests/device/hybrid_bench.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./hybrid-device-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
work=$(mktemp -d /tmp/amxdiag-hybrid-XXXXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
log="$out/hybrid.log"
: >"$summary"
: >"$log"
threads=${THREADS:-$(nproc)}
# LAYERS=N shrinks the benchmark model (for a quick check of this script elsewhere).
layers_opt=${LAYERS:+--layers $LAYERS}
runs=${RUNS:-3}

# step NAME TIMEOUT CMD...: runs CMD, appends its output to the log, records its status.
step() {
    local name=$1 limit=$2; shift 2
    local t0 t1 rc
    t0=$(date +%s%N)
    echo "===== $name: $*" >>"$log"
    timeout -k 5 "$limit" "$@" >"$work/step.out" 2>&1
    rc=$?
    t1=$(date +%s%N)
    cat "$work/step.out" >>"$log"
    printf '%-40s rc=%-3s %6d ms\n' "$name" "$rc" "$(( (t1 - t0) / 1000000 ))" | tee -a "$summary"
    return $rc
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) CPUs)"
    grep -m1 -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
    echo "threads used: $threads"
    git -C "$PWD" rev-parse --short HEAD 2>/dev/null | sed 's/^/commit: /'
} | tee -a "$summary"

# 1. unit tests
for t in test_kern_gguf test_kern_model test_kern_engine test_kern_engine_gpu; do
    step "unit $t" 300 "$build/tests/$t"
done
grep -E "vs ref: max|SKIP" "$log" | sed 's/^/  /' | tee -a "$summary"

# 2. greedy decoding on every implementation (the tiny default model)
for impl in ref avx512 amx amx-emu; do
    step "greedy tiny $impl" 120 "$amx" run --greedy -p 32 -n 32 --cpu-kernels "$impl" -t "$threads" &&
        sed -n 2,3p "$work/step.out" | sed "s/^/  $impl: /" | tee -a "$summary"
done

# 3. the AMX eligibility figures of the Qwen3-30B-A3B layout
step "create 30b sparse" 120 "$amx" model create --preset qwen3-30b-a3b --sparse "$work/30b.gguf"
step "inspect 30b" 60 "$amx" model inspect "$work/30b.gguf" && grep -E "eligible" "$work/step.out" | tee -a "$summary"
step "inspect 30b --ngl 10" 60 "$amx" model inspect "$work/30b.gguf" --ngl 10 &&
    grep -E "llama.cpp's AMX" "$work/step.out" | tee -a "$summary"
rm -f "$work/30b.gguf"

# 4. benchmarks on a ~1 GB synthetic qwen3moe
for q in q4_0 q8_0; do
    m="$work/small-$q.gguf"
    step "create qwen3-moe-small $q" 300 "$amx" model create --preset qwen3-moe-small --quant "$q" --threads "$threads" $layers_opt "$m" ||
        continue
    grep wrote "$work/step.out" | tee -a "$summary"
    for impl in ref avx512 amx; do
        step "greedy small-$q $impl" 120 "$amx" run -m "$m" --greedy -p 16 -n 16 --cpu-kernels "$impl" -t "$threads" &&
            sed -n 2,3p "$work/step.out" | sed "s/^/  $impl: /" | tee -a "$summary"
    done
    for impl in amx avx512; do
        step "run small-$q $impl" 240 "$amx" run -m "$m" -p 512 -n 128 -r "$runs" --cpu-kernels "$impl" -t "$threads" \
            --ops -o "$out/run-small-$q-$impl.json" &&
            sed -n '1,4p' "$work/step.out" | tee -a "$summary" &&
            grep -A8 "where the time went" "$work/step.out" | tee -a "$summary"
    done
    # Hybrid splits (GPU layers through the CUDA kernels; every op of a GPU layer is a
    # kernel, the residual stays on the device): a quarter, half, three quarters and all
    # of the 16 layers for q4_0, all of them for q8_0.  JSON for ngl 8 and 99 (q4_0; the
    # runner returns 8 files), the table for the others.
    if [ "$q" = q4_0 ]; then splits="4 8 12 99"; else splits="99"; fi
    for ngl in $splits; do
        json_opt=()
        if [ "$q" = q4_0 ] && { [ "$ngl" = 8 ] || [ "$ngl" = 99 ]; }; then
            json_opt=(-o "$out/run-small-$q-ngl$ngl.json")
        fi
        step "run small-$q auto --ngl $ngl" 240 "$amx" run -m "$m" -p 512 -n 128 -r "$runs" -t "$threads" --ngl "$ngl" \
            --ops "${json_opt[@]}" &&
            sed -n '1,4p' "$work/step.out" | tee -a "$summary" &&
            grep -A6 "where the time went" "$work/step.out" | tee -a "$summary"
        step "greedy small-$q --ngl $ngl vs cpu" 120 bash -c "cmp <('$amx' run -m '$m' --greedy -p 16 -n 16 -t $threads | sed -n 2p) <('$amx' run -m '$m' --greedy -p 16 -n 16 -t $threads --ngl $ngl | sed -n 2p)"
    done
    # The int8 tensor-core prompt GEMM and grouped expert matmul (opt-in until verified
    # on a GPU, docs/cuda-kernels.md): pp512 at --ngl 99 against the default's above.
    step "run small-$q mma --ngl 99" 240 env AMXDIAG_GPU_GEMM=mma "$amx" run -m "$m" -p 512 -n 32 -r "$runs" \
        -t "$threads" --ngl 99 --ops &&
        sed -n '1,4p' "$work/step.out" | sed 's/^/  mma: /' | tee -a "$summary"
    # A 600-token prompt: two ubatches through the causal GPU attention and the grouped
    # expert matmul, the second one at positions 512..599.
    step "greedy small-$q -p 600 --ngl 99 vs cpu" 180 bash -c "cmp <('$amx' run -m '$m' --greedy -p 600 -n 8 -t $threads | sed -n 2p) <('$amx' run -m '$m' --greedy -p 600 -n 8 -t $threads --ngl 99 | sed -n 2p)"
    rm -f "$m"
done
rm -rf "$work"
echo "done" | tee -a "$summary"
