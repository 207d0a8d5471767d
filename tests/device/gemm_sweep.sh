#!/usr/bin/env bash
# The prompt GEMMs on a GPU, in about 60 s, with NCU=1 about 100 s (at 02:59 the steps took
# 33 s without Nsight Compute; every step has its own limit: 320 s at most together, 455 s
# with NCU=1): the int8 tensor-core kernel (bit-exact) and the
# f16-MMA kernel (weights dequantised to f16 in shared memory, within 1.1 * 2^-10 sum |w x|)
# side by side with cuBLAS f16, each f16-MMA tile with the MMA fragments' own 4-byte
# stores and with the staged epilogue (AMXDIAG_GPU_GEMM_STORE=staged: the tile through
# shared memory, 16-byte row pieces, RED.ADD.V4 under split-K).
#   1. unit-gemm: test_kern_cuda_gemm: every int8 variant bit for bit against the CPU
#      formula, every f16-MMA variant within its bound (the largest error printed), the
#      staged epilogue included;
#   2. auto, auto-staged: `amxdiag-gpu-bench --only gemm` as a user runs it (the default
#      kernel, tile and k slices per shape; goal "worst shape, % of cuBLAS f16");
#   3. sweep-s3 / sweep-s3k2 (AMXDIAG_GPU_GEMM_SPLITK=2) and the same staged (s3st,
#      s3k2st): every int8 (v0..v7) and f16-MMA (f0..f8) tile at every shape, 3 stages;
#   4. check-f16mma (+ -staged): the bench's checks with the f16-MMA kernel; engine-f16mma:
#      test_kern_engine's GPU layers teacher-forced against the CPU reference;
#      compare-f16mma: `amxdiag run --ngl 99 --greedy --compare ref`;
#   5. compute-sanitizer memcheck and racecheck on the f16-MMA kernels, staged epilogue;
#   6. the table: per shape and type, us / TOP/s / % of cuBLAS f16 of every tile, the best
#      per kernel over the runs, the goal per shape;
#   7. NCU=1: Nsight Compute of the LM head's kernel only (Q4_0, 151936 x 2048 x 512): f5
#      with fragment stores and staged, f8: stall reasons, pipes, bank conflicts, DRAM bytes.
#   usage: tests/device/gemm_sweep.sh BUILD_DIR      (outputs in $OUT, else ./gemm-sweep-out)
# Needs under BUILD_DIR: amxdiag, amxdiag-gpu-bench, tests/test_kern_cuda_gemm,
# tests/test_kern_engine, devlibs/.
# Outputs: summary.txt (the table included), sweep-s{3,3k2,3st,3k2st}.json, auto*.json, one
# .log per step, and with NCU=1 ncu-details.txt, ncu-f16.csv.
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

# 2. the default as a user gets it (kernel, tile, k slices per shape from the plan)
step_want auto 0 20 "$bench" --only gemm --iters 10 -o "$out/auto.json"
step_want auto-staged 0 20 env AMXDIAG_GPU_GEMM_STORE=staged "$bench" --only gemm --iters 10 \
    -o "$out/auto-staged.json"
for r in auto auto-staged; do
    sed -n '/^goals/,$p' "$out/$r.log" | sed "s/^/  $r /" >>"$summary"
    grep -h "f16mma f.*(selected)" "$out/$r.log" | head -14 | sed "s/^ */  $r /" >>"$summary"
done

# 3. every tile at every shape, 3 stages (2 and 4 were measured at 02:59: within 1 %),
# one k slice and two (AMXDIAG_GPU_GEMM_SPLITK=2: where k has >= 4 x 3 stages, i.e. every
# shape but ffn_down), fragment stores and staged
for run in s3 s3k2 s3st s3k2st; do
    envs=()
    case $run in *k2*) envs+=(AMXDIAG_GPU_GEMM_SPLITK=2) ;; esac
    case $run in *st) envs+=(AMXDIAG_GPU_GEMM_STORE=staged) ;; esac
    step_want "sweep-$run" 0 25 env "${envs[@]}" "$bench" --only gemm --gemm-tile all --gemm-stages 3 --iters 10 \
        -o "$out/sweep-$run.json"
    sed -n '/^goals/,$p' "$out/sweep-$run.log" | sed "s/^/  $run /" >>"$summary"
