#!/usr/bin/env bash
# The two-pass prompt GEMM (Q4_0 / Q8_0 weights dequantised to f16 in a workspace, then the
# f16-weight tensor-core kernel; kern_cuda_ops.c gemm_dequant) against the fused kernels, on
# one GPU, in one call (step limits add up to <= 390 s; typically 100-150 s):
#   1. unit-gemm: test_kern_cuda_gemm (every kernel within its bound; the two-pass cases:
#      one slab, slabs of a 1 MiB workspace with a short last one, split-K over slabs, and
#      bit for bit the fused kernel's result at the same tile);
#   2. check: the bench's checks with the defaults, and with the two-pass f16-MMA kernel
#      (AMXDIAG_GPU_GEMM=f16mma AMXDIAG_GPU_GEMM_DQ=1: the path of compute capability 8.x /
#      12.0, run here on this card);
#   3. auto-1..ROUNDS (3): `amxdiag-gpu-bench --only gemm` as a user runs it: the default
#      per shape, the other form (fused / two-pass) in the row after it, cuBLAS f16 and
#      cublas+cvt; goal lines;
#   4. dq-MIB: the two-pass path forced everywhere with a workspace of MIB MiB (16, 32, 64,
#      128, 1024: the LM head's slabs; the others fit in one); dq-sweep / dq-sweep-k2: every
#      wgmma tile on the two-pass path, one k slice and two; dq-f16mma / fused-f16mma (the
#      f16-MMA kernel, two passes and fused);
#   5. engine: test_kern_engine's GPU layers teacher-forced against the CPU reference;
#      `run --ngl 99 --greedy --compare ref`; pp512 / tg32 of qwen3-moe-small q4_0 and
#      q8_0 with the defaults and with AMXDIAG_GPU_GEMM_DQ=0, two rounds each;
#   6. compute-sanitizer memcheck on the bench's checks with the two-pass path forced, and on
#      test_kern_cuda_gemm's two-pass GPU cases;
#   7. BIG=1: pp512 at --ngl 99 on the Qwen3-30B-A3B shapes (12 layers), q8_0 and q4_0, the
#      defaults against the fused kernels, twice each.
# usage: OUT=DIR tests/device/gemm_dq.sh BUILD_DIR   (amxdiag, amxdiag-gpu-bench,
# tests/test_kern_cuda_gemm, tests/test_kern_engine, devlibs/ under BUILD_DIR)
# Outputs: summary.txt (steps, goal lines, the per-shape table), *.json, one .log per step.
set -u
build=${1:?usage: OUT=DIR tests/device/gemm_dq.sh BUILD_DIR}
out=${OUT:-./gemm-dq-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
bench="$build/amxdiag-gpu-bench"
amx="$PWD/$build/amxdiag"
summary="$out/summary.txt"
: >"$summary"
. "$(dirname "$0")/lib.sh"
rounds=${ROUNDS:-3}

nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,clocks.max.mem --format=csv >>"$summary" 2>&1

# 1. correctness of every kernel, the two-pass cases included
step_want unit-gemm 0 60 "$build/tests/test_kern_cuda_gemm"
expect unit-gemm 'PASSED'
grep -h "FAILED\|SKIP\|ERROR\|LINE\|two-pass" "$out/unit-gemm.log" | head -20 | sed 's/^/  /' >>"$summary"

# 2. the bench's checks: defaults, and the two-pass f16-MMA kernel
step_want check-auto 0 10 "$bench" --check-only
grep -h -E "FAIL|gemm" "$out/check-auto.log" | head -8 | sed 's/^/  /' >>"$summary"
step_want check-f16mma-dq 0 10 env AMXDIAG_GPU_GEMM=f16mma AMXDIAG_GPU_GEMM_DQ=1 "$bench" --check-only
grep -h -E "FAIL|gemm" "$out/check-f16mma-dq.log" | head -8 | sed 's/^/  /' >>"$summary"

# 3. the default as a user gets it, ROUNDS times (medians in the table)
for r in $(seq 1 "$rounds"); do
    step_want "auto-$r" 0 20 "$bench" --only gemm --iters 20 -o "$out/auto-$r.json"
    sed -n '/^goals/,$p' "$out/auto-$r.log" | sed "s/^/  auto-$r /" >>"$summary"
done
grep -h -E "\(selected\)|weights to f16" "$out/auto-1.log" | head -30 | sed 's/^ */  auto-1 /' >>"$summary"

# 4. the two-pass path forced: workspace sizes (the LM head's slabs), the f16-MMA kernel
for mib in 16 32 64 128 1024; do
    step_want "dq-$mib" 0 20 env AMXDIAG_GPU_GEMM_DQ=1 AMXDIAG_GPU_GEMM_DQ_MIB=$mib "$bench" --only gemm --iters 10 \
        -o "$out/dq-$mib.json"
done
# every wgmma tile on the two-pass path, one k slice and two (the f16 picks came from the H200)
step_want dq-sweep 0 30 env AMXDIAG_GPU_GEMM_DQ=1 "$bench" --only gemm --gemm-kernel wgmma --gemm-tile all \
    --iters 10 -o "$out/dq-sweep.json"
step_want dq-sweep-k2 0 30 env AMXDIAG_GPU_GEMM_DQ=1 AMXDIAG_GPU_GEMM_SPLITK=2 "$bench" --only gemm \
    --gemm-kernel wgmma --gemm-tile all --iters 10 -o "$out/dq-sweep-k2.json"
step_want dq-f16mma 0 20 env AMXDIAG_GPU_GEMM=f16mma AMXDIAG_GPU_GEMM_DQ=1 "$bench" --only gemm --iters 10 \
    -o "$out/dq-f16mma.json"
step_want fused-f16mma 0 20 env AMXDIAG_GPU_GEMM=f16mma AMXDIAG_GPU_GEMM_DQ=0 "$bench" --only gemm --iters 10 \
    -o "$out/fused-f16mma.json"

# 5. the engine: layers against the CPU reference, a greedy comparison, prompt speed
step_want engine 0 60 "$build/tests/test_kern_engine"
grep -h -E "teacher-forced|SKIP|FAILED|ERROR|LINE" "$out/engine.log" | head -8 | sed 's/^/  /' >>"$summary"
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-dq-cache-XXXXXX)
step_want compare-ref 0 60 "$amx" run --ngl 99 --greedy -p 64 -n 16 -t 4 --compare ref
grep -h -E "max \|logit|same arg-max|agrees|differs|decisive|error" "$out/compare-ref.log" | head -6 |
    sed 's/^/  /' >>"$summary"
