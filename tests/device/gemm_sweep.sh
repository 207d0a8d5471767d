#!/usr/bin/env bash
# The prompt GEMMs' tile variants on a GPU, in about 60-90 s (every step has its own
# limit: 345 s at most, plus 60 s with NCU=1): the int8 tensor-core kernel (bit-exact)
# and the f16-MMA kernel (weights dequantised to f16 in shared memory, within
# 1.1 * 2^-10 sum |w x|) side by side with cuBLAS f16.
#   1. unit-gemm: test_kern_cuda_gemm: every int8 variant bit for bit against the CPU
#      formula, every f16-MMA variant within its bound (the largest error printed);
#   2. sweep-s3/s2/s4: `amxdiag-gpu-bench --only gemm --gemm-tile all --gemm-stages N`
#      times every int8 (v0..v7) and f16-MMA (f0..f7; at least 3 stages) variant at every
#      shape next to cuBLAS f16; sweep-s3k2 the same at 3 stages with the f16-MMA tiles
#      split in two k slices (AMXDIAG_GPU_GEMM_SPLITK=2);
#   3. engine-f16mma: test_kern_engine's GPU layers teacher-forced against the CPU
#      reference (tolerance 0.25) with AMXDIAG_GPU_GEMM=f16mma, and `amxdiag run --ngl 99
#      --greedy --compare ref` on the default model with it;
#   4. the table: per shape and type, us / TOP/s / % of cuBLAS f16 of every variant, the
#      best int8 and the best f16-MMA one over all stage counts, and the goal per shape;
#   5. compute-sanitizer memcheck and racecheck on the f16-MMA kernels (small checks);
#   6. NCU=1: Nsight Compute's sections (stall reasons, bank conflicts, source counters) of
#      the f16-MMA tiles f0, f5, f3, f6 (Q4_0) at every shape, and a per-launch digest.
#   usage: tests/device/gemm_sweep.sh BUILD_DIR      (outputs in $OUT, else ./gemm-sweep-out)
# Needs under BUILD_DIR: amxdiag, amxdiag-gpu-bench, tests/test_kern_cuda_gemm,
# tests/test_kern_engine, devlibs/.
# Outputs: summary.txt (the table included), sweep-s{3,2,4,3k2}.json, one .log per step, and
# with NCU=1 ncu-details.txt, ncu-f16.csv.
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
# split-K by 2 for the f16-MMA rows (AMXDIAG_GPU_GEMM_SPLITK=2: where k has >= 4 x 3 stages,
# i.e. every shape but ffn_down; the int8 rows are the same kernels as in sweep-s3)
step_want sweep-s3k2 0 25 env AMXDIAG_GPU_GEMM_SPLITK=2 "$bench" --only gemm --gemm-tile all --gemm-stages 3 \
    --iters 10 -o "$out/sweep-s3k2.json"
sed -n '/^goals/,$p' "$out/sweep-s3k2.log" | sed "s/^/  s3k2 /" >>"$summary"

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
for st in ("3", "2", "4", "3k2"):
    p = os.path.join(out, "sweep-s%s.json" % st)
    if os.path.exists(p):
        try:
            runs[st] = json.load(open(p))
        except ValueError as e:
            print("sweep-s%s.json: %s" % (st, e))
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
    print("\n== %s stages%s (us / TOP/s / %% of cuBLAS f16; * = the default pick, ^ = best of the kernel)"
          % (st[0], ", f16mma split-K 2" if st.endswith("k2") else ""))
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
                lab = "%s%d s%s" % (tag, b.get("variant", -1), st)
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

