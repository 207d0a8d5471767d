#!/usr/bin/env bash
# The prompt GEMMs' tile variants on a GPU, in about 60-90 s (every step has its own
# limit: 320 s at most, plus 60 s with NCU=1): the int8 tensor-core kernel (bit-exact)
# and the f16-MMA kernel (weights dequantised to f16 in shared memory, within
# 1.1 * 2^-10 sum |w x|) side by side with cuBLAS f16.
#   1. unit-gemm: test_kern_cuda_gemm: every int8 variant bit for bit against the CPU
#      formula, every f16-MMA variant within its bound (the largest error printed);
#   2. sweep-s3/s2/s4: `amxdiag-gpu-bench --only gemm --gemm-tile all --gemm-stages N`
#      times every int8 (v0..v7) and f16-MMA (f0..f4; at least 3 stages) variant at every
#      shape next to cuBLAS f16;
#   3. engine-f16mma: test_kern_engine's GPU layers teacher-forced against the CPU
#      reference (tolerance 0.25) with AMXDIAG_GPU_GEMM=f16mma, and `amxdiag run --ngl 99
#      --greedy --compare ref` on the default model with it;
#   4. the table: per shape and type, us / TOP/s / % of cuBLAS f16 of every variant, the
#      best int8 and the best f16-MMA one over all stage counts, and the goal per shape;
#   5. compute-sanitizer memcheck and racecheck on the f16-MMA kernels (small checks);
#   6. NCU=1: Nsight Compute's sections of the f16-MMA kernel auto picks at every shape.
#   usage: tests/device/gemm_sweep.sh BUILD_DIR      (outputs in $OUT, else ./gemm-sweep-out)
# Needs under BUILD_DIR: amxdiag, amxdiag-gpu-bench, tests/test_kern_cuda_gemm,
# tests/test_kern_engine, devlibs/.
# Outputs: summary.txt (the table included), sweep-s{3,2,4}.json, one .log per step, and
# with NCU=1 ncu-details.txt, ncu-raw.csv.
set -u
build=${1:?usage: tests/device/gemm_sweep.sh BUILD_DIR}
out=${OUT:-./gemm-sweep-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
bench="$build/amxdiag-gpu-bench"
summary="$out/summary.txt"
: >"$summary"
t_start=$(date +%s)
. "$(dirname "$0")/lib.sh"

nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,clocks.max.mem --format=csv >>"$summary" 2>&1

# 1. int8 bit for bit, f16-MMA within its bound: every variant, both weight paths
step_want unit-gemm 0 60 "$build/tests/test_kern_cuda_gemm"
expect unit-gemm 'PASSED'
grep -h "FAILED\|element\|SKIP\|ERROR\|LINE\|token .* row" "$out/unit-gemm.log" | head -20 >>"$summary"
grep -c "bit-exact" "$out/unit-gemm.log" | sed 's/^/  int8 bit-exact cases: /' >>"$summary"
grep -h "gpu f16mma" "$out/unit-gemm.log" | sed 's/^/  /' >>"$summary"

# 2. every variant at every shape, per pipeline depth (3 = the default)
for st in 3 2 4; do
    step_want "sweep-s$st" 0 25 "$bench" --only gemm --gemm-tile all --gemm-stages "$st" --iters 10 \
        -o "$out/sweep-s$st.json"
    sed -n '/^goals/,$p' "$out/sweep-s$st.log" | sed "s/^/  s$st /" >>"$summary"
done

# 3. the engine with the f16-MMA prompt GEMM against the CPU reference, and the bench's
# own checks (every kernel against the CPU reference, the GEMM within 1.1 * 2^-10 sum |w x|)
step_want check-f16mma 0 40 "$bench" --check-only --gemm-kernel f16mma
grep -h -E "FAIL|gemm" "$out/check-f16mma.log" | head -12 | sed 's/^/  /' >>"$summary"
step_want engine-f16mma 0 10 env AMXDIAG_GPU_GEMM=f16mma "$build/tests/test_kern_engine"
grep -h -E "teacher-forced|SKIP|FAILED|ERROR|LINE" "$out/engine-f16mma.log" | head -12 | sed 's/^/  /' >>"$summary"
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-f16mma-cache-XXXXXX)
step_want compare-f16mma 0 10 env AMXDIAG_GPU_GEMM=f16mma "$build/amxdiag" run --ngl 99 --greedy -p 64 -n 16 \
    --compare ref
grep -h -E "max \|logit|same arg-max|agrees|differs|decisive|error" "$out/compare-f16mma.log" | head -6 |
    sed 's/^/  /' >>"$summary"
rm -rf "$XDG_CACHE_HOME"
unset XDG_CACHE_HOME

# compute-sanitizer on the f16-MMA kernels only (the bench's small checks: 256 x 512 x 64
# and 131 x 96 x 37): no out-of-bounds access, no shared-memory race between the copies,
# the conversion and the MMAs of the single-barrier pipeline
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck; do
        step_want "sanitizer-$tool" 0 60 "$cs" --tool $tool --kernel-name kns=gemm_f16mma --error-exitcode 9 \
            --print-limit 10 "$bench" --check-only --quick --gemm-kernel f16mma
        expect "sanitizer-$tool" 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards'
        grep -h -E "SUMMARY|Invalid|hazard" "$out/sanitizer-$tool.log" | head -6 | sed 's/^/  /' >>"$summary"
    done
