#!/usr/bin/env bash
# The int8 tensor-core prompt GEMM's tile variants on a GPU, in about 60 s (90 s at most,
# plus 60 s with NCU=1): first bit-exactness against the CPU formula for every variant
# (test_kern_cuda_gemm), then one benchmark run per pipeline depth that times every tile
# variant at every shape next to cuBLAS f16 (`amxdiag-gpu-bench --only gemm --gemm-tile
# all`), and a per-shape table: microseconds, TOP/s and % of cuBLAS f16 per variant, the
# variant the cost model picks (*) and the best one.  NCU=1 adds Nsight Compute's
# sections for the picked variant at every shape (the launches of one --iters 1 run).
#   usage: tests/device/gemm_sweep.sh BUILD_DIR      (outputs in $OUT, else ./gemm-sweep-out)
# Outputs: summary.txt (the table included), sweep-s3.json, sweep-s2.json, sweep-s4.json,
# and with NCU=1 ncu-details.txt, ncu-raw.csv.
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

# 1. bit for bit against the CPU formula: every variant, both weight paths, grouped experts
step_want unit-gemm 0 40 "$build/tests/test_kern_cuda_gemm"
expect unit-gemm 'PASSED'
grep -h "FAILED\|element\|SKIP" "$out/unit-gemm.log" | head -20 >>"$summary"
grep -c "bit-exact" "$out/unit-gemm.log" | sed 's/^/  bit-exact cases: /' >>"$summary"

# 2. every variant at every shape, per pipeline depth (3 = the default)
for st in 3 2 4; do
    step_want "sweep-s$st" 0 25 "$bench" --only gemm --gemm-tile all --gemm-stages "$st" --iters 10 \
        -o "$out/sweep-s$st.json"
    sed -n '/^goals/,$p' "$out/sweep-s$st.log" | sed "s/^/  s$st /" >>"$summary"
done

# 3. the table: per shape and type, cuBLAS f16 and each variant (us, TOP/s, % of cuBLAS)
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
for st, r in runs.items():
    rows = [x for x in r.get("rows", []) if x.get("group") == "gemm"]
    shapes = []
    for x in rows:
        if x["name"] not in shapes:
            shapes.append(x["name"])
    print("\n== %d stages (us / TOP/s / %% of cuBLAS f16; * = the default pick, ^ = best)" % st)
    for nm in shapes:
        cb = [x for x in rows if x["name"] == nm and x["type"] == "cublas"]
        ci = [x for x in rows if x["name"] == nm and x["type"] == "cublas-i8"]
        head = "%-14s %s" % (nm, cb[0]["shape"] if cb else "")
        if cb:
            head += "  cuBLAS f16 %.1f us %.0f TFLOP/s" % (cb[0]["us"], cb[0]["tflops"])
        if ci:
            head += ", int8 %.1f us" % (ci[0]["us"])
        print(head)
        for ty in ("q4_0", "q8_0"):
            v = [x for x in rows if x["name"] == nm and x["type"] == ty and x.get("kernel") == "mma"]
            if not v:
                continue
            best = max(v, key=lambda x: x.get("pct_cublas", 0))
            cells = []
            for x in sorted(v, key=lambda x: x.get("variant", 0)):
                mark = ("*" if x.get("selected") else "") + ("^" if x is best else "")
                cells.append("v%d%s %.1f/%.0f/%.0f%%" % (x.get("variant", -1), mark, x["us"], x["tflops"],
                                                       x.get("pct_cublas", 0)))
            print("  %s  %s" % (ty, "  ".join(cells)))
EOF

# 4. Nsight Compute on the picked variants (NCU=1): one launch per kernel and shape
if [ -n "${NCU:-}" ]; then
    ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    secs="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \
--section SchedulerStats --section WarpStateStats --section InstructionStats"
    step_want ncu 0 50 "$ncu" $secs -k 'regex:gemm_i8' --launch-count 24 -o "$out/gemm" -f \
        "$PWD/$bench" --only gemm --iters 1 --gemm-kernel mma --no-cublas
    "$ncu" --import "$out/gemm.ncu-rep" --page details >"$out/ncu-details.txt" 2>&1
    "$ncu" --import "$out/gemm.ncu-rep" --page raw --csv \
        --metrics gpu__time_duration.sum,sm__inst_executed.sum,smsp__inst_executed.avg.per_cycle_active,sm__pipe_tensor_op_imma_cycles_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
        >"$out/ncu-raw.csv" 2>&1
    rm -f "$out/gemm.ncu-rep"
fi

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
cat "$summary"
exit 0