done

# 3. the engine with the f16-MMA prompt GEMM against the CPU reference, and the bench's
# own checks (every kernel against the CPU reference, the GEMM within 1.1 * 2^-10 sum |w x|)
step_want check-f16mma 0 20 "$bench" --check-only --gemm-kernel f16mma
grep -h -E "FAIL|gemm" "$out/check-f16mma.log" | head -12 | sed 's/^/  /' >>"$summary"
step_want check-f16mma-staged 0 20 env AMXDIAG_GPU_GEMM_STORE=staged "$bench" --check-only --gemm-kernel f16mma
grep -h -E "FAIL|gemm" "$out/check-f16mma-staged.log" | head -12 | sed 's/^/  /' >>"$summary"
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
# the conversion and the MMAs of the single-barrier pipeline, nor between the staged
# epilogue's tile and the next tile's copies (the fragment path ran clean at 02:59)
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck; do
        step_want "sanitizer-$tool" 0 30 env AMXDIAG_GPU_GEMM_STORE=staged "$cs" --tool $tool \
            --kernel-name kns=gemm_f16mma --error-exitcode 9 --print-limit 10 "$bench" --check-only --quick \
            --gemm-kernel f16mma
        expect "sanitizer-$tool" 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards'
        grep -h -E "SUMMARY|Invalid|hazard" "$out/sanitizer-$tool.log" | head -6 | sed 's/^/  /' >>"$summary"
    done
fi

# 4. the table: per shape and type, cuBLAS f16 and each variant (us, TOP/s, % of cuBLAS)
python3 - "$out" >>"$summary" 2>&1 <<'EOF'
import json, os, sys
out = sys.argv[1]
runs = {}
for st in ("3", "3k2", "3st", "3k2st"):
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
    print("\n== %s stages%s%s (us / TOP/s / %% of cuBLAS f16; * = the default tile, ^ = best of the kernel)"
          % (st[0], ", f16mma split-K 2" if "k2" in st else "", ", staged stores" if st.endswith("st") else ""))
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
print("\n== best per shape over the runs (% of cuBLAS f16; goal >= 50 %)")
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

# 7. Nsight Compute (NCU=1) of the LM head's kernel only, Q4_0 at 151936 x 2048 x 512: f5
# (256 x 128, k stages of 64) with fragment stores and staged, and the new f8 (128 x 256).
# The bench in its default mode with --gemm-tile fN launches fN Q4_0 twice per shape
# (warm-up, timed) in the order attn_q, attn_o, attn_k, ffn_up, ffn_down, lm_head: the LM
# head's are launches 11 and 12.
# (At 02:59 two runs over every shape hit their 30 s limit before the LM head.)  Sections:
# speed of light, compute, occupancy, launch, scheduler, warp states (stall reasons),
# instruction mix, memory tables (bank conflicts per instruction kind), source counters.
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
    for run in 5:fragment 5:staged 8:fragment; do
        v=${run%%:*} store=${run#*:}
        tag=f$v-lm-$store
        step_want "ncu-$tag" 0 45 env AMXDIAG_GPU_GEMM_STORE=$store "$ncu" $secs \
            -k "regex:kern_gemm_f16mma_q4_0_v$v\$" --launch-skip 10 --launch-count 2 -o "$out/gemm-$tag" -f \
            "$PWD/$bench" --only gemm --iters 1 --gemm-tile f$v --gemm-stages 3 --no-cublas
        if [ -f "$out/gemm-$tag.ncu-rep" ]; then
            echo "==== $tag" >>"$out/ncu-details.txt"
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
print("\n== ncu, f16-MMA q4_0 at the LM head (warm-up, timed): f5 fragment stores, f5 staged, f8 fragment")
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