models=$(mktemp -d /tmp/amxdiag-dq-models-XXXXXX)
for q in q4_0 q8_0; do
    step_want "create-$q" 0 60 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$(nproc)" \
        "$models/small-$q.gguf"
done
for r in 1 2; do
    for q in q4_0 q8_0; do
        for dq in auto 0; do
            step_want "pp-$q-dq$dq-$r" 0 60 env AMXDIAG_GPU_GEMM_DQ=$dq "$amx" run -m "$models/small-$q.gguf" \
                --ngl 99 -p 512 -n 32 -r 3 -t 4 -o "$out/pp-$q-dq$dq-$r.json"
            grep -h -E "pp512|tg32" "$out/pp-$q-dq$dq-$r.log" | head -2 | sed "s/^/  pp-$q-dq$dq-$r /" >>"$summary"
        done
    done
done
rm -rf "$XDG_CACHE_HOME" "$models"
unset XDG_CACHE_HOME

# 6. no out-of-bounds access in the two-pass kernels
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$cs" ]; then
    step_want sanitizer 0 40 env AMXDIAG_GPU_GEMM_DQ=1 AMXDIAG_GPU_GEMM_DQ_MIB=4 "$cs" --tool memcheck \
        --error-exitcode 9 --print-limit 10 "$bench" --check-only --quick
    expect sanitizer 'ERROR SUMMARY: 0 errors'
    # the GPU unit cases of the two-pass path: slabs, a short last slab, split-K over slabs
    step_want sanitizer-unit 0 90 env AMXDIAG_TEST_FILTER='*dequant*' "$cs" --tool memcheck --error-exitcode 9 \
        --print-limit 10 "$build/tests/test_kern_cuda_gemm"
    expect sanitizer-unit 'ERROR SUMMARY: 0 errors'