fi

# 4. the table: per shape and type, cuBLAS f16 and each variant (us, TOP/s, % of cuBLAS)
python3 - "$out" >>"$summary" 2>&1 <<'EOF'
import json, os, sys
out = sys.argv[1]
runs = {}
for st in (3, 2, 4):
    p = os.path.join(out, "sweep-s%d.json" % st)
    if os.path.exists(p):
        try:
            runs[st] = json.load(open(p))
        except ValueError as e:
            print("sweep-s%d.json: %s" % (st, e))
if not runs:
    print("no sweep results")
    sys.exit(0)
best = {}  # (shape, type, kernel) -> (pct, us, label)
cub = {}
for st, r in runs.items():
    rows = [x for x in r.get("rows", []) if x.get("group") == "gemm"]
    shapes = []
    for x in rows:
        if x["name"] not in shapes:
            shapes.append(x["name"])
    print("\n== %d stages (us / TOP/s / %% of cuBLAS f16; * = the default pick, ^ = best of the kernel)" % st)
    for nm in shapes:
        cb = [x for x in rows if x["name"] == nm and x["type"] == "cublas"]
        ci = [x for x in rows if x["name"] == nm and x["type"] == "cublas-i8"]
        head = "%-14s %s" % (nm, cb[0]["shape"] if cb else "")
        if cb:
            head += "  cuBLAS f16 %.1f us %.0f TFLOP/s" % (cb[0]["us"], cb[0]["tflops"])
            cub.setdefault(nm, (cb[0]["us"], cb[0]["tflops"], cb[0]["shape"]))
        if ci:
            head += ", int8 %.1f us" % (ci[0]["us"])
        print(head)
        for ty in ("q4_0", "q8_0"):
            for kern, tag in (("mma", "v"), ("f16mma", "f")):
                v = [x for x in rows if x["name"] == nm and x["type"] == ty and x.get("kernel") == kern]
                if not v:
                    continue
                b = max(v, key=lambda x: x.get("pct_cublas", 0))
                cells = []
                for x in sorted(v, key=lambda x: x.get("variant", 0)):
                    mark = ("*" if x.get("selected") else "") + ("^" if x is b else "")
                    cells.append("%s%d%s %.1f/%.0f/%.0f%%" % (tag, x.get("variant", -1), mark, x["us"], x["tflops"],
                                                           x.get("pct_cublas", 0)))
                print("  %s %-6s %s" % (ty, kern, "  ".join(cells)))
                key = (nm, ty, kern)
                lab = "%s%d s%d" % (tag, b.get("variant", -1), b.get("stages", st))
                if key not in best or b.get("pct_cublas", 0) > best[key][0]:
                    best[key] = (b.get("pct_cublas", 0), b["us"], lab)
print("\n== best per shape over all stage counts (% of cuBLAS f16; goal >= 50 %)")
worst = {}
for nm in cub:
    for ty in ("q4_0", "q8_0"):
        i8 = best.get((nm, ty, "mma"))
        f16 = best.get((nm, ty, "f16mma"))
        cells = []
        for kern, b in (("int8", i8), ("f16mma", f16)):
            if b:
                cells.append("%s %s %.1f us %.0f%%" % (kern, b[2], b[1], b[0]))
        top = max([b[0] for b in (i8, f16) if b] or [0])
        worst[ty] = min(worst.get(ty, 1e9), top)
        print("%-14s %s  cuBLAS %.1f us | %s | %s" % (nm, ty, cub[nm][0], " | ".join(cells),
                                                    "MET" if top >= 50 else "MISS"))
for ty, w in sorted(worst.items()):
    print("worst shape, best kernel and tile, %s: %.1f%% (%s)" % (ty, w, "MET" if w >= 50 else "MISS"))
EOF

# 6. Nsight Compute on the f16-MMA kernel's auto picks (NCU=1): one launch per kernel and shape
if [ -n "${NCU:-}" ]; then
    ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    secs="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \
--section SchedulerStats --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis"
    step_want ncu 0 60 "$ncu" $secs -k 'regex:gemm_f16mma' --launch-count 12 -o "$out/gemm" -f \
        "$PWD/$bench" --only gemm --iters 1 --gemm-kernel f16mma --no-cublas
    "$ncu" --import "$out/gemm.ncu-rep" --page details >"$out/ncu-details.txt" 2>&1
    "$ncu" --import "$out/gemm.ncu-rep" --page raw --csv \
        --metrics gpu__time_duration.sum,sm__inst_executed.sum,smsp__inst_executed.avg.per_cycle_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum \
        >"$out/ncu-raw.csv" 2>&1
    rm -f "$out/gemm.ncu-rep"
fi

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
cat "$summary"
exit 0