# 6. Nsight Compute on the f16-MMA kernel (NCU=1), Q4_0 only, two runs of 30 s at most:
# f0 (128 x 128) and f5 (256 x 128, k stages of 64), then f3 (64 x 64) and f6 (128 x 128,
# k stages of 64), each at every shape (the bench's warm-up and timed launch: attn_q,
# attn_o, attn_k, ffn_up, ffn_down, lm_head).  Sections: speed of light, compute, occupancy,
# launch, scheduler, warp states (stall reasons), instruction mix, memory tables (shared
# memory bank conflicts per instruction kind), source counters.  ncu-f16.csv: one line per
# launch with the figures the tuning needs.
if [ -n "${NCU:-}" ]; then
    ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    secs="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \
--section SchedulerStats --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis \
--section MemoryWorkloadAnalysis_Tables --section SourceCounters"
    mets=gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread
    mets=$mets,sm__inst_executed.sum,smsp__inst_executed.avg.per_cycle_active,smsp__issue_active.avg.pct_of_peak_sustained_active
    mets=$mets,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active
    mets=$mets,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
    mets=$mets,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
    mets=$mets,lts__t_bytes.sum,dram__bytes_read.sum,dram__bytes_write.sum
    for st in barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle not_selected \
        dispatch_stall no_instruction selected; do
        mets=$mets,smsp__average_warps_issue_stalled_${st}_per_issue_active.ratio
    done
    : >"$out/ncu-details.txt"
    : >"$out/ncu-f16.csv"
    for pair in "0|5" "3|6"; do
        tag=f${pair/|/f}
        step_want "ncu-$tag" 0 30 "$ncu" $secs -k "regex:kern_gemm_f16mma_q4_0_v(${pair})\$" --launch-count 24 \
            -o "$out/gemm-$tag" -f "$PWD/$bench" --only gemm --iters 1 --gemm-tile all --no-cublas
        if [ -f "$out/gemm-$tag.ncu-rep" ]; then
            "$ncu" --import "$out/gemm-$tag.ncu-rep" --page details >>"$out/ncu-details.txt" 2>&1
            "$ncu" --import "$out/gemm-$tag.ncu-rep" --page raw --csv --metrics "$mets" >>"$out/ncu-f16.csv" 2>&1
            rm -f "$out/gemm-$tag.ncu-rep"
        fi
    done
    # per launch: kernel, grid, us, instructions per warp, issue %, tensor pipe %, the
    # largest stall reasons, shared-memory bank conflicts per wavefront (ld / st)
    python3 - "$out/ncu-f16.csv" >>"$summary" 2>&1 <<'PYEOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = units = None
print("\n== ncu, f16-MMA q4_0 (launch order: attn_q, attn_o, attn_k, ffn_up, ffn_down, lm_head; warm-up, timed)")
def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return float("nan")
for r in rows:
    if r and r[0] == "ID":
        hdr, units = r, None
        continue
    if hdr and units is None and len(r) == len(hdr) and not r[0]:
        units = dict(zip(hdr, r))
        continue
    if not hdr or len(r) != len(hdr) or not r[0].isdigit():
        continue
    d = dict(zip(hdr, r))
    f = lambda k: num(d.get(k, "nan"))
    warps = f("launch__grid_size") * f("launch__block_size") / 32
    stalls = sorted(((f("smsp__average_warps_issue_stalled_%s_per_issue_active.ratio" % s), s) for s in
                     ("barrier", "long_scoreboard", "short_scoreboard", "wait", "math_pipe_throttle", "mio_throttle",
                      "lg_throttle", "not_selected", "dispatch_stall", "no_instruction")), reverse=True)[:4]
    ldc = f("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum") / max(1, f("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"))
    stc = f("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum") / max(1, f("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"))
    print("  %-26s grid %5.0f regs %3.0f %9.1f %-3s inst/warp %7.0f issue %4.1f%% hmma %4.1f%% stalls %s; bank conflicts/wavefront ld %.2f st %.2f"
          % (d.get("Kernel Name", "?"), f("launch__grid_size"), f("launch__registers_per_thread"),
             f("gpu__time_duration.sum"), (units or {}).get("gpu__time_duration.sum", ""),
             f("sm__inst_executed.sum") / max(1, warps), f("smsp__issue_active.avg.pct_of_peak_sustained_active"),
             f("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"),
             " ".join("%s %.2f" % (s, v) for v, s in stalls), ldc, stc))
PYEOF
fi

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
cat "$summary"
exit 0