fi

# BIG=1: prompt evaluation on the Qwen3-30B-A3B shapes (12 layers, q8_0 and q4_0) at --ngl 99,
# the defaults against AMXDIAG_GPU_GEMM_DQ=0 (<= 240 s more)
if [ -n "${BIG:-}" ]; then
    models=$(mktemp -d /tmp/amxdiag-dq-big-XXXXXX)
    export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-dq-cache-XXXXXX)
    for q in q8_0 q4_0; do
        step_want "create-big-$q" 0 90 "$amx" model create --preset qwen3-30b-a3b --layers 12 --quant $q \
            --threads "$(nproc)" "$models/big-$q.gguf"
        for r in 1 2; do
            for dq in auto 0; do
                step_want "big-$q-dq$dq-$r" 0 60 env AMXDIAG_GPU_GEMM_DQ=$dq "$amx" run -m "$models/big-$q.gguf" \
                    --ngl 99 -p 512 -n 16 -r 3 -t 4
                grep -h -E "pp512" "$out/big-$q-dq$dq-$r.log" | head -1 | sed "s/^/  big-$q-dq$dq-$r /" >>"$summary"
            done
        done
        rm -f "$models/big-$q.gguf"
    done
    rm -rf "$models" "$XDG_CACHE_HOME"
    unset XDG_CACHE_HOME
fi

# the table: per shape and weight type, the medians over the auto rounds of each row
python3 - "$out" >>"$summary" 2>&1 <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
def rows(path):
    try:
        return json.load(open(path)).get("rows", [])
    except Exception as e:
        print("unreadable", path, e)
        return []
runs = [rows(p) for p in sorted(glob.glob(os.path.join(out, "auto-*.json")))]
acc = {}
for rr in runs:
    for r in rr:
        if r.get("group") != "gemm":
            continue
        key = (r.get("name"), r.get("type"), r.get("kernel", ""), r.get("tile_name", ""), bool(r.get("dequant")),
               bool(r.get("selected")))
        acc.setdefault(key, []).append(r)
print("\nmedians over %d auto rounds: shape, type, kernel, tile, us, %% cuBLAS f16, %% cublas+cvt" % len(runs))
for key in sorted(acc, key=lambda k: (k[0] or "", k[1] or "", k[2])):
    rs = acc[key]
    us = statistics.median(r.get("us", 0) for r in rs)
    def med(f):
        v = [r[f] for r in rs if f in r]
        return "%.1f" % statistics.median(v) if v else "-"
    print("  %-10s %-10s %-10s %-22s %9.1f %6s %6s%s" % (key[0], key[1], key[2], key[3], us, med("pct_cublas"),
          med("pct_cublas_op"), "  (selected)" if key[5] else ""))
for p in ["dq-sweep.json", "dq-sweep-k2.json"]:
    print("\n" + p + ": q4_0 / q8_0 rows (us)")
    for r in rows(os.path.join(out, p)):
        if r.get("group") == "gemm" and r.get("type") in ("q4_0", "q8_0", "f16"):
            print("  %-10s %-6s %-10s %-14s k%s %9.1f us %6.1f %%" % (r.get("name"), r.get("type"), r.get("kernel"),
                  r.get("tile_name", "-"), r.get("ksplit", "-"), r.get("us", 0), r.get("pct_cublas", 0)))
for p in sorted(glob.glob(os.path.join(out, "dq-[0-9]*.json"))) + [os.path.join(out, "dq-f16mma.json"),
                                                                 os.path.join(out, "fused-f16mma.json")]:
    print("\n" + os.path.basename(p))
    for r in rows(p):
        if r.get("group") == "gemm" and r.get("selected"):
            print("  %-10s %-6s %-10s dq_rows %-7s %9.1f us %6.1f %%" % (r.get("name"), r.get("type"), r.get("kernel"),
                  r.get("dq_rows", "-"), r.get("us", 0), r.get("pct_cublas", 0)))
EOF
